"""python-socketio's `AsyncServer`, corrected where it departs from Socket.IO v5."""

from __future__ import annotations

from typing import Any

import socketio

from messenger.transport.overrides.engine_server import ConformantEngineServer


class ConformantServer(socketio.AsyncServer):  # type: ignore[misc]
    """An `AsyncServer` whose Engine.IO server is `ConformantEngineServer`."""

    def _engineio_server_class(self) -> Any:
        return ConformantEngineServer
