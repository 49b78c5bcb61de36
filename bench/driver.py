"""Run the load generator against one server and turn what it saw into one result row.

The parent process only coordinates: it waits until every worker has connected,
picks a common start instant, and samples the server's CPU over exactly the
measurement window the workers use, so generator and server CPU can be compared.
"""

from __future__ import annotations

import math
import queue
import time
from collections.abc import Callable
from typing import Any

import psutil

from bench import loadgen
from bench.loadgen import LoadSpec, Peer
from bench.servers import LOADGEN_CPU, Server
from bench.stats import WorkerResult, merge, summarize


def drive(
    server: Server,
    spec: LoadSpec,
    peers: list[tuple[Peer, Peer]],
    workers: int,
    extra_cpu: Callable[[], float] | None = None,
    meters: dict[str, Callable[[], float]] | None = None,
    pin: bool = False,
) -> dict[str, Any]:
    """One timed run: msgs/s, latency percentiles and who used the CPU.

    `meters` are further CPU counters (another node, Redis) sampled over the same
    window; each becomes `<name>_cpu_pct` and counts as server-side CPU per message.
    `pin` puts the workers on LOADGEN_CPU; the server must have been started pinned
    too (bench.servers.start), or the row's `pinned` would be half true.
    """
    if pin != server.pinned:
        raise ValueError(f"pin={pin} but {server.name} was started with pin={server.pinned}")
    run = loadgen.launch(spec, peers, workers, frozenset({LOADGEN_CPU}) if pin else None)
    try:
        _wait_ready(run, workers, spec.connect_timeout + 30)
        start = time.monotonic() + 0.3
        run.start_at.value = start
        run.go.set()
        cpu = _sample_window(
            server, start + spec.warmup, start + spec.duration, extra_cpu, meters or {}
        )
        results = _collect(run, workers, spec.duration + spec.drain + 60)
    finally:
        loadgen.stop(run)
    return {**_row(spec, workers, merge(results), cpu, tuple(meters or ())), "pinned": pin}


def _wait_ready(run: loadgen.Run, workers: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    waiting = workers
    while waiting:
        if time.monotonic() > deadline:
            raise RuntimeError("load-generator workers did not connect in time")
        if not all(proc.is_alive() for proc in run.procs) and run.ready.empty():
            raise RuntimeError("a load-generator worker died while connecting")
        try:
            run.ready.get(timeout=0.5)
            waiting -= 1
        except queue.Empty:
            continue


def _sample_window(
    server: Server,
    lo: float,
    hi: float,
    extra_cpu: Callable[[], float] | None,
    meters: dict[str, Callable[[], float]],
) -> dict[str, float]:
    time.sleep(max(0.0, lo - time.monotonic()))
    server0, extra0 = server.cpu_seconds(), extra_cpu() if extra_cpu else 0.0
    meters0 = {name: read() for name, read in meters.items()}
    busy0 = _machine_busy()
    peak_rss = server.rss()
    while time.monotonic() < hi:
        time.sleep(min(0.25, max(0.0, hi - time.monotonic())))
        peak_rss = max(peak_rss, server.rss())
    span = hi - lo
    return {
        "server_cpu_pct": round(100 * (server.cpu_seconds() - server0) / span, 1),
        "db_cpu_pct": round(100 * ((extra_cpu() if extra_cpu else 0.0) - extra0) / span, 1),
        "server_rss_mb": round(peak_rss / 2**20, 1),
        "machine_cpu_pct": round(100 * (_machine_busy() - busy0) / span, 1),
        **{
            f"{name}_cpu_pct": round(100 * (read() - meters0[name]) / span, 1)
            for name, read in meters.items()
        },
    }


def _machine_busy() -> float:
    """CPU seconds all cores have spent not idle: shows load from outside the benchmark."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def _collect(run: loadgen.Run, workers: int, timeout: float) -> list[WorkerResult]:
    deadline = time.monotonic() + timeout
    results = []
    for _ in range(workers):
        try:
            results.append(run.results.get(timeout=max(0.1, deadline - time.monotonic())))
        except queue.Empty:
            raise RuntimeError("load-generator workers did not report in time") from None
    return results


def _row(
    spec: LoadSpec,
    workers: int,
    total: WorkerResult,
    cpu: dict[str, float],
    meters: tuple[str, ...] = (),
) -> dict[str, Any]:
    span = spec.duration - spec.warmup
    row: dict[str, Any] = {
        "offered_per_s": round(spec.rate * workers, 1) if spec.rate else None,
        "msgs_per_s": round(total.received_in_window / span, 1),
        "sent": total.sent,
        "acked": total.acked,
        "received": total.received,
        "receipts": total.receipts,
        "errors": total.errors,
        "lost": total.lost,
        "unanswered": total.unanswered,
        "duplicates": total.duplicates,
        "connected": total.connected,
        "connect_errors": total.connect_errors,
        "push": summarize(total.push_ms),
        "receipt": summarize(total.receipt_ms),
        "ack": summarize(total.ack_ms),
        "loadgen_cpu_pct": round(100 * total.cpu_s / span, 1),
        **cpu,
    }
    # CPU the server side spent per delivered message: far steadier than msgs/s on a
    # shared machine, since it counts only the server's (and PostgreSQL's) own work.
    server_side_pct = cpu["server_cpu_pct"] + cpu["db_cpu_pct"]
    server_side_pct += sum(cpu[f"{name}_cpu_pct"] for name in meters)
    server_cpu_s = server_side_pct / 100 * span
    row["cpu_ms_per_msg"] = (
        round(1000 * server_cpu_s / total.received_in_window, 3)
        if total.received_in_window
        else math.nan
    )
    # Whatever the machine did besides server, database and generator: other tenants.
    row["other_cpu_pct"] = round(
        max(
            0.0,
            cpu["machine_cpu_pct"] - server_side_pct - row["loadgen_cpu_pct"],
        ),
        1,
    )
    if total.failure:
        row["failure"] = total.failure
    return row
