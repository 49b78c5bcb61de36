"""Counters a worker reports, and how several workers' counters add up."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class WorkerResult:
    """What one load-generator process saw; latencies in milliseconds."""

    worker_id: int = -1
    pid: int = 0
    connected: int = 0
    connect_errors: int = 0
    sent: int = 0
    acked: int = 0
    errors: int = 0
    received: int = 0
    received_in_window: int = 0
    duplicates: int = 0
    receipts: int = 0
    unanswered: int = 0
    lost: int = 0
    cpu_s: float = 0.0
    failure: str | None = None
    push_ms: list[float] = field(default_factory=list)
    receipt_ms: list[float] = field(default_factory=list)
    ack_ms: list[float] = field(default_factory=list)


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(samples: list[float]) -> dict[str, float]:
    """p50 / p99 / max of a latency sample, in ms, rounded for the report."""
    return {
        "p50_ms": round(percentile(samples, 50), 2),
        "p99_ms": round(percentile(samples, 99), 2),
        "max_ms": round(max(samples), 2) if samples else math.nan,
        "samples": len(samples),
    }


def merge(results: list[WorkerResult]) -> WorkerResult:
    """Add up the workers' counters and pool their latency samples."""
    total = WorkerResult()
    for r in results:
        for name in (
            "connected",
            "connect_errors",
            "sent",
            "acked",
            "errors",
            "received",
            "received_in_window",
            "duplicates",
            "receipts",
            "unanswered",
            "lost",
        ):
            setattr(total, name, getattr(total, name) + getattr(r, name))
        total.cpu_s += r.cpu_s
        total.push_ms.extend(r.push_ms)
        total.receipt_ms.extend(r.receipt_ms)
        total.ack_ms.extend(r.ack_ms)
        if r.failure:
            total.failure = (total.failure + "; " if total.failure else "") + r.failure
    return total
