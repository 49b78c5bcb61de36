"""Bulk statements at the driver's speed: executemany without per-row work in Python.

`Connection.execute(statement, rows)` builds and processes every row's parameters in
Python before the driver sees them. For the writer's bulk statements (each batch
inserts a stream event per recipient and raises a stream head per user) that cost
more than SQLite took to store the rows: 60 stream events, 482 us through
`execute`, 276 us handed to the driver (of which SQLite ~250). A `BulkStatement`
compiles its Core statement once per dialect into the driver's SQL and parameter
order, and gives the rows to the driver's own executemany, still through the
`Connection`: its transaction, its events and its error wrapping stay.

Only for parameters that need no conversion (integers, text, None): nothing converts
a value on this path, so a statement with a type that would is refused when first run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import UpdateBase


class BulkStatement:
    """An INSERT, UPDATE or DELETE run with many rows of plain values."""

    def __init__(self, statement: UpdateBase) -> None:
        self._statement = statement
        self._compiled: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}

    def run(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Execute once per row; each row maps the statement's parameter names."""
        if not rows:
            return
        sql, names = self.compiled_for(conn.dialect)
        conn.exec_driver_sql(sql, [tuple(row[name] for name in names) for row in rows])

    def compiled_for(self, dialect: Dialect) -> tuple[str, tuple[str, ...]]:
        """The dialect's SQL text and the parameter names in the order it binds them."""
        key = (dialect.name, dialect.paramstyle)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = _compile(self._statement, dialect)
        return found


def _compile(statement: UpdateBase, dialect: Dialect) -> tuple[str, tuple[str, ...]]:
    compiled = statement.compile(dialect=dialect)
    if compiled.positiontup is None:
        raise ValueError(f"{dialect.name} binds by name; BulkStatement passes positions")
    for name, bind in compiled.binds.items():
        if bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
            raise ValueError(f"parameter {name!r} needs converting: run it with execute()")
    return compiled.string, tuple(compiled.positiontup)
