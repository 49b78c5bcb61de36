"""`python -m bench.wal_frames`: what one write batch writes to SQLite's WAL, per b-tree.

The writer's cost per batch is not only its statements: `COMMIT` appends every page
the batch changed to the WAL (then fsyncs it), so a batch costs about one page per
distinct leaf it touches in each index. This drives the server's own `apply_batch`
on the server's own `SqliteDatabase` (no sockets, no event loop) with the live
scenario's shape: sender/recipient pairs, sends (with client ids as `--client-ids`
says), and each recipient marking the previous batch's messages delivered one id at
a time. After a warm-up that builds history, it stops automatic checkpoints, runs the
measured batches, reads the page number of every frame the WAL gained, and names the
table or index that owns each page (SQLite's `dbstat`).

    python -m bench.wal_frames --sends 40 --client-ids uuid4 --page-size 4096
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import sqlite3
import struct
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection

from messenger.client.ids import new_client_id
from messenger.delivery.batch import MarkOrder, Order, SendOrder, apply_batch
from messenger.store.db import SqliteDatabase
from messenger.store.migrate import upgrade
from messenger.wire import UserRef

WAL_HEADER = 32
FRAME_HEADER = 24
# uuid7: the Python client's (messenger.client.ids); uuid4: random, as most clients
# make them; counter: the load generator's `<run>.<pair>.<n>`.
CLIENT_IDS = ("uuid7", "uuid4", "counter")


def _create(path: Path, page_size: int, users: int) -> list[UserRef]:
    """A migrated database of `page_size` pages with `users` accounts."""
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA page_size={int(page_size)}")
        conn.execute("PRAGMA journal_mode=WAL")  # writes the header: the size holds
    upgrade(f"sqlite+aiosqlite:///{path}")
    now = datetime.now(UTC).isoformat()
    refs = []
    with sqlite3.connect(path) as conn:
        for i in range(users):
            cursor = conn.execute(
                "INSERT INTO users (username, password_hash, created_at, stream_seq)"
                " VALUES (?, 'unused', ?, 0)",
                (f"user{i}", now),
            )
            assert cursor.lastrowid is not None
            refs.append(UserRef(cursor.lastrowid, f"user{i}"))
    return refs


class Workload:
    """Batches of `sends` sends plus the delivered marks of the batch before, with
    client ids of one of CLIENT_IDS' kinds."""

    def __init__(
        self, db: SqliteDatabase, users: list[UserRef], sends: int, client_ids: str
    ) -> None:
        self._db = db
        self._pairs = list(zip(users[0::2], users[1::2], strict=True))
        self._sends = sends
        self._random = random.Random(1)
        self._to_mark: list[tuple[UserRef, int]] = []
        self._client_ids = client_ids
        self._run = uuid.uuid4().hex[:8]
        self._sent = 0

    def _client_id(self, pair: int) -> str:
        self._sent += 1
        if self._client_ids == "counter":
            return f"{self._run}.{pair}.{self._sent}"
        return new_client_id() if self._client_ids == "uuid7" else str(uuid.uuid4())

    async def batch(self) -> None:
        orders: list[Order] = []
        for _ in range(self._sends):
            pair = self._random.randrange(len(self._pairs))
            sender, recipient = self._pairs[pair]
            body = "x" * self._random.randint(20, 80)
            orders.append(SendOrder(sender, recipient, body, self._client_id(pair)))
        orders += [MarkOrder(user, [message_id], 1) for user, message_id in self._to_mark]
        outcome = await self._db.write(apply_batch, orders, datetime.now(UTC), False, False)
        self._to_mark = []
        for index, answer in outcome.answers:
            order = orders[index]
            if isinstance(order, SendOrder) and not isinstance(answer, Exception):
                self._to_mark.append((order.recipient, answer.message["id"]))


def _frame_pages(wal: bytes, start: int, page_size: int) -> list[int]:
    """Page numbers of the WAL frames from byte offset `start` on."""
    pages = []
    offset = start
    while offset + FRAME_HEADER <= len(wal):
        pages.append(struct.unpack(">I", wal[offset : offset + 4])[0])
        offset += FRAME_HEADER + page_size
    return pages


def _checkpoint(path: Path) -> None:
    """Copy the WAL into the database and empty it, from a connection of its own."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _set_autocheckpoint(conn: Connection, pages: int) -> None:
    conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint={int(pages)}")


async def measure(
    page_size: int, sends: int, pairs: int, warmup: int, batches: int, client_ids: str
) -> None:
    with tempfile.TemporaryDirectory(prefix="wal-frames-") as scratch:
        path = Path(scratch) / "bench.db"
        users = _create(path, page_size, 2 * pairs)
        db = SqliteDatabase(f"sqlite+aiosqlite:///{path}", "FULL")
        try:
            workload = Workload(db, users, sends, client_ids)
            for _ in range(warmup):
                await workload.batch()
            await db.write(_set_autocheckpoint, 0)
            _checkpoint(path)
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(batches):
                await workload.batch()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            # Read before the connections close: the last one to close empties the WAL.
            wal = await asyncio.to_thread(Path(f"{path}-wal").read_bytes)
            pages = _frame_pages(wal, WAL_HEADER, page_size)
        finally:
            await db.dispose()
        _checkpoint(path)
        with sqlite3.connect(path) as conn:
            owner = {page: name for name, page in conn.execute("SELECT name, pageno FROM dbstat")}

    per_batch = len(pages) / batches
    print(
        f"page size {page_size}, {sends} sends + their delivered marks a batch, "
        f"{pairs} pairs, {client_ids} client ids, "
        f"after {warmup} batches:"
    )
    print(
        f"  {per_batch:.1f} frames ({per_batch * page_size / 1024:.0f} KiB) a commit; "
        f"CPU {1000 * cpu / batches:.3f} ms, wall {1000 * wall / batches:.3f} ms a batch"
    )
    for name, count in collections.Counter(owner.get(p, "?") for p in pages).most_common():
        print(f"  {name:40s} {count / batches:6.1f} frames a commit")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.wal_frames", description=__doc__)
    parser.add_argument("--page-size", type=int, default=4096)
    parser.add_argument("--sends", type=int, default=40, help="sends a batch")
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=1500, help="batches before measuring")
    parser.add_argument("--batches", type=int, default=300, help="batches measured")
    parser.add_argument("--client-ids", choices=CLIENT_IDS, default="uuid7")
    args = parser.parse_args(argv)
    asyncio.run(
        measure(args.page_size, args.sends, args.pairs, args.warmup, args.batches, args.client_ids)
    )


if __name__ == "__main__":
    main()
