"""Statements in a few sizes: lists cut in chunks padded to a power of two, and pairs
looked up by index probes, so that each size is built and compiled once rather than
once per length (what the writer runs for every batch; `writer_statements` compiles
them all up front)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import cache
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    RowMapping,
    Select,
    bindparam,
    func,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY

from messenger.store.driver_sql import DriverStatement

# Keys per lookup statement: SQLite caps an expression's depth at 1,000.
PAIRS_PER_LOOKUP = 256
# The `size` of the one statement PostgreSQL needs, whatever the number of keys.
AS_ARRAYS = 0
Params = dict[str, Any]


def _padded_sizes(most: int) -> list[int]:
    """The chunk sizes `_padded` gives for a `most` that is a power of two."""
    return [1 << i for i in range(most.bit_length())]


def _padded(values: list[Any], most: int) -> Iterator[list[Any]]:
    """`values` in chunks of at most `most`, each padded to a power of two by repeating
    its last value (callers key what they find), so that a statement comes in a few
    sizes rather than one per length."""
    for start in range(0, len(values), most):
        chunk = values[start : start + most]
        yield chunk + chunk[-1:] * ((1 << (len(chunk) - 1).bit_length()) - len(chunk))


def _pairs_match(first: Column[Any], second: Column[Any], size: int) -> ColumnElement[bool]:
    """Whether (first, second) is one of the pairs looked up, by index probes.

    SQLite reads `(a, b) IN (VALUES ...)` by scanning the whole table, but answers
    `(first = :a0 AND second = :b0) OR ...` (`size` times) with one probe per key; a
    VALUES table to join on would probe too, but SQLAlchemy compiles it anew for every
    set of values. PostgreSQL plans a long OR anew on each execution and, as the table
    grows, may read it by scanning; given the pairs as two arrays (AS_ARRAYS) it has
    one prepared statement and joins them to the unique index. The plans are checked
    in tests/test_store.py."""
    if size == AS_ARRAYS:
        wanted = (
            func.unnest(
                bindparam("a", type_=ARRAY(first.type)), bindparam("b", type_=ARRAY(second.type))
            )
            .table_valued("a", "b")
            .render_derived(name="wanted")
        )
        return tuple_(first, second).in_(select(wanted.c.a, wanted.c.b))
    return or_(
        *((first == bindparam(f"a{i}")) & (second == bindparam(f"b{i}")) for i in range(size))
    )


def _rows_of_pairs(
    conn: Connection, statement_of_size: Callable[[int], Select[Any]], pairs: Iterable[Any]
) -> Iterator[RowMapping]:
    """The rows `statement_of_size` finds for the distinct `pairs` (see `_pair_lookups`)."""
    for statement, params in _pair_lookups(conn.dialect.name, statement_of_size, list(set(pairs))):
        yield from conn.execute(statement, params).mappings()


def _pair_lookups(
    dialect: str, statement_of_size: Callable[[int], Select[Any]], pairs: list[tuple[Any, Any]]
) -> list[tuple[Select[Any], Params]]:
    """The statements and parameters that look `pairs` up.

    On SQLite, PAIRS_PER_LOOKUP at a time, each chunk padded to a power of two by
    repeating its last pair (callers key what they find): the statements come in nine
    sizes, each built and compiled once, instead of one per batch size."""
    if not pairs:
        return []
    if dialect == "postgresql":
        params = {"a": [a for a, _ in pairs], "b": [b for _, b in pairs]}
        return [(statement_of_size(AS_ARRAYS), params)]
    lookups = []
    for chunk in _padded(pairs, PAIRS_PER_LOOKUP):
        chunk_params: Params = {}
        for i, (a, b) in enumerate(chunk):
            chunk_params[f"a{i}"], chunk_params[f"b{i}"] = a, b
        lookups.append((statement_of_size(len(chunk)), chunk_params))
    return lookups


@cache
def _driver_statement(statement: Select[Any]) -> DriverStatement:
    """The `DriverStatement` of one of the cached sized lookups."""
    return DriverStatement(statement)
