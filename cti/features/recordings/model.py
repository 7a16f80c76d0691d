"""The pure parts of call recording: segment names, which recordings the retention period has
expired, and HTTP Range parsing for playing a recording with seeking. No I/O, no clock."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

# What the status column holds.
RECORDING, DONE, FAILED, DELETED = "recording", "done", "failed", "deleted"

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def segment_name(call_id: str, segment: int) -> str:
    """The PBX's recording name of a call's `segment` (1, 2, ...): letters, digits, `_` and
    `-` only (a dot would read as a file extension at the PBX), unique per call."""
    return f"call-{_UNSAFE.sub('_', call_id)[:80]}-{segment}"


@dataclass(frozen=True, slots=True)
class Kept:
    """What retention needs of a stored recording."""

    id: int
    status: str
    started_at: datetime
    ended_at: datetime | None


def expired(rows: Iterable[Kept], now: datetime, retention_days: float) -> list[int]:
    """The ids of recordings older than the retention period (by their end, or their start if
    they never ended), oldest first. Ones still recording or deleted already are left alone;
    failed ones go too (a partial file may exist)."""
    cutoff = now - timedelta(days=retention_days)
    old = [
        r for r in rows
        if r.status in (DONE, FAILED) and (r.ended_at or r.started_at) < cutoff
    ]
    return [r.id for r in sorted(old, key=lambda r: (r.ended_at or r.started_at, r.id))]


class RangeNotSatisfiable(ValueError):
    """The Range header names no satisfiable byte range of the file (answer 416)."""


_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The first and last byte (inclusive) a `Range: bytes=a-b` header asks of a file of
    `size` bytes; None when there is no header (answer the whole file). One range only (what
    an audio element asks); forms: `a-b`, `a-` (to the end), `-n` (the last n bytes). A header
    that is malformed, asks several ranges, or lies beyond the file raises
    RangeNotSatisfiable."""
    if header is None:
        return None
    m = _RANGE.match(header)
    if m is None:
        raise RangeNotSatisfiable(f"unsupported Range {header[:60]!r}")
    first_s, last_s = m.groups()
    if not first_s and not last_s:
        raise RangeNotSatisfiable("empty range")
    if not first_s:  # suffix: the last n bytes
        n = int(last_s)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable("empty suffix range")
        return max(0, size - n), size - 1
    first = int(first_s)
    last = int(last_s) if last_s else size - 1
    if first >= size or last < first:
        raise RangeNotSatisfiable(f"range {first}-{last_s} outside {size} bytes")
    return first, min(last, size - 1)
