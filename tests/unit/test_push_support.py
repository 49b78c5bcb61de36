"""The push test doubles against independent senders: payloads encrypted with `http_ece`
and tokens signed with `py_vapid`, as a real application server makes them, so that the
fakes are known to accept the real protocols and refuse what real peers refuse."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import http_ece
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from py_vapid import Vapid01, Vapid02

from tests.push_support import (
    FakePushService,
    SubscriberKeys,
    WebhookReceiver,
    b64url_decode,
    b64url_encode,
    webhook_signature,
)

SUB = "mailto:ops@example.com"


@pytest.fixture
async def service() -> AsyncIterator[FakePushService]:
    async with FakePushService() as fake:
        yield fake


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as fake:
        yield fake


def new_vapid() -> Vapid02:
    """An application server's VAPID signer; lenient about "sub" so that tests can
    send bad ones (the fake is what must refuse them)."""
    vapid = Vapid02(conf={"no-strict": True})
    vapid.generate_keys()
    return vapid


def public_key_of(vapid: Vapid02) -> str:
    """The application server key, as given to PushManager.subscribe()."""
    return b64url_encode(
        vapid.public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    )


def origin(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


def encrypt(payload: bytes, p256dh: str, auth: str) -> bytes:
    """What an application server does with a subscription's public keys (RFC 8291)."""
    body: bytes = http_ece.encrypt(
        payload,
        private_key=ec.generate_private_key(ec.SECP256R1()),
        dh=b64url_decode(p256dh),
        auth_secret=b64url_decode(auth),
        version="aes128gcm",
    )
    return body


def push_request(
    endpoint: str,
    keys: SubscriberKeys,
    payload: bytes,
    vapid: Vapid02 | None = None,
    **claims: Any,
) -> dict[str, str]:
    """Headers of a correct Web Push request (claims override the good ones)."""
    good: dict[str, Any] = {"aud": origin(endpoint), "sub": SUB, "exp": int(time.time()) + 600}
    good.update(claims)
    headers: dict[str, str] = (vapid or new_vapid()).sign(good)
    headers.update({"TTL": "60", "Content-Encoding": "aes128gcm", "Urgency": "high"})
    return headers


async def post(url: str, body: bytes, headers: dict[str, str]) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
        await r.read()
        return r


async def test_subscriber_keys_look_like_a_browsers() -> None:
    keys = SubscriberKeys()
    assert "=" not in keys.p256dh + keys.auth
    point = b64url_decode(keys.p256dh)
    assert len(point) == 65 and point[0] == 4
    assert len(b64url_decode(keys.auth)) == 16
    body = encrypt(b"hello", keys.p256dh, keys.auth)
    assert keys.decrypt(body) == b"hello"
    assert keys.subscription("https://x/y")["keys"] == {"p256dh": keys.p256dh, "auth": keys.auth}


async def test_accepts_verifies_and_decrypts(service: FakePushService) -> None:
    endpoint, keys = service.subscribe("alice")
    assert endpoint == f"{service.url}/push/alice"
    vapid = new_vapid()
    message = json.dumps({"type": "new_message", "from": "bob"}).encode()
    headers = push_request(endpoint, keys, message, vapid)
    response = await post(endpoint, encrypt(message, keys.p256dh, keys.auth), headers)
    assert response.status == 201, service.attempts
    assert response.headers["Location"].startswith(f"{service.url}/message/")
    [push] = service.received("alice")
    assert push.payload == message
    assert push.json == {"type": "new_message", "from": "bob"}
    assert push.vapid_key == public_key_of(vapid)
    assert push.claims["sub"] == SUB and push.ttl == 60 and push.urgency == "high"
    assert push.headers["content-encoding"] == "aes128gcm"
    assert service.rejections == []


async def test_a_push_without_payload_is_accepted(service: FakePushService) -> None:
    endpoint, keys = service.subscribe("alice")
    headers = push_request(endpoint, keys, b"")
    del headers["Content-Encoding"]
    response = await post(endpoint, b"", headers)
    assert response.status == 201
    assert service.pushes[0].payload == b"" and service.pushes[0].json is None


def _tamper(headers: dict[str, str]) -> None:
    token = headers["Authorization"].split("t=", 1)[1].split(",", 1)[0]
    sig = token.rsplit(".", 1)[1]
    middle = len(sig) // 2
    flipped = sig[:middle] + ("A" if sig[middle] != "A" else "B") + sig[middle + 1 :]
    headers["Authorization"] = headers["Authorization"].replace(sig, flipped)


def _foreign_key(headers: dict[str, str]) -> None:
    other = new_vapid().sign({"aud": "http://x", "sub": SUB})["Authorization"]
    token = headers["Authorization"].split("t=", 1)[1].split(",", 1)[0]
    headers["Authorization"] = f"vapid t={token}, k={other.split('k=', 1)[1]}"


@pytest.mark.parametrize(
    ("claims", "mutate", "status", "reason"),
    [
        ({}, _tamper, 403, "signature"),
        ({}, _foreign_key, 403, "signature"),
        ({"aud": "https://push.example.net"}, None, 403, "aud"),
        ({"exp": int(time.time()) - 60}, None, 403, "expired"),
        ({"exp": int(time.time()) + 25 * 3600}, None, 403, "24 h"),
        ({"sub": "ops@example.com"}, None, 403, "sub"),
        ({}, lambda h: h.pop("Authorization"), 401, "Authorization"),
        ({}, lambda h: h.pop("TTL"), 400, "TTL"),
        ({}, lambda h: h.update({"TTL": "-1"}), 400, "TTL"),
        ({}, lambda h: h.update({"Content-Encoding": "aesgcm"}), 415, "aes128gcm"),
        ({}, lambda h: h.update({"Urgency": "urgent"}), 400, "Urgency"),
    ],
    ids=[
        "tampered-signature",
        "key-not-the-signers",
        "wrong-aud",
        "expired",
        "exp-over-24h",
        "sub-not-a-uri",
        "no-authorization",
        "no-ttl",
        "bad-ttl",
        "legacy-encoding",
        "bad-urgency",
    ],
)
async def test_refuses_what_a_real_service_refuses(
    service: FakePushService,
    claims: dict[str, Any],
    mutate: Any,
    status: int,
    reason: str,
) -> None:
    endpoint, keys = service.subscribe("alice")
    headers = push_request(endpoint, keys, b"hi", **claims)
    if mutate is not None:
        mutate(headers)
    response = await post(endpoint, encrypt(b"hi", keys.p256dh, keys.auth), headers)
    assert response.status == status, service.attempts
    assert service.pushes == []
    [refused] = service.rejections
    assert refused.status == status and reason in (refused.reason or ""), refused.reason


async def test_refuses_the_draft_webpush_scheme(service: FakePushService) -> None:
    endpoint, keys = service.subscribe("alice")
    draft = Vapid01()
    draft.generate_keys()
    headers = draft.sign({"aud": origin(endpoint), "sub": SUB})
    headers.update({"TTL": "60", "Content-Encoding": "aes128gcm"})
    response = await post(endpoint, encrypt(b"hi", keys.p256dh, keys.auth), headers)
    assert response.status == 401
    assert "vapid" in (service.rejections[0].reason or "")


async def test_refuses_a_body_for_other_keys(service: FakePushService) -> None:
    endpoint, keys = service.subscribe("alice")
    stranger = SubscriberKeys()
    body = encrypt(b"hi", stranger.p256dh, stranger.auth)
    response = await post(endpoint, body, push_request(endpoint, keys, b"hi"))
    assert response.status == 400
    assert "decrypt" in (service.rejections[0].reason or "")


async def test_refuses_an_oversized_body(service: FakePushService) -> None:
    endpoint, keys = service.subscribe("alice")
    payload = b"x" * 4000  # 4000 + 86 header + 17 overhead > 4096
    response = await post(
        endpoint, encrypt(payload, keys.p256dh, keys.auth), push_request(endpoint, keys, payload)
    )
    assert response.status == 413


async def test_restricted_subscription_takes_only_its_key(service: FakePushService) -> None:
    mine = new_vapid()
    endpoint, keys = service.subscribe("alice", application_server_key=public_key_of(mine))
    body = encrypt(b"hi", keys.p256dh, keys.auth)
    assert (await post(endpoint, body, push_request(endpoint, keys, b"hi"))).status == 403
    assert (await post(endpoint, body, push_request(endpoint, keys, b"hi", mine))).status == 201


async def test_unknown_and_unsubscribed_endpoints(service: FakePushService) -> None:
    endpoint, keys = service.subscribe("alice")
    body = encrypt(b"hi", keys.p256dh, keys.auth)
    headers = push_request(endpoint, keys, b"hi")
    assert (await post(service.endpoint("nobody"), body, headers)).status == 404
    service.unsubscribe("alice")
    assert (await post(endpoint, body, headers)).status == 410


async def test_fail_next_scripts_failures_then_recovers(service: FakePushService) -> None:
    endpoint, keys = service.subscribe("alice")
    service.fail_next("alice", 429, retry_after=7, times=2)
    service.fail_next("alice", 500)
    body = encrypt(b"hi", keys.p256dh, keys.auth)
    headers = push_request(endpoint, keys, b"hi")
    first = await post(endpoint, body, headers)
    assert first.status == 429 and first.headers["Retry-After"] == "7"
    assert (await post(endpoint, body, headers)).status == 429
    third = await post(endpoint, body, headers)
    assert third.status == 500 and "Retry-After" not in third.headers
    assert service.pushes == []
    assert [a.status for a in service.attempts] == [429, 429, 500]
    assert all(a.scripted for a in service.attempts) and service.rejections == []
    assert (await post(endpoint, body, headers)).status == 201
    assert len(service.received("alice")) == 1


async def test_wait_for_returns_what_arrives(service: FakePushService) -> None:
    endpoint, keys = service.subscribe("alice")
    body = encrypt(b"{}", keys.p256dh, keys.auth)
    with pytest.raises(TimeoutError, match="0 pushes"):
        await service.wait_for(lambda: service.received("alice"), timeout=0.1)
    await post(endpoint, body, push_request(endpoint, keys, b"{}"))
    pushes = await service.wait_for(lambda: service.received("alice"), timeout=1)
    assert pushes[0].json == {}


def _sign(secret: str, body: bytes, t: int) -> str:
    """Computed here, not by the module under test."""
    mac = hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


async def test_webhook_accepts_a_good_signature(receiver: WebhookReceiver) -> None:
    url = receiver.expect("/hooks/a", "s3cret")
    assert url == receiver.url_for("/hooks/a") == f"{receiver.url}/hooks/a"
    body = json.dumps({"event": "message.created", "id": 1}).encode()
    now = int(time.time())
    assert webhook_signature("s3cret", body, now) == _sign("s3cret", body, now)
    response = await post(url, body, {"Messenger-Signature": _sign("s3cret", body, now)})
    assert response.status == 200, receiver.attempts
    [delivery] = receiver.received("/hooks/a")
    assert delivery.json == {"event": "message.created", "id": 1}
    assert delivery.timestamp == now and delivery.headers["messenger-signature"]


async def test_webhook_accepts_any_matching_v1(receiver: WebhookReceiver) -> None:
    url = receiver.expect("/hooks/a", "new")
    body, now = b"{}", int(time.time())
    old = _sign("old", body, now).split(",")[1]
    header = f"{_sign('new', body, now)}, {old}"
    assert (await post(url, body, {"Messenger-Signature": header})).status == 200


@pytest.mark.parametrize(
    ("secret", "offset", "header", "status", "reason"),
    [
        ("wrong", 0, True, 401, "v1"),
        ("s3cret", -301, True, 401, "replay window"),
        ("s3cret", 400, True, 401, "future"),
        ("s3cret", 0, False, 401, "no Messenger-Signature"),
    ],
    ids=["wrong-secret", "stale-t", "future-t", "unsigned"],
)
async def test_webhook_refuses(
    receiver: WebhookReceiver, secret: str, offset: int, header: bool, status: int, reason: str
) -> None:
    url = receiver.expect("/hooks/a", "s3cret")
    body = b'{"event": "x"}'
    headers = {"Messenger-Signature": _sign(secret, body, int(time.time()) + offset)}
    response = await post(url, body, headers if header else {})
    assert response.status == status
    assert receiver.deliveries == []
    [refused] = receiver.rejections
    assert reason in (refused.reason or ""), refused.reason


async def test_webhook_unexpected_path_and_scripted_failures(receiver: WebhookReceiver) -> None:
    body = b"{}"
    signed = {"Messenger-Signature": _sign("k", body, int(time.time()))}
    assert (await post(receiver.url_for("/elsewhere"), body, signed)).status == 404
    url = receiver.expect("/hooks/a", "k")
    receiver.fail_next("/hooks/a", 503, retry_after="30")
    failed = await post(url, body, signed)
    assert failed.status == 503 and failed.headers["Retry-After"] == "30"
    assert (await post(url, body, signed)).status == 200
    assert [a.status for a in receiver.attempts] == [404, 503, 200]
    delivered = await receiver.wait_for(lambda: receiver.received("/hooks/a"), timeout=1)
    assert delivered[0].json == {}
