"""Voicemails: the recordings the IVR's `record` node makes (a queue's or the after-hours
voicemail fallback), stored as rows once the PBX reports them finished, and read back for
supervisors (the list, and each message's audio from the PBX's stored recordings).

A recording outlives its call: when the caller hangs up mid-message, Asterisk ends the
recording and keeps the file, and the IVR has already let the call go. So this store, not the
call's IVR, waits for the end: every ARI event passes `on_ari_event`; a RecordingFinished
stores the row; when the caller's channel is gone and no end was reported, the stored file
itself is looked up (its length from the WAV header).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import wave
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import desc, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.domain.ivr.commands import Record
from cti.domain.ivr.engine import CallState
from cti.events import Bus, RecordingStarted, RecordingStopped
from cti.platform.ari.events import (
    AriEvent,
    ChannelDestroyed,
    RecordingFailed,
    RecordingFinished,
    StasisEnd,
)
from cti.platform.clock import Clock
from cti.platform.db.base import read_sessions
from cti.platform.db.tables.fallback import VoicemailRow
from cti.platform.errors import ChannelGone, NotFound, TelephonyError
from cti.platform.log import get_logger
from cti.platform.ports import Telephony

log = get_logger(__name__)

FORMAT = "wav"
# After the caller's channel ends, how long the PBX gets to report the recording's end before
# the stored file is looked up instead.
SETTLE_S = 1.5


class UnknownVoicemail(NotFound):
    error_id = "unknown_voicemail"


@dataclass(frozen=True, slots=True)
class _Pending:
    name: str
    call_id: str
    channel_id: str
    caller_number: str
    mailbox: str
    queue: str
    lang: str
    started_at: datetime


def wav_seconds(data: bytes) -> float | None:
    """The length of a WAV file's audio, None if it is no readable WAV."""
    try:
        with wave.open(io.BytesIO(data)) as w:
            frames, rate = int(w.getnframes()), int(w.getframerate())
    except (wave.Error, EOFError):
        return None
    return frames / rate if rate else None


class Voicemails:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], telephony: Telephony, clock: Clock,
        *, settle_s: float = SETTLE_S, bus: Bus | None = None,
    ) -> None:
        self.sessions = sessions
        self.reads = read_sessions(sessions)  # docs/storage.md
        self.telephony = telephony
        self.clock = clock
        self.settle_s = settle_s
        self.bus = bus
        self._pending: dict[str, _Pending] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the IVR's RecordingSink --------------------------------------------------------------

    def recording_started(self, state: CallState, channel_id: str, command: Record) -> None:
        slots = state.ctx.slots.get(state.lang) or next(iter(state.ctx.slots.values()), {})
        self._pending[command.name] = _Pending(
            command.name, state.ctx.call_id, channel_id, state.ctx.caller_number,
            command.mailbox, slots.get("queue", ""), state.lang, self.clock.now(),
        )
        if self.bus is not None:
            self.bus.publish(RecordingStarted(state.ctx.call_id, self.clock.now(), command.name))

    def recording_not_started(self, name: str) -> None:
        self._pending.pop(name, None)

    # -- ARI events ---------------------------------------------------------------------------

    async def on_ari_event(self, event: AriEvent) -> None:
        """Every ARI event (a dispatcher listener): never waits on the database."""
        if isinstance(event, RecordingFinished):
            pending = self._pending.pop(event.recording.name, None)
            if pending is not None:
                duration = event.recording.duration
                self._spawn(self._finish(pending, float(duration) if duration else None))
        elif isinstance(event, RecordingFailed):
            pending = self._pending.pop(event.recording.name, None)
            if pending is not None:
                log.error("voicemail.recording_failed", call_id=pending.call_id,
                          recording=pending.name, cause=event.recording.cause)
                if self.bus is not None:
                    self.bus.publish(RecordingStopped(pending.call_id, self.clock.now(),
                                                      pending.name, None, failed=True))
        elif isinstance(event, StasisEnd | ChannelDestroyed):
            for pending in [p for p in self._pending.values()
                            if p.channel_id == event.channel.id]:
                self._spawn(self._after_hangup(pending))

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _after_hangup(self, pending: _Pending) -> None:
        await asyncio.sleep(self.settle_s)
        if self._pending.get(pending.name) is not pending:
            return  # its RecordingFinished came meanwhile
        del self._pending[pending.name]
        await self._finish(pending, None)

    async def _finish(self, pending: _Pending, duration_s: float | None) -> None:
        if duration_s is None:  # not reported: measure the stored file
            try:
                duration_s = wav_seconds(await self.telephony.recording_file(pending.name))
            except TelephonyError as exc:
                log.warning("voicemail.no_file", call_id=pending.call_id,
                            recording=pending.name, error=exc.message)
                return
        try:
            async with self.sessions.begin() as session:
                session.add(VoicemailRow(
                    call_id=pending.call_id, caller_number=pending.caller_number,
                    mailbox=pending.mailbox, queue=pending.queue or None, lang=pending.lang,
                    recording=pending.name, format=FORMAT, duration_s=duration_s,
                    started_at=pending.started_at, recorded_at=self.clock.now(),
                ))
        except IntegrityError:  # stored already (the file lookup and the event both came)
            return
        except Exception:
            log.exception("voicemail.store_failed", call_id=pending.call_id)
            return
        log.info("voicemail.stored", call_id=pending.call_id, mailbox=pending.mailbox,
                 recording=pending.name, duration_s=duration_s)
        if self.bus is not None:
            self.bus.publish(RecordingStopped(pending.call_id, self.clock.now(), pending.name,
                                              duration_s))

    async def flush(self) -> None:
        """Wait for the rows being written (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- reading ------------------------------------------------------------------------------

    @staticmethod
    def _json(row: VoicemailRow) -> dict[str, Any]:
        return {
            "id": row.id, "call_id": row.call_id, "caller_number": row.caller_number,
            "mailbox": row.mailbox, "queue": row.queue, "lang": row.lang,
            "recording": row.recording, "format": row.format, "duration_s": row.duration_s,
            "started_at": row.started_at.isoformat(), "recorded_at": row.recorded_at.isoformat(),
        }

    async def list(self, limit: int = 100, mailbox: str | None = None) -> list[dict[str, Any]]:
        query = select(VoicemailRow).order_by(desc(VoicemailRow.recorded_at),
                                              desc(VoicemailRow.id))
        if mailbox is not None:
            query = query.where(VoicemailRow.mailbox == mailbox)
        async with self.reads() as session:
            rows = (await session.scalars(query.limit(limit))).all()
        return [self._json(r) for r in rows]

    async def get(self, voicemail_id: int) -> dict[str, Any]:
        async with self.reads() as session:
            row = await session.get(VoicemailRow, voicemail_id)
        if row is None:
            raise UnknownVoicemail(f"no voicemail {voicemail_id}")
        return self._json(row)

    async def audio(self, voicemail_id: int) -> tuple[bytes, str]:
        """The message's audio file and its media type."""
        vm = await self.get(voicemail_id)
        try:
            data = await self.telephony.recording_file(vm["recording"])
        except ChannelGone:  # ARI's 404: the file was deleted at the PBX
            raise UnknownVoicemail(
                f"voicemail {voicemail_id}: the PBX no longer has recording {vm['recording']}"
            ) from None
        return data, "audio/wav" if vm["format"] == "wav" else "application/octet-stream"
