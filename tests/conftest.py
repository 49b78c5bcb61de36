"""Fixtures: migrated databases (SQLite files, fresh PostgreSQL databases) and running
servers. Every test of the contract runs once per backend.

PostgreSQL tests skip when the server on 127.0.0.1:5432 is missing, unless
MESSENGER_REQUIRE_SERVICES=1 (as in CI), which turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from messenger.config import Settings
from messenger.store.migrate import upgrade
from tests.processes import ServeGroup
from tests.push_support import FakePushService, WebhookReceiver
from tests.support import Http, RunningServer, Scene, Servers, start_server, two_way_scene

PG_ADMIN_DSN = os.environ.get("MESSENGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PG_HOST_URL = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
REQUIRE_SERVICES = os.environ.get("MESSENGER_REQUIRE_SERVICES") == "1"
# The websocket loops the tests' servers run: CI runs the transport's contract tests
# a second time with the library's own (MESSENGER_TEST_LEAN_WEBSOCKET=0).
LEAN_WEBSOCKET = os.environ.get("MESSENGER_TEST_LEAN_WEBSOCKET", "1").strip().lower() not in (
    "0",
    "false",
)
BACKENDS = ["sqlite", "postgresql"]


def service_missing(what: str, why: object) -> None:
    message = f"{what} is not reachable: {why}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (MESSENGER_REQUIRE_SERVICES=1)")
    pytest.skip(message)


async def _pg_admin(*statements: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _pg_admin_blocking(*statements: str) -> None:
    """For session fixtures, which may be set up from inside a test's event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _pg_admin(*statements)).result()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    name = f"messenger_tmpl_{uuid.uuid4().hex[:10]}"
    try:
        _pg_admin_blocking(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as exc:
        service_missing("PostgreSQL", exc)
    upgrade(f"{PG_HOST_URL}/{name}")
    yield name
    _pg_admin_blocking(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[str]:
    """A freshly migrated database of the test's backend, dropped afterwards."""
    if backend == "sqlite":
        path = tmp_path / "messenger.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    template = request.getfixturevalue("pg_template")
    name = f"messenger_test_{uuid.uuid4().hex[:12]}"
    await _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield f"{PG_HOST_URL}/{name}"
    await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def empty_pg_url() -> AsyncIterator[str]:
    """A PostgreSQL database without tables, dropped afterwards: for the migrations."""
    name = f"messenger_test_{uuid.uuid4().hex[:12]}"
    try:
        await _pg_admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as exc:
        service_missing("PostgreSQL", exc)
    yield f"{PG_HOST_URL}/{name}"
    await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # Rate and registration limits off unless a test turns them on (tests make many
    # accounts from one address, and pipeline many events on one connection); fast
    # resync so repairs show quickly; argon2 at its lowest cost (the same code, far
    # less CPU per account).
    return Settings(
        database_url=database_url,
        rate_limit=0,
        register_burst=0,
        max_pending_requests=1000,
        resync_interval=0.5,
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        lean_websocket=LEAN_WEBSOCKET,
        # Attachments in the test's own directory, whatever the database.
        blob_dir=str(tmp_path / "blobs"),
    )


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RunningServer]:
    running = await start_server(settings)
    yield running
    await running.stop()


@pytest.fixture
async def scene(server: RunningServer, http: Http) -> AsyncIterator[Scene]:
    """ann and bob, both connected, one message each way stored and still `sent`."""
    running = await two_way_scene(server, http)
    yield running
    await running.close()


@pytest.fixture
def http(server: RunningServer) -> Http:
    return Http(server.url)


@pytest.fixture
async def servers(settings: Settings) -> AsyncIterator[Servers]:
    """In-process servers the test starts and stops itself (restarts keep the port)."""
    group = Servers(settings)
    yield group
    await group.close()


@pytest.fixture
async def push_service() -> AsyncIterator[FakePushService]:
    """A fake Web Push service on loopback (tests/push_support.py). The server may push
    to it once the module's `settings` allow plain http to loopback (`push_settings`)."""
    async with FakePushService() as fake:
        yield fake


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    """A webhook receiver on loopback that checks each request's signature; reachable
    as `push_service` is."""
    async with WebhookReceiver() as fake:
        yield fake


@pytest.fixture
def serve_defaults() -> dict[str, Any]:
    """`ServeProcess` options of the `processes` fixture; a directory may override them."""
    return {}


@pytest.fixture
def processes(tmp_path: Path, serve_defaults: dict[str, Any]) -> Iterator[ServeGroup]:
    """Makes (unstarted) `python -m messenger serve` processes; any still running at the
    end of the test are killed."""
    group = ServeGroup(tmp_path, **serve_defaults)
    yield group
    group.close()
