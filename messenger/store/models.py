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
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
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


class Token(Base):
    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # SHA-256 of the token: a database leak reveals no usable token.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


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


class StreamEvent(Base):
    """One event of a user's stream: a new message or a receipt, at cursor `seq`."""

    __tablename__ = "stream_events"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # 1 new_message (message_id set), 2 receipt (payload set).
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


# The tables, for Core statements (the ORM classes type them as FromClause).
users = cast(Table, User.__table__)
tokens = cast(Table, Token.__table__)
messages = cast(Table, Message.__table__)
stream_events = cast(Table, StreamEvent.__table__)
blocks = cast(Table, Block.__table__)

EVENT_NEW_MESSAGE, EVENT_RECEIPT = 1, 2
