"""The shift handover log, pure (docs/shift_handover.md).

A shift writes an entry for the next one: a note and the items the next shift must pick up,
each maybe linked to a work order. Someone of the next shift acknowledges each item (not the
writer: a shift does not take over from itself). An item not acknowledged is reminded
`remind_after` after the entry was written, then every `remind_every`, until it is.

No clock is read: the instant is passed in; `next_reminder(item)` is the next instant the
driver must look (None once acknowledged).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta


class HandoverError(ValueError):
    """A command that does not apply to the entry or item as it is."""


@dataclass(frozen=True, slots=True)
class ReminderPolicy:
    remind_after: timedelta = timedelta(minutes=30)
    remind_every: timedelta = timedelta(minutes=30)

    def __post_init__(self) -> None:
        if self.remind_after <= timedelta(0) or self.remind_every <= timedelta(0):
            raise ValueError("handover reminders need positive intervals")


@dataclass(frozen=True, slots=True)
class HandoverItem:
    id: int
    entry_id: int
    text: str
    work_order_id: int | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    ack_note: str = ""
    reminders: int = 0
    next_reminder_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.acknowledged_at is None


@dataclass(frozen=True, slots=True)
class HandoverEntry:
    id: int
    shift: str  # the shift handing over ("2026-12-01 day")
    next_shift: str  # the shift taking over ("2026-12-01 night")
    written_by: str
    written_at: datetime
    note: str
    items: tuple[HandoverItem, ...] = ()

    @property
    def open_items(self) -> tuple[HandoverItem, ...]:
        return tuple(i for i in self.items if i.open)


@dataclass(frozen=True, slots=True)
class NewItem:
    text: str
    work_order_id: int | None = None


def first_reminder(policy: ReminderPolicy, written_at: datetime) -> datetime:
    return written_at + policy.remind_after


def check_new(shift: str, next_shift: str, note: str, items: tuple[NewItem, ...]) -> None:
    """What an entry must have: the shifts named, and a note or at least one item."""
    if not shift.strip() or not next_shift.strip():
        raise HandoverError("name the shift handing over and the shift taking over")
    if shift.strip() == next_shift.strip():
        raise HandoverError(f"a shift hands over to another shift, not to itself ({shift!r})")
    if not note.strip() and not items:
        raise HandoverError("an entry needs a note or at least one item")
    for n, item in enumerate(items, 1):
        if not item.text.strip():
            raise HandoverError(f"item {n} has no text")


def acknowledge(entry: HandoverEntry, item: HandoverItem, by: str, at: datetime,
                note: str = "") -> HandoverItem:
    """The next shift picked the item up."""
    if item.entry_id != entry.id:
        raise HandoverError(f"item {item.id} is not in handover {entry.id}")
    if not item.open:
        raise HandoverError(f"item {item.id} was acknowledged by {item.acknowledged_by} "
                            f"already")
    if by == entry.written_by:
        raise HandoverError(f"item {item.id}: the next shift acknowledges it, not its writer "
                            f"{by!r}")
    return replace(item, acknowledged_by=by, acknowledged_at=at, ack_note=note.strip(),
                   next_reminder_at=None)


def remind(policy: ReminderPolicy, item: HandoverItem, at: datetime
           ) -> tuple[HandoverItem, bool]:
    """Due reminder: (item with the next reminder time, True). A driver that comes late
    reminds once, not once per missed period."""
    if not item.open or item.next_reminder_at is None or at < item.next_reminder_at:
        return item, False
    nxt = item.next_reminder_at + policy.remind_every
    if nxt <= at:  # late: the next one a full period from now
        nxt = at + policy.remind_every
    return replace(item, reminders=item.reminders + 1, next_reminder_at=nxt), True
