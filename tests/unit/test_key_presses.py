"""Repeated key reports that cannot be new presses are left out; real presses, also of the same
key in quick succession, are all kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cti.domain.ivr.key_presses import MIN_TONE_MS, KeyPresses

T0 = datetime(2026, 12, 1, 21, 13, 28, 600000, tzinfo=UTC)


def at(ms: float) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def test_the_same_key_reported_again_within_its_tone_is_one_press() -> None:
    keys = KeyPresses()
    assert keys.fresh("1", at(0), 120)
    assert not keys.fresh("1", at(45), 120)  # as seen: the same "1" told twice, 45 ms apart
    assert keys.dropped == 1


def test_the_same_key_pressed_twice_is_two_presses() -> None:
    keys = KeyPresses()
    # 100 ms tones with a 60 ms pause: the second ends 160 ms after the first
    assert keys.fresh("1", at(0), 100)
    assert keys.fresh("1", at(160), 100)
    assert keys.fresh("1", at(320), 100)
    assert keys.dropped == 0


def test_other_keys_and_missing_times_are_always_presses() -> None:
    keys = KeyPresses()
    assert keys.fresh("5", at(0), 100)
    assert keys.fresh("1", at(10), 100)  # another key: a press, however soon
    assert keys.fresh("1", None, 100)  # no PBX time: nothing to compare
    assert keys.dropped == 0


def test_a_missing_duration_counts_as_the_shortest_tone() -> None:
    keys = KeyPresses()
    assert keys.fresh("3", at(0), 0)
    assert not keys.fresh("3", at(MIN_TONE_MS - 1), 0)
    assert keys.fresh("3", at(MIN_TONE_MS + 100), 0)


def test_a_run_of_repeats_is_one_press_however_long_the_run() -> None:
    keys = KeyPresses()
    assert keys.fresh("1", at(0), 100)
    for ms in (50, 120, 190, 260):  # each within a tone of the report before it
        assert not keys.fresh("1", at(ms), 100)
    assert keys.fresh("1", at(420), 100)  # a tone and a pause after the last report: a press
    assert keys.dropped == 4
