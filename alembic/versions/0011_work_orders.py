"""work_orders and work_order_history: service requests and complaints with their audit

Revision ID: 0011
Revises: 0010
"""
from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from cti.platform.db.base import UtcDateTime

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "work_orders",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("complaint", sa.Boolean(), nullable=False),
        sa.Column("severity", sa.String(length=32), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=96), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=96), nullable=False),
        sa.Column("due_at", UtcDateTime(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("call_id", sa.String(length=128), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("ack_due_at", UtcDateTime(), nullable=True),
        sa.Column("acknowledged_at", UtcDateTime(), nullable=True),
        sa.Column("last_progress_at", UtcDateTime(), nullable=True),
        sa.Column("reminders_sent", sa.Integer(), nullable=False),
        sa.Column("overdue_alerted", sa.Boolean(), nullable=False),
        sa.Column("escalated", sa.JSON(), nullable=False),
        sa.Column("escalated_to", sa.JSON(), nullable=False),
        sa.Column("next_timer_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"],
            name=op.f("fk_work_orders_customer_id_customers"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_orders")),
    )
    for column in ("status", "owner", "call_id", "customer_id", "next_timer_at"):
        op.create_index(op.f(f"ix_work_orders_{column}"), "work_orders", [column], unique=False)
    op.create_table(
        "work_order_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=96), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["work_orders.id"],
            name=op.f("fk_work_order_history_order_id_work_orders"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_order_history")),
    )
    op.create_index(
        "ix_work_order_history_order", "work_order_history", ["order_id", "position"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_work_order_history_order", table_name="work_order_history")
    op.drop_table("work_order_history")
    for column in ("status", "owner", "call_id", "customer_id", "next_timer_at"):
        op.drop_index(op.f(f"ix_work_orders_{column}"), table_name="work_orders")
    op.drop_table("work_orders")
