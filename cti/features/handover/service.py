"""The shift handover log (docs/shift_handover.md): write an entry for the next shift, read
the recent and open ones, acknowledge items; a reminder driver for items left unacknowledged,
and the desk notifier.

Any signed-in user writes and acknowledges (agents and team leads alike hand over); the writer
of an entry does not acknowledge its items. A linked work order must exist.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from cti.domain import handover as ho
from cti.domain.handover import (
    HandoverEntry,
    HandoverError,
    HandoverItem,
    NewItem,
    ReminderPolicy,
)
from cti.events import Bus, HandoverItemAcknowledged, HandoverReminded, HandoverWritten
from cti.features.auth.service import Principal
from cti.features.desk.hub import SUPERVISORS, agent_topic
from cti.features.handover.storage import HandoverStore
from cti.features.work_orders.driver import ClockSleeper, Sleeper, sleep_until_woken
from cti.platform.clock import Clock
from cti.platform.errors import Conflict, CtiError
from cti.platform.log import get_logger
from cti.platform.ports import Publisher

log = get_logger(__name__)

IDLE = timedelta(minutes=5)


class InvalidHandover(Conflict):
    error_id = "handover_invalid"


class OrderLookup(Protocol):
    async def get(self, order_id: int, *, history: bool = True) -> Any:
        """The work order; NotFound when there is none."""
        ...


class Handovers:
    def __init__(self, store: HandoverStore, bus: Bus, clock: Clock,
                 policy: ReminderPolicy | None = None, orders: OrderLookup | None = None
                 ) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self.policy = policy or ReminderPolicy()
        self.orders = orders
        self.changed = asyncio.Event()  # the reminder driver looks again

    async def write(self, who: Principal, *, shift: str, next_shift: str, note: str,
                    items: Sequence[NewItem]) -> HandoverEntry:
        items = tuple(NewItem(i.text.strip(), i.work_order_id) for i in items)
        try:
            ho.check_new(shift, next_shift, note, items)
        except HandoverError as exc:
            raise InvalidHandover(str(exc)) from None
        if self.orders is not None:
            for i in items:
                if i.work_order_id is not None:
                    await self.orders.get(i.work_order_id, history=False)  # 404 when none
        now = self.clock.now()
        entry = await self.store.create(
            shift=shift.strip(), next_shift=next_shift.strip(), written_by=who.username,
            written_at=now, note=note.strip(), items=items,
            first_reminder=ho.first_reminder(self.policy, now),
        )
        self.bus.publish(HandoverWritten(
            entry.id, now, entry.shift, entry.next_shift, entry.written_by, len(entry.items),
            tuple(i.work_order_id for i in entry.items if i.work_order_id is not None)))
        self.changed.set()
        log.info("handover.written", entry_id=entry.id, items=len(entry.items),
                 by=who.username)
        return entry

    async def acknowledge(self, who: Principal, entry_id: int, item_ids: Sequence[int] | None,
                          note: str = "") -> HandoverEntry:
        """Acknowledge the given items (None: every open one) of the entry."""
        now = self.clock.now()

        def change(entry: HandoverEntry) -> tuple[list[HandoverItem], list[HandoverItem]]:
            chosen = [i for i in entry.items if item_ids is None or i.id in item_ids]
            if item_ids is not None:
                missing = set(item_ids) - {i.id for i in chosen}
                if missing:
                    raise InvalidHandover(f"handover {entry_id} has no item "
                                          f"{', '.join(map(str, sorted(missing)))}")
            else:
                chosen = [i for i in chosen if i.open]
                if not chosen:
                    raise InvalidHandover(f"handover {entry_id} has nothing left to "
                                          "acknowledge")
            try:
                done = [ho.acknowledge(entry, i, who.username, now, note) for i in chosen]
            except HandoverError as exc:
                raise InvalidHandover(str(exc)) from None
            return done, done

        # read, checked and written in one transaction (docs/storage.md)
        entry, done = await self.store.update(entry_id, change)
        left = len(entry.open_items)
        for item in done:
            self.bus.publish(HandoverItemAcknowledged(entry_id, item.id, now, who.username,
                                                      item.work_order_id, left))
        self.changed.set()
        return entry

    async def recent(self, *, open_only: bool, next_shift: str | None, limit: int
                     ) -> list[HandoverEntry]:
        return await self.store.recent(open_only=open_only, next_shift=next_shift, limit=limit)

    async def get(self, entry_id: int) -> HandoverEntry:
        return await self.store.get(entry_id)

    async def run_reminders(self, now: datetime) -> int:
        """Remind the items due at `now`; returns how many."""
        due = await self.store.due(now)
        count = 0
        for item in due:
            def remind(entry: HandoverEntry, item_id: int = item.id
                       ) -> tuple[list[HandoverItem], HandoverItem | None]:
                current = next((i for i in entry.items if i.id == item_id), None)
                if current is None:
                    return [], None
                new, reminded = ho.remind(self.policy, current, now)
                return ([new], new) if reminded else ([], None)

            entry, reminded = await self.store.update(item.entry_id, remind)
            if reminded is None:
                continue
            new = reminded
            count += 1
            self.bus.publish(HandoverReminded(entry.id, item.id, now, entry.next_shift,
                                              new.reminders, item.work_order_id))
        return count


class HandoverReminders:
    """Sleeps until the earliest reminder (injected clock and sleeper), reminds, repeats; a
    new entry or an acknowledgement wakes it."""

    def __init__(self, handovers: Handovers, clock: Clock, sleeper: Sleeper | None = None
                 ) -> None:
        self.handovers = handovers
        self.clock = clock
        self.sleeper = sleeper or ClockSleeper(clock)
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> datetime:
        now = self.clock.now()
        try:
            await self.handovers.run_reminders(now)
            earliest = await self.handovers.store.earliest_reminder()
        except Exception:
            log.exception("handover.reminders_failed")
            earliest = None
        later = now + IDLE
        return min(earliest, later) if earliest is not None else later

    async def run(self) -> None:
        changed = self.handovers.changed
        while True:
            changed.clear()
            wake_at = await self.run_once()
            if wake_at <= self.clock.now():
                continue
            await sleep_until_woken(self.sleeper, wake_at, changed)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="handover-reminders")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


HandoverEvent = HandoverWritten | HandoverItemAcknowledged | HandoverReminded


class HandoverNotifier:
    """The desk side: an entry with open items is a keyed message `handover:<id>` on the
    supervisors' topic and on the topics of the agents on shift (logged in), removed when
    its last item is acknowledged; a reminder is also a `handover_reminder` notification."""

    def __init__(self, bus: Bus, hub: Publisher, store: HandoverStore,
                 on_shift: Callable[[], list[str]]) -> None:
        self.hub = hub
        self.store = store
        self.on_shift = on_shift
        bus.subscribe("handover.notify", self.on_event,
                      (HandoverWritten, HandoverItemAcknowledged, HandoverReminded),
                      everywhere=True)  # pages may be on any node

    def _topics(self) -> list[str]:
        return [SUPERVISORS, *(agent_topic(a) for a in sorted(self.on_shift()))]

    async def on_event(self, event: HandoverEvent) -> None:
        try:
            entry = await self.store.get(event.entry_id)
        except CtiError:
            return
        key = f"handover:{entry.id}"
        body: dict[str, Any]
        if entry.open_items:
            body = {"type": "handover", "key": key, "entry": entry_json(entry)}
        else:
            body = {"type": "handover", "key": key, "op": "remove", "entry_id": entry.id}
        for topic in self._topics():
            await self.hub.publish(topic, body)
            if isinstance(event, HandoverReminded):
                await self.hub.publish(topic, {
                    "type": "handover_reminder", "entry_id": entry.id, "item_id": event.item_id,
                    "next_shift": entry.next_shift, "reminders": event.reminders,
                    "text": next((i.text for i in entry.items if i.id == event.item_id), ""),
                })


def entry_json(entry: HandoverEntry) -> dict[str, Any]:
    return {
        "id": entry.id, "shift": entry.shift, "next_shift": entry.next_shift,
        "written_by": entry.written_by, "written_at": entry.written_at.isoformat(),
        "note": entry.note,
        "items": [{
            "id": i.id, "text": i.text, "work_order_id": i.work_order_id,
            "acknowledged_by": i.acknowledged_by,
            "acknowledged_at": i.acknowledged_at.isoformat() if i.acknowledged_at else None,
            "ack_note": i.ack_note, "reminders": i.reminders,
        } for i in entry.items],
    }
