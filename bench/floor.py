"""How far messenger's push latency is from the physical floor at the same offered rate.

At a given rate, no durable server can beat what the in-memory relay needs at that
rate (sockets, event loop, Socket.IO) plus one fsync of the disk its commits wait on.
Issue 27 defines the floor with some slack for the server's own work around the
commit: 1 ms at the median, and twice the sum at the tail. A ratio at or under 1 means
messenger is as close to the hardware as the design allows; the sweep reports it per
rate, and the worst ratio at up to half the peak (where queueing should not dominate).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

P50_SLACK_MS = 1.0
P99_FACTOR = 2.0
# Rates up to this fraction of messenger's closed-loop peak count towards the goal.
MAX_FRACTION = 0.5


def _ratio(value: float, floor: float) -> float:
    if math.isnan(value) or math.isnan(floor) or floor <= 0:
        return math.nan
    return round(value / floor, 3)


def floor_fields(
    messenger: Mapping[str, float], relay: Mapping[str, float], fsync: Mapping[str, float]
) -> dict[str, float]:
    """The floor at one rate and messenger's latency over it.

    `messenger` and `relay` are push summaries (`p50_ms`, `p99_ms`) of runs at the same
    offered rate; `fsync` is bench.disk.fsync_latency's result. NaN (no samples) in,
    NaN out: an unknown ratio must not pass for a good one.
    """
    floor_p50 = relay["p50_ms"] + fsync["p50_ms"] + P50_SLACK_MS
    floor_p99 = P99_FACTOR * (relay["p99_ms"] + fsync["p99_ms"])
    vs_p50 = _ratio(messenger["p50_ms"], floor_p50)
    vs_p99 = _ratio(messenger["p99_ms"], floor_p99)
    worst = math.nan if math.isnan(vs_p50) or math.isnan(vs_p99) else max(vs_p50, vs_p99)
    return {
        "floor_p50_ms": round(floor_p50, 2),
        "floor_p99_ms": round(floor_p99, 2),
        "vs_floor_p50": vs_p50,
        "vs_floor_p99": vs_p99,
        "vs_floor": worst,
    }


def max_vs_floor(
    rows: Iterable[Mapping[str, Any]], max_fraction: float = MAX_FRACTION
) -> dict[str, dict[str, Any]]:
    """Per database, the sweep row with the largest `vs_floor` among messenger's rows at
    up to `max_fraction` of its peak, and the rate that gave it. A NaN ratio wins: a
    rate that could not be judged must show, not be skipped."""
    worst: dict[str, dict[str, Any]] = {}
    for row in rows:
        fraction = row.get("fraction_of_own_peak")
        if row.get("target") != "messenger" or "vs_floor" not in row or fraction is None:
            continue
        if fraction > max_fraction + 1e-9:
            continue
        current = worst.get(row["db"])
        if current is None or _worse(row["vs_floor"], current["vs_floor"]):
            worst[row["db"]] = {
                "vs_floor": row["vs_floor"],
                "vs_floor_p50": row["vs_floor_p50"],
                "vs_floor_p99": row["vs_floor_p99"],
                "fraction_of_own_peak": fraction,
                "offered_per_s": row.get("offered_per_s"),
            }
    return worst


def _worse(candidate: float, current: float) -> bool:
    if math.isnan(current):
        return False
    return math.isnan(candidate) or candidate > current
