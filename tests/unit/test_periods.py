"""Report periods: local days across a daylight-saving change, weeks from Monday, months of
their real length, fixed steps counted from a local midnight."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cti.domain.periods import CalendarPeriods, FixedPeriods, WholePeriod

BERLIN = ZoneInfo("Europe/Berlin")
SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_a_local_day_is_23_hours_on_the_spring_change() -> None:
    days = CalendarPeriods("day", BERLIN)
    start = days.start(datetime(2026, 3, 29, 12, tzinfo=UTC))
    assert start == datetime(2026, 3, 29, tzinfo=BERLIN)
    assert days.next(start) - start == timedelta(hours=23)
    # 23:30 UTC on the 28th is already the 29th in Berlin
    assert days.start(datetime(2026, 3, 28, 23, 30, tzinfo=UTC)) == start


def test_weeks_start_on_monday_and_months_have_their_length() -> None:
    weeks = CalendarPeriods("week", SHANGHAI)
    start = weeks.start(datetime(2026, 12, 3, 1, tzinfo=UTC))  # a Thursday
    assert start == datetime(2026, 11, 30, tzinfo=SHANGHAI)
    assert weeks.next(start) == datetime(2026, 12, 7, tzinfo=SHANGHAI)
    months = CalendarPeriods("month", SHANGHAI)
    dec = months.start(datetime(2026, 12, 31, 17, tzinfo=UTC))  # 01:00 on 1 January there
    assert dec == datetime(2027, 1, 1, tzinfo=SHANGHAI)
    feb = months.start(datetime(2027, 2, 10, tzinfo=UTC))
    assert months.next(feb) - feb == timedelta(days=28)
    assert months.next(months.start(datetime(2026, 12, 5, tzinfo=UTC))) == dec


def test_fixed_steps_count_from_the_origin_both_ways() -> None:
    origin = datetime(2026, 12, 1, tzinfo=SHANGHAI)
    quarters = FixedPeriods(timedelta(minutes=15), origin)
    assert quarters.start(origin + timedelta(minutes=44)) == origin + timedelta(minutes=30)
    assert quarters.start(origin - timedelta(minutes=1)) == origin - timedelta(minutes=15)
    assert quarters.next(origin) == origin + timedelta(minutes=15)
    whole = WholePeriod(origin)
    assert whole.start(origin + timedelta(days=3)) == origin
    assert whole.next(origin) > origin + timedelta(days=10_000)
