"""The caller's CRM record, looked up once per call as it arrives and published as
`CustomerIdentified`: the routing attributes (tier), the IVR's greeting by name and the
screen pop all read that one lookup. A failed lookup is logged and the call goes on as an
unknown caller ("standard" tier)."""

from __future__ import annotations

import asyncio
import contextlib

from cti.domain.crm import Customer
from cti.events import Bus, CallArrived, CallEnded, CustomerIdentified, OutboundCallPlaced
from cti.features.crm.service import CrmLookup, CustomerView
from cti.platform.clock import Clock
from cti.platform.db.health import db_unavailable, describe
from cti.platform.log import get_logger

log = get_logger(__name__)


class CallerLookup:
    def __init__(self, crm: CrmLookup | None, bus: Bus, clock: Clock) -> None:
        self.crm = crm
        self.bus = bus
        self.clock = clock
        self._lookups: dict[str, asyncio.Task[CustomerView]] = {}
        self._identities: dict[str, asyncio.Future[Customer | None]] = {}
        # The lookup starts as the arrival is published (routing waits for it), not a turn of
        # the event loop later.
        bus.subscribe_now("crm.caller_lookup", self.on_start, (CallArrived, OutboundCallPlaced))
        bus.subscribe("crm.caller_lookup_end", self.on_event, (CallEnded,))

    def on_start(self, event: CallArrived | OutboundCallPlaced) -> None:
        if isinstance(event, CallArrived):
            self._start(event.call_id, event.caller_number)
        else:  # the customer called is the "caller"
            self._start(event.call_id, event.number)

    async def on_event(self, event: CallEnded) -> None:
        self._forget(event.call_id)

    def _start(self, call_id: str, number: str) -> asyncio.Future[Customer | None] | None:
        if self.crm is None:
            return None
        known = self._identities.get(call_id)
        if known is None:
            known = self._identities[call_id] = asyncio.get_running_loop().create_future()
            self._lookups[call_id] = asyncio.create_task(
                self._lookup(self.crm, call_id, number, known), name=f"crm-{call_id}"
            )
        return known

    async def _lookup(self, crm: CrmLookup, call_id: str, number: str,
                      known: asyncio.Future[Customer | None]) -> CustomerView:
        def identified(customer: Customer | None) -> None:
            if not known.done():
                known.set_result(customer)

        try:
            view = await crm.lookup_fast(number)
        except Exception as exc:
            identified(None)  # routed as an unknown caller
            if not db_unavailable(exc):
                log.exception("crm.lookup_failed", call_id=call_id)
            else:  # a database restart: said in one line, the call is routed all the same
                log.error("crm.lookup_failed", call_id=call_id, error=describe(exc),
                          effect="the call is routed without the caller's record")
            raise
        # Published before anyone waiting for the record goes on: subscribers see the customer
        # before the call's later events (queued, offered): the screen pop and the work orders'
        # pop read it there. (Routing going on at the record, before the history, was tried:
        # an offer then came before its caller, and the pop card lost the caller's orders.)
        self.bus.publish(CustomerIdentified(
            call_id, self.clock.now(), view.number, view.customer, view.history,
            view.external_pending, view.external_error, view.sources,
        ))
        identified(view.customer)
        return view

    async def identity(self, call_id: str, number: str) -> Customer | None:
        """The caller's record, once `CustomerIdentified` is published (routing and the IVR's
        greeting read it; every later event of the call comes after it). The lookup started at
        arrival (started now for a call taken back after a restart). None without a CRM, for
        an unknown caller, or when the lookup failed."""
        known = self._start(call_id, number)
        if known is None:
            return None
        return await asyncio.shield(known)

    def _forget(self, call_id: str) -> None:
        known = self._identities.pop(call_id, None)
        if known is not None and not known.done():
            known.set_result(None)  # whoever waits goes on (the call ended)
        task = self._lookups.pop(call_id, None)
        if task is None:
            return
        if not task.done():
            task.cancel()
        elif not task.cancelled():
            with contextlib.suppress(Exception):
                task.exception()  # retrieved: no "exception never retrieved" warning

    async def aclose(self) -> None:
        for call_id in list(self._lookups):
            self._forget(call_id)
