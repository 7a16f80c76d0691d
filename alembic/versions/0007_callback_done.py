"""call-back requests: when a supervisor marked one done

Revision ID: 0007
Revises: 0006
"""
from collections.abc import Sequence

import sqlalchemy as sa

import cti.platform.db.base
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("callback_requests", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("done_at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("callback_requests", schema=None) as batch_op:
        batch_op.drop_column("done_at")
