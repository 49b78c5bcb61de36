"""The SDK's account calls (issue 26) against a real server, on SQLite and PostgreSQL:
changing the password ends the other sessions but not the caller's, sessions listed
and ended one by one, the account removed for good, and the export streamed to a file
that appears only once complete."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest

from messenger.client import (
    Client,
    MessengerClientError,
    change_password,
    conversations,
    delete_account,
    end_session,
    export,
    login,
    register,
    sessions,
)
from tests.support import PASSWORD, Http, RunningServer, accounts
from tests.test_client import eventually, opened

NEW_PASSWORD = "a brand new secret"


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def refused(client: Client, to: str) -> str:
    """The code a send of `client` fails with once its session has ended: the client
    reconnects, the server refuses the token, and the waiting send is failed."""
    await eventually(lambda: not client.connected)  # dropped by the server
    with pytest.raises(MessengerClientError) as failed:
        await asyncio.wait_for(client.send(to, "after the end"), 10)
    return failed.value.code


async def test_change_password_keeps_this_session_and_ends_the_others(
    server: RunningServer, http: Http
) -> None:
    ann, bob = await accounts(http, "ann", "bob")
    second = await login(server.url, ann.username, PASSWORD)
    async with opened(server.url, ann) as here, Client(server.url, second) as there:
        for current, new, code in [
            ("wrong password", NEW_PASSWORD, "bad_credentials"),
            (PASSWORD, "short", "invalid"),
        ]:
            with pytest.raises(MessengerClientError) as bad:
                await here.change_password(current, new)
            assert bad.value.code == code
        assert await there.send(bob.username, "nothing changed yet")  # both still work

        await here.change_password(PASSWORD, NEW_PASSWORD)
        assert await refused(there, bob.username) == "unauthorized"
        # This client's token stays valid: same connection, same sends.
        assert here.connected
        sent = await here.send(bob.username, "still here")
        assert sent.body == "still here"
        assert [s["current"] for s in await here.sessions()] == [True]

    with pytest.raises(MessengerClientError) as old:
        await login(server.url, ann.username, PASSWORD)
    assert old.value.code == "bad_credentials"
    token = await login(server.url, ann.username, NEW_PASSWORD)
    await change_password(server.url, token, NEW_PASSWORD, PASSWORD)  # the module function
    await login(server.url, ann.username, PASSWORD)


async def test_sessions_are_listed_newest_first_and_ended_one_by_one(
    server: RunningServer, http: Http
) -> None:
    ann, bob = await accounts(http, "ann", "bob")
    second = await login(server.url, ann.username, PASSWORD)
    third = await login(server.url, ann.username, PASSWORD)
    async with opened(server.url, ann) as here, Client(server.url, second) as there:
        listed = await here.sessions()
        assert len(listed) == 3
        assert [s["current"] for s in listed] == [False, False, True]  # ann.token: oldest
        assert [s["id"] for s in listed] == sorted((s["id"] for s in listed), reverse=True)
        assert all(s["created_at"] <= s["last_used_at"] for s in listed)
        seen_from_third = await sessions(server.url, third)
        assert [s["current"] for s in seen_from_third] == [True, False, False]
        [third_id, second_id, _] = [s["id"] for s in listed]

        await here.end_session(second_id)  # `there`'s session: its socket is dropped
        assert await refused(there, bob.username) == "unauthorized"
        await end_session(server.url, ann.token, third_id)
        with pytest.raises(MessengerClientError) as ended:
            await sessions(server.url, third)
        assert ended.value.code == "unauthorized"
        assert [s["current"] for s in await here.sessions()] == [True]

        # Not a live session of ann's: ended already, unknown, or bob's.
        [bobs] = await sessions(server.url, bob.token)
        for session_id in (second_id, 10**9, bobs["id"]):
            with pytest.raises(MessengerClientError) as missing:
                await here.end_session(session_id)
            assert missing.value.code == "not_found"
        assert len(await sessions(server.url, bob.token)) == 1
        assert here.connected


async def test_deleted_account_is_gone_for_good_and_its_peer_keeps_the_conversation(
    server: RunningServer, http: Http
) -> None:
    ann, bob = await accounts(http, "ann", "bob")
    async with opened(server.url, ann) as a, opened(server.url, bob) as b:
        await a.send(bob.username, "goodbye bob")
        await b.send(ann.username, "goodbye ann")
        with pytest.raises(MessengerClientError) as wrong:
            await a.delete_account("wrong password")
        assert wrong.value.code == "bad_credentials"
        assert await a.send(bob.username, "still here")

        await a.delete_account(PASSWORD)
        assert await refused(a, bob.username) == "unauthorized"
        [conversation] = await conversations(server.url, bob.token)
        assert (conversation["with"], conversation["removed"]) == (ann.username, True)
        pages = [page async for page in b.history(ann.username)]
        assert [m.body for page in pages for m in page] == [
            "goodbye bob",
            "goodbye ann",
            "still here",
        ]

    with pytest.raises(MessengerClientError) as gone:
        await login(server.url, ann.username, PASSWORD)
    assert gone.value.code == "bad_credentials"
    with pytest.raises(MessengerClientError) as taken:
        await register(server.url, ann.username, PASSWORD)
    assert taken.value.code == "username_taken"
    # The module function, for an account of its own.
    [carol] = await accounts(http, "carol")
    await delete_account(server.url, carol.token, PASSWORD)
    [conversation] = await conversations(server.url, bob.token)
    assert conversation["removed"] is True


async def test_export_streams_everything_to_a_file_that_appears_complete(
    server: RunningServer, http: Http, tmp_path: Path
) -> None:
    ann, bob = await accounts(http, "ann", "bob")
    tmp_path = tmp_path / "exports"  # the test's directory holds the SQLite files too
    tmp_path.mkdir()
    async with opened(server.url, ann) as a, opened(server.url, bob) as b:
        sent = [await a.send(bob.username, f"to bob {i}") for i in range(3)]
        got = await b.send(ann.username, "to ann ✓")
        path = tmp_path / "ann.json"
        path.write_text("an older export")  # replaced whole
        done = await a.export(path)

    assert (done.path, done.size) == (path, path.stat().st_size)
    data = json.loads(path.read_text())
    assert {"user", "sessions", "push_subscriptions", "blocks", "attachments", "messages"} <= set(
        data
    )
    assert data["user"]["username"] == ann.username
    assert [m["id"] for m in data["messages"]] == [m.id for m in (*sent, got)]
    assert data["messages"][-1]["body"] == "to ann ✓"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # private: the owner's only
    assert names(tmp_path) == ["ann.json"]  # no temporary left

    # A refused export leaves no file and no temporary behind.
    with pytest.raises(MessengerClientError) as bad:
        await export(server.url, "not a token", tmp_path / "nothing.json")
    assert bad.value.code == "unauthorized"
    assert names(tmp_path) == ["ann.json"]
    with pytest.raises(OSError):
        await export(server.url, ann.token, tmp_path / "no such directory" / "x.json")
