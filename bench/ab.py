"""`python -m bench.ab`: two messenger servers, A and B, measured round by round.

The machine is shared and noisy: two servers of the same code, side by side at the
same rate, have given p99s several times apart. A change is judged here by alternating
A and B (A, B, then B, A, ...) at one offered rate, or in the closed loop, and
reading the rounds side by side. A and B may differ in code (`--a-root`, another
checkout, e.g. a `git worktree` of the commit before) or in environment
(`--b-env MESSENGER_SQLITE_SYNCHRONOUS=NORMAL`).

    python -m bench.ab --rate 1500 --rounds 4 --a-root ../before
    python -m bench.ab --closed --db postgresql --b-env MESSENGER_WRITE_BATCH_MAX=64
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import accounts, servers, writer_stats
from bench.driver import drive
from bench.loadgen import LoadSpec, Peer
from bench.scenarios import Settings
from bench.servers import Server

SIDES = ("A", "B")
_DEFAULTS = Settings(workdir=Path(), dbs=())


def _env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--*-env takes NAME=VALUE, not {pair!r}")
        env[name] = value
    return env


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n")[0])
    load = p.add_mutually_exclusive_group(required=True)
    load.add_argument("--rate", type=float, help="offered msgs/s, open loop")
    load.add_argument("--closed", action="store_true", help="closed loop (the peak)")
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--rounds", type=int, default=4, help="runs per side, alternating")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--pairs", type=int, default=32, help="sender/recipient pairs")
    p.add_argument("--workers", type=int, default=2, help="load-generator processes")
    for side in SIDES:
        low = side.lower()
        p.add_argument(f"--{low}-root", type=Path, help=f"checkout whose code {side} runs")
        p.add_argument(
            f"--{low}-env",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help=f"environment for {side}'s server (repeatable)",
        )
    p.add_argument(
        "--pin",
        action="store_true",
        help="both servers on CPU 0, the load generator on CPU 1 (PostgreSQL unpinned)",
    )
    p.add_argument("--json", type=Path, help="write every round's row here")
    return p.parse_args(argv)


def _spec(args: argparse.Namespace, server: Server) -> LoadSpec:
    """The load of one run: the windows are those of `live` (closed loop) and of its
    sweep (offered rate)."""
    return LoadSpec(
        url=server.url,
        dialect="messenger",
        duration=args.duration,
        warmup=args.warmup,
        window=_DEFAULTS.window if args.closed else _DEFAULTS.sweep_window,
        rate=None if args.closed else args.rate / args.workers,
    )


def _round(
    args: argparse.Namespace, server: Server, peers: list[tuple[Peer, Peer]]
) -> dict[str, Any]:
    before = writer_stats.scrape(server.url)
    # As in `live`: on PostgreSQL the database's CPU counts as the server's too.
    database_cpu = servers.postgres_cpu_seconds if args.db == "postgresql" else None
    row = drive(server, _spec(args, server), peers, args.workers, database_cpu, pin=args.pin)
    return {**row, "writer": writer_stats.since(before, server.url)}


def _line(side: str, index: int, row: dict[str, Any]) -> str:
    push, receipt, writer = row["push"], row["receipt"], row["writer"]
    return (
        f"{side} {index}: {row['msgs_per_s']:,.0f} msgs/s, push p50 {push['p50_ms']:.1f} "
        f"p99 {push['p99_ms']:.1f} ms, receipt p99 {receipt['p99_ms']:.1f}, server "
        f"{row['cpu_ms_per_msg']:.3f} ms/msg ({row['server_cpu_pct']} %), "
        f"{writer['items_per_batch']} items/batch, commit {writer['commit_ms']} ms"
    )


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _summary(rows: dict[str, list[dict[str, Any]]]) -> str:
    figures: dict[str, Callable[[dict[str, Any]], float]] = {
        "msgs/s": lambda r: r["msgs_per_s"],
        "push p50 ms": lambda r: r["push"]["p50_ms"],
        "push p99 ms": lambda r: r["push"]["p99_ms"],
        "server (+ PostgreSQL) CPU ms/msg": lambda r: r["cpu_ms_per_msg"],
    }
    lines = ["| figure | A (sorted) | B (sorted) | median B / A |", "|---|---|---|---|"]
    for name, read in figures.items():
        a, b = (sorted(read(r) for r in rows[side]) for side in SIDES)
        ratio = statistics.median(b) / statistics.median(a) if statistics.median(a) else 0.0
        shown = [" / ".join(_number(v) for v in values) for values in (a, b)]
        lines.append(f"| {name} | {shown[0]} | {shown[1]} | {ratio:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-ab-")).resolve()
    rows: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    with ExitStack() as stack:
        started: dict[str, tuple[Server, list[tuple[Peer, Peer]]]] = {}
        for side in SIDES:
            low = side.lower()
            url = stack.enter_context(servers.database(args.db, workdir))
            server = stack.enter_context(
                servers.running(
                    servers.start_messenger(
                        workdir,
                        url,
                        name=f"messenger-{low}",
                        env=_env(getattr(args, f"{low}_env")),
                        root=getattr(args, f"{low}_root"),
                        pin=args.pin,
                    )
                )
            )
            peers = accounts.pairs_of(accounts.messenger_peers(server.url, 2 * args.pairs))
            started[side] = (server, peers)
        for index in range(args.rounds):
            for side in SIDES if index % 2 == 0 else SIDES[::-1]:
                row = _round(args, *started[side])
                rows[side].append(row)
                print(_line(side, index, row), flush=True)
    print(_summary(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
