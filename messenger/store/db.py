"""The database behind one interface: `read`, `write` and `write_batch` run a plain
(synchronous) SQLAlchemy function of a `Connection` and hand back its result.

Every query is written once, as a sync function of a connection (see `store`), and
each backend runs it the cheapest way it can:

- **SQLite** runs it on threads of its own, with the standard library's driver. All
  writes go through one thread that keeps one connection (SQLite has one writer at a
  time anyway), readers use a small pool of threads and connections, and in WAL mode
  they never wait for the writer. aiosqlite, which sends *each statement* to its
  thread and back, paid a thread hop per statement, about ten for a one-message
  transaction; the same transaction as one hop costs a fraction of that. The
  driver's own transaction handling is off and `BEGIN IMMEDIATE` starts every write,
  so a write never fails SQLITE_BUSY half-way (SQLAlchemy's SQLite notes).
- **PostgreSQL** runs it on the event loop through asyncpg (`run_sync`), where a
  statement is a socket round trip and no thread is involved.

Statement parameters are kept out of error messages on both: they hold message bodies
and token hashes, which must not reach the logs.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from messenger.errors import ErrorCode, MessengerError

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_READ_THREADS = 4

P = ParamSpec("P")
T = TypeVar("T")


class Database(ABC):
    """One database: reads, independent write transactions, and the writer's batches."""

    dialect: str

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgresql(self) -> bool:
        return self.dialect == "postgresql"

    @abstractmethod
    async def read(
        self, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`work(conn, ...)` on a reader connection: on SQLite in one read transaction
        (one snapshot), on PostgreSQL statement by statement (READ COMMITTED)."""

    @abstractmethod
    async def write(
        self, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`work(conn, ...)` in a write transaction of its own, committed on return."""

    async def write_derived(
        self, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Like `write`, for data derived from what is already committed (the search
        index), which a lost commit only delays: on SQLite its commit does not wait
        for an fsync (see `SqliteDatabase`)."""
        return await self.write(work, *args, **kwargs)

    @abstractmethod
    async def write_batch(
        self, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Like `write`, for the group-commit writer only: one caller at a time, on a
        connection kept between batches (a checkout per batch cost more than a small
        batch's statements). A failure other than a constraint drops that connection."""

    @abstractmethod
    async def dispose(self) -> None:
        """Close every connection; the database is not used afterwards."""

    async def erase_freed_text(self) -> bool:
        """Make text that writes removed (deleted or edited bodies) unreadable from the
        database's files, as far as this database can; True once done (G10).

        PostgreSQL keeps an old row version until VACUUM reclaims it, and that is
        left to autovacuum (docs/security.md)."""
        return True

    async def ping(self) -> None:
        """Raise unless the database answers a query."""
        await self.read(_select_one)


def _select_one(conn: Connection) -> None:
    conn.execute(text("SELECT 1"))


def open_database(url: str, sqlite_synchronous: str = "FULL") -> Database:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ValueError("SQLite needs a file: readers and the writer share it")
        return SqliteDatabase(url, sqlite_synchronous)
    if parsed.get_backend_name() == "postgresql":
        return PostgresDatabase(url)
    raise ValueError(
        f"unsupported database {parsed.get_backend_name()!r}: use SQLite or PostgreSQL"
    )


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, url: str, synchronous: str) -> None:
        # Whatever driver the URL names (aiosqlite for the migrations), the server's
        # own connections use the standard library's, on threads of their own.
        sync_url = make_url(url).set(drivername="sqlite+pysqlite")
        # Each connection is used by one thread at a time (a pool checkout, or the
        # writer thread's own), never by two at once.
        shared = {"check_same_thread": False}
        self._writer_engine = create_engine(
            sync_url, pool_size=1, max_overflow=0, hide_parameters=True, connect_args=shared
        )
        self._reader_engine = create_engine(
            sync_url,
            pool_size=SQLITE_READ_THREADS,
            max_overflow=0,
            hide_parameters=True,
            connect_args=shared,
        )
        _configure_sqlite(
            self._writer_engine, synchronous, begin="BEGIN IMMEDIATE", temp_store="MEMORY"
        )
        _configure_sqlite(self._reader_engine, synchronous, begin="BEGIN", temp_store="DEFAULT")
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._read_threads = ThreadPoolExecutor(
            SQLITE_READ_THREADS, thread_name_prefix="sqlite-reader"
        )
        self._write_conn: Connection | None = None  # touched only on the writer thread
        self._synchronous = synchronous

    async def read(
        self, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._read_threads, partial(self._read_here, partial(work, **kwargs), *args)
        )

    async def write(
        self, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._write_thread, partial(self._write_here, partial(work, **kwargs), *args)
        )

    # SQLite has one writer: the batches share the writer thread and its connection.
    write_batch = write

    async def write_derived(
        self, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """On the writer's thread with `synchronous=NORMAL`: the commit appends to the
        WAL without an fsync, which the next batch's commit makes for it too (the WAL
        is written in order). A power cut may lose only such trailing commits, and WAL
        stays consistent at NORMAL; derived work lost is done again."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._write_thread, partial(self._write_derived_here, partial(work, **kwargs), *args)
        )

    def _write_derived_here(self, work: Callable[..., T], *args: Any) -> T:
        if self._write_conn is None:
            self._write_conn = self._writer_engine.connect()
        raw = self._write_conn.connection.dbapi_connection
        assert raw is not None
        raw.execute("PRAGMA synchronous=NORMAL")
        try:
            return self._write_here(work, *args)
        finally:
            # The connection the work ran on (or a new one, which connects at the
            # configured level anyway) goes back to the batches' level.
            raw.execute(f"PRAGMA synchronous={self._synchronous}")

    def _read_here(self, work: Callable[..., T], *args: Any) -> T:
        with self._reader_engine.connect() as conn:
            return work(conn, *args)

    def _write_here(self, work: Callable[..., T], *args: Any) -> T:
        if self._write_conn is None:
            self._write_conn = self._writer_engine.connect()
        conn = self._write_conn
        try:
            with conn.begin():
                return work(conn, *args)
        except IntegrityError:
            raise  # a constraint said no: the connection is fine
        except Exception:
            self._write_conn = None  # it may be broken: the next write opens a fresh one
            _discard(conn)
            raise

    async def erase_freed_text(self) -> bool:
        """Checkpoint the WAL into the database file and truncate it: the pages that
        held removed text, already overwritten in the database (`secure_delete`), are
        then gone from the WAL too. False when a reader held the WAL too long (the
        caller tries again later)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._write_thread, self._truncate_wal_here)

    def _truncate_wal_here(self) -> bool:
        if self._write_conn is None:
            self._write_conn = self._writer_engine.connect()
        # Outside any transaction (a checkpoint cannot run inside one): through the
        # driver's connection, which SQLAlchemy is not using between batches.
        raw = self._write_conn.connection.dbapi_connection
        assert raw is not None
        busy, _, _ = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return bool(busy == 0)

    def _close_writer(self) -> None:
        conn, self._write_conn = self._write_conn, None
        if conn is not None:
            conn.close()

    async def dispose(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._write_thread, self._close_writer)
        for threads in (self._write_thread, self._read_threads):
            await asyncio.to_thread(threads.shutdown, True)
        self._writer_engine.dispose()
        self._reader_engine.dispose()


def _discard(conn: Connection) -> None:
    try:
        conn.invalidate()
        conn.close()
    except Exception as exc:
        log.info("closing a broken database connection: %s", exc)


def _configure_sqlite(engine: Engine, synchronous: str, begin: str, temp_store: str) -> None:
    """Every connection of `engine` in WAL mode, with our BEGIN and `temp_store`.

    The writer keeps temporary storage in memory. Its batch statements change many
    rows at once (a multi-row INSERT, a status mark), and SQLite journals each such
    statement so that a constraint failure undoes it alone; past 64 KiB that journal
    spilled to a temporary file, made, written, unlinked and closed in every batch,
    a large share of the writer's write calls (strace showed it). A batch is at most
    `write_batch_max` items, which bounds it in memory. Readers keep SQLite's default,
    files: a history or stream query's sort is not bounded that way.
    """

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us emit BEGIN ourselves (see the module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # The wait for a lock first: switching to WAL takes one too, and another
        # process (a second node's start, `messenger user add`) may hold it.
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA temp_store={temp_store}")
        # Freed space is overwritten with zeros: a deleted or edited body does not
        # linger in free pages or cells of the file (G10).
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)


# asyncpg prepares every statement, and after five runs PostgreSQL may keep a
# *generic* plan for it, made with the statistics of that moment, until the table is
# analyzed again. Planned while `messages` was small, the writer's key lookup stayed
# a scan of the whole table as it grew: without autovacuum, commits grew several
# times longer within a minute of load. A plan made for each execution costs a
# little more CPU per message at low rates and cannot go stale.
PG_SESSION_SETTINGS = {"plan_cache_mode": "force_custom_plan"}


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        options: dict[str, Any] = {
            "pool_size": 4,
            "max_overflow": 4,
            "hide_parameters": True,
            "connect_args": {"server_settings": PG_SESSION_SETTINGS},
        }
        # Writes check each connection as they take it from the pool (a round trip):
        # a write is not simply run again, so it must not meet a connection that
        # PostgreSQL closed (a restart). Reads skip that round trip, a good part of
        # a history page (bench `history` shows it), and are run again instead when
        # they meet such a connection (see `read`). Reads also run without BEGIN and
        # ROLLBACK, which were two of a page's three round trips: under READ
        # COMMITTED, PostgreSQL's default, a transaction gives each of its statements
        # a snapshot of its own anyway, so a read sees the same either way.
        self._writer_engine = create_async_engine(url, pool_pre_ping=True, **options)
        self._reader_engine = create_async_engine(
            url, isolation_level="AUTOCOMMIT", **{**options, "pool_size": 8}
        )
        self._batch_conn: AsyncConnection | None = None

    async def read(
        self, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        try:
            return await self._read_once(work, *args, **kwargs)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            # PostgreSQL had closed the connection (a restart, an administrator).
            # SQLAlchemy has dropped the pool's other connections of that age too, and
            # a read changes nothing: once more, on a new connection.
            log.info("a pooled database connection was closed; reading again")
            return await self._read_once(work, *args, **kwargs)

    async def _read_once(
        self, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        async with self._reader_engine.connect() as conn:
            return await conn.run_sync(work, *args, **kwargs)

    async def write(
        self, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        async with self._writer_engine.begin() as conn:
            return await conn.run_sync(work, *args, **kwargs)

    async def write_batch(
        self, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        if self._batch_conn is None:
            self._batch_conn = await self._writer_engine.connect()
        conn = self._batch_conn
        try:
            async with conn.begin():
                return await conn.run_sync(work, *args, **kwargs)
        except IntegrityError:
            raise
        except Exception:
            self._batch_conn = None
            try:
                await conn.invalidate()
                await conn.close()
            except Exception as exc:
                log.info("closing a broken database connection: %s", exc)
            raise

    async def dispose(self) -> None:
        conn, self._batch_conn = self._batch_conn, None
        if conn is not None:
            await conn.close()
        await self._writer_engine.dispose()
        await self._reader_engine.dispose()


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
