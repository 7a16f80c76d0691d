"""The driver of complaint call-backs (docs/complaint_callbacks.md) over the pure machine in
cti/domain/callbacks.py:

- a complaint moved to resolved (`WorkOrderStatusChanged`) starts one, when the work-order
  config has `callback:`, the owner is an agent and the customer has a number;
- at its time, with the owner agent Ready (available), the call is placed through the
  outbound calls (the agent's phone first, then the customer);
- the call's `OutboundCallOutcome` ends it (connected) or schedules the retry;
- an agent becoming available wakes the driver; reopening the order cancels the call-back.

Every step is written on the order's history (action "callback"); the calls themselves are
events like any call's (`OutboundCallPlaced`/`OutboundCallOutcome` name the order). Time comes
from the injected clock, sleeping from the injected sleeper.

Each pending call-back is kept in the table pending_callbacks (kind "complaint") at every
change and deleted when it is over, so a restart takes them up again (`restore`); one given up
after its last attempt is published as CallbackMissed (the "call-back missed" message).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from cti.domain import callbacks as cbk
from cti.domain.agents.state import AgentState
from cti.domain.callbacks import Callback, CallbackPolicy, Dial, Note
from cti.domain.routing.events import AgentStateChanged
from cti.domain.work_orders import Status, WorkOrderStatusChanged
from cti.events import Bus, CallbackMissed, OutboundCallOutcome
from cti.features.outbound.service import OutboundCalls
from cti.features.routing.acd import Acd
from cti.features.work_orders.driver import ClockSleeper, Sleeper, drive_timers
from cti.features.work_orders.service import WorkOrders
from cti.platform.clock import Clock
from cti.platform.db.pending_callbacks import PendingCallback, PendingCallbackStore
from cti.platform.errors import CtiError
from cti.platform.log import get_logger

log = get_logger(__name__)

IDLE = timedelta(minutes=5)
KIND = "complaint"
Event = WorkOrderStatusChanged | OutboundCallOutcome | AgentStateChanged
Step = Callable[[Callback], tuple[Callback, list[cbk.Action]]]


class ComplaintCallbacks:
    def __init__(self, orders: WorkOrders, outbound: OutboundCalls, acd: Acd, bus: Bus,
                 clock: Clock, sleeper: Sleeper | None = None,
                 store: PendingCallbackStore | None = None) -> None:
        self.orders = orders
        self.bus = bus
        self.store = store
        self.outbound = outbound
        self.acd = acd
        self.clock = clock
        self.sleeper = sleeper or ClockSleeper(clock)
        self.active: dict[int, Callback] = {}  # order id -> its call-back
        self._by_call: dict[str, int] = {}  # the attempt's call id -> order id
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        bus.subscribe("complaint_callbacks", self.on_event,
                      (WorkOrderStatusChanged, OutboundCallOutcome, AgentStateChanged))

    @property
    def policy(self) -> CallbackPolicy | None:
        return self.orders.config.callback

    async def on_event(self, event: Event) -> None:
        if isinstance(event, WorkOrderStatusChanged):
            if event.to_status == Status.RESOLVED.value:
                await self._resolved(event.order_id)
            elif event.from_status in (Status.RESOLVED.value, Status.CLOSED.value) and (
                    event.to_status != Status.CLOSED.value):
                await self._apply(event.order_id, lambda cb: cbk.cancel(cb, "order reopened"))
        elif isinstance(event, OutboundCallOutcome):
            order_id = self._by_call.pop(event.call_id, None)
            policy = self.policy
            if order_id is not None and policy is not None:
                await self._apply(order_id, lambda cb: cbk.outcome(
                    policy, cb, event.outcome, self.clock.now(), event.cause))
        elif event.new == AgentState.AVAILABLE.value and any(
                cb.agent_id == event.agent_id for cb in self.active.values()):
            self._wake.set()

    async def _resolved(self, order_id: int) -> None:
        if self.policy is None:
            return
        order = await self.orders.store.get(order_id, history=False)
        if not order.complaint:
            return
        reason = None
        number = None
        if order.owner.kind != "agent":
            reason = f"no call-back: the owner {order.owner} is not an agent"
        elif order.customer_id is None or self.orders.customers is None:
            reason = "no call-back: no customer linked"
        else:
            customer = await self.orders.customers.get(order.customer_id)
            number = customer.numbers[0] if customer.numbers else None
            if number is None:
                reason = f"no call-back: customer {order.customer_id} has no number"
        if reason is not None or number is None:
            await self.orders.record(order_id, "callback", reason or "no call-back")
            return
        cb, actions = cbk.start(order_id, order.owner.id, number, self.clock.now())
        async with self._lock:
            await self._keep(cb)
        await self._execute(actions)
        self._wake.set()

    async def _apply(self, order_id: int, fn: Step) -> None:
        async with self._lock:
            cb = self.active.get(order_id)
            if cb is None:
                return
            cb, actions = fn(cb)
            await self._keep(cb)
        await self._execute(actions)
        self._wake.set()

    async def _keep(self, cb: Callback) -> None:
        """In memory and in the table while pending; gone when over (a given-up one is
        published as CallbackMissed)."""
        if cb.finished:
            self.active.pop(cb.order_id, None)
            await self._stored(lambda store: store.delete(KIND, str(cb.order_id)))
            if cb.status is cbk.CallbackStatus.FAILED:
                await self._missed(cb)
            return
        self.active[cb.order_id] = cb
        await self._stored(lambda store: store.save(PendingCallback(
            KIND, str(cb.order_id), cb.number, cb.status.value, cb.attempts, cb.next_at,
            agent_id=cb.agent_id, attributes={"waiting_noted": cb.waiting_noted}),
            self.clock.now()))

    async def _stored(self, write: Callable[[PendingCallbackStore], Awaitable[None]]) -> None:
        if self.store is None:
            return
        try:
            await write(self.store)
        except Exception:  # kept in memory; the next change writes it again
            log.exception("callback.store_failed")

    async def _missed(self, cb: Callback) -> None:
        customer_id = None
        with contextlib.suppress(CtiError):
            customer_id = (await self.orders.store.get(cb.order_id, history=False)).customer_id
        self.bus.publish(CallbackMissed(KIND, self.clock.now(), cb.number, cb.attempts,
                                        order_id=cb.order_id, customer_id=customer_id))

    async def restore(self) -> None:
        """The call-backs an earlier process left, at their attempts and next time; one that
        was calling when it stopped is due now (its attempt counted: its outcome is lost)."""
        if self.store is None:
            return
        now = self.clock.now()
        async with self._lock:
            for row in await self.store.load(KIND):
                status = cbk.CallbackStatus(row.status)
                next_at = row.next_at
                if status is cbk.CallbackStatus.CALLING:
                    status, next_at = cbk.CallbackStatus.WAITING, now
                self.active[int(row.key)] = Callback(
                    int(row.key), row.agent_id or "", row.number, status, row.attempts,
                    next_at, waiting_noted=bool(row.attributes.get("waiting_noted")))
        log.info("callback.restored", count=len(self.active))

    async def run_once(self) -> datetime:
        """Tick the due call-backs; returns when to come back."""
        now = self.clock.now()
        policy = self.policy
        if policy is not None:
            for order_id in list(self.active):
                async with self._lock:
                    cb = self.active.get(order_id)
                    if cb is None:
                        continue
                    new, actions = cbk.tick(policy, cb, now,
                                            agent_ready=self._ready(cb.agent_id))
                    if new != cb:
                        await self._keep(new)
                await self._execute(actions)
        times = [cb.next_at for cb in self.active.values() if cb.next_at is not None]
        return min([*times, now + IDLE])

    def _ready(self, agent_id: str) -> bool:
        try:
            return self.acd.agent_status(agent_id).state is AgentState.AVAILABLE
        except CtiError:  # not an agent of the routing rules (any more)
            return False

    async def _execute(self, actions: list[cbk.Action]) -> None:
        for action in actions:
            if isinstance(action, Note):
                try:
                    await self.orders.record(action.order_id, "callback", action.text)
                except CtiError as exc:
                    log.warning("callback.note_failed", order_id=action.order_id,
                                error=exc.message)
            elif isinstance(action, Dial):
                await self._dial(action)

    async def _dial(self, dial: Dial) -> None:
        order = await self.orders.store.get(dial.order_id, history=False)
        try:
            placed = await self.outbound.place(
                dial.agent_id, dial.number, purpose="callback",
                customer_id=order.customer_id, work_order_id=dial.order_id)
        except CtiError as exc:
            log.info("callback.not_placed", order_id=dial.order_id, error=exc.message)
            await self._not_placed(dial.order_id, exc.message)
            return
        async with self._lock:
            cb = self.active.get(dial.order_id)
            if cb is not None and cb.status is cbk.CallbackStatus.CALLING:
                self.active[dial.order_id] = cbk.dialled(cb, placed.call_id)  # not kept: a
                # restart loses the call, not the call-back
                self._by_call[placed.call_id] = dial.order_id
        if placed.outcome.done():  # it ended before we noted its id (a refused originate)
            result = placed.outcome.result()
            policy = self.policy
            if policy is not None and self._by_call.pop(placed.call_id, None) is not None:
                await self._apply(dial.order_id, lambda cb: cbk.outcome(
                    policy, cb, result, self.clock.now()))

    async def _not_placed(self, order_id: int, why: str) -> None:
        policy = self.policy
        if policy is None:
            return

        def step(cb: Callback) -> tuple[Callback, list[cbk.Action]]:
            assert policy is not None
            return cbk.not_placed(policy, cb, why, self.clock.now())

        await self._apply(order_id, step)

    async def run(self) -> None:
        try:
            await self.restore()
        except Exception:
            log.exception("callback.restore_failed")
        await drive_timers(self.run_once, self.clock, self.sleeper, self._wake, IDLE,
                           "callbacks.tick_failed")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="complaint-callbacks")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

