"""What happens after send: replies, edits, deletes, reactions, private reads.

Columns are only added (nullable, or with a constant default), so SQLite adds them
in place and PostgreSQL without rewriting `messages`; the new tables key on
`message_id`, so conversations of more than two people can come later.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 16:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from messenger.store.models import UtcDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NEW_MESSAGE_COLUMNS = ("reply_to_id", "edited_at", "deleted_at", "read_private")


def upgrade() -> None:
    op.add_column(
        "users", sa.Column("read_receipts", sa.Boolean(), nullable=False, server_default=sa.true())
    )
    op.add_column("messages", sa.Column("reply_to_id", sa.BigInteger(), nullable=True))
    op.add_column("messages", sa.Column("edited_at", UtcDateTime(), nullable=True))
    op.add_column("messages", sa.Column("deleted_at", UtcDateTime(), nullable=True))
    op.add_column(
        "messages",
        sa.Column("read_private", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    _create_keyed_table(
        "reactions",
        ("message_id", "user_id", "emoji"),
        sa.Column("emoji", sa.String(length=64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    _create_keyed_table(
        "hidden_messages",
        ("user_id", "message_id"),
        sa.Column("hidden_at", UtcDateTime(), nullable=False),
    )
    _create_keyed_table(
        "edit_keys",
        ("message_id", "client_id"),
        sa.Column("client_id", sa.String(length=64), nullable=False),
    )


def _create_keyed_table(name: str, key: tuple[str, ...], *columns: sa.Column[object]) -> None:
    """A table whose primary key is `key`, holding `message_id` and `user_id` (those of
    the key) as cascading references to their rows."""
    referenced = [("message_id", "messages"), ("user_id", "users")]
    ids = [(column, table) for column, table in referenced if column in key]
    op.create_table(
        name,
        *(sa.Column(column, ID, nullable=False) for column, _ in ids),
        *columns,
        *(
            sa.ForeignKeyConstraint(
                [column],
                [f"{table}.id"],
                name=op.f(f"fk_{name}_{column}_{table}"),
                ondelete="CASCADE",
            )
            for column, table in ids
        ),
        sa.PrimaryKeyConstraint(*key, name=op.f(f"pk_{name}")),
    )


def downgrade() -> None:
    for table in ("edit_keys", "hidden_messages", "reactions"):
        op.drop_table(table)
    with op.batch_alter_table("messages", schema=None) as batch_op:
        for name in NEW_MESSAGE_COLUMNS:
            batch_op.drop_column(name)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("read_receipts")
