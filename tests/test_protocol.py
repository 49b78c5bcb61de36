"""Validation of inbound payloads: pure functions, so every edge is cheap to pin down."""

from __future__ import annotations

from typing import Any

import pytest

from messenger import protocol
from messenger.errors import ErrorCode, MessengerError


def code_of(call: Any, *args: Any) -> str:
    with pytest.raises(MessengerError) as info:
        call(*args)
    return info.value.code.value


@pytest.mark.parametrize(
    "name", ["ann@example.com", "A.B_C%D+E-F@x", "abc", "a" * 64, "BOB@Example.COM"]
)
def test_valid_usernames_are_lowercased(name: str) -> None:
    assert protocol.normalize_username(name) == name.lower()


@pytest.mark.parametrize(
    "name", ["ab", "a" * 65, "ann smith", "ann/x", "añn", "\u212aate@x.com", "", None, 7, ["a"]]
)
def test_invalid_usernames(name: Any) -> None:
    assert code_of(protocol.normalize_username, name) == "invalid"


def test_send_checks_every_field() -> None:
    ok = {"to": "Bob@x.com", "body": "hi", "client_id": "c-1"}
    assert protocol.parse_send(ok, 10) == protocol.SendCommand("bob@x.com", "hi", "c-1")
    assert code_of(protocol.parse_send, {**ok, "body": "x" * 11}, 10) == "too_large"
    assert protocol.parse_send({**ok, "body": "é" * 10}, 10).body == "é" * 10
    for bad in (
        {**ok, "body": ""},
        {**ok, "body": 5},
        {**ok, "body": "a\x00b"},
        {**ok, "body": "\ud800"},
        {**ok, "client_id": ""},
        {**ok, "client_id": "x" * 65},
        {**ok, "client_id": 3},
        {k: v for k, v in ok.items() if k != "to"},
        "not an object",
        None,
    ):
        assert code_of(protocol.parse_send, bad, 10) == "invalid", bad


def test_private_message_uses_the_server_client_id_only_when_none_given() -> None:
    base = {"to": "bob@x.com", "from": "Ann@x.com", "message": "hi"}
    claimed, command = protocol.parse_private_message(base, 100, "srv-1")
    assert claimed == "ann@x.com" and command.client_id == "srv-1" and command.body == "hi"
    _, command = protocol.parse_private_message({**base, "client_id": "mine"}, 100, "srv-2")
    assert command.client_id == "mine"


def test_ids() -> None:
    assert protocol.parse_ids({"ids": [3, 1, 3]}) == [1, 3]
    assert code_of(protocol.parse_ids, {"ids": list(range(1, 502))}) == "too_large"
    for bad in ([], [0], [-1], [True], ["1"], [1.5], [2**63], None, "1"):
        assert code_of(protocol.parse_ids, {"ids": bad}) == "invalid", bad


def test_history_and_sync_limits() -> None:
    query = protocol.parse_history({"with": "bob@x.com"})
    assert (query.before, query.after, query.limit) == (None, None, 50)
    assert code_of(protocol.parse_history, {"with": "bob@x.com", "limit": 101}) == "invalid"
    assert code_of(protocol.parse_history, {"with": "bob@x.com", "before": 5, "after": 1}) == (
        "invalid"
    )
    assert protocol.parse_sync({"after": 0}).limit == 100
    for bad in (-1, "3", None, True, 1.0):
        assert code_of(protocol.parse_sync, {"after": bad}) == "invalid", bad
    assert code_of(protocol.parse_sync, {"after": 1, "limit": 501}) == "invalid"


def test_presence_list_bounds() -> None:
    assert protocol.parse_presence({"users": ["Ann@x.com", "ann@x.com"]}) == ["ann@x.com"]
    names = [f"user{i}" for i in range(101)]
    assert code_of(protocol.parse_presence, {"users": names}) == "too_large"
    assert code_of(protocol.parse_presence, {"users": []}) == "invalid"


def test_every_error_code_is_a_protocol_code() -> None:
    documented = {
        "invalid", "not_found", "forbidden", "too_large", "rate_limited", "unauthorized",
        "unavailable", "internal", "username_taken", "bad_credentials",
    }  # fmt: skip
    assert {code.value for code in ErrorCode} == documented
