"""docs/openapi.yaml and docs/asyncapi.yaml against the server.

The OpenAPI document is checked with schemathesis against a running server: every
documented operation with requests that provoke each status we can provoke (answers
must be documented and match their schemas exactly), then a bounded fuzz of every
operation with generated valid and invalid requests. The router and the document must
list the same routes. The AsyncAPI document is checked structurally: it names every
event of `messenger.protocol`, its examples validate against its own schemas, and real
payloads from a running server validate against them too.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import aiohttp
import hypothesis
import jsonschema_rs
import pytest
import requests
import schemathesis
import socketio
import yaml
from PIL import Image
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from messenger import protocol
from messenger.attachments.service import CONTENT_TYPE, NAME_MAX, Uploaded
from messenger.config import Settings
from messenger.errors import ErrorCode
from messenger.node import Node
from messenger.push.addresses import URL_MAX
from messenger.push.subscriptions import KINDS, LABEL_MAX, SUBSCRIPTIONS_MAX
from messenger.text_search import QUERY_MAX_CHARS
from messenger.transport.rest import MAX_REQUEST_BYTES
from messenger.transport.web import WEB_DIR
from messenger.wire import AttachmentRef
from tests.push_support import LOOPBACK, FakePushService, WebhookReceiver
from tests.support import PASSWORD, Device, Http, RunningServer, start_server

DOCS = Path(__file__).resolve().parent.parent / "docs"
OPENAPI = DOCS / "openapi.yaml"
ASYNCAPI = DOCS / "asyncapi.yaml"
# Socket.IO's own routes are described by asyncapi.yaml, not openapi.yaml.
SOCKET_IO_PATH = "/socket.io/"
FOREIGN = "http://evil.example"
# Per operation and generation mode. Each example is one request; the whole fuzz stays
# a few seconds per backend.
FUZZ_EXAMPLES = 50
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

ANN, BOB = "ann@example.com", "bob@example.com"
# Small attachment limits, so the scene can pass them cheaply.
MAX_ATTACHMENT = 64 * 1024
ATTACHMENT_QUOTA = 16 * MAX_ATTACHMENT


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    # Push subscriptions may name the tests' fakes, on loopback over plain http; the
    # push delay stays the default (not `push_settings`'s short one).
    return settings.replace(
        push_allow_http=LOOPBACK,
        blob_dir=str(tmp_path / "blobs"),
        max_attachment=MAX_ATTACHMENT,
        attachment_quota=ATTACHMENT_QUOTA,
    )


def load_yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as file:
        document = yaml.safe_load(file)
    assert isinstance(document, dict), path
    return document


def openapi_document() -> dict[str, Any]:
    return load_yaml(OPENAPI)


def resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def dereference(document: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node and len(node) == 1:
        node = resolve(document, node["$ref"])
    return node


def component_validator(document: dict[str, Any], pointer: str) -> Any:
    """A validator for one schema of `document` (by JSON pointer), refs resolved in it."""
    return jsonschema_rs.Draft202012Validator(
        {"$ref": pointer, "components": document.get("components", {})}
    )


def assert_valid(validator: Any, instance: Any, what: str) -> None:
    errors = [str(error) for error in validator.iter_errors(instance)]
    assert not errors, f"{what}: {errors} in {json.dumps(instance)[:1000]}"


def walk_schemas(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object in a document that has `properties` or `required`, with its place."""
    if isinstance(node, dict):
        if "properties" in node or "required" in node:
            yield where, node
        for key, value in node.items():
            yield from walk_schemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk_schemas(value, f"{where}/{index}")


def assert_required_are_declared(document: dict[str, Any]) -> None:
    """A `required` name missing from `properties` would be accepted as anything."""
    for where, schema in walk_schemas(document.get("components", {}), "#/components"):
        required = schema.get("required")
        if isinstance(required, list) and "properties" in schema:
            missing = set(required) - set(schema["properties"])
            assert not missing, f"{where}: required {sorted(missing)} not in properties"


def assert_lifecycle_limits(schemas: dict[str, Any]) -> None:
    """The limits of a Message's lifecycle fields (docs/protocol.md 3.1, 3.6) are the
    server's, in either document."""
    assert schemas["Emoji"]["maxLength"] == protocol.EMOJI_MAX_CHARS
    excerpt = schemas["ReplyTo"]["oneOf"][1]["properties"]["excerpt"]
    assert excerpt["maxLength"] == protocol.REPLY_EXCERPT_CHARS
    # Only the two parties of a conversation react, each with a bounded set of emojis.
    reactions = schemas["Reactions"]
    assert reactions["maxProperties"] == 2 * protocol.REACTIONS_PER_USER_MAX
    assert reactions["additionalProperties"]["maxItems"] == 2
    fields = set(schemas["Message"]["properties"])
    assert {"reply_to", "edited_at", "deleted", "reactions", "attachments"} <= fields
    assert set(schemas["Message"]["required"]) == fields - {"hidden"}
    assert_attachment_limits(schemas)


def assert_attachment_limits(schemas: dict[str, Any]) -> None:
    """A Message's `attachments` (docs/attachments.md) are the server's, in either
    document: as many as a send may carry, each with the fields `wire` gives it."""
    attachments = schemas["Message"]["properties"]["attachments"]
    assert attachments["maxItems"] == protocol.ATTACHMENTS_MAX
    ref = schemas["AttachmentRef"]
    assert set(ref["properties"]) == set(AttachmentRef.__annotations__)
    # Only an image that was decoded has its size in pixels.
    assert set(ref["required"]) == set(AttachmentRef.__annotations__) - {"width", "height"}
    content_type = ref["properties"]["content_type"]
    if "$ref" in content_type:
        content_type = schemas[content_type["$ref"].rsplit("/", 1)[1]]
    assert content_type["pattern"] == f"^{CONTENT_TYPE.pattern}$"


# -- OpenAPI: routes ------------------------------------------------------------------


def spec_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def server_routes(server: RunningServer) -> set[tuple[str, str]]:
    routes = set()
    for route in server.node.app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if not path.startswith(SOCKET_IO_PATH):
            routes.add((route.method, path))
    return routes


async def test_every_route_is_documented_and_every_documented_route_exists(
    server: RunningServer,
) -> None:
    documented = spec_routes(openapi_document())
    served = server_routes(server)
    # aiohttp answers HEAD wherever it answers GET; the document says so once.
    heads = {(method, path) for method, path in served if method == "HEAD"}
    assert heads == {("HEAD", path) for method, path in served if method == "GET"}
    served -= heads
    # The web client's files are served only when there is a build.
    optional = {("GET", path) for path in web_build_routes() - built_web_routes()}
    assert served - documented == set(), "served but not in docs/openapi.yaml"
    assert documented - served - optional == set(), "in docs/openapi.yaml but not served"


def web_build_routes() -> set[str]:
    """The routes that serve files of the web client's build."""
    return {"/static/{name}", "/sw.js"}


def built_web_routes() -> set[str]:
    """Those of them the server serves: there is a build, with a service worker."""
    if not (WEB_DIR / "index.html").is_file():
        return set()
    return {"/static/{name}"} | ({"/sw.js"} if (WEB_DIR / "sw.js").is_file() else set())


def test_openapi_document_is_well_formed() -> None:
    document = openapi_document()
    assert document["openapi"].startswith("3.1.")
    assert document["components"]["securitySchemes"]["bearer"] == {
        **document["components"]["securitySchemes"]["bearer"],
        "type": "http",
        "scheme": "bearer",
    }
    # Every error code the server has is in the document's enum, and no other.
    enum = document["components"]["schemas"]["ErrorCode"]["enum"]
    assert sorted(enum) == sorted(code.value for code in ErrorCode)
    # schemathesis can read every operation.
    schema = schemathesis.openapi.from_dict(document)
    for result in schema.get_all_operations():
        result.ok()
    # Limits in the document are the server's.
    schemas = document["components"]["schemas"]
    assert schemas["Password"]["minLength"] == protocol.PASSWORD_MIN
    assert schemas["Password"]["maxLength"] == protocol.PASSWORD_MAX
    assert schemas["Username"]["pattern"] == f"^{protocol.USERNAME_PATTERN.pattern}$"
    assert schemas["Message"]["properties"]["client_id"]["maxLength"] == protocol.CLIENT_ID_MAX
    assert schemas["MessageId"]["maximum"] == protocol.ID_MAX
    # The input form admits upper case, and only that, beyond the stored form.
    assert schemas["UsernameInput"]["pattern"] == schemas["Username"]["pattern"].replace(
        "a-z", "A-Za-z"
    )
    assert_lifecycle_limits(schemas)
    assert schemas["AttachmentName"]["maxLength"] == NAME_MAX
    assert schemas["MediaType"]["pattern"] == f"^{CONTENT_TYPE.pattern}$"
    assert set(schemas["Upload"]["properties"]) == set(Uploaded.__annotations__)
    # HTTP never shows a message the caller deleted for themselves (3.1 `hidden`).
    assert "hidden" not in schemas["Message"]["properties"]
    assert_push_limits(document)
    assert_required_are_declared(document)


def assert_push_limits(document: dict[str, Any]) -> None:
    """Push subscriptions (docs/protocol.md 3.9): the limits are the server's, and a
    webhook's secret shows only in the answer that makes it."""
    schemas = document["components"]["schemas"]
    assert schemas["PushUrl"]["maxLength"] == URL_MAX
    assert schemas["SubscriptionLabel"]["oneOf"][0]["maxLength"] == LABEL_MAX
    assert schemas["SubscriptionKind"]["enum"] == list(KINDS)
    kinds = [
        dereference(document, branch)["properties"]["kind"]["const"]
        for branch in schemas["SubscriptionRequest"]["oneOf"]
    ]
    assert kinds == list(KINDS)
    listed = document["paths"]["/api/v1/push/subscriptions"]["get"]["responses"]["200"]
    items = listed["content"]["application/json"]["schema"]["properties"]["subscriptions"]
    assert items["maxItems"] == SUBSCRIPTIONS_MAX
    assert "secret" not in schemas["Subscription"]["properties"]
    assert set(schemas["NewSubscription"]["properties"]) == {
        *schemas["Subscription"]["properties"],
        "secret",
    }


# -- OpenAPI: the running server --------------------------------------------------------


class Conformance:
    """Sends requests to the server (blocking: run it in a thread) and validates each
    answer against the document with schemathesis' checks."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.document = openapi_document()
        self.schema = schemathesis.openapi.from_dict(self.document)
        # Unknown query parameters are ignored by the server, not refused; the bearer
        # token is the test's own (passed as a header), not generated.
        self.schema.config.generation.update(
            allow_extra_parameters=False, with_security_parameters=False
        )
        self.operations = {
            (op.method.upper(), op.path): op
            for op in (result.ok() for result in self.schema.get_all_operations())
        }
        self.session = requests.Session()
        self.seen: set[tuple[str, str, int]] = set()

    def operation(self, method: str, path: str) -> Any:
        return self.operations[(method, path)]

    def expect(
        self,
        status: int,
        method: str,
        path: str,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        **case: Any,
    ) -> schemathesis.Response:
        """A request built from `case`, its answer checked and its status asserted."""
        op = self.operation(method, path)
        built = op.Case(**case)
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        response = built.call(base_url=self.base_url, session=self.session, headers=all_headers)
        built.validate_response(response, checks=CHECKS, headers=all_headers)
        assert response.status_code == status, (method, path, case, response.text)
        self.seen.add((method, path, status))
        return response

    def raw(
        self, status: int, method: str, path: str, url_path: str, **kwargs: Any
    ) -> requests.Response:
        """A request schemathesis cannot build (bad bodies), its answer still checked."""
        op = self.operation(method, path)
        response = self.session.request(method, self.base_url + url_path, **kwargs)
        op.Case().validate_response(response, checks=CHECKS)
        assert response.status_code == status, (method, url_path, response.text)
        self.seen.add((method, path, status))
        return response

    def fuzz(self, method: str, path: str, headers: dict[str, str]) -> bool:
        """Generated valid requests, then invalid ones, which must be refused; returns
        whether there were invalid ones to make (not without inputs, or for `/static/`,
        whose only invalid name would be an empty path segment)."""
        op = self.operation(method, path)
        self._fuzz(op, GenerationMode.POSITIVE, headers, CHECKS)
        try:
            self._fuzz(op, GenerationMode.NEGATIVE, headers, [*CHECKS, negative_data_rejection])
        except hypothesis.errors.Unsatisfiable:
            return False
        return True

    def _fuzz(self, op: Any, mode: GenerationMode, headers: dict[str, str], checks: Any) -> None:
        @hypothesis.settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        @hypothesis.given(case=op.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            case.call_and_validate(
                base_url=self.base_url, session=self.session, headers=headers, checks=checks
            )

        run()


def provoke_every_status(
    api: Conformance, tokens: Tokens, push: PushTargets, socket: Socket
) -> None:
    """Each documented status we can cause without breaking the database."""
    token, other_token = tokens.ann, tokens.ann_other
    users, sessions = "/api/v1/users", "/api/v1/sessions"
    conversations = "/api/v1/conversations"
    history = "/api/v1/conversations/{username}/messages"
    logout = "/api/v1/sessions/current"
    origin = {"Origin": FOREIGN}

    # POST /api/v1/users
    api.expect(
        201, "POST", users, body={"username": "Carol.Upper@Example.COM", "password": "p" * 8}
    )
    api.expect(
        409, "POST", users, body={"username": "CAROL.upper@example.com", "password": PASSWORD}
    )
    for body in (
        {"username": "ab", "password": PASSWORD},
        {"username": "a" * 65, "password": PASSWORD},
        {"username": "ann example", "password": PASSWORD},
        {"username": "dave@example.com", "password": "p" * 7},
        {"username": "dave@example.com", "password": "p" * 257},
        {"username": "dave@example.com", "password": "p\x00" * 8},
        {"username": 5, "password": PASSWORD},
        {"password": PASSWORD},
    ):
        api.expect(400, "POST", users, body=body)
    api.raw(400, "POST", users, users, data=b"not json")
    api.raw(400, "POST", users, users, json=["a list"])
    api.raw(400, "POST", users, users, data=b'{"username": NaN}')
    api.raw(413, "POST", users, users, data=b" " * (MAX_REQUEST_BYTES + 1))
    api.expect(403, "POST", users, headers=origin, body={"username": "eve1", "password": PASSWORD})

    # POST /api/v1/sessions
    created = api.expect(
        201, "POST", sessions, body={"username": "CAROL.UPPER@example.com", "password": "p" * 8}
    )
    assert created.json()["user"] == {"username": "carol.upper@example.com"}
    carol = created.json()["token"]
    api.expect(
        401, "POST", sessions, body={"username": "carol.upper@example.com", "password": PASSWORD}
    )
    api.expect(401, "POST", sessions, body={"username": "nobody@example.com", "password": PASSWORD})
    api.expect(400, "POST", sessions, body={"username": "nobody@example.com", "password": "short"})
    api.raw(413, "POST", sessions, sessions, data=b" " * (MAX_REQUEST_BYTES + 1))
    api.expect(403, "POST", sessions, headers=origin, body={"username": ANN, "password": PASSWORD})
    # Bursts of 10 per username, then 429.
    limited = {"username": "limited@example.com", "password": PASSWORD}
    for status in [401] * 10 + [429]:
        api.expect(status, "POST", sessions, body=limited)

    # GET /api/v1/conversations (bob's reply, which ann deleted for herself, is not
    # her last message and not unread)
    listed = api.expect(200, "GET", conversations, token=token).json()
    assert [item["with"] for item in listed["conversations"]] == [BOB]
    assert listed["conversations"][0]["unread"] == 0, listed
    assert listed["conversations"][0]["last_message"]["deleted"] is True, listed
    api.expect(200, "GET", conversations, token=token, query={"limit": 1})
    api.expect(200, "GET", conversations, token=token, query={"limit": 500})
    for limit in ("0", "501", "-1", "x", "1.5"):
        api.expect(400, "GET", conversations, token=token, query={"limit": limit})
    api.expect(401, "GET", conversations)
    api.expect(401, "GET", conversations, token="not-a-token")
    api.expect(401, "GET", conversations, headers={"Authorization": f"Basic {token}"})
    api.expect(403, "GET", conversations, token=token, headers=origin)

    # GET /api/v1/conversations/{username}/messages
    page = api.expect(
        200, "GET", history, token=token, path_parameters={"username": "Bob@Example.com"}
    )
    messages = page.json()["messages"]
    # Each as it is now: reacted to, edited, deleted for everyone; bob's reply, which
    # ann deleted for herself, is not there.
    assert [m["status"] for m in messages] == ["read", "sent", "sent"], messages
    assert [m["deleted"] for m in messages] == [False, False, True], messages
    assert messages[0]["reactions"] == {"👍": [BOB]}, messages
    assert messages[1]["body"] == "again, edited" and messages[1]["edited_at"], messages
    first, second, last = (m["id"] for m in messages)
    older = api.expect(
        200,
        "GET",
        history,
        token=token,
        path_parameters={"username": BOB},
        query={"before": second, "limit": 1},
    ).json()
    assert [m["id"] for m in older["messages"]] == [first] and older["has_more"] is False
    api.expect(
        200, "GET", history, token=token, path_parameters={"username": BOB}, query={"after": first}
    )
    api.expect(
        400,
        "GET",
        history,
        token=token,
        path_parameters={"username": BOB},
        query={"before": last, "after": first},
    )
    api.expect(400, "GET", history, token=token, path_parameters={"username": ANN})
    api.expect(400, "GET", history, token=token, path_parameters={"username": "ab"})
    api.expect(
        400, "GET", history, token=token, path_parameters={"username": BOB}, query={"limit": 101}
    )
    api.expect(
        400, "GET", history, token=token, path_parameters={"username": BOB}, query={"before": 0}
    )
    api.expect(
        400, "GET", history, token=token, path_parameters={"username": BOB}, query={"before": 2**63}
    )
    api.expect(404, "GET", history, token=token, path_parameters={"username": "nobody@example.com"})
    api.expect(401, "GET", history, path_parameters={"username": BOB})
    api.expect(403, "GET", history, token=token, headers=origin, path_parameters={"username": BOB})

    provoke_search(api, token)
    provoke_attachments(api, tokens, carol, socket)
    provoke_settings(api, token)
    other_session_subscription = provoke_push(api, tokens, push)
    provoke_accounts(api, tokens, socket)

    # GET /healthz, /metrics, /, /static/{name}, /sw.js
    api.expect(200, "GET", "/healthz")
    api.expect(403, "GET", "/healthz", headers=origin)
    metrics = api.expect(200, "GET", "/metrics")
    assert "# TYPE" in metrics.text
    api.expect(403, "GET", "/metrics", headers=origin)
    api.expect(200, "GET", "/")
    api.expect(403, "GET", "/", headers=origin)
    if (WEB_DIR / "index.html").is_file():
        built = sorted(p.name for p in WEB_DIR.iterdir() if p.is_file())
        api.expect(200, "GET", "/static/{name}", path_parameters={"name": built[0]})
        api.expect(404, "GET", "/static/{name}", path_parameters={"name": "no-such-file.js"})
        api.expect(403, "GET", "/static/{name}", headers=origin, path_parameters={"name": built[0]})
    if "/sw.js" in built_web_routes():
        worker = api.expect(200, "GET", "/sw.js")
        assert worker.content == (WEB_DIR / "sw.js").read_bytes()
        api.expect(403, "GET", "/sw.js", headers=origin)

    # DELETE /api/v1/sessions/current (the other token: `token` is used afterwards)
    api.expect(403, "DELETE", logout, token=other_token, headers=origin)
    api.expect(204, "DELETE", logout, token=other_token)
    api.expect(401, "DELETE", logout, token=other_token)
    api.expect(401, "DELETE", logout)
    api.expect(401, "GET", conversations, token=other_token)
    # The logout took the session's push subscription with it.
    listed = api.expect(200, "GET", "/api/v1/push/subscriptions", token=token).json()
    remaining = {s["id"] for s in listed["subscriptions"]}
    assert remaining and other_session_subscription not in remaining, listed

    # Not operations, but the document promises their bodies: unknown routes and methods.
    error = component_validator(api.document, "#/components/schemas/Error")
    unknown = api.session.get(api.base_url + "/api/v1/nothing-here")
    assert unknown.status_code == 404
    assert_valid(error, unknown.json(), "unknown route")
    assert unknown.json()["error"]["code"] == "not_found"
    wrong = api.session.put(api.base_url + "/api/v1/users", json={})
    assert wrong.status_code == 405
    assert_valid(error, wrong.json(), "wrong method")
    assert wrong.json()["error"]["code"] == "invalid"

    # Every documented status was seen, but those of a failing database (500, 503).
    documented = {
        (method.upper(), path, int(status))
        for path, item in api.document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
        for status in operation["responses"]
        if int(status) not in (500, 503)
    }
    absent = web_build_routes() - built_web_routes()
    documented = {entry for entry in documented if entry[1] not in absent}
    assert documented - api.seen == set(), "documented but not provoked"


def provoke_settings(api: Conformance, token: str) -> None:
    """GET and PUT /api/v1/users/me/settings: every documented status, and a refused
    change changes nothing."""
    settings = "/api/v1/users/me/settings"
    bearer = {"Authorization": f"Bearer {token}"}
    origin = {"Origin": FOREIGN}
    assert api.expect(200, "GET", settings, token=token).json() == {"read_receipts": True}
    changed = api.expect(200, "PUT", settings, token=token, body={"read_receipts": False})
    assert changed.json() == {"read_receipts": False}
    for body in (
        {},
        {"read_receipts": "no"},
        {"read_receipts": None},
        {"read_receipts": 0},
        {"receipts": True},
        {"read_receipts": True, "theme": "dark"},
    ):
        api.expect(400, "PUT", settings, token=token, body=body)
    api.raw(400, "PUT", settings, settings, headers=bearer, data=b"not json")
    api.raw(400, "PUT", settings, settings, headers=bearer, json=[{"read_receipts": True}])
    api.raw(413, "PUT", settings, settings, headers=bearer, data=b" " * (MAX_REQUEST_BYTES + 1))
    api.expect(401, "GET", settings)
    api.expect(401, "GET", settings, token="not-a-token")
    api.expect(401, "PUT", settings, body={"read_receipts": True})
    api.expect(403, "GET", settings, token=token, headers=origin)
    api.expect(403, "PUT", settings, token=token, headers=origin, body={"read_receipts": True})
    assert api.expect(200, "GET", settings, token=token).json() == {"read_receipts": False}
    api.expect(200, "PUT", settings, token=token, body={"read_receipts": True})


ACCOUNT = "/api/v1/users/me"
ACCOUNT_PASSWORD = "/api/v1/users/me/password"
EXPORT = "/api/v1/users/me/export"
SESSIONS = "/api/v1/sessions"
SESSION = "/api/v1/sessions/{id}"


def provoke_accounts(api: Conformance, tokens: Tokens, socket: Socket) -> None:
    """The account and session routes (docs/protocol.md 2): every documented status.
    What would end ann's sessions is done by users of its own (dora, erin)."""
    token, origin = tokens.ann, {"Origin": FOREIGN}
    big = b" " * (MAX_REQUEST_BYTES + 1)

    def new_user(name: str, sessions: int) -> list[str]:
        credentials = {"username": name, "password": PASSWORD}
        api.expect(201, "POST", "/api/v1/users", body=credentials)
        return [
            api.expect(201, "POST", SESSIONS, body=credentials).json()["token"]
            for _ in range(sessions)
        ]

    # PUT /api/v1/users/me/password: dora's other session ends, the calling one stays.
    dora, dora_other = new_user("dora@example.com", 2)
    bearer = {"Authorization": f"Bearer {dora}"}
    for body in ({"current": PASSWORD, "new": "short"}, {"current": PASSWORD}, {"new": PASSWORD}):
        api.expect(400, "PUT", ACCOUNT_PASSWORD, token=dora, body=body)
    api.raw(400, "PUT", ACCOUNT_PASSWORD, ACCOUNT_PASSWORD, headers=bearer, data=b"not json")
    api.raw(413, "PUT", ACCOUNT_PASSWORD, ACCOUNT_PASSWORD, headers=bearer, data=big)
    change = {"current": PASSWORD, "new": "a new long passphrase"}
    wrong = {"current": "not the password", "new": "a new long passphrase"}
    api.expect(401, "PUT", ACCOUNT_PASSWORD, token=dora, body=wrong)
    api.expect(401, "PUT", ACCOUNT_PASSWORD, body=change)
    api.expect(401, "PUT", ACCOUNT_PASSWORD, token="not-a-token", body=change)
    api.expect(403, "PUT", ACCOUNT_PASSWORD, token=dora, headers=origin, body=change)
    api.expect(204, "PUT", ACCOUNT_PASSWORD, token=dora, body=change)
    api.expect(401, "GET", SESSIONS, token=dora_other)
    mine = api.expect(200, "GET", SESSIONS, token=dora).json()["sessions"]
    assert [s["current"] for s in mine] == [True], mine
    # Password checks of a user are limited like logins (the right one counts too).

    def attempt() -> int:
        built = api.operation("PUT", ACCOUNT_PASSWORD).Case(body=wrong)
        response = built.call(base_url=api.base_url, session=api.session, headers=bearer)
        built.validate_response(response, checks=CHECKS, headers=bearer)
        api.seen.add(("PUT", ACCOUNT_PASSWORD, response.status_code))
        return int(response.status_code)

    statuses = [attempt() for _ in range(15)]
    assert 429 in statuses and set(statuses[: statuses.index(429)]) <= {401}, statuses

    # GET /api/v1/sessions, DELETE /api/v1/sessions/{id}: ann's, newest first.
    third = api.expect(201, "POST", SESSIONS, body={"username": ANN, "password": PASSWORD})
    listed = api.expect(200, "GET", SESSIONS, token=token).json()["sessions"]
    assert [s["current"] for s in listed] == [False, False, True], listed
    newest, own = listed[0]["id"], listed[-1]["id"]
    api.expect(404, "DELETE", SESSION, token=tokens.bob, path_parameters={"id": newest})
    api.expect(204, "DELETE", SESSION, token=token, path_parameters={"id": newest})
    api.expect(401, "GET", SESSIONS, token=third.json()["token"])
    api.expect(404, "DELETE", SESSION, token=token, path_parameters={"id": newest})
    for beyond in (protocol.ID_MAX, protocol.ID_MAX + 1, 10**30):
        api.expect(404, "DELETE", SESSION, token=token, path_parameters={"id": beyond})
    for method, path, case in (
        ("GET", SESSIONS, {}),
        ("DELETE", SESSION, {"path_parameters": {"id": own}}),
        ("GET", EXPORT, {}),
    ):
        api.expect(401, method, path, **case)
        api.expect(401, method, path, token="not-a-token", **case)
        api.expect(403, method, path, token=token, headers=origin, **case)

    # DELETE /api/v1/users/me: erin leaves; dora, out of password checks, may not.
    (erin,) = new_user("erin@example.com", 1)
    bearer = {"Authorization": f"Bearer {erin}"}
    api.expect(400, "DELETE", ACCOUNT, token=erin, body={})
    api.expect(400, "DELETE", ACCOUNT, token=erin, body={"password": "short"})
    api.raw(400, "DELETE", ACCOUNT, ACCOUNT, headers=bearer, data=b"not json")
    api.raw(413, "DELETE", ACCOUNT, ACCOUNT, headers=bearer, data=big)
    api.expect(401, "DELETE", ACCOUNT, token=erin, body={"password": "not the password"})
    api.expect(401, "DELETE", ACCOUNT, body={"password": PASSWORD})
    api.expect(403, "DELETE", ACCOUNT, token=erin, headers=origin, body={"password": PASSWORD})
    api.expect(429, "DELETE", ACCOUNT, token=dora, body={"password": "a new long passphrase"})
    api.expect(204, "DELETE", ACCOUNT, token=erin, body={"password": PASSWORD})
    api.expect(401, "GET", SESSIONS, token=erin)
    api.expect(
        409, "POST", "/api/v1/users", body={"username": "erin@example.com", "password": PASSWORD}
    )

    # GET /api/v1/users/me/export: ann's (bob's reply she hid shows `hidden`); one at
    # a time per user, so a second while one runs is 429.
    exported = api.expect(200, "GET", EXPORT, token=token)
    disposition = header(exported, "Content-Disposition")
    assert disposition == f'attachment; filename="messenger-export-{ANN}.json"', disposition
    document = exported.json()
    assert document["user"]["username"] == ANN
    assert [m.get("hidden", False) for m in document["messages"]].count(True) == 1, document
    assert token.encode() not in exported.content
    assert socket.node is not None
    node = socket.node

    async def running_export() -> Any:
        who = await node.accounts.authenticate(token)
        held = node.account_service.export(who)
        await held.__aenter__()
        return held

    held = asyncio.run_coroutine_threadsafe(running_export(), socket.loop).result(timeout=30)
    try:
        api.expect(429, "GET", EXPORT, token=token)
    finally:
        done = held.__aexit__(None, None, None)
        asyncio.run_coroutine_threadsafe(done, socket.loop).result(timeout=30)
    api.expect(200, "GET", EXPORT, token=token)


@dataclass(frozen=True)
class Tokens:
    """ann's two sessions and bob's one."""

    ann: str
    ann_other: str
    bob: str


@dataclass(frozen=True)
class PushTargets:
    """Where the scene's push subscriptions point: the tests' fakes on loopback."""

    service: FakePushService
    receiver: WebhookReceiver


SUBSCRIPTIONS = "/api/v1/push/subscriptions"
SUBSCRIPTION = "/api/v1/push/subscriptions/{id}"


def push_bodies_refused(webpush: dict[str, Any]) -> list[dict[str, Any]]:
    """Subscription requests both the document and the server refuse (400)."""
    keys = webpush["keys"]
    return [
        {**webpush, "kind": "email"},
        {key: value for key, value in webpush.items() if key != "kind"},
        {"kind": "webhook", "endpoint": webpush["endpoint"]},
        {**webpush, "keys": {"p256dh": keys["p256dh"]}},
        {**webpush, "keys": {**keys, "auth": "short"}},
        {**webpush, "keys": {**keys, "p256dh": "B" * 86}},
        {**webpush, "keys": [keys["p256dh"], keys["auth"]]},
        {**webpush, "endpoint": "https://example.com/" + "a" * URL_MAX},
        {**webpush, "endpoint": ""},
        {**webpush, "label": "x" * (LABEL_MAX + 1)},
        {**webpush, "label": ""},
        {**webpush, "label": "two\nlines"},
        {**webpush, "preview": "yes"},
        {**webpush, "preview": None},
    ]


def off_the_curve(p256dh: str) -> str:
    """The key with one character of its x coordinate changed: not a P-256 point."""
    changed = "A" if p256dh[10] != "A" else "B"
    return p256dh[:10] + changed + p256dh[11:]


def provoke_push(api: Conformance, tokens: Tokens, push: PushTargets) -> int:
    """The push routes (docs/protocol.md 3.9): every documented status, with real
    subscriptions (one at the fake Web Push service, webhooks at the receiver) so the
    answers listing them are checked too. Returns the id of the one made by ann's other
    session, which her logout must take with it."""
    token = tokens.ann
    origin = {"Origin": FOREIGN}
    bearer = {"Authorization": f"Bearer {token}"}

    # GET /api/v1/push/vapid: no token needed; the same key each time.
    key = api.expect(200, "GET", "/api/v1/push/vapid").json()["public_key"]
    assert api.expect(200, "GET", "/api/v1/push/vapid", token=token).json()["public_key"] == key
    api.expect(403, "GET", "/api/v1/push/vapid", headers=origin)

    # POST: a browser's PushSubscription.toJSON() (its extra `expirationTime` ignored),
    # then the same endpoint again, which moves it and takes the new values.
    assert api.expect(200, "GET", SUBSCRIPTIONS, token=token).json() == {"subscriptions": []}
    endpoint, keys = push.service.subscribe("ann", application_server_key=key)
    webpush = {"kind": "webpush", **keys.subscription(endpoint)}
    made = api.expect(201, "POST", SUBSCRIPTIONS, token=token, body=webpush).json()
    assert (made["kind"], made["label"], made["preview"], made["current"]) == (
        "webpush",
        None,
        False,
        True,
    ), made
    again = {**webpush, "label": "laptop", "preview": True}
    moved = api.expect(200, "POST", SUBSCRIPTIONS, token=token, body=again).json()
    assert (moved["id"], moved["label"], moved["preview"]) == (made["id"], "laptop", True), moved

    def webhook(status: int, path: str, session: str) -> dict[str, Any]:
        body = {"kind": "webhook", "url": push.receiver.url_for(path), "label": path}
        answer = api.expect(status, "POST", SUBSCRIPTIONS, token=session, body=body).json()
        push.receiver.expect(path, answer["secret"])  # its pushes would verify
        return dict(answer)

    # A webhook of ann's other session; made again, it gets a new secret.
    first = webhook(201, "/ann/other", tokens.ann_other)
    renewed = webhook(200, "/ann/other", tokens.ann_other)
    assert renewed["id"] == first["id"] and renewed["secret"] != first["secret"]
    for n in range(SUBSCRIPTIONS_MAX - 2):
        webhook(201, f"/ann/{n}", token)
    over = {"kind": "webhook", "url": push.receiver.url_for("/ann/over")}
    api.expect(413, "POST", SUBSCRIPTIONS, token=token, body=over)

    # Refused bodies: what the document refuses, and what only the server can tell.
    document_refuses = component_validator(api.document, "#/components/schemas/SubscriptionRequest")
    assert_valid(document_refuses, webpush, "a browser's subscription")
    for body in push_bodies_refused(webpush):
        assert not document_refuses.is_valid(body), body
        api.expect(400, "POST", SUBSCRIPTIONS, token=token, body=body)
    for body in (
        {"kind": "webhook", "url": "https://10.0.0.1/hook"},
        {"kind": "webhook", "url": "https://[::1]/hook"},
        {"kind": "webhook", "url": "http://example.com/hook"},
        {"kind": "webhook", "url": "https://user:pw@127.0.0.1/hook"},
        {**webpush, "endpoint": "ftp://127.0.0.1/x"},
        {**webpush, "keys": {**webpush["keys"], "p256dh": off_the_curve(keys.p256dh)}},
    ):
        assert_valid(document_refuses, body, "refused by the server only")
        api.expect(400, "POST", SUBSCRIPTIONS, token=token, body=body)
    api.raw(400, "POST", SUBSCRIPTIONS, SUBSCRIPTIONS, headers=bearer, data=b"not json")
    api.raw(400, "POST", SUBSCRIPTIONS, SUBSCRIPTIONS, headers=bearer, json=[webpush])
    big = b" " * (MAX_REQUEST_BYTES + 1)
    api.raw(413, "POST", SUBSCRIPTIONS, SUBSCRIPTIONS, headers=bearer, data=big)

    # GET: all of ann's, oldest first, `current` for the calling session's, no secrets.
    for session, own, count in (
        (token, made["id"], SUBSCRIPTIONS_MAX - 1),
        (tokens.ann_other, first["id"], 1),
    ):
        listed = api.expect(200, "GET", SUBSCRIPTIONS, token=session).json()["subscriptions"]
        assert len(listed) == SUBSCRIPTIONS_MAX, listed
        assert [s["id"] for s in listed] == sorted(s["id"] for s in listed)
        current = [s for s in listed if s["current"]]
        assert own in {s["id"] for s in current} and len(current) == count, listed
        assert len({s["session"] for s in current}) == 1, listed
        assert len({s["session"] for s in listed}) == 2, listed

    # DELETE: bob's subscription is not ann's to remove (404, as a missing one).
    bobs = webhook(201, "/bob", tokens.bob)
    one = SUBSCRIPTION
    api.expect(404, "DELETE", one, token=token, path_parameters={"id": bobs["id"]})
    api.expect(204, "DELETE", one, token=tokens.bob, path_parameters={"id": bobs["id"]})
    api.expect(204, "DELETE", one, token=token, path_parameters={"id": moved["id"]})
    api.expect(404, "DELETE", one, token=token, path_parameters={"id": moved["id"]})
    api.expect(404, "DELETE", one, token=token, path_parameters={"id": protocol.ID_MAX})
    # Ids beyond what SQL stores name no subscription either (not a 500).
    for beyond in (protocol.ID_MAX + 1, -protocol.ID_MAX - 2, 10**30):
        api.expect(404, "DELETE", one, token=token, path_parameters={"id": beyond})
    api.expect(201, "POST", SUBSCRIPTIONS, token=token, body=over)  # room again

    requests_of: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", SUBSCRIPTIONS, {}),
        ("POST", SUBSCRIPTIONS, {"body": webpush}),
        ("DELETE", one, {"path_parameters": {"id": first["id"]}}),
    ]
    for method, path, case in requests_of:
        api.expect(401, method, path, **case)
        api.expect(401, method, path, token="not-a-token", **case)
        api.expect(403, method, path, token=token, headers=origin, **case)
    return int(first["id"])


ATTACHMENTS = "/api/v1/attachments"
ATTACHMENT = "/api/v1/attachments/{id}"
THUMBNAIL = "/api/v1/attachments/{id}/thumbnail"
# What a browser may not do with a fetched file (docs/attachments.md).
FILE_HEADERS = ("ETag", "Accept-Ranges", "X-Content-Type-Options", "Content-Security-Policy")


def small_png(width: int = 640, height: int = 480) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(out, format="PNG")
    return out.getvalue()


@dataclass(frozen=True)
class Socket:
    """ann's connected device, driven from the scene's thread: each call runs on the
    test's event loop, its answer checked against asyncapi.yaml."""

    device: Device
    loop: asyncio.AbstractEventLoop
    document: dict[str, Any]
    # The node behind it, for what only the node can set up (an export under way).
    node: Node | None = None

    def call(self, event: str, payload: Any) -> Any:
        answer = validated_call(self.document, self.device, event, payload)
        return asyncio.run_coroutine_threadsafe(answer, self.loop).result(timeout=30)


def header(response: schemathesis.Response, name: str) -> str:
    """One header of an answer (schemathesis keeps them lower-cased, as lists)."""
    values = response.headers.get(name.lower(), [])
    assert len(values) == 1, (name, response.headers)
    return values[0]


def provoke_attachments(api: Conformance, tokens: Tokens, outsider: str, socket: Socket) -> None:
    """The attachment routes (docs/attachments.md): every documented status, with a
    file and a PNG that ann uploads and sends to bob, fetched whole, by range, by ETag
    and as a thumbnail, by them and by `outsider` (a third user)."""
    token = tokens.ann
    origin = {"Origin": FOREIGN}

    def upload(
        status: int,
        data: bytes,
        content_type: str,
        name: str | None = None,
        session: str | None = token,
        headers: dict[str, str] | None = None,
    ) -> Any:
        return api.expect(
            status,
            "POST",
            ATTACHMENTS,
            token=session,
            headers={"Content-Type": content_type, **(headers or {})},
            media_type="application/octet-stream",
            body=data,
            query={} if name is None else {"name": name},
        ).json()

    # POST: a document, a PNG (its size in pixels), a nameless file, an empty one.
    report_bytes, png = bytes(range(256)) * 64, small_png()
    report = upload(201, report_bytes, "application/pdf", "report Q3.pdf")
    assert report["sha256"] == hashlib.sha256(report_bytes).hexdigest(), report
    assert (report["size"], report["content_type"]) == (len(report_bytes), "application/pdf")
    assert "width" not in report, report
    picture = upload(201, png, "image/png", "photo.png")
    assert (picture["width"], picture["height"]) == (640, 480), picture
    note = upload(201, b"a note", "Text/Plain; charset=utf-8")
    assert (note["name"], note["content_type"]) == ("file", "text/plain"), note
    empty = upload(201, b"", "application/octet-stream", "empty")
    assert empty["sha256"] == hashlib.sha256(b"").hexdigest() and empty["size"] == 0, empty
    # Refused: names and types the document refuses too, and bytes that lie.
    name_schema = component_validator(api.document, "#/components/schemas/AttachmentName")
    for name in ("", "a/b.txt", "a\\b.txt", "x" * (NAME_MAX + 1), "tab\there", "nul\x00"):
        assert not name_schema.is_valid(name), name
        upload(400, b"x", "text/plain", name)
    upload(400, b"x", "text/plain", "..")
    for content_type in ("not a type", "text/", "image/png/x"):
        upload(400, b"x", content_type, "x.bin")
    upload(400, b"not a png at all", "image/png", "fake.png")
    upload(400, png, "image/jpeg", "fake.jpg")
    # An SVG is taken as declared: it is only ever served as a download.
    svg = upload(201, b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml", "x.svg")
    assert "width" not in svg, svg
    # Too large: as declared, as streamed (no length), and over the quota (carol's).
    upload(413, b"x" * (MAX_ATTACHMENT + 1), "application/octet-stream", "big")
    chunks = (b"y" * 4096 for _ in range(MAX_ATTACHMENT // 4096 + 1))
    bearer = {"Authorization": f"Bearer {token}"}
    api.raw(413, "POST", ATTACHMENTS, ATTACHMENTS, headers=bearer, data=chunks)
    for _ in range(ATTACHMENT_QUOTA // MAX_ATTACHMENT):
        upload(201, b"q" * MAX_ATTACHMENT, "application/octet-stream", "fill", outsider)
    upload(413, b"q", "application/octet-stream", "over", outsider)
    upload(401, b"x", "text/plain", "x", None)
    upload(401, b"x", "text/plain", "x", "not-a-token")
    upload(403, b"x", "text/plain", "x", headers=origin)

    def fetch(status: int, path: str, attachment: Any, **case: Any) -> schemathesis.Response:
        case.setdefault("token", token)
        return api.expect(status, "GET", path, path_parameters={"id": attachment["id"]}, **case)

    # Before the send the upload is ann's alone.
    assert fetch(200, ATTACHMENT, report).content == report_bytes
    fetch(404, ATTACHMENT, report, token=tokens.bob)
    # The send binds it (the body may be empty then); once only.
    carried = [report["id"], picture["id"]]
    sent = socket.call(
        protocol.SEND, {"to": BOB, "body": "", "client_id": "c-files", "attachments": carried}
    )
    assert sent["ok"], sent
    refs = sent["message"]["attachments"]
    assert [ref["id"] for ref in refs] == carried, refs
    assert [ref["thumbnail"] for ref in refs] == [False, True], refs
    assert (refs[1]["width"], refs[1]["height"]) == (640, 480), refs
    again = {"to": BOB, "body": "x", "client_id": "c-again", "attachments": [report["id"]]}
    assert socket.call(protocol.SEND, again)["error"]["code"] == "not_found"
    history = "/api/v1/conversations/{username}/messages"
    page = api.expect(200, "GET", history, token=tokens.bob, path_parameters={"username": ANN})
    assert page.json()["messages"][-1]["attachments"] == refs, page.json()

    # GET: both parties, whole, by range and by ETag; nobody else.
    for session in (token, tokens.bob):
        whole = fetch(200, ATTACHMENT, report, token=session)
        assert whole.content == report_bytes
        assert header(whole, "Content-Type") == "application/octet-stream"
        disposition = header(whole, "Content-Disposition")
        assert disposition == "attachment; filename*=UTF-8''report%20Q3.pdf", disposition
        assert all(name.lower() in whole.headers for name in FILE_HEADERS), whole.headers
        shown = fetch(200, ATTACHMENT, picture, token=session)
        assert shown.content == png and header(shown, "Content-Type") == "image/png"
        assert header(shown, "Content-Disposition").startswith("inline;"), shown.headers
    etag = f'"{report["sha256"]}"'
    for value, part in (("bytes=10-19", report_bytes[10:20]), ("bytes=-5", report_bytes[-5:])):
        answer = fetch(206, ATTACHMENT, report, headers={"Range": value})
        assert answer.content == part and header(answer, "ETag") == etag
    first = fetch(206, ATTACHMENT, report, headers={"Range": "bytes=0-0"})
    assert header(first, "Content-Range") == f"bytes 0-0/{len(report_bytes)}"
    # Ranges it cannot serve: past the end, or none of the bytes; others mean the whole.
    for value in (f"bytes={len(report_bytes)}-", "bytes=-0", "bytes=5-4"):
        fetch(416, ATTACHMENT, report, headers={"Range": value})
    for value in ("bytes=0-", "items=0-1", "bytes=0-1,4-5", "bytes=-"):
        assert fetch(200, ATTACHMENT, report, headers={"Range": value}).content == report_bytes
    fetch(304, ATTACHMENT, report, headers={"If-None-Match": etag})
    fetch(200, ATTACHMENT, report, headers={"If-None-Match": '"0"'})
    fetch(404, ATTACHMENT, report, token=outsider)
    for missing in (protocol.ID_MAX, protocol.ID_MAX + 1, 0, 10**30):
        fetch(404, ATTACHMENT, {"id": missing})

    # The thumbnail: a PNG of at most 320 pixels a side, served like the file.
    thumb = fetch(200, THUMBNAIL, picture, token=tokens.bob)
    assert header(thumb, "Content-Type") == "image/png"
    with Image.open(io.BytesIO(thumb.content)) as image:
        assert (image.format, image.size) == ("PNG", (320, 240))
    thumb_etag = f'"{hashlib.sha256(thumb.content).hexdigest()}"'
    assert header(thumb, "ETag") == thumb_etag
    assert (
        fetch(206, THUMBNAIL, picture, headers={"Range": "bytes=0-7"}).content == thumb.content[:8]
    )
    fetch(304, THUMBNAIL, picture, headers={"If-None-Match": thumb_etag})
    fetch(416, THUMBNAIL, picture, headers={"Range": f"bytes={len(thumb.content)}-"})
    fetch(404, THUMBNAIL, report)  # not an image
    fetch(404, THUMBNAIL, picture, token=outsider)
    fetch(404, THUMBNAIL, {"id": protocol.ID_MAX})
    for path in (ATTACHMENT, THUMBNAIL):
        fetch(401, path, picture, token=None)
        fetch(401, path, picture, token="not-a-token")
        fetch(403, path, picture, headers=origin)

    # A message deleted for everyone takes its files: a tombstone shows `[]`.
    note_sent = socket.call(
        protocol.SEND,
        {"to": BOB, "body": "see", "client_id": "c-note", "attachments": [note["id"]]},
    )
    deleted = socket.call(protocol.DELETE, {"id": note_sent["message"]["id"], "for": "everyone"})
    assert deleted["message"]["attachments"] == [], deleted
    fetch(404, ATTACHMENT, note)
    fetch(404, ATTACHMENT, note, token=tokens.bob)
    page = api.expect(200, "GET", history, token=tokens.bob, path_parameters={"username": ANN})
    assert page.json()["messages"][-1]["attachments"] == [], page.json()


def probe_documented_limits(api: Conformance, token: str) -> None:
    """The limits the document states are the server's: every integer query parameter
    is accepted at its documented minimum and maximum and refused just beyond them, and
    so is the password at its documented lengths."""
    probed = 0
    for (method, path), _op in sorted(api.operations.items()):
        documented = api.document["paths"][path][method.lower()]
        path_parameters = {"username": BOB} if "{username}" in path else None
        # Required query parameters (search's `q`) at their documented example.
        required = {
            parameter["name"]: parameter["example"]
            for parameter in map(
                lambda ref: dereference(api.document, ref), documented.get("parameters", [])
            )
            if parameter["in"] == "query" and parameter.get("required")
        }
        for reference in documented.get("parameters", []):
            parameter = dereference(api.document, reference)
            schema = dereference(api.document, parameter["schema"])
            if parameter["in"] != "query" or schema.get("type") != "integer":
                continue
            low, high = schema["minimum"], schema["maximum"]
            name = parameter["name"]
            for value, status in ((low, 200), (high, 200), (low - 1, 400), (high + 1, 400)):
                api.expect(
                    status,
                    method,
                    path,
                    token=token,
                    path_parameters=path_parameters,
                    query={**required, name: value},
                )
                probed += 1
    password = api.document["components"]["schemas"]["Password"]
    for length, status in (
        (password["minLength"], 201),
        (password["maxLength"], 201),
        (password["minLength"] - 1, 400),
        (password["maxLength"] + 1, 400),
    ):
        body = {"username": f"length{length}@example.com", "password": "p" * length}
        api.expect(status, "POST", "/api/v1/users", body=body)
        probed += 1
    assert probed >= 16, probed


def fuzz_every_operation(api: Conformance, token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    negative = set()
    for method, path in sorted(api.operations):
        if (method, path) == ("DELETE", "/api/v1/sessions/current"):
            continue  # no input to vary; it would revoke the token the others use
        if (method, path) == ("DELETE", SESSION):
            continue  # small ids name the sessions the others use
        if path in web_build_routes() - built_web_routes():
            continue  # not served without a build
        if api.fuzz(method, path, auth):
            negative.add((method, path))
    assert negative == {
        ("POST", "/api/v1/users"),
        ("POST", "/api/v1/sessions"),
        ("GET", "/api/v1/conversations"),
        ("GET", "/api/v1/conversations/{username}/messages"),
        ("GET", "/api/v1/search"),
        ("PUT", "/api/v1/users/me/settings"),
        ("POST", SUBSCRIPTIONS),
        ("DELETE", SUBSCRIPTION),
        ("POST", ATTACHMENTS),
        ("GET", ATTACHMENT),
        ("GET", THUMBNAIL),
        ("PUT", ACCOUNT_PASSWORD),
        ("DELETE", ACCOUNT),
    }


async def conversation(server: RunningServer, http: Http) -> Tokens:
    """ann and bob, and their conversation (`live_conversation`); ann's two tokens and
    bob's."""
    for name in (ANN, BOB):
        assert (await http.register(name))[0] == 201
    tokens = []
    for name in (ANN, ANN, BOB):
        status, body = await http.login(name)
        assert status == 201, body
        tokens.append(body["token"])
    ann, bob = Device(server.url), Device(server.url)
    await ann.connect(tokens[0])
    await bob.connect(tokens[2])
    try:
        await live_conversation(ann, bob)
    finally:
        await ann.disconnect()
        await bob.disconnect()
    return Tokens(*tokens)


Call = Callable[[Device, str, Any], Awaitable[Any]]


async def plain_call(device: Device, event: str, payload: Any) -> Any:
    return await device.call(event, payload)


async def live_conversation(ann: Device, bob: Device, call: Call = plain_call) -> None:
    """Three messages from ann: the first edited, read and reacted to by bob, the
    second edited, the third deleted for everyone; then bob's reply to the first,
    which ann deletes for herself. So answers show every lifecycle field."""
    ids = []
    for n, body in enumerate("abc"):
        sent = await call(ann, protocol.SEND, {"to": BOB, "body": body, "client_id": f"c-{n}"})
        ids.append(sent["message"]["id"])
    reply = {"to": ANN, "body": "hi back", "client_id": "c-reply", "reply_to": ids[0]}
    calls = [
        (ann, protocol.EDIT, {"id": ids[0], "body": "hello", "client_id": "e-0"}),
        (ann, protocol.EDIT, {"id": ids[1], "body": "again, edited", "client_id": "e-1"}),
        (ann, protocol.DELETE, {"id": ids[2], "for": "everyone"}),
        (bob, protocol.READ, {"ids": [ids[0]]}),
        (bob, protocol.REACT, {"id": ids[0], "emoji": "👍"}),
        (bob, protocol.SEND, reply),
    ]
    for device, event, payload in calls:
        answer = await call(device, event, payload)
        assert answer["ok"], (event, payload, answer)
    reply_id = answer["message"]["id"]
    assert answer["message"]["reply_to"] == {"id": ids[0], "from": ANN, "excerpt": "hello"}
    hidden = await call(ann, protocol.DELETE, {"id": reply_id, "for": "me"})
    assert hidden == {"ok": True}, hidden


def provoke_registration_limit(api: Conformance, url: str) -> None:
    """429 on registration, from a server whose registration limit is on (the shared
    fixture's is off): its burst of one, then `rate_limited` with `Retry-After`."""
    own_url, api.base_url = api.base_url, url
    try:
        users = "/api/v1/users"
        for status, name in ((201, "first@example.com"), (429, "second@example.com")):
            api.expect(status, "POST", users, body={"username": name, "password": PASSWORD})
    finally:
        api.base_url = own_url


async def test_server_answers_as_openapi_documents(
    server: RunningServer,
    http: Http,
    push_service: FakePushService,
    webhook_receiver: WebhookReceiver,
) -> None:
    tokens = await conversation(server, http)
    token = tokens.ann
    api = Conformance(server.url)
    limited = await start_server(server.settings.replace(register_burst=1))
    try:
        # Blocking requests: in a thread, while this loop serves them.
        await asyncio.to_thread(provoke_registration_limit, api, limited.url)
    finally:
        await limited.stop()
    device = await Device(server.url).connect(token)
    try:
        await device.wait_synced()
        socket = Socket(device, asyncio.get_running_loop(), asyncapi_document(), server.node)
        push = PushTargets(push_service, webhook_receiver)
        await asyncio.to_thread(provoke_every_status, api, tokens, push, socket)
    finally:
        await device.disconnect()
    await asyncio.to_thread(probe_documented_limits, api, token)
    await asyncio.to_thread(fuzz_every_operation, api, token)


def provoke_search(api: Conformance, token: str) -> None:
    """GET /api/v1/search: found by its current (edited) text, narrowed and paged;
    every refusal."""
    search, origin = "/api/v1/search", {"Origin": FOREIGN}
    found = api.expect(200, "GET", search, token=token, query={"q": "EDITED"}).json()
    assert [r["message"]["body"] for r in found["results"]] == ["again, edited"], found
    assert "\u0002edited\u0003" in found["results"][0]["snippet"], found
    only_bob = {"q": "edited", "with": "Bob@Example.com", "limit": 50}
    api.expect(200, "GET", search, token=token, query=only_bob)
    older = {"q": "edited", "before": found["results"][0]["message"]["id"]}
    assert api.expect(200, "GET", search, token=token, query=older).json()["results"] == []
    for query in (
        {"q": ""},
        {"q": "x" * (QUERY_MAX_CHARS + 1)},
        {"q": "ok", "limit": 51},
        {"q": "ok", "with": ANN},
        {"q": "ok", "before": 0},
    ):
        api.expect(400, "GET", search, token=token, query=query)
    api.expect(404, "GET", search, token=token, query={"q": "ok", "with": "nobody@example.com"})
    api.expect(401, "GET", search, query={"q": "ok"})
    api.expect(403, "GET", search, token=token, headers=origin, query={"q": "ok"})


def fetch_with_long_ranges(api: Conformance, token: str) -> None:
    """A file fetched with ranges whose numbers are written with 5000 digits: header
    values aiohttp accepts (8 KiB), meaning the same as shorter ones."""
    bearer = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
    made = api.raw(201, "POST", ATTACHMENTS, ATTACHMENTS, headers=bearer, data=b"hello").json()
    huge = "9" * 5000
    for value, status in (
        (f"bytes={huge}-", 416),
        (f"bytes=0-{huge}", 200),
        (f"bytes=-{huge}", 200),
    ):
        api.expect(
            status,
            "GET",
            ATTACHMENT,
            token=token,
            headers={"Range": value},
            path_parameters={"id": made["id"]},
        )


async def test_long_range_numbers_are_not_a_server_error(server: RunningServer, http: Http) -> None:
    assert (await http.register(ANN))[0] == 201
    token = (await http.login(ANN))[1]["token"]
    await asyncio.to_thread(fetch_with_long_ranges, Conformance(server.url), token)


# -- AsyncAPI ---------------------------------------------------------------------------
# The document describes the server: a client's event is an operation with action
# `receive` (answered by its `reply`, the acknowledgement), a server's event `send`.

CLIENT_EVENTS = [
    protocol.SEND,
    protocol.DELIVERED,
    protocol.READ,
    protocol.HISTORY,
    protocol.SYNC,
    protocol.PRESENCE,
    protocol.BLOCK,
    protocol.UNBLOCK,
    protocol.PRIVATE_MESSAGE,
    protocol.EDIT,
    protocol.DELETE,
    protocol.REACT,
    protocol.UNREACT,
    protocol.TYPING,
    protocol.SEARCH,
]
# `typing` goes both ways: a client's event and the server's, one name.
SERVER_EVENTS = [
    protocol.NEW_MESSAGE,
    protocol.RECEIPT,
    protocol.SYNCED,
    protocol.RECEIVED_MESSAGE,
    protocol.MESSAGE_UPDATED,
    protocol.TYPING,
    protocol.ERROR,
]
# What a `message_updated` says changed: values of the event, not event names.
CHANGES = get_args(protocol.Change)


def asyncapi_document() -> dict[str, Any]:
    return load_yaml(ASYNCAPI)


def operations_by_event(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(action, event name) -> the operation; the event name is its channel's address."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for name, operation in document["operations"].items():
        channel = dereference(document, operation["channel"])
        key = (operation["action"], channel["address"])
        assert key not in found, f"two operations for {key}"
        found[key] = operation
        for message in operation["messages"]:
            # AsyncAPI 3: an operation's messages are messages of its channel.
            assert message["$ref"].startswith(operation["channel"]["$ref"] + "/messages/"), name
    return found


def payload_validator(document: dict[str, Any], message: Any) -> Any:
    """A validator for a message's payload (the message given by a $ref or inline)."""
    payload = dereference(document, message)["payload"]
    return jsonschema_rs.Draft202012Validator({**payload, "components": document["components"]})


def request_validator(document: dict[str, Any], event: str) -> Any:
    operation = operations_by_event(document)[("receive", event)]
    return payload_validator(document, operation["messages"][0])


def ack_validator(document: dict[str, Any], event: str) -> Any:
    operation = operations_by_event(document)[("receive", event)]
    return payload_validator(document, operation["reply"]["messages"][0])


def event_validator(document: dict[str, Any], event: str) -> Any:
    operation = operations_by_event(document)[("send", event)]
    return payload_validator(document, operation["messages"][0])


def protocol_event_names() -> set[str]:
    """Every event-name constant of messenger.protocol, so a new one is noticed."""
    names = {
        value
        for name, value in vars(protocol).items()
        if name.isupper()
        and isinstance(value, str)
        and name != "COMPAT_SEED"
        and value not in CHANGES
    }
    assert names == {*CLIENT_EVENTS, *SERVER_EVENTS}, "update CLIENT_EVENTS / SERVER_EVENTS"
    return names


def test_asyncapi_names_every_event() -> None:
    document = asyncapi_document()
    assert document["asyncapi"].startswith("3.0.")
    operations = operations_by_event(document)
    protocol_event_names()
    for event in CLIENT_EVENTS:
        operation = operations.get(("receive", event))
        assert operation is not None, f"client event {event!r} is not in asyncapi.yaml"
        assert operation.get("reply", {}).get("messages"), f"{event!r} has no acknowledgement"
    for event in SERVER_EVENTS:
        assert ("send", event) in operations, f"server event {event!r} is not in asyncapi.yaml"
    documented = {event for _, event in operations}
    assert documented == {*CLIENT_EVENTS, *SERVER_EVENTS}, "asyncapi.yaml names unknown events"


def test_asyncapi_limits_are_the_servers() -> None:
    document = asyncapi_document()
    assert_required_are_declared(document)
    schemas = document["components"]["schemas"]
    props = {name: schema.get("properties", {}) for name, schema in schemas.items()}
    assert props["IdsPayload"]["ids"]["maxItems"] == protocol.MARK_IDS_MAX
    assert props["PresencePayload"]["users"]["maxItems"] == protocol.PRESENCE_USERS_MAX
    history_limit = props["HistoryPayload"]["limit"]["oneOf"][0]
    assert history_limit["maximum"] == protocol.HISTORY_LIMIT_MAX
    assert history_limit["default"] == protocol.HISTORY_LIMIT_DEFAULT
    search_limit = props["SearchPayload"]["limit"]["oneOf"][0]
    assert search_limit["maximum"] == protocol.SEARCH_LIMIT_MAX
    assert search_limit["default"] == protocol.SEARCH_LIMIT_DEFAULT
    assert props["SearchPayload"]["query"]["maxLength"] == QUERY_MAX_CHARS
    sync_limit = props["SyncPayload"]["limit"]["oneOf"][0]
    assert sync_limit["maximum"] == protocol.SYNC_LIMIT_MAX
    assert sync_limit["default"] == protocol.SYNC_LIMIT_DEFAULT
    assert props["SendPayload"]["client_id"]["maxLength"] == protocol.CLIENT_ID_MAX
    assert props["SendPayload"]["attachments"]["oneOf"][0]["maxItems"] == protocol.ATTACHMENTS_MAX
    assert props["SendPayload"]["body"]["maxLength"] == Settings().max_body
    assert props["EditPayload"]["body"]["maxLength"] == Settings().max_body
    assert props["EditPayload"]["client_id"]["maxLength"] == protocol.CLIENT_ID_MAX
    assert props["MessageUpdatedEvent"]["change"]["enum"] == list(CHANGES)
    assert props["DeletePayload"]["for"]["enum"] == ["me", "everyone"]
    assert_lifecycle_limits(schemas)
    assert props["PrivateMessagePayload"]["message"]["maxLength"] == Settings().max_body
    assert schemas["Username"]["pattern"] == f"^{protocol.USERNAME_PATTERN.pattern}$"
    assert schemas["UsernameInput"]["pattern"] == schemas["Username"]["pattern"].replace(
        "a-z", "A-Za-z"
    )
    assert schemas["MessageId"]["maximum"] == protocol.ID_MAX
    assert schemas["Status"]["enum"] == list(protocol.STATUS_NAMES)
    assert props["HandshakeAuth"]["compat"]["const"] == protocol.COMPAT_SEED
    http_only = {ErrorCode.USERNAME_TAKEN, ErrorCode.BAD_CREDENTIALS}
    assert sorted(schemas["ErrorCode"]["enum"]) == sorted(
        c.value for c in ErrorCode if c not in http_only
    )


def test_asyncapi_examples_validate_against_its_schemas() -> None:
    document = asyncapi_document()
    count = 0
    for name, message in document["components"]["messages"].items():
        validator = payload_validator(document, message)
        examples = message.get("examples", [])
        assert examples, f"message {name} has no examples"
        for example in examples:
            assert_valid(validator, example["payload"], f"{name} example {example.get('name')}")
            count += 1
    # The handshake's auth object and connect_error's data are not events.
    for name in ("HandshakeAuth", "ConnectError"):
        validator = component_validator(document, f"#/components/schemas/{name}")
        examples = document["components"]["schemas"][name]["examples"]
        for example in examples:
            assert_valid(validator, example, name)
            count += 1
    assert count >= 30, count


def test_asyncapi_schemas_reject_what_the_server_refuses() -> None:
    """The payload schemas are not vacuous: what the server answers `invalid` or
    `too_large` fails them (checked against the server in the next test)."""
    document = asyncapi_document()
    for event, payload in REFUSED:
        assert not request_validator(document, event).is_valid(payload), (event, payload)
    for event, payload in ACCEPTED:
        assert_valid(request_validator(document, event), payload, event)
    assert {event for event, _ in REFUSED} == {event for event, _ in ACCEPTED} == {*CLIENT_EVENTS}


LIVE_MESSAGE: dict[str, Any] = {
    "id": 812,
    "from": ANN,
    "to": BOB,
    "body": "hi",
    "client_id": "c-5f1e",
    "sent_at": "2026-11-26T10:15:03.120Z",
    "status": "sent",
    "delivered_at": None,
    "read_at": None,
    "reply_to": {"id": 807, "from": BOB, "excerpt": "lunch at one?"},
    "edited_at": None,
    "deleted": False,
    "reactions": {"\N{THUMBS UP SIGN}": [BOB]},
    "attachments": [
        {
            "id": 31,
            "name": "report.pdf",
            "size": 9021,
            "content_type": "application/pdf",
            "thumbnail": False,
        }
    ],
}
PHOTO: dict[str, Any] = {
    "id": 32,
    "name": "holiday.jpg",
    "size": 284113,
    "content_type": "image/jpeg",
    "width": 1600,
    "height": 1200,
    "thumbnail": True,
}
TOMBSTONE = {
    **LIVE_MESSAGE,
    "body": None,
    "deleted": True,
    "reply_to": None,
    "reactions": {},
    "attachments": [],
}
HIDDEN = {
    **LIVE_MESSAGE,
    "body": None,
    "deleted": True,
    "reactions": {},
    "attachments": [],
    "hidden": True,
}


def test_message_schemas_tell_the_states_apart() -> None:
    """A Message is live, a tombstone or (in the Socket.IO stream only) hidden, and the
    schemas refuse a mix (3.1): they would not catch a leaked body otherwise."""
    asyncapi, openapi = asyncapi_document(), openapi_document()
    stream = component_validator(asyncapi, "#/components/schemas/Message")
    http = component_validator(openapi, "#/components/schemas/Message")
    for message in (
        LIVE_MESSAGE,
        TOMBSTONE,
        {**LIVE_MESSAGE, "reply_to": {"id": 1, "deleted": True}},
        # A photo sent alone; a large image decoded for its size only.
        {**LIVE_MESSAGE, "body": "", "attachments": [PHOTO]},
        {**LIVE_MESSAGE, "attachments": [{**PHOTO, "thumbnail": False}]},
        {**LIVE_MESSAGE, "attachments": []},
    ):
        assert_valid(stream, message, "stream")
        assert_valid(http, message, "http")
    assert_valid(stream, HIDDEN, "hidden")
    assert not http.is_valid(HIDDEN)
    for mixed in (
        {**TOMBSTONE, "body": "hi"},
        {**TOMBSTONE, "reactions": {"\N{THUMBS UP SIGN}": [BOB]}},
        {**TOMBSTONE, "reply_to": {"id": 807, "from": BOB, "excerpt": "x"}},
        {**LIVE_MESSAGE, "body": None},
        {**HIDDEN, "deleted": False},
        {**HIDDEN, "hidden": False},
        {**LIVE_MESSAGE, "reply_to": {"id": 807, "from": BOB, "excerpt": "x" * 101}},
        {**LIVE_MESSAGE, "reactions": {"\N{THUMBS UP SIGN}": [BOB, BOB]}},
        {**LIVE_MESSAGE, "reactions": {"ok": [BOB]}},
        {key: value for key, value in LIVE_MESSAGE.items() if key != "reactions"},
        # Attachments: gone with a deleted message, never an empty body without them.
        {key: value for key, value in LIVE_MESSAGE.items() if key != "attachments"},
        {**TOMBSTONE, "attachments": [PHOTO]},
        {**HIDDEN, "attachments": [PHOTO]},
        {**LIVE_MESSAGE, "body": "", "attachments": []},
        {**LIVE_MESSAGE, "attachments": [PHOTO] * (protocol.ATTACHMENTS_MAX + 1)},
        {**LIVE_MESSAGE, "attachments": [{**PHOTO, "height": None}]},
        {**LIVE_MESSAGE, "attachments": [{k: v for k, v in PHOTO.items() if k != "height"}]},
        {
            **LIVE_MESSAGE,
            "attachments": [{k: v for k, v in PHOTO.items() if k not in ("width", "height")}],
        },
        {**LIVE_MESSAGE, "attachments": [{**PHOTO, "sha256": "0" * 64}]},
        {**LIVE_MESSAGE, "attachments": [{**PHOTO, "name": "a/b.jpg"}]},
        {**LIVE_MESSAGE, "attachments": [{**PHOTO, "content_type": "Image/JPEG"}]},
        {**LIVE_MESSAGE, "attachments": [31]},
    ):
        assert not stream.is_valid(mixed), mixed
        assert not http.is_valid(mixed), mixed
    updated = component_validator(asyncapi, "#/components/schemas/MessageUpdatedEvent")
    assert_valid(updated, {"cursor": 3, "message": HIDDEN, "change": "hidden"}, "hidden")
    assert_valid(updated, {"cursor": 3, "message": TOMBSTONE, "change": "edited"}, "replayed")
    assert not updated.is_valid({"cursor": 3, "message": LIVE_MESSAGE, "change": "deleted"})
    assert not updated.is_valid({"cursor": 3, "message": TOMBSTONE, "change": "hidden"})


# The codes of a payload refused for its shape (a body over its limit is `too_large`).
SHAPE_ERRORS = {ErrorCode.INVALID.value, ErrorCode.TOO_LARGE.value}
# An id no test makes: events naming it are well formed, and answered `not_found`.
NO_SUCH_ID = 2**62
REFUSED: list[tuple[str, Any]] = [
    (protocol.SEND, {"to": "bob@example.com", "body": "", "client_id": "c"}),
    (protocol.SEND, {"to": "bob@example.com", "body": "x", "client_id": "c", "reply_to": 0}),
    # An empty body only with attachments; at most 10 of them, each once, ids.
    (protocol.SEND, {"to": "bob@example.com", "body": "", "client_id": "c", "attachments": []}),
    (protocol.SEND, {"to": "bob@example.com", "body": "", "client_id": "c", "attachments": None}),
    (
        protocol.SEND,
        {"to": "bob@example.com", "body": "x", "client_id": "c", "attachments": list(range(1, 12))},
    ),
    (
        protocol.SEND,
        {"to": "bob@example.com", "body": "x", "client_id": "c", "attachments": [1, 1]},
    ),
    (protocol.SEND, {"to": "bob@example.com", "body": "x", "client_id": "c", "attachments": [0]}),
    (protocol.SEND, {"to": "bob@example.com", "body": "x", "client_id": "c", "attachments": 5}),
    (protocol.DELIVERED, {"ids": []}),
    (protocol.READ, {"ids": [0]}),
    (protocol.HISTORY, {"with": "bob@example.com", "before": 1, "after": 2}),
    (protocol.SYNC, {"after": -1}),
    (protocol.PRESENCE, {"users": ["b" * 65]}),
    (protocol.BLOCK, {}),
    (protocol.UNBLOCK, {"user": 5}),
    (protocol.PRIVATE_MESSAGE, {"to": "bob@example.com", "from": "ann@example.com"}),
    (protocol.EDIT, {"id": 0, "body": "x", "client_id": "e"}),
    (protocol.EDIT, {"id": NO_SUCH_ID, "body": "x"}),
    (protocol.DELETE, {"id": NO_SUCH_ID, "for": "them"}),
    (protocol.DELETE, {"id": NO_SUCH_ID}),
    (protocol.REACT, {"id": NO_SUCH_ID, "emoji": "ok"}),
    (protocol.REACT, {"id": NO_SUCH_ID, "emoji": ""}),
    (protocol.REACT, {"id": NO_SUCH_ID, "emoji": "\N{THUMBS UP SIGN}" * 33}),
    (protocol.UNREACT, {"id": str(NO_SUCH_ID), "emoji": "\N{THUMBS UP SIGN}"}),
    (protocol.TYPING, {"to": "bob@example.com", "state": "yes"}),
    (protocol.TYPING, {"state": True}),
    (protocol.SEARCH, {"query": ""}),
    (protocol.SEARCH, {"query": "x" * (QUERY_MAX_CHARS + 1)}),
    (protocol.SEARCH, {"query": "ok", "limit": protocol.SEARCH_LIMIT_MAX + 1}),
    (protocol.SEARCH, {"query": "ok", "before": 0}),
]
ACCEPTED: list[tuple[str, Any]] = [
    (protocol.SEND, {"to": "Bob@Example.com", "body": "hi", "client_id": "c-9", "extra": 1}),
    (protocol.SEND, {"to": "bob@example.com", "body": "hi", "client_id": "c-8", "reply_to": None}),
    (protocol.SEND, {"to": "bob@example.com", "body": "hi", "client_id": "c-7", "attachments": []}),
    (
        protocol.SEND,
        {"to": "bob@example.com", "body": "hi", "client_id": "c-6", "attachments": None},
    ),
    (protocol.DELIVERED, {"ids": [1, 1]}),
    (protocol.READ, {"ids": [2]}),
    (protocol.HISTORY, {"with": "bob@example.com", "before": None, "after": 1, "limit": 100}),
    (protocol.SYNC, {"after": 0, "limit": None}),
    (protocol.PRESENCE, {"users": ["BOB@example.com"]}),
    (protocol.BLOCK, {"user": "bob@example.com"}),
    (protocol.UNBLOCK, {"user": "bob@example.com"}),
    (
        protocol.PRIVATE_MESSAGE,
        {"to": "bob@example.com", "from": "ann@example.com", "message": "x"},
    ),
    (protocol.EDIT, {"id": NO_SUCH_ID, "body": "x", "client_id": "e-1"}),
    (protocol.DELETE, {"id": NO_SUCH_ID, "for": "me"}),
    (protocol.DELETE, {"id": NO_SUCH_ID, "for": "everyone"}),
    # A skin tone, a ZWJ family, a flag, a keycap, a tag sequence: one emoji each.
    (
        protocol.REACT,
        {"id": NO_SUCH_ID, "emoji": "\N{THUMBS UP SIGN}\N{EMOJI MODIFIER FITZPATRICK TYPE-4}"},
    ),
    (protocol.REACT, {"id": NO_SUCH_ID, "emoji": "\N{WOMAN}\u200d\N{WOMAN}\u200d\N{GIRL}"}),
    (
        protocol.REACT,
        {
            "id": NO_SUCH_ID,
            "emoji": "\N{REGIONAL INDICATOR SYMBOL LETTER F}\N{REGIONAL INDICATOR SYMBOL LETTER R}",
        },
    ),
    (protocol.UNREACT, {"id": NO_SUCH_ID, "emoji": "1\ufe0f\u20e3"}),
    (
        protocol.UNREACT,
        {
            "id": NO_SUCH_ID,
            "emoji": "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
        },
    ),
    (protocol.TYPING, {"to": "BOB@example.com", "state": False}),
    (protocol.SEARCH, {"query": "hi", "with": "Bob@Example.com", "before": None, "limit": 50}),
]


async def test_real_socket_payloads_match_asyncapi(server: RunningServer, http: Http) -> None:
    """What a running server emits and answers validates against asyncapi.yaml, and
    the payloads the schemas accept or refuse are accepted or refused by the server."""
    document = asyncapi_document()
    await http.register(ANN)
    await http.register(BOB)
    ann_token = (await http.login(ANN))[1]["token"]
    bob_token = (await http.login(BOB))[1]["token"]
    bob = await Device(server.url).connect(bob_token)
    ann = await Device(server.url).connect(ann_token)
    seed = await Device(server.url).connect(bob_token, compat="seed", cursor=0)
    devices = [ann, bob, seed]
    try:
        for device in devices:
            await device.wait_synced()

        async def answered(device: Device, event: str, payload: Any) -> Any:
            answer = await device.call(event, payload)
            assert_valid(ack_validator(document, event), answer, f"{event} ack")
            return answer

        sent = await answered(ann, protocol.SEND, {"to": BOB, "body": "hi", "client_id": "c1"})
        assert sent["ok"], sent
        message_id = sent["message"]["id"]
        private = {"to": BOB, "from": ANN, "message": "yo"}
        assert (await answered(ann, protocol.PRIVATE_MESSAGE, private))["ok"]
        assert (await answered(ann, protocol.HISTORY, {"with": BOB, "limit": 1}))["ok"]
        assert (await answered(ann, protocol.SYNC, {"after": 0}))["ok"]
        assert (await answered(ann, protocol.PRESENCE, {"users": [BOB, ANN]}))["ok"]
        assert (await answered(ann, protocol.BLOCK, {"user": BOB}))["ok"]
        assert (await answered(ann, protocol.UNBLOCK, {"user": BOB}))["ok"]
        assert (await answered(bob, protocol.DELIVERED, {"ids": [message_id]}))["ok"]
        assert (await answered(bob, protocol.READ, {"ids": [message_id]}))["ok"]
        # Everything the schemas refuse, the server refuses for its shape (and says so
        # validly); what they accept, it does not (it may refuse it for other reasons:
        # the ids named need not exist).
        for event, payload in REFUSED:
            answer = await answered(ann, event, payload)
            assert answer["ok"] is False, (event, payload, answer)
            assert answer["error"]["code"] in SHAPE_ERRORS, (event, payload, answer)
        for event, payload in ACCEPTED:
            answer = await answered(ann, event, payload)
            assert answer["ok"] or answer["error"]["code"] not in SHAPE_ERRORS, (event, answer)
            if event == protocol.SEND:
                assert answer["ok"], answer
        failed = await answered(seed, protocol.SEND, {"to": 1})
        assert failed["ok"] is False
        # A photo sent alone: its Message lists it, a seed connection gets an empty body.
        photo = await upload_file(server.url, ann_token, small_png(64, 48), "image/png")
        alone = {"to": BOB, "body": "", "client_id": "c-photo", "attachments": [photo["id"]]}
        carried = await answered(ann, protocol.SEND, alone)
        assert carried["ok"] and carried["message"]["attachments"][0]["id"] == photo["id"]
        taken = await answered(ann, protocol.SEND, {**alone, "client_id": "c-photo-2"})
        assert taken["error"]["code"] == ErrorCode.NOT_FOUND.value, taken
        photo_message = carried["message"]["id"]

        await ann.wait_for(lambda: bool(ann.of(protocol.RECEIPT)))
        await seed.wait_for(
            lambda: photo_message in {m["id"] for m in seed.of(protocol.RECEIVED_MESSAGE)}
        )
        seen = {m["id"]: m for m in seed.of(protocol.RECEIVED_MESSAGE)}
        assert seen[photo_message]["message"] == "", seen[photo_message]
        await bob.wait_for(lambda: photo_message in {m["id"] for m in bob.messages()})
        await seed.wait_for(lambda: bool(seed.of(protocol.ERROR)))
        for device in devices:
            for name, payload in device.events:
                assert_valid(event_validator(document, name), payload, name)
        assert {name for name, _ in ann.events} >= {
            protocol.NEW_MESSAGE,
            protocol.RECEIPT,
            protocol.SYNCED,
        }
        assert {name for name, _ in seed.events} >= {
            protocol.RECEIVED_MESSAGE,
            protocol.SYNCED,
            protocol.ERROR,
        }

        refused = Device(server.url)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await refused.connect("not-a-token")
        connect_error = component_validator(document, "#/components/schemas/ConnectError")
        assert_valid(connect_error, refused.connect_error, "connect_error")
        auth = component_validator(document, "#/components/schemas/HandshakeAuth")
        assert_valid(auth, {"token": ann_token, "cursor": 0, "compat": "seed"}, "auth")
    finally:
        for device in devices:
            await device.disconnect()


async def upload_file(url: str, token: str, data: bytes, content_type: str) -> Any:
    """An upload, as a client makes it (the HTTP side is checked by the OpenAPI test)."""
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{url}/api/v1/attachments",
            params={"name": "photo.png"},
            data=data,
            headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
        ) as response:
            assert response.status == 201, await response.text()
            return await response.json()


async def validated_call(document: dict[str, Any], device: Device, event: str, payload: Any) -> Any:
    """The server's answer to an event, valid against the event's acknowledgement."""
    answer = await device.call(event, payload)
    assert_valid(ack_validator(document, event), answer, f"{event} ack")
    return answer


def updates(device: Device) -> list[str]:
    return [event["change"] for event in device.of(protocol.MESSAGE_UPDATED)]


def typed(device: Device, by: str) -> bool:
    """`by` was seen typing and then stopping."""
    notices = device.of(protocol.TYPING)
    return bool(notices) and notices[-1] == {"from": by, "state": False} and len(notices) >= 2


async def assert_replays_current_state(call: Call, device: Device) -> None:
    """`sync` from the start shows the stream's messages as they are now: one the
    device saw deleted (for everyone, or hidden) never shows a body (3.3)."""
    synced = await call(device, protocol.SYNC, {"after": 0})
    assert protocol.MESSAGE_UPDATED in {entry["event"] for entry in synced["events"]}
    gone = {
        e["message"]["id"] for e in device.of(protocol.MESSAGE_UPDATED) if e["message"]["deleted"]
    }
    assert gone, device.events
    for entry in synced["events"]:
        message = entry["data"].get("message")
        if message is not None and message["id"] in gone:
            assert message["deleted"] and message["body"] is None, entry


async def test_lifecycle_payloads_match_asyncapi(server: RunningServer, http: Http) -> None:
    """Edits, deletes, reactions, replies and typing, as a running server answers them
    and pushes them, live and replayed (the backlog, `sync`), validate against
    asyncapi.yaml; a `compat: "seed"` connection gets none of the new events."""
    document = asyncapi_document()
    call = functools.partial(validated_call, document)
    tokens = {}
    for name in (ANN, BOB):
        assert (await http.register(name))[0] == 201
        tokens[name] = (await http.login(name))[1]["token"]
    ann = await Device(server.url).connect(tokens[ANN])
    bob = await Device(server.url).connect(tokens[BOB])
    seed = await Device(server.url).connect(tokens[BOB], compat="seed")
    replay = Device(server.url)
    devices = [ann, bob, seed, replay]
    try:
        for device in (ann, bob, seed):
            await device.wait_synced()
        await live_conversation(ann, bob, call)
        first = ann.messages()[0]["id"]
        for event in (protocol.REACT, protocol.UNREACT):
            assert (await call(bob, event, {"id": first, "emoji": "\N{PARTY POPPER}"}))["ok"]
        for typist, to in ((bob, ANN), (ann, BOB)):
            for state in (True, False):
                answer = await call(typist, protocol.TYPING, {"to": to, "state": state})
                assert answer == {"ok": True}, answer
        # ann: edited x2, deleted, reacted x3, and hidden in her stream only.
        await ann.wait_for(lambda: len(updates(ann)) >= 7 and typed(ann, BOB))
        await bob.wait_for(lambda: len(updates(bob)) >= 6 and typed(bob, ANN))
        assert sorted(updates(ann)) == sorted(
            ["edited"] * 2 + ["deleted", "hidden"] + ["reacted"] * 3
        )
        assert "hidden" not in updates(bob)

        for device, other in ((ann, BOB), (bob, ANN)):
            await assert_replays_current_state(call, device)
            page = await call(device, protocol.HISTORY, {"with": other})
            assert page["ok"] and all("hidden" not in m for m in page["messages"]), page
        await replay.connect(tokens[ANN], cursor=0)
        await replay.wait_synced()
        cursors = [e["cursor"] for e in ann.of(protocol.MESSAGE_UPDATED)]
        assert [e["cursor"] for e in replay.of(protocol.MESSAGE_UPDATED)] == cursors

        for device in devices:
            for name, payload in device.events:
                assert_valid(event_validator(document, name), payload, name)
        seen_by_seed = {name for name, _ in seed.events}
        assert seen_by_seed <= {protocol.RECEIVED_MESSAGE, protocol.RECEIPT, protocol.SYNCED}
    finally:
        for device in devices:
            await device.disconnect()
