"""Uploads and downloads of attachments, with the message's own rules: stored first
(the upload is answered after its blob and row are committed), authorised (the
uploader, and after the send both parties of the message, nobody else), never
orphaned (what no attachment names is collected by `collector`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypedDict

from messenger.attachments.blobs import BlobStore, Written
from messenger.attachments.images import SAFE_IMAGES, SNIFF_BYTES, matches, picture
from messenger.errors import ErrorCode, MessengerError, invalid, not_found
from messenger.store.attachments import (
    attachment_row,
    describe_image,
    insert_attachment,
    record_blob,
    stored_bytes,
)
from messenger.store.db import Database
from messenger.store.message_changes import hidden_pairs
from messenger.wire import UserRef, utc_now

NAME_MAX = 255
CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}")


class Uploaded(TypedDict, total=False):
    """The answer to an upload."""

    id: int
    name: str
    size: int
    content_type: str
    sha256: str
    width: int
    height: int


@dataclass(frozen=True)
class Download:
    """What a download sends: the blob's name in the store and how to present it."""

    sha256: str
    size: int
    content_type: str
    name: str
    inline: bool


def too_large(what: str) -> MessengerError:
    return MessengerError(ErrorCode.TOO_LARGE, what)


def check_name(value: Any) -> str:
    """A file's name as shown and offered for saving: 1 to 255 printable characters,
    no path (a name is never used as a path here, but clients may)."""
    if value is None:
        return "file"
    if not isinstance(value, str) or not 1 <= len(value) <= NAME_MAX:
        raise invalid(f"name must be 1 to {NAME_MAX} characters")
    # Printable excludes NUL, controls and lone surrogates: what no database stores.
    if not value.isprintable() or "/" in value or "\\" in value or value in (".", ".."):
        raise invalid("name must be printable, without a path")
    return value


def check_content_type(value: str | None) -> str:
    declared = (value or "application/octet-stream").split(";", 1)[0].strip().lower()
    if not CONTENT_TYPE.fullmatch(declared):
        raise invalid("Content-Type must be a media type such as image/png")
    return declared


class Attachments:
    def __init__(self, db: Database, store: BlobStore, max_size: int, quota: int) -> None:
        self._db = db
        self._store = store
        self._max_size = max_size
        self._quota = quota
        # Placing a blob and recording it, against collecting it: never both at once
        # (a blob collected while an upload of the same bytes records it would lose
        # the file the new row names).
        self.placement = asyncio.Lock()

    async def upload(
        self,
        user: UserRef,
        name: str,
        content_type: str,
        length: int | None,
        body: AsyncIterator[bytes],
    ) -> Uploaded:
        """Store the streamed body as the user's pending upload. Past `max_size`
        (declared or read) it is refused at once, without reading the rest."""
        if length is not None and length > self._max_size:
            raise too_large(f"an attachment is at most {self._max_size} bytes")
        used = await self._db.read(stored_bytes, user.id)
        if used + (length or 0) > self._quota:
            raise too_large("the attachment quota is used up")
        writer = self._store.writer()
        size, head = 0, b""
        try:
            async for chunk in body:
                size += len(chunk)
                if size > self._max_size:
                    raise too_large(f"an attachment is at most {self._max_size} bytes")
                if len(head) < SNIFF_BYTES:
                    head += chunk[: SNIFF_BYTES - len(head)]
                    if len(head) >= SNIFF_BYTES and not matches(content_type, head):
                        raise invalid(f"the content is not {content_type}")
                await writer.write(chunk)
            if not matches(content_type, head):
                raise invalid(f"the content is not {content_type}")
        except BaseException:
            await writer.abort()
            raise
        async with self.placement:
            written = await writer.commit()
            attachment_id = await self._db.write(
                _record_upload, user.id, written, name, content_type, self._quota
            )
        sha256, size = written.sha256, written.size
        if attachment_id is None:
            raise too_large("the attachment quota is used up")
        answer: Uploaded = {
            "id": attachment_id,
            "name": name,
            "size": size,
            "content_type": content_type,
            "sha256": sha256,
        }
        if content_type in SAFE_IMAGES:
            answer |= await self._describe_image(attachment_id, sha256, size)
        return answer

    async def _describe_image(self, attachment_id: int, sha256: str, size: int) -> Uploaded:
        """Size and thumbnail of an image (decoded on a thread); an image that cannot
        be decoded, or is too large to, is kept without them."""
        data = b"".join([chunk async for chunk in self._store.read(sha256, 0, size)])
        found = await asyncio.to_thread(picture, data)
        if found is None:
            return {}
        thumbnail: str | None = None
        if found.thumbnail is not None:
            writer = self._store.writer()
            await writer.write(found.thumbnail)
            async with self.placement:
                written = await writer.commit()
                await self._db.write(_record_blob, written)
            thumbnail = written.sha256
        await self._db.write(describe_image, attachment_id, found.width, found.height, thumbnail)
        return {"width": found.width, "height": found.height}

    async def download(self, user: UserRef, attachment_id: int, thumbnail: bool) -> Download:
        """What the user may fetch: their own upload, or an attachment of a message of
        theirs that is deleted neither for everyone nor for them; else `not_found`,
        the same as for an id that does not exist."""
        row, hidden = await self._db.read(_visible_facts, attachment_id, user.id)
        if row is None or not _may_see(row, user.id, hidden):
            raise not_found("no such attachment")
        if thumbnail:
            if row["thumbnail_sha256"] is None:
                raise not_found("that attachment has no thumbnail")
            name = row["name"].rsplit(".", 1)[0] + " (thumbnail).png"
            return Download(row["thumbnail_sha256"], row["thumbnail_size"], "image/png", name, True)
        inline = row["content_type"] in SAFE_IMAGES
        return Download(row["sha256"], row["size"], row["content_type"], row["name"], inline)

    def read(self, sha256: str, start: int, end: int) -> AsyncIterator[bytes]:
        return self._store.read(sha256, start, end)


def _may_see(row: Any, user_id: int, hidden: bool) -> bool:
    if row["message_id"] is None:
        return bool(row["uploader_id"] == user_id)
    if row["deleted_at"] is not None or hidden:
        return False
    return user_id in (row["sender_id"], row["recipient_id"])


def _visible_facts(conn: Any, attachment_id: int, user_id: int) -> tuple[Any, bool]:
    row = attachment_row(conn, attachment_id)
    if row is None or row["message_id"] is None:
        return row, False
    return row, (user_id, row["message_id"]) in hidden_pairs(conn, [row["message_id"]])


def _record_blob(conn: Any, written: Written) -> None:
    """The blob, touched first: a collector deciding to remove it waits for this
    transaction, then finds it in use (see `store.attachments.take_unreferenced`)."""
    record_blob(conn, written.sha256, written.size, utc_now())
    written.in_transaction(conn)


def _record_upload(
    conn: Any, user_id: int, written: Written, name: str, content_type: str, quota: int
) -> int | None:
    """The blob and the pending attachment, in one transaction; None past the quota
    (checked again here: uploads of one user may run side by side)."""
    if stored_bytes(conn, user_id) + written.size > quota:
        return None
    _record_blob(conn, written)
    return insert_attachment(
        conn,
        {
            "uploader_id": user_id,
            "message_id": None,
            "sha256": written.sha256,
            "name": name,
            "content_type": content_type,
            "size": written.size,
            "created_at": utc_now(),
        },
    )
