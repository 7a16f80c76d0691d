"""Timers as an injected dependency, like the clock: a service asks a `Scheduler` to call it
back later instead of sleeping, so tests move time by hand (`ManualScheduler.advance`).

One port for every feature with timers (the IVR runner's prompt and silence timers, the ACD's
ring timeouts, wrap-up, relaxation tick and rules-file watch). Callbacks are plain functions
run on the event loop; one with async work to do starts a task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from cti.platform.clock import FakeClock


class TimerHandle(Protocol):
    def cancel(self) -> None:
        """The callback will not run (nothing happens if it already has)."""


class Scheduler(Protocol):
    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle: ...


class LoopScheduler:
    """Timers on the running asyncio loop."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(delay, callback)


@dataclass(order=True)
class _Timer:
    due: float
    seq: int  # ties run in the order they were set
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class ManualScheduler:
    """Timers that fire only when a test says time has passed.

    `advance(seconds)` runs every callback due by then in due order (set-at order for ties),
    including ones set meanwhile by the callbacks themselves, and moves `clock` (a FakeClock,
    shared with the code under test) to each one's due time, then to the end.
    """

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self._timers: list[_Timer] = []
        self._seq = 0

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        self._seq += 1
        timer = _Timer(self.clock.monotonic() + max(delay, 0.0), self._seq, callback)
        self._timers.append(timer)
        return timer

    def pending(self) -> list[float]:
        """The due times (clock seconds) of the timers not yet run nor cancelled, soonest first."""
        return [t.due for t in sorted(self._live())]

    def next_due(self) -> float | None:
        live = self._live()
        return min(live).due if live else None

    def advance(self, seconds: float) -> None:
        self._run_until(self.clock.monotonic() + seconds)

    async def pass_time(self, seconds: float, *, turns: int = 20) -> None:
        """`advance` for asyncio code whose callbacks start tasks: one due time after another,
        each followed by `turns` turns of the event loop (sleep(0), no real time) so those
        tasks run, and set their next timers, before time moves on."""
        end = self.clock.monotonic() + seconds
        await _turns(turns)
        while (due := self.next_due()) is not None and due <= end:
            self._run_until(due)
            await _turns(turns)
        self._run_until(end)
        await _turns(turns)

    def _run_until(self, end: float) -> None:
        while (live := self._live()) and (timer := min(live)).due <= end:
            self._timers.remove(timer)
            self.clock.advance(max(timer.due - self.clock.monotonic(), 0.0))
            timer.callback()
        self.clock.advance(max(end - self.clock.monotonic(), 0.0))

    def _live(self) -> list[_Timer]:
        self._timers = [t for t in self._timers if not t.cancelled]
        return self._timers


async def _turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)
