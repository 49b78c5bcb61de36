"""Pure pieces: settings from the environment, the token-bucket rate limiter, how
statements compile for the driver, and the client's ids."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import asyncpg
from sqlalchemy.engine import Dialect

from messenger.client.ids import new_client_id
from messenger.config import ConfigError, Settings
from messenger.ratelimit import RateLimiter
from messenger.store.driver_sql import DriverStatement, RowsInsert
from messenger.store.models import messages, stream_events


def test_settings_read_the_environment_and_flags_win() -> None:
    env = {
        "MESSENGER_PORT": "9000",
        "MESSENGER_CORS_ORIGINS": "https://a.example/, https://b.example",
        "MESSENGER_RATE_LIMIT": "0",
        "MESSENGER_MAX_BODY": "100",
        "MESSENGER_TOKEN_TTL": "60",
        "MESSENGER_CONNECT_TIMEOUT": "7.5",
    }
    settings = Settings.from_env(env, port=9001)
    assert settings.port == 9001
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.rate_limit == 0 and settings.max_body == 100
    assert settings.token_ttl == timedelta(seconds=60)
    assert settings.connect_timeout == 7.5
    assert Settings.from_env({}).database_url == "sqlite+aiosqlite:///./messenger.db"


@pytest.mark.parametrize(
    "env",
    [
        {"MESSENGER_PORT": "eighty"},
        {"MESSENGER_PORT": "0"},
        {"MESSENGER_CORS_ORIGINS": "*"},
        {"MESSENGER_RATE_LIMIT": "-1"},
        {"MESSENGER_SQLITE_SYNCHRONOUS": "sometimes"},
        {"MESSENGER_EVENT_LOOP": "tokio"},
        {"MESSENGER_CONNECT_TIMEOUT": "0"},
    ],
)
def test_bad_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env(env)


def test_empty_cors_origins_means_same_origin_only() -> None:
    assert Settings.from_env({"MESSENGER_CORS_ORIGINS": ""}).cors_origins == ()


def test_rate_limiter_allows_bursts_then_the_steady_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=10, burst=20, clock=lambda: now[0])
    assert sum(limiter.allow("u") for _ in range(30)) == 20
    now[0] += 0.5  # five more tokens
    assert sum(limiter.allow("u") for _ in range(30)) == 5
    assert limiter.allow("someone else")


def test_rate_limit_zero_is_off() -> None:
    limiter = RateLimiter(rate=0)
    assert all(limiter.allow("u") for _ in range(10_000))


@pytest.mark.parametrize(
    ("dialect", "placeholder"), [(sqlite.dialect(), "?"), (asyncpg.dialect(), "$5")]
)
def test_driver_statements_bind_by_position_in_the_drivers_style(
    dialect: Dialect, placeholder: str
) -> None:
    sql, names = DriverStatement(insert(stream_events)).compiled_for(dialect)
    assert names == ("user_id", "seq", "kind", "message_id", "payload")
    assert sql.startswith("INSERT INTO stream_events") and placeholder in sql


def test_driver_statements_refuse_values_the_driver_would_get_unconverted() -> None:
    # A datetime goes to SQLite as text that SQLAlchemy formats: only execute() does.
    with pytest.raises(ValueError, match="'at' needs converting"):
        DriverStatement(update(messages).values(sent_at=bindparam("at"))).compiled_for(
            sqlite.dialect()
        )
    # ... and comes back as that text, which only SQLAlchemy's result parses.
    with pytest.raises(ValueError, match="'sent_at' needs converting"):
        DriverStatement(select(messages.c.id, messages.c.sent_at)).compiled_for(sqlite.dialect())
    # A list is spelled out when SQLAlchemy executes the statement, not before.
    with pytest.raises(ValueError, match="'ids' expands"):
        DriverStatement(
            select(messages.c.id).where(messages.c.id.in_(bindparam("ids", expanding=True)))
        ).compiled_for(sqlite.dialect())


def _one_row_of(index: int) -> dict[str, Any]:
    return {name: bindparam(f"{name}{index}") for name in ("user_id", "seq", "kind")}


def test_rows_inserts_say_what_sqlalchemy_compiles_for_each_count() -> None:
    """The one-row SQL with its row repeated is the SQL SQLAlchemy compiles for n rows,
    and each row's values go in the order of the one row's names."""
    dialect = sqlite.dialect()
    rows = RowsInsert(insert(stream_events).values(_one_row_of(0)).returning(stream_events.c.seq))
    for count in (1, 2, 3, 17):
        each = insert(stream_events).values([_one_row_of(i) for i in range(count)])
        compiled = each.returning(stream_events.c.seq).compile(dialect=dialect)
        assert rows.sql_for(dialect, count) == compiled.string
    assert rows.parts_for(dialect)[3] == ("user_id0", "seq0", "kind0")


def test_rows_inserts_refuse_what_repeating_the_row_would_break() -> None:
    one_row = insert(stream_events).values(_one_row_of(0))
    # PostgreSQL's markers carry numbers: a repeated row would repeat them.
    with pytest.raises(ValueError, match="unnumbered markers"):
        RowsInsert(one_row).parts_for(asyncpg.dialect())
    # An expression in the row: its parentheses end the row too early.
    with pytest.raises(ValueError, match="one row of plain parameters"):
        RowsInsert(
            insert(stream_events).values(user_id=func.abs(bindparam("u")), seq=1, kind=1)
        ).parts_for(sqlite.dialect())
    # No row at all.
    with pytest.raises(ValueError, match="one row of plain parameters"):
        RowsInsert(
            insert(stream_events).from_select(["user_id", "seq", "kind"], select(1, 2, 3))
        ).parts_for(sqlite.dialect())


def test_client_ids_are_uuid7_and_sort_by_time() -> None:
    """UUIDv7 (RFC 9562): version 7, the RFC's variant, the Unix time in ms in the top
    48 bits, so an id made a millisecond later sorts after (the cheap index insert
    messenger.client.ids is for), and random enough never to repeat."""
    before = time.time_ns() // 1_000_000
    first = new_client_id()
    after = time.time_ns() // 1_000_000
    parsed = uuid.UUID(first)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert before <= parsed.int >> 80 <= after
    time.sleep(0.002)
    assert new_client_id() > first
    assert len({new_client_id() for _ in range(10_000)}) == 10_000
