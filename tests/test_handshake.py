"""Handshakes that python-socketio cannot even decode still get their connect_error."""

from __future__ import annotations

from typing import Any

import pytest
import socketio

from tests.support import RunningServer


@pytest.mark.parametrize("auth", [1.0, 2.6451821650581256e16, "token", [1, 2]])
async def test_non_object_auth_is_refused_as_unauthorized(server: RunningServer, auth: Any) -> None:
    """A number after a CONNECT packet's type reads as an ack id, and the rest as bad
    JSON: the server answers it instead of leaving the client waiting."""
    client = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    client.on("connect_error", errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(server.url, auth=auth, transports=["websocket"], wait_timeout=5)
    await client.disconnect()
    assert errors and errors[0]["code"] == "unauthorized", errors
