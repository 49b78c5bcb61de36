"""The statements behind the store's pair lookups, for tests that read their plans."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select

from messenger.store.blocks import _blocks_statement
from messenger.store.messages import _client_ids_statement
from messenger.store.sized_statements import Params, _pair_lookups


def blocking_pairs_queries(
    dialect: str, pairs: list[tuple[int, int]]
) -> list[tuple[Select[Any], Params]]:
    return _pair_lookups(dialect, _blocks_statement, pairs)


def messages_by_client_ids_queries(
    dialect: str, keys: list[tuple[int, str]]
) -> list[tuple[Select[Any], Params]]:
    return _pair_lookups(dialect, _client_ids_statement, keys)
