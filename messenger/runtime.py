"""The process a node runs in: which event loop, and the garbage collector set for a
long-running server rather than a script. Logging setup, with its redaction of
secrets, is `logs.py`.

uvloop (libuv under asyncio's interface) takes less CPU per message than the standard
library's loop and shortens the tail, measured side by side (the runs are in
docs/dev/performance-log.md, 2026-12-04). The standard loop stays one setting away
(`MESSENGER_EVENT_LOOP=asyncio`), for platforms uvloop does not build on and for
comparing the two.

With CPython's collector defaults, the server under load made full collections every
second or so, each long with the many objects a server tracks: they were the live p99
(docs/dev/performance-log.md, 2026-12-01, has the measurements). Two reasons, both
fixed by `tune_for_serving`:

- Full collections walked every object made at startup (modules, SQLAlchemy's
  tables and compiled statements, the routes), which live as long as the process.
  `gc.freeze()` moves them out of the collector's sight for good.
- A message's objects (futures, dicts, packets) live for one commit, a few ms; at
  the default young threshold of 700 allocations they were collected young several
  times while alive, promoted, and left to the next full collection. A young
  generation of 10,000 lets them die young.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

YOUNG_GENERATION = 10_000


# -- the event loop -------------------------------------------------------------------


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A new loop of the kind `kind` names ("uvloop" or "asyncio")."""
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise SystemExit(
                "messenger: uvloop is not installed; MESSENGER_EVENT_LOOP=asyncio runs without it"
            ) from None
        return uvloop.new_event_loop()
    if kind == "asyncio":
        return asyncio.new_event_loop()
    raise ValueError(f"unknown event loop {kind!r}")


def run_on_event_loop(main: Coroutine[Any, Any, T], kind: str) -> T:
    """`asyncio.run(main)` on a new loop of the kind `kind` names."""
    try:
        loop = new_event_loop(kind)
    except BaseException:
        main.close()
        raise
    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        return runner.run(main)


def running_loop_kind() -> str:
    """ "uvloop" or "asyncio": which kind of loop runs this code (for the logs)."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.split(".")[0] == "uvloop" else "asyncio"


# -- the garbage collector ------------------------------------------------------------


def tune_for_serving() -> None:
    """Call once the server has started (imports done, engines and routes built)."""
    gc.collect()  # what is garbage now must not be frozen with the rest
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION, middle, oldest)
