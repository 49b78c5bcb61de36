"""Fixtures of the unit tests: a migrated SQLite file per test (a copy of the session's
template), opened synchronously for `apply_batch` or as the server opens it."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from messenger.store.db import Database, _configure_sqlite, open_database


@pytest.fixture
def db_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A freshly migrated SQLite database file of this test."""
    path = tmp_path / "messenger.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A synchronous engine on the test's database, set up as the server's writer is
    (WAL, foreign keys, `BEGIN IMMEDIATE`): what `apply_batch` runs on."""
    path = db_url.split(":///", 1)[1]
    sync = create_engine(f"sqlite+pysqlite:///{path}", hide_parameters=True)
    _configure_sqlite(sync, "FULL", begin="BEGIN IMMEDIATE", temp_store="MEMORY")
    yield sync
    sync.dispose()


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    """The test's database as the server opens it (its own writer and reader threads)."""
    db = open_database(db_url)
    yield db
    await db.dispose()
