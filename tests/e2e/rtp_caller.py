"""The callers' media end: RTP sockets that send each caller's audio and keep what they receive.

sipp does the callers' SIP (tests/e2e/sipp/caller_rtp_wait_bye.xml offers these sockets'
ports in its SDP: `m=audio [field0]`), and these sockets are the callers' RTP: what Asterisk
sends a caller arrives here, stamped by the kernel (SO_TIMESTAMPNS) as it comes off the
loopback "wire", and the caller's own audio (G.711 µ-law, 20 ms packets on an absolute clock)
is sent from the same socket, so symmetric RTP keeps the media here.

Why not a packet capture: no capture tool (tshark, tcpdump) is installed here, capturing needs
privileges the test must not assume, and sipp keeps no record of the RTP it receives. Kernel
receive stamps are the time the packet reached the caller's socket, so neither Python's
scheduling nor the test's event loop moves them.

The sockets live in a child process of their own: a thread in the test's process would hold
the GIL that the service under test needs for its timers (and so disturb what is measured).

    with CallerMedia([audio_a, None]) as media:    # one socket per caller; None: send nothing
        port_a, port_b = media.ports
        ...                                        # run the calls
        received = media.finish()                 # per socket: [Heard, ...] (tests/e2e/heard.py)
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import selectors
import socket
import struct
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from types import TracebackType

from tests.e2e.heard import PCMU, Heard, audible_span, audible_table

SO_TIMESTAMPNS = 35  # Linux; SCM_TIMESTAMPNS has the same value (not exported by Python)
FRAME = 160  # 20 ms of 8 kHz µ-law
PTIME_S = 0.02


def _open(timestamps: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    if timestamps:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setblocking(False)
    return sock


class _Line:
    """One caller's socket: the far end learnt from the first packet received (Asterisk sends
    the greeting first); the caller's audio is sent from then on, one packet per 20 ms."""

    def __init__(self, sock: socket.socket, audio: bytes | None) -> None:
        self.sock = sock
        self.audio = audio or b""
        self.peer: tuple[str, int] | None = None
        self.next_at = 0.0
        self.sent = 0
        self.ssrc = int.from_bytes(os.urandom(4), "big")
        self.received: list[Heard] = []

    def due(self) -> float | None:
        if self.peer is None or self.sent * FRAME >= len(self.audio):
            return None
        return self.next_at

    def send_due(self, now: float) -> None:
        while self.peer is not None and self.next_at <= now and self.sent * FRAME < len(self.audio):
            payload = self.audio[self.sent * FRAME:(self.sent + 1) * FRAME]
            header = struct.pack("!BBHII", 0x80, (0x80 if self.sent == 0 else 0) | PCMU,
                                 self.sent & 0xFFFF, (self.sent * FRAME) & 0xFFFFFFFF, self.ssrc)
            with contextlib.suppress(OSError):
                self.sock.sendto(header + payload, self.peer)
            self.sent += 1
            self.next_at += PTIME_S


def _receive(line: _Line, table: bytes, timestamps: bool) -> None:
    space = socket.CMSG_SPACE(16)
    while True:
        try:
            data, ancillary, _, addr = line.sock.recvmsg(2048, space)
        except BlockingIOError:
            return
        at_ns = time.time_ns()
        for level, kind, value in ancillary:
            if timestamps and level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", value[:16])
                at_ns = sec * 1_000_000_000 + nsec
        if len(data) < 12:
            continue
        _, b1, seq, ts, _ = struct.unpack("!BBHII", data[:12])
        pt = b1 & 0x7F
        first, last = audible_span(data[12:], table) if pt == PCMU else (-1, -1)
        line.received.append(Heard(at_ns, seq, ts, pt, first, last))
        if line.peer is None:
            line.peer = (addr[0], addr[1])
            line.next_at = time.monotonic()


def _serve(conn: Connection, audios: Sequence[bytes | None], audible_dbfs: float) -> None:
    table = audible_table(audible_dbfs)
    timestamps = True
    try:
        lines = [_Line(_open(True), audio) for audio in audios]
    except OSError:  # no kernel stamps on this system: the receive time in this loop instead
        timestamps = False
        lines = [_Line(_open(False), audio) for audio in audios]
    conn.send([line.sock.getsockname()[1] for line in lines])
    selector = selectors.DefaultSelector()
    for line in lines:
        selector.register(line.sock, selectors.EVENT_READ, line)
    selector.register(conn, selectors.EVENT_READ, None)
    stopping = False
    while not stopping:
        dues = [d for d in (line.due() for line in lines) if d is not None]
        timeout = max(0.0, min(dues) - time.monotonic()) if dues else 0.2
        for key, _ in selector.select(min(timeout, 0.2)):
            if key.data is None:
                stopping = conn.recv() == "stop"
            else:
                _receive(key.data, table, timestamps)
        now = time.monotonic()
        for line in lines:
            line.send_due(now)
    conn.send([line.received for line in lines])
    for line in lines:
        line.sock.close()


class CallerMedia:
    """RTP sockets for callers, in a child process; see the module's doc."""

    def __init__(self, audios: Sequence[bytes | None], audible_dbfs: float = -50.0) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, list(audios), audible_dbfs), daemon=True
        )
        self._process.start()
        child.close()
        if not self._conn.poll(30):
            self._stop_process()
            raise RuntimeError("the callers' RTP process did not start")
        self.ports: list[int] = self._conn.recv()
        self._received: list[list[Heard]] | None = None

    def finish(self) -> list[list[Heard]]:
        """Stop the sockets; per caller, every packet it received."""
        if self._received is None:
            self._conn.send("stop")
            if not self._conn.poll(60):
                self._stop_process()
                raise RuntimeError("the callers' RTP process did not answer")
            self._received = self._conn.recv()
            self._stop_process()
        return self._received

    def _stop_process(self) -> None:
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()

    def __enter__(self) -> CallerMedia:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._received is None:
            with contextlib.suppress(Exception):
                self.finish()
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
