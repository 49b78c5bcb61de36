"""Chaos loop, in the style of Jepsen's total-queue check: clients send numbered
messages while the server is killed with SIGKILL and restarted again and again; then
every recipient drains its stream and a checker compares what was acknowledged with
what arrived.

It fails on any acknowledged message that never reaches its recipient (G1, G4, G6),
and on any (sender, client_id) stored under two ids (G2). Sends that were never
acknowledged but arrive anyway (the kill fell between commit and answer) are counted
as "recovered": allowed, and the reason retries must reuse the client_id.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest
import socketio

from tests.faults.tools import SERVER_LOG_ALARMS, SOAK, parse_time, seed_accounts
from tests.processes import ServeGroup, ServeProcess
from tests.support import Account

SENDERS = 25
RECIPIENTS = 25
WINDOW = 3  # sends each sender keeps in flight
KILLS = 40 if SOAK else 3
LIFE = (2.0, 4.0)  # seconds a server lives between kills
ATTEMPT_TIMEOUT = 8.0
DRAIN_TIMEOUT = 60.0


class Disconnected(Exception):
    """The connection went away while an answer was awaited: outcome unknown."""


class Link:
    """One Socket.IO connection with pending calls failed as soon as it drops (a killed
    server answers nothing, and waiting out a timeout per send would stall the loop)."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.sio = socketio.AsyncClient(reconnection=False)
        self.waiting: set[asyncio.Future[Any]] = set()
        self.gone = asyncio.Event()
        self.synced = asyncio.Event()
        self.sio.on("new_message", self._on_message)
        self.sio.on("receipt", self._on_receipt)
        self.sio.on("synced", self._on_synced)
        self.sio.on("disconnect", self._on_disconnect)

    async def open(self, url: str) -> None:
        auth: dict[str, Any] = {"token": self.peer.account.token}
        if self.peer.cursor is not None:
            auth["cursor"] = self.peer.cursor
        await self.sio.connect(url, auth=auth, transports=["websocket"], wait_timeout=5)

    async def _on_message(self, data: dict[str, Any]) -> None:
        self.peer.saw(int(data["cursor"]))
        message = data["message"]
        if message["to"] == self.peer.account.username:
            self.peer.received.append(message)
            self.peer.to_mark.append(int(message["id"]))

    async def _on_receipt(self, data: dict[str, Any]) -> None:
        self.peer.saw(int(data["cursor"]))

    async def _on_synced(self, data: dict[str, Any]) -> None:
        self.peer.saw(int(data["cursor"]))
        self.synced.set()

    async def _on_disconnect(self, *args: Any) -> None:
        self.gone.set()
        for future in self.waiting:
            if not future.done():
                future.set_exception(Disconnected())

    async def call(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        if self.gone.is_set() or not self.sio.connected:
            raise Disconnected()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting.add(future)

        def answer(data: Any) -> None:
            if not future.done():
                future.set_result(data)

        try:
            await self.sio.emit(event, payload, callback=answer)
            return dict(await asyncio.wait_for(future, ATTEMPT_TIMEOUT))
        except (socketio.exceptions.SocketIOError, ConnectionError) as exc:
            raise Disconnected() from exc
        finally:
            self.waiting.discard(future)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.sio.disconnect()


@dataclass
class Send:
    client_id: str
    to: str
    body: str
    attempts: int = 0
    indeterminate: int = 0  # attempts that got no answer
    acked: dict[str, Any] | None = None
    recovered_by_retry: bool = False


@dataclass
class Peer:
    account: Account
    cursor: int | None = None
    received: list[dict[str, Any]] = field(default_factory=list)
    to_mark: list[int] = field(default_factory=list)
    sends: dict[str, Send] = field(default_factory=dict)
    connects: int = 0
    errors: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))

    def saw(self, cursor: int) -> None:
        self.cursor = cursor if self.cursor is None else max(self.cursor, cursor)


async def connect(peer: Peer, url: str, stop: asyncio.Event) -> Link | None:
    """Connect with the last cursor, retrying while the server is down."""
    while not stop.is_set():
        link = Link(peer)
        try:
            await link.open(url)
            peer.connects += 1
            return link
        except Exception:
            await link.close()
            await asyncio.sleep(0.2)
    return None


async def attempt(link: Link, send: Send) -> None:
    send.attempts += 1
    started = time.time()
    try:
        answer = await link.call(
            "send", {"to": send.to, "body": send.body, "client_id": send.client_id}
        )
    except (Disconnected, TimeoutError):
        send.indeterminate += 1
        raise Disconnected() from None
    if answer.get("ok"):
        send.acked = answer["message"]
        # Committed before this attempt began: an earlier, unanswered one stored it
        # (sent_at has millisecond precision, hence the margin).
        if send.attempts > 1 and parse_time(answer["message"]["sent_at"]) < started - 0.002:
            send.recovered_by_retry = True
    else:
        link.peer.errors[answer["error"]["code"]] += 1


async def run_sender(
    peer: Peer, recipients: list[Peer], url: str, stop: asyncio.Event, index: int
) -> None:
    """Numbered sends, WINDOW in flight; unacknowledged ones retried with their
    client_id on the next connection."""
    number = 0
    while not stop.is_set():
        link = await connect(peer, url, stop)
        if link is None:
            return
        try:
            while not stop.is_set() and not link.gone.is_set():
                batch = [s for s in peer.sends.values() if s.acked is None][:WINDOW]
                while len(batch) < WINDOW:
                    to = recipients[(index + number) % len(recipients)].account.username
                    client_id = f"s{index}-{number}"
                    send = Send(client_id, to, f"message {number} of sender {index}")
                    peer.sends[client_id] = send
                    batch.append(send)
                    number += 1
                outcome = await asyncio.gather(
                    *(attempt(link, send) for send in batch), return_exceptions=True
                )
                if any(isinstance(result, Exception) for result in outcome):
                    break
        finally:
            await link.close()


async def run_recipient(peer: Peer, url: str, stop: asyncio.Event) -> None:
    """Reads its stream and marks what it got as delivered, reconnecting with its cursor."""
    while not stop.is_set():
        link = await connect(peer, url, stop)
        if link is None:
            return
        try:
            while not stop.is_set() and not link.gone.is_set():
                if peer.to_mark:
                    ids, peer.to_mark = peer.to_mark[:500], peer.to_mark[500:]
                    try:
                        await link.call("delivered", {"ids": ids})
                    except (Disconnected, TimeoutError):
                        peer.to_mark.extend(ids)  # marking twice is harmless
                        break
                await asyncio.sleep(0.2)
        finally:
            await link.close()


async def chaos(server: ServeProcess, stop: asyncio.Event) -> None:
    for _ in range(KILLS):
        await asyncio.sleep(random.uniform(*LIFE))
        await server.kill()
        await server.start()
    await asyncio.sleep(LIFE[0])
    stop.set()


async def drain(peer: Peer, url: str) -> list[dict[str, Any]]:
    """The final drain: reconnect with the last cursor until `synced`; then read the
    whole stream with `sync` from 0, the stored truth to compare with."""
    never = asyncio.Event()
    link = await asyncio.wait_for(connect(peer, url, never), DRAIN_TIMEOUT)
    assert link is not None
    try:
        await asyncio.wait_for(link.synced.wait(), DRAIN_TIMEOUT)
        stream: list[dict[str, Any]] = []
        after = 0
        while True:
            answer = await link.call("sync", {"after": after, "limit": 500})
            assert answer["ok"], answer
            stream.extend(
                e["data"]["message"] for e in answer["events"] if e["event"] == "new_message"
            )
            after = answer["cursor"]
            if not answer["has_more"]:
                return stream
    finally:
        await link.close()


@pytest.mark.timeout(1800 if SOAK else 150)
async def test_chaos_kill_9_loop(processes: ServeGroup, database_url: str, backend: str) -> None:
    """50 clients (25 senders x 25 recipients) through repeated SIGKILLs: no
    acknowledged message lost, none stored twice."""
    accounts = await seed_accounts(database_url, "chaos", SENDERS + RECIPIENTS)
    senders = [Peer(a) for a in accounts[:SENDERS]]
    recipients = [Peer(a) for a in accounts[SENDERS:]]
    server = processes(database_url)
    await server.start()
    stop = asyncio.Event()
    started = time.monotonic()
    clients = [
        *(run_sender(p, recipients, server.url, stop, i) for i, p in enumerate(senders)),
        *(run_recipient(p, server.url, stop) for p in recipients),
    ]
    await asyncio.gather(chaos(server, stop), *clients)
    chaos_seconds = time.monotonic() - started

    streams = await asyncio.gather(*(drain(p, server.url) for p in recipients))

    # -- the checker --------------------------------------------------------------------
    sends = {(p.account.username, cid): s for p in senders for cid, s in p.sends.items()}
    received: dict[str, dict[int, dict[str, Any]]] = {}
    for peer in recipients:
        received[peer.account.username] = {int(m["id"]): m for m in peer.received}
    ids_of: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
    for peer, stream in zip(recipients, streams, strict=True):
        for message in [*peer.received, *stream]:
            ids_of[(message["from"], message["client_id"])].add(int(message["id"]))
            assert message["to"] == peer.account.username, message

    acked = {key: s for key, s in sends.items() if s.acked is not None}
    lost = []
    for (sender, client_id), send in acked.items():
        assert send.acked is not None
        got = received[send.to].get(int(send.acked["id"]))
        if got is None:
            lost.append((sender, client_id, send.acked["id"]))
        else:
            assert (got["from"], got["client_id"], got["body"]) == (sender, client_id, send.body)
    duplicates = {key: ids for key, ids in ids_of.items() if len(ids) > 1}
    phantoms = [key for key in ids_of if key not in sends]
    unacked_stored = [key for key, s in sends.items() if s.acked is None and key in ids_of]
    unacked_lost = [key for key, s in sends.items() if s.acked is None and key not in ids_of]
    recovered_by_retry = [key for key, s in acked.items() if s.recovered_by_retry]
    # The live stream and the stored stream agree: nothing stored that never came.
    not_received = [
        (peer.account.username, m["id"])
        for peer, stream in zip(recipients, streams, strict=True)
        for m in stream
        if int(m["id"]) not in received[peer.account.username]
    ]
    errors: defaultdict[str, int] = defaultdict(int)
    for peer in [*senders, *recipients]:
        for code, n in peer.errors.items():
            errors[code] += n

    print(
        f"\n[chaos {backend}] {chaos_seconds:.0f}s, kills survived {server.kills}, "
        f"attempted {len(sends)}, acked {len(acked)}, lost {len(lost)}, "
        f"duplicates after dedup {len(duplicates)}, "
        f"recovered {len(unacked_stored) + len(recovered_by_retry)} "
        f"({len(recovered_by_retry)} by a retry that found the first attempt's row, "
        f"{len(unacked_stored)} never acked but delivered), "
        f"unacked and not stored {len(unacked_lost)}, "
        f"indeterminate attempts {sum(s.indeterminate for s in sends.values())}, "
        f"connects {sum(p.connects for p in [*senders, *recipients])}, "
        f"error answers {dict(errors)}"
    )
    assert server.kills == KILLS
    assert len(acked) > 0
    assert not lost, f"acknowledged but never delivered: {lost[:10]}"
    assert not duplicates, f"one client_id, several ids: {list(duplicates.items())[:10]}"
    assert not phantoms, f"messages nobody sent: {phantoms[:10]}"
    assert not not_received, f"stored but never pushed: {not_received[:10]}"
    alarms = SERVER_LOG_ALARMS.findall(server.all_output())
    assert not alarms, alarms[:10]
