"""The caller-audio classifier on generated audio (espeak-ng speech, seeded numpy noise),
at 16 kHz signed linear and through G.711 µ-law as the RTP stream brings it."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter

import numpy as np
import pytest
from audio_cases import cases

from cti.domain.audio_classifier import AudioClassifier, ClassifierSettings, WindowFeatures
from cti.platform.audio.rtp_stream import (
    CallerAudioProtocol,
    open_caller_audio,
    pcm_to_ulaw,
    rtp_payload,
    ulaw_to_pcm,
)

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
    transport, port = await open_caller_audio(
        "127.0.0.1", "ulaw", ClassifierSettings(), 1000, windows.append
    )
    try:
        ulaw = pcm_to_ulaw(CASES_8K["loud_noise"][1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for seq, start in enumerate(range(0, len(ulaw), 160)):
                sock.sendto(rtp(seq, ulaw[start : start + 160]), ("127.0.0.1", port))
                if seq % 20 == 0:
                    await asyncio.sleep(0.001)
        for _ in range(100):
            if len(windows) >= 3:
                break
            await asyncio.sleep(0.01)
    finally:
        transport.close()
    assert len(windows) >= 3
    assert {w.kind for w in windows} == {"noisy"}


@pytest.mark.parametrize(
    ("hiss_dbfs", "expected"), [(-65, "silent"), (-50, "silent"), (-35, "noisy"), (-20, "noisy")]
)
def test_faint_line_hiss_is_silence_and_loud_hiss_is_noise(hiss_dbfs: float, expected: str) -> None:
    rng = np.random.default_rng(5)
    pcm = (rng.standard_normal(8000 * 4) * 32767 * 10 ** (hiss_dbfs / 20)).astype("<i2").tobytes()
    kind, share = majority(ulaw_to_pcm(pcm_to_ulaw(pcm)), 8000)
    assert (kind, share) == (expected, 1.0)


async def test_rtp_endpoint_hears_only_its_sender_once_known() -> None:
    """A stale stream to the same port (a tap of a process that died) is not this caller."""
    windows: list[WindowFeatures] = []
    transport, port = await open_caller_audio(
        "127.0.0.1", "ulaw", ClassifierSettings(), 1000, windows.append
    )
    protocol = transport.get_protocol()
    assert isinstance(protocol, CallerAudioProtocol)
    noise = pcm_to_ulaw(CASES_8K["loud_noise"][1])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ours, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stale:
            ours.bind(("127.0.0.1", 0))
            protocol.sender_port = ours.getsockname()[1]
            for seq, start in enumerate(range(0, 8000 * 3, 160)):
                stale.sendto(rtp(seq, noise[start : start + 160]), ("127.0.0.1", port))
                ours.sendto(rtp(seq, bytes([0xFF]) * 160), ("127.0.0.1", port))  # µ-law 0
                if seq % 20 == 0:
                    await asyncio.sleep(0.001)
        for _ in range(100):
            if len(windows) >= 3:
                break
            await asyncio.sleep(0.01)
    finally:
        transport.close()
    assert [w.kind for w in windows] == ["silent"] * 3
    assert protocol.foreign == 150
