"""Queries of attachments and their blobs: what was uploaded by whom, which message
carries it, and which blobs no attachment names any more (docs/attachments.md)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    RowMapping,
    bindparam,
    delete,
    func,
    insert,
    select,
    union,
    update,
)
from sqlalchemy.sql.elements import BindParameter

from messenger.store.models import attachments, blob_parts, blobs, messages
from messenger.wire import utc_now

_IDS: BindParameter[Any] = bindparam("ids", expanding=True)

# -- blobs --------------------------------------------------------------------------------


def record_blob(conn: Connection, sha256: str, size: int, now: datetime) -> None:
    """Note that the blob exists and is in use now (its `created_at` is touched): the
    collector removes only blobs untouched for a while."""
    touched = conn.execute(
        update(blobs).where(blobs.c.sha256 == sha256).values(created_at=now)
    ).rowcount
    if not touched:
        conn.execute(insert(blobs).values(sha256=sha256, size=size, created_at=now))


def _unused(before: datetime) -> Any:
    """Blobs untouched since `before` that no attachment names, as file or thumbnail."""
    used = union(
        select(attachments.c.sha256),
        select(attachments.c.thumbnail_sha256).where(attachments.c.thumbnail_sha256.is_not(None)),
    ).subquery()
    return (blobs.c.created_at < before) & blobs.c.sha256.not_in(select(used.c[0]))


def take_unreferenced(
    conn: Connection,
    before: datetime,
    limit: int,
    forget: Callable[[Connection, list[str]], None],
) -> list[str]:
    """Forget up to `limit` unused blobs, with what the store `forget`s in the same
    transaction; returns their SHA-256s for the store to delete.

    The DELETE states its condition again: a blob an upload touched meanwhile (it
    waits for that upload's row lock, then sees the new `created_at`) stays."""
    candidates = list(
        conn.execute(select(blobs.c.sha256).where(_unused(before)).limit(limit)).scalars()
    )
    if not candidates:
        return []
    taken = list(
        conn.execute(
            delete(blobs)
            .where(blobs.c.sha256.in_(_IDS), _unused(before))
            .returning(blobs.c.sha256),
            {"ids": candidates},
        ).scalars()
    )
    forget(conn, taken)
    return taken


def recorded_blobs(conn: Connection, shas: Sequence[str]) -> set[str]:
    """Which of these blobs SQL records."""
    if not shas:
        return set()
    statement = select(blobs.c.sha256).where(blobs.c.sha256.in_(_IDS))
    return set(conn.execute(statement, {"ids": list(shas)}).scalars())


# -- the database store's parts -----------------------------------------------------------


def write_blob_part(conn: Connection, key: str, seq: int, data: bytes) -> None:
    conn.execute(insert(blob_parts).values(key=key, seq=seq, data=data, created_at=utc_now()))


def keep_blob_parts(conn: Connection, key: str, sha256: str) -> None:
    """An upload's parts become the blob's, unless the blob is stored already."""
    stored = conn.execute(select(blob_parts.c.seq).where(blob_parts.c.key == sha256)).first()
    if stored is not None:
        conn.execute(delete(blob_parts).where(blob_parts.c.key == key))
    else:
        conn.execute(update(blob_parts).where(blob_parts.c.key == key).values(key=sha256))


def read_blob_parts(conn: Connection, key: str, first: int, last: int) -> list[bytes]:
    statement = (
        select(blob_parts.c.data)
        .where(blob_parts.c.key == key, blob_parts.c.seq.between(first, last))
        .order_by(blob_parts.c.seq)
    )
    return [bytes(data) for data in conn.execute(statement).scalars()]


def delete_blob_parts(conn: Connection, keys: Sequence[str]) -> None:
    if keys:
        conn.execute(delete(blob_parts).where(blob_parts.c.key.in_(_IDS)), {"ids": list(keys)})


def blob_part_keys_older_than(conn: Connection, seconds: float) -> list[str]:
    """Keys of uploads that never finished (no blob took their parts)."""
    before = utc_now() - timedelta(seconds=seconds)
    statement = (
        select(blob_parts.c.key)
        .where(blob_parts.c.key.like("upload-%"), blob_parts.c.created_at < before)
        .distinct()
    )
    return list(conn.execute(statement).scalars())


# -- attachments ---------------------------------------------------------------------------


def insert_attachment(conn: Connection, values: dict[str, Any]) -> int:
    result = conn.execute(insert(attachments).values(**values).returning(attachments.c.id))
    return int(result.scalar_one())


def attachment_row(conn: Connection, attachment_id: int) -> RowMapping | None:
    """The attachment with, when linked, its message's users and state, and the size
    of its thumbnail's blob when it has one."""
    statement = (
        select(
            attachments,
            messages.c.sender_id,
            messages.c.recipient_id,
            messages.c.deleted_at,
            blobs.c.size.label("thumbnail_size"),
        )
        .select_from(
            attachments.outerjoin(messages, messages.c.id == attachments.c.message_id).outerjoin(
                blobs, blobs.c.sha256 == attachments.c.thumbnail_sha256
            )
        )
        .where(attachments.c.id == attachment_id)
    )
    return conn.execute(statement).mappings().one_or_none()


def stored_bytes(conn: Connection, user_id: int) -> int:
    """What the user's uploads take, pending and sent (their quota)."""
    statement = select(func.coalesce(func.sum(attachments.c.size), 0)).where(
        attachments.c.uploader_id == user_id
    )
    return int(conn.execute(statement).scalar_one())


def pending_attachments(
    conn: Connection, uploader_id: int, ids: Sequence[int]
) -> dict[int, RowMapping]:
    """Those of `ids` that the user uploaded and no message carries yet."""
    statement = select(attachments).where(
        attachments.c.id.in_(_IDS),
        attachments.c.uploader_id == uploader_id,
        attachments.c.message_id.is_(None),
    )
    return {row["id"]: row for row in conn.execute(statement, {"ids": list(ids)}).mappings()}


def link_attachments(conn: Connection, links: Sequence[tuple[int, int]]) -> None:
    """(attachment_id, message_id): the send's transaction binds its uploads."""
    if links:
        conn.execute(
            update(attachments)
            .where(attachments.c.id == bindparam("aid"), attachments.c.message_id.is_(None))
            .values(message_id=bindparam("mid")),
            [{"aid": aid, "mid": mid} for aid, mid in links],
        )


def unlink_message_attachments(conn: Connection, message_ids: Sequence[int]) -> None:
    """A delete for everyone: the message's attachments go (their blobs are collected)."""
    if message_ids:
        conn.execute(
            delete(attachments).where(attachments.c.message_id.in_(_IDS)),
            {"ids": list(message_ids)},
        )


def attachments_of(conn: Connection, message_ids: Sequence[int]) -> dict[int, list[RowMapping]]:
    """The attachments of the messages that have any, in upload order."""
    found: dict[int, list[RowMapping]] = {}
    if not message_ids:
        return found
    statement = (
        select(attachments)
        .where(attachments.c.message_id.in_(_IDS))
        .order_by(attachments.c.message_id, attachments.c.id)
    )
    for row in conn.execute(statement, {"ids": sorted(set(message_ids))}).mappings():
        found.setdefault(row["message_id"], []).append(row)
    return found


def expire_pending(conn: Connection, before: datetime) -> int:
    """Uploads that no send took within their time: gone."""
    result = conn.execute(
        delete(attachments).where(
            attachments.c.message_id.is_(None), attachments.c.created_at < before
        )
    )
    return int(result.rowcount or 0)


def describe_image(
    conn: Connection, attachment_id: int, width: int, height: int, thumbnail: str | None
) -> None:
    """An image's size, and its thumbnail's blob when one was made."""
    conn.execute(
        update(attachments)
        .where(attachments.c.id == attachment_id)
        .values(width=width, height=height, thumbnail_sha256=thumbnail)
    )
