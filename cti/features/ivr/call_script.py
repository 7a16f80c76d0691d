"""The call script that hands an answered call to the IVR engine (flows and procedures)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Literal, Protocol

from cti.domain.audio_classifier import WindowFeatures
from cti.domain.calls import CallState
from cti.domain.crm import address_form
from cti.domain.ivr import events as ivr_events
from cti.domain.ivr.checkpoint import Checkpoint
from cti.domain.ivr.engine import CallContext
from cti.domain.ivr.flow import ListenNode
from cti.domain.ivr.key_presses import KeyPresses
from cti.events import Bus, MenuKeyPressed
from cti.features.calls.registry import CallSession
from cti.features.calls.storage import CallRepository
from cti.features.crm.caller_lookup import CallerLookup
from cti.features.ivr.caller_audio import TAP_BRIDGE_PREFIX, CallerAudioTap
from cti.features.ivr.runner import IvrRunner, ari_to_domain, pbx_time
from cti.platform.ari.events import (
    AriEvent,
    ChannelDtmfReceived,
    ChannelEnteredBridge,
    PlaybackFinished,
)
from cti.platform.errors import TelephonyError
from cti.platform.log import get_logger
from cti.platform.settings import Settings

log = get_logger(__name__)

GREETING_MEDIA = "sound:custom/greeting_answer"


class CheckpointSource(Protocol):
    async def load(self, call_id: str) -> Checkpoint | None: ...


def audio_classified(w: WindowFeatures) -> ivr_events.AudioClassified:
    """A classified window as the IVR engine takes it: the class, and the features that decided
    it (the procedure audit records them with what the window made happen)."""
    return ivr_events.AudioClassified(
        w.kind, w.level_dbfs, w.snr_db, floor_dbfs=w.floor_dbfs, voicing=w.voicing,
        flatness=w.flatness, modulation_db=w.modulation_db,
    )


class IvrCallScript:
    def __init__(
        self,
        runner: IvrRunner,
        repo: CallRepository,
        settings: Settings,
        tap: CallerAudioTap | None,
        flow: str,
        customers: CallerLookup | None = None,
        bus: Bus | None = None,
        checkpoints: CheckpointSource | None = None,
    ) -> None:
        self.runner = runner
        self.repo = repo
        self.settings = settings
        self.tap = tap
        self.flow = flow
        self.customers = customers
        self.bus = bus
        self.checkpoints = checkpoints
        self._task: asyncio.Task[object] | None = None
        self._tap_task: asyncio.Task[None] | None = None
        self._handover_task: asyncio.Task[None] | None = None
        self._keys = KeyPresses()  # the caller's keys, repeats that are no press left out

    async def _context(self, session: CallSession) -> CallContext:
        company = self.settings.company
        agent_id = session.call.agent_id or company.default_agent_id
        slots: dict[str, dict[str, str]] = {
            "zh": {"company": company.name, "agent_id": agent_id},
            "en": {"company": company.name_en, "agent_id": agent_id},
        }
        vip = False
        customer = None
        if self.customers is not None:
            # The lookup started when the call arrived; this waits for it, never twice.
            customer = await self.customers.identity(session.call.id,
                                                     session.call.caller_number)
        if customer is not None:
            vip = customer.is_vip
            if customer.surname.strip() and customer.title is not None:
                for lang in slots:
                    slots[lang]["surname"] = customer.surname.strip()
                    slots[lang]["title"] = address_form("", customer.title, lang).strip()
        # An adopted call goes on in the language its caller chose before the restart.
        lang = session.call.attributes.get("language") or company.language
        return CallContext(
            call_id=session.call.id, lang=lang, slots=slots, vip=vip,
            caller_number=session.call.caller_number,
        )

    async def on_answered(self, session: CallSession) -> None:
        await self._start(session, self.flow, None, fresh=True)

    async def on_adopted(self, session: CallSession) -> None:
        """After a service restart (or on the node adopting a dead node's calls): a call with
        a checkpoint goes on exactly there (the menu, the procedure's step, the rest of the
        wait: docs/cluster.md); without one, a caller in the menu hears it again from the top.
        One waiting in a queue stays there (the IVR idles at its route, the ACD has it
        again); one talking with an agent goes on in the agent flow's conversation (no
        greeting), or in the procedure it was in."""
        state = session.call.state
        checkpoint = await self._checkpoint(session)
        if checkpoint is not None and state not in (CallState.QUEUED, CallState.OFFERED):
            await self._start(session, str(checkpoint.state["flow"]), None, checkpoint)
        elif state in (CallState.ARRIVED, CallState.ANSWERED):
            await self._start(session, self.flow, None)
        elif state in (CallState.QUEUED, CallState.OFFERED):
            await self._start(session, self.flow, "route")
        elif state is CallState.CONNECTED:
            await self._start(session, self.settings.agent_flow, "listen")

    async def _checkpoint(self, session: CallSession) -> Checkpoint | None:
        """The call's kept IVR position, if any and if this process still has its flow (and
        procedure): a flow removed meanwhile means the older way (from the top)."""
        if self.checkpoints is None:
            return None
        try:
            checkpoint = await self.checkpoints.load(session.call.id)
        except Exception:  # a help for the caller, never a condition of adopting the call
            log.exception("ivr.checkpoint_load_failed", call_id=session.call.id)
            return None
        if checkpoint is None or checkpoint.state.get("phase") != "active":
            return None
        flows, procedures = self.runner.flow_source.flows, self.runner.procedures
        flow, proc = flows.get(str(checkpoint.state.get("flow"))), checkpoint.state.get("procedure")
        if flow is None or checkpoint.state.get("node") not in flow.nodes or (
            proc is not None and (proc.get("name") not in procedures
                                  or proc.get("node") not in procedures[proc["name"]].nodes)
        ):
            log.warning("ivr.checkpoint_flow_gone", call_id=session.call.id,
                        flow=checkpoint.state.get("flow"))
            return None
        return checkpoint

    async def _start(
        self, session: CallSession, flow: str, resume: Literal["route", "listen"] | None,
        checkpoint: Checkpoint | None = None, fresh: bool = False,
    ) -> None:
        call = session.call
        tap = self.tap
        if tap is not None and self._joins_caller(flow, fresh):
            # The caller's own channel in the tap's bridge before the greeting plays (a
            # playing channel joins a bridge only when its prompt ends); beside the CRM look-up.
            ctx, _joined = await asyncio.gather(
                self._context(session), tap.join(call.id, call.channel_id))
        else:
            ctx = await self._context(session)

        def ivr_hangs_up(reason: str) -> None:
            # Before the hang-up: its ChannelHangupRequest must not be taken for the caller's.
            session.ended_by = "agent" if reason == "agent" else "service"

        self._task = asyncio.create_task(
            self.runner.run_call(ctx, flow, call.channel_id, on_hangup=ivr_hangs_up,
                                 resume=resume, checkpoint=checkpoint,
                                 on_handover=self._handover),
            name=f"ivr-{call.id}",
        )
        if resume != "route" and self._listens(flow):
            self._start_tap_soon(session)

    def _listens(self, flow: str) -> bool:
        """Whether `flow` reads the caller's audio (a listen node, or an audio trigger). A
        menu does not: its callers' audio is tapped once they are bridged with an agent,
        never while they wait in a queue (three channels each in Asterisk, for nothing)."""
        spec = self.runner.flow_source.flows.get(flow)
        if spec is None:
            return True
        return any(
            isinstance(node, ListenNode) or any(t.startswith("audio:") for t in node.on)
            for node in spec.nodes.values()
        )

    def _joins_caller(self, flow: str, fresh: bool) -> bool:
        """Whether the tap's bridge takes the caller's own channel (two channels, no snoop):
        for a call just answered into a flow that reads its audio. An adopted call may be
        mid-prompt (a playing channel joins a bridge only when its prompt ends): the snoop."""
        det = self.settings.detection
        return fresh and det.tap_joins_caller and det.auto_start and self._listens(flow)

    async def _handover(self) -> None:
        """The IVR hands the caller on (queue, hold music, recording): out of the tap's
        bridge first, where the caller's own channel is in it."""
        if self.tap is not None:
            await self.tap.leave()

    def _start_tap_soon(self, session: CallSession) -> None:
        if self.tap is None or not self.settings.detection.auto_start or self._tap_task:
            return
        call = session.call
        # In the background: the call's events (the greeting's end, which starts the silence
        # watch) must not wait behind the tap's five ARI requests (seconds under load).
        self._tap_task = asyncio.create_task(
            self._start_tap(self.tap, call.id, call.channel_id), name=f"tap-{call.id}"
        )

    async def _start_tap(self, tap: CallerAudioTap, call_id: str, channel_id: str) -> None:
        def on_window(w: WindowFeatures) -> None:
            self.runner.feed(call_id, audio_classified(w))

        try:
            await tap.start(call_id, channel_id, on_window)
        except TelephonyError as exc:
            # Detection is a help, not a condition: the call goes on without it.
            log.warning("audio_tap.failed", error=exc.message)
            return
        # No IVR, no listener: also when the service stops mid-call and on_ended never
        # comes, the socket is closed with the call's IVR.
        if self._task is not None:
            self._task.add_done_callback(lambda _task: tap.close_socket())

    async def on_event(self, session: CallSession, event: AriEvent) -> None:
        if isinstance(event, ChannelDtmfReceived) and event.channel.id == session.call.channel_id:
            if not self._keys.fresh(event.digit, pbx_time(event), event.duration_ms):
                # The press before, told again: one key is one menu answer, one survey answer.
                log.warning("ivr.key_repeat_dropped", call_id=session.call.id,
                            digit=event.digit, dropped=self._keys.dropped)
                return
            # The last menu key pressed is the `menu` attribute the routing rules test.
            session.call.attributes["menu"] = event.digit
            if self.bus is not None:
                self.bus.publish(MenuKeyPressed(session.call.id, self.runner.clock.now(),
                                                event.digit))
        # The IVR first: the wait after a prompt starts from its end, so a database write
        # (0.5-1 s seen under load) must not come between the two.
        pair = ari_to_domain(event)
        if pair is not None and pair[0] == session.call.channel_id:
            self.runner.feed(session.call.id, pair[1])
        if isinstance(event, ChannelEnteredBridge) and event.channel.id == session.call.channel_id \
                and not event.bridge.id.startswith(TAP_BRIDGE_PREFIX):
            if self.tap is not None and self.tap.joined and self._handover_task is None:
                # An agent's bridge took the caller out of the tap's: a snoop hears it there.
                self._handover_task = asyncio.create_task(
                    self.tap.caller_bridged_elsewhere(), name=f"tap-snoop-{session.call.id}")
            self._start_tap_soon(session)  # with an agent now: the conversation is watched
        if isinstance(event, PlaybackFinished) and event.playback.media_uri.startswith(
            GREETING_MEDIA
        ) and not session.call.greeting_played:
            session.call = replace(session.call, greeting_played=True)
            await self.repo.save(session.call)

    async def on_stopping(self, session: CallSession) -> None:
        # Not the caller's end: the ACD keeps nothing to undo at the PBX (the agent's leg and
        # the bridge stay, for the next process to take back).
        self.runner.feed(session.call.id, ivr_events.HangUp("service_stopping"))
        await self._release(session)

    async def on_ended(self, session: CallSession) -> None:
        self.runner.feed(session.call.id, ivr_events.HangUp("caller_gone"))
        await self._release(session)

    async def _release(self, session: CallSession) -> None:
        if self._tap_task is not None and not self._tap_task.done():
            self._tap_task.cancel()  # still setting up: stop() below removes what it made
            await asyncio.gather(self._tap_task, return_exceptions=True)
        if self._handover_task is not None and not self._handover_task.done():
            self._handover_task.cancel()
            await asyncio.gather(self._handover_task, return_exceptions=True)
        if self.tap is not None:
            await self.tap.stop()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5)
            except TimeoutError:
                log.warning("ivr.still_running", call_id=session.call.id)
            except Exception:  # said, not swallowed: a dead IVR leaves agents' clicks unanswered
                log.exception("ivr.task_failed", call_id=session.call.id)
