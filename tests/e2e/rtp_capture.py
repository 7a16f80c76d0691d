"""What a sipp phone receives, read off the wire: every RTP packet on the loopback interface
(where the sandbox Asterisk and the sipp phones talk), kept by destination port with the time
it passed, decoded from G.711 on demand.

Capturing needs a raw packet socket (AF_PACKET: root or CAP_NET_RAW), as the e2e machines
have. A snoop's `spy=out` cannot stand in for this: Asterisk hands spies a channel's frames
*before* a whisper is mixed into them, so a whisper would never show there.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections import defaultdict
from dataclasses import dataclass, field
from types import TracebackType

import numpy as np

from tests.e2e import media

ETH_P_ALL = 0x0003
PACKET_HOST = 0  # on loopback each packet is seen twice: going out and coming in
PAYLOAD_CODECS: dict[int, media.Codec] = {0: "pcmu", 8: "pcma"}


@dataclass
class _Packet:
    at: float
    seq: int
    pt: int
    payload: bytes


@dataclass
class RtpCapture:
    interface: str = "lo"
    packets: dict[int, list[_Packet]] = field(default_factory=lambda: defaultdict(list))
    _sock: socket.socket | None = None

    def __enter__(self) -> RtpCapture:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError as exc:
            raise AssertionError(
                "capturing RTP needs a raw socket (root or CAP_NET_RAW)") from exc
        sock.bind((self.interface, 0))
        sock.setblocking(False)
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._read)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _read(self) -> None:
        assert self._sock is not None
        now = time.monotonic()
        while True:
            try:
                frame, addr = self._sock.recvfrom(65535)
            except BlockingIOError:
                return
            if addr[2] != PACKET_HOST or len(frame) < 14 + 20 + 8 + 12:
                continue
            if frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
            ihl = (ip[0] & 0x0F) * 4
            if ip[9] != 17:  # UDP
                continue
            udp = ip[ihl:]
            dst_port = struct.unpack("!H", udp[2:4])[0]
            rtp = udp[8:]
            if len(rtp) < 12 or rtp[0] >> 6 != 2:
                continue
            pt = rtp[1] & 0x7F
            if pt not in PAYLOAD_CODECS:
                continue
            header = 12 + 4 * (rtp[0] & 0x0F)
            seq = struct.unpack("!H", rtp[2:4])[0]
            self.packets[dst_port].append(_Packet(now, seq, pt, bytes(rtp[header:])))

    def received(self, port: int, since: float, until: float) -> media.Samples:
        """The audio sent to `port` between the two monotonic times, decoded, in order."""
        chosen = [p for p in self.packets.get(port, []) if since <= p.at <= until]
        parts = [media.decode(np.frombuffer(p.payload, np.uint8), PAYLOAD_CODECS[p.pt])
                 for p in chosen]
        return media.concat(*parts) if parts else media.silence(0)
