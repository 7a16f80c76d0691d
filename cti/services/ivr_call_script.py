"""The call script that hands an answered call to the IVR engine (flows and procedures)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

from cti.adapters.ari.events import AriEvent, PlaybackFinished
from cti.adapters.db.call_repository import CallRepository
from cti.domain.audio_classifier import WindowFeatures
from cti.domain.ivr import events as ivr_events
from cti.domain.ivr.engine import CallContext
from cti.errors import TelephonyError
from cti.log import get_logger
from cti.services.call_registry import CallSession
from cti.services.caller_audio import CallerAudioTap
from cti.services.ivr_runner import IvrRunner, ari_to_domain
from cti.settings import Settings

log = get_logger(__name__)

GREETING_MEDIA = "sound:custom/greeting_answer"


class IvrCallScript:
    def __init__(
        self,
        runner: IvrRunner,
        repo: CallRepository,
        settings: Settings,
        tap: CallerAudioTap | None,
        flow: str,
    ) -> None:
        self.runner = runner
        self.repo = repo
        self.settings = settings
        self.tap = tap
        self.flow = flow
        self._task: asyncio.Task[object] | None = None

    def _context(self, session: CallSession) -> CallContext:
        company = self.settings.company
        agent_id = session.call.agent_id or company.default_agent_id
        return CallContext(
            call_id=session.call.id,
            lang=company.language,
            slots={
                "zh": {"company": company.name, "agent_id": agent_id},
                "en": {"company": company.name_en, "agent_id": agent_id},
            },
            caller_number=session.call.caller_number,
        )

    async def on_answered(self, session: CallSession) -> None:
        call = session.call
        self._task = asyncio.create_task(
            self.runner.run_call(self._context(session), self.flow, call.channel_id),
            name=f"ivr-{call.id}",
        )
        if self.tap is not None and self.settings.detection.auto_start:
            call_id = call.id

            def on_window(w: WindowFeatures) -> None:
                self.runner.feed(
                    call_id, ivr_events.AudioClassified(w.kind, w.level_dbfs, w.snr_db)
                )

            try:
                await self.tap.start(call_id, call.channel_id, on_window)
            except TelephonyError as exc:
                # Detection is a help, not a condition: the call goes on without it.
                log.warning("audio_tap.failed", error=exc.message)

    async def on_event(self, session: CallSession, event: AriEvent) -> None:
        if isinstance(event, PlaybackFinished) and event.playback.media_uri.startswith(
            GREETING_MEDIA
        ) and not session.call.greeting_played:
            session.call = replace(session.call, greeting_played=True)
            await self.repo.save(session.call)
        pair = ari_to_domain(event)
        if pair is not None and pair[0] == session.call.channel_id:
            self.runner.feed(session.call.id, pair[1])

    async def on_ended(self, session: CallSession) -> None:
        self.runner.feed(session.call.id, ivr_events.HangUp("caller_gone"))
        if self.tap is not None:
            await self.tap.stop()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)
