"""G1 persist first: a `send` answered ok is committed. A real `messenger serve` process
is killed (SIGKILL, and SIGTERM for the graceful stop) while sends are in flight; after a
restart on the same database every acknowledged message is there, with its id and body.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.processes import ServeGroup
from tests.support import Account, Device, Http, stored_conversation

CLIENTS = 4
PER_CLIENT = 50
WINDOW = 8  # sends each client keeps in flight


@dataclass
class Load:
    """Several devices of one sender, each keeping a window of sends in flight."""

    url: str
    sender: Account
    to: str
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[Any] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)

    async def run(self, on_ack: Callable[[int], None]) -> None:
        self.devices = [await Device(self.url).connect(self.sender.token) for _ in range(CLIENTS)]
        await asyncio.gather(*(self._client(n, d, on_ack) for n, d in enumerate(self.devices)))

    async def _client(self, n: int, device: Device, on_ack: Callable[[int], None]) -> None:
        window = asyncio.Semaphore(WINDOW)
        for i in range(PER_CLIENT):
            await window.acquire()
            client_id = f"c{n}-{i}"

            def record(answer: dict[str, Any], client_id: str = client_id) -> None:
                window.release()
                if answer.get("ok"):
                    self.acks[client_id] = answer["message"]
                    on_ack(len(self.acks))
                else:
                    self.errors.append(answer)

            payload = {"to": self.to, "body": f"body of {client_id}", "client_id": client_id}
            await device.sio.emit("send", payload, callback=record)
        # Wait for the last answers of this client.
        for _ in range(WINDOW):
            await window.acquire()

    async def close(self) -> None:
        for device in self.devices:
            if device.sio.connected:
                await device.disconnect()


async def stored_messages(url: str, reader: Account, peer: str) -> dict[int, dict[str, Any]]:
    """Every message of the conversation, by id."""
    return {message["id"]: message for message in await stored_conversation(url, reader, peer)}


def assert_all_acked_stored(
    acks: dict[str, dict[str, Any]], stored: dict[int, dict[str, Any]]
) -> None:
    for client_id, message in acks.items():
        assert message["id"] in stored, f"acked {client_id} (id {message['id']}) was lost"
        row = stored[message["id"]]
        assert row["client_id"] == client_id
        assert row["body"] == f"body of {client_id}"
        assert row["sent_at"] == message["sent_at"]
    # And nothing was stored twice.
    client_ids = [row["client_id"] for row in stored.values()]
    assert len(client_ids) == len(set(client_ids))


async def accounts(url: str) -> tuple[Account, Account]:
    http = Http(url)
    return await http.account("ann"), await http.account("bob")


async def test_acked_sends_survive_kill_9(processes: ServeGroup, database_url: str) -> None:
    """G1: SIGKILL right after the 150th ack, with more sends in flight; after a restart
    every acknowledged message is stored with its id and body."""
    server = await processes(database_url).start()
    ann, bob = await accounts(server.url)
    killed = asyncio.Event()

    def on_ack(count: int) -> None:
        if count >= 150 and not killed.is_set():
            server.send_signal(signal.SIGKILL)
            killed.set()

    load = Load(server.url, ann, bob.username)
    task = asyncio.create_task(load.run(on_ack))
    await asyncio.wait_for(killed.wait(), 60)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await server.wait_exit(10) == -signal.SIGKILL
    acked = dict(load.acks)
    await load.close()
    assert len(acked) >= 150

    await server.start()  # the same database, on the same port
    stored = await stored_messages(server.url, bob, ann.username)
    assert_all_acked_stored(acked, stored)

    # The recipient's backlog, too, holds every acknowledged message.
    device = await Device(server.url).connect(bob.token)
    await device.wait_synced(timeout=30)
    backlog = {m["id"] for m in device.messages()}
    assert {m["id"] for m in acked.values()} <= backlog
    await device.disconnect()


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
async def test_sigterm_stops_gracefully_keeping_acked_sends(
    processes: ServeGroup, database_url: str, event_loop: str
) -> None:
    """G1: SIGTERM mid-load: the process exits 0 within seconds, and every send it
    acknowledged is stored; on either event loop the server can run on."""
    server = processes(database_url, env={"MESSENGER_EVENT_LOOP": event_loop})
    await server.start()
    assert f"(event loop: {event_loop})" in server.output()
    ann, bob = await accounts(server.url)
    stopped = asyncio.Event()

    def on_ack(count: int) -> None:
        if count >= 100 and not stopped.is_set():
            server.send_signal(signal.SIGTERM)
            stopped.set()

    load = Load(server.url, ann, bob.username)
    task = asyncio.create_task(load.run(on_ack))
    await asyncio.wait_for(stopped.wait(), 60)
    started = time.monotonic()
    # Awaiting keeps the loop running, so the clients read the last acks meanwhile.
    exit_code: int | None = None
    with contextlib.suppress(TimeoutError):
        exit_code = await server.wait_exit(10)
    elapsed = time.monotonic() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    acked = dict(load.acks)
    await load.close()
    assert exit_code == 0, f"exit {exit_code} after {elapsed:.1f}s\n{server.output()}"
    assert elapsed < 10
    # Refusals during shutdown are `unavailable`, never a silent loss.
    assert all(error["error"]["code"] == "unavailable" for error in load.errors), load.errors

    await server.start()  # the same database, on the same port
    stored = await stored_messages(server.url, bob, ann.username)
    assert_all_acked_stored(acked, stored)


async def test_acked_changes_survive_kill_9(processes: ServeGroup, database_url: str) -> None:
    """G1 and G11 for changes: SIGKILL right after the 30th acknowledged edit or
    reaction, with more in flight; after a restart each acknowledged one is in the
    message's state, and an edit retried with its client_id is applied once."""
    server = await processes(database_url).start()
    ann, bob = await accounts(server.url)
    sender = await Device(server.url).connect(ann.token)
    sent = [await sender.send(bob.username, f"to edit {i}", f"m-{i}") for i in range(10)]
    ids = [answer["message"]["id"] for answer in sent]
    acked: dict[int, dict[str, Any]] = {}  # message id -> newest acknowledged state
    acks: list[int] = []
    killed = asyncio.Event()

    def record(answer: dict[str, Any]) -> None:
        if answer.get("ok"):
            acked[answer["message"]["id"]] = answer["message"]
            acks.append(answer["message"]["id"])
            if len(acks) >= 30 and not killed.is_set():
                server.send_signal(signal.SIGKILL)
                killed.set()

    for round_ in range(20):
        for message_id in ids:
            if killed.is_set():  # the socket goes down with the server: emit no more
                break
            edit = {"id": message_id, "body": f"v{round_}", "client_id": f"e-{message_id}-{round_}"}
            await sender.sio.emit("edit", edit, callback=record)
        if killed.is_set():
            break
        await asyncio.sleep(0.01)
    await asyncio.wait_for(killed.wait(), 60)
    assert await server.wait_exit(10) == -signal.SIGKILL
    with contextlib.suppress(Exception):
        await sender.disconnect()

    await server.start()
    stored = await stored_messages(server.url, bob, ann.username)
    for message_id, state in acked.items():
        # Acknowledged edits are there (a later, unacknowledged one may be too).
        assert stored[message_id]["edited_at"] is not None, message_id
        assert int(stored[message_id]["body"][1:]) >= int(state["body"][1:])
    retry = await Device(server.url).connect(ann.token)
    some = next(iter(acked.values()))
    body = some["body"]
    again = await retry.call(
        "edit", {"id": some["id"], "body": body, "client_id": f"e-{some['id']}-{body[1:]}"}
    )
    assert again["ok"] and again["message"]["body"] == stored[some["id"]]["body"], again
    await retry.disconnect()
