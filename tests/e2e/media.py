"""Test audio for the e2e tests: 8 kHz mono signals, G.711, and RTP captures for SIPp.

Everything is deterministic: noise is seeded, speech comes from espeak-ng (same text, same
voice, same samples). SIPp sends the RTP payloads of a pcap with `<exec play_pcap_audio=.../>`,
paced by the capture's timestamps; the addresses in the capture do not matter (SIPp sends to
the call's media address).

Levels, as TALK_DETECT sees them (mean |sample|, threshold 256 by default):
  speech (normalised to -20 dBFS RMS)   ~ 2000   -> talking
  speech attenuated 30 dB               ~   60   -> nothing ("caller too quiet")
  loud white noise (RMS 2500)           ~ 2000   -> talking that never stops
  quiet hiss (RMS 100)                  ~   80   -> nothing

Command line (used by scripts/pbx and by hand):
  python tests/e2e/media.py sounds DIR   # WAVs for the test-sources dialplan context
  python tests/e2e/media.py pcaps DIR    # the standard RTP captures, and DTMF 0-9 * #
"""

from __future__ import annotations

import functools
import shutil
import struct
import subprocess
import sys
import tempfile
import wave
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 8000
PTIME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * PTIME_MS // 1000  # 160 samples per RTP packet
FULL_SCALE = 32767.0

SPEECH_RMS_DBFS = -20.0
LOUD_NOISE_RMS = 2500.0
QUIET_HISS_RMS = 100.0

PAYLOAD_TYPES: dict[str, int] = {"pcmu": 0, "pcma": 8}
DTMF_PAYLOAD_TYPE = 101
DTMF_EVENTS: dict[str, int] = {
    **{str(d): d for d in range(10)},
    "*": 10,
    "#": 11,
    "A": 12,
    "B": 13,
    "C": 14,
    "D": 15,
}
DTMF_FILE_NAMES = {"*": "star", "#": "pound"}

Codec = Literal["pcmu", "pcma"]
Samples = npt.NDArray[np.int16]
Codes = npt.NDArray[np.uint8]


class MediaError(RuntimeError):
    """A test asset could not be made (a tool missing or failing, bad arguments)."""


# --- signals -------------------------------------------------------------------------------


def as_samples(values: npt.ArrayLike) -> Samples:
    """Round and clip to 16-bit PCM."""
    arr = np.asarray(values, dtype=np.float64)
    return np.clip(np.rint(arr), -32768, 32767).astype(np.int16)


def silence(seconds: float) -> Samples:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.int16)


def white_noise(seconds: float, rms: float, seed: int) -> Samples:
    rng = np.random.default_rng(seed)
    return as_samples(rng.normal(0.0, rms, round(seconds * SAMPLE_RATE)))


def loud_noise(seconds: float = 10.0, seed: int = 1) -> Samples:
    """White noise loud enough that TALK_DETECT hears talking that never ends."""
    return white_noise(seconds, LOUD_NOISE_RMS, seed)


def quiet_hiss(seconds: float = 10.0, seed: int = 2) -> Samples:
    """A line that is not digitally silent but stays below TALK_DETECT's threshold."""
    return white_noise(seconds, QUIET_HISS_RMS, seed)


def tone(freq_hz: float, seconds: float, dbfs: float = -10.0) -> Samples:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return as_samples(np.sin(2 * np.pi * freq_hz * t) * FULL_SCALE * 10 ** (dbfs / 20))


def rms(samples: npt.ArrayLike) -> float:
    arr = np.asarray(samples, dtype=np.float64)
    return float(np.sqrt(np.mean(arr**2))) if arr.size else 0.0


def attenuate(samples: npt.ArrayLike, db: float) -> Samples:
    """The same signal `db` decibels quieter (negative db makes it louder, clipped)."""
    return as_samples(np.asarray(samples, dtype=np.float64) * 10 ** (-db / 20))


def mix_noise(samples: npt.ArrayLike, snr_db: float, seed: int = 3) -> Samples:
    """Add white noise `snr_db` below the signal's RMS (0 dB: noise as loud as the speech)."""
    signal = np.asarray(samples, dtype=np.float64)
    level = rms(signal)
    if level == 0:
        raise MediaError("mix_noise: the signal is digital silence, so an SNR means nothing")
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, level / 10 ** (snr_db / 20), signal.size)
    return as_samples(signal + noise)


def normalise(samples: npt.ArrayLike, rms_dbfs: float = SPEECH_RMS_DBFS) -> Samples:
    level = rms(samples)
    if level == 0:
        return as_samples(samples)
    target = FULL_SCALE * 10 ** (rms_dbfs / 20)
    return as_samples(np.asarray(samples, dtype=np.float64) * target / level)


def trim_silence(samples: Samples, threshold: int = 64) -> Samples:
    """Drop leading and trailing samples quieter than `threshold` (prompts carry no padding)."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
    if loud.size == 0:
        return samples[:0]
    return samples[loud[0] : loud[-1] + 1]


def concat(*parts: npt.ArrayLike) -> Samples:
    return as_samples(np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]))


# --- speech (espeak-ng + sox on the host) -----------------------------------------------------


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MediaError(f"{name} is not installed on this host (apt-get install {name})")
    return path


@functools.lru_cache(maxsize=64)
def _speech_cached(text: str, lang: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="cti-speech-") as tmp:
        raw, out = Path(tmp) / "raw.wav", Path(tmp) / "8k.wav"
        steps = [
            [_tool("espeak-ng"), "-v", lang, "-s", "150", "-w", str(raw), text],
            # high-quality resampling to telephone rate, mono, 16 bit
            [_tool("sox"), str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(out)],
        ]
        for cmd in steps:
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise MediaError(
                    f"{Path(cmd[0]).name} failed ({done.returncode}): {done.stderr.strip()}"
                )
        return read_wav(out).tobytes()


def speech(text: str, lang: str = "en") -> Samples:
    """`text` spoken by espeak-ng (voice `lang`, e.g. en, cmn), 8 kHz, trimmed, at -20 dBFS RMS."""
    raw = np.frombuffer(_speech_cached(text, lang), dtype=np.int16)
    return normalise(trim_silence(raw))


def render_speech_wav(path: Path | str, text: str, lang: str = "en") -> Path:
    """Render `text` to an 8 kHz 16-bit mono WAV, the format Asterisk plays as is."""
    return write_wav(path, speech(text, lang))


# --- WAV -------------------------------------------------------------------------------------


def write_wav(path: Path | str, samples: npt.ArrayLike) -> Path:
    """Write 8 kHz 16-bit mono PCM (what Asterisk's format_wav plays without transcoding)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    pcm = as_samples(samples)
    with wave.open(str(target), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.astype("<i2").tobytes())
    return target


def read_wav(path: Path | str) -> Samples:
    with wave.open(str(path), "rb") as src:
        if (src.getnchannels(), src.getsampwidth(), src.getframerate()) != (1, 2, SAMPLE_RATE):
            raise MediaError(
                f"{path}: need 8000 Hz 16-bit mono, got {src.getframerate()} Hz "
                f"{8 * src.getsampwidth()}-bit {src.getnchannels()} channel(s)"
            )
        return np.frombuffer(src.readframes(src.getnframes()), dtype="<i2").astype(np.int16)


# --- G.711 (as Sun's reference g711.c, which Asterisk and audioop follow) ---------------------

_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def linear_to_ulaw(samples: npt.ArrayLike) -> Codes:
    pcm = np.asarray(samples, dtype=np.int64) >> 2  # 14-bit
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), 8159) + 0x21  # clip, add bias
    seg = np.searchsorted(_ULAW_SEG_END, mag)
    code = (seg << 4) | ((mag >> (seg + 1)) & 0x0F)
    return (np.where(seg >= 8, 0x7F, code) ^ mask).astype(np.uint8)


def ulaw_to_linear(codes: npt.ArrayLike) -> Samples:
    u = ~np.asarray(codes, dtype=np.int64) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def linear_to_alaw(samples: npt.ArrayLike) -> Codes:
    pcm = np.asarray(samples, dtype=np.int64) >> 3  # 13-bit
    negative = pcm < 0
    mask = np.where(negative, 0x55, 0xD5)
    mag = np.where(negative, -pcm - 1, pcm)
    seg = np.searchsorted(_ALAW_SEG_END, mag)
    quant = np.where(seg < 2, mag >> 1, mag >> np.maximum(seg, 1)) & 0x0F
    code = (seg << 4) | quant
    return (np.where(seg >= 8, 0x7F, code) ^ mask).astype(np.uint8)


def alaw_to_linear(codes: npt.ArrayLike) -> Samples:
    a = np.asarray(codes, dtype=np.int64) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


def encode(samples: npt.ArrayLike, codec: Codec) -> Codes:
    if codec == "pcmu":
        return linear_to_ulaw(samples)
    if codec == "pcma":
        return linear_to_alaw(samples)
    raise MediaError(f"unknown codec {codec!r}: use one of {sorted(PAYLOAD_TYPES)}")


def decode(codes: npt.ArrayLike, codec: Codec) -> Samples:
    if codec == "pcmu":
        return ulaw_to_linear(codes)
    if codec == "pcma":
        return alaw_to_linear(codes)
    raise MediaError(f"unknown codec {codec!r}: use one of {sorted(PAYLOAD_TYPES)}")


# --- RTP and pcap ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RtpPacket:
    """One RTP packet and when (seconds from the capture's start) it is sent."""

    at: float
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    def to_bytes(self) -> bytes:
        header = struct.pack(
            "!BBHII",
            0x80,  # version 2, no padding, no extension, no CSRC
            (0x80 if self.marker else 0) | self.payload_type,
            self.seq & 0xFFFF,
            self.timestamp & 0xFFFFFFFF,
            self.ssrc,
        )
        return header + self.payload


PCAP_EPOCH = 1_700_000_000  # fixed capture time: the files are byte-for-byte reproducible
_SRC_IP, _DST_IP = bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])


def _ipv4_checksum(header: bytes) -> int:
    total = int(sum(struct.unpack(f"!{len(header) // 2}H", header)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(rtp: bytes, src_port: int, dst_port: int, ident: int) -> bytes:
    udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(rtp), 0) + rtp
    ip = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident & 0xFFFF, 0, 64, 17, 0, _SRC_IP, _DST_IP
        )
    )
    struct.pack_into("!H", ip, 10, _ipv4_checksum(bytes(ip)))
    ethernet = b"\x00\x00\x00\x00\x00\x02" + b"\x00\x00\x00\x00\x00\x01" + b"\x08\x00"
    return ethernet + bytes(ip) + udp


def write_pcap(
    path: Path | str, packets: Iterable[RtpPacket], src_port: int = 6000, dst_port: int = 6002
) -> int:
    """Write RTP packets as Ethernet/IPv4/UDP frames in a classic pcap; return the packet count."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    chunks = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]  # LINKTYPE_ETHERNET
    count = 0
    for pkt in packets:
        count += 1
        frame = _frame(pkt.to_bytes(), src_port, dst_port, count)
        micros = round(pkt.at * 1_000_000)
        chunks.append(
            struct.pack(
                "<IIII",
                PCAP_EPOCH + micros // 1_000_000,
                micros % 1_000_000,
                len(frame),
                len(frame),
            )
        )
        chunks.append(frame)
    target.write_bytes(b"".join(chunks))
    return count


def audio_packets(
    samples: npt.ArrayLike,
    codec: Codec = "pcmu",
    *,
    ssrc: int = 0x43544901,
    seq0: int = 1000,
    ts0: int = 0,
) -> Iterator[RtpPacket]:
    """20 ms G.711 packets; the last frame is padded with digital silence."""
    pcm = as_samples(samples)
    frames = -(-pcm.size // FRAME_SAMPLES)
    padded = np.zeros(frames * FRAME_SAMPLES, dtype=np.int16)
    padded[: pcm.size] = pcm
    payload = encode(padded, codec).tobytes()
    pt = PAYLOAD_TYPES[codec]
    for i in range(frames):
        yield RtpPacket(
            at=i * PTIME_MS / 1000,
            payload_type=pt,
            seq=seq0 + i,
            timestamp=ts0 + i * FRAME_SAMPLES,
            ssrc=ssrc,
            payload=payload[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES],
            marker=i == 0,
        )


def write_rtp_pcap(path: Path | str, samples: npt.ArrayLike, codec: Codec = "pcmu") -> int:
    """RTP capture of `samples` for SIPp's play_pcap_audio; returns the number of packets."""
    if codec not in PAYLOAD_TYPES:
        raise MediaError(f"unknown codec {codec!r}: use one of {sorted(PAYLOAD_TYPES)}")
    return write_pcap(path, audio_packets(samples, codec))


def dtmf_packets(
    digits: str,
    *,
    duration_ms: int = 200,
    gap_ms: int = 300,
    volume: int = 10,
    payload_type: int = DTMF_PAYLOAD_TYPE,
    ssrc: int = 0x43544902,
    seq0: int = 2000,
    ts0: int = 0,
) -> Iterator[RtpPacket]:
    """RFC 4733 (ex-2833) telephone-events, one every 20 ms while a key is down.

    Per digit: the first packet has the marker bit; the duration field grows by 160 per packet;
    the end packet (E bit) is sent three times, as senders do against loss.
    """
    if not digits:
        raise MediaError("no DTMF digits given")
    unknown = sorted({d for d in digits.upper() if d not in DTMF_EVENTS})
    if unknown:
        raise MediaError(f"not DTMF digits: {''.join(unknown)!r} (use 0-9 * # A-D)")
    if duration_ms < PTIME_MS or duration_ms % PTIME_MS or gap_ms < 0:
        raise MediaError(f"DTMF duration must be a positive multiple of {PTIME_MS} ms and gap >= 0")
    if not 0 <= volume <= 63:
        raise MediaError("DTMF volume is 0..63 (dBm0 below zero)")
    seq, at, ts = seq0, 0.0, ts0
    steps = duration_ms // PTIME_MS
    for digit in digits.upper():
        event = DTMF_EVENTS[digit]
        for step in range(1, steps + 1):
            end = step == steps
            duration = step * FRAME_SAMPLES
            payload = struct.pack("!BBH", event, (0x80 if end else 0) | volume, duration)
            for _ in range(3 if end else 1):
                yield RtpPacket(at, payload_type, seq, ts, ssrc, payload, marker=step == 1)
                seq += 1
            at += PTIME_MS / 1000
        at += gap_ms / 1000
        ts += (duration_ms + gap_ms) * SAMPLE_RATE // 1000


def write_dtmf_pcap(
    path: Path | str,
    digits: str,
    *,
    duration_ms: int = 200,
    gap_ms: int = 300,
    volume: int = 10,
    payload_type: int = DTMF_PAYLOAD_TYPE,
) -> int:
    """RTP capture of RFC 4733 DTMF `digits`; returns the number of packets."""
    return write_pcap(
        path,
        dtmf_packets(
            digits, duration_ms=duration_ms, gap_ms=gap_ms, volume=volume, payload_type=payload_type
        ),
    )


def read_pcap_rtp(path: Path | str) -> list[RtpPacket]:
    """Parse a capture written by write_pcap (Ethernet/IPv4/UDP/RTP) back into packets."""
    data = Path(path).read_bytes()
    magic, _, _, _, _, _, linktype = struct.unpack("<IHHiIII", data[:24])
    if magic != 0xA1B2C3D4 or linktype != 1:
        raise MediaError(f"{path}: not a little-endian Ethernet pcap")
    packets, offset = [], 24
    start: float | None = None
    while offset < len(data):
        sec, usec, incl, _ = struct.unpack("<IIII", data[offset : offset + 16])
        frame = data[offset + 16 : offset + 16 + incl]
        offset += 16 + incl
        ihl = (frame[14] & 0x0F) * 4
        rtp = frame[14 + ihl + 8 :]
        _, b1, seq, ts, ssrc = struct.unpack("!BBHII", rtp[:12])
        at = sec + usec / 1_000_000
        start = at if start is None else start
        packets.append(
            RtpPacket(round(at - start, 6), b1 & 0x7F, seq, ts, ssrc, rtp[12:], bool(b1 & 0x80))
        )
    return packets


# --- the standard test set -------------------------------------------------------------------

SPEECH_TEXT = (
    "Hello, I would like to ask about my order. It has not arrived yet. Can you help me, please?"
)


def standard_signals(seconds: float = 10.0) -> dict[str, Samples]:
    """The line conditions the IVR must tell apart, each `seconds` long (speech repeats)."""
    voice = speech(SPEECH_TEXT)
    gap = silence(0.6)
    reps = int(np.ceil(seconds * SAMPLE_RATE / (voice.size + gap.size)))
    talk = concat(*([voice, gap] * reps))[: round(seconds * SAMPLE_RATE)]
    return {
        "silence": silence(seconds),
        "speech": talk,
        "speech-quiet": attenuate(talk, 30),
        "speech-noisy": mix_noise(talk, snr_db=0, seed=4),
        "noise": loud_noise(seconds),
        "hiss": quiet_hiss(seconds),
    }


def write_sounds(directory: Path | str) -> list[Path]:
    """WAVs for the dialplan's test-sources context (played as sound:custom/test/NAME)."""
    out = Path(directory)
    return [write_wav(out / f"{name}.wav", samples) for name, samples in standard_signals().items()]


def write_pcaps(directory: Path | str, codecs: Sequence[Codec] = ("pcmu", "pcma")) -> list[Path]:
    """NAME-CODEC.pcap for every standard signal, and dtmf-D.pcap for every DTMF digit."""
    out = Path(directory)
    written = []
    for name, samples in standard_signals().items():
        for codec in codecs:
            target = out / f"{name}-{codec}.pcap"
            write_rtp_pcap(target, samples, codec)
            written.append(target)
    for digit in "0123456789*#":
        target = out / f"dtmf-{DTMF_FILE_NAMES.get(digit, digit)}.pcap"
        write_dtmf_pcap(target, digit)
        written.append(target)
    return written


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2 or argv[0] not in {"sounds", "pcaps"}:
        print("usage: media.py sounds|pcaps DIR", file=sys.stderr)
        return 2
    try:
        paths = write_sounds(argv[1]) if argv[0] == "sounds" else write_pcaps(argv[1])
    except MediaError as exc:
        print(f"media.py: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(paths)} files to {argv[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
