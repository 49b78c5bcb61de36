"""Hypothesis fuzzing of every Socket.IO event, the handshake, every HTTP route and raw
Engine.IO frames, against one real server per test (G8).

Properties: the server never crashes, never answers 5xx or `internal` to bad input,
every answer has the documented shape, and stored data changes only as the valid
inputs among the random ones say (compared table by table after every example).

Hypothesis is synchronous and the server lives on the test's event loop, so the
property runs in a worker thread and hands each coroutine to the loop with
`asyncio.run_coroutine_threadsafe`: one loop, one server, many examples.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import pytest
import socketio
import yarl
from hypothesis import HealthCheck, Phase, example, given, note
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from messenger.node import max_packet_bytes
from tests.support import (
    PASSWORD,
    STREAM_QUERIES,
    Account,
    Device,
    Http,
    RunningServer,
    Scene,
    Snapshot,
    read_tables,
    two_way_scene,
    websocket_url,
)

T = TypeVar("T")
NOBODY = "nobody@example.com"
FOREIGN = "http://evil.example"
EVENTS = [
    "send",
    "privateMessage",
    "delivered",
    "read",
    "history",
    "sync",
    "presence",
    "block",
    "unblock",
    "edit",
    "delete",
    "react",
    "unreact",
    "typing",
    "search",
]
# Names Socket.IO reserves: a client emitting them gets no acknowledgement by design
# (test_bad_input covers them).
RESERVED = {"connect", "disconnect", "connect_error"}
# The codes a failed event may carry when the input is at fault; never internal,
# unavailable, unauthorized, or rate_limited (the limit is off here).
ALLOWED_CODES: dict[str, set[str]] = {
    "send": {"invalid", "not_found", "too_large"},
    "privateMessage": {"invalid", "not_found", "too_large", "forbidden"},
    "delivered": {"invalid", "too_large"},
    "read": {"invalid", "too_large"},
    "history": {"invalid", "not_found"},
    "sync": {"invalid"},
    "presence": {"invalid", "not_found", "too_large"},
    "block": {"invalid", "not_found"},
    "unblock": {"invalid", "not_found"},
    # The fuzzer's changes name only messages that are not its own (`foreign`).
    "edit": {"invalid", "not_found", "too_large"},
    "delete": {"invalid", "not_found"},
    "react": {"invalid", "not_found"},
    "unreact": {"invalid", "not_found"},
    "typing": {"invalid", "not_found"},
    "search": {"invalid", "not_found"},
}
OK_KEYS: dict[str, set[str]] = {
    "delivered": {"ok", "updated"},
    "read": {"ok", "updated"},
    "history": {"ok", "messages", "has_more"},
    "sync": {"ok", "events", "cursor", "has_more"},
    "search": {"ok", "results", "has_more"},
    "presence": {"ok", "users"},
    "block": {"ok"},
    "unblock": {"ok"},
    "typing": {"ok"},
}
STATUS_CODES = {
    400: {"invalid"},
    401: {"unauthorized", "bad_credentials"},
    403: {"forbidden"},
    404: {"not_found"},
    405: {"invalid"},
    409: {"username_taken"},
    413: {"too_large"},
    429: {"rate_limited"},
}
# No shrinking: a failing example is reported as found (its message names the exact
# input), which keeps a failing run within the time budget.
FUZZ_SETTINGS = hsettings(
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)

# -- data checksums ------------------------------------------------------------------

SNAPSHOT_QUERIES = {
    **STREAM_QUERIES,
    "messages": "SELECT id, sender_id, recipient_id, body, client_id, status,"
    " delivered_at, read_at, recipient_seq, reply_to_id, edited_at, deleted_at,"
    " read_private FROM messages ORDER BY id",
    "reactions": "SELECT message_id, user_id, emoji FROM reactions ORDER BY 1, 2, 3",
    "hidden_messages": "SELECT user_id, message_id FROM hidden_messages ORDER BY 1, 2",
    "edit_keys": "SELECT message_id, client_id FROM edit_keys ORDER BY 1, 2",
    "settings": "SELECT id, read_receipts FROM users ORDER BY id",
    "attachments": "SELECT id, uploader_id, message_id FROM attachments ORDER BY id",
    "tokens": "SELECT count(*), count(revoked_at) FROM tokens",
}


async def snapshot(engine: AsyncEngine) -> Snapshot:
    """Every stored fact bad input could touch (users.last_seen moves with connects)."""
    return await read_tables(engine, SNAPSHOT_QUERIES)


def checksum(data: Snapshot) -> str:
    return hashlib.sha256(repr(sorted(data.items())).encode()).hexdigest()[:16]


@pytest.fixture
async def tables(server: RunningServer) -> AsyncIterator[AsyncEngine]:
    """A separate engine that reads the server's database."""
    engine = create_async_engine(server.settings.database_url)
    yield engine
    await engine.dispose()


# -- the bridge from Hypothesis's thread to the server's loop -------------------------


@dataclass
class Bridge:
    loop: asyncio.AbstractEventLoop
    cases: int = 0

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


async def fuzz(property_runner: Callable[[Bridge], None]) -> int:
    """Runs a Hypothesis property in a worker thread against this loop; returns the
    number of fuzz cases it sent."""
    bridge = Bridge(asyncio.get_running_loop())
    await asyncio.to_thread(property_runner, bridge)
    return bridge.cases


def report(capsys: pytest.CaptureFixture[str], what: str, cases: int, backend: str) -> None:
    with capsys.disabled():
        print(f"\n[fuzz] {what} ({backend}): {cases} cases tried")


# -- strategies -----------------------------------------------------------------------

# Any code point, lone surrogates and NUL included.
any_char = st.characters(codec=None, exclude_categories=())
any_text = st.text(any_char, max_size=40)
nasty_text = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\ud800",
        "lone \udfff tail",
        "\ud83d\ude00",  # a pair written as two surrogates: Python keeps them separate
        "😀",
        "e\u0301",
        "\u202eevil",
        "\ufeff",
        "\uffff",
        "'; DROP TABLE messages; --",
        "%00",
        "../../etc/passwd",
        "null",
        "true",
        "0",
        "-1",
        "1e999",
        "NaN",
    ]
)
long_text = st.builds(
    lambda char, n: char * n,
    st.sampled_from(["x", "é", "\x00", "\ud800", "😀"]),
    st.sampled_from([63, 64, 65, 255, 256, 257, 4095, 4096, 4097]),
)
huge_ints = st.sampled_from(
    [0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30, -(10**40)]
)
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1.0, 1.5])
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | huge_ints
    | floats
    | any_text
    | nasty_text
    | long_text
)
junk: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(any_text | nasty_text, children, max_size=6)
    ),
    max_leaves=15,
)
username_like = st.from_regex(r"[a-zA-Z0-9._%+@-]{1,70}", fullmatch=True)


def names_of(*names: str) -> st.SearchStrategy[str]:
    """A user's name as clients might write it: exact, upper-case, padded."""
    return st.sampled_from(names).flatmap(
        lambda n: st.sampled_from([n, n.upper(), f" {n}", f"{n}\x00", n[:2], n * 2])
    )


def field_value(*plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(junk, *plausible)


# -- Socket.IO events -----------------------------------------------------------------


@pytest.fixture
async def scene(server: RunningServer, http: Http) -> AsyncIterator[Scene]:
    """Ann and bob with a message each way; bob's incoming message is already read,
    so no `delivered`/`read` of bob's can change a status. Bob is the fuzzer."""
    scene = await two_way_scene(server, http)
    assert (await scene.b.call("read", {"ids": [scene.to_bob]}))["updated"] == 1
    await scene.a.wait_for(lambda: len(scene.a.of("receipt")) == 1)
    yield scene
    await scene.close()


def event_payloads(scene: Scene, foreign: int) -> st.SearchStrategy[tuple[str, list[Any]]]:
    """(event, args): shaped payloads with random fields, or anything at all. Changes
    name a message of someone else's conversation (`foreign`), or no message, so
    none may succeed; typing names anyone but ann (who must hear nothing)."""
    me, ann = scene.bob.username, scene.ann.username
    users = field_value(names_of(me, ann, NOBODY), username_like)
    # A send's recipient is never ann, so no random send can be stored.
    recipients = field_value(names_of(me, NOBODY), username_like).map(
        lambda v: NOBODY if isinstance(v, str) and v.lower() == ann else v
    )
    bodies = field_value(st.text(any_char, min_size=1, max_size=20), long_text)
    client_ids = field_value(st.text(any_char, min_size=1, max_size=70))
    ids = field_value(
        st.lists(
            field_value(st.sampled_from(scene.ids), st.integers(-5, 2**63 + 5)),
            max_size=8,
        ),
        st.builds(lambda n: [scene.ids[0]] * n, st.sampled_from([499, 500, 501, 1000])),
    )
    # Never one of the scene's own messages (ids start at 1 in a new database).
    message_ids = field_value(
        st.sampled_from([foreign, 10**12]), huge_ints.filter(lambda v: v not in scene.ids)
    )
    emojis = field_value(st.sampled_from(["👍", "👍🏽", "👨‍👩‍👧", "🇫🇷", "1️⃣", "👍👍", "a"]))
    states = field_value(st.booleans())
    cursors = field_value(st.integers(-5, 50), huge_ints)
    limits = field_value(st.integers(-2, 600))
    extra = st.dictionaries(any_text, junk, max_size=2)

    def shaped(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.builds(
            lambda base, more: {**more, **base},
            st.fixed_dictionaries({}, optional=fields),
            extra,
        )

    shapes: dict[str, st.SearchStrategy[Any]] = {
        "send": shaped(
            to=recipients,
            body=bodies,
            client_id=client_ids,
            attachments=field_value(
                st.lists(
                    field_value(st.sampled_from([foreign, foreign + 1]), st.integers(-5, 50)),
                    max_size=12,
                )
            ),
            **{"from": users},
        ),
        "privateMessage": shaped(
            to=recipients, message=bodies, client_id=client_ids, **{"from": users}
        ),
        "delivered": shaped(ids=ids),
        "read": shaped(ids=ids),
        "history": shaped(**{"with": users}, before=cursors, after=cursors, limit=limits),
        "sync": shaped(after=cursors, limit=limits),
        "presence": shaped(
            users=field_value(
                st.lists(users, max_size=5),
                st.builds(lambda n: [ann] * n, st.sampled_from([100, 101, 500])),
            )
        ),
        "block": shaped(user=users),
        "unblock": shaped(user=users),
        "edit": shaped(id=message_ids, body=bodies, client_id=client_ids),
        "delete": shaped(
            id=message_ids, **{"for": field_value(st.sampled_from(["me", "everyone"]))}
        ),
        "react": shaped(id=message_ids, emoji=emojis),
        "unreact": shaped(id=message_ids, emoji=emojis),
        "typing": shaped(to=recipients, state=states),
        "search": shaped(
            query=field_value(bodies | st.sampled_from(["hello", "é 東京", "x" * 256, "a b"])),
            **{"with": users},
            before=cursors,
            limit=limits,
        ),
    }
    unknown = (
        any_text | nasty_text | st.sampled_from(["Send", "SEND", "send ", "message"])
    ).filter(lambda name: name not in RESERVED and name not in EVENTS)

    def with_args(event: str) -> st.SearchStrategy[tuple[str, list[Any]]]:
        one = shapes.get(event, junk) | junk
        args = st.one_of(
            st.tuples(one).map(list),
            st.just([]),
            st.lists(one, min_size=2, max_size=3),
        )
        return st.tuples(st.just(event), args)

    return st.one_of(
        st.sampled_from(EVENTS).flatmap(with_args),
        unknown.flatmap(with_args),
    )


def packet_size(event: str, args: list[Any]) -> int:
    """Bytes of the Socket.IO EVENT packet the client would send."""
    return len(json.dumps([event, *args])) + 16


def check_event_answer(event: str, answer: Any) -> str | None:
    """None if the answer has the documented shape for a rejected or harmless event."""
    if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
        return "not an {ok: bool} object"
    if answer["ok"] is False:
        error = answer.get("error")
        if set(answer) != {"ok", "error"} or not isinstance(error, dict):
            return "failure without exactly {ok, error}"
        if set(error) != {"code", "message"} or not isinstance(error["message"], str):
            return "error without exactly {code, message}"
        if error["code"] not in ALLOWED_CODES.get(event, {"invalid"}):
            return f"code {error['code']!r} is not one bad input may get"
        return None
    if event not in OK_KEYS:
        return "a send or an unknown event succeeded"
    if set(answer) != OK_KEYS[event]:
        return f"keys {sorted(answer)} instead of {sorted(OK_KEYS[event])}"
    if event in ("delivered", "read") and answer["updated"] != 0:
        return "marking changed a status, though every message bob may mark is read"
    return None


def blocks_ann(event: str, args: list[Any], ann: str) -> bool | None:
    """The block state a valid block/unblock of ann leaves; None for other events."""
    if event not in ("block", "unblock") or len(args) != 1 or not isinstance(args[0], dict):
        return None
    user = args[0].get("user")
    if isinstance(user, str) and user.lower() == ann:
        return event == "block"
    return None


async def foreign_message(scene: Scene) -> int:
    """The id of a message between ann and a third user: not the fuzzer's (bob's).
    Ann also has an upload waiting (among the small ids the fuzzer's sends name):
    bob can never send it."""
    async with aiohttp.ClientSession() as session:
        made = await session.post(
            f"{scene.server.url}/api/v1/attachments",
            data=b"ann's file",
            headers={"Authorization": f"Bearer {scene.ann.token}"},
        )
        assert made.status == 201, await made.text()
    carl = await Http(scene.server.url).account("carl")
    sent = await scene.a.send(carl.username, "not for bob", "foreign-1")
    assert sent["ok"], sent
    foreign = int(sent["message"]["id"])
    await scene.a.wait_for(lambda: any(m["id"] == foreign for m in scene.a.messages()))
    return foreign


async def test_fuzz_socket_events(
    scene: Scene, tables: AsyncEngine, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Random payloads for every event (and unknown ones) get a well-formed answer with
    an allowed code; nothing stored changes beyond what a valid block/unblock of ann
    means; the connection stays up; ann hears nothing."""
    ann, bob = scene.ann.username, scene.bob.username
    limit = max_packet_bytes(scene.server.settings)
    foreign = await foreign_message(scene)
    ids = await snapshot(tables)
    user_id = {name: uid for uid, name, _ in ids["users"]}
    start = await snapshot(tables)
    ann_events = len(scene.a.events)
    state = {"blocked": False, "snapshot": start}

    def run(bridge: Bridge) -> None:
        @hsettings(FUZZ_SETTINGS, max_examples=150)
        @given(st.lists(event_payloads(scene, foreign), min_size=1, max_size=6))
        def prop(batch: list[tuple[str, list[Any]]]) -> None:
            for event, args in batch:
                if packet_size(event, args) > limit - 64:
                    continue  # oversized packets close the connection: see the raw tests
                bridge.cases += 1
                note(f"{event} {args!r:.300}")
                data: Any = args[0] if len(args) == 1 else tuple(args)
                answer = bridge.run(scene.b.sio.call(event, data, timeout=10))
                problem = check_event_answer(event, answer)
                assert problem is None, f"{event} {args!r:.300}: {problem}: {answer!r:.300}"
                change = blocks_ann(event, args, ann)
                if change is not None:
                    assert answer == {"ok": True}, answer
                    state["blocked"] = change
            after = bridge.run(snapshot(tables))
            expected = dict(state["snapshot"])
            expected["blocks"] = [(user_id[bob], user_id[ann])] if state["blocked"] else []
            assert after == expected, (
                f"stored data changed: {checksum(expected)} -> {checksum(after)}"
            )
            assert scene.b.sio.connected

        prop()

    cases = await fuzz(run)
    report(capsys, "socket events", cases, backend)
    assert scene.b.sio.connected
    assert len(scene.a.events) == ann_events, scene.a.events[ann_events:]
    # Still fully usable: a valid send is stored and pushed.
    await scene.b.call("unblock", {"user": ann})
    answer = await scene.b.send(ann, "after the fuzz", "after-fuzz")
    assert answer["ok"], answer
    await scene.a.wait_for(lambda: any(m["body"] == "after the fuzz" for m in scene.a.messages()))


# Text every database stores faithfully: no NUL, no lone surrogates.
storable_char = st.characters(codec="utf-8", exclude_characters="\x00")


async def test_fuzz_valid_sends_round_trip(
    scene: Scene, tables: AsyncEngine, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Valid sends with arbitrary Unicode bodies and client ids (emoji, RTL, combining
    marks, the longest allowed) change exactly what they should: one message row with
    the body byte for byte, one stream event and seq step for each of the two users."""
    ann, bob = scene.ann.username, scene.bob.username
    max_body = scene.server.settings.max_body
    counter = iter(range(10**9))

    def run(bridge: Bridge) -> None:
        @hsettings(FUZZ_SETTINGS, max_examples=40)
        @given(
            body=st.text(storable_char, min_size=1, max_size=200)
            | st.builds(lambda c: c * max_body, storable_char),
            tail=st.text(storable_char, max_size=50),
        )
        def prop(body: str, tail: str) -> None:
            bridge.cases += 1
            client_id = f"{next(counter)}-{tail}"[:64]
            before = bridge.run(snapshot(tables))
            if not scene.b.sio.connected:  # an earlier example lost it: start afresh
                scene.b = bridge.run(Device(scene.server.url).connect(scene.bob.token))
            try:
                answer = bridge.run(
                    scene.b.call(
                        "send", {"to": ann, "body": body, "client_id": client_id}, timeout=3
                    )
                )
            except socketio.exceptions.TimeoutError:
                raise AssertionError(
                    f"a valid send of {len(body)} characters ({len(json.dumps(body))} bytes"
                    f" as JSON) was not answered; connected: {scene.b.sio.connected}"
                ) from None
            assert answer["ok"], answer
            message = answer["message"]
            assert (message["body"], message["client_id"], message["from"], message["to"]) == (
                body,
                client_id,
                bob,
                ann,
            )
            after = bridge.run(snapshot(tables))
            new = [row for row in after["messages"] if row not in before["messages"]]
            assert len(new) == 1 and new[0][3] == body and new[0][4] == client_id, new
            assert after["messages"][:-1] == before["messages"]
            seqs = {name: seq for _, name, seq in before["users"]}
            assert [(n, s) for _, n, s in after["users"]] == [
                (n, seqs[n] + (1 if n in (ann, bob) else 0)) for _, n, _ in before["users"]
            ]
            assert len(after["stream_events"]) == len(before["stream_events"]) + 2
            assert (after["blocks"], after["tokens"]) == (before["blocks"], before["tokens"])

        prop()

    cases = await fuzz(run)
    report(capsys, "valid sends", cases, backend)
    # What was stored is what history gives back.
    answer = await scene.a.call("history", {"with": bob, "limit": 100})
    assert answer["ok"], answer
    assert all(isinstance(m["body"], str) and m["body"] for m in answer["messages"])


# -- the handshake --------------------------------------------------------------------


async def test_fuzz_handshake_auth(
    server: RunningServer,
    http: Http,
    tables: AsyncEngine,
    backend: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Random auth objects (tokens of every type and text, cursors, compat) are refused
    with connect_error {"code": "unauthorized"}; the real token with random extras
    connects. Nothing stored changes but last_seen."""
    ann = await http.account("ann")
    limit = max_packet_bytes(server.settings)
    before = await snapshot(tables)
    tokens = field_value(
        st.sampled_from(
            [
                ann.token,
                ann.token.upper(),
                ann.token + "x",
                ann.token[:-1],
                "\ud800" * 20,
                ann.token[:-1] + "\udcff",
                ann.token + "\x00",
            ]
        ),
        st.text(any_char, min_size=16, max_size=300),
    )
    auth = st.one_of(
        junk,
        st.builds(
            lambda base, more: {**more, **base},
            st.fixed_dictionaries(
                {},
                optional={
                    "token": tokens,
                    "cursor": field_value(huge_ints),
                    "compat": field_value(st.just("seed")),
                },
            ),
            st.dictionaries(any_text, junk, max_size=2),
        ),
    )

    async def attempt(value: Any) -> tuple[bool, Any]:
        client = socketio.AsyncClient(reconnection=False)
        errors: list[Any] = []
        client.on("connect_error", errors.append)
        try:
            await client.connect(server.url, auth=value, transports=["websocket"], wait_timeout=3)
        except socketio.exceptions.ConnectionError as exc:
            return False, errors[0] if errors else repr(exc)
        await client.disconnect()
        return True, None

    def run(bridge: Bridge) -> None:
        @hsettings(FUZZ_SETTINGS, max_examples=60)
        @given(auth)
        @example({"token": "\ud800" * 20})  # not Unicode text: found by this fuzz
        def prop(value: Any) -> None:
            if len(json.dumps(value)) > limit - 64:
                return  # oversized packets close the connection: see the raw tests
            bridge.cases += 1
            connected, error = bridge.run(attempt(value))
            valid = isinstance(value, dict) and value.get("token") == ann.token
            assert connected == valid, (value, error)
            if not connected:
                assert isinstance(error, dict) and error.get("code") == "unauthorized", (
                    f"auth {value!r:.200} refused without connect_error unauthorized: {error!r}"
                )

        prop()

    cases = await fuzz(run)
    report(capsys, "handshake auth", cases, backend)
    assert await snapshot(tables) == before


# -- HTTP routes ----------------------------------------------------------------------


@dataclass
class HttpCase:
    method: str
    path: str  # already percent-encoded
    headers: dict[str, str]
    json_body: Any = None
    raw_body: bytes | None = None
    token: str | None = None


def encode(value: str) -> str:
    """Percent-encode any text, lone surrogates as the invalid UTF-8 they make."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def query_strings() -> st.SearchStrategy[str]:
    keys = st.sampled_from(["before", "after", "limit", "with", "q", "x", ""]) | any_text
    values = (
        st.integers(-(2**70), 2**70).map(str)
        | huge_ints.map(str)
        | any_text
        | nasty_text
        | st.sampled_from(["\uff11\uff12", "\u0663", "1.5", "+1", " 1", "1e3", "0x10", "9" * 30])
    )
    pairs = st.lists(st.tuples(keys, values), max_size=4)
    return pairs.map(
        lambda items: (
            ("?" + "&".join(f"{encode(k)}={encode(v)}" for k, v in items)) if items else ""
        )
    )


header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60
)


def http_cases(me: Account, existing: list[str]) -> st.SearchStrategy[HttpCase]:
    names = field_value(names_of(*existing, NOBODY), username_like)
    passwords = field_value(
        st.sampled_from(["short", "x" * 7, "x" * 257, "pass\x00word", "pass\ud800word"]),
        st.text(any_char, min_size=8, max_size=20),
    )
    credentials = st.builds(
        lambda base, more: {**more, **base},
        st.fixed_dictionaries({}, optional={"username": names, "password": passwords}),
        st.dictionaries(any_text, junk, max_size=2),
    )
    content_types = st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=latin-1",
            "application/json; charset=utf-16",
            "application/json; charset=no-such-charset",
            "application/json; charset=rot13",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=xyz",
            "",
        ]
    )
    raw_bodies = st.one_of(
        st.binary(max_size=200),
        st.text(any_char, max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.sampled_from([b"", b"{", b"[]", b"null", b'{"username": NaN}', b"\xff\xfe{}"]),
        junk.map(lambda v: json.dumps(v).encode()),
    )
    auth_headers = st.one_of(
        st.none(),
        st.just(f"Bearer {me.token}"),
        header_text,
        header_text.map(lambda t: f"Bearer {t}"),
        st.sampled_from(
            ["Bearer", "Bearer ", "bearer  x", "Basic abc", "Bearer \xff\xfe" + "a" * 20]
        ),
    )
    origins = st.sampled_from([None, None, None, FOREIGN, "null", ""])

    def headers(auth: str | None, origin: str | None, content_type: str | None) -> dict[str, str]:
        out: dict[str, str] = {}
        if auth is not None:
            out["Authorization"] = auth
        if origin is not None:
            out["Origin"] = origin
        if content_type is not None:
            out["Content-Type"] = content_type
        return out

    body_case = st.builds(
        lambda method, path, creds, raw, use_raw, ct, origin: HttpCase(
            method,
            path,
            headers(None, origin, ct if use_raw else None),
            None if use_raw else creds,
            raw if use_raw else None,
        ),
        st.sampled_from(["POST", "POST", "POST", "GET", "PUT"]),
        st.sampled_from(["/api/v1/users", "/api/v1/sessions"]),
        st.one_of(credentials, junk),
        raw_bodies,
        st.booleans(),
        content_types,
        origins,
    )
    authed_case = st.builds(
        lambda method, path, query, auth, origin: HttpCase(
            method, path + query, headers(auth, origin, None)
        ),
        st.sampled_from(["GET", "GET", "GET", "DELETE", "POST"]),
        st.one_of(
            st.just("/api/v1/conversations"),
            st.just("/api/v1/search"),
            st.one_of(names, any_text, nasty_text).map(
                lambda u: f"/api/v1/conversations/{encode(as_text(u))}/messages"
            ),
        ),
        query_strings(),
        auth_headers,
        origins,
    )
    logout_case = st.builds(
        lambda auth: HttpCase("DELETE", "/api/v1/sessions/current", headers(auth, None, None)),
        auth_headers.filter(lambda a: a is None or me.token not in a),
    )
    open_case = st.builds(
        lambda method, path, query: HttpCase(method, path + query, {}),
        st.sampled_from(["GET", "GET", "POST", "DELETE"]),
        st.sampled_from(["/healthz", "/metrics", "/", "/api/v1", "/api/v1/nope"])
        | any_text.map(lambda t: "/" + encode(t))
        | st.sampled_from(
            ["../../../../etc/passwd", "..%2f..%2f..%2fetc%2fpasswd", "%2e%2e/x"]
        ).map(lambda t: "/static/" + t),
        query_strings(),
    )
    # aiohttp's parser answers a request line over 8190 bytes itself, in plain text,
    # before any middleware (see the report); the fuzz stays below that.
    return st.one_of(body_case, authed_case, logout_case, open_case).filter(
        lambda case: len(case.path) < 4000
    )


def check_http_answer(case: HttpCase, status: int, content_type: str, body: Any) -> str | None:
    if status >= 500:
        return f"status {status}"
    if status in (200, 201, 204):
        if case.method == "GET" and (
            case.path.split("?")[0] in ("/", "") or case.path.startswith("/static/")
        ):
            # The web client's page and files; never a file from outside its directory.
            return "a file outside the web build" if "root:" in str(body) else None
        if case.path.startswith("/metrics"):
            return None if content_type.startswith("text/plain") else "metrics not text"
        if case.path.startswith("/healthz"):
            return None if body == {"status": "ok"} else "healthz shape"
        if case.path.startswith("/api/v1/conversations/"):
            ok = isinstance(body, dict) and set(body) == {"messages", "has_more"}
            return None if ok else "history shape"
        if case.path.startswith("/api/v1/conversations"):
            ok = isinstance(body, dict) and set(body) == {"conversations"}
            return None if ok else "conversations shape"
        if case.path.startswith("/api/v1/search?") and case.method == "GET":
            ok = isinstance(body, dict) and set(body) == {"results", "has_more"}
            return None if ok else "search shape"
        if case.path == "/api/v1/users" and status == 201:
            ok = isinstance(body, dict) and set(body) == {"user"}
            return None if ok else "register shape"
        return f"unexpected success {status}"
    if content_type != "application/json" or not isinstance(body, dict):
        return "error body is not JSON"
    error = body.get("error")
    if set(body) != {"error"} or not isinstance(error, dict) or set(error) != {"code", "message"}:
        return "error body is not exactly {error: {code, message}}"
    if error["code"] not in STATUS_CODES.get(status, set()):
        return f"code {error['code']!r} with status {status}"
    return None


async def send_http(
    session: aiohttp.ClientSession, url: str, case: HttpCase
) -> tuple[int, str, Any]:
    kwargs: dict[str, Any] = {"headers": case.headers}
    if case.raw_body is not None:
        kwargs["data"] = case.raw_body
    elif case.json_body is not None:
        kwargs["data"] = json.dumps(case.json_body).encode()
        kwargs["headers"] = {"Content-Type": "application/json", **case.headers}
    target = yarl.URL(url + case.path, encoded=True)
    async with session.request(case.method, target, **kwargs) as response:
        raw = await response.read()
        content_type = response.content_type
        body: Any = raw.decode("utf-8", "replace")
        if content_type == "application/json":
            body = json.loads(raw)
        return response.status, content_type, body


async def test_fuzz_http_routes(
    server: RunningServer,
    http: Http,
    tables: AsyncEngine,
    backend: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Random methods, paths, query strings, headers and bodies on every route: never a
    5xx, every error is {"error": {"code", "message"}} with the code its status
    means, successes have their shape, and stored data changes only by the users a
    201 names (a random valid username with a random valid password)."""
    me = await http.account("me")
    other = await http.account("other")
    start = await snapshot(tables)
    created: set[str] = set()

    async def one(session: aiohttp.ClientSession, case: HttpCase) -> tuple[int, str, Any]:
        return await send_http(session, server.url, case)

    def run(bridge: Bridge) -> None:
        session = bridge.run(_session())

        @hsettings(FUZZ_SETTINGS, max_examples=200)
        @given(http_cases(me, [me.username, other.username]))
        @example(  # found by this fuzz
            HttpCase(
                "POST",
                "/api/v1/sessions",
                {"Content-Type": "application/json; charset=no-such-charset"},
                raw_body=b"{}",
            )
        )
        def prop(case: HttpCase) -> None:
            bridge.cases += 1
            note(repr(case)[:400])
            status, content_type, body = bridge.run(one(session, case))
            problem = check_http_answer(case, status, content_type, body)
            assert problem is None, f"{case!r:.400}: {problem}: {status} {body!r:.300}"
            if case.path == "/api/v1/users" and status == 201:
                created.add(body["user"]["username"])
            after = bridge.run(snapshot(tables))
            users = [row for row in after["users"] if row[1] not in created]
            assert users == start["users"], "users changed"
            assert sorted(row[1] for row in after["users"] if row[1] in created) == sorted(created)
            assert all(row[2] == 0 for row in after["users"] if row[1] in created)
            # A created user's settings row is new too: compare the others' only.
            known = {row[0] for row in start["users"]}
            after["settings"] = [row for row in after["settings"] if row[0] in known]
            rest = {k: v for k, v in after.items() if k != "users"}
            assert rest == {k: v for k, v in start.items() if k != "users"}, (
                f"stored data changed: {checksum(start)} -> {checksum(after)}"
            )

        try:
            prop()
        finally:
            bridge.run(session.close())

    cases = await fuzz(run)
    report(capsys, "http routes", cases, backend)
    status, body = await http.request("GET", "/api/v1/conversations", token=me.token)
    assert status == 200, body


async def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()


async def test_unknown_charset_is_invalid_not_internal(http: Http) -> None:
    """A JSON body declared in a charset Python does not know is bad input (400), not a
    server failure (found by the fuzzer)."""
    for path in ("/api/v1/users", "/api/v1/sessions"):
        for charset in ("no-such-charset", "rot13"):
            status, body = await http.request(
                "POST",
                path,
                data=json.dumps({"username": "ann@x.com", "password": PASSWORD}).encode(),
                headers={"Content-Type": f"application/json; charset={charset}"},
            )
            assert status == 400 and body["error"]["code"] == "invalid", (path, charset, body)


async def test_non_utf8_bearer_token_is_unauthorized(server: RunningServer) -> None:
    """An Authorization header with bytes that are not UTF-8 is 401 unauthorized, not 500
    (found by the fuzzer). Written on a raw socket: clients refuse to send such bytes."""
    port = int(server.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /api/v1/conversations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer \xff\xfeabcdefghijklmnopqrstuvwxyz\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401"), response
    assert json.loads(body)["error"]["code"] == "unauthorized", body


# -- raw Engine.IO / Socket.IO frames -------------------------------------------------


class RawSocket:
    """A Socket.IO connection spoken by hand over aiohttp's websocket client."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.closed = False

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, url: str, token: str | None) -> RawSocket:
        ws = await session.ws_connect(websocket_url(url), max_msg_size=0, autoping=True)
        raw = cls(ws)
        opened = await raw.receive(5)
        assert isinstance(opened, str) and opened.startswith("0{"), opened
        if token is not None:
            await raw.ws.send_str("40" + json.dumps({"token": token}))
            answer = await raw.until(lambda f: f.startswith("40") or f.startswith("44"), 5)
            assert answer is not None and answer.startswith('40{"sid"'), answer
        return raw

    async def receive(self, timeout: float) -> str | bytes | None:
        """The next frame; None on timeout; sets `closed` when the server closed."""
        if self.closed:
            return None
        try:
            message = await self.ws.receive(timeout=timeout)
        except TimeoutError:
            return None
        if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            return message.data  # type: ignore[no-any-return]
        self.closed = True
        return None

    async def until(self, wanted: Callable[[str], bool], timeout: float) -> str | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            frame = await self.receive(left)
            if frame is None:
                return None
            if isinstance(frame, str) and frame == "2":
                await self.ws.send_str("3")  # Engine.IO ping from the server
                continue
            if isinstance(frame, str) and wanted(frame):
                return frame
        return None

    async def send(self, frame: str | bytes) -> None:
        if self.closed or self.ws.closed:
            self.closed = True
            return
        try:
            if isinstance(frame, bytes):
                await self.ws.send_bytes(frame)
            else:
                await self.ws.send_str(frame)
        except (ConnectionError, RuntimeError):
            self.closed = True

    async def close(self) -> None:
        await self.ws.close()


def frame_text(max_packet: int) -> st.SearchStrategy[str | bytes]:
    """Malformed or oversized Engine.IO/Socket.IO frames. Binary-event headers
    (Socket.IO types 5 and 6) are left to their own test."""
    prefixes = st.sampled_from(
        [
            "",
            "4",
            "42",
            "43",
            "40",
            "44",
            "47",
            "48",
            "49",
            "4-",
            "0",
            "1",
            "5",
            "6",
            "7",
            "9",
            "42/",
            "42/nope,",
            "421",
            "4299999999999999999999",
            "42/" + "x" * 50 + ",",
        ]
    )
    bodies = st.one_of(
        junk.map(lambda v: json.dumps(v)),
        st.text(any_char, max_size=60),
        st.sampled_from(
            [
                "[",
                "[]",
                '["send"',
                '["send",',
                "[1,2]",
                "{}",
                '{"a":',
                "[null]",
                '[["send"]]',
                '["send",{"to":',
                "[" * 3000 + "]" * 3000,
                '"' + "\\" * 11 + '"',
                "NaN",
                "[1e999]",
            ]
        ),
    )
    text_frames = st.builds(lambda p, b: p + b, prefixes, bodies).filter(
        # DISCONNECT and CLOSE are not malformed: they end the session on purpose.
        lambda f: not f.startswith(("45", "46", "41", "1"))
    )
    oversized = st.builds(
        lambda p, char, extra: p + char * (max_packet + extra),
        st.sampled_from(["42", '42["send",{"body":"', "4", "", "9"]),
        st.sampled_from(["x", "[", "é"]),
        st.sampled_from([1, 100, 10_000]),
    )
    binary = st.binary(max_size=100) | st.builds(lambda n: b"\x04" * n, st.just(max_packet + 10))
    return st.one_of(text_frames, oversized, binary)


def storable(frame: str | bytes) -> bool:
    """Whether the websocket client can send it at all (no lone surrogates)."""
    try:
        if isinstance(frame, str):
            frame.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


async def test_fuzz_raw_frames(
    server: RunningServer,
    http: Http,
    tables: AsyncEngine,
    backend: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Malformed and oversized frames after a valid handshake and before auth: each
    connection is then either closed by the server or still answers (an event's ack
    after auth, the CONNECT after it before auth); a normal client keeps working and
    nothing stored changes."""
    ann, bob = await asyncio.gather(http.account("ann"), http.account("bob"))
    limit = max_packet_bytes(server.settings)
    before = await snapshot(tables)
    watcher = await Device(server.url).connect(bob.token)
    await watcher.wait_synced()
    probe = '4277["history",{"with":"' + NOBODY + '"}]'
    outcomes: dict[str, int] = {"closed": 0, "answered": 0}

    async def attempt(
        session: aiohttp.ClientSession, frames: list[str | bytes], authed: bool
    ) -> str:
        raw = await RawSocket.open(session, server.url, ann.token if authed else None)
        try:
            for frame in frames:
                await raw.send(frame)
            if authed:
                await raw.send(probe)
                answer = await raw.until(lambda f: f.startswith("4377"), 5)
                if answer is not None:
                    assert json.loads(answer[4:])[0]["error"]["code"] == "not_found", answer
                    return "answered"
            else:
                await raw.send("40" + json.dumps({"token": ann.token}))
                answer = await raw.until(lambda f: f.startswith("40{") or f.startswith("44"), 5)
                if answer is not None:
                    return "answered"
            if raw.closed or (await raw.receive(3) is None and raw.closed):
                return "closed"
            return "silent"
        finally:
            await raw.close()

    def run(bridge: Bridge) -> None:
        session = bridge.run(_session())

        @hsettings(FUZZ_SETTINGS, max_examples=80)
        @given(
            st.lists(frame_text(limit).filter(storable), min_size=1, max_size=3),
            st.booleans(),
        )
        # Most random frames are malformed packets, which close the connection; these
        # are sure to leave it open (a well-formed event of an unknown name) and to
        # close it.
        @example(['42["nope",{}]'], True)
        @example(["42{}"], True)
        def prop(frames: list[str | bytes], authed: bool) -> None:
            bridge.cases += len(frames)
            outcome = bridge.run(attempt(session, frames, authed))
            assert outcome != "silent", (
                f"{[f[:80] for f in frames]} ({'after' if authed else 'before'} auth):"
                " the connection neither closed nor answered"
            )
            outcomes[outcome] += 1

        try:
            prop()
        finally:
            bridge.run(session.close())

    cases = await fuzz(run)
    report(capsys, f"raw frames {outcomes}", cases, backend)
    assert outcomes["closed"] > 0 and outcomes["answered"] > 0, outcomes
    # The server is up: a normal client still works, and nothing stored changed.
    assert watcher.sio.connected
    answer = await watcher.call("presence", {"users": [ann.username]})
    assert answer["ok"], answer
    fresh = await Device(server.url).connect(ann.token)
    await fresh.wait_synced()
    assert (await fresh.call("history", {"with": bob.username}))["ok"]
    after = await snapshot(tables)
    assert after == before
    await fresh.disconnect()
    await watcher.disconnect()


@pytest.mark.parametrize("authed", [True, False])
async def test_oversized_frame_closes_only_that_connection(
    server: RunningServer, http: Http, authed: bool
) -> None:
    """A frame one byte over max_packet_bytes closes that websocket (before or after
    auth); other connections keep working."""
    ann = await http.account("ann")
    limit = max_packet_bytes(server.settings)
    watcher = await Device(server.url).connect(ann.token)
    await watcher.wait_synced()
    async with aiohttp.ClientSession() as session:
        raw = await RawSocket.open(session, server.url, ann.token if authed else None)
        body = "x" * limit
        await raw.send(f'42["send",{{"to":"{NOBODY}","body":"{body}","client_id":"big"}}]')
        while not raw.closed:
            frame = await raw.receive(5)
            assert frame is not None or raw.closed, "an oversized frame left the socket open"
        assert raw.ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG, raw.ws.close_code
        # Just under the limit is taken and answered.
        raw = await RawSocket.open(session, server.url, ann.token)
        packet = f'421["send",{{"to":"{NOBODY}","body":"{{}}","client_id":"big"}}]'
        filler = "x" * (limit - len(packet) - 8)
        await raw.send(packet.replace("{}", filler))
        answer = await raw.until(lambda f: f.startswith("431"), 5)
        assert answer is not None and '"too_large"' in answer, answer
        await raw.close()
    answer = await watcher.call("presence", {"users": [ann.username]})
    assert answer["ok"], answer
    await watcher.disconnect()


async def test_binary_event_header_without_attachments_is_refused(
    server: RunningServer, http: Http
) -> None:
    """A BINARY_EVENT header that announces no attachments ("45", "450-[...]") is
    malformed: the server must close the connection or keep answering it, not swallow
    every later packet as an attachment that can never fit."""
    ann = await http.account("ann")
    probe = '4277["history",{"with":"' + NOBODY + '"}]'
    async with aiohttp.ClientSession() as session:
        for header in ("45", '450-["send",{}]', "46", '451-["send",{"_placeholder":true,"num":0}]'):
            raw = await RawSocket.open(session, server.url, ann.token)
            await raw.send(header)
            if header.startswith("451-"):
                await raw.send(b"attachment")  # a well-formed binary event, completed
            await raw.send(probe)
            answer = await raw.until(lambda f: f.startswith("4377"), 3)
            if answer is None and not raw.closed:
                await raw.receive(2)
            assert answer is not None or raw.closed, f"{header!r}: the connection went silent"
            await raw.close()


async def test_many_events_in_one_frame_storm_do_not_starve_others(
    server: RunningServer, http: Http
) -> None:
    """A client firing 2000 garbage frames without waiting does not stop another
    client's events from being answered promptly."""
    ann, bob = await asyncio.gather(http.account("ann"), http.account("bob"))
    other = await Device(server.url).connect(bob.token)
    await other.wait_synced()
    async with aiohttp.ClientSession() as session:
        raw = await RawSocket.open(session, server.url, ann.token)
        frames: list[str] = ['42["nope"]', "42[", "4x", '42["send",{}]', "9"] * 400
        sending = asyncio.gather(*(raw.send(frame) for frame in frames))
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await other.call("presence", {"users": [ann.username]}, timeout=10)
        assert answer["ok"], answer
        assert loop.time() - started < 5
        await sending
        await raw.close()
    await other.disconnect()
