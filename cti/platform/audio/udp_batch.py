"""Read many UDP datagrams with one system call (Linux `recvmmsg`, through ctypes).

The line watch's RTP comes as one small datagram per call every 20 ms; read one at a time,
the system call and its Python wrapper cost more than what is done with the payload. Here up
to `count` datagrams land in fixed buffers per call: their lengths, senders and payloads are
read from memoryviews. `batch_reader(sock)` is None where recvmmsg is not to be had (another
OS, a libc without it): the caller reads one datagram at a time then.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import sys
from collections.abc import Callable
from typing import Any

NAME_BYTES = 28  # room for a sockaddr_in6; a sockaddr_in takes 16


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p), ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint)]


def _load_recvmmsg() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function: Any = ctypes.CDLL(None, use_errno=True).recvmmsg
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                         ctypes.c_void_p]
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


_RECVMMSG = _load_recvmmsg()
_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)


class BatchReader:
    """Fixed buffers for `count` datagrams of up to `size` bytes from one non-blocking
    socket. After `receive()` returned n: datagram i is `data[i * size : i * size +
    length(i)]`, from `port(i)` (and `host(i)`)."""

    def __init__(self, sock: socket.socket, count: int, size: int,
                 recvmmsg: Callable[..., int]) -> None:
        self.fd = sock.fileno()
        self.family = sock.family
        self.count, self.size = count, size
        self._recvmmsg = recvmmsg
        self._data = (ctypes.c_ubyte * (count * size))()
        self._names = (ctypes.c_ubyte * (count * NAME_BYTES))()
        self._iov = (_IoVec * count)()
        self._msgs = (_MMsgHdr * count)()
        data, names = ctypes.addressof(self._data), ctypes.addressof(self._names)
        for i in range(count):
            self._iov[i].base, self._iov[i].len = data + i * size, size
            hdr = self._msgs[i].hdr
            hdr.name, hdr.namelen = names + i * NAME_BYTES, NAME_BYTES
            hdr.iov, hdr.iovlen = ctypes.addressof(self._iov[i]), 1
        self._msgs_at = ctypes.addressof(self._msgs)
        self.data = memoryview(self._data).cast("B")
        self.names = memoryview(self._names).cast("B")
        # msg_len of datagram i, as an index into the headers seen as 32-bit words
        stride, offset = ctypes.sizeof(_MMsgHdr), _MMsgHdr.len.offset
        assert stride % 4 == 0, stride
        assert offset % 4 == 0, offset
        self.len_step, self.len_index = stride // 4, offset // 4
        self.lengths = memoryview(self._msgs).cast("B").cast("I")

    def receive(self) -> int:
        """Read what is queued, up to `count` datagrams; 0 when nothing is. Raises OSError
        for anything but "nothing queued" (a closed socket, say)."""
        n = self._recvmmsg(self.fd, self._msgs_at, self.count, socket.MSG_DONTWAIT, None)
        if n >= 0:
            return n
        code = ctypes.get_errno()
        if code in _AGAIN:
            return 0
        raise OSError(code, "recvmmsg failed")

    def length(self, i: int) -> int:
        return int(self.lengths[i * self.len_step + self.len_index])

    def port(self, i: int) -> int:
        at = i * NAME_BYTES
        return int(self.names[at + 2]) << 8 | int(self.names[at + 3])

    def host(self, i: int) -> str:
        at = i * NAME_BYTES
        if self.family == socket.AF_INET6:
            return socket.inet_ntop(socket.AF_INET6, bytes(self.names[at + 8 : at + 24]))
        return socket.inet_ntop(socket.AF_INET, bytes(self.names[at + 4 : at + 8]))


def batch_reader(sock: socket.socket, count: int, size: int) -> BatchReader | None:
    """A BatchReader for `sock`, or None where recvmmsg is not available."""
    if _RECVMMSG is None:
        return None
    return BatchReader(sock, count, size, _RECVMMSG)
