"""The ACD's background work: async actions run when the injected scheduler says (ring
timeouts, wrap-up, the relaxation tick, the rules-file watch) and tasks started at once
(announcements), each kept until it ends so that closing the ACD stops them all.

Time only comes from the scheduler (never `asyncio.sleep`): tests pass a ManualScheduler and
move time by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from cti.platform.log import get_logger
from cti.platform.scheduler import Scheduler, TimerHandle

log = get_logger(__name__)

Action = Callable[[], Awaitable[None]]


class _Timer:
    """A timed action. `cancel()` before it fires and it never runs; once fired, its action
    runs to its end (an action that ends what its own timer belongs to, as a consultation's
    ring timeout cancelling the consultation does, must not cut itself short)."""

    def __init__(self, pending: set[_Timer]) -> None:
        self._pending = pending  # its owner's timers not yet fired
        self.handle: TimerHandle | None = None

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self._pending.discard(self)


class AcdTimers:
    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._pending: set[_Timer] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def later(
        self, seconds: float, action: Action, *, name: str = "acd-timer",
        failure: str = "acd_timer_failed",
    ) -> TimerHandle:
        """Run `action` in a task of its own `seconds` from now; an exception is logged as
        `failure`."""
        timer = _Timer(self._pending)

        def fire() -> None:
            self._pending.discard(timer)
            if not self._closed:
                self.spawn(self._guarded(action, failure), name)

        timer.handle = self._scheduler.call_later(seconds, fire)
        self._pending.add(timer)
        return timer

    def every(self, seconds: float, action: Action, *, name: str, failure: str) -> None:
        """Run `action` every `seconds`, the first `seconds` from now; each next one is timed
        from the end of the one before, so they never overlap."""

        async def once() -> None:
            try:
                await action()
            finally:
                if not self._closed:
                    self.later(seconds, once, name=name, failure=failure)

        self.later(seconds, once, name=name, failure=failure)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        """Cancel the timers not yet fired and the tasks still running, and wait for them."""
        self._closed = True
        for timer in list(self._pending):
            timer.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    @staticmethod
    async def _guarded(action: Action, failure: str) -> None:
        try:
            await action()
        except Exception:
            log.exception(failure)
