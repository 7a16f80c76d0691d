"""survey_offers: every survey offered to a caller (the response rate's denominator);
surveys.offered_at: when a keypad survey was offered (the reports count it there)

Revision ID: 0019
Revises: 0018
"""
from collections.abc import Sequence

import sqlalchemy as sa

import cti.platform.db.base
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = cti.platform.db.base.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "survey_offers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", UTC(timezone=True), nullable=False),
        sa.Column("call_id", sa.String(length=128), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_offers")),
    )
    op.create_index(op.f("ix_survey_offers_at"), "survey_offers", ["at"])
    op.create_index(op.f("ix_survey_offers_call_id"), "survey_offers", ["call_id"])
    with op.batch_alter_table("surveys") as batch_op:
        batch_op.add_column(sa.Column("offered_at", UTC(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("surveys") as batch_op:
        batch_op.drop_column("offered_at")
    op.drop_table("survey_offers")
