"""Persistence of customers, their numbers, call dispositions, and the history query over calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.domain.crm import CallSummary, Customer, Title, lookup_key, number_variants
from cti.platform.clock import Clock, SystemClock
from cti.platform.db.base import read_sessions
from cti.platform.db.tables.calls import CallRow
from cti.platform.db.tables.crm import CallDispositionRow, CustomerNumberRow, CustomerRow
from cti.platform.errors import Conflict, NotFound


def _to_customer(row: CustomerRow) -> Customer:
    return Customer(
        id=row.id,
        numbers=tuple(n.number for n in row.numbers),
        name=row.name,
        surname=row.surname,
        title=Title(row.title) if row.title else None,
        tier=row.tier,
        company=row.company,
        notes=row.notes,
    )


def _fill(row: CustomerRow, c: Customer, now: datetime) -> None:
    row.name = c.name
    row.surname = c.surname
    row.title = c.title.value if c.title else None
    row.tier = c.tier
    row.company = c.company
    row.notes = c.notes
    row.updated_at = now


async def _set_numbers(db: AsyncSession, customer_id: int, numbers: Sequence[str]) -> None:
    """Replace the customer's numbers (they are primary keys: delete, flush, then insert)."""
    await db.execute(delete(CustomerNumberRow).where(CustomerNumberRow.customer_id == customer_id))
    await db.flush()
    db.add_all(
        CustomerNumberRow(number=n, customer_id=customer_id, position=i)
        for i, n in enumerate(numbers)
    )
    await db.flush()


def _outcome(call: Any, disposition: str | None) -> str:
    if disposition:
        return disposition
    if call.agent_id:
        return "answered"
    if call.ended_at is not None:
        return "abandoned" if call.queue else "ended"
    return str(call.state)


@dataclass
class ImportOutcome:
    added: int = 0
    updated: int = 0
    conflicts: list[tuple[int, str]] = field(default_factory=list)  # (index in batch, reason)


def _owner_query() -> Any:
    """The customer owning :number, with every number of theirs in order."""
    owner = CustomerNumberRow.__table__.alias("owner")
    sibling = CustomerNumberRow.__table__.alias("sibling")
    c = CustomerRow.__table__
    return (
        select(c, sibling.c.number)
        .select_from(owner.join(c, c.c.id == owner.c.customer_id).join(
            sibling, sibling.c.customer_id == c.c.id))
        .where(owner.c.number == bindparam("number"))
        .order_by(sibling.c.position)
    )


def _history_query() -> Any:
    """The last :limit calls from any of :spellings, with their wrap-up outcome."""
    calls = CallRow.__table__
    return (
        select(calls.c.id, calls.c.arrived_at, calls.c.agent_id, calls.c.queue,
               calls.c.ended_at, calls.c.state, CallDispositionRow.outcome)
        .select_from(calls.outerjoin(
            CallDispositionRow, CallDispositionRow.call_id == calls.c.id))
        .where(calls.c.caller_number.in_(bindparam("spellings", expanding=True)))
        .order_by(calls.c.arrived_at.desc())
        .limit(bindparam("limit"))
    )


# The screen pop's two statements, built once: building them per call (two table aliases and
# their column collections) cost more CPU than running them, on every arriving call's path.
_OWNER_QUERY = _owner_query()
_HISTORY_QUERY = _history_query()


class CustomerRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock | None = None):
        self._sessions = sessions
        self._reads = read_sessions(sessions)  # docs/storage.md
        self._clock = clock or SystemClock()

    async def by_number(self, e164: str) -> Customer | None:
        async with self._reads() as db:
            row = await db.scalar(
                select(CustomerRow)
                .join(CustomerNumberRow)
                .where(CustomerNumberRow.number == e164)
            )
            return _to_customer(row) if row is not None else None

    async def by_number_with_history(
        self, e164: str, limit: int
    ) -> tuple[Customer | None, list[CallSummary]]:
        """The pop's query: the customer owning `e164` and their last calls, in one session and
        two Core statements (the ORM's relationship loading doubled the screen-pop latency)."""
        # Read-only: on SQLite outside a transaction (each read is its own), no BEGIN round
        # trip on every arriving call's path and no wait behind a writer.
        async with self._reads() as db:
            rows = (await db.execute(_OWNER_QUERY, {"number": e164})).all()
            customer: Customer | None = None
            if rows:
                first = rows[0]
                customer = Customer(
                    id=first.id, numbers=tuple(r.number for r in rows), name=first.name,
                    surname=first.surname, title=Title(first.title) if first.title else None,
                    tier=first.tier, company=first.company, notes=first.notes,
                )
            numbers = customer.numbers if customer else (e164,)
            history = await self._history_in(db, numbers, limit)
        return customer, history

    async def get(self, customer_id: int) -> Customer:
        async with self._reads() as db:
            row = await db.get(CustomerRow, customer_id)
            if row is None:
                raise NotFound(f"no customer {customer_id}")
            return _to_customer(row)

    async def search(self, text: str, limit: int = 20) -> list[Customer]:
        """By name, surname or company (substring), or by phone number (any spelling)."""
        text = text.strip()
        conditions: list[Any] = []
        if text:
            like = f"%{text}%"
            conditions += [
                CustomerRow.name.ilike(like),
                CustomerRow.surname.ilike(like),
                CustomerRow.company.ilike(like),
            ]
            number = lookup_key(text)
            if number is not None:
                conditions.append(CustomerNumberRow.number == number)
            # A national spelling ("0305551") is a substring of the E.164 without its trunk 0.
            digits = "".join(ch for ch in text if ch.isdigit()).lstrip("0")
            if len(digits) >= 4:
                conditions.append(CustomerNumberRow.number.like(f"%{digits}%"))
        stmt = select(CustomerRow).outerjoin(CustomerNumberRow).distinct()
        if conditions:
            stmt = stmt.where(or_(*conditions))
        stmt = stmt.order_by(CustomerRow.surname, CustomerRow.name, CustomerRow.id).limit(limit)
        async with self._reads() as db:
            rows = (await db.scalars(stmt)).unique().all()
            return [_to_customer(r) for r in rows]

    async def add(self, customer: Customer) -> Customer:
        now = self._clock.now()
        async with self._sessions() as db:
            row = CustomerRow(created_at=now)
            _fill(row, customer, now)
            db.add(row)
            try:
                await db.flush()
                await _set_numbers(db, row.id, customer.numbers)
                await db.commit()
            except IntegrityError:
                raise Conflict(
                    f"a number of {', '.join(customer.numbers)} belongs to another customer"
                ) from None
            await db.refresh(row, ["numbers"])
            return _to_customer(row)

    async def replace(self, customer: Customer) -> Customer:
        """Store `customer` (which has an id) as it is now."""
        if customer.id is None:
            raise ValueError("replace needs a customer id")
        now = self._clock.now()
        async with self._sessions() as db:
            row = await db.get(CustomerRow, customer.id)
            if row is None:
                raise NotFound(f"no customer {customer.id}")
            _fill(row, customer, now)
            try:
                await _set_numbers(db, row.id, customer.numbers)
                await db.commit()
            except IntegrityError:
                raise Conflict(
                    f"a number of {', '.join(customer.numbers)} belongs to another customer"
                ) from None
            await db.refresh(row, ["numbers"])
            return _to_customer(row)

    async def import_batch(self, customers: Sequence[Customer]) -> ImportOutcome:
        """Insert new customers, update those that own one of the row's numbers. A row whose
        numbers belong to several stored customers is skipped and reported by its index."""
        outcome = ImportOutcome()
        now = self._clock.now()
        async with self._sessions() as db, db.begin():
            for index, c in enumerate(customers):
                owners = set(
                    (
                        await db.scalars(
                            select(CustomerNumberRow.customer_id).where(
                                CustomerNumberRow.number.in_(c.numbers)
                            )
                        )
                    ).all()
                )
                if len(owners) > 1:
                    outcome.conflicts.append(
                        (index, f"numbers {', '.join(c.numbers)} belong to several customers")
                    )
                    continue
                row = await db.get(CustomerRow, owners.pop()) if owners else None
                if row is not None:
                    outcome.updated += 1
                else:
                    row = CustomerRow(created_at=now)
                    db.add(row)
                    outcome.added += 1
                _fill(row, c, now)
                await db.flush()
                await _set_numbers(db, row.id, c.numbers)
        return outcome

    async def count(self) -> int:
        async with self._reads() as db:
            return int(await db.scalar(select(func.count()).select_from(CustomerRow)) or 0)

    async def history(self, customer: Customer, limit: int = 5) -> list[CallSummary]:
        """The customer's last calls, newest first, from the call log (any spelling of a number)."""
        async with self._reads() as db:
            return await self._history_in(db, customer.numbers, limit)

    async def _history_in(
        self, db: AsyncSession, numbers: Sequence[str], limit: int
    ) -> list[CallSummary]:
        spellings = [v for n in numbers for v in number_variants(n)]
        if not spellings:
            return []
        rows = (await db.execute(_HISTORY_QUERY, {"spellings": spellings, "limit": limit})).all()
        return [
            CallSummary(call_id=r.id, at=r.arrived_at, outcome=_outcome(r, r.outcome),
                        agent_id=r.agent_id, queue=r.queue)
            for r in rows
        ]

    async def record_disposition(
        self, *, call_id: str, agent_id: str, customer_id: int | None, outcome: str, note: str
    ) -> None:
        """Insert or replace the wrap-up record of a call."""
        async with self._sessions() as db, db.begin():
            row = await db.get(CallDispositionRow, call_id)
            if row is None:
                row = CallDispositionRow(call_id=call_id, created_at=self._clock.now())
                db.add(row)
            row.agent_id = agent_id
            row.customer_id = customer_id
            row.outcome = outcome
            row.note = note
