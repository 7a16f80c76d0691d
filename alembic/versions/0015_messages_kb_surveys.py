"""message_outbox, customer_contacts: follow-up messages (e-mail, SMS) with retries;
kb_articles, kb_postings, kb_terms, kb_gaps: the knowledge base and its bigram index;
surveys: after-call satisfaction surveys; work_orders (owner, status): an agent's open orders

Revision ID: 0015
Revises: 0014
"""
from collections.abc import Sequence

import sqlalchemy as sa

import cti.platform.db.base
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
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
    op.create_table(
        "kb_articles",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
        sa.Column("author", sa.String(length=96), nullable=False),
        sa.Column("gap_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_articles")),
    )
    op.create_index(op.f("ix_kb_articles_language"), "kb_articles", ["language"])
    op.create_table(
        "kb_postings",
        sa.Column("term", sa.String(length=32), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"], ["kb_articles.id"],
            name=op.f("fk_kb_postings_article_id_kb_articles"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("term", "article_id", name=op.f("pk_kb_postings")),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_kb_postings_article_id", "kb_postings", ["article_id"])
    # one-term searches read a term's best-weighted articles first, from the index alone
    op.create_index("ix_kb_postings_term_weight", "kb_postings", ["term", "weight", "article_id"])
    if op.get_bind().dialect.name == "postgresql":
        # the search reads (article, weight) of a term from the index alone
        op.create_index("ix_kb_postings_term_cover", "kb_postings", ["term", "article_id"],
                        postgresql_include=["weight"])
    op.create_table(
        "kb_terms",
        sa.Column("term", sa.String(length=32), nullable=False),
        sa.Column("articles", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("term", name=op.f("pk_kb_terms")),
    )
    op.create_table(
        "kb_gaps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("asked_by", sa.String(length=96), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("call_id", sa.String(length=128), nullable=True),
        sa.Column("asked_at", UTC(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("answered_by", sa.String(length=96), nullable=True),
        sa.Column("answered_at", UTC(timezone=True), nullable=True),
        sa.Column("article_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_gaps")),
    )
    op.create_index(op.f("ix_kb_gaps_status"), "kb_gaps", ["status"])
    # an agent's open work orders: read by owner and status, not every order they closed
    op.create_index("ix_work_orders_owner_status", "work_orders", ["owner", "status"])
    op.create_table(
        "surveys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", UTC(timezone=True), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("call_id", sa.String(length=128), nullable=True),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column("work_order_id", sa.Integer(), nullable=True),
        sa.Column("speed", sa.Integer(), nullable=True),
        sa.Column("resolved", sa.Boolean(), nullable=True),
        sa.Column("attitude", sa.Integer(), nullable=True),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("recorded_by", sa.String(length=96), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_surveys")),
    )
    for column in ("at", "call_id", "agent_id", "queue", "work_order_id"):
        op.create_index(op.f(f"ix_surveys_{column}"), "surveys", [column])


def downgrade() -> None:
    op.drop_table("surveys")
    op.drop_index("ix_work_orders_owner_status", "work_orders")
    op.drop_table("kb_gaps")
    op.drop_table("kb_terms")
    op.drop_table("kb_postings")
    op.drop_table("kb_articles")
    op.drop_table("customer_contacts")
    with op.batch_alter_table("message_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_outbox_order_id"))
        batch_op.drop_index("ix_message_outbox_due")
    op.drop_table("message_outbox")
