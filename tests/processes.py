"""Real `python -m messenger serve` processes for the tests that need one outside the
test's own event loop: killed (SIGKILL), stopped (SIGTERM) and restarted on the same
port, each life logging to a file of its own.

Plain `subprocess` underneath, so that a module-scoped fixture can start one outside
any event loop (`start_sync`) and an async test without blocking its loop (`start`).
Everything listens on and connects to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.support import Http

HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """`python -m messenger serve` on a fixed port, started and killed at will.

    The server's environment is the test's without its MESSENGER_* variables (so the
    outer shell cannot change a test), the rate and registration limits off, the websocket
    loops MESSENGER_TEST_LEAN_WEBSOCKET names (as the `settings` fixture), then `env`. With
    `migrate=False` it runs with `--no-migrate` (for databases copied from a migrated
    template). Every life logs to its own file, so a test can read what each one said.
    """

    def __init__(
        self,
        database_url: str,
        logs: Path,
        *,
        env: dict[str, str] | None = None,
        migrate: bool = True,
        redis_url: str | None = None,
        name: str = "server",
        health_timeout: float = 30,
    ) -> None:
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.logs = logs
        self.name = name
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MESSENGER_")}
        self.env.update(
            MESSENGER_RATE_LIMIT="0",
            MESSENGER_REGISTER_BURST="0",
            MESSENGER_MAX_PENDING_REQUESTS="1000",
            MESSENGER_LEAN_WEBSOCKET=os.environ.get("MESSENGER_TEST_LEAN_WEBSOCKET", "1"),
            MESSENGER_BLOB_DIR=str(logs / f"{name}-blobs"),
            **(env or {}),
        )
        self.migrate = migrate
        self.redis_url = redis_url
        self.health_timeout = health_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.lives = 0
        self.kills = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_path(self, life: int) -> Path:
        return self.logs / f"{self.name}-{self.port}-{life}.log"

    def command(self) -> list[str]:
        args = ["serve", "--host", HOST, "--port", str(self.port)]
        args += ["--database-url", self.database_url]
        if not self.migrate:
            args.append("--no-migrate")
        if self.redis_url is not None:
            args += ["--redis-url", self.redis_url]
        return [sys.executable, "-m", "messenger", *args]

    def start_sync(self) -> ServeProcess:
        """Start a new life on the same port and wait for /healthz (blocking)."""
        assert not self.running(), "already running"
        self.lives += 1
        with self.log_path(self.lives).open("wb") as out:
            self.process = subprocess.Popen(
                self.command(), env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            self._wait_healthy(self.process)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.output()}") from None
        return self

    async def start(self) -> ServeProcess:
        """`start_sync` in a worker thread: the test's loop keeps running meanwhile."""
        return await asyncio.to_thread(self.start_sync)

    def _wait_healthy(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.health_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {process.returncode}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not become healthy")

    def send_signal(self, sig: signal.Signals) -> None:
        """Signal the process without waiting (usable from a sync callback)."""
        assert self.process is not None
        self.process.send_signal(sig)

    async def wait_exit(self, timeout: float) -> int:
        """The exit code, awaited without blocking the loop; TimeoutError after `timeout`."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while (code := self.process.poll()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} still running after {timeout}s")
            await asyncio.sleep(0.01)
        return code

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, like a power cut of the process."""
        assert self.running()
        self.send_signal(signal.SIGKILL)
        code = await self.wait_exit(10)
        assert code == -signal.SIGKILL, code
        self.kills += 1

    async def terminate(self, timeout: float) -> int | None:
        """SIGTERM, the graceful stop; killed if still running after `timeout` (None)."""
        self.send_signal(signal.SIGTERM)
        try:
            return await self.wait_exit(timeout)
        except TimeoutError:
            self.stop()
            return None

    def stop(self) -> None:
        """Kill the process if it still runs (fixtures' teardown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    async def metric(self, name: str) -> float:
        """One unlabelled sample of the server's /metrics."""
        status, text = await Http(self.url).request("GET", "/metrics")
        assert status == 200, text
        for line in str(text).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"no metric {name}")

    def output(self, life: int | None = None) -> str:
        """The end of one life's log (the current one by default)."""
        path = self.log_path(life or self.lives)
        return path.read_text("utf-8", "replace")[-6000:] if path.exists() else ""

    def all_output(self) -> str:
        return "".join(
            self.log_path(life).read_text("utf-8", "replace") for life in range(1, self.lives + 1)
        )


class ServeGroup:
    """The serve processes of one test (or module), logging into one directory;
    `close` kills whatever still runs. `defaults` are `ServeProcess` options."""

    def __init__(self, logs: Path, **defaults: Any) -> None:
        self.logs = logs
        self.defaults = defaults
        self.made: list[ServeProcess] = []

    def __call__(self, database_url: str, **options: Any) -> ServeProcess:
        """A new, unstarted process (options as `ServeProcess`'s, over the defaults)."""
        server = ServeProcess(database_url, self.logs, **{**self.defaults, **options})
        self.made.append(server)
        return server

    def close(self) -> None:
        for server in self.made:
            server.stop()

    def report(self) -> str:
        return "\n".join(
            f"--- {server.log_path(server.lives).name}\n{server.output()}" for server in self.made
        )
