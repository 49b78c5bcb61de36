"""The Engine.IO server class: handshakes admitted (or refused) by the node's caps on
sessions, and session queues that count the bytes they hold.

python-engineio makes a session for every handshake it is sent; the only place to
refuse one before it exists is the handshake itself (`_handle_connect`, for long
polling and for a websocket opened directly). Each session's send queue comes from
the server's `create_queue`, so every packet queued for a session, whoever queues it
(pushes, answers, pings, the handshake's OPEN), passes through a `CountingQueue`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from messenger.transport.overrides.engine_server import ConformantEngineServer
from messenger.transport.overrides.guarded_socket import CountingQueue

# A refusal, as python-engineio's handlers build their HTTP answers.
Response = dict[str, Any]
# The Engine.IO error code the reference server gives the handshakes an application
# refuses (its `allowRequest`): "Forbidden".
FORBIDDEN = 4


class GuardedEngineServer(ConformantEngineServer):
    """A `ConformantEngineServer` whose handshakes pass `admit` first, and whose
    sessions queue their packets in `CountingQueue`s.

    `admit(environ)` answers a refusal or None; a handshake it let through ends with
    `handshake_done(environ)`, whether a session came of it or not (for a websocket
    opened directly, once that session is over).
    """

    admit: Callable[[dict[str, Any]], Response | None] | None = None
    handshake_done: Callable[[dict[str, Any]], None] | None = None

    def create_queue(self, *args: Any, **kwargs: Any) -> CountingQueue:
        return CountingQueue(*args, **kwargs)

    async def _handle_connect(self, environ: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if self.admit is not None:
            refusal = self.admit(environ)
            if refusal is not None:
                return refusal
        try:
            return await super()._handle_connect(environ, *args, **kwargs)
        finally:
            if self.handshake_done is not None:
                self.handshake_done(environ)


def refusal(status: int, message: str, retry_after: float) -> Response:
    """A refused handshake: `status` (429, 503) with the Engine.IO error body the
    reference server gives a refused request, and when to try again."""
    reason = {429: "TOO MANY REQUESTS", 503: "SERVICE UNAVAILABLE"}.get(status, "REFUSED")
    return {
        "status": f"{status} {reason}",
        "headers": [
            ("Content-Type", "application/json"),
            ("Retry-After", str(max(1, math.ceil(retry_after)))),
        ],
        "response": json.dumps({"code": FORBIDDEN, "message": message}).encode(),
    }
