"""The life of an inbound call: register, answer, hand to the call script, log to the database.

One asyncio task per call reads that call's event queue, so a slow call never holds up others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import replace
from typing import Final, Protocol

import structlog

from cti.domain.calls import Call, CallState, answered, ended
from cti.events import Bus, CallAnswered, CallArrived, CallEnded, DomainEvent
from cti.features.calls.registry import CallRegistry, CallSession
from cti.features.calls.storage import CallRepository
from cti.platform.ari.events import (
    AriEvent,
    ChannelDestroyed,
    ChannelHangupRequest,
    StasisEnd,
    StasisStart,
    UnknownEvent,
)
from cti.platform.clock import Clock
from cti.platform.errors import ChannelGone, CtiError
from cti.platform.log import get_logger
from cti.platform.metrics import CALLS_ACTIVE
from cti.platform.ports import ChannelInfo, Telephony

log = get_logger(__name__)

# How long to wait for ChannelDestroyed after the caller's StasisEnd before closing the call.
_END_GRACE_S = 2.0


class CallScript(Protocol):
    """What runs on an answered call (the greeting today; IVR flows and routing plug in here)."""

    async def on_answered(self, session: CallSession) -> None: ...
    async def on_adopted(self, session: CallSession) -> None:
        """A call taken back after a restart (already answered): pick up where it was."""
        ...
    async def on_stopping(self, session: CallSession) -> None:
        """The service stops with the call up: let go of it, for the next process."""
        ...
    async def on_event(self, session: CallSession, event: AriEvent) -> None: ...
    async def on_ended(self, session: CallSession) -> None: ...


ScriptFactory = Callable[[CallSession], CallScript]

# Put in a call's queue to end its task at the next event (service shutdown).
STOP: Final = UnknownEvent(type="cti.stop")

# Q.850 causes Asterisk reports most often, for readable call logs.
_CAUSES = {
    16: "Normal Clearing", 17: "User busy", 18: "No user responding", 19: "No answer",
    21: "Call rejected", 27: "Destination out of order", 31: "Normal, unspecified",
    34: "No circuit/channel available", 38: "Network out of order", 41: "Temporary failure",
}


def _cause_text(cause: int | None) -> str | None:
    return _CAUSES.get(cause, f"cause {cause}") if cause is not None else None


class InboundCalls:
    def __init__(
        self,
        telephony: Telephony,
        registry: CallRegistry,
        repo: CallRepository,
        clock: Clock,
        script_factory: ScriptFactory,
        talk_detect: tuple[int, int] = (1200, 256),
        bus: Bus | None = None,
    ) -> None:
        self.telephony = telephony
        self.registry = registry
        self.repo = repo
        self.clock = clock
        self.script_factory = script_factory
        self.talk_detect = talk_detect
        self.bus = bus

    async def save(self, session: CallSession) -> None:
        await self.repo.save(session.call)

    def _publish(self, event: DomainEvent) -> None:
        if self.bus is not None:
            self.bus.publish(event)

    # -------------------------------------------------------------- arrival
    async def on_stasis_start(self, event: StasisStart) -> None:
        ch = event.channel
        dialled = event.args[1] if len(event.args) > 1 else ch.dialplan.exten
        call = Call(
            id=ch.id,
            channel_id=ch.id,
            caller_number=ch.caller.number,
            caller_name=ch.caller.name,
            dialled_number=dialled,
            arrived_at=self.clock.now(),
        )
        session = CallSession(call=call)
        self.registry.add(session)
        self._publish(CallArrived(call.id, call.arrived_at, ch.id, call.caller_number, dialled,
                                  pbx=event.pbx))
        CALLS_ACTIVE.inc()
        session.task = asyncio.create_task(self._run(session, answer=True), name=f"call-{ch.id}")

    def adopt(self, call: Call, channel: ChannelInfo | None, pbx: str = "") -> CallSession:
        """Take back a call that is still up on the PBX after a reconnect or restart."""
        if channel is not None and call.state is CallState.ARRIVED and channel.state == "Up":
            call = answered(call, self.clock.now())
        session = CallSession(call=call, adopted=True)
        self.registry.add(session)
        self._publish(CallArrived(call.id, self.clock.now(), call.channel_id, call.caller_number,
                                  call.dialled_number, adopted=True, pbx=pbx))
        CALLS_ACTIVE.inc()
        session.task = asyncio.create_task(
            self._run(session, answer=call.state is CallState.ARRIVED), name=f"call-{call.id}"
        )
        return session

    # ------------------------------------------------------------ the task
    async def _run(self, session: CallSession, *, answer: bool) -> None:
        structlog.contextvars.bind_contextvars(call_id=session.call.id)
        script = self.script_factory(session)
        try:
            log.info("call.arrived", caller=session.call.caller_number, adopted=session.adopted)
            if answer:
                await self._answer(session, script)
            else:
                await self.save(session)
                await self.telephony.subscribe_channel(session.call.channel_id)
                await script.on_adopted(session)
            await self._event_loop(session, script)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("call.task_failed")
            await self.finish(session, None, "service error")
        finally:
            self.registry.remove(session.call.id)
            CALLS_ACTIVE.dec()

    async def _answer(self, session: CallSession, script: CallScript) -> None:
        ch = session.call.channel_id
        try:
            # Answer and TALK_DETECT before any playback: ARI queues these behind a prompt.
            # The three are independent, so they go out together (the caller is waiting).
            await asyncio.gather(
                self.telephony.answer(ch),
                self.telephony.subscribe_channel(ch),
                self.telephony.talk_detect(ch, *self.talk_detect),
            )
            session.call = answered(session.call, self.clock.now())
            self._publish(CallAnswered(session.call.id, session.call.answered_at or
                                       self.clock.now()))
            log.info("call.answered")
        except ChannelGone:
            log.info("call.gone_before_answer")  # ChannelDestroyed follows and ends the call
            await self.save(session)
            return
        # One insert with arrival and answer times, alongside the script's first prompt.
        await asyncio.gather(self.save(session), script.on_answered(session))

    async def _event_loop(self, session: CallSession, script: CallScript) -> None:
        caller = session.call.channel_id
        while not session.call.is_over:
            event = await session.events.get()
            if event is STOP:
                # Release what the script holds in this process (audio tap, IVR task); the
                # call itself, and its agent, stay up for the next process.
                try:
                    await script.on_stopping(session)
                except Exception:  # the call is let go either way; say what failed
                    log.exception("call.script_stop_failed")
                return
            if isinstance(event, ChannelHangupRequest) and event.channel.id == caller:
                if session.ended_by is None:
                    session.ended_by = "caller"
                if event.cause is not None:
                    session.call = replace(session.call, hangup_cause=event.cause)
            if isinstance(event, ChannelDestroyed) and event.channel.id == caller:
                await self.finish(session, event.cause, event.cause_txt)
            elif isinstance(event, StasisEnd) and event.channel.id == caller:
                await self._await_destroy(session)
            if session.call.is_over:
                try:
                    await script.on_ended(session)
                except Exception:  # the call is over either way; say what failed
                    log.exception("call.script_end_failed")
                break
            try:
                await script.on_event(session, event)
            except CtiError as exc:
                log.warning("call.script_error", error=exc.message, event_type=event.type)

    async def _await_destroy(self, session: CallSession) -> None:
        caller = session.call.channel_id
        try:
            async with asyncio.timeout(_END_GRACE_S):
                while True:
                    event = await session.events.get()
                    if isinstance(event, ChannelDestroyed) and event.channel.id == caller:
                        await self.finish(session, event.cause, event.cause_txt)
                        return
        except TimeoutError:
            cause = session.call.hangup_cause
            await self.finish(session, cause, _cause_text(cause) or "left application")

    async def finish(self, session: CallSession, cause: int | None, cause_text: str | None) -> None:
        if session.call.is_over:
            return
        if not cause and session.ended_by == "caller":
            # chan_pjsip reports cause 0 for a caller's plain BYE; a BYE is Q.850 normal clearing.
            cause, cause_text = 16, _cause_text(16)
        session.call = ended(
            session.call, self.clock.now(), cause, cause_text, session.ended_by or "unknown"
        )
        call = session.call
        self._publish(CallEnded(call.id, call.ended_at or self.clock.now(), cause, cause_text,
                                call.ended_by or "unknown", call.agent_id, call.queue))
        await self.save(session)
        log.info("call.ended", cause=cause, cause_text=cause_text)

    async def end_lost(
        self, session: CallSession, reason: str = "gone while disconnected"
    ) -> None:
        """The caller's channel vanished while we were disconnected (or its whole PBX went
        away, reason "PBX lost"): close the call."""
        session.ended_by = session.ended_by or "unknown"
        await self.finish(session, session.call.hangup_cause, reason)
        if session.task is not None and session.task is not asyncio.current_task():
            session.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await session.task

    async def shutdown(self, grace_s: float = 3.0) -> None:
        """Stop the call tasks between events (no half-written rows); the calls stay up on the
        PBX and open in the database, for the next process to adopt."""
        tasks = [s.task for s in self.registry.sessions() if s.task is not None]
        for session in self.registry.sessions():
            session.events.put_nowait(STOP)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
