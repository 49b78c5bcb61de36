"""Settings: one frozen object built from command-line flags and MESSENGER_* variables.

Nothing reads the environment at import time; `Settings.from_env` takes the mapping to
read, so tests build settings without touching `os.environ`. Every value is checked
when the object is made, against the range in `RULES`: a bad one is a one-line
`ConfigError` that names the variable and what it accepts.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./messenger.db"
SQLITE_SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
EVENT_LOOPS = ("uvloop", "asyncio")
BLOB_STORES = ("directory", "database")
LOG_FORMATS = ("text", "json")
KIB, MIB = 1024, 1024 * 1024


class ConfigError(ValueError):
    """A setting has a value the server cannot run with."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    # Prefix of the Redis channel and keys: deployments sharing a Redis server must
    # differ here, or they would hear each other's wake-ups (pub/sub ignores the db).
    redis_prefix: str = "messenger"
    # Origins allowed at the HTTP and Socket.IO handshake; empty means same origin only.
    cors_origins: tuple[str, ...] = ()
    # Events per second per user; 0 turns the limit off. Bursts of twice that pass.
    rate_limit: float = 20.0
    max_body: int = 4096
    # Login attempts per username in a burst, refilled at one every 5 s (an address
    # gets five times that); 0 turns the login limits off (benchmarks, trusted setups).
    login_burst: int = 10
    # Registrations one client address may make in a burst, refilled at one a minute;
    # 0 turns the registration limits off (tests, benchmarks, trusted setups).
    register_burst: int = 5
    # Socket.IO connections one user may hold on one node; 0 means no cap.
    max_connections_per_user: int = 20
    token_ttl: timedelta = timedelta(days=30)
    # argon2id cost: the library's defaults (RFC 9106's second recommendation).
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    # Password hashes computed at once (each holds argon2_memory_kib), and how many
    # more may wait for a worker before a request is answered 503 `unavailable`.
    hash_workers: int = 2
    hash_queue: int = 16
    # FULL: an acknowledged send survives power loss, not only a process crash.
    sqlite_synchronous: str = "FULL"
    # Group commit: the most items one write transaction takes.
    write_batch_max: int = 256
    # How often each node compares its live connections against the stream heads in
    # SQL, to repair pushes that were lost on the way (G9).
    resync_interval: float = 2.0
    # Seconds an Engine.IO session may stay open without a connection to the
    # namespace, from its opening or from the end of its connection (a logout).
    connect_timeout: float = 10.0
    # The Engine.IO heartbeat: a PING every `ping_interval` seconds, and a session
    # closed when `ping_timeout` more pass without its PONG (on a websocket: without
    # anything heard). The handshake announces both, so clients follow them. Each
    # PING and PONG costs the node CPU: most of what many idle sockets cost.
    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    # Engine.IO sessions not (yet) connected to the namespace, per client address and
    # on the whole node; a handshake beyond either is refused. 0 means no cap.
    max_pending_sessions_per_address: int = 64
    max_pending_sessions: int = 4096
    # Bytes queued for one connection and not yet taken by the kernel (pushes,
    # answers, pings); past it the connection is dropped. Nothing acknowledged is
    # lost: what was not delivered stays in SQL and replays on reconnect.
    connection_buffer: int = 8 * MIB
    # The size a `sync` or `history` answer stops at (`has_more` then says so).
    max_answer_bytes: int = 1 * MIB
    # Events a connection may have sent and not yet been answered.
    max_pending_requests: int = 8
    # Open TCP connections per client address and on the whole node; 0 for the node
    # means as many as the file-descriptor limit allows, less room for the databases.
    max_connections_per_address: int = 256
    max_connections: int = 0
    # Seconds a client has to send a request's line and headers, and an idle
    # keep-alive connection stays open.
    header_timeout: float = 10.0
    keepalive_timeout: float = 30.0
    # Proxies (addresses or networks) whose X-Forwarded-For names the client address.
    trusted_proxies: tuple[str, ...] = ()
    migrate: bool = True
    # Seconds after sending during which the sender may edit a message, or delete it
    # for everyone; 0 means no limit.
    edit_window: float = 48 * 3600.0
    delete_window: float = 48 * 3600.0
    # Seconds a user must have been away, and a message undelivered, before a push.
    push_delay: float = 10.0
    # Hosts a push may reach over plain http://, and at a non-public address (a
    # gateway on the local network, tests); every other push URL is https:// to a
    # public address.
    push_allow_http: tuple[str, ...] = ()
    # The contact a push service may reach the operator at (VAPID `sub`).
    push_contact: str = "mailto:postmaster@localhost"
    # Where attachment bytes live: "directory" (`blob_dir`; empty: next to the SQLite
    # file) or "database" (chunks in a table, for nodes that share only a database).
    blob_store: str = "directory"
    blob_dir: str = ""
    # Bytes of one attachment, and of all of one user's uploads (pending and sent).
    max_attachment: int = 25 * MIB
    attachment_quota: int = 1024 * MIB
    # Seconds an upload may wait for a send to carry it before it is collected.
    upload_ttl: float = 24 * 3600.0
    # The performance overrides of python-engineio's websocket loops (LeanSocket, the
    # gathered writes); off, sessions run the library's own loops, with the protocol
    # corrections and the security bounds kept.
    lean_websocket: bool = True
    log_format: str = "text"
    # uvloop: less CPU per message and a lower tail than the standard library's loop
    # (docs/dev/performance-log.md); "asyncio" is the fallback.
    event_loop: str = "uvloop"

    def __post_init__(self) -> None:
        for field, rule in RULES.items():
            value = getattr(self, field)
            if not rule.accepts(value):
                raise ConfigError(f"{rule.env} must be {rule.accepted}, not {_shown(value)}")
        if self.max_answer_bytes > self.connection_buffer:
            raise ConfigError(
                "MESSENGER_MAX_ANSWER_BYTES must be at most MESSENGER_CONNECTION_BUFFER "
                f"({self.connection_buffer}), not {self.max_answer_bytes}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read MESSENGER_* variables; explicit overrides (flags) win over them."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field, rule in RULES.items():
            raw = env.get(rule.env)
            if raw is None or (raw == "" and not rule.empty_is_value):
                continue
            try:
                values[field] = rule.parse(raw)
            except ValueError:
                raise ConfigError(
                    f"{rule.env} must be {rule.accepted}, not {_shown(raw)}"
                ) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


class Rule(NamedTuple):
    """How one setting is read from its variable, and which values it accepts."""

    env: str
    parse: Callable[[str], object]
    accepts: Callable[[Any], bool]
    accepted: str  # said in the error: "an integer from 1 to 65535"
    empty_is_value: bool = False


def _finite(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(raw)
    return value


def _seconds(raw: str) -> timedelta:
    return timedelta(seconds=_finite(raw))


def _boolean(raw: str) -> bool:
    word = raw.strip().lower()
    if word not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(raw)
    return word in ("true", "1", "yes")


def _split(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _split_hosts(raw: str) -> tuple[str, ...]:
    return tuple(part.lower().strip("[]") for part in _split(raw))


def _split_origins(raw: str) -> tuple[str, ...]:
    return tuple(part.rstrip("/") for part in _split(raw))


def _int_in(low: int, high: int) -> Callable[[Any], bool]:
    return lambda v: type(v) is int and low <= v <= high


def _number_in(low: float, high: float, low_open: bool = False) -> Callable[[Any], bool]:
    def accepts(value: Any) -> bool:
        if type(value) not in (int, float) or not math.isfinite(value):
            return False
        above = low < value if low_open else low <= value
        return bool(above and value <= high)

    return accepts


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], bool]:
    return lambda v: v in choices


def _origins_ok(origins: Any) -> bool:
    # An empty entry would switch python-engineio's Origin check off, and "*" would
    # allow any site to drive a logged-in browser: neither is allowed.
    return isinstance(origins, tuple) and all(o and o != "*" for o in origins)


def _networks_ok(networks: Any) -> bool:
    if not isinstance(networks, tuple):
        return False
    try:
        for network in networks:
            ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False
    return True


def _ttl_ok(ttl: Any) -> bool:
    return isinstance(ttl, timedelta) and timedelta(seconds=1) <= ttl <= timedelta(days=3650)


def _url_ok(schemes: tuple[str, ...]) -> Callable[[Any], bool]:
    return lambda url: isinstance(url, str) and url.split("://", 1)[0] in schemes


def _optional(accepts: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or accepts(v)


DATABASE_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")
REDIS_SCHEMES = ("redis", "rediss", "unix")
MAX_INT = 2**31 - 1

RULES: dict[str, Rule] = {
    "host": Rule("MESSENGER_HOST", str, lambda v: isinstance(v, str) and v != "", "a host name"),
    "port": Rule("MESSENGER_PORT", int, _int_in(1, 65535), "an integer from 1 to 65535"),
    "database_url": Rule(
        "MESSENGER_DATABASE_URL",
        str,
        _url_ok(DATABASE_SCHEMES),
        f"a URL starting {' or '.join(s + '://' for s in DATABASE_SCHEMES)}",
    ),
    "redis_url": Rule(
        "MESSENGER_REDIS_URL",
        str,
        _optional(_url_ok(REDIS_SCHEMES)),
        f"a URL starting {' or '.join(s + '://' for s in REDIS_SCHEMES)}",
    ),
    "redis_prefix": Rule(
        "MESSENGER_REDIS_PREFIX",
        str,
        lambda v: isinstance(v, str) and 0 < len(v) <= 64,
        "1 to 64 characters",
    ),
    "cors_origins": Rule(
        "MESSENGER_CORS_ORIGINS",
        _split_origins,
        _origins_ok,
        "a comma-separated list of explicit origins (no '*')",
        empty_is_value=True,
    ),
    "rate_limit": Rule(
        "MESSENGER_RATE_LIMIT", _finite, _number_in(0, 1e6), "0 (off) or events per second"
    ),
    "max_body": Rule(
        "MESSENGER_MAX_BODY", int, _int_in(1, 65536), "an integer from 1 to 65536 (characters)"
    ),
    "login_burst": Rule(
        "MESSENGER_LOGIN_BURST", int, _int_in(0, 10_000), "an integer from 0 (off) to 10000"
    ),
    "register_burst": Rule(
        "MESSENGER_REGISTER_BURST", int, _int_in(0, 10_000), "an integer from 0 (off) to 10000"
    ),
    "max_connections_per_user": Rule(
        "MESSENGER_MAX_CONNECTIONS_PER_USER",
        int,
        _int_in(0, 100_000),
        "an integer from 0 (no cap) to 100000",
    ),
    "token_ttl": Rule(
        "MESSENGER_TOKEN_TTL", _seconds, _ttl_ok, "seconds from 1 to 315360000 (ten years)"
    ),
    "argon2_time_cost": Rule(
        "MESSENGER_ARGON2_TIME_COST", int, _int_in(1, 100), "an integer from 1 to 100"
    ),
    # argon2id with the library's parallelism of 4 needs at least 8 KiB a lane.
    "argon2_memory_kib": Rule(
        "MESSENGER_ARGON2_MEMORY_KIB",
        int,
        _int_in(32, 4 * MIB),
        "an integer from 32 to 4194304 (KiB)",
    ),
    "hash_workers": Rule("MESSENGER_HASH_WORKERS", int, _int_in(1, 64), "an integer from 1 to 64"),
    "hash_queue": Rule(
        "MESSENGER_HASH_QUEUE", int, _int_in(0, 10_000), "an integer from 0 to 10000"
    ),
    "sqlite_synchronous": Rule(
        "MESSENGER_SQLITE_SYNCHRONOUS",
        str.upper,
        _one_of(SQLITE_SYNCHRONOUS_LEVELS),
        f"one of {', '.join(SQLITE_SYNCHRONOUS_LEVELS)}",
    ),
    "write_batch_max": Rule(
        "MESSENGER_WRITE_BATCH_MAX", int, _int_in(1, 10_000), "an integer from 1 to 10000"
    ),
    "edit_window": Rule(
        "MESSENGER_EDIT_WINDOW",
        _finite,
        _number_in(0, 10 * 365 * 86400),
        "seconds from 0 (no limit) to ten years",
    ),
    "delete_window": Rule(
        "MESSENGER_DELETE_WINDOW",
        _finite,
        _number_in(0, 10 * 365 * 86400),
        "seconds from 0 (no limit) to ten years",
    ),
    "push_delay": Rule(
        "MESSENGER_PUSH_DELAY", _finite, _number_in(0, 3600), "seconds from 0 to 3600"
    ),
    "push_allow_http": Rule(
        "MESSENGER_PUSH_ALLOW_HTTP",
        _split_hosts,
        lambda v: isinstance(v, tuple) and all(isinstance(h, str) and h for h in v),
        "a comma-separated list of host names or addresses",
        empty_is_value=True,
    ),
    "push_contact": Rule(
        "MESSENGER_PUSH_CONTACT",
        str,
        lambda v: (
            isinstance(v, str)
            and (v.startswith("mailto:") or v.startswith("https://"))
            and len(v) > 8
        ),
        "a mailto: or https:// URI",
    ),
    "blob_store": Rule(
        "MESSENGER_BLOB_STORE",
        str,
        _one_of(BLOB_STORES),
        f"one of {', '.join(BLOB_STORES)}",
    ),
    "blob_dir": Rule("MESSENGER_BLOB_DIR", str, lambda v: isinstance(v, str), "a directory", True),
    "max_attachment": Rule(
        "MESSENGER_MAX_ATTACHMENT",
        int,
        _int_in(1024, 4 * 1024 * MIB),
        "bytes from 1024 to 4 GiB",
    ),
    "attachment_quota": Rule(
        "MESSENGER_ATTACHMENT_QUOTA",
        int,
        _int_in(0, 2**50),
        "bytes, 0 or more",
    ),
    "upload_ttl": Rule(
        "MESSENGER_UPLOAD_TTL", _finite, _number_in(60, 30 * 86400), "seconds from 60 to 30 days"
    ),
    "resync_interval": Rule(
        "MESSENGER_RESYNC_INTERVAL", _finite, _number_in(0.05, 3600), "seconds from 0.05 to 3600"
    ),
    "connect_timeout": Rule(
        "MESSENGER_CONNECT_TIMEOUT", _finite, _number_in(0.1, 3600), "seconds from 0.1 to 3600"
    ),
    "ping_interval": Rule(
        "MESSENGER_PING_INTERVAL", _finite, _number_in(1, 3600), "seconds from 1 to 3600"
    ),
    "ping_timeout": Rule(
        "MESSENGER_PING_TIMEOUT", _finite, _number_in(1, 600), "seconds from 1 to 600"
    ),
    "max_pending_sessions_per_address": Rule(
        "MESSENGER_MAX_PENDING_SESSIONS_PER_ADDRESS",
        int,
        _int_in(0, 1_000_000),
        "an integer from 0 (no cap) to 1000000",
    ),
    "max_pending_sessions": Rule(
        "MESSENGER_MAX_PENDING_SESSIONS",
        int,
        _int_in(0, 1_000_000),
        "an integer from 0 (no cap) to 1000000",
    ),
    "connection_buffer": Rule(
        "MESSENGER_CONNECTION_BUFFER",
        int,
        _int_in(64 * KIB, MAX_INT),
        f"bytes from {64 * KIB} to {MAX_INT}",
    ),
    "max_answer_bytes": Rule(
        "MESSENGER_MAX_ANSWER_BYTES",
        int,
        _int_in(64 * KIB, MAX_INT),
        f"bytes from {64 * KIB} to {MAX_INT}",
    ),
    "max_pending_requests": Rule(
        "MESSENGER_MAX_PENDING_REQUESTS", int, _int_in(1, 1000), "an integer from 1 to 1000"
    ),
    "max_connections_per_address": Rule(
        "MESSENGER_MAX_CONNECTIONS_PER_ADDRESS",
        int,
        _int_in(0, 1_000_000),
        "an integer from 0 (no cap) to 1000000",
    ),
    "max_connections": Rule(
        "MESSENGER_MAX_CONNECTIONS",
        int,
        _int_in(0, 10_000_000),
        "an integer from 0 (from the descriptor limit) to 10000000",
    ),
    "header_timeout": Rule(
        "MESSENGER_HEADER_TIMEOUT", _finite, _number_in(0.1, 3600), "seconds from 0.1 to 3600"
    ),
    "keepalive_timeout": Rule(
        "MESSENGER_KEEPALIVE_TIMEOUT", _finite, _number_in(0.1, 3600), "seconds from 0.1 to 3600"
    ),
    "trusted_proxies": Rule(
        "MESSENGER_TRUSTED_PROXIES",
        _split,
        _networks_ok,
        "a comma-separated list of IP addresses or networks",
        empty_is_value=True,
    ),
    "migrate": Rule("MESSENGER_MIGRATE", _boolean, lambda v: isinstance(v, bool), "true or false"),
    "lean_websocket": Rule(
        "MESSENGER_LEAN_WEBSOCKET", _boolean, lambda v: isinstance(v, bool), "true or false"
    ),
    "log_format": Rule(
        "MESSENGER_LOG_FORMAT", str.lower, _one_of(LOG_FORMATS), f"one of {', '.join(LOG_FORMATS)}"
    ),
    "event_loop": Rule(
        "MESSENGER_EVENT_LOOP", str.lower, _one_of(EVENT_LOOPS), f"one of {', '.join(EVENT_LOOPS)}"
    ),
}


def _shown(value: object) -> str:
    """A value as an error line shows it: one line, and never very long."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
