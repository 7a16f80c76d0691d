"""Receive the caller's audio as RTP (ARI externalMedia, fed by a snoop on the caller's
channel) and classify it window by window.

One UDP endpoint per call: Asterisk sends RTP with slin (8 kHz signed linear, big-endian per
RFC 3551 L16), slin16 (the same at 16 kHz) or ulaw (8 kHz G.711 µ-law) payloads; each
classified window is handed to `on_window(features)` (the IVR runner feeds it to the engine
as AudioClassified).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

import numpy as np
import numpy.typing as npt

from cti.domain.audio_classifier import AudioClassifier, ClassifierSettings, WindowFeatures

Codec = Literal["slin", "slin16", "ulaw"]
RTP_HEADER = 12


def _ulaw_table() -> npt.NDArray[np.int16]:
    codes = np.arange(256, dtype=np.int32) ^ 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = ((mantissa << 3) + 0x84) << exponent
    return np.where(sign != 0, 0x84 - magnitude, magnitude - 0x84).astype("<i2")


ULAW = _ulaw_table()


def ulaw_to_pcm(payload: bytes) -> bytes:
    return bytes(ULAW[np.frombuffer(payload, dtype=np.uint8)].tobytes())


def pcm_to_ulaw(pcm: bytes) -> bytes:
    """For tests and benchmarks: encode 16-bit PCM as G.711 µ-law (nearest table entry)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
    order = np.argsort(ULAW)
    idx = np.searchsorted(ULAW[order].astype(np.int32), samples).clip(1, 255)
    lo, hi = order[idx - 1], order[idx]
    pick = np.where(np.abs(ULAW[lo] - samples) <= np.abs(ULAW[hi] - samples), lo, hi)
    return bytes(pick.astype(np.uint8).tobytes())


def rtp_payload(packet: bytes) -> bytes | None:
    """The payload of an RTP packet (version 2), skipping CSRCs and header extensions."""
    if len(packet) < RTP_HEADER or packet[0] >> 6 != 2:
        return None
    offset = RTP_HEADER + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:  # header extension
        if len(packet) < offset + 4:
            return None
        offset += 4 + 4 * int.from_bytes(packet[offset + 2 : offset + 4], "big")
    end = len(packet)
    if packet[0] & 0x20:  # padding
        end -= packet[-1]
    return packet[offset:end] if offset <= end else None


class CallerAudioProtocol(asyncio.DatagramProtocol):
    def __init__(
        self, codec: Codec, settings: ClassifierSettings, window_ms: int,
        on_window: Callable[[WindowFeatures], None],
    ) -> None:
        self.codec = codec
        rate = 16000 if codec == "slin16" else 8000
        self.classifier = AudioClassifier(settings, rate, window_ms)
        self.on_window = on_window
        self.packets = 0
        self.foreign = 0  # datagrams from another sender, dropped
        # The sender's port (Asterisk's end of the externalMedia channel): until it is known,
        # or if it is never given, every sender is heard.
        self.sender_port: int | None = None
        # Payloads are collected and decoded a window at a time: per packet only a copy.
        self._raw = bytearray()
        bytes_per_sample = 1 if codec == "ulaw" else 2
        self._chunk = self.classifier.window_bytes // 2 * bytes_per_sample

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if self.sender_port is not None and addr[1] != self.sender_port:
            # Not our externalMedia channel: a stale stream from a tap whose process died may
            # still target this port number, and its audio would be taken for this caller's.
            self.foreign += 1
            return
        payload = rtp_payload(data)
        if payload is None:
            return
        self.packets += 1
        self._raw += payload
        if len(self._raw) < self._chunk:
            return
        raw = bytes(self._raw)
        self._raw.clear()
        if self.codec == "ulaw":
            pcm = ulaw_to_pcm(raw)
        else:  # L16 is big-endian on the wire
            pcm = np.frombuffer(raw[: len(raw) & ~1], dtype=">i2").astype("<i2").tobytes()
            self._raw += raw[len(raw) & ~1 :]  # an odd byte waits for its other half
        for window in self.classifier.feed(pcm):
            self.on_window(window)


async def open_caller_audio(
    host: str, codec: Codec, settings: ClassifierSettings, window_ms: int,
    on_window: Callable[[WindowFeatures], None],
) -> tuple[asyncio.DatagramTransport, int]:
    """Bind a UDP port (0 = any) for one call's RTP; returns the transport and its port, to
    give ARI as `external_host=host:port`. `transport.get_protocol()` is the
    CallerAudioProtocol (set its `sender_port` once known)."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: CallerAudioProtocol(codec, settings, window_ms, on_window), local_addr=(host, 0)
    )
    port = int(transport.get_extra_info("sockname")[1])
    return transport, port
