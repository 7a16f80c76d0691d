"""ivr_checkpoints (each live call's IVR position) and calls.queued_at (when the caller first
entered the ACD): what an adopting process needs to go on with the right remaining wait and
the caller's place in the queue

Revision ID: 0018
Revises: 0015
"""
from collections.abc import Sequence

import sqlalchemy as sa

import cti.platform.db.base
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ivr_checkpoints",
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_ivr_checkpoints")),
    )
    with op.batch_alter_table("calls") as batch:
        batch.add_column(
            sa.Column("queued_at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("queued_at")
    op.drop_table("ivr_checkpoints")
