"""The store-and-forward scenarios: offline backlog, history, idle connections.

Every scenario owns its servers (fresh process, fresh database) and stops them before
it returns, so memory numbers start from a clean process and one scenario's data
never slows another. `live` and the rate sweep are in bench/live.py.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import accounts, servers
from bench.idle import Holders
from bench.loadgen import Peer
from bench.probes import history_pages, offline_drain
from bench.progress import Progress
from bench.seed import STATUS_READ, STATUS_SENT, SeedPlan, seed
from bench.servers import Server
from bench.stats import summarize
from bench.storm import listen_overflows, reconnect_storm

# Seconds between the last connect and weighing the server.
SETTLE = 3.0
NODE_CAP = re.compile(r"connection caps: (\d+) open on the node")


@dataclass(frozen=True)
class Settings:
    """Sizes and durations of one benchmark run (see `--quick` in the CLI)."""

    workdir: Path
    dbs: tuple[str, ...]
    workers: int = 2
    # Alternating relay / messenger runs per database; the median run is reported.
    rounds: int = 3
    pairs: int = 32
    window: int = 16
    duration: float = 10.0
    warmup: float = 2.0
    sweep_fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9, 1.1)
    sweep_duration: float = 6.0
    sweep_window: int = 64
    # `--pin`: servers under test on CPU 0, load generators on CPU 1 (live and sweep).
    pin: bool = False
    # `cluster`: also run two nodes with each pair on one node (besides one node, and
    # two nodes with every message crossing).
    cluster_split: bool = True
    offline_sizes: tuple[int, ...] = (10_000, 100_000)
    history_messages: int = 1_000_000
    history_pages: int = 2_000
    # `connections`: sockets asked for (a node holds what its descriptor limit allows,
    # the rest are refused and counted), from holder processes of at most
    # `sockets_per_holder` each, with `connect_concurrency` attempts in flight over all
    # of them: no more than the servers' accept backlog (128), which would otherwise
    # overflow and leave the kernel's SYN retry timer (1 s, 3 s, ...) in the latencies.
    connections: int = 100_000
    connection_users: int = 100
    sockets_per_holder: int = 18_000
    connect_concurrency: int = 128
    connect_timeout: float = 30.0
    # Server CPU at idle over this window (python-engineio pings every 25 s: at
    # least two pings' worth), then a reconnect storm of `storm` held sockets.
    idle_seconds: float = 60.0
    storm: int = 10_000
    # `attachments`: transfers per server and direction (alternating), of one file
    # of `attachment_mib` MiB.
    attachment_transfers: int = 16
    attachment_mib: int = 25


def _seeded_server(
    s: Settings, url: str, usernames: list[str], plan_for: Callable[[list[Peer]], SeedPlan]
) -> tuple[Server, list[Peer]]:
    """Make accounts over HTTP, stop the server, bulk-load rows, start it again."""
    with servers.running(servers.start_messenger(s.workdir, url)) as server:
        peers = accounts.named_peers(server.url, usernames)
    seed(url, plan_for(peers))
    return servers.start_messenger(s.workdir, url), peers


def offline(s: Settings, progress: Progress) -> list[dict[str, Any]]:
    """N messages queued for one device; connect it and time the backlog until `synced`."""
    rows = []
    for db in s.dbs:
        for size in s.offline_sizes:

            def plan(p: list[Peer], n: int = size) -> SeedPlan:
                return SeedPlan(p[0].username, p[1].username, n, STATUS_SENT)

            with servers.database(db, s.workdir) as url:
                with progress.step(f"offline: seed {size:,} on {db}"):
                    server, (_, recipient) = _seeded_server(
                        s, url, ["offsender", "offrecipient"], plan
                    )
                with servers.running(server), progress.step(f"offline: drain {size:,} on {db}"):
                    rows.append({"db": db, **offline_drain(server, recipient.auth, size)})
    return rows


def history(s: Settings, progress: Progress) -> list[dict[str, Any]]:
    """A conversation of `history_messages`; p50/p99 of `history` pages of 50."""
    rows = []
    for db in s.dbs:
        with servers.database(db, s.workdir) as url:

            def plan(p: list[Peer]) -> SeedPlan:
                return SeedPlan(
                    p[0].username, p[1].username, s.history_messages, STATUS_READ, alternate=True
                )

            with progress.step(f"history: seed {s.history_messages:,} on {db}"):
                server, (ann, bob) = _seeded_server(s, url, ["histann", "histbob"], plan)
            with servers.running(server), progress.step(f"history: pages on {db}"):
                result = history_pages(
                    server,
                    ann.auth,
                    bob.username,
                    s.history_pages,
                    range(1, s.history_messages + 1),
                )
            rows.append({"db": db, "messages": s.history_messages, **result})
    return rows


def connections(s: Settings, progress: Progress) -> list[dict[str, Any]]:
    """`connections` idle sockets, relay then messenger: what a node holds, how fast it
    accepts, memory and CPU per idle socket, and a reconnect storm."""
    rows = []
    with progress.step(f"connections: {s.connections:,} on relay"):
        with servers.running(servers.start_relay(s.workdir)) as relay:
            auths = [p.auth for p in accounts.relay_peers(s.connections, prefix="idle")]
            rows.append({"target": "relay", "db": "-", **_hold(s, relay, auths, False)})
    for db in s.dbs:
        with (
            servers.database(db, s.workdir) as url,
            progress.step(f"connections: {s.connections:,} on messenger/{db}"),
        ):
            with servers.running(servers.start_messenger(s.workdir, url)) as server:
                users = accounts.messenger_peers(server.url, s.connection_users, prefix="idle")
                auths = [users[i % len(users)].auth for i in range(s.connections)]
                row = _hold(s, server, auths, True)
                rows.append({"target": "messenger", "db": db, **row})
    relay_p99 = rows[0]["storm_p99_ms"]
    for row in rows[1:]:
        p99 = row["storm_p99_ms"]
        ok = math.isfinite(p99) and math.isfinite(relay_p99) and relay_p99 > 0
        row["storm_vs_relay_p99"] = round(p99 / relay_p99, 2) if ok else None
    return rows


def _hold(
    s: Settings, server: Server, auths: list[dict[str, Any]], waits_for_synced: bool
) -> dict[str, Any]:
    """One socket per auth to `server`: the fill, its weight, the idle window, the
    storm; the row's fields."""
    nofile = descriptor_limit(server.proc.pid)
    rss0, cpu0 = server.rss(), server.cpu_seconds()
    with Holders(
        server.url,
        auths,
        waits_for_synced=waits_for_synced,
        logdir=s.workdir,
        per_process=s.sockets_per_holder,
        concurrency=s.connect_concurrency,
        timeout=s.connect_timeout,
    ) as holders:
        overflows = listen_overflows()
        fill = holders.connect()
        cpu1, overflows = server.cpu_seconds(), listen_overflows() - overflows
        time.sleep(SETTLE)  # let the server settle (buffers, tasks) before weighing it
        rss1, holders_rss = server.rss(), holders.rss()
        held = fill.ok
        idle = _idle(s, server, holders, held)
        count = min(s.storm, holders.counts().held)
        storm = reconnect_storm(server, holders, count, idle["idle_cpu_pct"] / 100)
    accepted = summarize(fill.ms)
    return {
        "wanted": len(auths),
        "sockets": held,
        "refused": fill.refused,
        "connect_failed": fill.rejected + fill.failed + fill.timeouts,
        "connect_errors": fill.errors,
        "server_nofile": nofile,
        "node_cap": node_cap(server),
        "holders": len(holders.procs),
        "connect_in_flight": holders.in_flight(),
        "listen_overflows": overflows,
        "accept_s": round(fill.seconds, 1),
        "connects_per_s": round(held / fill.seconds, 1) if fill.seconds else None,
        "accept_p50_ms": accepted["p50_ms"],
        "accept_p99_ms": accepted["p99_ms"],
        "connect_cpu_ms": round(1000 * (cpu1 - cpu0) / held, 2) if held else None,
        "rss_before_mb": round(rss0 / 2**20, 1),
        "rss_after_mb": round(rss1 / 2**20, 1),
        "kb_per_conn": round((rss1 - rss0) / held / 1024, 1) if held else None,
        "holders_rss_mb": round(holders_rss / 2**20, 1),
        "ping_interval_s": fill.ping_interval,
        **idle,
        **storm,
    }


def _idle(s: Settings, server: Server, holders: Holders, held: int) -> dict[str, Any]:
    """Server CPU over `idle_seconds` with every socket idle (heartbeats only)."""
    before = holders.counts()
    cpu0, gen0, t0 = server.cpu_seconds(), holders.cpu_seconds(), time.monotonic()
    time.sleep(s.idle_seconds)
    cpu, gen = server.cpu_seconds() - cpu0, holders.cpu_seconds() - gen0
    window = time.monotonic() - t0
    after = holders.counts()
    pct = 100 * cpu / window
    return {
        "idle_s": round(window, 1),
        "idle_cpu_pct": round(pct, 2),
        "idle_cpu_pct_per_1k": round(pct * 1000 / held, 3) if held else None,
        "idle_pings": after.pings - before.pings,
        "idle_dropped": after.dropped - before.dropped,
        "holders_cpu_pct": round(100 * gen / window, 2),
    }


def descriptor_limit(pid: int) -> int | None:
    """The soft "Max open files" of a process, as /proc shows it."""
    try:
        text = Path(f"/proc/{pid}/limits").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Max open files"):
            soft = line.split()[3]
            return int(soft) if soft.isdigit() else None
    return None


def node_cap(server: Server) -> int | None:
    """The connection cap messenger logs at start (`connection caps: N open on the
    node`); None for the relay, which has none."""
    try:
        with open(server.log_path, errors="replace") as log:
            for line, _ in zip(log, range(500), strict=False):
                found = NODE_CAP.search(line)
                if found:
                    return int(found.group(1))
    except OSError:
        return None
    return None
