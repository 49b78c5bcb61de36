"""A plain-stderr progress bar: which step of how many, and how long it has run.

On a terminal one line is redrawn in place; in a log (not a tty) each step prints a
start and an end line instead, so CI output stays readable.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

WIDTH = 24


class Progress:
    """Counts finished steps out of `total` and shows the one that is running."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total, self.done, self.stream = max(1, total), 0, stream
        self.tty = stream.isatty()
        self.t_start = time.monotonic()

    def _line(self, label: str, since: float) -> str:
        filled = WIDTH * self.done // self.total
        bar = "#" * filled + "-" * (WIDTH - filled)
        return (
            f"[{bar}] {self.done}/{self.total} {label} "
            f"({time.monotonic() - since:4.0f}s, total {time.monotonic() - self.t_start:.0f}s)"
        )

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        """Show `label` while the block runs; the block counts as one step."""
        since = time.monotonic()
        stop = threading.Event()
        if self.tty:

            def redraw() -> None:
                while not stop.wait(0.5):
                    self.stream.write("\r\033[K" + self._line(label, since))
                    self.stream.flush()

            thread = threading.Thread(target=redraw, daemon=True)
            thread.start()
        else:
            self.stream.write(self._line(label, since) + " ...\n")
        try:
            yield
        finally:
            stop.set()
            self.done += 1
            end = "\r\033[K" if self.tty else ""
            self.stream.write(end + self._line(label + " done", since) + "\n")
            self.stream.flush()
