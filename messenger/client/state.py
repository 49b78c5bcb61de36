"""The client's durable state: the outbox and the stream cursor, in one SQLite file.

The outbox is what makes a send survive a crash or a restart of the client: a message
is written here (with its client_id) before it goes on the wire and leaves only when
the server has answered, so resending after a restart is safe (G2 dedupes by
(sender, client_id)). Edits wait in the same queue with their own client_id, which the
server dedupes by (message, client_id) (3.6). A send keeps the ids of the attachments
it carries (uploaded before it was queued), so a resend carries the same ones. Without
a path the same tables live in memory.

sqlite3 blocks, so every call runs on one dedicated thread: the connection is used
by that thread only, and the calls run in the order they were made.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id TEXT NOT NULL UNIQUE,
    recipient TEXT NOT NULL,
    body TEXT NOT NULL,
    queued_at REAL NOT NULL,
    reply_to INTEGER,
    edit_of INTEGER,
    attachments TEXT
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# Columns added after the first release: a state file made before them gets them at
# open, so what it queued still goes out.
_ADDED_COLUMNS = {"reply_to": "INTEGER", "edit_of": "INTEGER", "attachments": "TEXT"}


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A send, or an edit of message `edit_of`, waiting for the server's answer.

    `attachments` are the ids of uploads the send carries, in their order.
    """

    client_id: str
    to: str  # the recipient of a send; "" for an edit (the server knows it)
    body: str
    reply_to: int | None = None
    edit_of: int | None = None
    attachments: tuple[int, ...] = ()

    @property
    def is_edit(self) -> bool:
        return self.edit_of is not None


class StateStore:
    """Outbox and cursor; `path=None` keeps them in memory (lost with the process)."""

    def __init__(self, path: str | Path | None) -> None:
        self._path = ":memory:" if path is None else str(path)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="messenger-state")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._db is None:
                raise RuntimeError("the state store is closed")
            return fn(self._db)

        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def open(self) -> None:
        def connect() -> None:
            db = sqlite3.connect(self._path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a queued message survives power loss
            db.executescript(_SCHEMA)
            _add_missing_columns(db)
            self._db = db

        await asyncio.get_running_loop().run_in_executor(self._pool, connect)

    async def close(self) -> None:
        def disconnect() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._pool, disconnect)
        self._pool.shutdown(wait=False)

    async def enqueue(self, item: Outgoing) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT OR IGNORE INTO outbox"
                " (client_id, recipient, body, queued_at, reply_to, edit_of, attachments)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    item.client_id,
                    item.to,
                    item.body,
                    time.time(),
                    item.reply_to,
                    item.edit_of,
                    json.dumps(list(item.attachments)) if item.attachments else None,
                ),
            )
        )

    async def pending(self) -> list[Outgoing]:
        """The outbox in the order the messages were queued (the order they go out)."""
        rows = await self._run(
            lambda db: db.execute(
                "SELECT client_id, recipient, body, reply_to, edit_of, attachments"
                " FROM outbox ORDER BY seq"
            ).fetchall()
        )
        return [
            Outgoing(client_id, to, body, reply_to, edit_of, _ids(attachments))
            for client_id, to, body, reply_to, edit_of, attachments in rows
        ]

    async def remove(self, client_id: str) -> None:
        await self._run(
            lambda db: db.execute("DELETE FROM outbox WHERE client_id = ?", (client_id,))
        )

    async def get_cursor(self) -> int | None:
        row = await self._run(
            lambda db: db.execute("SELECT value FROM state WHERE key = 'cursor'").fetchone()
        )
        return None if row is None else int(row[0])

    async def set_cursor(self, cursor: int) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT INTO state (key, value) VALUES ('cursor', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(cursor),),
            )
        )


def _ids(stored: str | None) -> tuple[int, ...]:
    """The attachment ids of a row: a JSON list, or NULL for none (and in rows queued
    before the column existed)."""
    return () if stored is None else tuple(int(i) for i in json.loads(stored))


def _add_missing_columns(db: sqlite3.Connection) -> None:
    present = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
    for name, kind in _ADDED_COLUMNS.items():
        if name not in present:
            db.execute(f"ALTER TABLE outbox ADD COLUMN {name} {kind}")
