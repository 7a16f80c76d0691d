"""The ARI client turns transport failures into our typed errors (real sockets, no mocks)."""

from __future__ import annotations

import asyncio
import time

import pytest

from cti.platform.ari.client import CONNECTIONS, AriClient
from cti.platform.errors import TelephonyTimeout, TelephonyUnavailable
from cti.platform.settings import AriSettings


async def test_a_rest_call_that_hangs_times_out_and_says_so() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def never_answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(w)  # read nothing, answer nothing

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = AriClient(AriSettings(url=f"http://127.0.0.1:{port}/ari", request_timeout=0.5))
    try:
        started = time.monotonic()
        with pytest.raises(TelephonyTimeout, match=r"ARI POST /channels/x/answer did not answer"):
            await client.request("POST", "channels/x/answer")
        assert 0.4 < time.monotonic() - started < 2.0
        assert accepted, "the request reached the server"
    finally:
        await client.close()
        for w in accepted:
            w.close()
        server.close()
        await server.wait_closed()


async def test_nothing_listening_is_unavailable_not_a_traceback() -> None:
    client = AriClient(AriSettings(url="http://127.0.0.1:1/ari", request_timeout=1))
    try:
        with pytest.raises(TelephonyUnavailable, match=r"cannot reach ARI at http://127.0.0.1:1/ari"):
            await client.request("GET", "asterisk/info")
    finally:
        await client.close()


async def test_event_socket_keeps_retrying_while_nothing_listens() -> None:
    client = AriClient(
        AriSettings(url="http://127.0.0.1:1/ari", reconnect_initial=0.05, reconnect_max=0.1)
    )
    task = asyncio.create_task(client.run())
    await asyncio.sleep(0.5)
    assert not task.done(), "run() gave up instead of retrying"
    assert not client.connected.is_set()
    await client.close()
    await asyncio.wait_for(task, 2)


async def test_a_prompt_is_not_queued_behind_requests_the_pbx_holds() -> None:
    """Every ordinary connection busy with a request Asterisk holds (an `answer` under load):
    a prompt, on the timed lane, still goes out and is answered at once."""
    release = asyncio.Event()
    held: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0].decode()
                if "/answer" in line:
                    held.append(line)
                    await release.wait()
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = AriClient(AriSettings(url=f"http://127.0.0.1:{port}/ari", request_timeout=5))
    answers = [
        asyncio.create_task(client.request("POST", f"channels/c{i}/answer"))
        for i in range(CONNECTIONS + 10)
    ]
    try:
        for _ in range(200):
            if len(held) >= CONNECTIONS:
                break
            await asyncio.sleep(0.01)
        assert len(held) == CONNECTIONS, "every ordinary connection is held"
        started = time.monotonic()
        await client.request("POST", "channels/p/play/p1", urgent=True)
        assert time.monotonic() - started < 0.5
        assert len(held) == CONNECTIONS
        assert not any(t.done() for t in answers), "the held requests are still held"
    finally:
        release.set()
        await asyncio.gather(*answers, return_exceptions=True)
        await client.close()
        server.close()
        await server.wait_closed()
