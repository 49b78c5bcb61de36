"""Account and session controls: when an account was disabled or removed, and what a
session shows of itself (the login's user agent and address, when it was last used).

Columns are only added, all nullable, so SQLite adds them in place and PostgreSQL
without rewriting a table; the downgrade drops them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 20:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from messenger.store.models import UtcDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

USER_COLUMNS = ("disabled_at", "deleted_at")
TOKEN_COLUMNS = ("user_agent", "address", "last_used_at")


def upgrade() -> None:
    for name in USER_COLUMNS:
        op.add_column("users", sa.Column(name, UtcDateTime(), nullable=True))
    op.add_column("tokens", sa.Column("user_agent", sa.String(length=256), nullable=True))
    op.add_column("tokens", sa.Column("address", sa.String(length=64), nullable=True))
    op.add_column("tokens", sa.Column("last_used_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    # SQLite drops a column in place since 3.35 (no index or constraint names these).
    for name in TOKEN_COLUMNS:
        op.drop_column("tokens", name)
    for name in USER_COLUMNS:
        op.drop_column("users", name)
