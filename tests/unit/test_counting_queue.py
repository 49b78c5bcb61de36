"""A session's send queue behaves as asyncio's queue where python-engineio and the
overrides use it, counts what it holds, and makes nothing until it is used."""

from __future__ import annotations

import asyncio

import pytest
from engineio import packet

from messenger.transport.overrides.guarded_socket import CountingQueue, packet_size


def message(text: str) -> packet.Packet:
    return packet.Packet(packet.MESSAGE, data=text)


async def test_fifo_with_the_bytes_and_packets_it_holds() -> None:
    queue = CountingQueue()
    assert queue.empty() and queue.qsize() == 0
    first, second = message("one"), message("two!")
    await queue.put(first)
    queue.put_nowait(second)
    queue.put_nowait(None)  # the end marker counts as an item, not as bytes
    assert queue.qsize() == 3 and queue.queued_packets == 2
    assert queue.queued_bytes == packet_size(first) + packet_size(second)
    assert await queue.get() is first
    assert queue.get_nowait() is second
    assert queue.get_nowait() is None
    assert (queue.queued_bytes, queue.queued_packets, queue.empty()) == (0, 0, True)
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()


async def test_a_waiting_get_is_woken_by_a_put() -> None:
    queue = CountingQueue()
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.put_nowait(message("x"))
    assert (await asyncio.wait_for(getter, 1)).data == "x"


async def test_a_cancelled_get_leaves_the_packet_for_the_next() -> None:
    """As the long poll uses it: a GET that ends another way cancels its get, and the
    packet stays queued."""
    queue = CountingQueue()
    first = asyncio.ensure_future(queue.get())
    second = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait(message("kept"))
    first.cancel()  # woken for the packet, cancelled before it ran
    assert (await asyncio.wait_for(second, 1)).data == "kept"
    assert first.cancelled()


async def test_a_get_cancelled_while_waiting_takes_nothing() -> None:
    queue = CountingQueue()
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    getter.cancel()
    await asyncio.sleep(0)
    queue.put_nowait(message("still here"))
    assert queue.qsize() == 1


async def test_join_waits_for_every_task_done() -> None:
    queue = CountingQueue()
    await asyncio.wait_for(queue.join(), 1)  # nothing put: at once
    queue.put_nowait(message("a"))
    queue.put_nowait(message("b"))
    joined = asyncio.ensure_future(queue.join())
    queue.get_nowait()
    queue.task_done()
    await asyncio.sleep(0)
    assert not joined.done()
    queue.get_nowait()
    queue.task_done()
    await asyncio.wait_for(joined, 1)
    with pytest.raises(ValueError):
        queue.task_done()


async def test_on_put_hears_every_put() -> None:
    queue = CountingQueue()
    heard: list[int] = []
    queue.on_put = lambda: heard.append(queue.qsize())
    await queue.put(message("a"))
    queue.put_nowait(None)
    assert heard == [1, 2]


def test_nothing_is_made_until_used() -> None:
    queue = CountingQueue()
    assert (queue._items, queue._getters, queue._done) == (None, None, None)
    queue.put_nowait(None)
    queue.get_nowait()
    assert queue._items is None  # nor kept once drained
    with pytest.raises(ValueError):
        CountingQueue(maxsize=10)  # bounded by bytes (the session's budget) only
