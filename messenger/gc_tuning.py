"""The garbage collector set for a long-running server, not for a script.

With CPython's defaults, the server under load made full collections every second
or so, each long with the many objects a server tracks: they were the live p99
(docs/dev/performance-log.md, 2026-12-01, has the measurements). Two reasons, both
fixed here:

- Full collections walked every object made at startup (modules, SQLAlchemy's
  tables and compiled statements, the routes), which live as long as the process.
  `gc.freeze()` moves them out of the collector's sight for good.
- A message's objects (futures, dicts, packets) live for one commit, a few ms; at
  the default young threshold of 700 allocations they were collected young several
  times while alive, promoted, and left to the next full collection. A young
  generation of 10,000 lets them die young.
"""

from __future__ import annotations

import gc

YOUNG_GENERATION = 10_000


def tune_for_serving() -> None:
    """Call once the server has started (imports done, engines and routes built)."""
    gc.collect()  # what is garbage now must not be frozen with the rest
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION, middle, oldest)
