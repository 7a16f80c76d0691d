"""report_rollups and report_rollup_state: quarter-hour figures kept for fast reports

Revision ID: 0016
Revises: 0012
"""
from collections.abc import Sequence

import sqlalchemy as sa

import cti.platform.db.base
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "report_rollups",
        sa.Column("bucket", cti.platform.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=1), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "kind", "key", name=op.f("pk_report_rollups")),
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
    op.drop_table("report_rollups")
