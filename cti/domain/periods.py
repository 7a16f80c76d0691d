"""Report periods: where an instant's interval starts and where the next one begins.

Every instant returned is in UTC: Python subtracts and compares two datetimes of the same
zone by their wall clocks, which is wrong across a daylight-saving change.

Fixed steps (15/30/60 minutes, counted from an origin such as a local midnight) and calendar
periods in a time zone (day, week from Monday, month), so a day is the local day even across a
daylight-saving change and a month is a month. Pure: instants in, instants out.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Literal, Protocol

CalendarKind = Literal["day", "week", "month"]


class Periods(Protocol):
    def start(self, at: datetime) -> datetime:
        """The start of the period `at` falls in."""
        ...

    def next(self, start: datetime) -> datetime:
        """The start of the period after the one starting at `start`."""
        ...


class FixedPeriods:
    """Steps of a fixed length counted from `origin` (before it too)."""

    def __init__(self, step: timedelta, origin: datetime) -> None:
        self.step, self.origin = step, origin.astimezone(UTC)

    def start(self, at: datetime) -> datetime:
        return self.origin + ((at - self.origin) // self.step) * self.step

    def next(self, start: datetime) -> datetime:
        return start + self.step


class CalendarPeriods:
    """Local days, weeks (from Monday) or months in `tz`."""

    def __init__(self, kind: CalendarKind, tz: tzinfo) -> None:
        self.kind, self.tz = kind, tz

    def _first_day(self, day: date) -> date:
        if self.kind == "week":
            return day - timedelta(days=day.weekday())
        if self.kind == "month":
            return day.replace(day=1)
        return day

    def _at(self, day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=self.tz).astimezone(UTC)

    def start(self, at: datetime) -> datetime:
        return self._at(self._first_day(at.astimezone(self.tz).date()))

    def next(self, start: datetime) -> datetime:
        day = start.astimezone(self.tz).date()
        if self.kind == "day":
            return self._at(day + timedelta(days=1))
        if self.kind == "week":
            return self._at(day + timedelta(days=7))
        return self._at(date(day.year + day.month // 12, day.month % 12 + 1, 1))


class WholePeriod:
    """One period from `origin` on (a report's "all")."""

    def __init__(self, origin: datetime) -> None:
        self.origin = origin.astimezone(UTC)

    def start(self, at: datetime) -> datetime:
        return self.origin

    def next(self, start: datetime) -> datetime:
        return datetime.max.replace(tzinfo=UTC)
