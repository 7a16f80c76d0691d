"""Call-backs instead of waiting (docs/queue_callbacks.md): a waiting caller presses the
call-back key (setting `queue_callback_key`); their call keeps its place in the queue (its
entry time and order in the router: they neither jump ahead of nor fall behind the callers
who stayed), they are hung up, and when an agent takes the call the ACD rings the agent, then
dials the caller back and bridges them (cti.features.routing.acd.Acd.keep_place)."""

from __future__ import annotations

import contextlib

from cti.domain.calls import CallState
from cti.domain.crm import InvalidPhoneNumber, normalise_number
from cti.events import Bus, MenuKeyPressed, QueueCallbackRequested
from cti.features.calls.registry import CallRegistry
from cti.features.routing.acd import Acd
from cti.platform.clock import Clock
from cti.platform.errors import CtiError
from cti.platform.log import get_logger
from cti.platform.ports import Telephony

log = get_logger(__name__)


class QueueCallbacks:
    def __init__(self, acd: Acd, registry: CallRegistry, telephony: Telephony, bus: Bus,
                 clock: Clock, key: str | None) -> None:
        self.acd = acd
        self.registry = registry
        self.telephony = telephony
        self.bus = bus
        self.clock = clock
        self.key = key
        if key is not None:
            bus.subscribe("routing.queue_callbacks", self.on_key, (MenuKeyPressed,))

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
        queue = self.acd.core.router.queue_of(event.call_id) or ""
        if not await self.acd.keep_place(event.call_id, number):
            return
        self.bus.publish(QueueCallbackRequested(event.call_id, self.clock.now(), queue, number))
        log.info("queue_callback.requested", call_id=event.call_id, queue=queue)
        session.ended_by = "caller"  # they chose to leave
        with contextlib.suppress(CtiError):
            await self.telephony.hangup(session.call.channel_id)
