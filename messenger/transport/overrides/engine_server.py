"""python-engineio's `AsyncServer`, corrected where it departs from Engine.IO v4.

The HTTP side of the protocol as the reference server (engine.io) answers it: a
request without `transport` or with a method other than GET, POST and OPTIONS is a
400, a POST is answered `ok` (413 past `maxPayload`), the handshake gives its
intervals in milliseconds, a websocket for a session that is upgrading or upgraded
is accepted and closed, and sessions run on `ConformantSocket` (engine_socket).
"""

from __future__ import annotations

import asyncio
import inspect
import urllib.parse
from typing import Any

import engineio
from engineio import exceptions, packet
from engineio.async_socket import AsyncSocket

from messenger.transport.overrides.engine_socket import (
    UPGRADE_POLL_HOLD,
    ConformantSocket,
    ContentTooLarge,
    asks_for_websocket,
)
from messenger.transport.overrides.heartbeat import TICK_SECONDS, PingWheel


class ConformantEngineServer(engineio.AsyncServer):  # type: ignore[misc]
    """An Engine.IO server as the protocol's reference server behaves."""

    _ping_wheel: PingWheel | None = None

    @property
    def ping_wheel(self) -> PingWheel:
        """Where sessions wait for their next PING (heartbeat); made on first use,
        inside the running loop."""
        if self._ping_wheel is None:
            # A PING may go out up to a tick late: a small share of the interval.
            self._ping_wheel = PingWheel(min(TICK_SECONDS, self.ping_interval / 10))
        return self._ping_wheel

    def attach(self, app: Any, engineio_path: str = "engine.io") -> None:
        super().attach(app, engineio_path)
        if self.async_mode == "aiohttp":
            # python-engineio routes GET, POST and OPTIONS only, so aiohttp answers
            # any other method 405 before the server sees it; the reference: 400.
            path = "/" + engineio_path.strip("/") + "/"
            app.router.add_route("*", path, self.handle_request)

    async def handle_request(self, *args: Any, **kwargs: Any) -> Any:
        answer = await self._conformant_answer(*args, **kwargs)
        if answer is not None:
            return answer
        # The library reads the request again into an environ of its own: ours is
        # not kept beside it for as long as a websocket lasts.
        return await super().handle_request(*args, **kwargs)

    async def _conformant_answer(self, *args: Any, **kwargs: Any) -> Any:
        """The answer where the reference's differs from python-engineio's, or None
        to let the library answer."""
        translate = self._async["translate_request"]
        environ = translate(*args, **kwargs)
        if inspect.isawaitable(environ):
            environ = await environ
        if not self._origin_allowed(environ):
            return None  # the library refuses it
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        transport = query.get("transport", [None])[0]
        if transport is None:
            # python-engineio takes a request without `transport` for polling.
            return await self._make_response(self._bad_request("Transport unknown"), environ)
        sid = query.get("sid", [None])[0]
        socket = self.sockets.get(sid) if sid is not None else None
        if (
            not isinstance(socket, ConformantSocket)
            or socket.closed
            or not socket.connected
            or "j" in query  # JSONP: the library's own path
            or transport not in self.transports
        ):
            return None
        method = environ["REQUEST_METHOD"]
        if method == "GET" and socket.upgraded and asks_for_websocket(environ, ["websocket"]):
            # python-engineio answers 400 to the handshake; the reference accepts
            # the websocket and closes it.
            return await self.refuse_websocket(environ)
        if method == "POST" and not socket.upgraded and transport == "polling":
            return await self._make_response(await self._receive_post(socket, environ), environ)
        return None

    async def _receive_post(self, socket: ConformantSocket, environ: Any) -> Any:
        """python-engineio's POST answer, without its two faults: on an error it
        disconnects the session with `wait=True`, which waits for a GET that may
        never come to take the CLOSE packet (the request hangs), and past
        `max_http_buffer_size` it answers 400 where the reference answers 413."""
        try:
            await socket.handle_post_request(environ)
        except ContentTooLarge:
            return _payload_too_large()
        except exceptions.EngineIOError:
            return self._bad_request()
        return self._ok()

    async def refuse_websocket(self, environ: Any) -> Any:
        """Accept a websocket handshake and close the websocket, after a pause in
        which what the session's own websocket was sent reaches the client first."""

        async def close(ws: Any) -> None:
            await asyncio.sleep(UPGRADE_POLL_HOLD)
            await ws.close()

        return await self._async["websocket"](close, self)(environ)

    def _origin_allowed(self, environ: Any) -> bool:
        """python-engineio's origin check, answered yes or no."""
        origin = environ.get("HTTP_ORIGIN")
        if self.cors_allowed_origins == [] or not origin:
            return True
        allowed = self._cors_allowed_origins(environ)
        return allowed is None or origin in allowed

    def _ok(self, packets: Any = None, headers: Any = None, jsonp_index: Any = None) -> Any:
        if packets is None:
            # python-engineio answers a POST `OK`; the protocol's answer is `ok`.
            return {
                "status": "200 OK",
                "headers": [("Content-Type", "text/plain")],
                "response": b"ok",
            }
        return super()._ok(packets, headers=headers, jsonp_index=jsonp_index)

    def _method_not_found(self) -> Any:
        # python-engineio: 405; the reference answers any other method 400.
        return self._bad_request("Bad request")

    async def _handle_connect(
        self, environ: Any, transport: str, jsonp_index: int | None = None
    ) -> Any:
        """python-engineio's handshake, with two corrections: it announces
        `int(seconds) * 1000` as the ping interval (0 below a second), and it makes
        every session a plain `AsyncSocket`. A session becomes a `ConformantSocket`
        after its `connect` event, unless a handler gave it a class of its own. And
        one change: the library's service task is not started (heartbeat says why)."""
        sid = self.generate_id()
        s = AsyncSocket(self, sid)
        self.sockets[sid] = s

        interval = self.ping_interval + self.ping_interval_grace_period
        pkt = packet.Packet(
            packet.OPEN,
            {
                "sid": sid,
                "upgrades": self._upgrades(sid, transport),
                "pingTimeout": round(self.ping_timeout * 1000),
                "pingInterval": round(interval * 1000),
                "maxPayload": self.max_http_buffer_size,
            },
        )
        await s.send(pkt)

        ret = await self._trigger_event("connect", sid, environ, run_async=False)
        if ret is not None and ret is not True:
            self.sockets.pop(sid, None)  # a handler may have closed it already
            self.logger.warning("Application rejected connection")
            return self._unauthorized(ret or None)
        if type(s) is AsyncSocket:
            s.__class__ = ConformantSocket

        s.schedule_ping()

        if transport == "websocket":
            ret = await s.handle_get_request(environ)
            if s.closed and sid in self.sockets:
                del self.sockets[sid]
            return ret
        s.connected = True
        headers = None
        if self.cookie:
            cookie = self.cookie
            if not isinstance(cookie, dict):
                cookie = {"name": cookie, "path": "/", "SameSite": "Lax"}
            headers = [("Set-Cookie", self._generate_sid_cookie(sid, cookie))]
        try:
            return self._ok(await s.poll(), headers=headers, jsonp_index=jsonp_index)
        except exceptions.QueueEmpty:
            return self._bad_request()


def _payload_too_large() -> dict[str, Any]:
    return {
        "status": "413 PAYLOAD TOO LARGE",
        "headers": [("Content-Type", "text/plain")],
        "response": b"Payload too large",
    }
