"""A caller's key presses as the PBX reports them, with the repeats that cannot be presses left
out.

Each reported key carries the PBX's time of its end and how long the tone lasted. A new press
of the same key starts after the previous one ended, so it ends at least its own duration
later; a report of the same key sooner than that is the same press told twice (seen under load:
one RFC 2833 key reported twice 45 ms apart, counted as two survey answers; another time
six times within 0.3 s). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

MIN_TONE_MS = 40  # the shortest key tone a receiver must take (ITU-T Q.24): a missing duration


@dataclass
class KeyPresses:
    _last: tuple[str, datetime] | None = None
    dropped: int = 0

    def fresh(self, digit: str, at: datetime | None, duration_ms: int) -> bool:
        """Whether this report is a new press (False: the last press told again)."""
        if at is None:  # no PBX time: nothing to compare, taken as a press
            return True
        last, self._last = self._last, (digit, at)
        if last is None or last[0] != digit:
            return True
        apart_ms = (at - last[1]).total_seconds() * 1000.0
        if 0.0 <= apart_ms < max(duration_ms, MIN_TONE_MS):
            # Measured from the last report, repeat or not: under load one press came as six
            # reports, each within a tone of the one before, the last 0.25 s after the first.
            self.dropped += 1
            return False
        return True
