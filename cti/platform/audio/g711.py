"""G.711 µ-law and A-law (ITU-T G.711) by table: the line watch's RTP decoded (and µ-law
encoded, for tests and benchmarks)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def _ulaw_table() -> npt.NDArray[np.int16]:
    codes = np.arange(256, dtype=np.int32) ^ 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = ((mantissa << 3) + 0x84) << exponent
    return np.where(sign != 0, 0x84 - magnitude, magnitude - 0x84).astype("<i2")


def _alaw_table() -> npt.NDArray[np.int16]:
    codes = np.arange(256, dtype=np.int32) ^ 0x55  # even bits inverted on the wire
    segment = (codes >> 4) & 0x07
    step = (codes & 0x0F) << 4
    magnitude = np.where(segment == 0, step + 8, (step + 0x108) << np.maximum(segment - 1, 0))
    return np.where(codes & 0x80, magnitude, -magnitude).astype("<i2")


ULAW = _ulaw_table()
ALAW = _alaw_table()


def ulaw_to_pcm(payload: bytes) -> bytes:
    """µ-law bytes -> 16-bit little-endian PCM."""
    return bytes(ULAW[np.frombuffer(payload, dtype=np.uint8)].tobytes())


def alaw_to_pcm(payload: bytes) -> bytes:
    """A-law bytes -> 16-bit little-endian PCM."""
    return bytes(ALAW[np.frombuffer(payload, dtype=np.uint8)].tobytes())


def _nearest(table: npt.NDArray[np.int16], pcm: bytes) -> bytes:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
    order = np.argsort(table, kind="stable")
    values = table[order].astype(np.int32)
    idx = np.searchsorted(values, samples).clip(1, 255)
    lo, hi = order[idx - 1], order[idx]
    pick = np.where(np.abs(table[lo] - samples) <= np.abs(table[hi] - samples), lo, hi)
    return bytes(pick.astype(np.uint8).tobytes())


def pcm_to_ulaw(pcm: bytes) -> bytes:
    """16-bit little-endian PCM -> µ-law, each sample to the nearest code's value."""
    return _nearest(ULAW, pcm)
