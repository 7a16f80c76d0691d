"""The work orders' timer driver: an asyncio task that sleeps until the earliest pending timer
(a reminder, a due time, an acknowledgement deadline, a "no progress" escalation), then ticks
the due orders (cti.features.work_orders.service.WorkOrders.run_timers), which publishes the
reminders, overdue alerts and escalations.

The sleeping is injected (`Sleeper`), and the time comes from the injected clock: tests move a
fake clock and never sleep. A change to any order wakes the driver to re-read the earliest
timer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol

from cti.features.work_orders.service import WorkOrders
from cti.platform.clock import Clock
from cti.platform.log import get_logger

log = get_logger(__name__)

IDLE = timedelta(minutes=5)  # with nothing pending, look again this often anyway


class Sleeper(Protocol):
    async def sleep_until(self, instant: datetime) -> None:
        """Return at `instant` (or later)."""
        ...


async def sleep_until_woken(sleeper: Sleeper, instant: datetime, wake: asyncio.Event) -> None:
    """Until `instant` or until `wake` is set, whichever comes first (the timer drivers'
    wait: a new or moved deadline wakes them early)."""
    sleep = asyncio.ensure_future(sleeper.sleep_until(instant))
    woken = asyncio.ensure_future(wake.wait())
    try:
        await asyncio.wait({sleep, woken}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for fut in (sleep, woken):
            fut.cancel()
        await asyncio.gather(sleep, woken, return_exceptions=True)


async def drive_timers(
    run_once: Callable[[], Awaitable[datetime]], clock: Clock, sleeper: Sleeper,
    wake: asyncio.Event, idle: timedelta, failed: str,
) -> None:
    """A timer driver's loop: `run_once` does what is due and says when to look again; a
    failing round is logged as `failed` and retried after `idle`."""
    while True:
        wake.clear()
        try:
            wake_at = await run_once()
        except Exception:
            log.exception(failed)
            wake_at = clock.now() + idle
        if wake_at <= clock.now():
            continue
        await sleep_until_woken(sleeper, wake_at, wake)


class ClockSleeper:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    async def sleep_until(self, instant: datetime) -> None:
        delay = (instant - self.clock.now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)


class WorkOrderDriver:
    def __init__(self, orders: WorkOrders, clock: Clock, sleeper: Sleeper | None = None,
                 idle: timedelta = IDLE) -> None:
        self.orders = orders
        self.clock = clock
        self.sleeper = sleeper or ClockSleeper(clock)
        self.idle = idle
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> datetime:
        """Tick what is due now; returns the instant to come back at."""
        now = self.clock.now()
        try:
            await self.orders.run_timers(now)
            earliest = await self.orders.earliest_timer()
        except Exception:
            log.exception("work_orders.timers_failed")
            earliest = None
        later = now + self.idle
        return min(earliest, later) if earliest is not None else later

    async def run(self) -> None:
        while True:
            self.orders.timers_changed.clear()
            wake_at = await self.run_once()
            if wake_at <= self.clock.now():
                continue
            await sleep_until_woken(self.sleeper, wake_at, self.orders.timers_changed)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="work-order-timers")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
