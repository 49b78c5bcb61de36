"""Pure pieces: settings from the environment, the token-bucket rate limiter, how
statements compile for the driver, and the client's ids."""

from __future__ import annotations

import dataclasses
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import asyncpg
from sqlalchemy.engine import Dialect

from messenger import cli
from messenger.client.ids import new_client_id
from messenger.config import RULES, ConfigError, Settings
from messenger.ratelimit import RateLimiter
from messenger.store.driver_sql import DriverStatement, RowsInsert
from messenger.store.models import messages, stream_events
from messenger.transport.client_address import ClientAddresses


def test_settings_read_the_environment_and_flags_win() -> None:
    env = {
        "MESSENGER_PORT": "9000",
        "MESSENGER_CORS_ORIGINS": "https://a.example/, https://b.example",
        "MESSENGER_RATE_LIMIT": "0",
        "MESSENGER_MAX_BODY": "100",
        "MESSENGER_TOKEN_TTL": "60",
        "MESSENGER_CONNECT_TIMEOUT": "7.5",
        "MESSENGER_PING_INTERVAL": "60",
        "MESSENGER_PING_TIMEOUT": "30",
    }
    settings = Settings.from_env(env, port=9001)
    assert settings.port == 9001
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.rate_limit == 0 and settings.max_body == 100
    assert settings.token_ttl == timedelta(seconds=60)
    assert settings.connect_timeout == 7.5
    assert (settings.ping_interval, settings.ping_timeout) == (60, 30)
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
        {"MESSENGER_CONNECT_TIMEOUT": "nan"},
        {"MESSENGER_RATE_LIMIT": "nan"},
        {"MESSENGER_RATE_LIMIT": "inf"},
        {"MESSENGER_RESYNC_INTERVAL": "0"},
        {"MESSENGER_PING_INTERVAL": "0.5"},
        {"MESSENGER_PING_TIMEOUT": "nan"},
        {"MESSENGER_TOKEN_TTL": "-60"},
        {"MESSENGER_ARGON2_MEMORY_KIB": "8"},
        {"MESSENGER_CONNECTION_BUFFER": "1"},
        {"MESSENGER_MAX_ANSWER_BYTES": str(64 * 1024 * 1024)},
        {"MESSENGER_TRUSTED_PROXIES": "10.0.0.0/8, proxy.example"},
        {"MESSENGER_DATABASE_URL": "mysql://root@localhost/db"},
        {"MESSENGER_HEADER_TIMEOUT": "-1"},
        {"MESSENGER_MIGRATE": "perhaps"},
    ],
)
def test_bad_settings_are_refused_in_one_line_naming_the_variable(env: dict[str, str]) -> None:
    """Each bad value is refused when the settings are made, in one line that names the
    variable and what it accepts (the `serve` command prints it and exits 2)."""
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env)
    message = str(refused.value)
    assert "\n" not in message and next(iter(env)) in message and "must be" in message


def test_every_setting_has_a_rule_and_every_default_passes_it() -> None:
    """A new setting cannot skip validation: each field of Settings is in RULES."""
    fields = {field.name for field in dataclasses.fields(Settings)}
    assert fields == set(RULES)
    Settings()  # the defaults are valid


def test_settings_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "MESSENGER_TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/16",
            "MESSENGER_CONNECTION_BUFFER": "1048576",
            "MESSENGER_MIGRATE": "false",
            "MESSENGER_TOKEN_TTL": "3600",
        }
    )
    assert settings.trusted_proxies == ("10.0.0.1", "192.168.0.0/16")
    assert settings.connection_buffer == 1 << 20
    assert settings.migrate is False
    assert settings.token_ttl.total_seconds() == 3600


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


def test_client_address_comes_from_forwarded_for_only_behind_a_trusted_proxy() -> None:
    addresses = ClientAddresses(["10.0.0.0/8", "192.168.1.1"])
    # No trusted proxy in front: the header is anyone's to forge, and ignored.
    assert addresses.resolve("203.0.113.7", "1.2.3.4") == "203.0.113.7"
    # Behind trusted proxies the header is read from the right, past them.
    assert addresses.resolve("10.1.2.3", "198.51.100.9") == "198.51.100.9"
    assert addresses.resolve("10.1.2.3", "6.6.6.6, 198.51.100.9, 192.168.1.1") == "198.51.100.9"
    # All hops trusted: the leftmost; a garbled entry stops the walk there.
    assert addresses.resolve("10.1.2.3", "10.9.9.9") == "10.9.9.9"
    assert addresses.resolve("10.1.2.3", "6.6.6.6, nonsense") == "10.1.2.3"
    assert addresses.resolve("::ffff:127.0.0.1", None) == "127.0.0.1"
    assert addresses.resolve(None, "1.2.3.4") == "unknown"


def test_serve_refuses_a_bad_setting_with_one_line_and_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No traceback for an operator's typo: one line on stderr, exit status 2, and the
    server never starts."""
    monkeypatch.setenv("MESSENGER_CONNECT_TIMEOUT", "nan")
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MESSENGER_CONNECT_TIMEOUT" in err, err
