"""Turn results into what people read: markdown tables, a JSON file and a PNG plot."""

from __future__ import annotations

import itertools
import json
import math
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import floor


def machine() -> dict[str, Any]:
    """What the numbers were measured on: they mean little without it."""
    cpu = ""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        cpu = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in lscpu.splitlines()
                if ln.startswith("Model name")
            ),
            "",
        )
    except (OSError, subprocess.SubprocessError):
        pass
    versions = {}
    for name in (
        "python-socketio",
        "python-engineio",
        "aiohttp",
        "SQLAlchemy",
        "aiosqlite",
        "asyncpg",
    ):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "packages": versions,
    }


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The few numbers a reader (or CI) looks for first, from the first database's run."""
    live = [r for r in results.get("live", []) if r["target"] == "messenger"]
    out: dict[str, Any] = {}
    if live:
        first = live[0]
        relay = next(
            r
            for r in results["live"]
            if r["target"] == "relay" and r["baseline_for"] == first["db"]
        )
        out = {
            "live_ratio_vs_relay": first["ratio_vs_relay"],
            "live_msgs_per_s": first["msgs_per_s"],
            "live_p50_ms": first["push"]["p50_ms"],
            "live_p99_ms": first["push"]["p99_ms"],
            "live_receipt_p99_ms": first["receipt"]["p99_ms"],
            "live_cpu_ms_per_msg": first.get("cpu_ms_per_msg"),
            "live_cpu_efficiency_vs_relay": first.get("cpu_efficiency_vs_relay"),
            "live_db": first["db"],
            "relay_msgs_per_s": relay["msgs_per_s"],
            "relay_p99_ms": relay["push"]["p99_ms"],
            "relay_cpu_ms_per_msg": relay.get("cpu_ms_per_msg"),
        }
    for row in results.get("cluster", []):
        key = "_".join(row["layout"].replace(",", "").split())
        out[f"cluster_msgs_per_s__{key}"] = row["msgs_per_s"]
        out[f"cluster_ratio_vs_one_node__{key}"] = row["ratio_vs_one_node"]
    for row in results.get("attachments", []):
        if row["target"] == "messenger":
            for way in ("upload", "download"):
                out[f"attachments_{way}_mib_s"] = row[way]["mib_s"]
                out[f"attachments_{way}_ratio_vs_files"] = row[way]["ratio"]
            out["attachments_rss_upload_mb"] = row["rss_upload_mb"]
            out["attachments_rss_download_mb"] = row["rss_download_mb"]
    for row in results.get("disk", []):
        out["fsync_p99_ms"], out["fsync_max_ms"] = row["p99_ms"], row["max_ms"]
    for row in results.get("sweep", []):
        if row.get("fraction_of_own_peak") == 0.5:
            key = "_".join(row["series"].replace("(", "").replace(")", "").split())
            out[f"p99_at_half_peak_ms__{key}"] = row["push"]["p99_ms"]
    worst = floor.max_vs_floor(results.get("sweep", []))
    if worst:
        out["latency_vs_floor_max"] = worst
    if "pinned" in results:
        out["pinned"] = results["pinned"]
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, bool):  # before int: a bool is an int
        return "yes" if value else "no"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:,.1f}" if value >= 100 else f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def _get(row: dict[str, Any], path: str) -> Any:
    """`a.b` reads row["a"]["b"]; a missing field shows as "-"."""
    value: Any = row
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _table(columns: list[tuple[str, str]], rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(_get(r, p)) for _, p in columns) + " |" for r in rows]
    return "\n".join(lines)


CPU = [
    ("server CPU %", "server_cpu_pct"),
    ("PG CPU %", "db_cpu_pct"),
    ("loadgen CPU %", "loadgen_cpu_pct"),
    ("other CPU %", "other_cpu_pct"),
]
# messenger's writer over the run (bench.writer_stats); the relay has none.
WRITER = [
    ("items/batch", "writer.items_per_batch"),
    ("commit ms", "writer.commit_ms"),
    ("queue wait ms", "writer.queue_wait_ms"),
]
TABLES: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "live",
        "live (closed loop, both sides online; median of the rounds)",
        [
            ("target", "target"),
            ("db", "db"),
            ("msgs/s", "msgs_per_s"),
            ("ratio", "ratio_vs_relay"),
            ("server CPU ms/msg", "cpu_ms_per_msg"),
            ("push p50 ms", "push.p50_ms"),
            ("push p99 ms", "push.p99_ms"),
            ("push max ms", "push.max_ms"),
            ("receipt p50 ms", "receipt.p50_ms"),
            ("receipt p99 ms", "receipt.p99_ms"),
            *CPU,
            *WRITER,
            ("errors", "errors"),
            ("lost", "lost"),
        ],
    ),
    (
        "sweep",
        "offered-rate sweep (open loop)",
        [
            ("series", "series"),
            ("offered/s", "offered_per_s"),
            ("achieved/s", "msgs_per_s"),
            ("server CPU ms/msg", "cpu_ms_per_msg"),
            ("push p50 ms", "push.p50_ms"),
            ("push p99 ms", "push.p99_ms"),
            ("receipt p99 ms", "receipt.p99_ms"),
            *CPU,
            *WRITER,
        ],
    ),
    (
        "disk",
        "the disk under the bench workdir (the floor's fsync for every database): "
        "8 KiB append + fsync, every 2 ms",
        [
            ("fsyncs", "fsyncs"),
            ("p50 ms", "p50_ms"),
            ("p99 ms", "p99_ms"),
            ("p99.9 ms", "p99_9_ms"),
            ("max ms", "max_ms"),
            ("over 50 ms", "over_50_ms"),
        ],
    ),
    (
        "offline",
        "offline backlog (one device connects; timed until `synced`)",
        [
            ("db", "db"),
            ("queued", "queued"),
            ("received", "received"),
            ("seconds", "seconds"),
            ("msgs/s", "msgs_per_s"),
            ("RSS start MB", "rss_start_mb"),
            ("RSS peak MB", "rss_peak_mb"),
            ("client CPU %", "client_cpu_pct"),
        ],
    ),
    (
        "history",
        "history pages of 50",
        [
            ("db", "db"),
            ("messages", "messages"),
            ("pages", "pages"),
            ("p50 ms", "p50_ms"),
            ("p99 ms", "p99_ms"),
            ("max ms", "max_ms"),
            ("short/failed", "short_or_failed"),
        ],
    ),
    (
        "connections",
        "idle connections (held of wanted: the rest refused at the server's descriptor "
        "limit or cap; idle CPU % of one core; storm: resets, the server's time and CPU "
        "per socket until quiet again, then reconnects, timed to `synced` on messenger, "
        "to CONNECT's answer on the relay)",
        [
            ("target", "target"),
            ("db", "db"),
            ("wanted", "wanted"),
            ("sockets", "sockets"),
            ("refused", "refused"),
            ("failed", "connect_failed"),
            ("server nofile", "server_nofile"),
            ("node cap", "node_cap"),
            ("in flight", "connect_in_flight"),
            ("backlog overflows", "listen_overflows"),
            ("accept s", "accept_s"),
            ("connects/s", "connects_per_s"),
            ("connect p99 ms", "accept_p99_ms"),
            ("server CPU ms/connect", "connect_cpu_ms"),
            ("RSS before MB", "rss_before_mb"),
            ("RSS after MB", "rss_after_mb"),
            ("KB/conn", "kb_per_conn"),
            ("idle s", "idle_s"),
            ("idle CPU %", "idle_cpu_pct"),
            ("idle CPU % per 1k", "idle_cpu_pct_per_1k"),
            ("pings", "idle_pings"),
            ("storm", "storm"),
            ("reset s", "storm_release_s"),
            ("reset CPU ms", "storm_reset_cpu_ms"),
            ("storm p50 ms", "storm_p50_ms"),
            ("storm p99 ms", "storm_p99_ms"),
            ("storm max ms", "storm_max_ms"),
            ("storm s", "storm_s"),
            ("storm failed", "storm_failed"),
            ("storm overflows", "storm_listen_overflows"),
            ("p99 vs relay", "storm_vs_relay_p99"),
        ],
    ),
    (
        "cluster",
        "cluster (closed loop on PostgreSQL + Redis; median of the rounds)",
        [
            ("layout", "layout"),
            ("msgs/s", "msgs_per_s"),
            ("ratio vs 1 node", "ratio_vs_one_node"),
            ("server CPU ms/msg", "cpu_ms_per_msg"),
            ("push p50 ms", "push.p50_ms"),
            ("push p99 ms", "push.p99_ms"),
            ("receipt p50 ms", "receipt.p50_ms"),
            ("receipt p99 ms", "receipt.p99_ms"),
            ("node A CPU %", "server_cpu_pct"),
            ("node B CPU %", "node_b_cpu_pct"),
            ("PG CPU %", "db_cpu_pct"),
            ("Redis CPU %", "redis_cpu_pct"),
            ("loadgen CPU %", "loadgen_cpu_pct"),
            ("other CPU %", "other_cpu_pct"),
            ("errors", "errors"),
            ("lost", "lost"),
        ],
    ),
    (
        "attachments",
        "attachments (one file, alternating transfers; median; RSS: peak over before, MB)",
        [
            ("target", "target"),
            ("MiB", "mib"),
            ("transfers", "transfers"),
            ("upload MiB/s", "upload.mib_s"),
            ("ratio", "upload.ratio"),
            ("upload CPU ms/MiB", "upload.cpu_ms_per_mib"),
            ("download MiB/s", "download.mib_s"),
            ("ratio", "download.ratio"),
            ("download CPU ms/MiB", "download.cpu_ms_per_mib"),
            ("RSS before", "rss_before_mb"),
            ("RSS +upload", "rss_upload_mb"),
            ("RSS +download", "rss_download_mb"),
        ],
    ),
]


# Messenger's sweep rows against the floor at their rate (bench.floor).
FLOOR = [
    ("db", "db"),
    ("of peak", "fraction_of_own_peak"),
    ("offered/s", "offered_per_s"),
    ("push p50 ms", "push.p50_ms"),
    ("floor p50 ms", "floor_p50_ms"),
    ("p50 / floor", "vs_floor_p50"),
    ("push p99 ms", "push.p99_ms"),
    ("floor p99 ms", "floor_p99_ms"),
    ("p99 / floor", "vs_floor_p99"),
    ("vs floor", "vs_floor"),
    ("pinned", "pinned"),
]


def _floor_part(results: dict[str, Any]) -> list[str]:
    rows = [r for r in results.get("sweep", []) if "vs_floor" in r]
    if not rows:
        return []
    title = (
        "### sweep latency vs the floor (relay at the same rate + one fsync: "
        "p50 + 1 ms, p99 x 2; goal <= 1)"
    )
    return [f"{title}\n\n" + _table(FLOOR, rows)]


def _headline_rows(head: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per number; a per-database dict (latency_vs_floor_max) gives one per db."""
    rows: list[dict[str, Any]] = []
    for key, value in head.items():
        if key == "latency_vs_floor_max":
            for db, worst in value.items():
                shown = (
                    f"{_fmt(worst['vs_floor'])} at {_fmt(worst['offered_per_s'])}/s"
                    f" ({worst['fraction_of_own_peak']} of peak)"
                )
                rows.append({"metric": f"{key}.{db}", "value": shown})
        else:
            rows.append({"metric": key, "value": value})
    return rows


def markdown(results: dict[str, Any]) -> str:
    """All result tables, in the order the scenarios ran, then the headline numbers."""
    parts: list[str] = []
    for key, title, columns in TABLES:
        if results.get(key):
            parts.append(f"### {title}\n\n" + _table(columns, results[key]))
        if key == "sweep":
            parts += _floor_part(results)
    for name, error in results.get("failures", {}).items():
        parts.append(f"**{name} failed:** `{error}`")
    head = headline(results)
    if head:
        rows = _headline_rows(head)
        parts.append("### headline\n\n" + _table([("metric", "metric"), ("value", "value")], rows))
    return "\n\n".join(parts) + "\n"


def write_json(results: dict[str, Any], path: Path) -> None:
    payload = {**headline(results), **results}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def plot(results: dict[str, Any], path: Path) -> bool:
    """Latency (p50 dashed, p99 solid) versus offered rate, one colour per target."""
    rows = [r for r in results.get("sweep", []) if r.get("offered_per_s")]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5), dpi=110, layout="constrained")
    # messenger series first, in colour; relay series after them, in greys.
    series = sorted({r["series"] for r in rows}, key=lambda name: (name.startswith("relay"), name))
    messengers = itertools.cycle(("tab:blue", "tab:orange", "tab:green"))
    relays = itertools.cycle(("dimgray", "darkgray", "black"))
    for target in series:
        colour = next(relays if target.startswith("relay") else messengers)
        points = sorted(
            (r["offered_per_s"], r["push"]["p50_ms"], r["push"]["p99_ms"])
            for r in rows
            if r["series"] == target
        )
        xs = [p[0] for p in points]
        ax.plot(xs, [p[2] for p in points], "-o", color=colour, label=f"{target} p99")
        ax.plot(xs, [p[1] for p in points], "--", color=colour, label=f"{target} p50")
    ax.set_yscale("log")
    ax.set_xlabel("offered rate (messages/s)")
    ax.set_ylabel("send -> recipient event latency (ms)")
    ax.set_title("Latency vs offered rate (open loop, 127.0.0.1)")
    ax.grid(True, which="both", alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=8)
    fig.savefig(path)
    plt.close(fig)
    return True
