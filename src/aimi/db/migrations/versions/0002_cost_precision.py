"""usage cost to 10 decimals

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch_op:
        batch_op.alter_column("cost", type_=sa.Numeric(20, 10), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch_op:
        batch_op.alter_column("cost", type_=sa.Numeric(12, 6), existing_nullable=False)
