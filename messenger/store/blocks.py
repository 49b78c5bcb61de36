"""Queries of `blocks`: who blocks whom; the writer asks about every batch's pairs."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Select, delete, insert, select

from messenger.store.models import blocks
from messenger.store.sized_statements import _driver_statement, _pair_lookups, _pairs_match


def add_block(conn: Connection, blocker: int, blocked: int, now: datetime) -> None:
    exists = conn.execute(
        select(blocks.c.blocker_id).where(
            blocks.c.blocker_id == blocker, blocks.c.blocked_id == blocked
        )
    )
    if exists.first() is None:
        conn.execute(insert(blocks).values(blocker_id=blocker, blocked_id=blocked, created_at=now))


def remove_block(conn: Connection, blocker: int, blocked: int) -> None:
    conn.execute(
        delete(blocks).where(blocks.c.blocker_id == blocker, blocks.c.blocked_id == blocked)
    )


def blocking_pairs(conn: Connection, pairs: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    """Which of the (blocker, blocked) pairs are blocks. The writer asks for every batch:
    on SQLite through the driver (PostgreSQL's arrays need SQLAlchemy's conversion)."""
    dialect = conn.dialect.name
    found: set[tuple[int, int]] = set()
    for statement, params in _pair_lookups(dialect, _blocks_statement, list(set(pairs))):
        result: Iterable[Any] = (
            _driver_statement(statement).execute(conn, params)
            if dialect == "sqlite"
            else conn.execute(statement, params)
        )
        found.update((blocker, blocked) for blocker, blocked in result)
    return found


@cache
def _blocks_statement(size: int) -> Select[Any]:
    return select(blocks.c.blocker_id, blocks.c.blocked_id).where(
        _pairs_match(blocks.c.blocker_id, blocks.c.blocked_id, size)
    )
