"""who accepted a model's terms, and whether they were accepted explicitly

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("terms_acceptances") as batch_op:
        batch_op.add_column(sa.Column("accepted_by", sa.String(length=160), nullable=True))
        batch_op.add_column(sa.Column("explicit", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("terms_acceptances") as batch_op:
        batch_op.drop_column("explicit")
        batch_op.drop_column("accepted_by")
