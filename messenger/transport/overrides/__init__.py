"""Corrections to python-socketio and python-engineio, fenced here.

The libraries are used through their public API everywhere else; what they get
wrong against the Engine.IO v4 / Socket.IO v5 protocol (as the official protocol
test suites and the reference Node server define it) is corrected in these
subclasses, each method with a comment naming the library behaviour it replaces.
They lean on private names of the libraries, so the versions they were checked
against are pinned in pyproject.toml's ranges and listed below; tests in
tests/test_protocol_conformance.py pin each correction.

Checked against python-engineio 4.15.1 and python-socketio 5.18.1 (the official
suites: engine.io-protocol and socket.io-protocol `test-suite/`; the reference:
engine.io 6.6, socket.io 4.8).

What each class corrects (the library's behaviour -> the protocol's):

`ConformantEngineServer` (engine_server)
- a request without `transport` is taken for polling -> 400
- methods other than GET, POST, OPTIONS get 405 (not routed) -> 400
- a POST is answered `OK` -> `ok`
- a POST past `max_http_buffer_size` waits for a GET to take the CLOSE (forever if
  none comes), then 400 -> 413 at once, the session closed
- the handshake's `pingInterval` is `int(seconds) * 1000`, 0 below 1 s -> milliseconds
- a websocket for an upgraded session gets a 400 handshake -> accepted, then closed
- sessions are plain `AsyncSocket`s -> `ConformantSocket`, unless a `connect`
  handler set a class of its own

`ConformantSocket` (engine_socket)
- a POST is read with one `read()` of Content-Length (a chunked body: nothing) ->
  read whole, bounded by `max_http_buffer_size`
- a payload of more than 16 packets is dropped and logged -> bounded by bytes only
- a bad packet in a POST is logged, the session kept -> session closed, 400
- a second GET while one waits is served too -> session closed, the waiting GET
  answered CLOSE, the second 400
- the client's CLOSE leaves a waiting GET to time out -> the GET is answered NOOP
- a missing PONG is seen when the service task passes (every ping_timeout /
  sessions), and the CLOSE it sends is dropped -> closed at the deadline, a waiting
  GET answered CLOSE, a later request 400
- the upgrade's NOOP for the GET is queued, and reaches the websocket when no GET
  waits -> given to the waiting GET only
- a GET during the upgrade is answered NOOP at once -> held 100 ms, then NOOP, or
  400 once the upgrade is done
- a second websocket during the upgrade runs a second upgrade, left open ->
  accepted, then closed
- the upgrade has no time limit -> 10 s (the reference's `upgradeTimeout`)
- an undecodable frame after an upgrade escapes the loop, the session left open ->
  session closed

`ConformantServer` (socketio_server)
- an unknown namespace is refused with `"Unable to connect"` ->
  `{"message": "Invalid namespace"}`
"""
