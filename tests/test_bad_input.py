"""G8 bad input: every malformed event gets its exact error code in the ack, the
connection stays up, and no stored row changes. Also the rate limit, and clients that
emit the reserved names "connect" and "disconnect"."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from messenger.config import Settings
from tests.support import (
    STREAM_QUERIES,
    Device,
    Http,
    Scene,
    Snapshot,
    read_tables,
    start_server,
)

NOBODY = "nobody@example.com"
BIG_ID = 2**63  # one past the largest 64-bit id
# Every stored fact a bad event could touch; users.last_seen moves with connects.
SNAPSHOT_QUERIES = {**STREAM_QUERIES, "messages": "SELECT * FROM messages ORDER BY id"}


async def snapshot(database_url: str) -> Snapshot:
    """All rows of the tables G8 protects, read through a separate engine."""
    return await read_tables(database_url, SNAPSHOT_QUERIES)


# A case: (payload given to Device.call, expected error code). `None` is no payload;
# a tuple is several payloads (a 1-tuple carries an explicit JSON null).
Case = tuple[Any, str]


def non_objects(valid: dict[str, Any]) -> list[Case]:
    """Payloads that are not one JSON object: every event refuses them with invalid."""
    return [
        (None, "invalid"),
        ((None,), "invalid"),
        ("text", "invalid"),
        (42, "invalid"),
        (True, "invalid"),
        ([valid], "invalid"),
        ((valid, valid), "invalid"),  # two payloads, even two valid ones
        ((valid, "extra"), "invalid"),
    ]


def username_cases(field: str, base: dict[str, Any], me: str) -> list[Case]:
    """A username field: wrong types and shapes are invalid, unknown users not_found."""
    return [
        ({k: v for k, v in base.items() if k != field}, "invalid"),
        ({**base, field: None}, "invalid"),
        ({**base, field: 5}, "invalid"),
        ({**base, field: True}, "invalid"),
        ({**base, field: [base[field]]}, "invalid"),
        ({**base, field: {"name": base[field]}}, "invalid"),
        ({**base, field: "ab"}, "invalid"),
        ({**base, field: "a" * 65}, "invalid"),
        ({**base, field: "has space@example.com"}, "invalid"),
        ({**base, field: "émile@example.com"}, "invalid"),
        ({**base, field: "nul\x00@example.com"}, "invalid"),
        ({**base, field: NOBODY}, "not_found"),
        ({**base, field: me}, "invalid"),
        ({**base, field: me.upper()}, "invalid"),
    ]


async def run_cases(device: Device, event: str, cases: list[Case]) -> list[str]:
    """Calls each case; returns a description of every answer that is not the exact
    expected failure {"ok": false, "error": {"code", "message"}}."""
    wrong = []
    for payload, code in cases:
        answer = await device.call(event, payload, timeout=5)
        ok = (
            isinstance(answer, dict)
            and set(answer) == {"ok", "error"}
            and answer["ok"] is False
            and isinstance(answer["error"], dict)
            and set(answer["error"]) == {"code", "message"}
            and answer["error"]["code"] == code
            and isinstance(answer["error"]["message"], str)
            and answer["error"]["message"] != ""
        )
        if not ok:
            wrong.append(f"{event} {str(payload)[:120]!r}: expected {code}, got {answer!r}")
    return wrong


async def check_event(scene: Scene, event: str, cases: list[Case]) -> None:
    """The cases fail as expected, change no row, and leave bob's connection usable."""
    url = scene.server.settings.database_url
    before = await snapshot(url)
    wrong = await run_cases(scene.b, event, cases)
    after = await snapshot(url)
    assert not wrong, "\n".join(wrong)
    assert after == before, "a failed event changed stored data"
    assert scene.b.sio.connected
    answer = await scene.b.send(scene.ann.username, "still here", "after-bad-input")
    assert answer["ok"], answer
    await scene.a.wait_for(lambda: any(m["body"] == "still here" for m in scene.a.messages()))


def send_cases(scene: Scene) -> list[Case]:
    max_body = scene.server.settings.max_body
    valid = {"to": scene.ann.username, "body": "hi", "client_id": "c-bad"}
    return [
        *non_objects(valid),
        ({}, "invalid"),
        *username_cases("to", valid, scene.bob.username),
        ({k: v for k, v in valid.items() if k != "body"}, "invalid"),
        ({**valid, "body": None}, "invalid"),
        ({**valid, "body": 5}, "invalid"),
        ({**valid, "body": True}, "invalid"),
        ({**valid, "body": ["hi"]}, "invalid"),
        ({**valid, "body": {"text": "hi"}}, "invalid"),
        ({**valid, "body": ""}, "invalid"),
        ({**valid, "body": "nul\x00inside"}, "invalid"),
        ({**valid, "body": "\x00"}, "invalid"),
        ({**valid, "body": "lone \ud800 surrogate"}, "invalid"),
        ({**valid, "body": "x" * (max_body + 1)}, "too_large"),
        ({**valid, "body": "é" * (max_body + 1)}, "too_large"),
        ({k: v for k, v in valid.items() if k != "client_id"}, "invalid"),
        ({**valid, "client_id": None}, "invalid"),
        ({**valid, "client_id": ""}, "invalid"),
        ({**valid, "client_id": "c" * 65}, "invalid"),
        ({**valid, "client_id": 7}, "invalid"),
        ({**valid, "client_id": True}, "invalid"),
        ({**valid, "client_id": ["c-1"]}, "invalid"),
        ({**valid, "client_id": "c\x00"}, "invalid"),
        # A valid recipient with the id of a message already stored by ann: not a repeat
        # of bob's, and still refused because the body is too long.
        ({**valid, "client_id": "a-1", "body": "y" * (max_body + 1)}, "too_large"),
    ]


async def test_send_bad_input(scene: Scene) -> None:
    """`send`: every malformed field has its code; nothing stored, nothing pushed."""
    before = len(scene.a.messages())
    await check_event(scene, "send", send_cases(scene))
    # Only the one valid send after the bad ones reached ann.
    assert [m["body"] for m in scene.a.messages()[before:]] == ["still here"]


async def test_private_message_bad_input(scene: Scene) -> None:
    """`privateMessage`: the seed event validates like `send`, and `from` too."""
    max_body = scene.server.settings.max_body
    me = scene.bob.username
    valid = {"to": scene.ann.username, "from": me, "message": "hi", "client_id": "pm-bad"}
    cases: list[Case] = [
        *non_objects(valid),
        ({}, "invalid"),
        *username_cases("to", valid, me),
        ({k: v for k, v in valid.items() if k != "from"}, "invalid"),
        ({**valid, "from": None}, "invalid"),
        ({**valid, "from": 5}, "invalid"),
        ({**valid, "from": "ab"}, "invalid"),
        ({**valid, "from": NOBODY}, "forbidden"),
        ({**valid, "from": scene.ann.username}, "forbidden"),
        ({k: v for k, v in valid.items() if k != "message"}, "invalid"),
        ({**valid, "message": None}, "invalid"),
        ({**valid, "message": 5}, "invalid"),
        ({**valid, "message": ""}, "invalid"),
        ({**valid, "message": "a\x00b"}, "invalid"),
        ({**valid, "message": "m" * (max_body + 1)}, "too_large"),
        ({**valid, "body": "hi", "message": None}, "invalid"),
        ({**valid, "client_id": ""}, "invalid"),
        ({**valid, "client_id": "c" * 65}, "invalid"),
        ({**valid, "client_id": 5}, "invalid"),
        ({**valid, "client_id": False}, "invalid"),
    ]
    await check_event(scene, "privateMessage", cases)


@pytest.mark.parametrize("event", ["delivered", "read"])
async def test_mark_bad_input(scene: Scene, event: str) -> None:
    """`delivered`/`read`: ids must be 1-500 positive integers; a bad entry refuses the
    whole event, so the valid id beside it is not marked."""
    mine = scene.to_bob  # bob may mark this one: a wrongly accepted event changes it
    cases: list[Case] = [
        *non_objects({"ids": [mine]}),
        ({}, "invalid"),
        ({"ids": None}, "invalid"),
        ({"ids": mine}, "invalid"),
        ({"ids": str(mine)}, "invalid"),
        ({"ids": {"0": mine}}, "invalid"),
        ({"ids": []}, "invalid"),
        ({"ids": [mine, True]}, "invalid"),
        ({"ids": [True]}, "invalid"),
        ({"ids": [mine, False]}, "invalid"),
        ({"ids": [mine, 0]}, "invalid"),
        ({"ids": [mine, -1]}, "invalid"),
        ({"ids": [mine, -mine]}, "invalid"),
        ({"ids": [mine, 1.5]}, "invalid"),
        ({"ids": [float(mine)]}, "invalid"),
        ({"ids": [str(mine)]}, "invalid"),
        ({"ids": [mine, None]}, "invalid"),
        ({"ids": [mine, [mine]]}, "invalid"),
        ({"ids": [mine, BIG_ID]}, "invalid"),
        ({"ids": [mine] * 501}, "too_large"),
        ({"ids": [mine, *range(1, 501)]}, "too_large"),
        ({"id": mine}, "invalid"),
    ]
    await check_event(scene, event, cases)
    # Nothing reached ann as a receipt, and the message is still "sent".
    assert scene.a.of("receipt") == []
    answer = await scene.b.call("history", {"with": scene.ann.username})
    statuses = {m["id"]: m["status"] for m in answer["messages"]}
    assert statuses[mine] == "sent", answer


async def test_mark_limit_boundary_is_accepted(scene: Scene) -> None:
    """500 ids is the documented maximum: accepted (only bob's own message counts)."""
    answer = await scene.b.call("delivered", {"ids": [scene.to_bob, *range(1, 500)]})
    assert answer == {"ok": True, "updated": 1}, answer


async def test_history_bad_input(scene: Scene) -> None:
    """`history`: username shape, unknown user, self, cursors and limit out of range."""
    valid = {"with": scene.ann.username}
    cases: list[Case] = [
        *non_objects(valid),
        ({}, "invalid"),
        *username_cases("with", valid, scene.bob.username),
        ({**valid, "limit": 0}, "invalid"),
        ({**valid, "limit": 101}, "invalid"),
        ({**valid, "limit": -1}, "invalid"),
        ({**valid, "limit": "10"}, "invalid"),
        ({**valid, "limit": True}, "invalid"),
        ({**valid, "limit": 10.0}, "invalid"),
        ({**valid, "before": 0}, "invalid"),
        ({**valid, "before": -3}, "invalid"),
        ({**valid, "before": "5"}, "invalid"),
        ({**valid, "before": True}, "invalid"),
        ({**valid, "before": 2.5}, "invalid"),
        ({**valid, "before": BIG_ID}, "invalid"),
        ({**valid, "after": 0}, "invalid"),
        ({**valid, "after": [1]}, "invalid"),
        ({**valid, "after": False}, "invalid"),
        ({**valid, "before": scene.to_ann, "after": scene.to_bob}, "invalid"),
        ({**valid, "before": 10, "after": 1, "limit": 5}, "invalid"),
    ]
    await check_event(scene, "history", cases)


async def test_sync_bad_input(scene: Scene) -> None:
    """`sync`: a cursor of the wrong type or from the future is invalid, as is a limit
    outside 1-500."""
    head = await scene.b.wait_synced()
    valid = {"after": 0}
    cases: list[Case] = [
        *non_objects(valid),
        ({}, "invalid"),
        ({"after": None}, "invalid"),
        ({"after": "0"}, "invalid"),
        ({"after": True}, "invalid"),
        ({"after": False}, "invalid"),
        ({"after": 1.5}, "invalid"),
        ({"after": 0.0}, "invalid"),
        ({"after": [0]}, "invalid"),
        ({"after": -1}, "invalid"),
        ({"after": head + 10}, "invalid"),
        ({"after": head + 1000}, "invalid"),
        ({"after": BIG_ID}, "invalid"),
        ({"after": 0, "limit": 0}, "invalid"),
        ({"after": 0, "limit": 501}, "invalid"),
        ({"after": 0, "limit": "5"}, "invalid"),
        ({"after": 0, "limit": True}, "invalid"),
        ({"cursor": 0}, "invalid"),
    ]
    await check_event(scene, "sync", cases)


async def test_presence_bad_input(scene: Scene) -> None:
    """`presence`: 1 to 100 valid usernames of existing users."""
    ann = scene.ann.username
    cases: list[Case] = [
        *non_objects({"users": [ann]}),
        ({}, "invalid"),
        ({"users": None}, "invalid"),
        ({"users": ann}, "invalid"),
        ({"users": []}, "invalid"),
        ({"users": [ann, 5]}, "invalid"),
        ({"users": [ann, None]}, "invalid"),
        ({"users": [ann, True]}, "invalid"),
        ({"users": [ann, "ab"]}, "invalid"),
        ({"users": [ann, "has space@x.com"]}, "invalid"),
        ({"users": [ann, [ann]]}, "invalid"),
        ({"users": {ann: True}}, "invalid"),
        ({"users": [ann] * 101}, "too_large"),
        ({"users": [f"user{i}@example.com" for i in range(101)]}, "too_large"),
        ({"users": [NOBODY]}, "not_found"),
        ({"users": [ann, NOBODY]}, "not_found"),
    ]
    await check_event(scene, "presence", cases)


@pytest.mark.parametrize("event", ["block", "unblock"])
async def test_block_bad_input(scene: Scene, event: str) -> None:
    """`block`/`unblock`: {"user": username} of another existing user; a refused
    block stores no block (ann can still send to bob)."""
    valid = {"user": scene.ann.username}
    cases: list[Case] = [
        *non_objects(valid),
        ({}, "invalid"),
        *username_cases("user", valid, scene.bob.username),
        ({"users": [scene.ann.username]}, "invalid"),
    ]
    await check_event(scene, event, cases)
    answer = await scene.a.send(scene.bob.username, "not blocked", "a-after")
    assert answer["ok"], answer


async def test_unknown_event(scene: Scene) -> None:
    """An event name the server does not know is answered invalid, with any payload;
    "*" too, the name python-socketio registers its catch-all under."""
    url = scene.server.settings.database_url
    before = await snapshot(url)
    wrong: list[str] = []
    for name in ["nope", "Send", "SEND", "send ", "new_message", "receivedMessage", "*", "x" * 300]:
        wrong += await run_cases(
            scene.b,
            name,
            [
                (None, "invalid"),
                ({"to": scene.ann.username, "body": "hi", "client_id": "u-1"}, "invalid"),
                (("a", "b"), "invalid"),
            ],
        )
    assert not wrong, "\n".join(wrong)
    assert await snapshot(url) == before
    await check_event(scene, "nope", [])


async def test_rate_limited_burst_then_usable(settings: Settings) -> None:
    """A burst of 50 events at rate_limit=5 gets `rate_limited` answers beyond the
    burst allowance, stores nothing for them, limits only that user, and the
    connection works again after a pause."""
    running = await start_server(settings.replace(rate_limit=5))
    try:
        http = Http(running.url)
        ann, bob = await asyncio.gather(http.account("ann"), http.account("bob"))
        a = await Device(running.url).connect(ann.token)
        b = await Device(running.url).connect(bob.token)
        await asyncio.gather(a.wait_synced(), b.wait_synced())
        answers = await asyncio.gather(
            *(a.send(bob.username, f"burst {i}", f"burst-{i}") for i in range(50))
        )
        codes = [x["error"]["code"] if not x["ok"] else "ok" for x in answers]
        assert set(codes) <= {"ok", "rate_limited"}, codes
        accepted = codes.count("ok")
        assert codes.count("rate_limited") >= 30, codes
        assert 1 <= accepted <= 15, codes  # a burst of twice the rate, plus refill
        for answer in answers:
            if not answer["ok"]:
                assert set(answer) == {"ok", "error"}, answer
                assert set(answer["error"]) == {"code", "message"}, answer
        # Only the accepted sends were stored.
        rows = await snapshot(running.settings.database_url)
        assert len(rows["messages"]) == accepted
        # Another user is not limited by ann's flood.
        answer = await b.send(ann.username, "bob is fine", "b-1")
        assert answer["ok"], answer
        assert a.sio.connected
        await asyncio.sleep(1.0)
        answer = await a.send(bob.username, "after the pause", "after")
        assert answer["ok"], answer
        await b.wait_for(lambda: any(m["body"] == "after the pause" for m in b.messages()))
        await a.disconnect()
        await b.disconnect()
    finally:
        await running.stop()


async def test_reserved_event_names_do_not_break_the_connection(scene: Scene) -> None:
    """A client emitting events named "connect"/"disconnect" stays connected, attached
    (live pushes arrive) and online."""
    b = scene.b
    await b.sio.emit("connect")
    await b.sio.emit("connect", {"token": "garbage-token-garbage-token"})
    await b.sio.emit("disconnect")
    await b.sio.emit("disconnect", {"reason": "fake"})
    await b.sio.emit("connect_error", {"code": "unauthorized"})
    # Give the server time to process them before checking state.
    await asyncio.sleep(0.3)
    assert b.sio.connected
    answer = await b.send(scene.ann.username, "after reserved names", "r-1")
    assert answer["ok"], answer
    answer = await scene.a.send(scene.bob.username, "still pushed to bob", "r-2")
    assert answer["ok"], answer
    await b.wait_for(lambda: any(m["body"] == "still pushed to bob" for m in b.messages()), 5)
    answer = await scene.a.call("presence", {"users": [scene.bob.username]})
    assert answer["ok"] and answer["users"][scene.bob.username]["online"] is True, answer
    assert len(b.of("synced")) == 1  # no second handshake happened
