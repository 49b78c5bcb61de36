"""python-engineio's `AsyncSocket`, corrected where it departs from Engine.IO v4."""

from __future__ import annotations

from engineio.async_socket import AsyncSocket


class ConformantSocket(AsyncSocket):  # type: ignore[misc]
    """An Engine.IO session as the protocol's reference server keeps it."""
