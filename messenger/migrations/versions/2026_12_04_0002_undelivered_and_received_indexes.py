"""Indexes that a status mark leaves alone: the undelivered backlog as a partial
index, and conversations read from the recipient's side.

The backlog index held every message by (recipient, status, seq): each mark moved an
entry, and each commit wrote a leaf of it per recipient. The undelivered messages
alone are a few pages for everyone; history reads both directions of a conversation
from (recipient, sender, id) as it did from (sender, recipient, id), and the list of
conversations finds what a user received there, and what they sent in the
(sender, client_id) index. docs/dev/performance-log.md, "2026-12-04 in the evening",
has what it changed.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 18:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNDELIVERED = sa.text("status = 0")
# (name, columns, partial-index condition) of the indexes made, and those dropped.
NEW_INDEXES = (
    ("ix_messages_received", ["recipient_id", "sender_id", "id"], None),
    ("ix_messages_undelivered", ["recipient_id", "recipient_seq"], UNDELIVERED),
)
OLD_INDEXES = ("ix_messages_conversation", "ix_messages_backlog")


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        _upgrade_postgresql()
        return
    with op.batch_alter_table("messages", schema=None) as batch_op:
        for name, columns, where in NEW_INDEXES:
            batch_op.create_index(name, columns, unique=False, sqlite_where=where)
        for name in OLD_INDEXES:
            batch_op.drop_index(name)


def _upgrade_postgresql() -> None:
    """The indexes built CONCURRENTLY: sends and marks go on while each is read from
    a large table (a plain build holds every write to `messages` until it commits).

    Such a build runs outside a transaction, and one that fails (a cancel, a lost
    connection) leaves an invalid index of its name behind; each index is dropped
    first if it is there, so running the upgrade again finishes the job.
    """
    with op.get_context().autocommit_block():
        for name, columns, where in NEW_INDEXES:
            op.drop_index(name, "messages", if_exists=True, postgresql_concurrently=True)
            op.create_index(
                name, "messages", columns, postgresql_where=where, postgresql_concurrently=True
            )
        for name in OLD_INDEXES:
            op.drop_index(name, "messages", if_exists=True, postgresql_concurrently=True)


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_backlog", ["recipient_id", "status", "recipient_seq"], unique=False
        )
        batch_op.create_index(
            "ix_messages_conversation", ["sender_id", "recipient_id", "id"], unique=False
        )
        batch_op.drop_index("ix_messages_undelivered")
        batch_op.drop_index("ix_messages_received")
