"""The live calls: which call owns which channel, and each call's event queue and task."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from cti.domain.calls import Call
from cti.platform.ari.events import AriEvent


@dataclass(eq=False)
class CallSession:
    """One live call: its state, the channels that belong to it, and its event inbox."""

    call: Call
    events: asyncio.Queue[AriEvent] = field(default_factory=asyncio.Queue)
    channels: set[str] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    bridge_id: str | None = None
    adopted: bool = False  # rebuilt from the PBX after a reconnect or restart
    # Who ended the call: "caller", "service" (IVR/procedure), "agent"; set before hanging up.
    ended_by: str | None = None


class CallRegistry:
    def __init__(self) -> None:
        self._by_id: dict[str, CallSession] = {}
        self._by_channel: dict[str, CallSession] = {}

    def add(self, session: CallSession) -> None:
        self._by_id[session.call.id] = session
        session.channels.add(session.call.channel_id)
        for ch in session.channels:
            self._by_channel[ch] = session

    def attach_channel(self, call_id: str, channel_id: str) -> None:
        session = self._by_id[call_id]
        session.channels.add(channel_id)
        self._by_channel[channel_id] = session

    def detach_channel(self, channel_id: str) -> None:
        session = self._by_channel.pop(channel_id, None)
        if session is not None:
            session.channels.discard(channel_id)

    def remove(self, call_id: str) -> None:
        session = self._by_id.pop(call_id, None)
        if session is not None:
            for ch in session.channels:
                if self._by_channel.get(ch) is session:
                    del self._by_channel[ch]

    def get(self, call_id: str) -> CallSession | None:
        return self._by_id.get(call_id)

    def by_channel(self, channel_id: str) -> CallSession | None:
        return self._by_channel.get(channel_id)

    def sessions(self) -> list[CallSession]:
        return list(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)
