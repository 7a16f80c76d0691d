"""Listen, whisper, barge: the driver of cti/domain/monitoring.py over ARI.

A supervisor asks to monitor a connected call: their phone (a PJSIP endpoint: a desk phone or
the page's WebRTC softphone) is dialled with the Stasis role `monitor`. Once it answers, the
mode is set up: a snoop on the agent's channel in a bridge of the monitor's own (listen,
whisper), or the supervisor's leg in the call's bridge (barge). A mode change swaps only the
snoop or the bridge; the leg stays up. Ends when asked, when the supervisor hangs up or does
not answer, or when the call ends; a transfer makes the set-up again on the new agent.

Publishes MonitorStarted / MonitorModeChanged / MonitorStopped (kept by the event log). Only
supervisors reach it (the routes check the role). One monitor per call at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from cti.domain import monitoring as core
from cti.domain.monitoring import Mode, Phase
from cti.events import (
    Bus,
    CallConnected,
    CallEnded,
    MonitorModeChanged,
    MonitorStarted,
    MonitorStopped,
)
from cti.features.routing.acd_calls import ConnectedLegs
from cti.platform.ari.events import AriEvent, ChannelDestroyed, StasisEnd, StasisStart
from cti.platform.clock import Clock
from cti.platform.errors import ChannelGone, Conflict, NotFound, TelephonyError
from cti.platform.log import get_logger
from cti.platform.ports import BridgeInfo, ChannelInfo, Direction

log = get_logger(__name__)

ROLE = "monitor"  # Stasis(cti,monitor,<monitor id>): the supervisor's leg and its snoops
PREFIX = "mon-"  # channel and bridge ids (the resync leaves them to this feature)
RING_TIMEOUT_S = 30
STASIS_WAIT_S = 5.0  # a new channel is in Stasis a moment after ARI made it


class CallNotConnected(Conflict):
    error_id = "call_not_connected"


class AlreadyMonitored(Conflict):
    error_id = "already_monitored"


class NotMonitored(NotFound):
    error_id = "not_monitored"


class MonitorPbx(Protocol):
    """What monitoring asks of the PBX (AriTelephony has it)."""

    async def originate(
        self, endpoint: str, *, app_args: str = "", caller_id: str | None = None,
        timeout: int = 30, channel_id: str | None = None, formats: str | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> ChannelInfo: ...
    async def snoop(
        self, channel_id: str, *, spy: Direction = "in", app_args: str = "",
        snoop_id: str | None = None, whisper: Direction | Literal["none"] = "none",
    ) -> ChannelInfo: ...
    async def hangup(self, channel_id: str, reason: str = "normal") -> None: ...
    async def create_bridge(self, bridge_id: str | None = None, kind: str = "mixing") -> str: ...
    async def add_to_bridge(self, bridge_id: str, channel_ids: Sequence[str]) -> None: ...
    async def remove_from_bridge(self, bridge_id: str, channel_ids: Sequence[str]) -> None: ...
    async def destroy_bridge(self, bridge_id: str) -> None: ...
    async def application_channel_ids(self) -> set[str]: ...
    async def list_bridges(self) -> list[BridgeInfo]: ...


class ConnectedCalls(Protocol):
    """Where a call's agent leg and bridge are known (the ACD)."""

    def connected(self, call_id: str) -> ConnectedLegs | None: ...


@dataclass
class _Session:
    id: str
    call_id: str
    supervisor: str
    state: core.Monitor
    legs: ConnectedLegs
    started_at: datetime
    leg: str = ""  # the supervisor's channel
    bridge: str = ""  # the monitor's own bridge, made on first need
    in_bridge: str | None = None  # the bridge the supervisor's leg is in now
    snoops: dict[int, str] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True, slots=True)
class MonitorView:
    monitor_id: str
    call_id: str
    supervisor: str
    agent_id: str
    endpoint: str
    mode: Mode
    state: Phase
    started_at: datetime


class Monitoring:
    def __init__(
        self, pbx: MonitorPbx, calls: ConnectedCalls, bus: Bus, clock: Clock
    ) -> None:
        self.pbx = pbx
        self.calls = calls
        self.bus = bus
        self.clock = clock
        self._by_call: dict[str, _Session] = {}
        self._by_id: dict[str, _Session] = {}
        self._channels: dict[str, _Session] = {}  # leg and snoop channel ids
        self._in_stasis: dict[str, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        bus.subscribe("monitoring", self._on_call_event, (CallConnected, CallEnded))

    # ----- asked over HTTP ---------------------------------------------------------------

    async def start(
        self, call_id: str, mode: Mode, endpoint: str, supervisor: str
    ) -> MonitorView:
        legs = self.calls.connected(call_id)
        if legs is None:
            raise CallNotConnected(f"call {call_id} is not talking with an agent")
        if call_id in self._by_call:
            raise AlreadyMonitored(
                f"call {call_id} is monitored by {self._by_call[call_id].supervisor}")
        sid = uuid.uuid4().hex[:12]
        state, cmds = core.start(mode, endpoint)
        s = _Session(sid, call_id, supervisor, state, legs, self.clock.now(),
                     leg=f"{PREFIX}{sid}")
        self._by_call[call_id] = self._by_id[sid] = self._channels[s.leg] = s
        log.info("monitor.dialling", call_id=call_id, monitor_id=sid, supervisor=supervisor,
                 endpoint=endpoint, mode=mode.value)
        async with s.lock:
            try:
                await self._run(s, cmds)
            except TelephonyError as exc:
                await self._end(s, "failed", f"{exc.error_id}: {exc.message}", leg_gone=True)
                raise
        return self._view(s)

    async def change(self, call_id: str, mode: Mode, by: str) -> MonitorView:
        s = self._session(call_id)
        async with s.lock:
            previous = s.state.mode
            s.state, cmds = core.change(s.state, mode)
            try:
                await self._run(s, cmds)
            except TelephonyError as exc:
                await self._end(s, "failed", f"{exc.error_id}: {exc.message}")
                raise
            if s.state.phase is Phase.ACTIVE and previous is not mode:
                log.info("monitor.mode_changed", call_id=call_id, monitor_id=s.id,
                         mode=mode.value, previous=previous.value, by=by)
                self.bus.publish(MonitorModeChanged(
                    call_id, self.clock.now(), s.id, s.supervisor, s.legs.agent_id, mode.value,
                    previous.value))
        return self._view(s)

    async def stop(self, call_id: str, by: str) -> MonitorView:
        s = self._session(call_id)
        async with s.lock:
            await self._end(s, "stopped", f"by {by}")
        return self._view(s)

    def get(self, call_id: str) -> MonitorView:
        return self._view(self._session(call_id))

    def active(self) -> list[MonitorView]:
        return [self._view(s) for s in self._by_call.values()]

    def _session(self, call_id: str) -> _Session:
        s = self._by_call.get(call_id)
        if s is None:
            raise NotMonitored(f"call {call_id} is not monitored")
        return s

    @staticmethod
    def _view(s: _Session) -> MonitorView:
        return MonitorView(s.id, s.call_id, s.supervisor, s.legs.agent_id, s.state.endpoint,
                           s.state.mode, s.state.phase, s.started_at)

    # ----- the PBX's side ----------------------------------------------------------------

    async def on_stasis_start(self, event: StasisStart) -> None:
        """Role `monitor`: the supervisor answered, or one of our snoops is ready."""
        waiter = self._in_stasis.pop(event.channel.id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        s = self._channels.get(event.channel.id)
        if s is None:  # left by an earlier process, or its monitor ended meanwhile
            with contextlib.suppress(TelephonyError):
                await self.pbx.hangup(event.channel.id)
            return
        if event.channel.id == s.leg:
            self._spawn(self._answered(s))

    async def on_ari_event(self, event: AriEvent) -> None:
        """A dispatcher listener (must not block): the supervisor's leg went away."""
        if isinstance(event, ChannelDestroyed | StasisEnd):
            s = self._channels.get(event.channel.id)
            if s is not None and event.channel.id == s.leg:
                reason = "supervisor_hung_up" if s.state.phase is Phase.ACTIVE else "no_answer"
                self._spawn(self._leg_gone(s, reason))

    async def _on_call_event(self, event: CallConnected | CallEnded) -> None:
        s = self._by_call.get(event.call_id)
        if s is None:
            return
        async with s.lock:
            if isinstance(event, CallEnded):
                await self._end(s, "call_ended", event.cause_text or "")
                return
            legs = self.calls.connected(event.call_id)
            if legs is None or legs == s.legs:
                return
            s.legs = legs  # a transfer: the new agent, the new bridge
            if s.in_bridge is not None and s.in_bridge != s.bridge:
                s.in_bridge = None  # the old call bridge is gone with the transfer
            s.state, cmds = core.agent_moved(s.state)
            await self._run_quietly(s, cmds)

    async def _answered(self, s: _Session) -> None:
        async with s.lock:
            if s.state.phase is not Phase.DIALLING:
                return
            s.state, cmds = core.answered(s.state)
            try:
                await self._run(s, cmds)
            except TelephonyError as exc:
                await self._end(s, "failed", f"{exc.error_id}: {exc.message}")
                return
            log.info("monitor.started", call_id=s.call_id, monitor_id=s.id,
                     mode=s.state.mode.value)
            self.bus.publish(MonitorStarted(
                s.call_id, self.clock.now(), s.id, s.supervisor, s.legs.agent_id,
                s.state.mode.value, s.state.endpoint))

    async def _leg_gone(self, s: _Session, reason: str) -> None:
        async with s.lock:
            await self._end(s, reason, leg_gone=True)

    async def _end(
        self, s: _Session, reason: str, detail: str = "", *, leg_gone: bool = False
    ) -> None:
        if s.state.phase is Phase.ENDED:
            return
        s.state, cmds = core.stop(s.state, leg_gone=leg_gone)
        await self._run_quietly(s, cmds)
        if s.bridge:
            with contextlib.suppress(TelephonyError):
                await self.pbx.destroy_bridge(s.bridge)
        for ch in [s.leg, *s.snoops.values()]:
            self._channels.pop(ch, None)
            self._in_stasis.pop(ch, None)
        self._by_call.pop(s.call_id, None)
        self._by_id.pop(s.id, None)
        log.info("monitor.stopped", call_id=s.call_id, monitor_id=s.id, reason=reason,
                 detail=detail)
        self.bus.publish(MonitorStopped(s.call_id, self.clock.now(), s.id, s.supervisor,
                                        s.legs.agent_id, reason, detail[:200]))

    async def _run_quietly(self, s: _Session, cmds: list[core.Command]) -> None:
        for cmd in cmds:
            try:
                await self._run(s, [cmd])
            except TelephonyError as exc:
                log.warning("monitor.command_failed", call_id=s.call_id, monitor_id=s.id,
                            command=type(cmd).__name__, error=exc.message)

    async def _run(self, s: _Session, cmds: list[core.Command]) -> None:
        for cmd in cmds:
            if isinstance(cmd, core.Dial):
                await self.pbx.originate(
                    cmd.endpoint, app_args=f"{ROLE},{s.id}", channel_id=s.leg,
                    caller_id=f"Monitor <{s.legs.agent_id}>", timeout=RING_TIMEOUT_S,
                    formats="ulaw",
                    # with several Asterisks: rung from the call's own (cti/platform/ari/pbx_set)
                    variables={"CTI_CALL_ID": s.call_id},
                )
            elif isinstance(cmd, core.OpenSnoop):
                snoop_id = f"{s.leg}-s{cmd.gen}"
                s.snoops[cmd.gen] = snoop_id
                self._channels[snoop_id] = s
                ready = self._expect(snoop_id)
                await self.pbx.snoop(s.legs.agent_channel, spy="both", whisper=cmd.whisper,
                                     app_args=f"{ROLE},{s.id}", snoop_id=snoop_id)
                await self._wait(ready, snoop_id)
                await self.pbx.add_to_bridge(await self._own_bridge(s), [snoop_id])
            elif isinstance(cmd, core.DropSnoop):
                snoop_id = s.snoops.pop(cmd.gen, "")
                self._channels.pop(snoop_id, None)
                if snoop_id:
                    with contextlib.suppress(ChannelGone):
                        await self.pbx.hangup(snoop_id)
            elif isinstance(cmd, core.MoveSupervisor):
                target = await self._own_bridge(s) if cmd.place == "monitor" \
                    else s.legs.bridge_id
                if s.in_bridge == target:
                    continue
                if s.in_bridge is not None:
                    with contextlib.suppress(ChannelGone):
                        await self.pbx.remove_from_bridge(s.in_bridge, [s.leg])
                await self.pbx.add_to_bridge(target, [s.leg])
                s.in_bridge = target
            else:  # HangUpSupervisor
                with contextlib.suppress(ChannelGone):
                    await self.pbx.hangup(s.leg)

    async def _own_bridge(self, s: _Session) -> str:
        if not s.bridge:
            s.bridge = await self.pbx.create_bridge(f"{PREFIX}{s.id}", "mixing")
        return s.bridge

    def _expect(self, channel_id: str) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._in_stasis[channel_id] = fut
        return fut

    async def _wait(self, ready: asyncio.Future[None], channel_id: str) -> None:
        try:
            await asyncio.wait_for(ready, STASIS_WAIT_S)
        except TimeoutError:
            self._in_stasis.pop(channel_id, None)
            raise TelephonyError(f"{channel_id} did not enter the application") from None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def on_connect(self) -> None:
        """After every (re)connect: legs, snoops and bridges of monitors this process does not
        hold (an earlier process's, or ended while the socket was down) are removed."""
        in_app = await self.pbx.application_channel_ids()
        for channel_id in in_app:
            if channel_id.startswith(PREFIX) and channel_id not in self._channels:
                with contextlib.suppress(TelephonyError):
                    await self.pbx.hangup(channel_id)
        for s in list(self._by_call.values()):  # its end was not heard
            if s.leg not in in_app:
                await self._leg_gone(s, "supervisor_hung_up")
        ours = {s.bridge for s in self._by_call.values()}
        for bridge in await self.pbx.list_bridges():
            if bridge.id.startswith(PREFIX) and bridge.id not in ours:
                with contextlib.suppress(TelephonyError):
                    await self.pbx.destroy_bridge(bridge.id)

    async def aclose(self) -> None:
        """Hang up every supervisor's leg (the service is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        for s in list(self._by_call.values()):
            async with s.lock:
                await self._end(s, "stopped", "service stopping")
