"""The store-and-forward scenarios: offline backlog, history, idle connections.

Every scenario owns its servers (fresh process, fresh database) and stops them before
it returns, so memory numbers start from a clean process and one scenario's data
never slows another. `live` and the rate sweep are in bench/live.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import accounts, servers
from bench.idle import IdleSockets
from bench.loadgen import Peer
from bench.probes import history_pages, offline_drain
from bench.progress import Progress
from bench.seed import STATUS_READ, STATUS_SENT, SeedPlan, seed
from bench.servers import Server


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
    # `cluster`: also run two nodes with each pair on one node (besides one node, and
    # two nodes with every message crossing).
    cluster_split: bool = True
    offline_sizes: tuple[int, ...] = (10_000, 100_000)
    history_messages: int = 1_000_000
    history_pages: int = 2_000
    connections: int = 10_000
    connection_users: int = 50
    connection_procs: int = 4
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
    """`connections` idle sockets: server RSS per connection, relay and messenger."""
    rows = []
    with progress.step(f"connections: {s.connections:,} on relay"):
        with servers.running(servers.start_relay(s.workdir)) as relay:
            auths = [p.auth for p in accounts.relay_peers(s.connections, prefix="idle")]
            rows.append({"target": "relay", "db": "-", **_hold(s, relay, auths)})
    for db in s.dbs:
        with (
            servers.database(db, s.workdir) as url,
            progress.step(f"connections: {s.connections:,} on messenger/{db}"),
        ):
            with servers.running(servers.start_messenger(s.workdir, url)) as server:
                users = accounts.messenger_peers(server.url, s.connection_users, prefix="idle")
                auths = [users[i % len(users)].auth for i in range(s.connections)]
                rows.append({"target": "messenger", "db": db, **_hold(s, server, auths)})
    return rows


def _hold(s: Settings, server: Server, auths: list[dict[str, Any]]) -> dict[str, Any]:
    rss0, cpu0 = server.rss(), server.cpu_seconds()
    with IdleSockets(server.url, auths, s.connection_procs) as idle:
        cpu1 = server.cpu_seconds()
        time.sleep(3)  # let the server settle (buffers, tasks) before weighing it
        rss1 = server.rss()
    per = (rss1 - rss0) / idle.connected if idle.connected else 0.0
    cpu_per = 1000 * (cpu1 - cpu0) / idle.connected if idle.connected else 0.0
    return {
        "connect_cpu_ms": round(cpu_per, 2),
        "sockets": idle.connected,
        "wanted": len(auths),
        "connect_s": round(idle.seconds, 1),
        "rss_before_mb": round(rss0 / 2**20, 1),
        "rss_after_mb": round(rss1 / 2**20, 1),
        "kb_per_conn": round(per / 1024, 1),
    }
