"""The group-commit writer's side of one run, read from the server's /metrics.

The latency of a send is, for the most part, the time its item waits in the writer's
queue plus the time its batch takes to commit; both are histograms the server
exports. Their means over a run say which of the two grew, and the batch size says
how far the writer amortized its per-batch cost. Counted over the whole run
(connecting, warm-up and drain included): a mean, not a rate.
"""

from __future__ import annotations

import re
import urllib.request
from typing import Any

# Histograms whose _sum / _count give a run's means.
HISTOGRAMS = {
    "items_per_batch": ("messenger_write_batch_size", 1.0),
    "commit_ms": ("messenger_commit_seconds", 1000.0),
    "queue_wait_ms": ("messenger_write_wait_seconds", 1000.0),
}
_SAMPLE = re.compile(r"^(messenger_\w+?)_(sum|count) ([0-9.e+-]+)$", re.MULTILINE)


def scrape(url: str) -> dict[str, float]:
    """Every `<histogram>_sum` and `_count` the server reports now."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {f"{name}_{part}": float(value) for name, part, value in _SAMPLE.findall(text)}


def since(before: dict[str, float], url: str) -> dict[str, Any]:
    """The writer's means since `before` (a `scrape`), with how many batches they cover."""
    after = scrape(url)

    def grown(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    batches = grown("messenger_write_batch_size_count")
    out: dict[str, Any] = {"batches": int(batches)}
    for field, (histogram, scale) in HISTOGRAMS.items():
        count = grown(f"{histogram}_count")
        out[field] = round(scale * grown(f"{histogram}_sum") / count, 2) if count else None
    return out
