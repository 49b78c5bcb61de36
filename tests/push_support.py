"""Test doubles of the services the server pushes to: a Web Push service (RFC 8030) that
checks VAPID (RFC 8292) and decrypts payloads as the browser would (RFC 8291), and a
webhook receiver that checks `Messenger-Signature`. Both speak the real protocols and
refuse what a real peer would refuse, so a test that passes against them means the
server's requests would be accepted for real, not just that it sent something.

The push service is stricter than a real one in one way: a real service forwards an
undecryptable body and the browser drops it silently; this fake plays the browser too
and answers 400 at once, so that the test sees why.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import re
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import http_ece
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from multidict import CIMultiDict, CIMultiDictProxy

if TYPE_CHECKING:
    from messenger.config import Settings
    from tests.support import Account, Http

T = TypeVar("T")

# RFC 8030 §7.2: a push service must take payloads up to 4096 octets, and may refuse
# larger ones with 413; the common services do.
MAX_PUSH_BODY = 4096
# RFC 8292 §2: a token's "exp" must be no more than 24 hours after the request.
MAX_VAPID_LIFETIME = 24 * 60 * 60
URGENCIES = ("very-low", "low", "normal", "high")
# RFC 8030 §5.4: a Topic is at most 32 characters of the base64url alphabet.
_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
SIGNATURE_HEADER = "Messenger-Signature"
DEFAULT_REPLAY_WINDOW = 300.0
# What lets a test's server push to these fakes: plain http to loopback (real
# subscriptions must be https), and a push soon after a send.
LOOPBACK = ("127.0.0.1",)
PUSH_DELAY = 0.5


def b64url_encode(data: bytes) -> str:
    """base64url without padding: how Web Push writes keys, JWTs and auth secrets."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding (RFC 7515 §2): padding or other alphabets are
    refused, as they are what a sender gets wrong."""
    if not _B64URL.match(text) or len(text) % 4 == 1:
        raise ValueError(f"not unpadded base64url: {text[:40]!r}")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError(f"not base64url: {exc}") from exc


def _public_point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def _frozen_headers(headers: Any) -> CIMultiDictProxy[str]:
    """A case-insensitive copy that outlives the request."""
    return CIMultiDictProxy(CIMultiDict(headers))


class PushDecryptError(ValueError):
    """The body is not an RFC 8291 message for this subscription."""


class SubscriberKeys:
    """What a browser's PushManager.subscribe() makes: a P-256 key pair and a 16-byte
    auth secret, of which the application server gets the public halves."""

    def __init__(
        self,
        private_key: ec.EllipticCurvePrivateKey | None = None,
        auth_secret: bytes | None = None,
    ) -> None:
        self.private_key = private_key or ec.generate_private_key(ec.SECP256R1())
        self.auth_secret = auth_secret if auth_secret is not None else os.urandom(16)

    @property
    def public_bytes(self) -> bytes:
        """The uncompressed public point (65 bytes)."""
        return _public_point(self.private_key.public_key())

    @property
    def p256dh(self) -> str:
        return b64url_encode(self.public_bytes)

    @property
    def auth(self) -> str:
        return b64url_encode(self.auth_secret)

    def subscription(self, endpoint: str) -> dict[str, Any]:
        """The JSON of PushSubscription.toJSON(): what a browser hands the server."""
        return {
            "endpoint": endpoint,
            "expirationTime": None,
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
        }

    def decrypt(self, body: bytes) -> bytes:
        """The plaintext of an RFC 8291 `aes128gcm` body, checked as a user agent does:
        the keyid is the sender's 65-byte ephemeral point and there is one record."""
        if len(body) < 21:
            raise PushDecryptError(f"body of {len(body)} bytes has no aes128gcm header")
        (rs,) = struct.unpack("!L", body[16:20])
        id_len = body[20]
        if id_len != 65:
            raise PushDecryptError(
                f"keyid is {id_len} bytes; RFC 8291 §4 puts the sender's 65-byte "
                "uncompressed public key there"
            )
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), body[21:86])
        except ValueError as exc:
            raise PushDecryptError(f"keyid is not a P-256 point: {exc}") from exc
        if rs < 18:
            raise PushDecryptError(f"record size {rs} is below the minimum of 18")
        if len(body) - 86 > rs:
            raise PushDecryptError(
                f"{len(body) - 86} bytes of records with rs={rs}: RFC 8291 §4 allows "
                "one record only"
            )
        try:
            plaintext: bytes = http_ece.decrypt(
                body,
                private_key=self.private_key,
                auth_secret=self.auth_secret,
                version="aes128gcm",
            )
        except Exception as exc:  # http_ece raises ECEException and plain errors alike
            raise PushDecryptError(f"cannot decrypt: {exc}") from exc
        return plaintext


@dataclass(frozen=True)
class ReceivedPush:
    """A push message the service accepted, decrypted as the browser would see it."""

    name: str
    payload: bytes
    json: Any  # the payload parsed, or None when it is not JSON
    headers: CIMultiDictProxy[str]
    vapid_key: str  # the "k" of the Authorization header (base64url)
    received_at: float
    claims: dict[str, Any] = field(default_factory=dict)
    ttl: int = 0
    urgency: str = "normal"
    topic: str | None = None


@dataclass(frozen=True)
class PushAttempt:
    """Any request to a push endpoint and what it was answered."""

    name: str
    status: int
    reason: str | None  # why it was refused; None when accepted
    headers: CIMultiDictProxy[str]
    at: float
    scripted: bool = False  # answered by `fail_next`, not by the checks


@dataclass(frozen=True)
class WebhookDelivery:
    """A webhook whose signature verified."""

    path: str
    json: Any
    body: bytes
    headers: CIMultiDictProxy[str]
    timestamp: int  # the signed "t"
    received_at: float


@dataclass(frozen=True)
class WebhookAttempt:
    """Any request to the receiver and what it was answered."""

    path: str
    status: int
    reason: str | None
    body: bytes
    headers: CIMultiDictProxy[str]
    at: float
    scripted: bool = False


@dataclass
class _Scripted:
    status: int
    retry_after: str | None
    times: int


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _LoopbackServer:
    """An aiohttp server on a free loopback port, with scripted failures and a way to
    wait for what it records."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._scripts: dict[str, deque[_Scripted]] = {}
        self._changed = asyncio.Event()

    def _routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>, once started."""
        if self._url is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._url

    async def start(self) -> None:
        app = web.Application()
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self._url = f"http://{host}:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def fail_next(
        self, key: str, status: int, retry_after: int | str | None = None, times: int = 1
    ) -> None:
        """Answer the next `times` requests for `key` with `status` (and `Retry-After`),
        before any check and without recording a delivery: outages, throttling, 410s."""
        if times < 1:
            raise ValueError("times must be at least 1")
        after = None if retry_after is None else str(retry_after)
        self._scripts.setdefault(key, deque()).append(_Scripted(status, after, times))

    def _take_script(self, key: str) -> _Scripted | None:
        queue = self._scripts.get(key)
        if not queue:
            return None
        script = queue[0]
        script.times -= 1
        if script.times == 0:
            queue.popleft()
        return script

    @staticmethod
    def _scripted_response(script: _Scripted) -> web.Response:
        headers = {} if script.retry_after is None else {"Retry-After": script.retry_after}
        return web.json_response(
            {"code": script.status, "message": "scripted failure"},
            status=script.status,
            headers=headers,
        )

    def _recorded(self) -> None:
        self._changed.set()

    def _summary(self) -> str:
        return ""

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        """The first truthy value of `predicate`, re-checked on every request and every
        50 ms; TimeoutError (with what was received) when there is none in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._changed.clear()
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"{type(self).__name__}: condition not met within {timeout} s; "
                    + self._summary()
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))


@dataclass
class _Subscription:
    keys: SubscriberKeys
    application_server_key: bytes | None


class FakePushService(_LoopbackServer):
    """A Web Push service (RFC 8030) on loopback: subscription endpoints at
    `{url}/push/{name}` that take only VAPID-signed (RFC 8292), aes128gcm-encrypted
    (RFC 8291) messages, and record them decrypted."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.pushes: list[ReceivedPush] = []
        self.attempts: list[PushAttempt] = []
        self._subscriptions: dict[str, _Subscription] = {}
        self._gone: set[str] = set()
        self._message_ids = itertools.count(1)

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/push/{name}", self._handle)

    def endpoint(self, name: str) -> str:
        """The push endpoint URL of subscription `name`."""
        return f"{self.url}/push/{name}"

    def subscribe(
        self, name: str, application_server_key: str | None = None
    ) -> tuple[str, SubscriberKeys]:
        """A new subscription: its endpoint and the browser's keys. With
        `application_server_key` (base64url point) it is restricted (RFC 8292 §4):
        messages signed with another VAPID key are refused with 403."""
        restricted = None
        if application_server_key is not None:
            restricted = b64url_decode(application_server_key)
        keys = SubscriberKeys()
        self._subscriptions[name] = _Subscription(keys, restricted)
        self._gone.discard(name)
        return self.endpoint(name), keys

    def unsubscribe(self, name: str) -> None:
        """The browser dropped the subscription: its endpoint answers 410 Gone from now
        on (RFC 8030 §7.3), as a real one does after expiry or unsubscribe."""
        self._subscriptions.pop(name, None)
        self._gone.add(name)

    def received(self, name: str) -> list[ReceivedPush]:
        return [push for push in self.pushes if push.name == name]

    @property
    def rejections(self) -> list[PushAttempt]:
        """Requests the checks refused (scripted failures excluded), with reasons."""
        return [a for a in self.attempts if a.reason is not None and not a.scripted]

    def _summary(self) -> str:
        recent = [(a.name, a.status, a.reason) for a in self.attempts[-5:]]
        return f"{len(self.pushes)} pushes; last attempts: {recent}"

    def _attempt(
        self,
        name: str,
        status: int,
        reason: str | None,
        headers: CIMultiDictProxy[str],
        scripted: bool = False,
    ) -> None:
        self.attempts.append(PushAttempt(name, status, reason, headers, self.clock(), scripted))
        self._recorded()

    async def _handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.read()
        headers = _frozen_headers(request.headers)
        script = self._take_script(name)
        if script is not None:
            self._attempt(name, script.status, None, headers, scripted=True)
            return self._scripted_response(script)
        try:
            push = self._accept(name, body, headers)
        except _Refused as refused:
            self._attempt(name, refused.status, refused.reason, headers)
            return web.json_response(
                {"code": refused.status, "message": refused.reason}, status=refused.status
            )
        self.pushes.append(push)
        self._attempt(name, 201, None, headers)
        message = f"{self.url}/message/{next(self._message_ids)}"
        return web.Response(status=201, headers={"Location": message, "TTL": str(push.ttl)})

    def _accept(self, name: str, body: bytes, headers: CIMultiDictProxy[str]) -> ReceivedPush:
        """The checks of a real service, in its order, then the browser's decryption."""
        if name in self._gone:
            raise _Refused(410, f"subscription {name!r} is gone (unsubscribed)")
        subscription = self._subscriptions.get(name)
        if subscription is None:
            raise _Refused(404, f"no subscription {name!r}")
        if len(body) > MAX_PUSH_BODY:
            raise _Refused(413, f"body of {len(body)} bytes exceeds {MAX_PUSH_BODY}")
        claims, key = self._check_vapid(headers.get("Authorization"), subscription)
        ttl_text = headers.get("TTL")
        if ttl_text is None:
            raise _Refused(400, "no TTL header (RFC 8030 §5.2 requires one)")
        if not ttl_text.strip().isdigit():
            raise _Refused(400, f"TTL {ttl_text!r} is not a non-negative integer")
        urgency = headers.get("Urgency", "normal").strip().lower()
        if urgency not in URGENCIES:
            raise _Refused(400, f"Urgency {urgency!r} is not one of {URGENCIES}")
        topic = headers.get("Topic")
        if topic is not None and not _TOPIC.match(topic):
            raise _Refused(400, f"Topic {topic!r} is not 1-32 base64url characters")
        payload = b""
        if body:
            encoding = headers.get("Content-Encoding")
            if encoding is None or encoding.strip().lower() != "aes128gcm":
                raise _Refused(415, f"Content-Encoding {encoding!r}; RFC 8291 requires aes128gcm")
            try:
                payload = subscription.keys.decrypt(body)
            except PushDecryptError as exc:
                raise _Refused(400, str(exc)) from exc
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = None
        return ReceivedPush(
            name=name,
            payload=payload,
            json=parsed,
            headers=headers,
            vapid_key=key,
            received_at=self.clock(),
            claims=claims,
            ttl=int(ttl_text),
            urgency=urgency,
            topic=topic,
        )

    def _check_vapid(
        self, authorization: str | None, subscription: _Subscription
    ) -> tuple[dict[str, Any], str]:
        """RFC 8292: `vapid t=<JWT>, k=<key>`. Absent -> 401, invalid -> 403 (§4.2)."""
        if not authorization:
            raise _Refused(401, "no Authorization header (RFC 8292 vapid required)")
        scheme, _, rest = authorization.strip().partition(" ")
        if scheme.lower() != "vapid":
            raise _Refused(401, f"Authorization scheme {scheme!r} is not RFC 8292 'vapid'")
        params: dict[str, str] = {}
        for item in rest.split(","):
            if not item.strip():
                continue
            key, sep, value = item.partition("=")
            if not sep:
                raise _Refused(403, f"malformed vapid parameter {item.strip()!r}")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            params[key.strip().lower()] = value
        token, k = params.get("t"), params.get("k")
        if not token or not k:
            raise _Refused(403, "vapid credentials need both t= and k=")
        try:
            point = b64url_decode(k)
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        except ValueError as exc:
            raise _Refused(403, f"k is not a base64url uncompressed P-256 point: {exc}") from exc
        if len(point) != 65:
            raise _Refused(403, f"k is {len(point)} bytes, not a 65-byte uncompressed point")
        restricted = subscription.application_server_key
        if restricted is not None and restricted != point:
            raise _Refused(403, "k is not the applicationServerKey of this subscription")
        claims = self._verify_jwt(token, public)
        return claims, k

    def _verify_jwt(self, token: str, public: ec.EllipticCurvePublicKey) -> dict[str, Any]:
        """An ES256 JWS (raw r||s signature) whose claims address this service."""
        segments = token.split(".")
        if len(segments) != 3:
            raise _Refused(403, f"JWT has {len(segments)} segments, not 3")
        try:
            header = json.loads(b64url_decode(segments[0]))
            claims = json.loads(b64url_decode(segments[1]))
            signature = b64url_decode(segments[2])
        except ValueError as exc:
            raise _Refused(403, f"JWT does not decode: {exc}") from exc
        if not isinstance(header, dict) or header.get("alg") != "ES256":
            raise _Refused(403, f"JWT header {header!r}: alg must be ES256")
        if header.get("typ") != "JWT":
            raise _Refused(403, f"JWT header {header!r}: typ must be JWT")
        if len(signature) != 64:
            raise _Refused(
                403, f"signature is {len(signature)} bytes, not the 64 of raw r||s (DER?)"
            )
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        signed = f"{segments[0]}.{segments[1]}".encode("ascii")
        try:
            public.verify(encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature as exc:
            raise _Refused(403, "JWT signature does not verify with k") from exc
        if not isinstance(claims, dict):
            raise _Refused(403, "JWT claims are not an object")
        if claims.get("aud") != self.url:
            raise _Refused(403, f"aud {claims.get('aud')!r} is not this origin {self.url!r}")
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise _Refused(403, f"exp {exp!r} is not a NumericDate")
        now = self.clock()
        if exp <= now:
            raise _Refused(403, f"token expired {now - exp:.0f} s ago")
        if exp > now + MAX_VAPID_LIFETIME:
            raise _Refused(403, f"exp is {exp - now:.0f} s ahead, over 24 h (RFC 8292 §2)")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.startswith(("mailto:", "https:")):
            raise _Refused(403, f"sub {sub!r} is not a mailto: or https: URI")
        return claims


def webhook_signature(secret: str, body: bytes, timestamp: int) -> str:
    """The `Messenger-Signature` value of `body` sent at `timestamp`: the scheme the
    receiver checks, written out once."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class WebhookReceiver(_LoopbackServer):
    """A webhook consumer on loopback (plain HTTP): POSTs at any path, each verified
    against the secret registered for that path, as a careful receiver would."""

    def __init__(
        self,
        replay_window: float = DEFAULT_REPLAY_WINDOW,
        max_future: float = DEFAULT_REPLAY_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(clock)
        self.replay_window = replay_window
        self.max_future = max_future
        self.deliveries: list[WebhookDelivery] = []
        self.attempts: list[WebhookAttempt] = []
        self._secrets: dict[str, str] = {}

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/{tail:.*}", self._handle)

    def url_for(self, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        return self.url + path

    def expect(self, path: str, secret: str) -> str:
        """Take webhooks at `path` signed with `secret`; returns the URL to register."""
        url = self.url_for(path)
        self._secrets[path] = secret
        return url

    def received(self, path: str) -> list[WebhookDelivery]:
        return [d for d in self.deliveries if d.path == path]

    @property
    def rejections(self) -> list[WebhookAttempt]:
        """Requests the checks refused (scripted failures excluded), with reasons."""
        return [a for a in self.attempts if a.reason is not None and not a.scripted]

    def _summary(self) -> str:
        recent = [(a.path, a.status, a.reason) for a in self.attempts[-5:]]
        return f"{len(self.deliveries)} deliveries; last attempts: {recent}"

    def _attempt(
        self,
        path: str,
        status: int,
        reason: str | None,
        body: bytes,
        headers: CIMultiDictProxy[str],
        scripted: bool = False,
    ) -> None:
        self.attempts.append(
            WebhookAttempt(path, status, reason, body, headers, self.clock(), scripted)
        )
        self._recorded()

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path
        body = await request.read()
        headers = _frozen_headers(request.headers)
        script = self._take_script(path)
        if script is not None:
            self._attempt(path, script.status, None, body, headers, scripted=True)
            return self._scripted_response(script)
        try:
            delivery = self._verify(path, body, headers)
        except _Refused as refused:
            self._attempt(path, refused.status, refused.reason, body, headers)
            return web.json_response({"error": refused.reason}, status=refused.status)
        self.deliveries.append(delivery)
        self._attempt(path, 200, None, body, headers)
        return web.json_response({"ok": True})

    def _verify(self, path: str, body: bytes, headers: CIMultiDictProxy[str]) -> WebhookDelivery:
        secret = self._secrets.get(path)
        if secret is None:
            raise _Refused(404, f"no webhook expected at {path!r}")
        value = headers.get(SIGNATURE_HEADER)
        if not value:
            raise _Refused(401, f"no {SIGNATURE_HEADER} header")
        stamps: list[str] = []
        macs: list[str] = []
        for item in value.split(","):
            key, sep, part = item.strip().partition("=")
            if not sep:
                raise _Refused(401, f"malformed {SIGNATURE_HEADER} item {item.strip()!r}")
            if key == "t":
                stamps.append(part)
            elif key == "v1":
                macs.append(part.lower())
        if len(stamps) != 1 or not stamps[0].isdigit():
            raise _Refused(401, f"{SIGNATURE_HEADER} needs one t=<unix seconds>: {value!r}")
        if not macs:
            raise _Refused(401, f"{SIGNATURE_HEADER} has no v1= signature")
        stamp = stamps[0]
        signed = stamp.encode("ascii") + b"." + body
        expected = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
        if not any(hmac.compare_digest(expected, mac) for mac in macs):
            raise _Refused(401, "no v1 signature matches HMAC-SHA256(secret, t.body)")
        now = self.clock()
        timestamp = int(stamp)
        if now - timestamp > self.replay_window:
            raise _Refused(401, f"t is {now - timestamp:.0f} s old, outside the replay window")
        if timestamp - now > self.max_future:
            raise _Refused(401, f"t is {timestamp - now:.0f} s in the future")
        try:
            parsed = json.loads(body)
        except ValueError as exc:
            raise _Refused(400, f"body is not JSON: {exc}") from exc
        return WebhookDelivery(path, parsed, body, headers, timestamp, now)


def push_settings(settings: Settings) -> Settings:
    """`settings` with pushes soon after a send, and to the fakes on loopback: what a
    module's `settings` fixture returns (the `push_service` and `webhook_receiver`
    fixtures of tests/conftest.py run the fakes)."""
    return settings.replace(push_delay=PUSH_DELAY, push_allow_http=LOOPBACK)


def webpush_request(endpoint: str, keys: SubscriberKeys, **extra: Any) -> dict[str, Any]:
    """The body of `POST /api/v1/push/subscriptions` for a Web Push subscription."""
    return {
        "kind": "webpush",
        "endpoint": endpoint,
        "keys": {"p256dh": keys.p256dh, "auth": keys.auth},
        **extra,
    }


async def subscribe_webpush(
    http: Http, account: Account, service: FakePushService, name: str, **extra: Any
) -> tuple[dict[str, Any], SubscriberKeys]:
    """A new subscription `name` at `service`, registered for `account`'s session (with
    any `extra` fields: label, preview): the server's answer and the browser's keys."""
    endpoint, keys = service.subscribe(name)
    body = webpush_request(endpoint, keys, **extra)
    status, made = await http.request(
        "POST", "/api/v1/push/subscriptions", body, token=account.token
    )
    assert status == 201, made
    return made, keys
