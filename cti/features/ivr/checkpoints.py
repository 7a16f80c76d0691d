"""Each live call's IVR checkpoint, kept in the database (table `ivr_checkpoints`).

The runner hands over a checkpoint whenever a call's timer is armed or a prompt starts
(`keep`, a dict assignment: nothing on the call's path waits on the database). One writer task
takes whatever is pending every `interval_s` and writes it in one transaction: one keyed upsert
per call (`executemany`), however many checkpoints the call made meanwhile, since only the
latest matters; calls that ended are deleted in the same transaction. A failed write keeps the
batch (unless a newer checkpoint replaced an entry) for the next round.

What it costs is measured in benchmarks/bench_ivr_checkpoints.py and said in docs/cluster.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.domain.ivr.checkpoint import Checkpoint, CheckpointUnreadable, from_json, to_json
from cti.platform.db.base import read_sessions
from cti.platform.db.tables.calls import CallRow
from cti.platform.db.tables.ivr import IvrCheckpointRow
from cti.platform.db.upsert import upsert
from cti.platform.log import get_logger

log = get_logger(__name__)

# How long a checkpoint may wait to be written: the window in which a process that dies
# loses a call's latest step (the call then resumes from the step before, or from the top).
FLUSH_INTERVAL_S = 0.05
RETRY_S = 1.0
# At start, checkpoints this old without an open call are removed (CheckpointStore.sweep).
CHECKPOINT_SWEEP_AGE = timedelta(minutes=1)


class CheckpointStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.reads = read_sessions(sessions)  # docs/storage.md

    async def write(self, keep: list[Checkpoint], drop: list[str]) -> None:
        """Upsert `keep` (one row per call) and delete `drop`, in one transaction."""
        async with self.sessions() as session, session.begin():
            if drop:
                await session.execute(
                    delete(IvrCheckpointRow).where(IvrCheckpointRow.call_id.in_(drop))
                )
            if keep:
                await session.execute(
                    upsert(IvrCheckpointRow, session.get_bind().dialect.name, "call_id",
                           ("at", "data")),
                    [{"call_id": cp.call_id, "at": cp.at, "data": to_json(cp)} for cp in keep],
                )

    async def sweep(self, before: datetime) -> int:
        """Delete checkpoints older than `before` whose call is not open in the call log (it
        ended while no process ran it). Recent ones are left: a new call's first checkpoint
        may be written a moment before its log row."""
        open_call = exists().where(CallRow.id == IvrCheckpointRow.call_id,
                                   CallRow.state != "ended")
        async with self.sessions() as session, session.begin():
            done = await session.execute(
                delete(IvrCheckpointRow).where(IvrCheckpointRow.at < before, ~open_call)
            )
        return int(getattr(done, "rowcount", 0) or 0)

    async def load(self, call_id: str) -> Checkpoint | None:
        """The call's last checkpoint; None if there is none or it cannot be read (said)."""
        async with self.reads() as session:
            data = await session.scalar(
                select(IvrCheckpointRow.data).where(IvrCheckpointRow.call_id == call_id)
            )
        if data is None:
            return None
        try:
            return from_json(dict(data))
        except CheckpointUnreadable as exc:
            log.warning("ivr_checkpoint_unreadable", call_id=call_id, error=str(exc))
            return None


class CheckpointWriter:
    """The runner's `CheckpointSink`: coalesces per call, writes in the background."""

    def __init__(
        self, store: CheckpointStore, interval_s: float = FLUSH_INTERVAL_S,
        gate: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.store = store
        self.interval_s = interval_s
        # In a cluster, whether this node still drives the calls (ActiveRole.may_drive): a
        # node that lost its lease must not write positions over its successor's.
        self.gate = gate
        self.refused = 0  # checkpoints and deletions not written: the lease was gone
        self._keep: dict[str, Checkpoint] = {}
        self._drop: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.writes = 0  # transactions, and rows in them (for the docs' cost figures)
        self.rows = 0
        self.coalesced = 0  # checkpoints replaced by a newer one before they were written

    @property
    def pending(self) -> int:
        """Checkpoints and deletions not written yet (held while the database is away)."""
        return len(self._keep) + len(self._drop)

    def keep(self, checkpoint: Checkpoint) -> None:
        if checkpoint.call_id in self._keep:
            self.coalesced += 1
        self._keep[checkpoint.call_id] = checkpoint
        self._drop.discard(checkpoint.call_id)
        self._poke()

    def drop(self, call_id: str) -> None:
        self._keep.pop(call_id, None)
        self._drop.add(call_id)
        self._poke()

    def _poke(self) -> None:
        if self._closing:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ivr-ckpt")
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            written = await self.flush()
            if self._closing:
                return
            # what comes meanwhile goes in one batch; a database away is asked less often
            await asyncio.sleep(self.interval_s if written else RETRY_S)

    async def flush(self) -> bool:
        """Write what is pending; False if the database refused (kept for the next round)."""
        keep, drop = list(self._keep.values()), list(self._drop)
        if not keep and not drop:
            return True
        self._keep, self._drop = {}, set()
        if self.gate is not None and not await self.gate():
            self.refused += len(keep) + len(drop)
            log.error("ivr_checkpoint_not_written", calls=len(keep) + len(drop),
                      reason="this node does not hold the active lease")
            return True
        try:
            await self.store.write(keep, drop)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("ivr_checkpoint_write_failed", error=str(exc), calls=len(keep) + len(drop))
            for cp in keep:  # back, unless a newer one (or the call's end) came meanwhile
                if cp.call_id not in self._keep and cp.call_id not in self._drop:
                    self._keep[cp.call_id] = cp
            self._drop |= {c for c in drop if c not in self._keep}
            self._wake.set()
            return False
        self.writes += 1
        self.rows += len(keep) + len(drop)
        return True

    async def close(self) -> None:
        """Write what is pending, then stop."""
        self._closing = True
        if self._task is not None and not self._task.done():
            self._wake.set()
            try:
                await asyncio.wait_for(self._task, 5.0)
            except TimeoutError:  # the database does not answer: what is pending is lost
                log.warning("ivr_checkpoint_close_timeout", pending=len(self._keep))
                return
        await self.flush()
