"""Whether the database answers, since when, and what is kept meanwhile (GET /health).

A database that goes away (a PostgreSQL restart, a failover) must not end calls: the writers
on a call's path keep what the database refused and write it again when it is back (the call
log, the event log, the routing decisions, the IVR checkpoints, the procedure audit). This
module says which errors mean "not now, later" and reports the database's state with how many
writes each writer holds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    NotSupportedError,
    ProgrammingError,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from cti.platform.clock import Clock
from cti.platform.db.base import read_only_engine
from cti.platform.log import get_logger

log = get_logger(__name__)

PROBE_EVERY_S = 1.0
PROBE_TIMEOUT_S = 2.0  # a server cut off by the network answers nothing at all
# Errors about the statement or its data: writing it again would fail again.
_DATA_ERRORS = (IntegrityError, DataError, ProgrammingError, NotSupportedError)


def db_unavailable(exc: BaseException) -> bool:
    """True if the database could not take the request now (down, restarting, a connection
    cut): the same write may succeed later. Seen with asyncpg: ConnectionRefusedError while
    the server is down, DBAPIError "the database system is starting up", InterfaceError
    "connection is closed" on a pooled connection the restart cut."""
    if isinstance(exc, DBAPIError):
        return not isinstance(exc, _DATA_ERRORS)
    return isinstance(exc, OSError | TimeoutError)


def describe(exc: BaseException) -> str:
    message = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {message}"[:300]


class DatabaseHealthOut(BaseModel):
    reachable: bool | None = Field(
        description="the last probe (SELECT 1, every second) answered; null before the first")
    error: str | None = None
    since: datetime | None = Field(
        None, description="when the database became unreachable, or reachable again")
    pending_writes: dict[str, int] = Field(
        default_factory=dict,
        description="rows each writer keeps because the database refused them; written when "
                    "it is back")
    limits: list[str] = Field(default_factory=list)


class DatabaseHealth:
    """Probes the database every second while the service runs."""

    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self.engine = engine
        # the probe only reads: on SQLite it must not wait for the write lock (a long write
        # would read as the database being down)
        self._probe_engine = read_only_engine(engine)
        self.clock = clock
        self.reachable: bool | None = None
        self.error: str | None = None
        self.since: datetime | None = None
        self._pending: dict[str, Callable[[], int]] = {}
        self._task: asyncio.Task[None] | None = None

    def keeps(self, writer: str, pending: Callable[[], int]) -> None:
        """A writer that holds refused writes reports how many here."""
        self._pending[writer] = pending

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._probe_loop(),
                                                                name="db-health")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _probe_loop(self) -> None:
        while True:
            await self.probe()
            await asyncio.sleep(PROBE_EVERY_S)

    async def probe(self) -> bool:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S), self._probe_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # whatever it is, the database did not answer the probe
            self._set(False, describe(exc))
            return False
        self._set(True, None)
        return True

    def _set(self, reachable: bool, error: str | None) -> None:
        if reachable != self.reachable:
            if reachable and self.reachable is False:
                log.warning("db.reachable_again", down_since=str(self.since),
                            pending=self.pending())
            elif not reachable:
                log.error("db.unreachable", error=error,
                          effect="calls go on; the record's writes are kept and retried")
            self.since = self.clock.now()
        self.reachable, self.error = reachable, error

    def pending(self) -> dict[str, int]:
        return {name: n for name, count in self._pending.items() if (n := count())}

    def health(self) -> DatabaseHealthOut:
        pending = self.pending()
        limits = []
        if self.reachable is False:
            limits = [
                "the database is unreachable: calls are answered and routed as usual; the "
                "call log, event log and routing decisions are kept in memory and written "
                "when it is back",
                "what reads the record waits or fails: history, reports, log-in, the CRM "
                "lookup (callers are routed without their customer record)",
            ]
        return DatabaseHealthOut(reachable=self.reachable, error=self.error, since=self.since,
                                 pending_writes=pending, limits=limits)
