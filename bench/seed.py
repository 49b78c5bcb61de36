"""Bulk-load messages straight into messenger's tables, while its server is stopped.

Sending a million messages through the server would take longer than the scenario
it prepares, so rows are written the way the server's writer writes them (see
messenger/store/models.py): a `messages` row with the recipient's stream cursor, one
`new_message` stream event for each side, and both users' `stream_seq` raised to
the new stream heads. Ids are given explicitly, so the events can point at them.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

STATUS_SENT, STATUS_DELIVERED, STATUS_READ = 0, 1, 2
EVENT_NEW_MESSAGE = 1
CHUNK = 20_000


@dataclass(frozen=True)
class SeedPlan:
    """`count` messages from `sender` to `recipient` (both ways if `alternate`)."""

    sender: str
    recipient: str
    count: int
    status: int
    alternate: bool = False
    body_size: int = 64


@dataclass
class _State:
    ids: dict[str, int]
    seqs: dict[int, int]
    next_id: int


def _rows(
    plan: SeedPlan, state: _State
) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Chunks of (message rows, stream-event rows), in id order."""
    tag = uuid.uuid4().hex[:8]
    a, b = state.ids[plan.sender], state.ids[plan.recipient]
    base = datetime.now(UTC) - timedelta(seconds=plan.count)
    pad = "y" * max(0, plan.body_size - 20)
    done = plan.status >= STATUS_DELIVERED
    messages: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    for i in range(plan.count):
        sender, recipient = (b, a) if plan.alternate and i % 2 else (a, b)
        message_id = state.next_id
        state.next_id += 1
        state.seqs[sender] += 1
        state.seqs[recipient] += 1
        at = base + timedelta(microseconds=i * 1000)
        messages.append(
            (
                message_id,
                sender,
                recipient,
                f"seed {i} {pad}",
                f"seed-{tag}-{i}",
                at,
                plan.status,
                at if done else None,
                at if plan.status == STATUS_READ else None,
                state.seqs[recipient],
            )
        )
        events.append((sender, state.seqs[sender], EVENT_NEW_MESSAGE, message_id, None))
        events.append((recipient, state.seqs[recipient], EVENT_NEW_MESSAGE, message_id, None))
        if len(messages) >= CHUNK:
            yield messages, events
            messages, events = [], []
    if messages:
        yield messages, events


MESSAGE_COLUMNS = (
    "id",
    "sender_id",
    "recipient_id",
    "body",
    "client_id",
    "sent_at",
    "status",
    "delivered_at",
    "read_at",
    "recipient_seq",
)
EVENT_COLUMNS = ("user_id", "seq", "kind", "message_id", "payload")


def seed(database_url: str, plan: SeedPlan) -> None:
    """Write the plan's messages into the database at `database_url`."""
    if database_url.startswith("sqlite"):
        _seed_sqlite(database_url.split("///", 1)[1], plan)
    else:
        asyncio.run(_seed_postgres(database_url.replace("+asyncpg", ""), plan))


def _sqlite_time(value: datetime | None) -> str | None:
    # SQLAlchemy's SQLite DATETIME text format; the server stores naive UTC there.
    return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _seed_sqlite(path: str, plan: SeedPlan) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("BEGIN IMMEDIATE")
        names = (plan.sender, plan.recipient)
        found = db.execute(
            "SELECT username, id, stream_seq FROM users WHERE username IN (?, ?)", names
        ).fetchall()
        state = _State(
            {n: i for n, i, _ in found},
            {i: s for _, i, s in found},
            (db.execute("SELECT coalesce(max(id), 0) FROM messages").fetchone()[0]) + 1,
        )
        msg_sql = (
            f"INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(MESSAGE_COLUMNS))})"
        )
        ev_sql = (
            f"INSERT INTO stream_events ({', '.join(EVENT_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
        )
        for messages, events in _rows(plan, state):
            db.executemany(
                msg_sql,
                [
                    (*m[:5], _sqlite_time(m[5]), m[6], _sqlite_time(m[7]), _sqlite_time(m[8]), m[9])
                    for m in messages
                ],
            )
            db.executemany(ev_sql, events)
        db.executemany(
            "UPDATE users SET stream_seq = ? WHERE id = ?",
            [(seq, uid) for uid, seq in state.seqs.items()],
        )
        db.execute("COMMIT")
        db.execute("ANALYZE")
    finally:
        db.close()


async def _seed_postgres(dsn: str, plan: SeedPlan) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            found = await conn.fetch(
                "SELECT username, id, stream_seq FROM users WHERE username = ANY($1::text[])",
                [plan.sender, plan.recipient],
            )
            top = await conn.fetchval("SELECT coalesce(max(id), 0) FROM messages")
            state = _State(
                {r["username"]: r["id"] for r in found},
                {r["id"]: r["stream_seq"] for r in found},
                top + 1,
            )
            for messages, events in _rows(plan, state):
                await conn.copy_records_to_table(
                    "messages", records=messages, columns=list(MESSAGE_COLUMNS)
                )
                await conn.copy_records_to_table(
                    "stream_events", records=events, columns=list(EVENT_COLUMNS)
                )
            await conn.executemany(
                "UPDATE users SET stream_seq = $1 WHERE id = $2",
                [(seq, uid) for uid, seq in state.seqs.items()],
            )
            await conn.execute(
                "SELECT setval(pg_get_serial_sequence('messages', 'id'), "
                "(SELECT max(id) FROM messages))"
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
