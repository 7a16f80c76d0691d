"""The built-in customer store: customers and their phone numbers (E.164, one row each).

A customer's call history is not stored here: it is read from the call log (`calls.caller_number`)
joined on `customer_numbers.number`, so it can never drift from the calls themselves.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cti.platform.db.base import Base, UtcDateTime
from cti.platform.db.tables.calls import CallRow


class CustomerRow(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    surname: Mapped[str] = mapped_column(String(128), default="", index=True)
    title: Mapped[str | None] = mapped_column(String(8))  # cti.domain.crm.Title value
    tier: Mapped[str] = mapped_column(String(32), default="standard", index=True)
    company: Mapped[str] = mapped_column(String(128), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    numbers: Mapped[list[CustomerNumberRow]] = relationship(
        back_populates="customer",
        cascade="all, delete-orphan",
        order_by="CustomerNumberRow.position",
        lazy="selectin",
    )


class CustomerNumberRow(Base):
    __tablename__ = "customer_numbers"

    # A number belongs to one customer: the screen pop must resolve a caller id to one record.
    number: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)  # 0 = main number

    customer: Mapped[CustomerRow] = relationship(back_populates="numbers")


class CallDispositionRow(Base):
    """What the agent recorded at wrap-up: the call's outcome and a note (one per call)."""

    __tablename__ = "call_dispositions"

    call_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(64), index=True)
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    outcome: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


# The history query looks calls up by caller number; the index belongs to that query, so it is
# declared here (on the calls table) and created by migration 0004.
Index("ix_calls_caller_number", CallRow.caller_number)
