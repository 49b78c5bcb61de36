"""A reconnect storm: many held sockets lost at once, then all back at once.

As after a network blip: the sockets are reset (no Socket.IO DISCONNECT); once the
server has let go of them all of them reconnect together, messenger's with their
last `synced` cursor. Each is timed from the start of its TCP connect to `synced`
(messenger) or to the CONNECT answer (the relay). The holders bound the attempts in
flight: 10,000 SYNs at once would only overflow the listen backlog and measure the
kernel's SYN retry timer.

"Let go" is: its descriptor count is down by the resets and its CPU has dropped
back near idle. The descriptors close first; the Socket.IO disconnect handlers run
after. python-socketio's cost O(sockets held) each (`basic_disconnect` copies the
namespace's whole room table): the relay, which runs it as shipped, stays busy for
minutes after 10,000 resets at 20,000 held (messenger leaves only a session's own
rooms: transport/overrides/rooms.py). Timing reconnects through that would measure
the disconnects, so `storm_release_s` reports it apart.
"""

from __future__ import annotations

import time
from typing import Any

import psutil

from bench.idle import Holders
from bench.servers import Server
from bench.stats import summarize

# How long the server may take over the reset sockets before the storm starts
# anyway (the row then shows no release time).
RELEASE_BUDGET = 600.0
# Quiet is within a fifth of a core of the server's idle CPU (heartbeats), over a
# sample of this many seconds; disconnect handlers keep a core busy.
QUIET_MARGIN = 0.2
QUIET_SAMPLE = 1.0


def listen_overflows() -> int:
    """The kernel's count of connections dropped at a full accept queue (all listeners
    in this network namespace): SYN retries, a second or more each, follow them."""
    try:
        with open("/proc/net/netstat") as netstat:
            lines = netstat.read().splitlines()
    except OSError:
        return 0
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            fields = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(fields.get("ListenOverflows", 0))
    return 0


def _open_fds(server: Server) -> int | None:
    try:
        return int(server.ps.num_fds())
    except psutil.Error:
        return None


def _released(server: Server, target: int, idle_share: float) -> float | None:
    """Seconds until the server holds at most `target` descriptors and uses no more
    CPU than at idle (`idle_share` of a core) and a margin; None if that does not
    happen within the budget."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < RELEASE_BUDGET:
        fds = _open_fds(server)
        if fds is None:
            return None
        if fds <= target:
            break
        time.sleep(0.1)
    while time.monotonic() - t0 < RELEASE_BUDGET:
        cpu = server.cpu_seconds()
        time.sleep(QUIET_SAMPLE)
        if server.cpu_seconds() - cpu < (idle_share + QUIET_MARGIN) * QUIET_SAMPLE:
            return time.monotonic() - t0 - QUIET_SAMPLE
    return None


def reconnect_storm(
    server: Server, holders: Holders, count: int, idle_share: float
) -> dict[str, Any]:
    """Reset `count` held sockets, wait for the server to be done with them (back to
    its idle CPU, `idle_share` of a core), reconnect them all; the row's `storm_*`
    fields."""
    before, cpu_reset = _open_fds(server), server.cpu_seconds()
    aborted = holders.abort(count)
    # 1% slack: the server may open a file or two meanwhile (logs, the database).
    target = before - aborted + aborted // 100 if before else 0
    release = _released(server, target, idle_share) if before else None
    cpu_reset = server.cpu_seconds() - cpu_reset
    cpu0, overflows = server.cpu_seconds(), listen_overflows()
    phase = holders.reconnect()
    cpu = server.cpu_seconds() - cpu0
    overflows = listen_overflows() - overflows
    latency = summarize(phase.ms)
    return {
        "storm": aborted,
        "storm_ok": phase.ok,
        "storm_failed": phase.not_ok,
        "storm_in_flight": holders.in_flight(),
        "storm_listen_overflows": overflows,
        "storm_release_s": None if release is None else round(release, 2),
        # Server CPU per reset socket, until it was quiet again (the disconnects).
        "storm_reset_cpu_ms": round(1000 * cpu_reset / aborted, 2) if aborted else None,
        "storm_s": round(phase.seconds, 2),
        "storm_p50_ms": latency["p50_ms"],
        "storm_p99_ms": latency["p99_ms"],
        "storm_max_ms": latency["max_ms"],
        "storm_cpu_ms": round(1000 * cpu / phase.ok, 2) if phase.ok else None,
        "storm_errors": phase.errors,
    }
