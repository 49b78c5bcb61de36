"""What a push says, and how each kind of subscription carries it."""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import http_ece
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from messenger.push.keys import b64url_decode
from messenger.wire import to_compact_json

# How long a push service keeps a push for a device that is away (seconds), and how
# long a VAPID token is valid (RFC 8292 allows at most 24 hours).
PUSH_TTL = 24 * 3600
VAPID_LIFETIME = 12 * 3600


@dataclass(frozen=True)
class Request:
    """An HTTP POST to make: where, what, with which headers."""

    url: str
    body: bytes
    headers: dict[str, str]


def webpush_request(
    endpoint: str,
    p256dh: str,
    auth: str,
    payload: dict[str, object],
    vapid_private: ec.EllipticCurvePrivateKey,
    contact: str,
) -> Request:
    """The payload encrypted for the subscription (RFC 8291, aes128gcm, with a fresh
    key pair and salt each time) and signed for its push service (RFC 8292). CPU work:
    run it off the event loop."""
    body = http_ece.encrypt(
        to_compact_json(payload).encode("utf-8"),
        salt=os.urandom(16),
        private_key=ec.generate_private_key(ec.SECP256R1()),
        dh=b64url_decode(p256dh),
        auth_secret=b64url_decode(auth),
        version="aes128gcm",
    )
    parts = urlsplit(endpoint)
    claims = {
        "aud": f"{parts.scheme}://{parts.netloc}",
        "exp": int(time.time()) + VAPID_LIFETIME,
        "sub": contact,
    }
    headers = {
        **Vapid02(vapid_private).sign(claims),
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        "TTL": str(PUSH_TTL),
        "Urgency": "high",
    }
    return Request(endpoint, body, headers)


def webhook_request(url: str, secret: str, payload: dict[str, object]) -> Request:
    """The payload as JSON, signed: `Messenger-Signature: t=<unix>,v1=<hex>`, the
    HMAC-SHA256 of `<t>.<body>` keyed with the secret's UTF-8 bytes."""
    body = to_compact_json(payload).encode("utf-8")
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "Messenger-Signature": f"t={stamp},v1={signature(secret, stamp, body)}",
    }
    return Request(url, body, headers)


def signature(secret: str, stamp: str, body: bytes) -> str:
    message = stamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
