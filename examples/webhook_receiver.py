"""A webhook receiver for messenger's push (docs/push.md): verifies each request's
signature and age, then hands the push on. Replace `forward` with a call to FCM, APNs,
e-mail or whatever reaches your users.

    MESSENGER_WEBHOOK_SECRET=... python examples/webhook_receiver.py --port 9000

Register it with `POST /api/v1/push/subscriptions {"kind": "webhook", "url": ...}` and
keep the `secret` of the answer: it is shown once.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import os
import time
from typing import Any

from aiohttp import web

# Requests older (or newer) than this are refused: a captured request cannot be
# replayed later.
REPLAY_WINDOW = 300

log = logging.getLogger("webhook-receiver")


def verify(secret: str, header: str, body: bytes, now: float) -> bool:
    """`Messenger-Signature: t=<unix>,v1=<hex>`: the HMAC-SHA256 of `<t>.<body>`
    keyed with the secret's UTF-8 bytes, compared in constant time."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    stamps = fields.get("t", [])
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    if abs(now - int(stamps[0])) > REPLAY_WINDOW:
        return False
    signed = stamps[0].encode("ascii") + b"." + body
    expected = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))


async def forward(push: dict[str, Any]) -> None:
    """Hand the push on. Without `from`/`excerpt` (the default) it carries no content:
    show "new messages" and let the app sync from `cursor` when opened."""
    log.info("push for %s: %d unread (cursor %d)", push["user"], push["unread"], push["cursor"])


def make_app(secret: str) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        header = request.headers.get("Messenger-Signature", "")
        if not verify(secret, header, body, time.time()):
            return web.Response(status=401, text="bad signature")
        await forward(json.loads(body))
        return web.Response(status=204)

    app = web.Application(client_max_size=64 * 1024)
    app.router.add_post("/{path:.*}", receive)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    secret = os.environ.get("MESSENGER_WEBHOOK_SECRET")
    if not secret:
        raise SystemExit("set MESSENGER_WEBHOOK_SECRET to the subscription's secret")
    logging.basicConfig(level=logging.INFO)
    web.run_app(make_app(secret), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
