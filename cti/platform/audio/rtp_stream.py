"""Receive the caller's audio as RTP (ARI externalMedia, bridged with the caller's channel or
with a snoop on it) and classify it window by window.

Asterisk sends RTP with slin (8 kHz signed linear, big-endian per RFC 3551 L16), slin16 (the
same at 16 kHz), ulaw or alaw (8 kHz G.711, decoded here by table) payloads; each classified
window is handed to `on_window(features)` (the IVR runner feeds it to the engine as
AudioClassified). Up to
STREAMS_PER_SOCKET calls share a UDP socket, told apart by their sender, and a socket is read
in batches (see `_SharedSocket`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import weakref
from collections.abc import Callable
from typing import Literal

import numpy as np

from cti.domain.audio_classifier import AudioClassifier, ClassifierSettings, WindowFeatures
from cti.platform.audio.g711 import alaw_to_pcm, ulaw_to_pcm
from cti.platform.audio.udp_batch import NAME_BYTES, BatchReader, batch_reader

Codec = Literal["slin", "slin16", "ulaw", "alaw"]
# G.711's static RTP payload types (RFC 3551): any other packet to a G.711 tap (RFC 2833 DTMF
# the bridge passes on, comfort noise) is not audio. Linear formats have dynamic ones.
PAYLOAD_TYPES: dict[str, int] = {"ulaw": 0, "alaw": 8}
RTP_HEADER = 12
MAX_DATAGRAM = 2048  # RTP of 20-40 ms of 16 kHz linear audio is well under it
STREAMS_PER_SOCKET = 32
BATCH_S = 0.02  # while RTP flows, a socket is read on a timer this often (one packet's time)
IDLE_TICKS = 5  # this many empty reads in a row and it is watched for readiness again
RCVBUF_BYTES = 4 << 20
BATCH_DATAGRAMS = 64  # read per system call (recvmmsg)
USE_BATCH = True  # tests turn it off to cover the one-at-a-time path


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


class CallerAudioStream:
    """One call's RTP: payloads collected, decoded and classified a window at a time; each
    classified window is handed to `on_window`. Fed by a `_SharedSocket` (or directly, in
    tests and benchmarks, by `datagram_received`)."""

    def __init__(
        self, codec: Codec, settings: ClassifierSettings, window_ms: int,
        on_window: Callable[[WindowFeatures], None],
    ) -> None:
        self.codec = codec
        rate = 16000 if codec == "slin16" else 8000
        self.classifier = AudioClassifier(settings, rate, window_ms)
        self.on_window = on_window
        self.packets = 0
        # Payloads are collected and decoded a window at a time: per packet only a copy.
        self.raw = bytearray()
        # RTP's second byte (marker bit and payload type) of this codec's audio; None: any
        self.pt_byte = PAYLOAD_TYPES.get(codec)
        bytes_per_sample = 1 if codec in PAYLOAD_TYPES else 2
        self.chunk = self.classifier.window_bytes // 2 * bytes_per_sample
        self._socket: _SharedSocket | None = None
        self.sender: tuple[str | None, int] | None = None

    @property
    def port(self) -> int:
        """The UDP port this call's RTP is to be sent to (shared with other calls)."""
        assert self._socket is not None, "not open"
        return self._socket.port

    def hear_only(self, port: int, host: str | None = None) -> None:
        """The sender's port (Asterisk's end of the externalMedia channel) and, if known, its
        address: only its datagrams are this call's audio. Until it is given, nothing is."""
        if self._socket is not None:
            self._socket.route(self, (host, port))
        self.sender = (host, port)

    def close(self) -> None:
        """Stop receiving (synchronous: safe from a done-callback); idempotent."""
        if self._socket is not None:
            self._socket.remove(self)
            self._socket = None

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        """One RTP datagram of this call (the shared socket has checked its sender)."""
        payload = rtp_payload(data)
        if payload is not None and (self.pt_byte is None or data[1] & 0x7F == self.pt_byte):
            self.packets += 1
            self.raw += payload
            if len(self.raw) >= self.chunk:
                self.flush()

    def flush(self) -> None:
        """Decode what was collected and classify the windows it completes."""
        raw = bytes(self.raw)
        self.raw.clear()
        if self.codec == "ulaw":
            pcm = ulaw_to_pcm(raw)
        elif self.codec == "alaw":
            pcm = alaw_to_pcm(raw)
        else:  # L16 is big-endian on the wire
            pcm = np.frombuffer(raw[: len(raw) & ~1], dtype=">i2").astype("<i2").tobytes()
            self.raw += raw[len(raw) & ~1 :]  # an odd byte waits for its other half
        for window in self.classifier.feed(pcm):
            self.on_window(window)


class _SharedSocket:
    """One UDP socket for the RTP of up to STREAMS_PER_SOCKET calls, told apart by their
    sender (Asterisk's port, its address when two senders share a port number).

    Read in batches: once the socket is readable, it is read on a timer every BATCH_S (all
    that is queued each time) for as long as datagrams come, and watched for readiness again
    after IDLE_TICKS empty reads. A socket and an event-loop wake-up per call per 20 ms packet
    cost the node more than the classifier did (docs/sizing.md); this costs one timer per
    socket per BATCH_S, and delays a 1 s window by at most BATCH_S. The kernel holds what
    arrives meanwhile (its receive buffer: RCVBUF_BYTES asked, within net.core.rmem_max; at
    most STREAMS_PER_SOCKET calls' packets of a few ticks are queued)."""

    def __init__(self, pool: _SocketPool, host: str) -> None:
        self.pool = pool
        self.loop = asyncio.get_running_loop()
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                  socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
            self.sock.bind((host, 0))
        except BaseException:
            self.sock.close()
            raise
        self.port = int(self.sock.getsockname()[1])
        self.streams: set[CallerAudioStream] = set()
        self.by_port: dict[int, list[CallerAudioStream]] = {}
        self.foreign = 0  # datagrams from no sender of ours, dropped
        self.closed = False
        self._buffer = bytearray(MAX_DATAGRAM)
        self._view = memoryview(self._buffer)
        # many datagrams per system call where the OS has it (Linux): a tick's worth at once
        self._batch = batch_reader(self.sock, BATCH_DATAGRAMS, MAX_DATAGRAM) if USE_BATCH \
            else None
        self._timer: asyncio.TimerHandle | None = None  # read on a timer (RTP flows)
        self._empty = 0
        self.loop.add_reader(self.sock.fileno(), self._readable)

    def add(self, stream: CallerAudioStream) -> None:
        self.streams.add(stream)
        stream._socket = self

    def route(self, stream: CallerAudioStream, sender: tuple[str | None, int]) -> None:
        self._unroute(stream)
        self.by_port.setdefault(sender[1], []).append(stream)

    def _unroute(self, stream: CallerAudioStream) -> None:
        if stream.sender is None:
            return
        port = stream.sender[1]
        routed = self.by_port.get(port, [])
        if stream in routed:
            routed.remove(stream)
        if not routed:
            self.by_port.pop(port, None)

    def remove(self, stream: CallerAudioStream) -> None:
        self._unroute(stream)
        self.streams.discard(stream)
        if not self.streams:
            self.close()

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        else:
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self.pool.closed(self)

    def _drain(self) -> int:
        """Read every datagram queued; how many."""
        if self._batch is not None:
            return self._drain_batches(self._batch)
        recv, view, by_port = self.sock.recvfrom_into, self._view, self.by_port
        read = 0
        while True:
            try:
                n, addr = recv(self._buffer)
            except InterruptedError:
                continue
            except OSError:  # nothing more queued (EAGAIN), or the socket was closed
                break
            read += 1
            routed = by_port.get(addr[1])
            if routed is None:
                self.foreign += 1
                continue
            stream = routed[0] if len(routed) == 1 else _by_address(routed, addr[0])
            if stream is None:
                self.foreign += 1
                continue
            if n > RTP_HEADER and view[0] == 0x80 and (  # version 2, plain header
                stream.pt_byte is None or view[1] & 0x7F == stream.pt_byte
            ):
                stream.packets += 1
                stream.raw += view[RTP_HEADER:n]
                if len(stream.raw) >= stream.chunk:
                    stream.flush()
            else:
                stream.datagram_received(bytes(view[:n]), addr)
        return read

    def _drain_batches(self, b: BatchReader) -> int:
        """`_drain`, BATCH_DATAGRAMS datagrams per system call."""
        by_port, data, names, lengths = self.by_port, b.data, b.names, b.lengths
        size, step, index = b.size, b.len_step, b.len_index
        read = 0
        while True:
            try:
                n = b.receive()
            except OSError:  # the socket was closed
                break
            read += n
            for i in range(n):
                at = i * NAME_BYTES
                port = names[at + 2] << 8 | names[at + 3]
                routed = by_port.get(port)
                if routed is None:
                    self.foreign += 1
                    continue
                stream = routed[0] if len(routed) == 1 else _by_address(routed, b.host(i))
                if stream is None:
                    self.foreign += 1
                    continue
                start = i * size
                end = start + lengths[i * step + index]
                if end - start > RTP_HEADER and data[start] == 0x80 and (  # as in _drain
                    stream.pt_byte is None or data[start + 1] & 0x7F == stream.pt_byte
                ):
                    stream.packets += 1
                    stream.raw += data[start + RTP_HEADER : end]
                    if len(stream.raw) >= stream.chunk:
                        stream.flush()
                else:
                    stream.datagram_received(bytes(data[start:end]), (b.host(i), port))
            if n < b.count:
                break
        return read

    def _readable(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self._empty = 0
        self._tick()

    def _tick(self) -> None:
        self._timer = None
        if self._drain():
            self._empty = 0
        else:
            self._empty += 1
        if self.closed:
            return
        if self._empty >= IDLE_TICKS:
            self.loop.add_reader(self.sock.fileno(), self._readable)
        else:
            self._timer = self.loop.call_later(BATCH_S, self._tick)


def _by_address(
    routed: list[CallerAudioStream], host: str
) -> CallerAudioStream | None:
    """Two calls' senders share a port number (two PBXs): the sender's address decides."""
    for stream in routed:
        if stream.sender is not None and stream.sender[0] == host:
            return stream
    # no address given for them: the first, as when the port alone was checked
    return next((s for s in routed if s.sender is not None and s.sender[0] is None), None)


class _SocketPool:
    """The shared sockets of one event loop, by local address: a new call joins one with
    room, or opens the next."""

    def __init__(self) -> None:
        self.sockets: dict[str, list[_SharedSocket]] = {}

    def open(self, host: str, stream: CallerAudioStream) -> None:
        open_ = self.sockets.setdefault(host, [])
        shared = next((s for s in open_ if len(s.streams) < STREAMS_PER_SOCKET), None)
        if shared is None:
            shared = _SharedSocket(self, host)
            open_.append(shared)
        shared.add(stream)

    def closed(self, shared: _SharedSocket) -> None:
        for open_ in self.sockets.values():
            if shared in open_:
                open_.remove(shared)


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SocketPool] = (
    weakref.WeakKeyDictionary()
)


async def open_caller_audio(
    host: str, codec: Codec, settings: ClassifierSettings, window_ms: int,
    on_window: Callable[[WindowFeatures], None],
) -> CallerAudioStream:
    """A call's audio stream on a shared UDP socket of `host` (port 0 bound: any free one):
    give ARI `external_host=host:stream.port`, then `stream.hear_only(sender port, address)`
    once Asterisk names its end; `stream.close()` when done."""
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        pool = _POOLS[loop] = _SocketPool()
    stream = CallerAudioStream(codec, settings, window_ms, on_window)
    pool.open(host, stream)
    return stream
