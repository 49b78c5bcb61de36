"""Statements at the driver's speed: SQL compiled once, no per-execution work in Python.

`Connection.execute(statement, params)` looks the statement up in the compiled cache
(generating its cache key), processes every parameter and sets up result processing
before the driver sees anything, and for a writer batch that is most of the cost:
one `send` in a batch of its own spent 0.85 ms in its five statements, 11 % of it in
SQLite (docs/performance.md, "late at night"); through `Connection.execute` a
statement cost about 2.5 times what `exec_driver_sql` did. For the bulk statements
(a stream event per recipient, a stream head per user) the per-row work alone cost
more than SQLite took to store the rows: 60 stream events, 482 us through `execute`,
276 us handed to the driver (of which SQLite ~250).

A `DriverStatement` compiles its Core statement once per dialect into the driver's
SQL and parameter order, and hands plain tuples to `exec_driver_sql`, still through
the `Connection`: its transaction, its events and its error wrapping stay. It is
only for values that need no conversion either way (integers, text, None): nothing
converts a parameter or a result on this path, so a statement with a type that would
need it is refused when it is first compiled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Connection, CursorResult
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


class DriverStatement:
    """A Core statement run with positional parameters of plain values."""

    def __init__(self, statement: ClauseElement) -> None:
        self._statement = statement
        self._compiled: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}

    def execute(
        self, conn: Connection, values: Mapping[str, Any]
    ) -> CursorResult[*tuple[Any, ...]]:
        """Run once; `values` maps the statement's parameter names. Rows are tuples."""
        sql, names = self.compiled_for(conn.dialect)
        return conn.exec_driver_sql(sql, tuple([values[name] for name in names]))

    def executemany(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run once per row; each row maps the statement's parameter names."""
        if not rows:
            return
        sql, names = self.compiled_for(conn.dialect)
        conn.exec_driver_sql(sql, [tuple([row[name] for name in names]) for row in rows])

    def compiled_for(self, dialect: Dialect) -> tuple[str, tuple[str, ...]]:
        """The dialect's SQL text and the parameter names in the order it binds them."""
        key = (dialect.name, dialect.paramstyle)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = _compile(self._statement, dialect)
        return found


def _compile(statement: ClauseElement, dialect: Dialect) -> tuple[str, tuple[str, ...]]:
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
    if compiled.positiontup is None:
        raise ValueError(f"{dialect.name} binds by name; DriverStatement passes positions")
    for name, bind in compiled.binds.items():
        if bind.expanding:
            raise ValueError(f"parameter {name!r} expands: give the statement one per value")
        if bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
            raise ValueError(f"parameter {name!r} needs converting: run it with execute()")
    for column in getattr(statement, "exported_columns", ()):
        if column.type.dialect_impl(dialect).result_processor(dialect, None) is not None:
            raise ValueError(f"column {column.name!r} needs converting: run it with execute()")
    return compiled.string, tuple(compiled.positiontup)
