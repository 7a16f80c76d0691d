"""G.711 decoding of the line watch's RTP (cti/platform/audio/g711.py): every code against the
reference decoders of the test media (tests/e2e/media.py) and against G.711's own table values."""

from __future__ import annotations

import numpy as np
import pytest

from cti.features.ivr.caller_audio import joined_tap_format
from cti.platform.audio.g711 import ALAW, ULAW, alaw_to_pcm, pcm_to_ulaw, ulaw_to_pcm
from tests.e2e import media

CODES = bytes(range(256))


def test_every_ulaw_code_decodes_as_the_reference() -> None:
    decoded = np.frombuffer(ulaw_to_pcm(CODES), "<i2")
    assert decoded.tolist() == media.ulaw_to_linear(np.arange(256)).tolist()


def test_every_alaw_code_decodes_as_the_reference() -> None:
    decoded = np.frombuffer(alaw_to_pcm(CODES), "<i2")
    assert decoded.tolist() == media.alaw_to_linear(np.arange(256)).tolist()


@pytest.mark.parametrize(("table", "code", "value"), [
    # G.711's extremes and idle codes: A-law 0xD5/0x55 are +8/-8 (the idle pattern), 0xAA/0x2A
    # the loudest (+-32256); µ-law 0xFF/0x7F are zero, 0x80/0x00 the loudest (+-32124).
    ("alaw", 0xD5, 8), ("alaw", 0x55, -8), ("alaw", 0xAA, 32256), ("alaw", 0x2A, -32256),
    ("ulaw", 0xFF, 0), ("ulaw", 0x7F, 0), ("ulaw", 0x80, 32124), ("ulaw", 0x00, -32124),
])
def test_g711_table_values(table: str, code: int, value: int) -> None:
    assert int((ALAW if table == "alaw" else ULAW)[code]) == value


def test_ulaw_encoding_takes_each_code_back_to_itself() -> None:
    # both zero codes (0x7F, 0xFF) decode to 0; 0x7F is the one chosen for it
    back = pcm_to_ulaw(ulaw_to_pcm(CODES))
    assert [(i, b) for i, b in enumerate(back) if b != i] == [(0xFF, 0x7F)]


@pytest.mark.parametrize(("native", "expected"), [
    ("ulaw", "ulaw"), ("alaw", "alaw"), ("(alaw)", "alaw"), ("(ulaw|alaw)", "ulaw"),
    ("g722", "ulaw"), ("", "ulaw"), (None, "ulaw"),
])
def test_a_tap_bridged_with_the_caller_sends_the_callers_own_g711(
    native: str | None, expected: str
) -> None:
    assert joined_tap_format(native, "ulaw") == expected
