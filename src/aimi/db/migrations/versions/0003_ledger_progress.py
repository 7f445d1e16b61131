"""a ledger row from admission on: its state, its process and its quota reservation

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch_op:
        batch_op.add_column(
            sa.Column("state", sa.String(length=16), nullable=False, server_default="completed")
        )
        batch_op.add_column(sa.Column("instance", sa.String(length=160), nullable=True))
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reservation", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("reserved_tokens", sa.Integer(), nullable=True))
        batch_op.create_index("ix_usage_state", ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch_op:
        batch_op.drop_index("ix_usage_state")
        for column in ("reserved_tokens", "reservation", "updated_at", "instance", "state"):
            batch_op.drop_column(column)
