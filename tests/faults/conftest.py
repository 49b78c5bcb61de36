"""Fixtures of the fault-injection suite. Its `messenger serve` processes come from the
`processes` fixture (tests/conftest.py), with the defaults below.

The chaos loop's length is chosen with MESSENGER_SOAK=1 (an environment variable, not a
`--soak` flag: pytest only reads `pytest_addoption` from the rootdir's conftest, so a
flag declared here would be refused when the whole suite runs from the root).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.faults.tools import raise_fd_limit


@pytest.fixture(autouse=True, scope="session")
def _fd_limit() -> None:
    # Storms open thousands of sockets; server subprocesses inherit the limit.
    raise_fd_limit()


@pytest.fixture
def serve_defaults() -> dict[str, Any]:
    """The fixtures hand over migrated databases; a server may start slowly here."""
    return {"migrate": False, "health_timeout": 60}
