"""The tables. SQL is the truth: every message, receipt and stream position lives here.

Mapped classes describe the schema (and Alembic's autogenerate reads them); the hot
paths use their `__table__` with Core statements, which are many times faster than
ORM unit-of-work flushes for batches.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (which keeps no zone) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite makes only an INTEGER PRIMARY KEY an alias of the rowid (auto-assigned).
Id = BigInteger().with_variant(Integer(), "sqlite")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Head of the user's event stream: the cursor of its newest event. Bumped in the
    # same transaction that adds events; on PostgreSQL its row lock orders commits.
    stream_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    last_seen: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Off: the user's reads are private (docs/protocol.md 3.8).
    read_receipts: Mapped[bool] = mapped_column(Boolean, server_default=true())
    # Set by the operator: logins are refused until it is cleared (`messenger user`).
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Removed: the row stays so the name is never reused, with an unusable password
    # hash (''); the messages stay with the other party (docs/protocol.md 2).
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Token(Base):
    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # SHA-256 of the token: a database leak reveals no usable token.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # What the session list shows: the login's User-Agent and client address, and
    # when the token last authenticated (written at most once a minute per node).
    user_agent: Mapped[str | None] = mapped_column(String(256))
    address: Mapped[str | None] = mapped_column(String(64))
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        # Retries with the same client_id store one row, across restarts (G2); also
        # what a user sent, for the list of conversations.
        UniqueConstraint("sender_id", "client_id"),
        # History of a conversation, one index range per direction, and what a user
        # received. Without the status in it, a status mark leaves it alone.
        Index("ix_messages_received", "recipient_id", "sender_id", "id"),
        # The undelivered backlog of a recipient, in stream order: only messages
        # still `sent`, so it stays a few pages for everyone, and a commit writes a
        # few of its pages rather than a leaf per recipient (`bench.wal_frames`
        # shows what a commit writes; docs/dev/performance-log.md, 2026-12-04).
        Index(
            "ix_messages_undelivered",
            "recipient_id",
            "recipient_seq",
            sqlite_where=text("status = 0"),
            postgresql_where=text("status = 0"),
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    sender_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    recipient_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(Text)
    client_id: Mapped[str] = mapped_column(String(64))
    sent_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # 0 sent, 1 delivered, 2 read: only ever raised.
    status: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    read_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Cursor of this message's event in the recipient's stream, so the undelivered
    # backlog carries cursors without a join.
    recipient_seq: Mapped[int] = mapped_column(BigInteger)
    # The message this one answers (same conversation, checked by the writer). No
    # foreign key: SQLite cannot add one to an existing table without rebuilding it,
    # and messages are never removed.
    reply_to_id: Mapped[int | None] = mapped_column(BigInteger)
    edited_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Deleted for everyone: the body is wiped ('') in the same transaction.
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Read while the recipient's read receipts were off: its sender sees `delivered`.
    read_private: Mapped[bool] = mapped_column(Boolean, server_default=false())


class StreamEvent(Base):
    """One event of a user's stream: a new message or a receipt, at cursor `seq`."""

    __tablename__ = "stream_events"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # 1 new_message (message_id set), 2 receipt (payload set), 3 message_updated
    # (message_id set, payload the change's name: never the message's text).
    kind: Mapped[int] = mapped_column(SmallInteger)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    payload: Mapped[str | None] = mapped_column(Text)


class Block(Base):
    __tablename__ = "blocks"

    blocker_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    blocked_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Reaction(Base):
    """One user's emoji on one message."""

    __tablename__ = "reactions"

    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    emoji: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class HiddenMessage(Base):
    """A message one of its two users deleted for themselves."""

    __tablename__ = "hidden_messages"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    hidden_at: Mapped[datetime] = mapped_column(UtcDateTime())


class EditKey(Base):
    """The client ids of a message's edits, so that a retried edit is applied once.
    Only the key is kept, never an earlier body."""

    __tablename__ = "edit_keys"

    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class PushKey(Base):
    """The server's VAPID key pair: one row, made at the first start (docs/protocol.md
    3.9), so that every node signs with the same key."""

    __tablename__ = "push_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    private_pem: Mapped[str] = mapped_column(Text)
    public_key: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class PushSubscription(Base):
    """A way to reach a user's device (Web Push) or gateway (webhook), bound to the
    session that made it, and what it last told (see `store.push`)."""

    __tablename__ = "push_subscriptions"
    __table_args__ = (UniqueConstraint("user_id", "endpoint"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_id: Mapped[int] = mapped_column(ForeignKey("tokens.id", ondelete="CASCADE"), index=True)
    # "webpush" or "webhook".
    kind: Mapped[str] = mapped_column(String(16))
    endpoint: Mapped[str] = mapped_column(String(2048))
    p256dh: Mapped[str | None] = mapped_column(String(128))
    auth: Mapped[str | None] = mapped_column(String(64))
    # A webhook's HMAC key: kept as it is, since every request is signed with it.
    secret: Mapped[str | None] = mapped_column(String(128))
    label: Mapped[str | None] = mapped_column(String(64))
    preview: Mapped[bool] = mapped_column(Boolean, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    seen_seq: Mapped[int] = mapped_column(BigInteger)
    pushed_seq: Mapped[int] = mapped_column(BigInteger)
    last_unread: Mapped[int] = mapped_column(Integer, server_default="0")
    failures: Mapped[int] = mapped_column(Integer, server_default="0")
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Blob(Base):
    """A stored blob (in the configured `BlobStore`), by the SHA-256 of its bytes."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class BlobPart(Base):
    """A chunk of a blob in the database store, keyed by the blob's SHA-256, or by an
    upload's key until the upload is complete."""

    __tablename__ = "blob_parts"

    key: Mapped[str] = mapped_column(String(72), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Attachment(Base):
    """A file a user uploaded: pending until a send binds it to its message."""

    __tablename__ = "attachments"
    __table_args__ = (
        # A message's attachments, and the uploads no send took (for their expiry).
        Index("ix_attachments_message_id", "message_id"),
        Index("ix_attachments_uploader_id", "uploader_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    uploader_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(String(64))
    thumbnail_sha256: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(127))
    size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


# The tables, for Core statements (the ORM classes type them as FromClause).
users = cast(Table, User.__table__)
tokens = cast(Table, Token.__table__)
messages = cast(Table, Message.__table__)
stream_events = cast(Table, StreamEvent.__table__)
blocks = cast(Table, Block.__table__)
reactions = cast(Table, Reaction.__table__)
hidden_messages = cast(Table, HiddenMessage.__table__)
edit_keys = cast(Table, EditKey.__table__)
push_keys = cast(Table, PushKey.__table__)
push_subscriptions = cast(Table, PushSubscription.__table__)
blobs = cast(Table, Blob.__table__)
blob_parts = cast(Table, BlobPart.__table__)
attachments = cast(Table, Attachment.__table__)

EVENT_NEW_MESSAGE, EVENT_RECEIPT, EVENT_MESSAGE_UPDATED = 1, 2, 3
