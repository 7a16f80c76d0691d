"""ivr procedure runs, steps and script departures

Revision ID: 0003
Revises: 0001
"""
from collections.abc import Sequence

import sqlalchemy as sa

import cti.platform.db.base
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ivr_procedure_runs",
        sa.Column("id", sa.String(length=96), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("procedure", sa.String(length=32), nullable=False),
        sa.Column("started_by", sa.String(length=16), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("started_at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.Column("hung_up", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ivr_procedure_runs")),
    )
    with op.batch_alter_table("ivr_procedure_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ivr_procedure_runs_call_id"), ["call_id"])
        batch_op.create_index(batch_op.f("ix_ivr_procedure_runs_started_at"), ["started_at"])
    op.create_table(
        "ivr_procedure_steps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=96), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("offset_ms", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["ivr_procedure_runs.id"],
            name=op.f("fk_ivr_procedure_steps_run_id_ivr_procedure_runs"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ivr_procedure_steps")),
    )
    with op.batch_alter_table("ivr_procedure_steps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ivr_procedure_steps_run_id"), ["run_id"])
    op.create_table(
        "ivr_script_departures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=96), nullable=True),
        sa.Column("at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("what", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ivr_script_departures")),
    )
    with op.batch_alter_table("ivr_script_departures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ivr_script_departures_call_id"), ["call_id"])


def downgrade() -> None:
    op.drop_table("ivr_script_departures")
    op.drop_table("ivr_procedure_steps")
    op.drop_table("ivr_procedure_runs")
