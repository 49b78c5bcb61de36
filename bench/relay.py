"""The baseline: an in-memory relay, written the way the seed design describes it.

A dict maps each username to its socket sid; `privateMessage` is forwarded as
`receivedMessage` to the recipient's sid and nothing is stored. The only additions
are what the load generator needs to measure the same round trips as on messenger:
an ack carrying a counter id, and `delivered` -> `receipt` back to the sender.

Run as a subprocess: `python -m bench.relay --port P`.
"""

from __future__ import annotations

import argparse
import itertools
from datetime import UTC, datetime
from typing import Any

import socketio
from aiohttp import web

from messenger.config import EVENT_LOOPS
from messenger.runtime import new_event_loop

# Receipts need the sender of a delivered id; bounded so a lost `delivered` cannot
# grow the relay without limit (it keeps no history by design).
_SENDERS_MAX = 1_000_000


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def create_app() -> web.Application:
    """Build the aiohttp app with the relay's Socket.IO server attached."""
    sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins=None)
    app = web.Application()
    sio.attach(app)
    users: dict[str, str] = {}
    names: dict[str, str] = {}
    sender_of: dict[int, str] = {}
    counter = itertools.count(1)

    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> bool:
        username = auth.get("username") if isinstance(auth, dict) else None
        if not isinstance(username, str) or not username:
            return False
        users[username] = sid
        names[sid] = username
        return True

    async def disconnect(sid: str, *args: Any) -> None:
        username = names.pop(sid, None)
        if username is not None and users.get(username) == sid:
            del users[username]

    async def private_message(sid: str, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("to"), str):
            return {"ok": False, "error": {"code": "invalid", "message": "bad payload"}}
        sender = names.get(sid, "")
        message = {
            "id": next(counter),
            "from": sender,
            "to": data["to"],
            "message": data.get("message", ""),
            "sent_at": _now(),
        }
        if len(sender_of) >= _SENDERS_MAX:
            sender_of.pop(next(iter(sender_of)))
        sender_of[message["id"]] = sender
        target = users.get(data["to"])
        if target is not None:
            await sio.emit("receivedMessage", message, to=target)
        return {"ok": True, "message": message}

    async def delivered(sid: str, data: Any) -> dict[str, Any]:
        ids = data.get("ids") if isinstance(data, dict) else None
        if not isinstance(ids, list):
            return {"ok": False, "error": {"code": "invalid", "message": "bad payload"}}
        by_sender: dict[str, list[int]] = {}
        for message_id in ids:
            sender = sender_of.pop(message_id, None)
            if sender is not None:
                by_sender.setdefault(sender, []).append(message_id)
        at = _now()
        for sender, sender_ids in by_sender.items():
            target = users.get(sender)
            if target is not None:
                receipt = {
                    "cursor": 0,
                    "ids": sender_ids,
                    "status": "delivered",
                    "by": names.get(sid, ""),
                    "at": at,
                }
                await sio.emit("receipt", receipt, to=target)
        return {"ok": True, "updated": sum(len(v) for v in by_sender.values())}

    # socketio is untyped: register plain typed functions rather than via its decorators.
    sio.on("connect", connect)
    sio.on("disconnect", disconnect)
    sio.on("privateMessage", private_message)
    sio.on("delivered", delivered)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_get("/healthz", healthz)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default="uvloop",
        help="the loop to run on: messenger's default, so that the comparison is of "
        "persistence, not of event loops",
    )
    args = parser.parse_args(argv)
    loop = new_event_loop(args.event_loop)
    web.run_app(
        create_app(), host=args.host, port=args.port, print=None, access_log=None, loop=loop
    )


if __name__ == "__main__":
    main()
