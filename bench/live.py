"""`live` and the offered-rate sweep: messenger against the relay, both sides online.

The machine is shared and noisy, so the relay is never measured once and compared
later: per database, the relay and messenger run in alternation (`rounds` times), and
each round's ratio compares two runs taken seconds apart. The median round is
reported. CPU per message (server, plus PostgreSQL) is reported too: it depends far
less on what other tenants of the machine are doing than msgs/s does.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from bench import accounts, disk, floor, servers, writer_stats
from bench.driver import drive
from bench.loadgen import LoadSpec, Peer
from bench.progress import Progress
from bench.scenarios import Settings
from bench.servers import Server

Rows = list[dict[str, Any]]


def _extra_cpu(db: str) -> Callable[[], float] | None:
    return servers.postgres_cpu_seconds if db == "postgresql" else None


def _spec(s: Settings, server: Server, dialect: str, rate: float | None = None) -> LoadSpec:
    if rate is None:
        return LoadSpec(
            url=server.url, dialect=dialect, duration=s.duration, warmup=s.warmup, window=s.window
        )
    return LoadSpec(
        url=server.url,
        dialect=dialect,
        duration=s.sweep_duration,
        warmup=min(s.warmup, s.sweep_duration / 3),
        window=s.sweep_window,
        rate=rate / s.workers,
    )


def ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 3) if baseline else 0.0


def median_row(rows: Rows) -> dict[str, Any]:
    """The run with the median throughput (a real run, not an average of runs)."""
    ordered = sorted(rows, key=lambda r: r["msgs_per_s"])
    return ordered[(len(ordered) - 1) // 2]


def _messenger_pairs(s: Settings, messenger: Server) -> list[tuple[Peer, Peer]]:
    """Sender/recipient pairs of real accounts on `messenger`."""
    return accounts.pairs_of(accounts.messenger_peers(messenger.url, 2 * s.pairs))


class _Pair:
    """The relay and one messenger, both running, with their client identities."""

    def __init__(self, s: Settings, relay: Server, messenger: Server, db: str) -> None:
        self.s, self.relay, self.messenger, self.db = s, relay, messenger, db
        self.relay_peers = accounts.pairs_of(accounts.relay_peers(2 * s.pairs))
        self.messenger_peers = _messenger_pairs(s, messenger)

    def run_relay(self, rate: float | None = None) -> dict[str, Any]:
        spec = _spec(self.s, self.relay, "relay", rate)
        return drive(self.relay, spec, self.relay_peers, self.s.workers, pin=self.s.pin)

    def run_messenger(self, rate: float | None = None) -> dict[str, Any]:
        return _drive_messenger(self.s, self.messenger, self.messenger_peers, self.db, rate)


def _drive_messenger(
    s: Settings, server: Server, peers: list[tuple[Peer, Peer]], db: str, rate: float | None
) -> dict[str, Any]:
    """One run against messenger, with what its writer did meanwhile (bench.writer_stats)."""
    before = writer_stats.scrape(server.url)
    spec = _spec(s, server, "messenger", rate)
    row = drive(server, spec, peers, s.workers, _extra_cpu(db), pin=s.pin)
    return {**row, "writer": writer_stats.since(before, server.url)}


def live(s: Settings, progress: Progress, sweep: bool) -> tuple[Rows, Rows, Rows]:
    """Per database: alternating closed-loop rounds, then (optionally) the sweep, each
    rate judged against the floor (bench.floor); on SQLite the sweep also separates
    the disk's share of the latency (`_disk_share`)."""
    rows: Rows = []
    curve: Rows = []
    # One probe per bench run, before any server of ours runs, reused by every db.
    fsyncs: Rows = [_fsync_probe(s, progress)] if sweep else []
    for db in s.dbs:
        with (
            servers.database(db, s.workdir) as url,
            servers.running(servers.start_relay(s.workdir, pin=s.pin)) as relay,
            servers.running(servers.start_messenger(s.workdir, url, pin=s.pin)) as messenger,
        ):
            pair = _Pair(s, relay, messenger, db)
            relay_row, messenger_row = _rounds(pair, progress)
            rows += [relay_row, messenger_row]
            if sweep:
                curve += _sweep(
                    pair,
                    progress,
                    relay_row["msgs_per_s"],
                    messenger_row["msgs_per_s"],
                    fsyncs[0],
                )
        if sweep and db == "sqlite":
            curve.append(_disk_share(s, progress, messenger_row["msgs_per_s"]))
    return rows, curve, fsyncs


DISK_PROBE_S = 10.0


def _fsync_probe(s: Settings, progress: Progress) -> dict[str, Any]:
    """The disk's own fsync latency, with none of our servers running, in the bench
    workdir: the SQLite files are made under it. PostgreSQL's WAL is not ours to
    probe, so its floor uses this same probe: on this machine its data directory is
    on the same disk as the workdir (see docs/dev/performance-log.md, "How to run")."""
    with progress.step(f"sweep: fsync latency in the workdir ({DISK_PROBE_S:.0f} s)"):
        fsyncs = disk.fsync_latency(s.workdir, DISK_PROBE_S)
    return {"db": ",".join(s.dbs), "directory": str(s.workdir), **fsyncs}


def _disk_share(s: Settings, progress: Progress, messenger_peak: float) -> dict[str, Any]:
    """At half the peak, messenger with `synchronous=NORMAL`: the WAL is not fsynced
    at each commit, so the disk's slow fsyncs stop adding to the tail."""
    rate = max(1.0, round(0.5 * messenger_peak))
    normal = {"MESSENGER_SQLITE_SYNCHRONOUS": "NORMAL"}
    with servers.database("sqlite", s.workdir) as url:
        started = servers.start_messenger(s.workdir, url, env=normal, pin=s.pin)
        with servers.running(started) as server:
            peers = _messenger_pairs(s, server)
            with progress.step(f"sweep sqlite: synchronous=NORMAL at {rate:.0f}/s"):
                row = _drive_messenger(s, server, peers, "sqlite", rate)
    return {
        "target": "messenger",
        "db": "sqlite",
        "series": "messenger on sqlite, synchronous=NORMAL",
        "fraction_of_own_peak": 0.5,
        **row,
    }


def _rounds(pair: _Pair, progress: Progress) -> tuple[dict[str, Any], dict[str, Any]]:
    relays: Rows = []
    messengers: Rows = []
    for i in range(pair.s.rounds):
        with progress.step(f"live {pair.db} round {i + 1}: relay"):
            relays.append(pair.run_relay())
        with progress.step(f"live {pair.db} round {i + 1}: messenger"):
            messengers.append(pair.run_messenger())
    ratios = [
        ratio(m["msgs_per_s"], r["msgs_per_s"]) for r, m in zip(relays, messengers, strict=True)
    ]
    cpu_ratios = [
        ratio(r["cpu_ms_per_msg"], m["cpu_ms_per_msg"])
        for r, m in zip(relays, messengers, strict=True)
    ]
    relay_row = {
        "target": "relay",
        "db": "-",
        "baseline_for": pair.db,
        "rounds_msgs_per_s": [r["msgs_per_s"] for r in relays],
        **median_row(relays),
    }
    messenger_row = {
        "target": "messenger",
        "db": pair.db,
        "rounds_msgs_per_s": [m["msgs_per_s"] for m in messengers],
        "rounds_ratio": ratios,
        "ratio_vs_relay": round(statistics.median(ratios), 3),
        "cpu_efficiency_vs_relay": round(statistics.median(cpu_ratios), 3),
        **median_row(messengers),
    }
    return relay_row, messenger_row


def _sweep(
    pair: _Pair,
    progress: Progress,
    relay_peak: float,
    messenger_peak: float,
    fsync: dict[str, Any],
) -> Rows:
    """Both servers at the same offered rates (fractions of messenger's peak), each
    messenger row judged against the relay's row at its rate plus one fsync, then the
    relay at half its own peak, for the "p99 at half the peak rate" comparison."""
    out: Rows = []
    for fraction in pair.s.sweep_fractions:
        rate = max(1.0, round(fraction * messenger_peak))
        with progress.step(f"sweep {pair.db}: messenger at {rate:.0f}/s"):
            row = pair.run_messenger(rate)
        messenger_row = {
            "target": "messenger",
            "db": pair.db,
            "series": f"messenger on {pair.db}",
            "fraction_of_own_peak": fraction,
            **row,
        }
        with progress.step(f"sweep {pair.db}: relay at {rate:.0f}/s"):
            row = pair.run_relay(rate)
        relay_row = {
            "target": "relay",
            "db": "-",
            "series": f"relay (beside {pair.db})",
            "fraction_of_own_peak": None,
            **row,
        }
        messenger_row.update(floor.floor_fields(messenger_row["push"], relay_row["push"], fsync))
        out += [messenger_row, relay_row]
    rate = max(1.0, round(0.5 * relay_peak))
    with progress.step(f"sweep {pair.db}: relay at {rate:.0f}/s (half its peak)"):
        row = pair.run_relay(rate)
    out.append(
        {
            "target": "relay",
            "db": "-",
            "series": f"relay (beside {pair.db})",
            "fraction_of_own_peak": 0.5,
            **row,
        }
    )
    return out
