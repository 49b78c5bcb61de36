"""`cluster`: the live closed loop against one node, and against two nodes that share
PostgreSQL and Redis.

Layouts, all with the same load generator, pairs and window as `live`:

- `one node`: every client on one node (PostgreSQL, Redis configured);
- `two nodes, cross`: every sender on node A, every recipient on node B, so every
  message and every receipt reaches its client through a Redis wake-up;
- `two nodes, split`: each pair on one node, half the pairs on each: two nodes
  sharing the load, with wake-ups published but never needed.

All three nodes run for the whole scenario on one database, so accounts are made once
and every layout sees tables of the same size. The single node has its own Redis
prefix, hence its own pub/sub channel: its wake-ups never reach the pair, nor the
pair's it. An idle node costs next to nothing (no connections to resync). As in
`live`, the layouts alternate within each round, each round's ratio compares runs
seconds apart, and the median round is reported.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from bench import accounts, servers
from bench.driver import drive
from bench.live import median_row, ratio
from bench.loadgen import LoadSpec, Peer
from bench.progress import Progress
from bench.scenarios import Settings
from bench.servers import Server

Rows = list[dict[str, Any]]
ONE, CROSS, SPLIT = "one node", "two nodes, cross", "two nodes, split"


@dataclass(frozen=True)
class Layout:
    """Which node each client uses, and whose CPU counts as the server side's."""

    name: str
    nodes: int
    main: Server  # its CPU is `server_cpu_pct` (node A, or the single node)
    meters: dict[str, Callable[[], float]]
    peers: list[tuple[Peer, Peer]]


@dataclass(frozen=True)
class Nodes:
    """The running processes: the single node, the pair, their Redis."""

    solo: Server
    a: Server
    b: Server
    redis: Server


def steps(s: Settings) -> int:
    """Progress steps: the setup, then one per layout per round."""
    return 1 + s.rounds * len(layout_names(s))


def layout_names(s: Settings) -> tuple[str, ...]:
    return (ONE, CROSS, SPLIT) if s.cluster_split else (ONE, CROSS)


def cluster(s: Settings, progress: Progress) -> Rows:
    """Alternating rounds over the layouts; one row per layout (its median round)."""
    if "postgresql" not in s.dbs:
        print("cluster skipped: it needs --db postgresql", file=sys.stderr)
        return []
    with ExitStack() as stack:
        with progress.step("cluster: start 3 nodes and Redis, make accounts"):
            nodes = stack.enter_context(_nodes(s))
            # Tokens are rows in the shared database: good on every node.
            peers = accounts.pairs_of(accounts.messenger_peers(nodes.a.url, 2 * s.pairs))
        layouts = _layouts(s, nodes, peers)
        runs = _rounds(s, progress, layouts)
    return _rows(layouts, runs)


@contextmanager
def _nodes(s: Settings) -> Iterator[Nodes]:
    """One fresh database, one private redis-server, three nodes; all stopped at exit.

    Node A migrates the database; the others start after it with `--no-migrate`, as
    docs/deployment.md says nodes should.
    """
    with (
        servers.database("postgresql", s.workdir) as db_url,
        servers.running(servers.start_redis(s.workdir)) as redis,
    ):

        def node(name: str, prefix: str, migrate: bool) -> Server:
            env = {"MESSENGER_REDIS_PREFIX": prefix}
            return servers.start_messenger(
                s.workdir, db_url, migrate, redis_url=redis.url, name=name, env=env
            )

        with (
            servers.running(node("node-a", "pair", migrate=True)) as a,
            servers.running(node("node-b", "pair", migrate=False)) as b,
            servers.running(node("solo", "solo", migrate=False)) as solo,
        ):
            yield Nodes(solo, a, b, redis)


def _on(peer: Peer, node: Server) -> Peer:
    return dataclasses.replace(peer, url=node.url)


def _split(
    peers: list[tuple[Peer, Peer]], nodes: tuple[Server, Server], workers: int
) -> list[tuple[Peer, Peer]]:
    """Each pair on one node, half the pairs on each. The workers are dealt pairs
    round-robin, so pair i goes to node (i // workers) % 2: every worker uses both."""
    out = []
    for i, (sender, recipient) in enumerate(peers):
        node = nodes[(i // workers) % 2]
        out.append((_on(sender, node), _on(recipient, node)))
    return out


def _layouts(s: Settings, nodes: Nodes, peers: list[tuple[Peer, Peer]]) -> list[Layout]:
    a, b, redis = nodes.a, nodes.b, nodes.redis
    pair_meters = {"node_b": b.cpu_seconds, "redis": redis.cpu_seconds}
    out = {
        ONE: Layout(
            ONE,
            1,
            nodes.solo,
            {"redis": redis.cpu_seconds},
            [(_on(x, nodes.solo), _on(y, nodes.solo)) for x, y in peers],
        ),
        CROSS: Layout(CROSS, 2, a, pair_meters, [(_on(x, a), _on(y, b)) for x, y in peers]),
        SPLIT: Layout(SPLIT, 2, a, pair_meters, _split(peers, (a, b), s.workers)),
    }
    return [out[name] for name in layout_names(s)]


def _run(s: Settings, layout: Layout) -> dict[str, Any]:
    spec = LoadSpec(
        url=layout.main.url,
        dialect="messenger",
        duration=s.duration,
        warmup=s.warmup,
        window=s.window,
    )
    return drive(
        layout.main,
        spec,
        layout.peers,
        s.workers,
        servers.postgres_cpu_seconds,
        layout.meters,
    )


def _rounds(s: Settings, progress: Progress, layouts: list[Layout]) -> dict[str, Rows]:
    runs: dict[str, Rows] = {layout.name: [] for layout in layouts}
    for i in range(s.rounds):
        for layout in layouts:
            with progress.step(f"cluster round {i + 1}: {layout.name}"):
                runs[layout.name].append(_run(s, layout))
    return runs


def _rows(layouts: list[Layout], runs: dict[str, Rows]) -> Rows:
    """Per layout its median run, with the per-round ratios against one node."""
    base = runs[ONE]
    rows = []
    for layout in layouts:
        mine = runs[layout.name]
        ratios = [ratio(m["msgs_per_s"], o["msgs_per_s"]) for o, m in zip(base, mine, strict=True)]
        cpu = [
            ratio(o["cpu_ms_per_msg"], m["cpu_ms_per_msg"]) for o, m in zip(base, mine, strict=True)
        ]
        rows.append(
            {
                "layout": layout.name,
                "nodes": layout.nodes,
                "rounds_msgs_per_s": [m["msgs_per_s"] for m in mine],
                "rounds_ratio": ratios,
                "ratio_vs_one_node": round(statistics.median(ratios), 3),
                "cpu_efficiency_vs_one_node": round(statistics.median(cpu), 3),
                **median_row(mine),
            }
        )
    return rows
