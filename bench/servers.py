"""Start and stop the servers under test as subprocesses, and their databases.

Every process started here is tracked in `_LIVE` and killed at exit, on Ctrl-C and
on errors, so a failed run never leaves a server holding a port or a database.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil

HOST = "127.0.0.1"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
_LIVE: set[subprocess.Popen[bytes]] = set()
# `--pin`: the server under test (all its threads) on one core, the load generator on
# the other, so neither steals the other's core. PostgreSQL and Redis are not pinned.
SERVER_CPU = 0
LOADGEN_CPU = 1


def free_port() -> int:
    """A port the kernel says is free on the loopback interface."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _kill(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    _LIVE.discard(proc)


@atexit.register
def kill_all() -> None:
    """Last line of defence: no server outlives the benchmark process."""
    for proc in list(_LIVE):
        _kill(proc, grace=1.0)


@dataclass
class Server:
    """A running server subprocess: its URL, its psutil handle and its log."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    pinned: bool = False  # runs on SERVER_CPU only (`--pin`)
    ps: psutil.Process = field(init=False)

    def __post_init__(self) -> None:
        self.ps = psutil.Process(self.proc.pid)

    def rss(self) -> int:
        """Resident memory of the server process, in bytes."""
        return int(self.ps.memory_info().rss)

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far."""
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        _kill(self.proc)


def _raise_nofile() -> None:
    """Children inherit a raised RLIMIT_NOFILE (the connections scenario needs it)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _prepare_child(pin: bool) -> None:
    """Runs in the child before exec: the affinity set here holds for every thread
    and process the server starts later."""
    _raise_nofile()
    if pin:
        os.sched_setaffinity(0, {SERVER_CPU})


async def _wait_healthy(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                break
            try:
                async with http.get(server.url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{server.name} did not become healthy:\n{server.log_tail()}")


def start(
    name: str,
    args: list[str],
    workdir: Path,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    root: Path | None = None,
    pin: bool = False,
) -> Server:
    """Start `python -m ...args` and return once GET /healthz answers 200. The code
    is this checkout's, or that of `root` (another checkout: `bench.ab`); with `pin`,
    on SERVER_CPU only."""
    port = free_port()
    log_path = workdir / f"{name}-{port}.log"
    full_env = {**os.environ, **(env or {})}
    # `python -m bench.relay` must import from this checkout, whatever the cwd. With
    # another root, that root is the working directory too: `python -m` looks there
    # first.
    code = str((root or Path(__file__).parent.parent).resolve())
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (code, full_env.get("PYTHONPATH")) if p)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", *args, "--port", str(port)],
            cwd=code if root else None,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
            preexec_fn=functools.partial(_prepare_child, pin),
        )
    _LIVE.add(proc)
    server = Server(name, f"http://{HOST}:{port}", proc, log_path, pinned=pin)
    asyncio.run(_wait_healthy(server, timeout))
    return server


def start_relay(workdir: Path, pin: bool = False) -> Server:
    return start("relay", ["bench.relay", "--host", HOST], workdir, pin=pin)


def start_messenger(
    workdir: Path,
    database_url: str,
    migrate: bool = True,
    redis_url: str | None = None,
    name: str = "messenger",
    env: dict[str, str] | None = None,
    root: Path | None = None,
    pin: bool = False,
) -> Server:
    args = ["messenger", "serve", "--host", HOST, "--database-url", database_url]
    if not migrate:
        args.append("--no-migrate")
    if redis_url:
        args += ["--redis-url", redis_url]
    # No per-user event limit (the generator is the flood), no login or registration
    # limit (the generator makes and logs in many accounts from one address), and no
    # cap on one user's sockets or one address's connections (`connections` opens
    # many sockets per account, all from loopback).
    base = {
        "MESSENGER_RATE_LIMIT": "0",
        "MESSENGER_MAX_PENDING_REQUESTS": "1000",
        "MESSENGER_LOGIN_BURST": "0",
        "MESSENGER_REGISTER_BURST": "0",
        "MESSENGER_MAX_CONNECTIONS_PER_USER": "0",
        "MESSENGER_MAX_CONNECTIONS_PER_ADDRESS": "0",
        "MESSENGER_MAX_PENDING_SESSIONS_PER_ADDRESS": "0",
        "MESSENGER_MAX_PENDING_SESSIONS": "0",
        "MESSENGER_LOG_FORMAT": "text",
    }
    env = {**base, **(env or {})}
    return start(name, args, workdir, env=env, timeout=120.0, root=root, pin=pin)


def start_redis(workdir: Path, timeout: float = 10.0) -> Server:
    """A private redis-server: the shared one serves other work, whose CPU could not
    be told apart from ours. It persists nothing."""
    port = free_port()
    log_path = workdir / f"redis-{port}.log"
    args = ["redis-server", "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    _LIVE.add(proc)
    server = Server("redis", f"redis://{HOST}:{port}/0", proc, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if _redis_pong(port):
            return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"redis-server did not answer PING:\n{server.log_tail()}")


def _redis_pong(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def running(server: Server) -> Iterator[Server]:
    """Stop the server when the block ends, whatever happens inside it."""
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    """A fresh, empty database of `kind` ('sqlite' or 'postgresql'); yields its URL."""
    if kind == "sqlite":
        path = Path(tempfile.mkdtemp(prefix="db-", dir=workdir)) / "bench.db"
        yield f"sqlite+aiosqlite:///{path}"
        return
    if kind != "postgresql":
        raise ValueError(f"unknown database kind {kind!r}")
    name = f"bench_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def postgres_cpu_seconds() -> float:
    """CPU used so far by every PostgreSQL process (the DB is a cost of messenger too)."""
    total = 0.0
    for proc in psutil.process_iter(["name", "cpu_times"]):
        name = proc.info.get("name") or ""
        times = proc.info.get("cpu_times")
        if name.startswith("postgres") and times is not None:
            total += float(times.user + times.system)
    return total
