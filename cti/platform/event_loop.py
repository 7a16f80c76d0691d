"""The event loop a process of the service runs on.

uvloop (libuv underneath; a dependency everywhere but Windows) where it is to be had:
the service is I/O all the way down (ARI's HTTP and WebSocket, the line watch's RTP,
PostgreSQL, Redis, the agents' sockets), and its transports, timers and callbacks then run
in C instead of asyncio's Python (docs/sizing.md, "The event loop"). asyncio's own loop where
uvloop is not installed (it has no Windows build) or when asked (`event_loop: asyncio`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

T = TypeVar("T")
LoopKind = Literal["auto", "uvloop", "asyncio"]


def run(main: Coroutine[Any, Any, T], kind: LoopKind = "auto") -> T:
    """Run `main` to its end on a new loop of `kind` ("auto": uvloop if installed)."""
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                main.close()
                raise RuntimeError(
                    "event_loop: uvloop is set but uvloop is not installed "
                    "(pip install uvloop; no Windows build)"
                ) from None
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def loop_name() -> str:
    """The running loop's kind, for the start-up log."""
    loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
