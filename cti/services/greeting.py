"""The answer script: the standard greeting (phrase 1), then the call goes on."""

from __future__ import annotations

from dataclasses import replace

from cti.adapters.ari.events import AriEvent, PlaybackFinished
from cti.adapters.db.call_repository import CallRepository
from cti.log import get_logger
from cti.ports import Telephony
from cti.services.call_registry import CallSession
from cti.services.prompts import PromptSource
from cti.settings import CompanySettings

log = get_logger(__name__)

GREETING_PHRASE = "greeting_answer"  # MISSION.md row 1


class GreetingScript:
    def __init__(
        self,
        telephony: Telephony,
        prompts: PromptSource,
        repo: CallRepository,
        company: CompanySettings,
    ) -> None:
        self.telephony = telephony
        self.prompts = prompts
        self.repo = repo
        self.company = company
        self._playback: str | None = None

    async def on_answered(self, session: CallSession) -> None:
        lang = self.company.language
        slots = {
            "company": self.company.name if lang == "zh" else self.company.name_en,
            "agent_id": session.call.agent_id or self.company.default_agent_id,
        }
        media = await self.prompts.media(GREETING_PHRASE, slots, lang)
        self._playback = await self.telephony.play(session.call.channel_id, media)
        log.info("call.greeting_started", playback=self._playback, media=media)

    async def on_event(self, session: CallSession, event: AriEvent) -> None:
        if isinstance(event, PlaybackFinished) and event.playback.id == self._playback:
            self._playback = None
            session.call = replace(session.call, greeting_played=True)
            await self.repo.save(session.call)
            log.info("call.greeting_finished")

    async def on_ended(self, session: CallSession) -> None:
        self._playback = None
