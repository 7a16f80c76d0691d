"""The waits-as-heard analysis (tests/e2e/heard.py) on packets made here: the edges are the
first and last audible sample, timed from the packet's arrival, and the waits are the
silences between sounds and before the BYE."""

from __future__ import annotations

import numpy as np
import pytest

from tests.e2e import media
from tests.e2e.heard import (
    AUDIBLE_DBFS,
    PCMU,
    Heard,
    audible_span,
    audible_table,
    sounds,
    ulaw_to_linear,
    waits,
)

T0_NS = 1_800_000_000 * 10**9


def test_the_ulaw_decoder_is_the_reference_one() -> None:
    codes = np.arange(256, dtype=np.uint8)
    assert [ulaw_to_linear(c) for c in range(256)] == media.ulaw_to_linear(codes).tolist()


def test_audible_is_minus_50_dbfs_or_louder() -> None:
    table = audible_table()
    threshold = 32768 * 10 ** (AUDIBLE_DBFS / 20)  # ~104
    quiet = media.encode(np.full(160, 80), "pcmu").tobytes()
    loud = media.encode(np.full(160, 130), "pcmu").tobytes()
    silence = media.encode(np.zeros(160), "pcmu").tobytes()
    assert audible_span(silence, table) == (-1, -1)
    assert audible_span(quiet, table) == (-1, -1)
    assert audible_span(loud, table) == (0, 159)
    payload = silence[:30] + loud[:100] + silence[:30]
    assert audible_span(payload, table) == (30, 129)
    assert all((abs(ulaw_to_linear(c)) >= threshold) == bool(table[c]) for c in range(256))


def prompt(start_s: float, packets: int, first: int = 0, last: int = 159, seq0: int = 0,
           pt: int = PCMU) -> list[Heard]:
    """A prompt's packets every 20 ms from start_s; audible from `first` of the first packet
    to `last` of the last; digital silence packets of the far end are not audible."""
    out = []
    for i in range(packets):
        at = T0_NS + round((start_s + i * 0.02) * 1e9)
        out.append(Heard(at, seq0 + i, (seq0 + i) * 160, pt,
                         first if i == 0 else 0, last if i == packets - 1 else 159))
    return out


def test_edges_are_the_audible_samples_and_the_waits_the_silences_between() -> None:
    quiet_packets = [Heard(T0_NS + round(s * 1e9), 0, 0, PCMU, -1, -1) for s in (3.0, 4.0)]
    comfort_noise = [Heard(T0_NS + round(6.0 * 1e9), 0, 0, 13, -1, -1)]
    packets = [
        *prompt(0.0, 100, first=16),  # 2 s, audible from 2 ms in
        *quiet_packets, *comfort_noise,
        *prompt(7.0, 50, last=79),  # 1 s, audible to 10 ms into its last packet
    ]
    heard = sounds(reversed(packets))  # order of arrival is restored
    assert len(heard) == 2
    first, second = heard
    assert first.start - T0_NS / 1e9 == pytest.approx(0.002, abs=1e-6)
    assert first.end - T0_NS / 1e9 == pytest.approx(2.0, abs=1e-6)
    assert second.start - T0_NS / 1e9 == pytest.approx(7.0, abs=1e-6)
    assert second.end - T0_NS / 1e9 == pytest.approx(7.0 + 0.98 + 0.01, abs=1e-6)
    bye = T0_NS / 1e9 + 12.99
    assert waits(heard, bye) == pytest.approx([5.0, 5.0], abs=1e-6)
    assert waits(heard) == pytest.approx([5.0], abs=1e-6)


def test_a_pause_inside_a_prompt_is_not_a_wait_and_a_stall_does_not_move_an_edge() -> None:
    words = [*prompt(0.0, 25), *prompt(0.9, 25, seq0=25)]  # 0.4 s pause between words
    # Asterisk stalls 100 ms mid-prompt, then goes on: the prompt lasts longer, its edges stay
    stalled = [*prompt(10.0, 25, seq0=100), *prompt(10.6, 25, seq0=125)]
    heard = sounds([*words, *stalled])
    assert [round(s.start - T0_NS / 1e9, 3) for s in heard] == [0.0, 10.0]
    assert [round(s.seconds, 3) for s in heard] == [1.4, 1.1]
    assert waits(heard) == pytest.approx([10.0 - 1.4], abs=1e-6)
    assert sounds([]) == []
    assert waits([], 5.0) == []
