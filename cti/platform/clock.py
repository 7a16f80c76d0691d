"""Time as an injected dependency: the pure core never calls time.time()."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC (for records)."""

    def monotonic(self) -> float:
        """Seconds on a monotonic clock (for durations and timers)."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None, mono: float = 0.0) -> None:
        self._start = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        self._mono0 = mono
        self._mono = mono

    def now(self) -> datetime:
        from datetime import timedelta

        return self._start + timedelta(seconds=self._mono - self._mono0)

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._mono += seconds
