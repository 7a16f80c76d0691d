"""Call-backs instead of waiting (docs/queue_callbacks.md): a waiting caller presses the
call-back key (setting `queue_callback_key`); their call keeps its place in the queue (its
entry time and order in the router: they neither jump ahead of nor fall behind the callers
who stayed), they hear a confirmation with the number they will be called at (the flow
`queue_callback_left`) and the call ends; when an agent takes the call the ACD rings the
agent, then dials the caller back and bridges them (cti.features.routing.acd.Acd.keep_place).

This module also keeps each pending call-back in the database (table pending_callbacks, kind
"queue": its queue, number, ORIGINAL entry time, attempts and next attempt), so a restart
puts it back in the queue at its place, and retries a caller who does not answer: the call
leaves the ACD after the unanswered attempt and comes back at its place `retry_after` later
(`Acd.restore_callback`), `attempts` in all; then the call-back is given up (CallbackMissed).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from datetime import datetime, timedelta
from typing import Any

from cti.domain import callbacks as cbk
from cti.domain.calls import CallState
from cti.domain.crm import InvalidPhoneNumber, normalise_number
from cti.domain.routing.events import CallConnected
from cti.events import (
    Bus,
    CallbackMissed,
    MenuKeyPressed,
    QueueCallbackAttempted,
    QueueCallbackRequested,
)
from cti.features.calls.registry import CallRegistry
from cti.features.ivr.runner import IvrRunner
from cti.features.routing.acd import Acd
from cti.features.work_orders.driver import ClockSleeper, Sleeper, drive_timers
from cti.platform.clock import Clock
from cti.platform.db.pending_callbacks import PendingCallback, PendingCallbackStore
from cti.platform.errors import CtiError, NotFound
from cti.platform.log import get_logger
from cti.platform.ports import Telephony

log = get_logger(__name__)

KIND = "queue"
CONFIRM_FLOW = "queue_callback_left"  # ivr_flows/queue_callback_left.yaml
IDLE = timedelta(minutes=5)
WAITING, DIALLING = "waiting", "dialling"


class QueueCallbacks:
    def __init__(self, acd: Acd, registry: CallRegistry, telephony: Telephony, bus: Bus,
                 clock: Clock, key: str | None, *, runner: IvrRunner | None = None,
                 store: PendingCallbackStore | None = None,
                 policy: cbk.QueueCallbackPolicy | None = None,
                 sleeper: Sleeper | None = None, confirm_flow: str | None = CONFIRM_FLOW,
                 ) -> None:
        self.acd = acd
        self.registry = registry
        self.telephony = telephony
        self.bus = bus
        self.clock = clock
        self.key = key
        self.runner = runner
        self.store = store
        self.policy = policy or cbk.QueueCallbackPolicy()
        self.sleeper = sleeper or ClockSleeper(clock)
        self.confirm_flow = confirm_flow
        self.pending: dict[str, PendingCallback] = {}  # call id -> its call-back
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        if key is not None:
            bus.subscribe("routing.queue_callbacks", self.on_key, (MenuKeyPressed,))
            bus.subscribe("routing.queue_callback_attempts", self.on_event,
                          (CallConnected, QueueCallbackAttempted))

    # ----- the caller leaves -------------------------------------------------------------

    async def on_key(self, event: MenuKeyPressed) -> None:
        if event.digit != self.key:
            return
        session = self.registry.get(event.call_id)
        if session is None or session.call.state is not CallState.QUEUED:
            return  # not waiting (still in the menus, ringing an agent, talking)
        try:
            number = normalise_number(session.call.caller_number)
        except InvalidPhoneNumber:
            log.info("queue_callback.no_number", call_id=event.call_id)
            return  # a withheld or odd caller id: nobody to call back; they keep waiting
        router = self.acd.core.router
        queue = router.queue_of(event.call_id) or ""
        waited = router.waited(event.call_id, self.clock.monotonic()) or 0.0
        attributes = _plain(router.attributes_of(event.call_id) or {})
        if not await self.acd.keep_place(event.call_id, number):
            return
        now = self.clock.now()
        await self._save(PendingCallback(
            KIND, event.call_id, number, WAITING, queue=queue or None,
            entered_at=now - timedelta(seconds=waited), attributes=attributes))
        self.bus.publish(QueueCallbackRequested(event.call_id, now, queue, number))
        log.info("queue_callback.requested", call_id=event.call_id, queue=queue)
        session.ended_by = "caller"  # they chose to leave
        await self._confirm_and_end(event.call_id, session.call.channel_id, number)

    async def _confirm_and_end(self, call_id: str, channel_id: str, number: str) -> None:
        """The caller hears the confirmation with their number, then the flow hangs up; with
        no IVR on the call (or no such flow) the call ends at once."""
        runner, flow = self.runner, self.confirm_flow
        state = runner.state_of(call_id) if runner is not None else None
        if runner is not None and state is not None and flow in runner.flow_source.flows:
            with contextlib.suppress(CtiError):
                await self.telephony.stop_moh(channel_id)
            slots = {lang: {"number": number} for lang in {state.lang, *state.ctx.slots}}
            try:
                await runner.switch_flow(call_id, flow, slots)
                return
            except NotFound:  # hung up just now
                return
        log.info("queue_callback.no_confirmation", call_id=call_id,
                 reason="no IVR on the call" if state is None else f"no flow {flow!r}")
        with contextlib.suppress(CtiError):
            await self.telephony.hangup(channel_id)

    # ----- attempts ----------------------------------------------------------------------

    async def on_event(self, event: CallConnected | QueueCallbackAttempted) -> None:
        async with self._lock:
            cb = self.pending.get(event.call_id)
            if cb is None:
                return
            if isinstance(event, CallConnected):  # an agent took it: the caller is dialled
                await self._save(dataclasses.replace(cb, status=DIALLING,
                                                     attempts=cb.attempts + 1, next_at=None))
                return
            nxt = cbk.after_queue_attempt(self.policy, cb.attempts, event.outcome,
                                          self.clock.now())
            if nxt.what == "done":
                await self._forget(cb)
                log.info("queue_callback.answered", call_id=cb.key, attempts=cb.attempts)
            elif nxt.what == "retry":
                await self._save(dataclasses.replace(cb, status=WAITING,
                                                     attempts=nxt.attempts, next_at=nxt.at))
                log.info("queue_callback.retry", call_id=cb.key, outcome=event.outcome,
                         attempts=nxt.attempts, next_at=nxt.at)
                self._wake.set()
            else:
                await self._forget(cb)
                log.warning("queue_callback.missed", call_id=cb.key, attempts=cb.attempts,
                            outcome=event.outcome)
                lang = cb.attributes.get("language")
                self.bus.publish(CallbackMissed(
                    "queue", self.clock.now(), cb.number, cb.attempts, call_id=cb.key,
                    queue=cb.queue, language=lang if isinstance(lang, str) else None))

    # ----- back in the queue: after a restart, or for the next attempt ---------------------

    async def restore(self) -> None:
        """The call-backs an earlier process left: due ones wait again at their place now,
        the others at their next attempt. One being dialled when it stopped is due again
        (its attempt counted)."""
        if self.store is None:
            return
        for cb in await self.store.load(KIND):
            if cb.status == DIALLING:
                cb = dataclasses.replace(cb, status=WAITING, next_at=None)
            self.pending[cb.key] = cb
            if cb.next_at is None:
                await self._back_in_queue(cb)
        log.info("queue_callback.restored", count=len(self.pending))

    async def run_once(self) -> datetime:
        now = self.clock.now()
        async with self._lock:
            for cb in list(self.pending.values()):
                if cb.status == WAITING and cb.next_at is not None and cb.next_at <= now:
                    cb = dataclasses.replace(cb, next_at=None)
                    await self._save(cb)
                    await self._back_in_queue(cb)
        times = [cb.next_at for cb in self.pending.values() if cb.next_at is not None]
        return min([*times, now + IDLE])

    async def _back_in_queue(self, cb: PendingCallback) -> None:
        entered = cb.entered_at or self.clock.now()
        waited = max((self.clock.now() - entered).total_seconds(), 0.0)
        try:
            await self.acd.restore_callback(cb.key, cb.number, cb.queue, cb.attributes, waited)
        except CtiError as exc:
            log.warning("queue_callback.restore_failed", call_id=cb.key, error=exc.message)

    async def _save(self, cb: PendingCallback) -> None:
        self.pending[cb.key] = cb
        if self.store is not None:
            try:
                await self.store.save(cb, self.clock.now())
            except Exception:  # kept in memory; the next change writes it again
                log.exception("queue_callback.save_failed", call_id=cb.key)

    async def _forget(self, cb: PendingCallback) -> None:
        self.pending.pop(cb.key, None)
        if self.store is not None:
            try:
                await self.store.delete(KIND, cb.key)
            except Exception:
                log.exception("queue_callback.delete_failed", call_id=cb.key)

    async def run(self) -> None:
        try:
            await self.restore()
        except Exception:
            log.exception("queue_callback.restore_failed")
        await drive_timers(self.run_once, self.clock, self.sleeper, self._wake, IDLE,
                           "queue_callback.tick_failed")

    def start(self) -> None:
        if self._task is None and self.key is not None:
            self._task = asyncio.create_task(self.run(), name="queue-callbacks")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _plain(attributes: Any) -> dict[str, Any]:
    """The call's routing attributes as JSON keeps them (what a restart reads back)."""
    return dict(json.loads(json.dumps(dict(attributes), default=str)))
