"""Prometheus figures from the event stream: a subscriber like any other, so the counters say
what the kept log says (calls started and ended by cause, every event by type)."""

from __future__ import annotations

from cti.events import Bus, CallArrived, CallEnded, DomainEvent
from cti.platform.clock import Clock
from cti.platform.metrics import BUS_LAG_SECONDS, CALLS_ENDED, CALLS_STARTED, EVENTS


class EventMetrics:
    def __init__(self, bus: Bus, clock: Clock) -> None:
        self.clock = clock
        bus.subscribe("events.metrics", self.on_event)

    async def on_event(self, event: DomainEvent) -> None:
        EVENTS.labels(type=type(event).__name__).inc()
        BUS_LAG_SECONDS.observe(max(0.0, (self.clock.now() - event.at).total_seconds()))
        if isinstance(event, CallArrived) and not event.adopted:
            CALLS_STARTED.inc()
        elif isinstance(event, CallEnded):
            CALLS_ENDED.labels(cause=str(event.cause if event.cause is not None else "none")).inc()
