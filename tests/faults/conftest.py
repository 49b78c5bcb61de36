"""Fixtures of the fault-injection suite: `messenger serve` processes that the test may
kill and restart, always stopped at the end of the test.

The chaos loop's length is chosen with MESSENGER_SOAK=1 (an environment variable, not a
`--soak` flag: pytest only reads `pytest_addoption` from the rootdir's conftest, so a
flag declared here would be refused when the whole suite runs from the root).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.faults.tools import ServerProcess, raise_fd_limit


@pytest.fixture(autouse=True, scope="session")
def _fd_limit() -> None:
    # Storms open thousands of sockets; server subprocesses inherit the limit.
    raise_fd_limit()


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[Callable[..., ServerProcess]]:
    """Makes (unstarted) server processes; any still running at the end are killed."""
    made: list[ServerProcess] = []

    def make(database_url: str, env: dict[str, str] | None = None) -> ServerProcess:
        server = ServerProcess(database_url, tmp_path, env)
        made.append(server)
        return server

    yield make
    for server in made:
        await server.stop()
