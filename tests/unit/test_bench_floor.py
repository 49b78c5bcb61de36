"""The sweep's latency-vs-floor arithmetic (bench/floor.py): the floor at a rate, the
ratios over it, and the worst ratio at up to half the peak per database."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bench.floor import floor_fields, max_vs_floor
from bench.report import headline, markdown

FSYNC = {"p50_ms": 2.0, "p99_ms": 8.0}
RELAY = {"p50_ms": 1.5, "p99_ms": 4.0}


def test_floor_is_relay_plus_one_fsync_with_the_issue_slack() -> None:
    got = floor_fields({"p50_ms": 9.0, "p99_ms": 12.0}, RELAY, FSYNC)
    assert got["floor_p50_ms"] == pytest.approx(1.5 + 2.0 + 1.0)
    assert got["floor_p99_ms"] == pytest.approx(2 * (4.0 + 8.0))
    assert got["vs_floor_p50"] == pytest.approx(9.0 / 4.5)
    assert got["vs_floor_p99"] == pytest.approx(12.0 / 24.0)
    assert got["vs_floor"] == got["vs_floor_p50"]


def test_the_tail_can_be_the_worse_ratio() -> None:
    got = floor_fields({"p50_ms": 2.0, "p99_ms": 48.0}, RELAY, FSYNC)
    assert got["vs_floor"] == got["vs_floor_p99"] == pytest.approx(2.0)


def test_missing_samples_give_nan_not_a_passing_ratio() -> None:
    no_messenger = floor_fields({"p50_ms": math.nan, "p99_ms": math.nan}, RELAY, FSYNC)
    assert math.isnan(no_messenger["vs_floor"])
    no_relay = floor_fields(
        {"p50_ms": 3.0, "p99_ms": 5.0}, {"p50_ms": 1.0, "p99_ms": math.nan}, FSYNC
    )
    assert no_relay["vs_floor_p50"] == pytest.approx(0.75)
    assert math.isnan(no_relay["vs_floor_p99"]) and math.isnan(no_relay["vs_floor"])


def _row(db: str, fraction: float | None, vs: float, target: str = "messenger") -> dict[str, Any]:
    return {
        "target": target,
        "db": db,
        "fraction_of_own_peak": fraction,
        "offered_per_s": 1000.0 * (fraction or 0),
        "vs_floor": vs,
        "vs_floor_p50": vs,
        "vs_floor_p99": vs / 2,
    }


def test_max_is_per_database_over_fractions_up_to_half_the_peak() -> None:
    rows = [
        _row("sqlite", 0.1, 1.2),
        _row("sqlite", 0.25, 1.7),
        _row("sqlite", 0.5, 1.4),
        _row("sqlite", 0.75, 9.0),  # above half the peak: queueing, not counted
        _row("postgresql", 0.1, 0.8),
        _row("postgresql", 0.5, 0.9),
        _row("postgresql", 1.1, 30.0),
    ]
    worst = max_vs_floor(rows)
    assert worst["sqlite"]["vs_floor"] == 1.7
    assert worst["sqlite"]["fraction_of_own_peak"] == 0.25
    assert worst["sqlite"]["offered_per_s"] == 250.0
    assert worst["postgresql"]["vs_floor"] == 0.9
    assert worst["postgresql"]["fraction_of_own_peak"] == 0.5


def test_max_skips_relay_rows_and_rows_without_a_floor() -> None:
    normal = {"target": "messenger", "db": "sqlite", "fraction_of_own_peak": 0.5}
    rows = [_row("-", None, 50.0, "relay"), _row("-", 0.5, 50.0, "relay"), normal]
    rows.append(_row("sqlite", 0.1, 1.1))
    assert max_vs_floor(rows) == {
        "sqlite": {
            "vs_floor": 1.1,
            "vs_floor_p50": 1.1,
            "vs_floor_p99": 0.55,
            "fraction_of_own_peak": 0.1,
            "offered_per_s": 100.0,
        }
    }
    assert max_vs_floor([]) == {}


def test_a_nan_ratio_is_the_worst() -> None:
    worst = max_vs_floor([_row("sqlite", 0.1, 3.0), _row("sqlite", 0.25, math.nan)])
    assert math.isnan(worst["sqlite"]["vs_floor"])
    assert worst["sqlite"]["fraction_of_own_peak"] == 0.25


def test_report_carries_the_max_and_pinned_and_prints_the_floor_table() -> None:
    push = {"p50_ms": 9.0, "p99_ms": 12.0, "max_ms": 20.0, "samples": 10}
    sweep = [
        {**_row("sqlite", 0.25, 0.0), **floor_fields(push, RELAY, FSYNC), "push": push},
        {"target": "relay", "db": "-", "series": "relay", "push": RELAY, "pinned": True},
    ]
    results = {"sweep": sweep, "pinned": True}
    head = headline(results)
    assert head["pinned"] is True
    assert head["latency_vs_floor_max"]["sqlite"]["vs_floor"] == pytest.approx(2.0)
    text = markdown(results)
    assert "sweep latency vs the floor" in text
    assert "| latency_vs_floor_max.sqlite | 2 at 250.0/s (0.25 of peak) |" in text
    assert "| pinned | yes |" in text
