"""The names of python-socketio, python-engineio and aiohttp that messenger leans on
beyond their documented API, pinned: a release that changes one fails here, naming it,
before anything subtler fails at run time.

Three tables: the library methods our subclasses override (their signatures), the
private library methods our code calls (their signatures), and the attributes it
reads or sets on library objects (that they exist). Which methods are overridden is
found by walking our classes, and which private names `self` and `super()` reach in
them by reading their source, so a new override or a new private name without a pin
fails too. And those names, library-specific attributes and overrides of library
methods beyond the public ones stay in messenger/transport/overrides/: the rest of
messenger/ is scanned for them. messenger/transport/overrides/__init__.py lists the
same names, what each is for, and the versions they were checked with.

To take a new release: fix what this names (and what the tests of the overrides find),
then update the pins here and the versions in that list.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import engineio
import pytest
import socketio
from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.test_utils import make_mocked_request
from engineio.async_drivers import aiohttp as engineio_aiohttp
from engineio.async_socket import AsyncSocket

import messenger
import messenger.transport.overrides
from messenger.cluster.bus import ClusterManager
from messenger.transport.overrides.engineio_server import GuardedEngineServer
from messenger.transport.overrides.engineio_socket import LeanSocket
from messenger.transport.overrides.engineio_tracking import track_websockets
from messenger.transport.overrides.guarded_socket import GuardedSocket
from messenger.transport.overrides.packets import JsonPacket
from messenger.transport.server import TextOnlyServer

LIBRARIES = ("socketio", "engineio", "aiohttp")

# Library method (where it is defined) -> its signature, for every method our classes
# override. An override is written against that signature (and usually calls it).
OVERRIDDEN: dict[str, str] = {
    "engineio.async_drivers.aiohttp.WebSocket.__call__": "(self, environ)",
    "engineio.async_server.AsyncServer._handle_connect": (
        "(self, environ, transport, jsonp_index=None)"
    ),
    "engineio.async_server.AsyncServer.attach": "(self, app, engineio_path='engine.io')",
    "engineio.async_server.AsyncServer.create_queue": "(self, *args, **kwargs)",
    "engineio.async_server.AsyncServer.handle_request": "(self, *args, **kwargs)",
    "engineio.async_socket.AsyncSocket._websocket_handler": "(self, ws)",
    "engineio.async_socket.AsyncSocket.check_ping_timeout": "(self)",
    "engineio.async_socket.AsyncSocket.close": "(self, wait=True, abort=False, reason=None)",
    "engineio.async_socket.AsyncSocket.handle_get_request": "(self, environ)",
    "engineio.async_socket.AsyncSocket.handle_post_request": "(self, environ)",
    "engineio.async_socket.AsyncSocket.poll": "(self)",
    "engineio.async_socket.AsyncSocket.receive": "(self, pkt)",
    "engineio.async_socket.AsyncSocket.schedule_ping": "(self)",
    "engineio.async_socket.AsyncSocket.send": "(self, pkt)",
    "engineio.base_server.BaseServer._method_not_found": "(self)",
    "engineio.base_server.BaseServer._ok": "(self, packets=None, headers=None, jsonp_index=None)",
    "socketio.async_pubsub_manager.AsyncPubSubManager._handle_emit": "(self, message)",
    "socketio.base_manager.BaseManager.__init__": "(self)",
    "socketio.base_manager.BaseManager.basic_disconnect": "(self, sid, namespace, **kwargs)",
    "socketio.base_manager.BaseManager.basic_enter_room": (
        "(self, sid, namespace, room, eio_sid=None)"
    ),
    "socketio.base_manager.BaseManager.basic_leave_room": "(self, sid, namespace, room)",
    "socketio.async_redis_manager.AsyncRedisManager.__init__": (
        "(self, url='redis://localhost:6379/0', channel='socketio', write_only=False,"
        " logger=None, json=None, redis_options=None)"
    ),
    "socketio.async_server.AsyncServer.__init__": (
        "(self, client_manager=None, logger=False, json=None, async_handlers=True,"
        " namespaces=None, **kwargs)"
    ),
    "socketio.async_server.AsyncServer._engineio_server_class": "(self)",
    "socketio.async_server.AsyncServer._handle_connect": "(self, eio_sid, namespace, data)",
    "socketio.async_server.AsyncServer._handle_disconnect": (
        "(self, eio_sid, namespace, reason=None)"
    ),
    "socketio.async_server.AsyncServer._handle_eio_connect": "(self, eio_sid, environ)",
    "socketio.async_server.AsyncServer._handle_eio_disconnect": "(self, eio_sid, reason)",
    "socketio.async_server.AsyncServer._handle_eio_message": "(self, eio_sid, data)",
    "socketio.async_server.AsyncServer._handle_event": "(self, eio_sid, namespace, id, data)",
    "socketio.async_server.AsyncServer.disconnect": (
        "(self, sid, namespace=None, ignore_queue=False)"
    ),
    "socketio.base_server.BaseServer._get_event_handler": "(self, event, namespace, args)",
    "socketio.packet.Packet.data_is_binary": "(data)",  # a classmethod, seen bound
    "socketio.packet.Packet.decode": "(self, encoded_packet)",
    # Not a method: the `json` module the packets encode and decode with.
    "socketio.packet.Packet.json": "<attribute>",
}

# Private library methods our code calls without overriding them -> their signatures.
CALLED: dict[str, str] = {
    "engineio.async_server.AsyncServer._bad_request": "(self, message=None)",
    "engineio.async_server.AsyncServer._cors_allowed_origins": "(self, environ)",
    "engineio.async_server.AsyncServer._generate_sid_cookie": "(self, sid, attributes)",
    "engineio.async_server.AsyncServer._make_response": "(self, response_dict, environ)",
    # Called as _trigger_event("connect", sid, environ, run_async=False).
    "engineio.async_server.AsyncServer._trigger_event": "(self, event, *args, **kwargs)",
    "engineio.async_server.AsyncServer._unauthorized": "(self, message=None)",
    "engineio.async_server.AsyncServer._upgrades": "(self, sid, transport)",
    "socketio.async_server.AsyncServer._send_packet": "(self, eio_sid, pkt)",
}

# Attributes our code reads or sets on library objects that their documentation does
# not promise: (what they are on, names). Checked on real instances made here.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    # The engine server: its driver table, sessions and settings.
    "engineio.AsyncServer": (
        "_async",
        "sockets",
        "generate_id",
        "transports",
        "async_mode",
        "cookie",
        "cors_allowed_origins",
        "max_http_buffer_size",
        "ping_interval",
        "ping_interval_grace_period",
        "ping_timeout",
        "reason",
    ),
    # A session: its send queue and state flags, set by our code as well as read.
    "engineio.async_socket.AsyncSocket": (
        "queue",
        "server",
        "sid",
        "connected",
        "upgrading",
        "upgraded",
        "closing",
        "closed",
        "last_ping",
        "upgrade_protocols",
    ),
    # A packet: its cached encoding (read to drop `data` once encoded).
    "engineio.packet.Packet": ("encode_cache", "binary", "data", "packet_type"),
    # The aiohttp websocket wrapper: the session's handler and the aiohttp response.
    "engineio.async_drivers.aiohttp.WebSocket": ("handler", "server", "_sock"),
    # The Socket.IO server: its engine, session manager, handlers and packet class.
    "socketio.AsyncServer": (
        "eio",
        "manager",
        "handlers",
        "namespace_handlers",
        "namespaces",
        "packet_class",
    ),
    # The Redis manager: the id its own messages carry.
    "socketio.AsyncRedisManager": ("host_id",),
    # A manager's tables, which IndexedManager's disconnect clears as the library's does.
    "socketio.AsyncManager": ("rooms", "callbacks", "pending_connect", "pending_disconnect"),
    # An aiohttp request: the connection's protocol (engineio_tracking wraps its transport).
    "aiohttp.web.Request": ("_protocol",),
    "aiohttp.base_protocol.BaseProtocol": ("transport",),
    "aiohttp.web.WebSocketResponse": ("compress",),
}

# The keys of python-engineio's aiohttp driver table that our code looks up.
DRIVER_KEYS = ("websocket", "translate_request")


def tracked_websocket_class(coalesce: bool = True) -> type:
    """The websocket class track_websockets installs (it is made inside the function)."""
    eio = engineio.AsyncServer(async_mode="aiohttp")
    track_websockets(eio, coalesce=coalesce)
    cls: type = eio._async["websocket"]
    return cls


def our_classes() -> list[type]:
    """Our classes that subclass a library class: the server's, the cluster's, and
    every such class in messenger/transport/overrides/."""
    roots: list[type] = [
        TextOnlyServer,
        GuardedEngineServer,
        GuardedSocket,
        LeanSocket,
        JsonPacket,
        ClusterManager,
        tracked_websocket_class(),
    ]
    package = messenger.transport.overrides
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        module = importlib.import_module(info.name)
        roots += [c for _, c in inspect.getmembers(module, inspect.isclass) if is_ours(c)]
    found: dict[type, None] = {}
    for root in roots:
        for cls in root.__mro__:
            if is_ours(cls):
                found[cls] = None
    return [c for c in found if any(is_library(base) for base in c.__mro__)]


def is_library(cls: type) -> bool:
    return cls.__module__.split(".")[0] in LIBRARIES


def is_ours(cls: type) -> bool:
    return cls.__module__.startswith("messenger.")


def where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# Names every class has; not overrides of anything.
CLASS_PLUMBING = {
    "__module__",
    "__qualname__",
    "__doc__",
    "__dict__",
    "__weakref__",
    "__annotations__",
    "__firstlineno__",
    "__static_attributes__",
    "__parameters__",
    "__orig_bases__",
}


def defining_library_class(cls: type, name: str) -> type | None:
    """The first library class in `cls`'s MRO whose body defines `name`."""
    for base in cls.__mro__:
        if is_library(base) and name in vars(base):
            return base
    return None


def overrides() -> dict[str, list[str]]:
    """Library method -> the methods of ours that override it."""
    found: dict[str, list[str]] = {}
    for cls in our_classes():
        for name in vars(cls):
            if name in CLASS_PLUMBING:
                continue
            base = defining_library_class(cls, name)
            if base is not None:
                found.setdefault(f"{where(base)}.{name}", []).append(f"{where(cls)}.{name}")
    return found


def resolve(dotted: str) -> Any:
    """The object a dotted name ends at: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(dotted)


def signature_text(dotted: str) -> str:
    obj = resolve(dotted)
    if not callable(obj) or inspect.ismodule(obj) or inspect.isclass(obj):
        return "<attribute>"
    return str(inspect.signature(obj))


# What `self.server` and `self.eio` are in our classes: the engine server.
ENGINE_SERVER_ATTRIBUTES = ("server", "eio")


def private_names_reached(cls: type) -> Iterator[tuple[str, str]]:
    """The private names reached in `cls`'s own body, each with whose it is: "self" for
    `self.`, `cls.` and `super().`, "engine" for `self.server.` and `self.eio.`."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__"):
            continue
        owner = node.value
        if (isinstance(owner, ast.Name) and owner.id in ("self", "cls")) or (
            isinstance(owner, ast.Call)
            and isinstance(owner.func, ast.Name)
            and owner.func.id == "super"
        ):
            yield "self", name
        elif (
            isinstance(owner, ast.Attribute)
            and owner.attr in ENGINE_SERVER_ATTRIBUTES
            and isinstance(owner.value, ast.Name)
            and owner.value.id == "self"
        ):
            yield "engine", name


def library_instance_names() -> dict[type, set[str]]:
    """The attributes library instances set in their `__init__` (not in class bodies)."""
    eio = engineio.AsyncServer(async_mode="aiohttp")
    made: list[Any] = [eio, AsyncSocket(eio, "sid"), socketio.AsyncServer(async_mode="aiohttp")]
    return {type(obj): set(vars(obj)) for obj in made}


@pytest.mark.parametrize("method", sorted(OVERRIDDEN))
def test_overridden_library_methods_keep_their_signatures(method: str) -> None:
    now = signature_text(method)
    assert now == OVERRIDDEN[method], (
        f"{method} is now {now}: our override(s) {overrides().get(method)} were written "
        f"for {OVERRIDDEN[method]}; check them against the new release, then update the pin"
    )


@pytest.mark.parametrize("method", sorted(CALLED))
def test_called_private_library_methods_keep_their_signatures(method: str) -> None:
    now = signature_text(method)
    assert now == CALLED[method], (
        f"{method} is now {now}, was {CALLED[method]}: check our calls to it, then update the pin"
    )


def test_every_override_is_pinned() -> None:
    found = overrides()
    unpinned = {method: ours for method, ours in found.items() if method not in OVERRIDDEN}
    assert not unpinned, f"overrides of library methods without a pin in OVERRIDDEN: {unpinned}"
    stale = sorted(set(OVERRIDDEN) - set(found))
    assert not stale, f"pinned in OVERRIDDEN but no longer overridden (or moved): {stale}"


def test_every_private_name_reached_through_self_is_pinned() -> None:
    """A private name that our classes reach on `self`, `super()` or the engine server,
    that a library class (or its instances) defines and that is not our own, is pinned
    above."""
    pinned = {name.rsplit(".", 1)[1] for name in (*OVERRIDDEN, *CALLED)}
    pinned |= {name for names in ATTRIBUTES.values() for name in names}
    instance_names = library_instance_names()

    def in_library(cls: type, name: str) -> bool:
        return defining_library_class(cls, name) is not None or any(
            name in names for lib_cls, names in instance_names.items() if issubclass(cls, lib_cls)
        )

    unpinned: dict[str, set[str]] = {}
    for cls in our_classes():
        ours = {name for base in cls.__mro__ if is_ours(base) for name in vars(base)}
        for whose, name in private_names_reached(cls):
            if whose == "engine":
                used = in_library(engineio.AsyncServer, name)
            else:
                used = in_library(cls, name) and name not in ours
            if used and name not in pinned:
                unpinned.setdefault(where(cls), set()).add(name)
    assert not unpinned, f"library private names used without a pin: {unpinned}"


def library_objects() -> dict[str, Any]:
    """A real object of each kind ATTRIBUTES names, made without a server running."""
    eio = engineio.AsyncServer(async_mode="aiohttp")
    return {
        "engineio.AsyncServer": eio,
        "engineio.async_socket.AsyncSocket": AsyncSocket(eio, "sid"),
        "engineio.packet.Packet": engineio.packet.Packet(engineio.packet.MESSAGE, "x"),
        "engineio.async_drivers.aiohttp.WebSocket": engineio_aiohttp.WebSocket(None, eio),
        "socketio.AsyncServer": socketio.AsyncServer(async_mode="aiohttp"),
        # Makes its Redis client without connecting.
        "socketio.AsyncRedisManager": socketio.AsyncRedisManager("redis://127.0.0.1:1/0"),
        "socketio.AsyncManager": socketio.AsyncManager(),
        "aiohttp.web.Request": make_mocked_request("GET", "/"),
        # __slots__ classes: their slots are their attributes.
        "aiohttp.base_protocol.BaseProtocol": BaseProtocol,
        "aiohttp.web.WebSocketResponse": web.WebSocketResponse,
    }


def has_attribute(obj: Any, name: str) -> bool:
    if hasattr(obj, name):
        return True
    slots = [s for c in getattr(obj, "__mro__", ()) for s in getattr(c, "__slots__", ())]
    return name in slots


def test_library_attributes_we_use_exist() -> None:
    objects = library_objects()
    missing = [
        f"{kind}.{name}"
        for kind, names in ATTRIBUTES.items()
        for name in names
        if not has_attribute(objects[kind], name)
    ]
    assert not missing, f"library attributes our code uses are gone: {missing}"


def test_aiohttp_request_protocol_is_the_private_one() -> None:
    """engineio_tracking reads `request._protocol` (the aiohttp request in the environ)
    to wrap the connection's transport: the same object as the public `protocol`."""
    request = make_mocked_request("GET", "/")
    assert request._protocol is request.protocol


def test_engineio_driver_table_has_the_entries_we_replace() -> None:
    """track_websockets replaces the driver table's websocket class with a subclass,
    and the engine server's `handle_request` translates requests through it."""
    eio = engineio.AsyncServer(async_mode="aiohttp")
    missing = [key for key in DRIVER_KEYS if key not in eio._async]
    assert not missing, f"python-engineio's aiohttp driver lost {missing}"
    assert eio._async["websocket"] is engineio_aiohttp.WebSocket


def test_sessions_can_change_class() -> None:
    """Our servers turn python-engineio's sessions into ours by assigning `__class__`,
    which needs AsyncSocket's instances to keep a `__dict__` (no `__slots__`)."""
    eio = engineio.AsyncServer(async_mode="aiohttp")
    socket = AsyncSocket(eio, "sid")
    assert LeanSocket.adopt(socket) is socket
    assert type(socket) is LeanSocket
    other = AsyncSocket(eio, "sid")  # with lean_websocket off
    assert GuardedSocket.adopt(other) is other
    assert type(other) is GuardedSocket


# Library attributes without an underscore that are still no documented API, and that
# only the overrides may touch (generic words such as `manager`, `sid`, `queue` or
# `sockets` alone are left out: our own classes use them too).
LIBRARY_SPECIFIC = frozenset(
    {
        "encode_cache",
        "host_id",
        "packet_class",
        "namespace_handlers",
        "service_task_handle",
        "start_service_task",
        "upgrade_protocols",
        "ping_interval_grace_period",
    }
)
# Dotted attribute chains that only the overrides may touch: `eio.sockets` is the
# engine server's session table.
LIBRARY_CHAINS = frozenset({("eio", "sockets")})
# Prefixes of python-socketio's and python-engineio's private handlers.
LIBRARY_PREFIXES = ("_handle_",)


def library_private_names() -> frozenset[str]:
    """The underscore names the pins above list (overridden, called, attributes)."""
    names = {name.rsplit(".", 1)[1] for name in (*OVERRIDDEN, *CALLED)}
    names |= {name for names in ATTRIBUTES.values() for name in names}
    return frozenset(n for n in names if n.startswith("_") and not n.startswith("__"))


def library_names_used(source: str, private: frozenset[str]) -> Iterator[tuple[int, str]]:
    """(line, name) for each library-only name `source` reaches: as an attribute, a
    method defined, or a string (as `getattr` takes it)."""
    forbidden = private | LIBRARY_SPECIFIC

    def flagged(name: str) -> bool:
        return name in forbidden or name.startswith(LIBRARY_PREFIXES)

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            if flagged(node.attr):
                yield node.lineno, node.attr
            elif isinstance(node.value, ast.Attribute | ast.Name):
                owner = node.value.attr if isinstance(node.value, ast.Attribute) else node.value.id
                if (owner, node.attr) in LIBRARY_CHAINS:
                    yield node.lineno, f"{owner}.{node.attr}"
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and flagged(node.name):
            yield node.lineno, node.name
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if flagged(node.value):
                yield node.lineno, node.value


def test_library_only_names_stay_in_the_overrides() -> None:
    """Outside messenger/transport/overrides/, messenger uses the libraries through
    their documented API only: no private name the pins list, no library-specific
    attribute, no private handler."""
    package = Path(messenger.__file__).parent
    overrides_dir = package / "transport" / "overrides"
    private = library_private_names()
    found = [
        f"{path.relative_to(package.parent)}:{line}: {name}"
        for path in sorted(package.rglob("*.py"))
        if overrides_dir not in path.parents
        for line, name in library_names_used(path.read_text(), private)
    ]
    assert not found, (
        "library-only names outside messenger/transport/overrides/ (move them there, "
        f"behind a public hook): {found}"
    )


def test_the_scan_finds_library_only_names() -> None:
    source = textwrap.dedent(
        """
        class Manager:
            async def _handle_emit(self, message):
                if message["host_id"] == self.host_id:
                    return
                self.server.eio.sockets.clear()
                getattr(self, "_send_packet")
                self.x = self.server._async["websocket"]
        """
    )
    found = {name for _, name in library_names_used(source, library_private_names())}
    assert found == {"_handle_emit", "host_id", "eio.sockets", "_send_packet", "_async"}


# Library methods a class outside the overrides may override: public API, as
# documented (TextOnlyServer's `__init__` and `disconnect`, ClusterManager's
# `__init__`).
PUBLIC_OVERRIDES = frozenset({"__init__", "disconnect"})


def test_library_methods_are_overridden_in_the_overrides_only() -> None:
    """A name scan cannot tell `decode` or `send` from our own; the overrides found by
    walking our classes can: outside messenger/transport/overrides/, only public ones."""
    outside = sorted(
        ours
        for method, classes in overrides().items()
        if method.rsplit(".", 1)[1] not in PUBLIC_OVERRIDES
        for ours in classes
        if not ours.startswith("messenger.transport.overrides.")
    )
    assert not outside, f"library methods overridden outside the overrides: {outside}"
