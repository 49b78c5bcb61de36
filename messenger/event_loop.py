"""Run the server on the event loop the settings name.

uvloop (libuv under asyncio's interface) takes less CPU per message than the standard
library's loop and shortens the tail, measured side by side (the runs are in
docs/dev/performance-log.md, 2026-12-04). The standard loop stays one setting away
(`MESSENGER_EVENT_LOOP=asyncio`), for platforms uvloop does not build on and for
comparing the two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


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
