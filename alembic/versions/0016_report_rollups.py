"""report_queue_quarters, report_agent_quarters, report_rollup_state: the quarter hours' figures
kept for fast reports

Revision ID: 0016
Revises: 0013
"""
from collections.abc import Sequence

import sqlalchemy as sa

import cti.platform.db.base
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


QUEUE_COUNTS = ("offered", "answered", "answered_in_sl", "abandoned", "abandoned_in_sl",
                "short_abandoned", "callbacks", "voicemails", "after_hours", "moved", "handled",
                "transfers_out")
QUEUE_FLOATS = ("wait_answered_s", "talk_s", "hold_s", "wrap_s", "longest_wait_answered_s")
AGENT_COUNTS = ("calls", "transfers_in", "transfers_out", "missed")
AGENT_FLOATS = ("on_call_s", "hold_s", "wrap_s", "ringing_s", "available_s", "logged_in_s")


def _figures(counts: tuple[str, ...], floats: tuple[str, ...]) -> list[sa.Column]:  # type: ignore[type-arg]
    return ([sa.Column(c, sa.Integer(), nullable=False) for c in counts]
            + [sa.Column(c, sa.Float(), nullable=False) for c in floats]
            + [sa.Column("extras", sa.JSON(), nullable=True)])


def upgrade() -> None:
    op.create_table(
        "report_queue_quarters",
        sa.Column("bucket", cti.platform.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        *_figures(QUEUE_COUNTS, QUEUE_FLOATS),
        sa.PrimaryKeyConstraint("bucket", "queue", name=op.f("pk_report_queue_quarters")),
    )
    op.create_table(
        "report_agent_quarters",
        sa.Column("bucket", cti.platform.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        *_figures(AGENT_COUNTS, AGENT_FLOATS),
        sa.PrimaryKeyConstraint("bucket", "agent_id", name=op.f("pk_report_agent_quarters")),
    )
    op.create_table(
        "report_rollup_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_rollup_state")),
    )


def downgrade() -> None:
    op.drop_table("report_rollup_state")
    op.drop_table("report_agent_quarters")
    op.drop_table("report_queue_quarters")
