"""Statements at the driver's speed: SQL compiled once, no per-execution work in Python.

`Connection.execute(statement, params)` looks the statement up in the compiled cache
(generating its cache key), processes every parameter and sets up result processing
before the driver sees anything, and for a writer batch that is most of the cost:
SQLite itself is a small part of a small batch's statements, and through
`Connection.execute` a statement cost a multiple of what `exec_driver_sql` did. For
the bulk statements (a stream event per recipient, a stream head per user) the
per-row work alone cost more than SQLite took to store the rows. The profiles are in
docs/dev/performance-log.md ("late at night" of 2026-12-01).

A `DriverStatement` compiles its Core statement once per dialect into the driver's
SQL and parameter order, and hands plain tuples to the driver. On SQLite they go to
a cursor of the `Connection`'s own DBAPI connection, inside the transaction the
`Connection` has begun: even `exec_driver_sql` builds an execution context and reads
the cursor's description into result metadata on every call, a fixed cost per
batch that small batches feel most (`bench.wal_frames` shows it). The driver's
errors are raised as SQLAlchemy raises them (`IntegrityError` for the writer's
retries, values hidden). PostgreSQL keeps
`exec_driver_sql`: a statement there is a round trip, and on a lost connection
SQLAlchemy also drops the pool's other connections of that age, which reads count
on (`PostgresDatabase.read`). It is only for values that need no conversion either
way (integers, text, None): nothing converts a parameter or a result on this path,
so a statement with a type that would need it is refused when it is first compiled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement, Insert
from sqlalchemy.sql.compiler import SQLCompiler


class DriverStatement:
    """A Core statement run with positional parameters of plain values."""

    def __init__(self, statement: ClauseElement) -> None:
        self._statement = statement
        self._compiled: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}

    def execute(self, conn: Connection, values: Mapping[str, Any]) -> list[Any]:
        """Run once; `values` maps the statement's parameter names. Rows are tuples."""
        sql, names = self.compiled_for(conn.dialect)
        return _run_in_driver(conn, sql, tuple([values[name] for name in names]))

    def executemany(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run once per row; each row maps the statement's parameter names."""
        if not rows:
            return
        sql, names = self.compiled_for(conn.dialect)
        _run_in_driver(conn, sql, [tuple([row[name] for name in names]) for row in rows], many=True)

    def compiled_for(self, dialect: Dialect) -> tuple[str, tuple[str, ...]]:
        """The dialect's SQL text and the parameter names in the order it binds them."""
        key = (dialect.name, dialect.paramstyle)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = _compile(self._statement, dialect)
        return found


def _run_in_driver(conn: Connection, sql: str, params: Any, many: bool = False) -> list[Any]:
    """`sql` with positional `params` (a list of them if `many`); the rows it returns.
    On SQLite, on a cursor of the connection's own DBAPI connection (see above)."""
    if conn.dialect.name != "sqlite":
        result = conn.exec_driver_sql(sql, params)
        return cast(list[Any], result.all()) if result.returns_rows else []
    if not conn.in_transaction():
        conn.begin()  # as SQLAlchemy begins one before a first statement (our BEGIN)
    dbapi_connection = conn.connection.dbapi_connection
    assert dbapi_connection is not None
    cursor = dbapi_connection.cursor()
    try:
        if many:
            cursor.executemany(sql, params)
            return []
        cursor.execute(sql, params)
        return cast(list[Any], cursor.fetchall()) if cursor.description is not None else []
    except conn.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(
            sql,
            None,
            exc,
            conn.dialect.loaded_dbapi.Error,
            hide_parameters=True,
            dialect=conn.dialect,
        ) from exc
    finally:
        cursor.close()


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


class RowsInsert:
    """A multi-row INSERT through the driver, of any number of rows, compiled once.

    SQLAlchemy compiles an INSERT of n rows anew for each n, and the time grows with n;
    each was paid by the writer in the first batch of that size, mostly in a server's
    first seconds under load. The SQL of n rows is the one-row statement's with its
    VALUES row repeated, which needs parameter markers that carry no number (qmark).
    """

    def __init__(self, statement: Insert) -> None:
        """`statement`: an INSERT of one row of bound parameters, and nothing else bound."""
        self._one_row = DriverStatement(statement)
        self._parts: dict[tuple[str, str], tuple[str, str, str, tuple[str, ...]]] = {}

    def execute(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Insert `rows`, each mapping the one-row statement's parameter names; the rows
        RETURNING gives, as tuples."""
        names = self.parts_for(conn.dialect)[3]
        values = tuple([row[name] for row in rows for name in names])
        return _run_in_driver(conn, self.sql_for(conn.dialect, len(rows)), values)

    def sql_for(self, dialect: Dialect, count: int) -> str:
        """The SQL that inserts `count` rows."""
        head, row, tail, _ = self.parts_for(dialect)
        return head + ", ".join([row] * count) + tail

    def parts_for(self, dialect: Dialect) -> tuple[str, str, str, tuple[str, ...]]:
        """The one-row SQL cut around its VALUES row, and the row's parameter names."""
        key = (dialect.name, dialect.paramstyle)
        found = self._parts.get(key)
        if found is None:
            found = self._parts[key] = _cut_values_row(*self._one_row.compiled_for(dialect))
        return found


def _cut_values_row(sql: str, names: tuple[str, ...]) -> tuple[str, str, str, tuple[str, ...]]:
    head, values, rest = sql.partition(" VALUES ")
    end = rest.find(")") + 1
    row, tail = rest[:end], rest[end:]
    if not values or not row.startswith("(") or row.count("(") != 1:
        raise ValueError("RowsInsert takes an INSERT of one row of plain parameters")
    if row.count("?") != len(names) or "?" in head + tail:
        raise ValueError("RowsInsert needs unnumbered markers (qmark), all in the row")
    return head + values, row, tail, names
