"""Alembic, driven from code: the migrations ship inside the package.

`alembic.ini` at the top of the repository points at the same folder, for the
`alembic` command in development; the server and `messenger db upgrade` use this.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed as an attribute, not an option: ConfigParser would treat % in a
    # password as interpolation.
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Run the migrations up to `revision`. Blocking: call it off the event loop."""
    _outside_event_loop(lambda: command.upgrade(alembic_config(database_url), revision))


def check(database_url: str) -> None:
    """Raise if the models and the migrated database differ (autogenerate finds ops)."""
    _outside_event_loop(lambda: command.check(alembic_config(database_url)))


def _outside_event_loop(work: Callable[[], None]) -> None:
    """env.py drives the async engine with asyncio.run(), which refuses to nest in a
    running loop; when called from one, run the work in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        work()
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(work).result()
