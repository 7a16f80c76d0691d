"""call_recordings and call_recording_pauses: calls recorded per queue setting

Revision ID: 0012
Revises: 0011
"""
from collections.abc import Sequence

import sqlalchemy as sa

import cti.platform.db.base
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call_recordings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("segment", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("bridge_id", sa.String(length=128), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("started_at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("deleted_at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_recordings")),
        sa.UniqueConstraint("name", name=op.f("uq_call_recordings_name")),
    )
    with op.batch_alter_table("call_recordings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_call_recordings_call_id"), ["call_id"])
        batch_op.create_index(batch_op.f("ix_call_recordings_agent_id"), ["agent_id"])
        batch_op.create_index(batch_op.f("ix_call_recordings_status"), ["status"])
        batch_op.create_index(batch_op.f("ix_call_recordings_started_at"), ["started_at"])
    op.create_table(
        "call_recording_pauses",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("paused_at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("resumed_at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("by", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["recording_id"], ["call_recordings.id"],
            name=op.f("fk_call_recording_pauses_recording_id_call_recordings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_recording_pauses")),
    )
    with op.batch_alter_table("call_recording_pauses", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_call_recording_pauses_recording_id"), ["recording_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("call_recording_pauses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_call_recording_pauses_recording_id"))
    op.drop_table("call_recording_pauses")
    with op.batch_alter_table("call_recordings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_call_recordings_started_at"))
        batch_op.drop_index(batch_op.f("ix_call_recordings_status"))
        batch_op.drop_index(batch_op.f("ix_call_recordings_agent_id"))
        batch_op.drop_index(batch_op.f("ix_call_recordings_call_id"))
    op.drop_table("call_recordings")
