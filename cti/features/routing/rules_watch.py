"""The routing rules file behind the running ACD: read again when it changes (its mtime is
checked every `interval_s` through the scheduler) or when a supervisor asks (`reload`).
A bad file is rejected: the running rules stay in force, and the error is logged and kept in
`status.last_error`. Each reload, good or bad, is published on the bus (RulesReloaded).

A class of its own (the ACD owns one) rather than part of the driver: its state is the file's
status alone; it hands good rules to the ACD through `apply`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cti.domain.routing.model import RoutingRules
from cti.events import Bus, RulesReloaded
from cti.features.routing.rules import load_rules, summarize
from cti.features.routing.timers import AcdTimers
from cti.platform.clock import Clock
from cti.platform.errors import ConfigError
from cti.platform.log import get_logger

log = get_logger(__name__)


@dataclass
class RulesStatus:
    path: Path
    loaded_at: datetime | None = None
    mtime: float | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    summary: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "loaded_at": self.loaded_at.isoformat() if self.loaded_at else None,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at.isoformat() if self.last_error_at else None,
            "summary": self.summary,
        }


class RulesWatch:
    def __init__(
        self,
        rules: RoutingRules,
        path: Path | None,
        *,
        apply: Callable[[RoutingRules], Awaitable[None]],
        clock: Clock,
        timers: AcdTimers,
        bus: Bus | None,
        interval_s: float,
    ) -> None:
        self._apply = apply
        self._clock = clock
        self._timers = timers
        self._bus = bus
        self.interval_s = interval_s  # 0: the file is read again only when asked
        self.status = RulesStatus(path or Path(rules.source or "."))
        self.status.summary = summarize(rules)
        self.status.loaded_at = clock.now()
        if path is not None:
            with contextlib.suppress(OSError):
                self.status.mtime = path.stat().st_mtime

    def start(self) -> None:
        if self.interval_s > 0:
            self._timers.every(self.interval_s, self.check, name="acd-rules-watch",
                               failure="routing_rules_watch_failed")

    async def check(self) -> None:
        """Reload if the file changed since it was last read."""
        try:
            mtime = self.status.path.stat().st_mtime
        except OSError:
            return
        if mtime != self.status.mtime:
            await self.reload()

    async def reload(self) -> RulesStatus:
        st = self.status
        with contextlib.suppress(OSError):
            st.mtime = st.path.stat().st_mtime
        try:
            rules = await asyncio.to_thread(load_rules, st.path)
        except ConfigError as exc:
            st.last_error, st.last_error_at = exc.message, self._clock.now()
            log.error("routing_rules_rejected", path=str(st.path), error=exc.message)
            self._publish(RulesReloaded(st.last_error_at, str(st.path), ok=False,
                                        error=exc.message, summary=st.summary))
            return st
        st.last_error = None
        st.loaded_at = self._clock.now()
        st.summary = summarize(rules)
        log.info("routing_rules_reloaded", path=str(st.path))
        self._publish(RulesReloaded(st.loaded_at, str(st.path), ok=True, summary=st.summary))
        await self._apply(rules)
        return st

    def _publish(self, event: RulesReloaded) -> None:
        if self._bus is not None:
            self._bus.publish(event)
