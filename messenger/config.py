"""Settings: one frozen object built from command-line flags and MESSENGER_* variables.

Nothing reads the environment at import time; `Settings.from_env` takes the mapping to
read, so tests build settings without touching `os.environ`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./messenger.db"
SQLITE_SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
EVENT_LOOPS = ("uvloop", "asyncio")


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
    # Socket.IO connections one user may hold on one node; 0 means no cap.
    max_connections_per_user: int = 20
    token_ttl: timedelta = timedelta(days=30)
    # argon2id cost: the library's defaults (RFC 9106's second recommendation).
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    # FULL: an acknowledged send survives power loss, not only a process crash.
    sqlite_synchronous: str = "FULL"
    # Group commit: the most items one write transaction takes.
    write_batch_max: int = 256
    # How often each node compares its live connections against the stream heads in
    # SQL, to repair pushes that were lost on the way (G9).
    resync_interval: float = 2.0
    # Seconds an Engine.IO session may stay open without a connection to the
    # namespace, from its opening or from the end of its connection (a logout).
    connect_timeout: float = 45.0
    migrate: bool = True
    log_format: str = "text"
    # uvloop: less CPU per message and a lower tail than the standard library's loop
    # (docs/performance.md, "What changed on 2026-12-04"); "asyncio" is the fallback.
    event_loop: str = "uvloop"

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be 1-65535, not {self.port}")
        if self.rate_limit < 0:
            raise ConfigError("rate limit must be 0 (off) or positive")
        if self.login_burst < 0:
            raise ConfigError("login burst must be 0 (off) or positive")
        if self.max_connections_per_user < 0:
            raise ConfigError("max connections per user must be 0 (no cap) or positive")
        if self.max_body < 1:
            raise ConfigError("max body must be at least 1 character")
        if self.sqlite_synchronous not in SQLITE_SYNCHRONOUS_LEVELS:
            raise ConfigError(f"sqlite synchronous must be one of {SQLITE_SYNCHRONOUS_LEVELS}")
        if self.argon2_time_cost < 1 or self.argon2_memory_kib < 8:
            raise ConfigError("argon2 needs a time cost >= 1 and memory >= 8 KiB")
        if self.event_loop not in EVENT_LOOPS:
            raise ConfigError(f"event loop must be one of {EVENT_LOOPS}")
        if self.connect_timeout <= 0:
            raise ConfigError("connect timeout must be positive")
        if self.write_batch_max < 1:
            raise ConfigError("write batch max must be at least 1")
        if "" in self.cors_origins or "*" in self.cors_origins:
            # An empty list would switch python-engineio's Origin check off, and "*"
            # would allow any site to drive a logged-in browser: neither is allowed.
            raise ConfigError("CORS origins must be explicit origins")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read MESSENGER_* variables; explicit overrides (flags) win over them."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        readers: dict[str, tuple[str, Callable[[str], object]]] = {
            "host": ("MESSENGER_HOST", str),
            "port": ("MESSENGER_PORT", int),
            "database_url": ("MESSENGER_DATABASE_URL", str),
            "redis_url": ("MESSENGER_REDIS_URL", str),
            "redis_prefix": ("MESSENGER_REDIS_PREFIX", str),
            "cors_origins": ("MESSENGER_CORS_ORIGINS", _split_origins),
            "rate_limit": ("MESSENGER_RATE_LIMIT", float),
            "max_body": ("MESSENGER_MAX_BODY", int),
            "login_burst": ("MESSENGER_LOGIN_BURST", int),
            "max_connections_per_user": ("MESSENGER_MAX_CONNECTIONS_PER_USER", int),
            "token_ttl": ("MESSENGER_TOKEN_TTL", _seconds),
            "argon2_time_cost": ("MESSENGER_ARGON2_TIME_COST", int),
            "argon2_memory_kib": ("MESSENGER_ARGON2_MEMORY_KIB", int),
            "sqlite_synchronous": ("MESSENGER_SQLITE_SYNCHRONOUS", str.upper),
            "write_batch_max": ("MESSENGER_WRITE_BATCH_MAX", int),
            "resync_interval": ("MESSENGER_RESYNC_INTERVAL", float),
            "connect_timeout": ("MESSENGER_CONNECT_TIMEOUT", float),
            "log_format": ("MESSENGER_LOG_FORMAT", str),
            "event_loop": ("MESSENGER_EVENT_LOOP", str.lower),
        }
        for field, (name, parse) in readers.items():
            raw = env.get(name)
            if raw is None or (raw == "" and field != "cors_origins"):
                continue
            try:
                values[field] = parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{name}: {exc}") from exc
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _split_origins(raw: str) -> tuple[str, ...]:
    return tuple(part.strip().rstrip("/") for part in raw.split(",") if part.strip())


def _seconds(raw: str) -> timedelta:
    return timedelta(seconds=float(raw))
