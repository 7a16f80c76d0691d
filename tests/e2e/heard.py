"""What the caller hears, from the RTP the caller receives: the prompts' edges and the waits.

Pure analysis over received packets (see tests/e2e/rtp_caller.py for how they are captured):
each packet carries its arrival time on the caller's socket (the kernel's receive time stamp)
and, for G.711 µ-law audio, the index of its first and last *audible* sample. A sample is
audible when |x| >= AUDIBLE_DBFS (-50 dBFS: 30 dB under the prompts' -20 dBFS active level,
the same line the renderer trims prompts at, cti/platform/audio/render.py). A sample's time
is its packet's arrival + its index / 8000: a 20 ms packet is played from when it arrives.

A *sound* is a stretch of audible samples with no gap of GAP_S or more in it (a prompt's own
pauses are under 1 s; every timed wait is 3 s or more). The wait after a sound is the time
from its last audible sample to the next sound's first, or to the hang-up (the BYE).
See docs/line_watch.md, "How the waits are measured".
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SAMPLE_RATE = 8000
PCMU = 0
AUDIBLE_DBFS = -50.0
GAP_S = 1.0


def ulaw_to_linear(code: int) -> int:
    """G.711 µ-law code -> 16-bit linear sample (the reference decoder)."""
    code = ~code & 0xFF
    sign, exponent, mantissa = code & 0x80, (code >> 4) & 0x07, code & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -magnitude if sign else magnitude


def audible_table(dbfs: float = AUDIBLE_DBFS) -> bytes:
    """A bytes.translate table: µ-law code -> 1 if its sample is audible at `dbfs`, else 0."""
    threshold = 32768 * 10 ** (dbfs / 20)
    return bytes(int(abs(ulaw_to_linear(code)) >= threshold) for code in range(256))


def audible_span(payload: bytes, table: bytes) -> tuple[int, int]:
    """(first, last) index of an audible sample in a µ-law payload; (-1, -1) if none."""
    marks = payload.translate(table)
    return marks.find(1), marks.rfind(1)


@dataclass(frozen=True, slots=True)
class Heard:
    """One received RTP packet: kernel arrival time (ns, CLOCK_REALTIME), header fields, and
    its audible samples (-1 when none, or when it is not µ-law audio)."""

    at_ns: int
    seq: int
    timestamp: int
    payload_type: int
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class Sound:
    start: float  # the first audible sample, epoch seconds
    end: float  # just after the last audible sample, epoch seconds

    @property
    def seconds(self) -> float:
        return self.end - self.start


def sounds(packets: Iterable[Heard], gap_s: float = GAP_S) -> list[Sound]:
    """The audible stretches of a received stream, in order."""
    out: list[Sound] = []
    start = end = None
    for p in sorted(packets, key=lambda p: p.at_ns):
        if p.payload_type != PCMU or p.first < 0:
            continue
        first = p.at_ns / 1e9 + p.first / SAMPLE_RATE
        last = p.at_ns / 1e9 + (p.last + 1) / SAMPLE_RATE
        if start is None or end is None:
            start, end = first, last
        elif first - end >= gap_s:
            out.append(Sound(start, end))
            start, end = first, last
        else:
            end = max(end, last)
    if start is not None and end is not None:
        out.append(Sound(start, end))
    return out


def waits(heard: Sequence[Sound], hangup_at: float | None = None) -> list[float]:
    """The silences the caller sat through: between consecutive sounds, then from the last
    sound to the hang-up (when given), in seconds."""
    gaps = [b.start - a.end for a, b in itertools.pairwise(heard)]
    if hangup_at is not None and heard:
        gaps.append(hangup_at - heard[-1].end)
    return gaps
