"""Routes ARI events: StasisStart by the channel's role (first app arg), the rest by channel."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from cti.features.calls.registry import CallRegistry
from cti.platform.ari.events import AriEvent, StasisStart, channel_ids_of
from cti.platform.log import get_logger

log = get_logger(__name__)

StartHandler = Callable[[StasisStart], Awaitable[None]]
EventListener = Callable[[AriEvent], Awaitable[None]]


class StasisDispatcher:
    """`Stasis(cti,<role>,...)`: role `inbound` is a caller; other roles (agent legs, snoops,
    external media) are claimed by the services that created them."""

    def __init__(self, registry: CallRegistry) -> None:
        self.registry = registry
        self._start_handlers: dict[str, StartHandler] = {}
        self._listeners: list[EventListener] = []
        self.unrouted = 0

    def on_start(self, role: str, handler: StartHandler) -> None:
        self._start_handlers[role] = handler

    def listen(self, listener: EventListener) -> None:
        """Called for every event (metrics, supervisors); must not block."""
        self._listeners.append(listener)

    async def dispatch(self, event: AriEvent) -> None:
        for listener in self._listeners:
            await listener(event)
        if isinstance(event, StasisStart):
            # A channel we created for a call (agent leg, snoop) is attached before it starts.
            owner = self.registry.by_channel(event.channel.id)
            if owner is not None:
                owner.events.put_nowait(event)
                return
            role = event.args[0] if event.args else "inbound"
            handler = self._start_handlers.get(role)
            if handler is None:
                log.warning("stasis.unknown_role", role=role, channel=event.channel.id)
                self.unrouted += 1
                return
            await handler(event)
            return
        for channel_id in channel_ids_of(event):
            session = self.registry.by_channel(channel_id)
            if session is not None:
                session.events.put_nowait(event)
                return
        self.unrouted += 1
