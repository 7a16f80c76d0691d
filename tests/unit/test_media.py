"""G.711, RTP and pcap encoding of the e2e test media (tests/e2e/media.py)."""

from __future__ import annotations

import itertools
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.e2e import media

# Reference values from Sun's g711.c as CPython's audioop implements it (bit-exact over all
# 65536 inputs when this table was made).
LINEAR = [0, 1, -1, 7, -8, 100, -100, 1000, -1000, 5000, -5000, 12345, -12345, 32767, -32768]
ULAW = [255, 255, 126, 254, 126, 242, 114, 206, 78, 171, 43, 151, 23, 128, 0]
ALAW = [213, 213, 85, 213, 85, 211, 83, 250, 122, 134, 6, 189, 61, 170, 42]
DECODED = [
    ("pcmu", 0x00, -32124),
    ("pcmu", 0x80, 32124),
    ("pcmu", 0xFF, 0),
    ("pcmu", 0x7F, 0),
    ("pcma", 0x55, -8),
    ("pcma", 0xD5, 8),
    ("pcma", 0x2A, -32256),
    ("pcma", 0xAA, 32256),
]

pcm16 = st.integers(min_value=-32768, max_value=32767)


@pytest.mark.parametrize(("codec", "expected"), [("pcmu", ULAW), ("pcma", ALAW)])
def test_encoding_matches_the_g711_reference(codec: media.Codec, expected: list[int]) -> None:
    assert media.encode(np.array(LINEAR), codec).tolist() == expected


@pytest.mark.parametrize(("codec", "code", "linear"), DECODED)
def test_decoding_matches_the_g711_reference(codec: media.Codec, code: int, linear: int) -> None:
    assert int(media.decode(np.array([code]), codec)[0]) == linear


def test_every_alaw_code_survives_decode_then_encode() -> None:
    codes = np.arange(256, dtype=np.uint8)
    assert media.linear_to_alaw(media.alaw_to_linear(codes)).tolist() == codes.tolist()


def test_every_ulaw_code_but_negative_zero_survives_decode_then_encode() -> None:
    codes = np.array([c for c in range(256) if c != 0x7F], dtype=np.uint8)  # 0x7F is -0
    assert media.linear_to_ulaw(media.ulaw_to_linear(codes)).tolist() == codes.tolist()


@given(st.lists(pcm16, min_size=1, max_size=200), st.sampled_from(["pcmu", "pcma"]))
def test_round_trip_error_stays_within_one_quantisation_step(
    values: list[int], codec: media.Codec
) -> None:
    original = np.array(values, dtype=np.int64)
    back = media.decode(media.encode(original, codec), codec).astype(np.int64)
    # G.711 keeps 4 mantissa bits: the error is at most 1/32 of the magnitude, plus the
    # smallest segment's step (and the clipping of µ-law above 32124 / A-law above 32256).
    allowed = np.maximum(np.abs(original) // 16, 132) + np.maximum(np.abs(original) - 32124, 0)
    assert np.all(np.abs(back - original) <= allowed)


@given(pcm16, pcm16, st.sampled_from(["pcmu", "pcma"]))
def test_encoding_is_monotonic(a: int, b: int, codec: media.Codec) -> None:
    lo, hi = sorted((a, b))
    decoded = media.decode(media.encode(np.array([lo, hi]), codec), codec)
    assert decoded[0] <= decoded[1]


def test_unknown_codec_is_refused_with_the_choices() -> None:
    with pytest.raises(media.MediaError, match="pcma"):
        media.encode(np.zeros(4), "g729")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "packets"), [(0.02, 1), (0.021, 2), (1.0, 50), (7.0, 350), (0.0001, 1)]
)
def test_audio_is_cut_into_20ms_packets_the_last_padded(
    tmp_path: Path, seconds: float, packets: int
) -> None:
    samples = media.tone(440, seconds)
    assert media.write_rtp_pcap(tmp_path / "a.pcap", samples) == packets
    read = media.read_pcap_rtp(tmp_path / "a.pcap")
    assert len(read) == packets
    assert all(len(p.payload) == media.FRAME_SAMPLES for p in read)


@pytest.mark.parametrize(("codec", "payload_type"), [("pcmu", 0), ("pcma", 8)])
def test_rtp_sequence_timestamps_and_send_times_advance_per_packet(
    tmp_path: Path, codec: media.Codec, payload_type: int
) -> None:
    media.write_rtp_pcap(tmp_path / "a.pcap", media.tone(1000, 1.0), codec)
    read = media.read_pcap_rtp(tmp_path / "a.pcap")
    assert {p.payload_type for p in read} == {payload_type}
    assert [p.marker for p in read[:2]] == [True, False]
    assert [b.seq - a.seq for a, b in itertools.pairwise(read)] == [1] * 49
    assert [b.timestamp - a.timestamp for a, b in itertools.pairwise(read)] == [160] * 49
    assert [round(p.at, 3) for p in read[:3]] == [0.0, 0.02, 0.04]
    assert len({p.ssrc for p in read}) == 1


@pytest.mark.parametrize("codec", ["pcmu", "pcma"])
def test_payload_decodes_back_to_the_signal(tmp_path: Path, codec: media.Codec) -> None:
    signal = media.tone(697, 0.1, dbfs=-6)
    media.write_rtp_pcap(tmp_path / "a.pcap", signal, codec)
    payload = b"".join(p.payload for p in media.read_pcap_rtp(tmp_path / "a.pcap"))
    decoded = media.decode(np.frombuffer(payload, dtype=np.uint8), codec)
    assert np.max(np.abs(decoded.astype(int) - signal.astype(int))) < 600


def test_pcap_frames_are_ethernet_ipv4_udp_with_valid_lengths_and_checksum(tmp_path: Path) -> None:
    media.write_rtp_pcap(tmp_path / "a.pcap", media.silence(0.04))
    data = (tmp_path / "a.pcap").read_bytes()
    magic, major, minor, _, _, snaplen, linktype = struct.unpack("<IHHiIII", data[:24])
    assert (magic, major, minor, snaplen, linktype) == (0xA1B2C3D4, 2, 4, 65535, 1)
    _, _, incl, orig = struct.unpack("<IIII", data[24:40])
    frame = data[40 : 40 + incl]
    assert incl == orig == 14 + 20 + 8 + 12 + 160
    assert frame[12:14] == b"\x08\x00"
    ip = frame[14:34]
    assert ip[0] == 0x45
    assert ip[9] == 17
    assert struct.unpack("!H", ip[2:4])[0] == incl - 14
    words = sum(struct.unpack("!10H", ip))
    assert (words & 0xFFFF) + (words >> 16) == 0xFFFF  # header checksum verifies
    assert struct.unpack("!H", frame[38:40])[0] == 8 + 12 + 160  # UDP length


def test_same_input_gives_byte_identical_pcaps(tmp_path: Path) -> None:
    media.write_rtp_pcap(tmp_path / "a.pcap", media.loud_noise(1.0, seed=9))
    media.write_rtp_pcap(tmp_path / "b.pcap", media.loud_noise(1.0, seed=9))
    assert (tmp_path / "a.pcap").read_bytes() == (tmp_path / "b.pcap").read_bytes()


def test_dtmf_digit_is_rfc4733_events_with_growing_duration_and_three_end_packets(
    tmp_path: Path,
) -> None:
    assert media.write_dtmf_pcap(tmp_path / "d.pcap", "5", duration_ms=100) == 5 + 2
    read = media.read_pcap_rtp(tmp_path / "d.pcap")
    events = [struct.unpack("!BBH", p.payload) for p in read]
    assert {e[0] for e in events} == {5}
    assert [e[2] for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [bool(e[1] & 0x80) for e in events] == [False] * 4 + [True] * 3
    assert [p.marker for p in read] == [True] + [False] * 6
    assert {p.payload_type for p in read} == {101}
    assert {p.timestamp for p in read} == {0}
    assert [p.seq for p in read] == list(range(2000, 2007))


def test_dtmf_digits_follow_each_other_after_the_gap(tmp_path: Path) -> None:
    media.write_dtmf_pcap(tmp_path / "d.pcap", "1*#", duration_ms=60, gap_ms=200)
    read = media.read_pcap_rtp(tmp_path / "d.pcap")
    starts = [p for p in read if p.marker]
    assert [struct.unpack("!B", p.payload[:1])[0] for p in starts] == [1, 10, 11]
    assert [round(p.at, 3) for p in starts] == [0.0, 0.26, 0.52]
    assert [p.timestamp for p in starts] == [0, 2080, 4160]


@pytest.mark.parametrize(
    ("digits", "reason"), [("", "no DTMF"), ("12x", "not DTMF digits: 'X'"), ("1", "multiple")]
)
def test_bad_dtmf_requests_are_refused_with_a_reason(
    tmp_path: Path, digits: str, reason: str
) -> None:
    duration = 30 if reason == "multiple" else 100
    with pytest.raises(media.MediaError, match=reason):
        media.write_dtmf_pcap(tmp_path / "d.pcap", digits, duration_ms=duration)


def test_wav_is_8khz_16bit_mono_and_reads_back(tmp_path: Path) -> None:
    samples = media.white_noise(0.5, 1000, seed=1)
    media.write_wav(tmp_path / "a.wav", samples)
    with wave.open(str(tmp_path / "a.wav")) as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (8000, 2, 1)
    assert np.array_equal(media.read_wav(tmp_path / "a.wav"), samples)


def test_attenuating_30db_divides_the_level_by_about_31_6() -> None:
    loud = media.white_noise(1.0, 3000, seed=2)
    assert media.rms(media.attenuate(loud, 30)) == pytest.approx(media.rms(loud) / 31.62, rel=0.01)


def test_noise_is_mixed_at_the_requested_snr() -> None:
    signal = media.tone(440, 2.0, dbfs=-20)
    noisy = media.mix_noise(signal, snr_db=10, seed=5)
    noise = noisy.astype(float) - signal.astype(float)
    assert 20 * np.log10(media.rms(signal) / media.rms(noise)) == pytest.approx(10, abs=0.2)
    assert np.array_equal(noisy, media.mix_noise(signal, snr_db=10, seed=5))


def test_mixing_noise_into_digital_silence_is_refused() -> None:
    with pytest.raises(media.MediaError, match="digital silence"):
        media.mix_noise(media.silence(1.0), snr_db=0)


def test_line_conditions_sit_on_the_right_side_of_talk_detects_threshold() -> None:
    mean_abs = {
        name: float(np.mean(np.abs(s.astype(float))))
        for name, s in {
            "noise": media.loud_noise(2.0),
            "hiss": media.quiet_hiss(2.0),
            "quiet": media.attenuate(media.white_noise(2.0, 3277, seed=1), 30),
        }.items()
    }
    assert mean_abs["noise"] > 1000
    assert mean_abs["hiss"] < 128
    assert mean_abs["quiet"] < 128


def test_speech_is_rendered_at_8khz_trimmed_and_normalised() -> None:
    voice = media.speech("one two three")
    assert 0.5 < voice.size / media.SAMPLE_RATE < 3.0
    assert abs(int(voice[0])) > 64
    assert abs(int(voice[-1])) > 64
    assert 20 * np.log10(media.rms(voice) / media.FULL_SCALE) == pytest.approx(-20, abs=0.5)
    assert np.array_equal(voice, media.speech("one two three"))
