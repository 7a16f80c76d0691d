"""routing decisions log and agent state events

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa

import cti.platform.db.base
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "routing_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=24), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("filter", sa.String(length=128), nullable=False),
        sa.Column("waited_s", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(length=512), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_decisions")),
    )
    with op.batch_alter_table("routing_decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_routing_decisions_call_id"), ["call_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_routing_decisions_at"), ["at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_routing_decisions_agent_id"), ["agent_id"], unique=False
        )
    op.create_table(
        "agent_state_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("old_state", sa.String(length=16), nullable=False),
        sa.Column("new_state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("call_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_state_events")),
    )
    with op.batch_alter_table("agent_state_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agent_state_events_agent_id"), ["agent_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_agent_state_events_at"), ["at"], unique=False)


def downgrade() -> None:
    op.drop_table("agent_state_events")
    op.drop_table("routing_decisions")
