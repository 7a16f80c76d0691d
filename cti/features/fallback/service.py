"""A caller no agent could take (the queue's max wait reached, or after hours) goes to the
routing rules' fallback: the ACD lets the call go (`Acd(on_fallback=...)`) and this puts the
caller's IVR in the fallback's flow: the call-back offer or the voicemail (settings
`fallback_flows`), with the queue and the mailbox as the call's slots `queue` and `mailbox`.

A fallback with no flow (none configured, or the IVR no longer runs the call) hangs up, as the
ACD does without a handler. "queue" fallbacks never come here at max wait (the router moves
the call); an after-hours "queue" does, and is hung up too: that queue is closed as well.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from cti.domain.calls import CallState, move
from cti.events import FallbackReached
from cti.features.calls.registry import CallRegistry
from cti.features.calls.storage import CallRepository
from cti.features.ivr.runner import IvrRunner
from cti.platform.errors import NotFound, TelephonyError
from cti.platform.log import get_logger
from cti.platform.ports import Telephony

log = get_logger(__name__)



class QueueFallback:
    """Subscribes to FallbackReached: the caller's IVR goes on in the fallback's flow."""

    def __init__(
        self,
        telephony: Telephony,
        runner: IvrRunner,
        registry: CallRegistry,
        repo: CallRepository | None,
        flows: Mapping[str, str | None],
    ) -> None:
        self.telephony = telephony
        self.runner = runner
        self.registry = registry
        self.repo = repo
        self.flows = dict(flows)  # fallback action -> IVR flow name

    async def on_fallback_reached(self, event: FallbackReached) -> None:
        """The hold music stops, the fallback's flow starts (or, without one, a hang-up)."""
        call_id, channel_id = event.call_id, event.channel_id
        if not channel_id:
            return  # the ACD no longer knew the call: nothing to do
        session = self.registry.get(call_id)
        # The queue whose max wait was reached (the menu's queue may have been overflowed or
        # moved by the rules); "" after hours (no queue was joined).
        queue = event.queue or ((session.call.queue or "") if session is not None else "")
        flow = self.flows.get(event.action)
        if flow is not None and flow not in self.runner.flow_source.flows:
            flow = None  # gone with a flows reload: silence would be worse than a hang-up
        state = self.runner.state_of(call_id)
        with contextlib.suppress(TelephonyError):  # the caller may be gone already
            await self.telephony.stop_moh(channel_id)
        if flow is None or state is None:
            log.warning("call.fallback_hangup", call_id=call_id, fallback=event.action,
                        reason="no fallback flow" if flow is None else "no IVR on the call")
            with contextlib.suppress(TelephonyError):
                await self.telephony.hangup(channel_id)
            return
        values = {"queue": queue, "mailbox": event.mailbox or queue or "default"}
        slots = dict.fromkeys({state.lang, *state.ctx.slots}, values)
        if session is not None and session.call.state is CallState.QUEUED:
            # Back with the IVR: the call log shows it left the queue without an agent.
            session.call = move(session.call, CallState.ANSWERED)
            if self.repo is not None:
                await self.repo.save(session.call)
        log.info("call.fallback_flow", call_id=call_id, fallback=event.action, flow=flow,
                 queue=queue, mailbox=values["mailbox"])
        try:
            await self.runner.switch_flow(call_id, flow, slots)
        except NotFound:  # the caller hung up just now
            log.info("call.gone_at_fallback", call_id=call_id)
