"""call-back requests and voicemails (queue and after-hours fallbacks)

Revision ID: 0006
Revises: 0005
"""
from collections.abc import Sequence

import sqlalchemy as sa

import cti.platform.db.base
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "callback_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("caller_number", sa.String(length=64), nullable=False),
        sa.Column("lang", sa.String(length=8), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column(
            "requested_at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_requests")),
    )
    with op.batch_alter_table("callback_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_callback_requests_call_id"), ["call_id"])
        batch_op.create_index(batch_op.f("ix_callback_requests_requested_at"), ["requested_at"])
    op.create_table(
        "voicemails",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("caller_number", sa.String(length=64), nullable=False),
        sa.Column("mailbox", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column("lang", sa.String(length=8), nullable=False),
        sa.Column("recording", sa.String(length=128), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("started_at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voicemails")),
        sa.UniqueConstraint("recording", name=op.f("uq_voicemails_recording")),
    )
    with op.batch_alter_table("voicemails", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_voicemails_call_id"), ["call_id"])
        batch_op.create_index(batch_op.f("ix_voicemails_recorded_at"), ["recorded_at"])


def downgrade() -> None:
    op.drop_table("voicemails")
    op.drop_table("callback_requests")
