"""How long the disk under the SQLite file takes to fsync, measured in the same run.

With `synchronous=FULL` every write batch waits for one fsync of the WAL before any
of its messages is acknowledged or pushed, so the disk's slowest fsyncs are a floor
under messenger's tail latency that no server code can lower. On a shared virtual
disk they vary from run to run: the sweep reports them beside its latencies, and
counts one fsync in the floor it judges every database's latency against (bench.floor).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stats import percentile

# A floor: a batch of 40 sends and 40 marks appends about 800 KiB to the WAL
# (`python -m bench.wal_frames`); 8 KiB is kept so that runs stay comparable.
BLOCK = b"\0" * 8192
PAUSE_S = 0.002  # a few hundred fsyncs a second, like the writer at moderate load
SLOW_MS = 50.0


def fsync_latency(directory: Path, seconds: float) -> dict[str, Any]:
    """Append BLOCK and fsync, repeatedly for `seconds`, in a file in `directory`."""
    samples: list[float] = []
    with tempfile.TemporaryDirectory(prefix="fsync-", dir=directory) as scratch:
        fd = os.open(Path(scratch) / "probe", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                os.write(fd, BLOCK)
                started = time.perf_counter()
                os.fsync(fd)
                samples.append(1000 * (time.perf_counter() - started))
                time.sleep(PAUSE_S)
        finally:
            os.close(fd)
    return {
        "fsyncs": len(samples),
        "seconds": seconds,
        "p50_ms": round(percentile(samples, 50), 2),
        "p99_ms": round(percentile(samples, 99), 2),
        "p99_9_ms": round(percentile(samples, 99.9), 2),
        "max_ms": round(max(samples), 2),
        "over_50_ms": sum(1 for s in samples if s > SLOW_MS),
    }
