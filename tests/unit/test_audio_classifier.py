"""The caller-audio classifier (the line watch) on generated audio.

Two sets: tests/unit/audio_cases.py (espeak-ng speech and seeded noise, at 16 kHz and through
G.711 µ-law as the RTP stream brings it), and a labelled subset of the line-watch evaluation set
(tests/audio_eval.py; the full set is benchmarks/bench_line_watch_eval.py): speech from normal to
45 dB under it, clean and in five kinds of noise, the noises alone, line hiss, comfort noise and
digital silence, through µ-law, A-law, GSM and slin16, with and without lost packets and jitter,
labelled per the policy in docs/line_watch.md. Above all: a caller who is speaking is never
silent long enough to start the silent-call procedure, whose end is a hang-up.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pytest
from audio_cases import cases
from ivr_sim import SimCall

from cti.domain.audio_classifier import (
    AudioClassifier,
    ClassifierSettings,
    Measures,
    WindowFeatures,
    classify_features,
)
from cti.domain.ivr import commands as c
from cti.domain.ivr import events as e
from cti.features.ivr.call_script import audio_classified
from cti.platform.audio import rtp_stream
from cti.platform.audio.g711 import pcm_to_ulaw, ulaw_to_pcm
from cti.platform.audio.rtp_stream import (
    STREAMS_PER_SOCKET,
    CallerAudioStream,
    open_caller_audio,
    rtp_payload,
)
from tests import audio_eval as ev
from tests.e2e import media

CASES_16K = cases(16000)
CASES_8K = cases(8000)


def majority(pcm: bytes, rate: int) -> tuple[str, float]:
    windows = AudioClassifier(ClassifierSettings(), rate, 1000).feed(pcm)
    counts = Counter(w.kind for w in windows)
    kind, n = counts.most_common(1)[0]
    return kind, n / len(windows)


@pytest.mark.parametrize("name", sorted(CASES_16K))
def test_windows_are_classified_as_expected_at_16k(name: str) -> None:
    expected, pcm = CASES_16K[name]
    kind, share = majority(pcm, 16000)
    assert kind == expected
    assert share >= 0.75


@pytest.mark.parametrize("name", sorted(CASES_8K))
def test_windows_are_classified_as_expected_through_ulaw(name: str) -> None:
    expected, pcm = CASES_8K[name]
    kind, share = majority(ulaw_to_pcm(pcm_to_ulaw(pcm)), 8000)
    assert kind == expected
    assert share >= 0.75


def test_features_report_level_and_snr() -> None:
    windows = AudioClassifier(ClassifierSettings(), 16000, 1000).feed(CASES_16K["speech_en"][1])
    assert all(-25 < w.level_dbfs < -10 for w in windows)
    assert all(w.snr_db > 15 for w in windows)
    quiet = AudioClassifier(ClassifierSettings(), 16000, 1000).feed(CASES_16K["quiet_en"][1])
    assert all(-55 < w.level_dbfs < -40 for w in quiet)


def test_frames_may_arrive_in_any_chunking() -> None:
    pcm = CASES_8K["speech_zh"][1]
    whole = AudioClassifier(ClassifierSettings(), 8000, 500).feed(pcm)
    chunked = AudioClassifier(ClassifierSettings(), 8000, 500)
    pieces: list[WindowFeatures] = []
    for start in range(0, len(pcm), 137):
        pieces.extend(chunked.feed(pcm[start : start + 137]))
    assert pieces == whole


def test_unsupported_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="sample rate 44100"):
        AudioClassifier(ClassifierSettings(), 44100, 1000)


def test_ulaw_round_trip_is_close() -> None:
    pcm = (np.sin(np.arange(800) / 5) * 8000).astype("<i2").tobytes()
    back = np.frombuffer(ulaw_to_pcm(pcm_to_ulaw(pcm)), "<i2").astype(float)
    orig = np.frombuffer(pcm, "<i2").astype(float)
    assert np.max(np.abs(back - orig)) < 300


def rtp(seq: int, payload: bytes, pt: int = 0) -> bytes:
    return bytes([0x80, pt]) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big") + \
        (1234).to_bytes(4, "big") + payload


def test_rtp_payload_parsing() -> None:
    assert rtp_payload(rtp(1, b"abc")) == b"abc"
    assert rtp_payload(b"\x00" * 20) is None  # not RTP version 2
    with_csrc = bytes([0x81, 0]) + bytes(10) + bytes(4) + b"xy"
    assert rtp_payload(with_csrc) == b"xy"


async def test_rtp_endpoint_classifies_a_ulaw_stream() -> None:
    windows: list[WindowFeatures] = []
    stream = await open_caller_audio(
        "127.0.0.1", "ulaw", ClassifierSettings(), 1000, windows.append
    )
    try:
        ulaw = pcm_to_ulaw(CASES_8K["loud_noise"][1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            stream.hear_only(sock.getsockname()[1], "127.0.0.1")
            for seq, start in enumerate(range(0, len(ulaw), 160)):
                sock.sendto(rtp(seq, ulaw[start : start + 160]), ("127.0.0.1", stream.port))
                if seq % 20 == 0:
                    await asyncio.sleep(0.001)
        for _ in range(100):
            if len(windows) >= 3:
                break
            await asyncio.sleep(0.01)
    finally:
        stream.close()
    assert len(windows) >= 3
    assert {w.kind for w in windows} == {"noisy"}


async def test_rtp_endpoint_classifies_an_alaw_stream_and_drops_other_payload_types() -> None:
    """The tap bridged with an A-law caller sends the caller's own A-law (payload type 8); the
    bridge also passes RFC 2833 key presses (a dynamic type), which are not audio."""
    windows: list[WindowFeatures] = []
    stream = await open_caller_audio(
        "127.0.0.1", "alaw", ClassifierSettings(), 1000, windows.append
    )
    try:
        alaw = media.linear_to_alaw(
            np.frombuffer(CASES_8K["loud_noise"][1], "<i2")).astype(np.uint8).tobytes()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            stream.hear_only(sock.getsockname()[1], "127.0.0.1")
            seq = 0
            for start in range(0, len(alaw), 160):
                sock.sendto(rtp(seq, alaw[start : start + 160], pt=8), ("127.0.0.1", stream.port))
                # a key press event (4 bytes) after every packet: would shift the audio
                sock.sendto(rtp(seq + 1, bytes([5, 0x8A, 0, 160]), pt=101),
                            ("127.0.0.1", stream.port))
                seq += 2
                if seq % 40 == 0:
                    await asyncio.sleep(0.001)
        await _until(lambda: stream.packets >= len(alaw) // 160)
        await asyncio.sleep(0.1)  # anything still queued is read (and would be counted)
    finally:
        stream.close()
    assert stream.packets == len(alaw) // 160  # the audio's packets only
    assert len(windows) >= 3
    assert {w.kind for w in windows} == {"noisy"}


async def test_rtp_endpoint_classifies_an_8khz_signed_linear_stream() -> None:
    """The tap's format (detection.tap_format "slin"): L16 big-endian at 8 kHz, 320 bytes per
    20 ms, classified as the same audio through µ-law is."""
    windows: list[WindowFeatures] = []
    stream = await open_caller_audio(
        "127.0.0.1", "slin", ClassifierSettings(), 1000, windows.append
    )
    try:
        pcm = np.frombuffer(CASES_8K["loud_noise"][1], "<i2").astype(">i2").tobytes()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            stream.hear_only(sock.getsockname()[1])  # the port alone, as a GET tells it
            for seq, start in enumerate(range(0, len(pcm), 320)):
                sock.sendto(rtp(seq, pcm[start : start + 320], pt=118),
                            ("127.0.0.1", stream.port))
                if seq % 20 == 0:
                    await asyncio.sleep(0.001)
        for _ in range(100):
            if len(windows) >= 3:
                break
            await asyncio.sleep(0.01)
    finally:
        stream.close()
    assert len(windows) >= 3
    assert {w.kind for w in windows} == {"noisy"}
    assert stream.classifier.sample_rate == 8000


@pytest.mark.parametrize(
    ("hiss_dbfs", "expected"), [(-65, "silent"), (-50, "silent"), (-35, "noisy"), (-20, "noisy")]
)
def test_faint_line_hiss_is_silence_and_loud_hiss_is_noise(hiss_dbfs: float, expected: str) -> None:
    rng = np.random.default_rng(5)
    pcm = (rng.standard_normal(8000 * 4) * 32767 * 10 ** (hiss_dbfs / 20)).astype("<i2").tobytes()
    kind, share = majority(ulaw_to_pcm(pcm_to_ulaw(pcm)), 8000)
    assert (kind, share) == (expected, 1.0)


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)


async def test_rtp_endpoint_hears_only_its_sender() -> None:
    """A stale stream to the same port (a tap of a process that died, another call's sender)
    is not this caller; nothing is heard before the sender is known."""
    windows: list[WindowFeatures] = []
    stream = await open_caller_audio(
        "127.0.0.1", "ulaw", ClassifierSettings(), 1000, windows.append
    )
    noise = pcm_to_ulaw(CASES_8K["loud_noise"][1])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ours, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stale:
            ours.bind(("127.0.0.1", 0))
            ours.sendto(rtp(0, noise[:160]), ("127.0.0.1", stream.port))  # not known yet
            await _until(lambda: _shared(stream).foreign == 1)
            stream.hear_only(ours.getsockname()[1], "127.0.0.1")
            for seq, start in enumerate(range(0, 8000 * 3, 160)):
                stale.sendto(rtp(seq, noise[start : start + 160]), ("127.0.0.1", stream.port))
                ours.sendto(rtp(seq, bytes([0xFF]) * 160), ("127.0.0.1", stream.port))  # µ-law 0
                if seq % 20 == 0:
                    await asyncio.sleep(0.001)
        await _until(lambda: len(windows) >= 3)
        assert [w.kind for w in windows] == ["silent"] * 3
        assert _shared(stream).foreign == 151
        assert stream.packets == 150
    finally:
        stream.close()


def _shared(stream: CallerAudioStream) -> Any:
    return stream._socket


async def test_calls_share_a_socket_each_hearing_its_own_sender() -> None:
    """Calls share a UDP port (one socket read per batch, not one per call and packet), each
    taking only its sender's RTP; two senders with the same port number on two addresses
    (two PBXs) are told apart by the address. A socket closes with its last call."""
    heard: dict[str, list[WindowFeatures]] = {"noise": [], "zero": [], "other_pbx": []}
    streams = {name: await open_caller_audio(
        "127.0.0.1", "ulaw", ClassifierSettings(), 1000, windows.append
    ) for name, windows in heard.items()}
    ports = {stream.port for stream in streams.values()}
    assert len(ports) == 1
    noise = pcm_to_ulaw(CASES_8K["loud_noise"][1])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            a.bind(("127.0.0.1", 0))
            b.bind(("127.0.0.1", 0))
            # the same port number as a's, from another address of this host
            c.bind(("127.0.0.2", a.getsockname()[1]))
            streams["noise"].hear_only(a.getsockname()[1], "127.0.0.1")
            streams["zero"].hear_only(b.getsockname()[1])
            streams["other_pbx"].hear_only(a.getsockname()[1], "127.0.0.2")
            port = ports.pop()
            for seq, start in enumerate(range(0, 8000 * 2, 160)):
                a.sendto(rtp(seq, noise[start : start + 160]), ("127.0.0.1", port))
                b.sendto(rtp(seq, bytes([0xFF]) * 160), ("127.0.0.1", port))
                c.sendto(rtp(seq, bytes([0xFF]) * 160), ("127.0.0.1", port))
                if seq % 20 == 0:
                    await asyncio.sleep(0.001)
        await _until(lambda: all(len(w) >= 2 for w in heard.values()))
    finally:
        shared = _shared(streams["noise"])
        for stream in streams.values():
            assert not shared.closed
            stream.close()
            stream.close()  # idempotent
    assert [w.kind for w in heard["noise"]] == ["noisy"] * 2
    assert [w.kind for w in heard["zero"]] == ["silent"] * 2
    assert [w.kind for w in heard["other_pbx"]] == ["silent"] * 2
    assert shared.foreign == 0
    assert shared.closed


async def test_a_full_socket_sends_new_calls_to_the_next() -> None:
    streams = [await open_caller_audio("127.0.0.1", "slin", ClassifierSettings(), 1000,
                                       lambda w: None)
               for _ in range(STREAMS_PER_SOCKET + 1)]
    try:
        assert len({s.port for s in streams[:-1]}) == 1
        assert streams[-1].port != streams[0].port
    finally:
        for stream in streams:
            stream.close()
    # and a new call after a closed socket gets a working one
    fresh = await open_caller_audio("127.0.0.1", "slin", ClassifierSettings(), 1000,
                                    lambda w: None)
    try:
        assert not _shared(fresh).closed
    finally:
        fresh.close()


def test_a_stream_fed_datagrams_directly_skips_headers_and_padding() -> None:
    """The slow path (CSRCs, extension, padding), as benchmarks feed it."""
    windows: list[WindowFeatures] = []
    stream = CallerAudioStream("ulaw", ClassifierSettings(), 1000, windows.append)
    padded = bytes([0xA0, 0]) + bytes(10) + bytes([0xFF]) * 160 + bytes([0, 0, 3])
    for _ in range(50):
        stream.datagram_received(padded, ("127.0.0.1", 1))
    assert stream.packets == 50
    assert [w.kind for w in windows] == ["silent"]


# --- the labelled evaluation subset ------------------------------------------------------------

# Condition families (the start of ev.Condition.group) and the accuracy each must reach over its
# windows; the benchmark holds the full set to 97 % overall.
FAMILIES = [
    ("digital silence", 1.0),
    ("line hiss / comfort noise", 1.0),
    ("loud noise alone", 0.95),
    ("speech in ", 0.9),  # speech drowned in loud noise: noisy
    ("speech normal", 0.9),
    ("speech quiet -15..-25", 0.9),
    ("speech quiet -35..-45", 0.95),
]


@pytest.fixture(scope="module")
def quick() -> list[ev.Scored]:
    return ev.score(ev.render(ev.quick_set(seed=0)))


@pytest.mark.parametrize(("family", "minimum"), FAMILIES)
def test_each_condition_family_is_classified_as_labelled(
    quick: list[ev.Scored], family: str, minimum: float
) -> None:
    scored = [s for s in quick if s.clip.condition.group.startswith(family)]
    assert scored, family
    matrix = ev.confusion(scored)
    assert ev.accuracy(matrix) >= minimum, (family, dict(matrix))


def test_the_subset_is_classified_as_labelled_overall(quick: list[ev.Scored]) -> None:
    matrix = ev.confusion(quick)
    assert ev.accuracy(matrix) >= 0.95, dict(matrix)
    assert {t for t, _ in matrix} == set(ev.KINDS)  # every class is in the subset


def test_no_speaking_caller_is_silent_long_enough_to_start_the_silent_call(
    quick: list[ev.Scored],
) -> None:
    present = [s for s in quick if s.clip.condition.present]
    assert len(present) > 40
    assert {s.clip.condition.codec for s in present} == set(ev.CODECS)
    assert {s.clip.condition.loss for s in present} == set(ev.LOSSES)
    assert ev.hangup_risks(present, 1000) == []
    worst = max(present, key=lambda s: s.longest_silent_run)
    assert worst.longest_silent_run <= 1, worst.clip.condition.name


@pytest.mark.parametrize("codec", ev.CODECS)
def test_very_quiet_speech_is_not_taken_for_silence(codec: str) -> None:
    """The trial: a caller 35-45 dB under a normal talker (audible on a handset) was taken for
    silence and hung up on. Three voices, every network, over the line's own hiss or none."""
    conditions = [
        ev.Condition(down, noise, None, None, codec, loss, ev.VOICES[(i * 3) % len(ev.VOICES)],
                     seed=900 + i, seconds=6.0)
        for i, (down, noise, loss) in enumerate(
            (down, noise, loss) for down in (35, 40, 45) for noise in (None, "line")
            for loss in ev.LOSSES
        )
    ]
    scored = ev.score(ev.render(conditions))
    kinds = Counter(k for s in scored for k in s.kinds)
    assert kinds["quiet"] >= 0.95 * sum(kinds.values()), kinds
    for s in scored:
        assert s.longest_silent_run <= 1, (s.clip.condition.name, s.kinds)


@pytest.mark.parametrize(
    ("speech_dbfs", "noise_dbfs", "kind"),
    [
        (-20, None, "normal"), (-25, -45, "normal"), (-20, -30, "normal"),  # SNR >= 10 dB
        (-35, None, "quiet"), (-65, -68, "quiet"), (-45, -55, "quiet"),  # 15-45 dB down
        (-20, -25, "noisy"), (-35, -35, "noisy"), (-25, -30, "noisy"),  # SNR <= 5, loud noise
        (-45, -45, "quiet"),  # the noise is line hiss, however close: the voice is quiet
        (None, -25, "noisy"), (None, -35, "noisy"),  # loud noise alone
        (None, -50, "silent"), (None, -70, "silent"), (None, None, "silent"),  # hiss, nothing
    ],
)
def test_labelling_policy(speech_dbfs: float | None, noise_dbfs: float | None, kind: str) -> None:
    assert ev.expected_kind(speech_dbfs, noise_dbfs) == kind


def test_the_evaluation_set_is_reproducible() -> None:
    conditions = ev.quick_set(seed=3)[::20]
    assert [c.pcm for c in ev.render(conditions)] == [c.pcm for c in ev.render(conditions)]


# What the e2e callers' line audio (tests/e2e/media.py: the captures sipp plays) must be called.
E2E_TRUTH = {"silence": "silent", "hiss": "silent", "speech": "normal", "speech-quiet": "quiet",
             "speech-noisy": "noisy", "noise": "noisy"}


@pytest.mark.parametrize("codec", ["pcmu", "pcma"])
def test_the_e2e_callers_line_audio(codec: Literal["pcmu", "pcma"]) -> None:
    for name, samples in media.standard_signals(seconds=15.0).items():
        pcm = media.decode(media.encode(samples, codec), codec).astype("<i2").tobytes()
        kinds = [w.kind for w in AudioClassifier(ClassifierSettings(), 8000, 1000).feed(pcm)]
        assert kinds == [E2E_TRUTH[name]] * 15, (name, kinds)


# --- the decision, from the measures ---------------------------------------------------------

HISS = Measures(level_dbfs=-60, floor_dbfs=-61, voicing=0.27, flatness=0.55, modulation_db=0.3)
FAINT_SPEECH = Measures(level_dbfs=-60, floor_dbfs=-64, snr_db=4, voicing=0.31, flatness=0.44,
                        modulation_db=0.8)


@pytest.mark.parametrize(
    ("measures", "speaking", "kind"),
    [
        (Measures(), False, "silent"),  # nothing at all
        (HISS, False, "silent"),
        (Measures(level_dbfs=-30, floor_dbfs=-31, voicing=0.27, flatness=0.55,
                  modulation_db=0.3), False, "noisy"),  # loud noise alone
        (Measures(level_dbfs=-55, floor_dbfs=-75, snr_db=17, voicing=0.5, flatness=0.1,
                  modulation_db=4), False, "quiet"),
        (Measures(level_dbfs=-17, floor_dbfs=-45, snr_db=25, voicing=0.6, flatness=0.05,
                  modulation_db=6), False, "normal"),
        (Measures(level_dbfs=-17, floor_dbfs=-25, snr_db=5, floor_spread_db=3, voicing=0.45,
                  flatness=0.25, modulation_db=3), False, "noisy"),  # drowned in loud noise
        # no pause heard yet: the "floor" is the quiet ends of syllables, not noise
        (Measures(level_dbfs=-17, floor_dbfs=-33, snr_db=8, floor_spread_db=14, voicing=0.8,
                  flatness=0.02, modulation_db=3), False, "normal"),
        # periodic but steady (hum, a tone): never syllabic, so not speech
        (Measures(level_dbfs=-55, floor_dbfs=-60, voicing=0.7, flatness=0.3, modulation_db=0.2,
                  voiced_fraction=0.8), False, "silent"),
        # speech whose pitch is lost (GSM, noise) but whose spectrum is not noise-flat
        (Measures(level_dbfs=-60, floor_dbfs=-70, snr_db=8, voicing=0.25, flatness=0.3,
                  modulation_db=2.5), False, "quiet"),
        # weaker evidence is enough to go on speaking, not to start
        (FAINT_SPEECH, True, "quiet"),
        (FAINT_SPEECH, False, "silent"),
    ],
)
def test_decision_table(measures: Measures, speaking: bool, kind: str) -> None:
    assert classify_features(measures, ClassifierSettings(), speaking=speaking).kind == kind


@pytest.mark.parametrize("freq_hz", [150, 450, 1000])
@pytest.mark.parametrize(("dbfs", "kind"), [(-30, "noisy"), (-60, "silent")])
def test_a_steady_tone_is_not_speech(freq_hz: float, dbfs: float, kind: str) -> None:
    t = np.arange(8000 * 4) / 8000
    tone = np.sin(2 * np.pi * freq_hz * t) * 32768 * 10 ** (dbfs / 20) * np.sqrt(2)
    windows = AudioClassifier(ClassifierSettings(), 8000, 1000).feed(tone.astype("<i2").tobytes())
    assert [w.kind for w in windows] == [kind] * 4


def test_speech_level_is_floor_plus_snr() -> None:
    w = classify_features(
        Measures(level_dbfs=-30, floor_dbfs=-70, snr_db=36, voicing=0.6, modulation_db=5),
        ClassifierSettings(),
    )
    assert w.speech_dbfs == -34
    assert w.kind == "quiet"  # the loud frames are -30, the speech level -34: quiet


def test_lost_packets_and_digital_pauses_carry_nothing() -> None:
    """All-zero frames (lost packets filled with silence, a digitally silent line between
    words) and A-law's idle pattern are no sound: a window of them is silent, and a faint hiss
    around them is still hiss."""
    rate = 8000
    alaw_idle = (np.full(rate, 8, dtype="<i2")).tobytes()
    assert [w.kind for w in AudioClassifier(ClassifierSettings(), rate, 1000).feed(
        bytes(2 * rate) + alaw_idle)] == ["silent", "silent"]
    rng = np.random.default_rng(1)
    hiss = (rng.standard_normal(rate * 4) * 32768 * 10 ** (-60 / 20)).astype("<i2")
    hiss.reshape(-1, 160)[::20] = 0  # 5 % of the frames lost
    windows = AudioClassifier(ClassifierSettings(), rate, 1000).feed(hiss.tobytes())
    assert [w.kind for w in windows] == ["silent"] * 4
    assert all(-62 < w.floor_dbfs < -58 for w in windows)


@pytest.mark.parametrize("window_ms", [500, 2000])
def test_other_window_lengths(window_ms: int) -> None:
    clips = ev.render([
        ev.Condition(40, "line", None, None, "pcmu", "zero1", ev.VOICES[2], 5),
        ev.Condition(0, "white", 0, None, "pcma", "none", ev.VOICES[5], 6),
        ev.Condition(None, "hiss", None, -55.0, "gsm", "repeat3", ev.VOICES[0], 7),
    ])
    for s in ev.score(clips, window_ms=window_ms):
        share = Counter(s.kinds)[s.clip.condition.label] / len(s.kinds)
        assert share >= 0.8, (s.clip.condition.name, s.kinds)


# --- the features reach the procedure audit --------------------------------------------------


def test_a_window_becomes_an_engine_event_with_its_features() -> None:
    w = classify_features(
        Measures(level_dbfs=-55.123, floor_dbfs=-75.55, snr_db=18.04, voicing=0.5678,
                 flatness=0.1234, modulation_db=4.26, frames=50),
        ClassifierSettings(),
    )
    event = audio_classified(w)
    assert event.kind == "quiet"
    assert event.detail() == {
        "kind": "quiet", "level_dbfs": -55.1, "floor_dbfs": -75.5, "snr_db": 18.0,
        "voicing": 0.57, "flatness": 0.12, "modulation_db": 4.3,
    }


def test_the_audit_records_the_window_that_ended_a_silent_call() -> None:
    sim = SimCall.start()
    for t in range(1, 12):
        sim.run_until(float(t))
        sim.feed(e.AudioClassified("silent", -70.0, 0.0, floor_dbfs=-71.0, voicing=0.2,
                                   flatness=0.56, modulation_db=0.3))
    assert sim.state.procedure is not None
    assert sim.state.procedure.name == "silent_call"
    (started,) = sim.audits("procedure_started")
    assert started.detail["audio"]["kind"] == "silent"  # what the line sounded like
    quiet = e.AudioClassified("quiet", -58.0, 12.0, floor_dbfs=-70.0, voicing=0.45,
                              flatness=0.2, modulation_db=3.5)
    sim.feed(quiet)
    (trigger,) = sim.audits("trigger")
    assert trigger.detail == {"trigger": "speech", "audio": quiet.detail()}
    assert sim.state.procedure is None
    sim.run()
    assert not sim.of(c.HangUpCall)


def test_a_quiet_caller_through_the_classifier_never_starts_the_silent_call() -> None:
    """The classifier's windows, one a second, into the IVR engine: a caller speaking 40 dB
    under normal (GSM, 5 % lost) gets the quiet-line procedure, never the silent-call one."""
    (clip,) = ev.render([ev.Condition(40, "line", None, None, "gsm", "zero5_jitter",
                                      ev.VOICES[1], 11, seconds=20.0)])
    windows = AudioClassifier(ClassifierSettings(), clip.rate, 1000).feed(clip.pcm)
    sim = SimCall.start()
    for t, w in enumerate(windows, start=1):
        sim.run_until(float(t))
        sim.feed(audio_classified(w))
    sim.run()
    started = [a.procedure for a in sim.audits("procedure_started")]
    assert "silent_call" not in started
    assert started[0] == "quiet"


def test_digital_silence_is_measured_the_same_without_decoding_it() -> None:
    """Windows of digital zero take a short cut (no decoding; once the history is all pause,
    the measures kept): the features of every window, and of the windows after them, are
    those of the full computation, whatever came before and after."""
    rng = np.random.default_rng(11)
    zero = bytes(16000)
    hiss = (rng.standard_normal(8000 * 3) * 32767 * 10 ** (-60 / 20)).astype("<i2").tobytes()
    loud = pcm_to_ulaw(CASES_8K["loud_noise"][1])
    speech = ulaw_to_pcm(loud)[: 16000 * 3]
    half = bytes(8000) + hiss[:8000]  # a window half zero
    sequence = [hiss[:16000], zero, zero, speech[:16000], zero, half] + [zero] * 12 + [
        speech[16000:32000], hiss[16000:32000]] + [zero] * 9 + [speech[32000:48000], zero]
    for window_ms in (1000, 200):
        fast = AudioClassifier(ClassifierSettings(), 8000, window_ms)
        full = AudioClassifier(ClassifierSettings(), 8000, window_ms)
        full._zero = b"never a window"
        steady = 0
        for chunk in sequence:
            assert fast.feed(chunk) == full.feed(chunk)
            steady += fast._steady is not None
        assert fast._empty_run == full._empty_run
        assert steady >= 5  # the kept measures were used


def test_zero_window_pause_count_matches_the_frame_by_frame_count() -> None:
    for n in (1, 2, 3, 4, 50):
        for run in range(0, 7):
            c = AudioClassifier(ClassifierSettings(), 8000, n * 20)
            c._empty_run = run
            expected = c._pause_frames(np.ones(n, dtype=bool))
            c._empty_run = run
            c._measure_zero()
            assert c._powers.size == expected
            assert c._empty_run == run + n


async def test_shared_sockets_read_one_datagram_at_a_time_where_there_is_no_recvmmsg(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same tests through the one-at-a-time path (another OS); on Linux the batches
    (recvmmsg) are what the tests above went through."""
    probe = await open_caller_audio("127.0.0.1", "slin", ClassifierSettings(), 1000,
                                    lambda w: None)
    batched = _shared(probe)._batch is not None
    probe.close()
    assert batched == sys.platform.startswith("linux")
    monkeypatch.setattr(rtp_stream, "USE_BATCH", False)
    await test_rtp_endpoint_hears_only_its_sender()
    await test_calls_share_a_socket_each_hearing_its_own_sender()
    await test_rtp_endpoint_classifies_a_ulaw_stream()


async def test_batches_larger_than_one_read_are_all_heard(monkeypatch: pytest.MonkeyPatch) -> None:
    """More datagrams queued than one system call reads (a late tick): all are taken."""
    monkeypatch.setattr(rtp_stream, "BATCH_DATAGRAMS", 4)
    windows: list[WindowFeatures] = []
    stream = await open_caller_audio("127.0.0.1", "ulaw", ClassifierSettings(), 1000,
                                     windows.append)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            stream.hear_only(sock.getsockname()[1])
            for seq in range(100):  # 2 s, sent at once
                sock.sendto(rtp(seq, bytes([0xFF]) * 160), ("127.0.0.1", stream.port))
        await _until(lambda: len(windows) >= 2)
    finally:
        stream.close()
    assert stream.packets == 100
    assert [w.kind for w in windows] == ["silent", "silent"]


async def test_one_read_of_many_calls_gives_each_call_its_own_payloads_in_order() -> None:
    """Several calls' packets interleaved in one read (as they arrive while the socket waits
    for its timer): each call gets its own payloads in the order they came, a stranger's are
    counted as foreign, a call of another codec hears none of these packets."""
    streams = [await open_caller_audio("127.0.0.1", codec, ClassifierSettings(), 1000,
                                       lambda w: None) for codec in ("ulaw", "ulaw", "alaw")]
    port = streams[0].port
    assert {s.port for s in streams} == {port}
    shared = _shared(streams[0])
    shared.loop.remove_reader(shared.sock.fileno())  # read here, when all is queued
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    try:
        for sender, stream in zip(senders, streams, strict=False):
            sender.bind(("127.0.0.1", 0))
            stream.hear_only(sender.getsockname()[1], "127.0.0.1")
        senders[3].bind(("127.0.0.1", 0))  # nobody's
        for seq in range(10):  # interleaved, as calls' packets arrive
            for k, sender in enumerate(senders):
                sender.sendto(rtp(seq, bytes([k * 16 + seq]) * 160), ("127.0.0.1", port))
        await asyncio.sleep(0.05)
        assert shared._drain() == 40
    finally:
        for sender in senders:
            sender.close()
    for k in (0, 1):
        assert bytes(streams[k].raw) == b"".join(bytes([k * 16 + seq]) * 160 for seq in range(10))
        assert streams[k].packets == 10
    assert streams[2].packets == 0  # µ-law packets to an A-law tap: not its audio
    assert shared.foreign == 10
    for stream in streams:
        stream.close()


async def test_a_window_completed_inside_a_batch_is_classified_when_its_audio_is_in() -> None:
    """A read that takes several packets of a call (a late tick) and goes past a window's end
    classifies that window and keeps the rest; the next window is classified as soon as its
    last packet is read, not once a whole window's bytes more have come."""
    windows: list[WindowFeatures] = []
    stream = await open_caller_audio("127.0.0.1", "ulaw", ClassifierSettings(), 1000,
                                     windows.append)
    shared = _shared(stream)
    shared.loop.remove_reader(shared.sock.fileno())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        stream.hear_only(sock.getsockname()[1], "127.0.0.1")
        try:
            for batch, expected in ((range(0, 75), 1), (range(75, 99), 1), (range(99, 100), 2)):
                for seq in batch:
                    sock.sendto(rtp(seq, bytes([0xFF]) * 160), ("127.0.0.1", stream.port))
                await asyncio.sleep(0.05)
                assert shared._drain() == len(batch)
                assert len(windows) == expected, (batch, len(windows))
        finally:
            stream.close()
