"""message_outbox, customer_contacts: follow-up messages (e-mail, SMS) with retries

Revision ID: 0015
Revises: 0012
"""
from collections.abc import Sequence

import sqlalchemy as sa

import cti.platform.db.base
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = cti.platform.db.base.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "message_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("recipient", sa.String(length=255), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("next_attempt_at", UTC(timezone=True), nullable=True),
        sa.Column("sent_at", UTC(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_outbox")),
        sa.UniqueConstraint("key", name=op.f("uq_message_outbox_key")),
    )
    with op.batch_alter_table("message_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_message_outbox_due", ["status", "next_attempt_at"])
        batch_op.create_index(batch_op.f("ix_message_outbox_order_id"), ["order_id"])
    op.create_table(
        "customer_contacts",
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"],
            name=op.f("fk_customer_contacts_customer_id_customers"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customer_contacts")),
    )


def downgrade() -> None:
    op.drop_table("customer_contacts")
    with op.batch_alter_table("message_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_outbox_order_id"))
        batch_op.drop_index("ix_message_outbox_due")
    op.drop_table("message_outbox")
