"""Run the server on the event loop the settings name.

uvloop (libuv under asyncio's interface) takes less CPU per message than the standard
library's loop and shortens the tail: measured side by side, docs/performance.md has
the numbers. The standard loop stays one setting away (`MESSENGER_EVENT_LOOP=asyncio`),
for platforms uvloop does not build on and for comparing the two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_on_event_loop(main: Coroutine[Any, Any, T], event_loop: str) -> T:
    """`asyncio.run(main)` on a new loop of the kind `event_loop` names."""
    if event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            main.close()
            raise SystemExit(
                "messenger: uvloop is not installed; MESSENGER_EVENT_LOOP=asyncio runs without it"
            ) from None
        return uvloop.run(main)
    if event_loop == "asyncio":
        return asyncio.run(main)
    main.close()
    raise ValueError(f"unknown event loop {event_loop!r}")


def running_loop_kind() -> str:
    """ "uvloop" or "asyncio": which kind of loop runs this code (for the logs)."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.split(".")[0] == "uvloop" else "asyncio"
