"""Call recordings: a call answered from a queue with `record: true` is recorded in its
bridge (both parties, mixed), from bridge-up to hang-up. A transfer puts the call in a new
bridge: its recording goes on there as a new segment. The agent (or a supervisor) may pause
and resume it; each pause is kept. Every recording is a row (cti/platform/db/tables/
recordings.py) kept for `recordings.retention_days`, then its file is deleted at the PBX and
the row marked `deleted`.

Subscribes to CallConnected (start, or a new segment) and CallEnded (stop, store); publishes
RecordingStarted/RecordingStopped (purpose "call") and RecordingPaused/RecordingResumed. A
recording that fails (ARI refuses it, or the PBX reports RecordingFailed) is marked `failed`
with its reason, logged, and published as a failed RecordingStopped: never silent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.domain.routing.model import RoutingRules
from cti.events import (
    Bus,
    CallConnected,
    CallEnded,
    RecordingPaused,
    RecordingResumed,
    RecordingStarted,
    RecordingStopped,
)
from cti.features.fallback.voicemail import wav_seconds
from cti.features.recordings.model import (
    DELETED,
    DONE,
    FAILED,
    RECORDING,
    Kept,
    expired,
    segment_name,
)
from cti.platform.ari.events import AriEvent, RecordingFailed, RecordingFinished
from cti.platform.clock import Clock
from cti.platform.db.base import read_sessions
from cti.platform.db.tables.recordings import CallRecordingPauseRow, CallRecordingRow
from cti.platform.errors import ChannelGone, NotFound, TelephonyError
from cti.platform.log import get_logger

log = get_logger(__name__)

FORMAT = "wav"
PURPOSE = "call"
ORPHAN_AFTER_H = 12  # a segment still `recording` this long after its start, its call gone
SETTLE_TRIES = 10  # the stored file is looked up that many times, settle_s apart


class UnknownRecording(NotFound):
    error_id = "unknown_recording"


class NotRecording(NotFound):
    error_id = "not_recording"


class RecordingPbx(Protocol):
    """What recording asks of the PBX (AriTelephony has it)."""

    async def record_bridge(self, bridge_id: str, name: str, fmt: str = "wav") -> None: ...
    async def stop_recording(self, name: str) -> None: ...
    async def pause_recording(self, name: str) -> None: ...
    async def unpause_recording(self, name: str) -> None: ...
    async def recording_file(self, name: str) -> bytes: ...
    async def delete_stored_recording(self, name: str) -> None: ...


Sleep = Callable[[float], Awaitable[None]]


@dataclass
class _Live:
    """A call being recorded: its current segment."""

    call_id: str
    queue: str
    agent_id: str | None
    segment: int = 0
    row_id: int | None = None
    name: str = ""
    bridge_id: str = ""
    paused: bool = False
    pause_row: int | None = None
    failed: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class CallRecordings:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], pbx: RecordingPbx, clock: Clock,
        bus: Bus, rules: Callable[[], RoutingRules], *, retention_days: float = 90,
        sweep_every_s: float = 3600, sleep: Sleep = asyncio.sleep, settle_s: float = 0.5,
    ) -> None:
        self.sessions = sessions
        self.reads = read_sessions(sessions)  # docs/storage.md
        self.pbx = pbx
        self.clock = clock
        self.bus = bus
        self.rules = rules
        self.retention_days = retention_days
        self.sweep_every_s = sweep_every_s
        self.sleep = sleep
        self.settle_s = settle_s
        self._live: dict[str, _Live] = {}
        self._by_name: dict[str, _Live] = {}
        self._sweeper: asyncio.Task[None] | None = None
        bus.subscribe("recordings", self.on_event, (CallConnected, CallEnded))

    # ----- the call's life ---------------------------------------------------------------

    async def on_event(self, event: CallConnected | CallEnded) -> None:
        if isinstance(event, CallConnected):
            await self.on_connected(event)
        else:
            await self.on_ended(event)

    def _records(self, queue: str) -> bool:
        q = self.rules().queues.get(queue)
        return q is not None and q.record

    async def on_connected(self, event: CallConnected) -> None:
        live = self._live.get(event.call_id)
        if live is None:
            if not self._records(event.queue):
                return
            live = self._live[event.call_id] = _Live(event.call_id, event.queue, event.agent_id)
            async with live.lock:  # a call taken back after a restart: its earlier segments
                live.segment = await self._close_earlier(event.call_id)
        async with live.lock:
            if live.row_id is not None and event.bridge_id == live.bridge_id and not live.failed:
                live.agent_id = event.agent_id  # same bridge, same recording
                return
            await self._end_segment(live)  # a transfer: the old bridge's segment is over
            live.agent_id, live.queue = event.agent_id, event.queue or live.queue
            await self._start_segment(live, event.bridge_id)

    async def on_ended(self, event: CallEnded) -> None:
        live = self._live.pop(event.call_id, None)
        if live is None:
            return
        async with live.lock:
            await self._end_segment(live)

    async def _start_segment(self, live: _Live, bridge_id: str) -> None:
        live.segment += 1
        live.name, live.bridge_id, live.failed = segment_name(live.call_id, live.segment), \
            bridge_id, False
        now = self.clock.now()
        async with self.sessions.begin() as session:
            row = CallRecordingRow(
                call_id=live.call_id, segment=live.segment, name=live.name, format=FORMAT,
                bridge_id=bridge_id, queue=live.queue or None, agent_id=live.agent_id,
                status=RECORDING, started_at=now,
            )
            session.add(row)
            await session.flush()
            live.row_id = row.id
        self._by_name[live.name] = live
        try:
            if not bridge_id:
                raise TelephonyError("the call's bridge is not known")
            await self.pbx.record_bridge(bridge_id, live.name, FORMAT)
        except TelephonyError as exc:
            await self._fail(live, f"record_bridge: {exc.error_id}: {exc.message}")
            return
        log.info("recording.started", call_id=live.call_id, recording=live.name,
                 segment=live.segment, bridge_id=bridge_id)
        self.bus.publish(RecordingStarted(live.call_id, now, live.name, PURPOSE,
                                          agent_id=live.agent_id, segment=live.segment))
        if live.paused:  # paused before the transfer: the new segment starts paused too
            with contextlib.suppress(TelephonyError):
                await self.pbx.pause_recording(live.name)
            await self._open_pause(live, "carried over")

    async def _end_segment(self, live: _Live) -> None:
        if live.row_id is None or live.failed:
            return
        name, row_id = live.name, live.row_id
        live.row_id = None
        try:
            await self.pbx.stop_recording(name)
        except ChannelGone:
            pass  # it ended already with its bridge
        except TelephonyError as exc:
            log.warning("recording.stop_failed", call_id=live.call_id, recording=name,
                        error=exc.message)
        now = self.clock.now()
        await self._close_pause(live, row_id, now)
        duration = await self._stored_seconds(name)
        self._by_name.pop(name, None)
        if duration is None:
            await self._mark_failed(live.call_id, row_id, name, "no stored file at the PBX",
                                    live.agent_id)
            return
        async with self.sessions.begin() as session:
            await session.execute(
                update(CallRecordingRow).where(CallRecordingRow.id == row_id)
                .values(status=DONE, ended_at=now, duration_s=duration)
            )
        log.info("recording.stored", call_id=live.call_id, recording=name, duration_s=duration)
        self.bus.publish(RecordingStopped(live.call_id, now, name, duration, purpose=PURPOSE,
                                          agent_id=live.agent_id))

    async def _close_earlier(self, call_id: str) -> int:
        """Segments an earlier process left `recording` (this call was adopted after a
        restart): stopped at the PBX and stored. Returns the call's last segment number."""
        async with self.reads() as session:
            rows = (await session.execute(
                select(CallRecordingRow.id, CallRecordingRow.name, CallRecordingRow.segment,
                       CallRecordingRow.status, CallRecordingRow.agent_id)
                .where(CallRecordingRow.call_id == call_id)
            )).all()
        for r in rows:
            if r.status == RECORDING:
                await self._close_orphan(call_id, r.id, r.name, r.agent_id)
        return max((r.segment for r in rows), default=0)

    async def _close_orphan(
        self, call_id: str, row_id: int, name: str, agent_id: str | None
    ) -> None:
        with contextlib.suppress(TelephonyError):
            await self.pbx.stop_recording(name)
        duration = await self._stored_seconds(name)
        if duration is None:
            await self._mark_failed(call_id, row_id, name,
                                    "left recording by an earlier process; no file", agent_id)
            return
        now = self.clock.now()
        async with self.sessions.begin() as session:
            await session.execute(
                update(CallRecordingRow).where(CallRecordingRow.id == row_id)
                .values(status=DONE, ended_at=now, duration_s=duration)
            )
        self.bus.publish(RecordingStopped(call_id, now, name, duration, purpose=PURPOSE,
                                          agent_id=agent_id))

    async def _stored_seconds(self, name: str) -> float | None:
        """The stored file's length; the PBX closes the file as the bridge goes, so a
        moment is given (settle_s) before the file is looked up again."""
        for attempt in range(SETTLE_TRIES):
            try:
                seconds = wav_seconds(await self.pbx.recording_file(name))
                if seconds is not None:
                    return seconds
                log.info("recording.file_not_ready", recording=name, attempt=attempt)
            except ChannelGone:
                pass
            except TelephonyError as exc:
                log.warning("recording.no_file", recording=name, error=exc.message)
                return None
            if attempt < SETTLE_TRIES - 1:
                await self.sleep(self.settle_s)
        return None

    async def _fail(self, live: _Live, reason: str) -> None:
        live.failed = True
        if live.row_id is None:
            return
        row_id, live.row_id = live.row_id, None
        self._by_name.pop(live.name, None)
        await self._mark_failed(live.call_id, row_id, live.name, reason, live.agent_id)

    async def _mark_failed(
        self, call_id: str, row_id: int, name: str, reason: str, agent_id: str | None
    ) -> None:
        now = self.clock.now()
        log.error("recording.failed", call_id=call_id, recording=name, reason=reason)
        async with self.sessions.begin() as session:
            await session.execute(
                update(CallRecordingRow).where(CallRecordingRow.id == row_id)
                .values(status=FAILED, reason=reason[:500], ended_at=now)
            )
        self.bus.publish(RecordingStopped(call_id, now, name, None, failed=True,
                                          purpose=PURPOSE, reason=reason, agent_id=agent_id))

    async def on_ari_event(self, event: AriEvent) -> None:
        """A dispatcher listener: the PBX reporting one of our recordings failed."""
        if isinstance(event, RecordingFailed):
            live = self._by_name.get(event.recording.name)
            if live is not None:
                async with live.lock:
                    if live.name == event.recording.name:
                        await self._fail(live, f"PBX: {event.recording.cause or 'failed'}")
        elif isinstance(event, RecordingFinished):
            pass  # the length is read from the stored file at the end

    # ----- pause and resume --------------------------------------------------------------

    def live_agent(self, call_id: str) -> str | None:
        """The agent of a call being recorded (NotRecording when none is)."""
        live = self._live.get(call_id)
        if live is None or live.row_id is None:
            raise NotRecording(f"call {call_id} is not being recorded")
        return live.agent_id

    async def pause(self, call_id: str, by: str) -> bool:
        """Pause the call's recording; True when it is paused (also when it was already)."""
        live = self._live.get(call_id)
        if live is None:
            raise NotRecording(f"call {call_id} is not being recorded")
        async with live.lock:
            if live.row_id is None:
                raise NotRecording(f"call {call_id} is not being recorded")
            if live.paused:
                return True
            await self.pbx.pause_recording(live.name)
            live.paused = True
            await self._open_pause(live, by)
        return True

    async def resume(self, call_id: str, by: str) -> bool:
        """Resume the call's recording; False (not paused) when it runs."""
        live = self._live.get(call_id)
        if live is None:
            raise NotRecording(f"call {call_id} is not being recorded")
        async with live.lock:
            if live.row_id is None:
                raise NotRecording(f"call {call_id} is not being recorded")
            if not live.paused:
                return False
            await self.pbx.unpause_recording(live.name)
            live.paused = False
            now = self.clock.now()
            await self._close_pause(live, live.row_id, now)
            self.bus.publish(RecordingResumed(call_id, now, live.name, live.agent_id, by))
            log.info("recording.resumed", call_id=call_id, recording=live.name, by=by)
        return False

    async def _open_pause(self, live: _Live, by: str) -> None:
        assert live.row_id is not None
        now = self.clock.now()
        async with self.sessions.begin() as session:
            row = CallRecordingPauseRow(recording_id=live.row_id, paused_at=now, by=by[:64])
            session.add(row)
            await session.flush()
            live.pause_row = row.id
        self.bus.publish(RecordingPaused(live.call_id, now, live.name, live.agent_id, by))
        log.info("recording.paused", call_id=live.call_id, recording=live.name, by=by)

    async def _close_pause(self, live: _Live, row_id: int, now: datetime) -> None:
        if live.pause_row is None:
            return
        pause_row, live.pause_row = live.pause_row, None
        async with self.sessions.begin() as session:
            await session.execute(
                update(CallRecordingPauseRow).where(CallRecordingPauseRow.id == pause_row)
                .values(resumed_at=now)
            )

    # ----- retention ---------------------------------------------------------------------

    async def sweep(self) -> list[int]:
        """Delete the recordings the retention period has expired: the PBX's file (gone
        already is fine), then the row is marked `deleted`. One the PBX fails to delete is
        kept for the next sweep. Returns the ids deleted."""
        async with self.reads() as session:
            rows = (await session.execute(
                select(CallRecordingRow.id, CallRecordingRow.status, CallRecordingRow.started_at,
                       CallRecordingRow.ended_at, CallRecordingRow.name)
                .where(CallRecordingRow.status.in_((DONE, FAILED)))
            )).all()
        # segments an earlier process left `recording` on calls long over: stored now
        cutoff = self.clock.now() - timedelta(hours=ORPHAN_AFTER_H)
        async with self.reads() as session:
            orphans = (await session.execute(
                select(CallRecordingRow.id, CallRecordingRow.call_id, CallRecordingRow.name,
                       CallRecordingRow.agent_id)
                .where(CallRecordingRow.status == RECORDING,
                       CallRecordingRow.started_at < cutoff)
            )).all()
        for o in orphans:
            if o.call_id not in self._live:
                await self._close_orphan(o.call_id, o.id, o.name, o.agent_id)
        names = {r.id: r.name for r in rows}
        kept = [Kept(r.id, r.status, r.started_at, r.ended_at) for r in rows]
        deleted: list[int] = []
        for rid in expired(kept, self.clock.now(), self.retention_days):
            try:
                await self.pbx.delete_stored_recording(names[rid])
            except ChannelGone:
                pass
            except TelephonyError as exc:
                log.warning("recording.delete_failed", recording=names[rid], error=exc.message)
                continue
            async with self.sessions.begin() as session:
                await session.execute(
                    update(CallRecordingRow).where(CallRecordingRow.id == rid)
                    .values(status=DELETED, deleted_at=self.clock.now())
                )
            deleted.append(rid)
        if deleted:
            log.info("recording.retention_deleted", count=len(deleted),
                     retention_days=self.retention_days)
        return deleted

    def start(self) -> None:
        """Run the retention sweep now and every `sweep_every_s`."""
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="recordings-sweep")

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recording.sweep_failed")
            await self.sleep(self.sweep_every_s)

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    # ----- reading -----------------------------------------------------------------------

    async def of_call(self, call_id: str) -> list[dict[str, Any]]:
        async with self.reads() as session:
            rows = (await session.scalars(
                select(CallRecordingRow).where(CallRecordingRow.call_id == call_id)
                .order_by(CallRecordingRow.segment)
            )).all()
            ids = [r.id for r in rows]
            pauses = (await session.scalars(
                select(CallRecordingPauseRow)
                .where(CallRecordingPauseRow.recording_id.in_(ids))
                .order_by(CallRecordingPauseRow.id)
            )).all() if ids else []
        by_rec: dict[int, list[dict[str, Any]]] = {}
        for p in pauses:
            by_rec.setdefault(p.recording_id, []).append({
                "paused_at": p.paused_at.isoformat(),
                "resumed_at": p.resumed_at.isoformat() if p.resumed_at else None, "by": p.by,
            })
        return [self._json(r, by_rec.get(r.id, [])) for r in rows]

    async def get(self, recording_id: int) -> CallRecordingRow:
        async with self.reads() as session:
            row = await session.get(CallRecordingRow, recording_id)
        if row is None:
            raise UnknownRecording(f"no recording {recording_id}")
        return row

    async def agents_of_call(self, call_id: str) -> set[str | None]:
        async with self.reads() as session:
            agents = (await session.scalars(
                select(CallRecordingRow.agent_id).where(CallRecordingRow.call_id == call_id)
            )).all()
        return set(agents)

    async def audio(self, recording_id: int) -> bytes:
        row = await self.get(recording_id)
        if row.status == DELETED:
            raise UnknownRecording(f"recording {recording_id} was deleted (retention period)")
        try:
            return await self.pbx.recording_file(row.name)
        except ChannelGone:
            raise UnknownRecording(
                f"recording {recording_id}: the PBX has no file {row.name}"
            ) from None

    @staticmethod
    def _json(row: CallRecordingRow, pauses: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": row.id, "call_id": row.call_id, "segment": row.segment, "name": row.name,
            "format": row.format, "queue": row.queue, "agent_id": row.agent_id,
            "status": row.status, "reason": row.reason,
            "started_at": row.started_at.isoformat(),
            "ended_at": row.ended_at.isoformat() if row.ended_at else None,
            "duration_s": row.duration_s,
            "deleted_at": row.deleted_at.isoformat() if row.deleted_at else None,
            "pauses": pauses,
        }
