"""Push subscriptions as the HTTP API makes and lists them (docs/protocol.md 3.9)."""

from __future__ import annotations

import re
import secrets
from typing import Any, TypedDict

from messenger.errors import ErrorCode, MessengerError, invalid, not_found
from messenger.push.addresses import check_reachable, check_url
from messenger.push.keys import VapidKeys, b64url_decode, new_vapid_keys
from messenger.store.db import Database
from messenger.store.push import (
    delete_subscription,
    keep_vapid_keys,
    save_subscription,
    subscriptions_of,
    vapid_keys,
)
from messenger.wire import UserRef, format_time, utc_now

SUBSCRIPTIONS_MAX = 20
BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
LABEL_MAX = 64
KINDS = ("webpush", "webhook")


class Subscription(TypedDict, total=False):
    id: int
    kind: str
    label: str | None
    preview: bool
    created_at: str
    session: int
    current: bool
    secret: str


async def load_vapid_keys(db: Database) -> VapidKeys:
    """The stored pair, made and stored first if there is none yet."""
    row = await db.read(vapid_keys)
    if row is None:
        made = new_vapid_keys()
        await db.write(keep_vapid_keys, made.private_pem, made.public_key, utc_now())
        row = await db.read(vapid_keys)
    assert row is not None
    return VapidKeys(row["private_pem"], row["public_key"])


class PushSubscriptions:
    def __init__(self, db: Database, allowed_hosts: tuple[str, ...]) -> None:
        self._db = db
        self._allowed = allowed_hosts
        self._keys: VapidKeys | None = None

    async def prepare(self) -> VapidKeys:
        """Load the VAPID key pair (making it on the first start)."""
        self._keys = await load_vapid_keys(self._db)
        return self._keys

    @property
    def public_key(self) -> str:
        """The VAPID public key, as a browser's `applicationServerKey` takes it."""
        if self._keys is None:
            raise MessengerError(ErrorCode.UNAVAILABLE, "the server is starting")
        return self._keys.public_key

    async def subscribe(
        self, user: UserRef, token_id: int, payload: Any
    ) -> tuple[Subscription, bool]:
        """Make (or move to this session) a subscription; (it, whether it is new)."""
        values = _values(payload, self._allowed)
        if values["kind"] == "webhook":
            await check_reachable(values["endpoint"], self._allowed)
            values["secret"] = secrets.token_urlsafe(32)
        saved = await self._db.write(
            save_subscription, user.id, token_id, values, utc_now(), SUBSCRIPTIONS_MAX
        )
        if saved is None:
            raise MessengerError(
                ErrorCode.TOO_LARGE, f"at most {SUBSCRIPTIONS_MAX} push subscriptions per user"
            )
        row, created = saved
        shown = _shown(row, token_id)
        if row["secret"] is not None:
            shown["secret"] = row["secret"]  # shown this once
        return shown, created

    async def list(self, user: UserRef, token_id: int) -> list[Subscription]:
        rows = await self._db.read(subscriptions_of, user.id)
        return [_shown(row, token_id) for row in rows]

    async def remove(self, user: UserRef, sub_id: int) -> None:
        if not await self._db.write(delete_subscription, user.id, sub_id):
            raise not_found("no such subscription")


def _shown(row: Any, token_id: int) -> Subscription:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "label": row["label"],
        "preview": bool(row["preview"]),
        "created_at": format_time(row["created_at"]),
        "session": row["token_id"],
        "current": row["token_id"] == token_id,
    }


def _values(payload: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The columns of a subscription from a request body, checked."""
    if not isinstance(payload, dict):
        raise invalid("the body must be a JSON object")
    kind = payload.get("kind")
    if kind not in KINDS:
        raise invalid('kind must be "webpush" or "webhook"')
    label = payload.get("label")
    if label is not None and (not isinstance(label, str) or not 1 <= len(label) <= LABEL_MAX):
        raise invalid(f"label must be a string of 1 to {LABEL_MAX} characters")
    # Printable excludes NUL, controls and lone surrogates: what no database stores.
    if isinstance(label, str) and not label.isprintable():
        raise invalid("label must be printable text")
    preview = payload.get("preview", False)
    if not isinstance(preview, bool):
        raise invalid("preview must be true or false")
    values: dict[str, Any] = {"kind": kind, "label": label, "preview": preview}
    if kind == "webhook":
        values |= {"endpoint": check_url(payload.get("url"), allowed), "p256dh": None, "auth": None}
        return values
    keys = payload.get("keys")
    if not isinstance(keys, dict):
        raise invalid("keys must be an object with p256dh and auth")
    values |= {
        "endpoint": check_url(payload.get("endpoint"), allowed),
        "p256dh": _key(keys.get("p256dh"), 65, "p256dh"),
        "auth": _key(keys.get("auth"), 16, "auth"),
        "secret": None,
    }
    return values


def _key(value: Any, size: int, name: str) -> str:
    """A base64url key of `size` bytes (p256dh: an uncompressed P-256 point)."""
    if not isinstance(value, str) or len(value) > 200 or not BASE64URL.fullmatch(value):
        raise invalid(f"keys.{name} must be base64url")
    try:
        raw = b64url_decode(value)
    except ValueError:
        raise invalid(f"keys.{name} must be base64url") from None
    if len(raw) != size or (size == 65 and raw[0] != 4):
        raise invalid(f"keys.{name} must be {size} bytes")
    if size == 65:
        _check_point(raw)
    return value


def _check_point(raw: bytes) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        raise invalid("keys.p256dh is not a P-256 public key") from None
