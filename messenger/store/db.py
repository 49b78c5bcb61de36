"""Engines: one for writes, one for reads, with the settings each database needs.

SQLite allows one writer at a time. Its driver starts transactions lazily, so a read
that turns into a write fails with SQLITE_BUSY whatever the busy timeout says; hence
the recipe from SQLAlchemy's SQLite notes: the driver's own transaction handling is
switched off and we emit `BEGIN IMMEDIATE` for every write transaction ourselves, on a
separate engine from the readers (which, in WAL mode, never wait for the writer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from messenger.errors import ErrorCode, MessengerError

SQLITE_BUSY_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class Database:
    """The two engines of one database, and what kind of database it is."""

    writer: AsyncEngine
    reader: AsyncEngine

    @property
    def is_sqlite(self) -> bool:
        return self.writer.dialect.name == "sqlite"

    @property
    def is_postgresql(self) -> bool:
        return self.writer.dialect.name == "postgresql"

    async def ping(self) -> None:
        """Raise unless the database answers a query."""
        async with self.reader.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.writer.dispose()
        await self.reader.dispose()


def open_database(url: str, sqlite_synchronous: str = "FULL") -> Database:
    """Engines for `url`. Statement parameters are kept out of error messages: they
    hold message bodies and token hashes, which must not reach the logs."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ValueError("SQLite needs a file: readers and the writer share it")
        writer = create_async_engine(url, pool_size=4, max_overflow=4, hide_parameters=True)
        reader = create_async_engine(url, pool_size=8, max_overflow=8, hide_parameters=True)
        _configure_sqlite(writer, sqlite_synchronous, begin="BEGIN IMMEDIATE")
        _configure_sqlite(reader, sqlite_synchronous, begin="BEGIN")
        return Database(writer=writer, reader=reader)
    if parsed.get_backend_name() == "postgresql":
        # pre-ping: a restarted PostgreSQL costs one failed checkout, not one per
        # pooled connection.
        writer = create_async_engine(
            url, pool_size=4, max_overflow=4, pool_pre_ping=True, hide_parameters=True
        )
        reader = create_async_engine(
            url, pool_size=8, max_overflow=8, pool_pre_ping=True, hide_parameters=True
        )
        return Database(writer=writer, reader=reader)
    raise ValueError(
        f"unsupported database {parsed.get_backend_name()!r}: use SQLite or PostgreSQL"
    )


def _configure_sqlite(engine: AsyncEngine, synchronous: str, begin: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us emit BEGIN ourselves (see the module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)


def classify_failure(exc: BaseException) -> MessengerError:
    """What to tell a client about an unexpected failure: `unavailable` when the
    database cannot be reached (retrying later helps), `internal` otherwise."""
    if isinstance(exc, MessengerError):
        return exc
    if isinstance(exc, OperationalError | OSError | TimeoutError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return MessengerError(ErrorCode.UNAVAILABLE, "the database is unavailable; retry later")
    return MessengerError(ErrorCode.INTERNAL, "the server failed; retry later")
