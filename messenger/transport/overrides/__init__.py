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
- a task per session sleeps until its next PING, and the service task wakes once
  per session every ping_timeout -> one timer per server sends the PINGs that are
  due (heartbeat); each transport's own deadline notices a missing PONG
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

Every name of python-socketio, python-engineio and aiohttp used in messenger/ beyond
their documented API, by file (all of them here). Verified with python-socketio
5.18.1, python-engineio 4.15.1 and aiohttp 3.14.5; pyproject.toml caps each below
its next minor release, and tests/unit/test_library_signatures.py pins them (the
signature of every method overridden or called, the presence of every attribute),
and fails on an override, or a private name reached through `self`, that it does not
know, and on any of these names (or a library-specific attribute such as `host_id`,
`packet_class`, `eio.sockets`) used outside this package. Paths are from messenger/;
"override" marks a library method replaced by ours, the other names are read, called
or set.

transport/overrides/engine_server.py (`ConformantEngineServer`, engineio `AsyncServer`)
- `_handle_connect` override: the handshake, rewritten (see above); it repeats
  the library's with `_upgrades`, `_trigger_event`, `_unauthorized`,
  `_generate_sid_cookie`, `generate_id`, `cookie`, `sockets` (and does not start
  the library's service task: heartbeat)
- `_ok`, `_method_not_found` overrides: `ok` for a POST; 400 for other methods
- `handle_request`, `attach` overrides: the routing above
- `_async["translate_request"]`: the environ, read before the library reads it
- `_async["websocket"]`: a websocket opened only to be closed
- `_make_response`, `_bad_request`: answers built as the library builds them
- `_cors_allowed_origins`, `cors_allowed_origins`: the library's origin check
- `transports`, `async_mode`, `max_http_buffer_size`, `ping_interval`,
  `ping_interval_grace_period`, `ping_timeout`, `reason`: its settings

transport/overrides/engine_socket.py (`ConformantSocket`, engineio `AsyncSocket`)
- `handle_get_request`, `handle_post_request`, `close`, `schedule_ping`,
  `check_ping_timeout`, `_websocket_handler` overrides (see above); the next PING
  waits in the server's `PingWheel` (heartbeat) instead of a task per session
- `queue`, `connected`, `upgrading`, `upgraded`, `closing`, `closed`,
  `last_ping`, `upgrade_protocols`, `server`: the session's state, read and set
- `server._bad_request`: the 400 answers
- a session's `__class__` is set to ours after its `connect` event

transport/overrides/socketio_server.py (`ConformantServer`, socketio `AsyncServer`)
- `_engineio_server_class` override: the engine server class
- `_handle_connect`, `_handle_event` overrides: unknown namespace, event
  outside a connection
- `_send_packet`, `packet_class`: the CONNECT_ERROR sent
- `handlers`, `namespace_handlers`, `namespaces`: the namespaces served

transport/overrides/session_server.py (`SessionServer`, a `ConformantServer`; the base
of transport/server.py's `TextOnlyServer`, which overrides `__init__` and
`disconnect` and otherwise uses only its public hooks)
- `_engineio_server_class`, `_get_event_handler`, `_handle_eio_connect`,
  `_handle_connect`, `_handle_eio_disconnect`, `_handle_disconnect`,
  `_handle_eio_message` overrides: the hooks for sessions opened and closed, the
  namespace connected and left, binary and undecodable packets, the "*" event
- `_send_packet`, `packet_class`: a CONNECT_ERROR for a bad `auth`
- `eio.sockets`, a session's `queue`, `upgraded`: sessions reached, closed and
  dropped (for transport/server.py, transport/pusher.py and node.py)

transport/overrides/engineio_server.py (`GuardedEngineServer`, engineio `AsyncServer`)
- `_handle_connect` override: handshakes admitted by the session caps
- `create_queue` override: every session's queue counts its bytes (a `CountingQueue`,
  asyncio's queue interface as the library uses it, made lazily)

transport/overrides/guarded_socket.py (`GuardedSocket`, engineio `AsyncSocket`; every
session, whatever `lean_websocket` says)
- `send`, `poll`, `receive`, `_websocket_handler` overrides: the byte budget, bad
  packets and undecodable frames closing the session
- `queue`, `connected`, `upgraded`, `closed`, `server`: the session's state
- engineio `Packet.encode_cache`, `binary`, `data`: a queued packet keeps only its
  encoding
- `adopt` sets a session's `__class__` to `GuardedSocket` (or `LeanSocket`)

transport/overrides/engineio_socket.py (`LeanSocket`, a `GuardedSocket`; only with
`lean_websocket` on, as MESSENGER_LEAN_WEBSOCKET=0 turns it off)
- `send`, `_websocket_handler` overrides: the websocket loops and direct frame writes;
  the writer task runs only while packets are queued
- `ws._sock` (the aiohttp `WebSocketResponse`, for `compress`) of the driver's
  websocket wrapper

transport/overrides/engineio_tracking.py
- engineio `AsyncServer._async["websocket"]`: replaced, per server, by a subclass
- engineio aiohttp `WebSocket.__call__` override, and its `handler` (the
  session's bound method); a `transport` of ours is set on it for `LeanSocket`
- aiohttp `Request._protocol` and its `transport` (aiohttp `BaseProtocol`):
  the connection's transport, kept to cut it, and wrapped to gather writes unless
  `lean_websocket` is off

transport/overrides/packets.py (`JsonPacket`, socketio `Packet`; the codec and the
strict checks it uses are transport/packets.py's)
- `json` (class attribute) replaced: the codec built once
- `data_is_binary` (classmethod), `decode` overrides

transport/overrides/rooms.py (`IndexedManager`, socketio `AsyncManager`; a node's
manager, and the base of `NamespaceRedisManager`)
- `__init__`, `basic_enter_room`, `basic_leave_room`, `basic_disconnect` overrides:
  each session's rooms indexed, so a disconnect leaves them without copying and
  searching the namespace's whole room table
- `rooms`, `callbacks`, `pending_connect`, `pending_disconnect`: the tables a
  disconnect clears

transport/overrides/redis_manager.py (`NamespaceRedisManager`, socketio
`AsyncRedisManager`; the base of cluster/bus.py's `ClusterManager`, which overrides
`__init__` and otherwise uses only its public hook, `on_foreign_emit`)
- `__init__`, `_handle_emit` overrides: one namespace's messages (the bus's),
  handed to the hook
- `host_id`: this node's own messages, skipped
"""
