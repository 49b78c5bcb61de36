"""Idle sockets held by `python -m bench.holder` processes, driven from the parent.

One process holds at most `per_process` sockets (a process may have 20,000
descriptors here, and that limit cannot be raised), each from its own loopback
source address (127.0.0.2, .3, ...), so no address runs out of its ~28,000
ephemeral ports. The processes get their sockets' auths round-robin, so every user
has sockets in each, and run each command together: the parent sends it to all of
them, then waits for every answer.
"""

from __future__ import annotations

import json
import math
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import psutil

# Long enough for the slowest phase of the largest run; a holder that dies is
# noticed at once instead.
ANSWER_BUDGET = 3600.0


@dataclass
class Phase:
    """What a `connect` or a `reconnect` did, over all processes."""

    ok: int = 0
    refused: int = 0
    rejected: int = 0
    failed: int = 0
    timeouts: int = 0
    seconds: float = 0.0
    ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    ping_interval: float | None = None

    def add(self, answer: dict[str, Any]) -> None:
        self.ok += answer["ok"]
        self.refused += answer["refused"]
        self.rejected += answer["rejected"]
        self.failed += answer["failed"]
        self.timeouts += answer["timeout"]
        self.ms.extend(answer["ms"])
        for error, count in answer["errors"].items():
            self.errors[error] = self.errors.get(error, 0) + count
        self.ping_interval = self.ping_interval or answer["ping_interval"]

    @property
    def not_ok(self) -> int:
        return self.refused + self.rejected + self.failed + self.timeouts


@dataclass
class Counts:
    held: int
    pings: int
    dropped: int


class _Process:
    """One holder process and the thread that reads its answers."""

    def __init__(self, spec: dict[str, Any], log_path: Path) -> None:
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.holder"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=Path(__file__).resolve().parent.parent,
            )
        self.log_path = log_path
        self.answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.send(spec)

    def _read(self) -> None:
        stdout: IO[bytes] | None = self.proc.stdout
        assert stdout is not None
        for line in stdout:
            self.answers.put(json.loads(line))
        self.answers.put(None)

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def answer(self, budget: float) -> dict[str, Any]:
        try:
            answer = self.answers.get(timeout=budget)
        except queue.Empty:
            answer = None
        if answer is None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"holder {self.proc.pid} did not answer:\n{tail}")
        return answer

    def close(self) -> None:
        """Ask the process to reset its sockets and exit (`stop` waits for it)."""
        if self.proc.poll() is None:
            try:
                self.send({"do": "close"})
            except OSError:
                pass

    def stop(self) -> None:
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class Holders:
    """Context manager: processes ready to hold one socket per auth to `url`, with
    `concurrency` connection attempts in flight at most, split among them."""

    def __init__(
        self,
        url: str,
        auths: list[dict[str, Any]],
        *,
        waits_for_synced: bool,
        logdir: Path,
        per_process: int = 18_000,
        concurrency: int = 128,
        timeout: float = 30.0,
    ) -> None:
        parts = urlsplit(url)
        count = max(1, math.ceil(len(auths) / per_process))
        self.concurrency = max(1, math.ceil(concurrency / count))  # per process
        self.specs = [
            {
                "host": parts.hostname,
                "port": parts.port,
                "source": f"127.0.0.{2 + i}",
                "auths": auths[i::count],
                "waits_for_synced": waits_for_synced,
                "concurrency": self.concurrency,
                "timeout": timeout,
            }
            for i in range(count)
        ]
        self.logdir = logdir
        self.procs: list[_Process] = []

    def __enter__(self) -> Holders:
        try:
            for i, spec in enumerate(self.specs):
                self.procs.append(_Process(spec, self.logdir / f"holder-{i}.log"))
            self._all([{}] * len(self.procs), send=False)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.close()
        for proc in self.procs:
            proc.stop()

    def _all(self, requests: list[dict[str, Any]], send: bool = True) -> list[dict[str, Any]]:
        """Send each process its request (all first), then wait for every answer."""
        if send:
            for proc, request in zip(self.procs, requests, strict=True):
                proc.send(request)
        deadline = time.monotonic() + ANSWER_BUDGET
        return [proc.answer(max(1.0, deadline - time.monotonic())) for proc in self.procs]

    def _phase(self, do: str) -> Phase:
        phase = Phase()
        t0 = time.monotonic()
        for answer in self._all([{"do": do}] * len(self.procs)):
            phase.add(answer)
        phase.seconds = time.monotonic() - t0
        return phase

    def connect(self) -> Phase:
        """Open every socket, each tried once."""
        return self._phase("connect")

    def counts(self) -> Counts:
        answers = self._all([{"do": "count"}] * len(self.procs))
        return Counts(
            held=sum(a["held"] for a in answers),
            pings=sum(a["pings"] for a in answers),
            dropped=sum(a["dropped"] for a in answers),
        )

    def abort(self, count: int) -> int:
        """Reset `count` held sockets at once, spread over the processes in proportion
        to what each holds; returns how many were reset."""
        held = [a["held"] for a in self._all([{"do": "count"}] * len(self.procs))]
        total = sum(held)
        shares = [count * h // total if total else 0 for h in held]
        for i in sorted(range(len(held)), key=lambda i: -held[i]):
            if sum(shares) >= min(count, total):
                break
            shares[i] += min(held[i] - shares[i], min(count, total) - sum(shares))
        answers = self._all([{"do": "abort", "count": n} for n in shares])
        return sum(a["aborted"] for a in answers)

    def reconnect(self) -> Phase:
        """Open again the sockets `abort` reset, with their last cursors."""
        return self._phase("reconnect")

    def in_flight(self) -> int:
        """Connection attempts in flight at most, over all processes."""
        return self.concurrency * len(self.procs)

    def cpu_seconds(self) -> float:
        """User + system CPU the holder processes have used so far."""
        total = 0.0
        for proc in self.procs:
            try:
                times = psutil.Process(proc.proc.pid).cpu_times()
            except psutil.Error:
                continue
            total += float(times.user + times.system)
        return total

    def rss(self) -> int:
        """Resident memory of the holder processes, in bytes: what the load costs."""
        total = 0
        for proc in self.procs:
            try:
                total += int(psutil.Process(proc.proc.pid).memory_info().rss)
            except psutil.Error:
                continue
        return total
