"""crm customers, customer numbers, users

Revision ID: 0004
Revises: 0001

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import cti.platform.db.base  # noqa: F401  (custom column types)


revision: str = "0004"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("surname", sa.String(length=128), nullable=False),
        sa.Column("title", sa.String(length=8), nullable=True),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("company", sa.String(length=128), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("created_at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customers_surname"), ["surname"], unique=False)
        batch_op.create_index(batch_op.f("ix_customers_tier"), ["tier"], unique=False)

    op.create_table(
        "customer_numbers",
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"],
            name=op.f("fk_customer_numbers_customer_id_customers"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_customer_numbers")),
    )
    with op.batch_alter_table("customer_numbers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_customer_numbers_customer_id"), ["customer_id"], unique=False
        )

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("display_name", sa.String(length=128), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("agent_id", name=op.f("uq_users_agent_id")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )

    op.create_table(
        "call_dispositions",
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", cti.platform.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"],
            name=op.f("fk_call_dispositions_customer_id_customers"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_call_dispositions")),
    )
    with op.batch_alter_table("call_dispositions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_call_dispositions_agent_id"), ["agent_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_call_dispositions_customer_id"), ["customer_id"], unique=False
        )

    # The customer's call history is read from the call log by caller number.
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.create_index("ix_calls_caller_number", ["caller_number"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index("ix_calls_caller_number")
    with op.batch_alter_table("call_dispositions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_call_dispositions_customer_id"))
        batch_op.drop_index(batch_op.f("ix_call_dispositions_agent_id"))
    op.drop_table("call_dispositions")
    op.drop_table("users")
    with op.batch_alter_table("customer_numbers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_numbers_customer_id"))
    op.drop_table("customer_numbers")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customers_tier"))
        batch_op.drop_index(batch_op.f("ix_customers_surname"))
    op.drop_table("customers")
