"""The writer's statements run through the driver (`DriverStatement`), compiled in
every size before its first batch."""

from __future__ import annotations

from sqlalchemy import Connection

from messenger.store.accounts import IDS_PER_READ as REMOVED_PER_READ
from messenger.store.accounts import _removed_statement
from messenger.store.blocks import _blocks_statement
from messenger.store.messages import _SQLITE_INSERT_MESSAGES, sqlite_mark_statement
from messenger.store.sized_statements import PAIRS_PER_LOOKUP, _driver_statement, _padded_sizes
from messenger.store.streams import IDS_PER_READ, _stream_heads_statement


def compile_writer_statements(conn: Connection) -> None:
    """Compile now, before any load, every size of the statements the writer runs
    through the driver. Compiling takes longer the larger the statement, and each
    was paid by the writer in the first batch that needed it, which made the batches
    of a server's first seconds under load wait for them."""
    dialect = conn.dialect
    for size in _padded_sizes(IDS_PER_READ):
        _stream_heads_statement(size).compiled_for(dialect)
    for size in _padded_sizes(REMOVED_PER_READ):
        _removed_statement(size).compiled_for(dialect)
    if dialect.name == "sqlite":
        _SQLITE_INSERT_MESSAGES.parts_for(dialect)
        for size in _padded_sizes(PAIRS_PER_LOOKUP):
            _driver_statement(_blocks_statement(size)).compiled_for(dialect)
            for sets_read_at, private in ((False, False), (True, False), (True, True)):
                sqlite_mark_statement(sets_read_at, size, private).compiled_for(dialect)
