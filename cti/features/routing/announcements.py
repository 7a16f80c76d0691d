"""Position/wait announcements to waiting callers: the core's `Announce` said over the hold
music (music off, the phrases in the caller's language, music back when the playback ends).

Never in the way of an agent: the core announces only to waiting calls, the media is prepared
in a task of its own (rendering a new value takes a moment), and before the caller joins a
bridge (or leaves for a fallback) the driver calls `stop`, which cancels or stops it.

A class of its own (the ACD owns one): its state is the playbacks it started and each call's
`Announcement`; it reads the shared `AcdCalls` only to tell whether a caller still waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from cti.domain.routing.acd import AcdCore, Announce
from cti.domain.routing.announcements import announcement_phrases
from cti.features.ivr.prompts import PromptSource
from cti.features.routing.acd_calls import LEG_SETTLE_TIMEOUT_S, AcdCall, AcdCalls
from cti.features.routing.timers import AcdTimers
from cti.platform.errors import CtiError, TelephonyError
from cti.platform.log import get_logger
from cti.platform.ports import Telephony

log = get_logger(__name__)


class Announcements:
    def __init__(
        self,
        telephony: Telephony,
        core: AcdCore,
        calls: AcdCalls,
        timers: AcdTimers,
        prompts: PromptSource | None,
        language: str,
    ) -> None:
        self._telephony = telephony
        self._core = core
        self._calls = calls
        self._timers = timers
        # Without prompts callers hear only music.
        self._prompts = prompts
        self._language = language  # for a call whose attributes name no language
        self.playing: dict[str, str] = {}  # playback id -> call id

    def announce(self, cmd: Announce) -> None:
        call = self._calls.get(cmd.call_id)
        if call is None or self._prompts is None or call.consult is not None:
            return
        ann = call.announcement
        busy = ann.task is not None and not ann.task.done()
        if busy or ann.playback_id is not None:
            return  # the previous announcement is still being said: skip this one
        ann.at_pbx = False
        ann.task = self._timers.spawn(self._say(cmd, call), name=f"acd-announce-{cmd.call_id}")

    async def _say(self, cmd: Announce, call: AcdCall) -> None:
        assert self._prompts is not None
        ann = call.announcement
        lang = str(call.attributes.get("language") or self._language)
        try:
            media: list[str] = []
            for phrase_id, slots in announcement_phrases(cmd.position, cmd.wait_s):
                media += await self._prompts.media(phrase_id, slots, lang)
        except CtiError as exc:
            log.warning("queue_announcement_failed", call_id=cmd.call_id, error=exc.message)
            return
        waiting = self._core.router.is_waiting(cmd.call_id)
        if not media or not waiting or not self._still_waiting(cmd.call_id, call):
            return  # offered, answered or gone while the media was prepared
        # From here on the task is waited for, not cancelled: a cancelled request may still
        # have started the playback, which nobody would then stop.
        ann.at_pbx = True
        pid = f"acd-announce-{uuid.uuid4().hex[:16]}"
        ann.playback_id = pid
        self.playing[pid] = cmd.call_id
        try:
            await self._telephony.stop_moh(call.channel_id)
            await self._telephony.play(call.channel_id, media, playback_id=pid)
        except TelephonyError as exc:  # ChannelGone: the caller hung up meanwhile
            log.info("queue_announcement_not_played", call_id=cmd.call_id, error=exc.message)
            self.playing.pop(pid, None)
            if ann.playback_id == pid:
                ann.playback_id = None
                if self._still_waiting(cmd.call_id, call):
                    with contextlib.suppress(TelephonyError):
                        await self._telephony.start_moh(call.channel_id, call.moh_class)

    def _still_waiting(self, call_id: str, call: AcdCall) -> bool:
        """The caller is still ours and not with an agent (waiting, or its agent ringing)."""
        return (
            self._calls.get(call_id) is call
            and call.bridge_id is None
            and call.consult is None
            and (call.leg is None or not call.leg.answered)
        )

    def on_playback_finished(self, playback_id: str) -> None:
        """A PlaybackFinished from the PBX (every one; not ours are ignored): at the end of an
        announcement the caller hears the hold music again. Does not block the event loop's
        dispatcher: the request runs in the call's announcement task."""
        call_id = self.playing.pop(playback_id, None)
        if call_id is None:
            return
        call = self._calls.get(call_id)
        if call is None or call.announcement.playback_id != playback_id:
            return  # stopped for a bridge or a fallback, or the caller left
        ann = call.announcement
        ann.playback_id = None
        if not self._still_waiting(call_id, call):
            return
        ann.at_pbx = True
        ann.task = self._timers.spawn(self._resume_moh(call), name=f"acd-moh-{call_id}")

    async def _resume_moh(self, call: AcdCall) -> None:
        with contextlib.suppress(TelephonyError):  # the caller hung up meanwhile
            await self._telephony.start_moh(call.channel_id, call.moh_class)

    async def stop(self, call: AcdCall) -> None:
        """Before the caller joins a bridge (or leaves for a fallback): an announcement being
        prepared is cancelled; one whose requests are under way is waited for (milliseconds);
        a playback is stopped, so it cannot hold up the caller's addChannel."""
        ann = call.announcement
        task, ann.task = ann.task, None
        if task is not None and not task.done():
            if not ann.at_pbx:
                task.cancel()
            await asyncio.wait({task}, timeout=LEG_SETTLE_TIMEOUT_S)
        pid, ann.playback_id = ann.playback_id, None
        if pid is not None:
            self.playing.pop(pid, None)
            with contextlib.suppress(TelephonyError):  # it ended by itself a moment ago
                await self._telephony.stop_playback(pid)

    def forget(self, call: AcdCall) -> None:
        """The caller hung up: nothing left to stop at the PBX; drop what we kept."""
        ann = call.announcement
        if ann.task is not None and not ann.at_pbx:
            ann.task.cancel()
        ann.task = None
        if ann.playback_id is not None:
            self.playing.pop(ann.playback_id, None)
            ann.playback_id = None
