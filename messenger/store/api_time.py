"""`api_time(column)`: a stored time as the API shows it, formatted by the database.

A history page carries three times per message. Turned into a datetime on the way out
of the database (parsed, given its zone by `UtcDateTime`) and into text again for the
answer, they were most of a page's read on SQLite (docs/dev/performance-log.md,
"late at night" of 2026-12-01). The database formats it the way
`events.format_time` does instead: `2026-12-01T12:00:00.123Z`, UTC, to the
millisecond (what the server stores: `utc_now` cuts to milliseconds).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class api_time(FunctionElement[str]):  # lower case: a SQL function
    """The time in `column` as `YYYY-MM-DDTHH:MM:SS.mmmZ`, or NULL."""

    type = String()
    inherit_cache = True
    name = "api_time"


@compiles(api_time, "sqlite")
def _sqlite(element: api_time, compiler: SQLCompiler, **kw: Any) -> str:
    # Stored as UTC text; %f is seconds with milliseconds (SS.SSS).
    return f"strftime('%Y-%m-%dT%H:%M:%fZ', {compiler.process(element.clauses, **kw)})"


@compiles(api_time, "postgresql")
def _postgresql(element: api_time, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""


@compiles(api_time)
def _other(element: api_time, compiler: SQLCompiler, **kw: Any) -> str:
    raise NotImplementedError(f"api_time has no form for {compiler.dialect.name}")
