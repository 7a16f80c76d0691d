"""handover_entries and handover_items: the shift handover log

Revision ID: 0014
Revises: 0016
"""
from collections.abc import Sequence

import sqlalchemy as sa

import cti.platform.db.base
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "handover_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("shift", sa.String(length=64), nullable=False),
        sa.Column("next_shift", sa.String(length=64), nullable=False),
        sa.Column("written_by", sa.String(length=96), nullable=False),
        sa.Column("written_at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handover_entries")),
    )
    with op.batch_alter_table("handover_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_handover_entries_next_shift"), ["next_shift"])
        batch_op.create_index(batch_op.f("ix_handover_entries_written_at"), ["written_at"])
    op.create_table(
        "handover_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("work_order_id", sa.Integer(), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=96), nullable=True),
        sa.Column("acknowledged_at", cti.platform.db.base.UtcDateTime(timezone=True),
                  nullable=True),
        sa.Column("ack_note", sa.Text(), nullable=False),
        sa.Column("reminders", sa.Integer(), nullable=False),
        sa.Column("next_reminder_at", cti.platform.db.base.UtcDateTime(timezone=True),
                  nullable=True),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["handover_entries.id"],
            name=op.f("fk_handover_items_entry_id_handover_entries"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["work_order_id"], ["work_orders.id"],
            name=op.f("fk_handover_items_work_order_id_work_orders"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handover_items")),
    )
    with op.batch_alter_table("handover_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_handover_items_entry_id"), ["entry_id"])
        batch_op.create_index(batch_op.f("ix_handover_items_work_order_id"), ["work_order_id"])
        batch_op.create_index("ix_handover_items_next_reminder_at", ["next_reminder_at"])


def downgrade() -> None:
    op.drop_table("handover_items")
    op.drop_table("handover_entries")
