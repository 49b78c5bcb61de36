"""`python -m bench`: run the scenarios, print a markdown table, write JSON and a plot."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from bench import attachments as attachments_scenario
from bench import cluster as cluster_scenario
from bench import live as live_scenario
from bench import report, scenarios, servers
from bench import search as search_scenario
from bench.progress import Progress

# `cluster` needs PostgreSQL: without it in --db it is skipped (about 2 minutes with it).
# `attachments` runs on SQLite whatever --db says (about 15 seconds).
# `search` seeds a million messages per database (about 5 minutes a database).
SCENARIOS = (
    "live",
    "sweep",
    "offline",
    "history",
    "connections",
    "cluster",
    "attachments",
    "search",
)
DBS = ("sqlite", "postgresql")


def _csv(allowed: tuple[str, ...]) -> Any:
    def parse(raw: str) -> tuple[str, ...]:
        items = tuple(part.strip() for part in raw.split(",") if part.strip())
        unknown = [i for i in items if i not in allowed]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}")
        return items

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--quick",
        action="store_true",
        help="live on SQLite vs the relay only, small counts (< 1 minute)",
    )
    p.add_argument("--db", type=_csv(DBS), default=None, help="sqlite,postgresql")
    p.add_argument(
        "--scenarios",
        type=_csv(SCENARIOS),
        default=None,
        help=f"comma list of {', '.join(SCENARIOS)} (default: all)",
    )
    p.add_argument("--json", type=Path, help="write all results to this JSON file")
    p.add_argument("--plot", type=Path, help="write the latency-vs-rate PNG here")
    p.add_argument("--markdown", type=Path, help="also write the tables to this file")
    p.add_argument(
        "--workdir",
        type=Path,
        help="keep server logs and SQLite files here (default: a temporary dir)",
    )
    p.add_argument("--workers", type=int, help="load-generator processes")
    p.add_argument("--pairs", type=int, help="sender/recipient pairs in all")
    p.add_argument("--window", type=int, help="unanswered sends allowed per sender")
    p.add_argument("--duration", type=float, help="seconds per live run (warm-up included)")
    p.add_argument("--rounds", type=int, help="alternating relay/messenger live runs per db")
    p.add_argument(
        "--connections",
        type=int,
        help="idle sockets asked for in `connections` (default 100,000; --quick 2,000)",
    )
    p.add_argument(
        "--idle-seconds",
        type=float,
        help="`connections`: window for the server's idle CPU (default 60; --quick 10)",
    )
    p.add_argument(
        "--storm",
        type=int,
        help="`connections`: held sockets reset and reconnected at once (default 10,000)",
    )
    p.add_argument(
        "--connect-concurrency",
        type=int,
        help="`connections`: connection attempts in flight, over all holder processes "
        "(default 128, the servers' accept backlog)",
    )
    p.add_argument("--history-messages", type=int, help="conversation size in `history`")
    p.add_argument(
        "--attachment-transfers",
        type=int,
        help="25 MiB uploads and downloads per server in `attachments`",
    )
    p.add_argument(
        "--cluster-split",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="`cluster` also runs two nodes with each pair on one node (default: yes)",
    )
    p.add_argument(
        "--search-messages",
        type=int,
        help="messages stored for `search` (default 1,000,000; --quick 20,000)",
    )
    p.add_argument(
        "--search-queries", type=int, help="measured queries per kind and database in `search`"
    )
    p.add_argument(
        "--pin",
        action="store_true",
        help="live and sweep: the server under test (messenger or the relay, all its "
        "threads) on CPU 0, the load-generator processes on CPU 1. PostgreSQL is not "
        "ours to pin: it runs wherever the kernel puts it",
    )
    args = p.parse_args(argv)
    if args.pin and not {servers.SERVER_CPU, servers.LOADGEN_CPU} <= os.sched_getaffinity(0):
        p.error("--pin needs CPUs 0 and 1")
    return args


def settings_for(args: argparse.Namespace, workdir: Path) -> scenarios.Settings:
    base = scenarios.Settings(workdir=workdir, dbs=args.db or DBS)
    if args.quick:
        base = scenarios.Settings(
            workdir=workdir,
            dbs=args.db or ("sqlite",),
            pairs=16,
            rounds=1,
            duration=5.0,
            warmup=1.0,
            offline_sizes=(2_000,),
            history_messages=20_000,
            history_pages=200,
            connections=2_000,
            connection_users=20,
            idle_seconds=10.0,
            storm=1_000,
        )
    overrides = {
        "workers": args.workers,
        "pairs": args.pairs,
        "window": args.window,
        "duration": args.duration,
        "rounds": args.rounds,
        "connections": args.connections,
        "idle_seconds": args.idle_seconds,
        "storm": args.storm,
        "connect_concurrency": args.connect_concurrency,
        "history_messages": args.history_messages,
        "attachment_transfers": args.attachment_transfers,
        "cluster_split": args.cluster_split,
        "pin": args.pin,
    }
    fields = {k: v for k, v in overrides.items() if v is not None}
    return scenarios.Settings(**{**base.__dict__, **fields})


def _steps(s: scenarios.Settings, chosen: tuple[str, ...]) -> int:
    n = len(s.dbs)
    counts = {
        "live": 2 * n * s.rounds,
        # + one fsync probe per bench run, + synchronous=NORMAL on SQLite
        "sweep": n * (2 * len(s.sweep_fractions) + 1) + 1 + (1 if "sqlite" in s.dbs else 0),
        "offline": 2 * n * len(s.offline_sizes),
        "history": 2 * n,
        "connections": 1 + n,
        "cluster": cluster_scenario.steps(s) if "postgresql" in s.dbs else 0,
        "attachments": attachments_scenario.steps(s),
        "search": search_scenario.steps(s),
    }
    return sum(counts[c] for c in chosen)


def run(
    s: scenarios.Settings,
    chosen: tuple[str, ...],
    search: search_scenario.SearchSettings | None = None,
) -> dict[str, Any]:
    if "sweep" in chosen and "live" not in chosen:
        chosen = ("live", *chosen)  # the sweep's rates are fractions of the live peak
    progress = Progress(_steps(s, chosen))
    results: dict[str, Any] = {
        "machine": report.machine(),
        "settings": {k: str(v) for k, v in s.__dict__.items()},
        "pinned": s.pin,
    }
    t0 = time.monotonic()

    def live() -> Any:
        return live_scenario.live(s, progress, "sweep" in chosen)

    jobs: dict[str, Callable[[], Any]] = {
        "live": live,
        "offline": lambda: scenarios.offline(s, progress),
        "history": lambda: scenarios.history(s, progress),
        "connections": lambda: scenarios.connections(s, progress),
        "cluster": lambda: cluster_scenario.cluster(s, progress),
        "attachments": lambda: attachments_scenario.attachments(s, progress),
        "search": lambda: search_scenario.search(
            s, search or search_scenario.SearchSettings(), progress
        ),
    }
    for name, job in jobs.items():
        if name not in chosen:
            continue
        try:
            value = job()
        except Exception as exc:  # one broken scenario must not hide the rest
            results.setdefault("failures", {})[name] = f"{type(exc).__name__}: {exc}"
            print(f"\n{name} failed: {exc}", file=sys.stderr)
            continue
        if name == "live":
            results["live"], results["sweep"], results["disk"] = value
        else:
            results[name] = value
    results["seconds"] = round(time.monotonic() - t0, 1)
    return results


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = ("live",) if args.quick and not args.scenarios else (args.scenarios or SCENARIOS)
    signal.signal(signal.SIGTERM, _on_sigterm)
    with tempfile.TemporaryDirectory(prefix="messenger-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            search = search_scenario.settings_for(
                args.search_messages, args.search_queries, args.quick
            )
            results = run(settings_for(args, workdir.resolve()), chosen, search)
        except KeyboardInterrupt:
            print("\ninterrupted: servers stopped", file=sys.stderr)
            return 130
        finally:
            servers.kill_all()
    text = report.markdown(results) + search_scenario.markdown(results)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        report.write_json(results, args.json)
    if args.plot and not report.plot(results, args.plot):
        print("no sweep results: no plot written (run the `sweep` scenario)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
