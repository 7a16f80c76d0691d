"""The line watch's RTP reading, per datagram: 32 calls on one shared socket
(cti/platform/audio/rtp_stream.py), each sending 8 kHz slin packets of 20 ms, read the way
the node reads them (recvmmsg batches, the sender looked up, the payload kept, a window
classified every second of audio), with 1, 3 or 5 packets per call queued per read.

Run: .venv/bin/python benchmarks/bench_rtp_read.py [--rounds 300]

A read every BATCH_S finds BATCH_S / 20 ms packets per call queued: the figures show what
that interval costs per packet (system call and timer costs are per read, not per packet).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cti.domain.audio_classifier import ClassifierSettings
from cti.platform.audio import rtp_stream

CALLS = 32
PACKET = bytes([0x80, 0x0B]) + bytes(10) + bytes(320)  # RTP v2, L16 8 kHz, 20 ms of silence


async def per_packet_us(packets_per_read: int, rounds: int) -> float:
    streams, senders = [], []
    try:
        for _ in range(CALLS):
            stream = await rtp_stream.open_caller_audio(
                "127.0.0.1", "slin", ClassifierSettings(), 1000, lambda _w: None)
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sender.bind(("127.0.0.1", 0))
            stream.hear_only(sender.getsockname()[1], "127.0.0.1")
            streams.append(stream)
            senders.append(sender)
        shared = streams[0]._socket
        assert shared is not None
        shared.loop.remove_reader(shared.sock.fileno())  # read here, not by the loop
        spent, read = 0.0, 0
        for _ in range(rounds):
            for _ in range(packets_per_read):
                for s in senders:
                    s.sendto(PACKET, ("127.0.0.1", shared.port))
            t0 = time.perf_counter()
            read += shared._drain()
            spent += time.perf_counter() - t0
        assert read == rounds * packets_per_read * CALLS, read
        return spent / read * 1e6
    finally:
        for stream in streams:
            stream.close()
        for s in senders:
            s.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{CALLS} calls on one socket; us per datagram read (median of {args.repeat})")
    base = None
    for per in (1, 3, 5):
        us = statistics.median([await per_packet_us(per, args.rounds)
                                for _ in range(args.repeat)])
        base = base or us
        print(f"  {per} packet(s) per call per read (a read every {per * 20} ms): "
              f"{us:6.2f} us per datagram, {us / base:.2f}x of one per read")
    print(f"  now: a read every {rtp_stream.BATCH_S * 1000:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
