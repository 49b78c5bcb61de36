"""Handshakes that python-socketio cannot even decode still get their connect_error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio

from messenger.config import Settings
from tests.support import Device, Http, RunningServer, start_server


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


async def test_simultaneous_handshakes_cannot_pass_the_connection_cap_together(
    settings: Settings,
) -> None:
    """The cap is checked after the handshake's last wait, next to the registration:
    ten handshakes at once with a cap of three leave exactly three connections."""
    running = await start_server(settings.replace(max_connections_per_user=3))
    try:
        ann = await Http(running.url).account("ann")
        devices = [Device(running.url) for _ in range(10)]
        outcomes = await asyncio.gather(
            *(device.connect(ann.token) for device in devices), return_exceptions=True
        )
        connected = [d for d, outcome in zip(devices, outcomes, strict=True) if outcome is d]
        assert len(connected) == 3, outcomes
        refused = [d.connect_error for d in devices if d not in connected]
        assert all(error and error["code"] == "rate_limited" for error in refused), refused
        for device in connected:
            await device.disconnect()
    finally:
        await running.stop()
