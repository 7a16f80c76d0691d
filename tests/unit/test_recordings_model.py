"""The pure parts of call recording: segment names, retention selection, Range parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cti.features.recordings.model import (
    DELETED,
    DONE,
    FAILED,
    RECORDING,
    Kept,
    RangeNotSatisfiable,
    expired,
    parse_range,
    segment_name,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_segment_names_are_safe_for_the_pbx_and_unique_per_segment() -> None:
    assert segment_name("1733012345.42", 1) == "call-1733012345_42-1"
    assert segment_name("1733012345.42", 2) == "call-1733012345_42-2"
    assert segment_name("../etc/passwd", 1) == "call-___etc_passwd-1"
    assert len(segment_name("x" * 500, 12)) <= 128


def test_retention_selects_finished_recordings_older_than_the_period_oldest_first() -> None:
    day = timedelta(days=1)
    rows = [
        Kept(1, DONE, NOW - 100 * day, NOW - 95 * day),     # expired
        Kept(2, DONE, NOW - 100 * day, NOW - 89 * day),     # ended within 90 days: kept
        Kept(3, FAILED, NOW - 91 * day, None),              # failed, never ended: by start
        Kept(4, RECORDING, NOW - 200 * day, None),          # still recording: never
        Kept(5, DELETED, NOW - 200 * day, NOW - 200 * day),  # gone already
        Kept(6, DONE, NOW - 300 * day, NOW - 299 * day),    # the oldest
    ]
    assert expired(rows, NOW, 90) == [6, 1, 3]
    assert expired(rows, NOW, 1000) == []
    assert expired([], NOW, 90) == []


@pytest.mark.parametrize(("header", "size", "span"), [
    (None, 100, None),
    ("bytes=0-9", 100, (0, 9)),
    ("bytes=10-", 100, (10, 99)),
    ("bytes=-10", 100, (90, 99)),
    ("bytes=-1000", 100, (0, 99)),
    ("bytes=90-1000", 100, (90, 99)),
    ("BYTES = 5 - 5", 100, (5, 5)),
])
def test_range_headers(header: str | None, size: int, span: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == span


@pytest.mark.parametrize("header", [
    "bytes=100-", "bytes=200-300", "bytes=9-3", "bytes=-0", "bytes=-", "bytes=0-1,5-6",
    "items=0-1", "bytes=a-b", "",
])
def test_bad_or_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)


def test_an_empty_file_has_no_range() -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=0-", 0)
