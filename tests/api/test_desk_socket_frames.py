"""Bad input on /ws/desk ends in a close with a code and reason (or an error message), never a
silent drop or a server fault: binary, not UTF-8, not JSON, too deep, too big — before and
after authentication."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from desk_app import closed_with, desk_app, next_message, open_socket, served
from websockets.asyncio.client import connect

from cti.features.auth.settings import AuthSettings
from cti.features.desk import ws as desk_ws

BAD_FRAMES: list[tuple[str, Any, bool | None, int, str]] = [
    ("binary", b'{"type": "ping"}', None, 1003, "binary messages are not accepted"),
    ("not utf-8", b'{"type": "\xff\xfe"}', True, 1007, "invalid UTF-8 at byte 10"),
    ("lone surrogate", '{"type": "ping", "t": "\\udc00"}', None, 1007, "lone surrogate"),
    ("too deep", "[" * 5000 + "]" * 5000, None, 1009, "nested deeper than 32"),
    # refused by the server's protocol at the desk's limit, before it is buffered whole
    ("too big", json.dumps({"type": "ping", "t": "x" * 70_000}), None, 1009,
     "exceeds limit of 65536 bytes"),
]


@pytest.mark.parametrize(("name", "frame", "as_text", "code", "reason"), BAD_FRAMES,
                         ids=[b[0] for b in BAD_FRAMES])
async def test_a_bad_frame_after_login_closes_with_its_code_and_reason(
    tmp_path: Path, name: str, frame: Any, as_text: bool | None, code: int, reason: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with desk_app(tmp_path) as env, served(env.app) as base:
        token = await env.token("agent1001", "agent-1001")
        ws = await open_socket(base, token, max_size=None)
        await next_message(ws, "hello")
        await ws.send(frame, text=as_text)
        got_code, got_reason = await closed_with(ws)
        assert got_code == code
        assert reason in got_reason
        for _ in range(100):  # the server side lets go of the subscription
            if env.desk.hub.connections("agent:1001") == 0:
                break
            await asyncio.sleep(0.01)
        assert env.desk.hub.connections("agent:1001") == 0
    logged = capsys.readouterr()
    assert "Traceback" not in logged.out + logged.err


@pytest.mark.parametrize(("name", "frame", "as_text", "code", "reason"), BAD_FRAMES,
                         ids=[b[0] for b in BAD_FRAMES])
async def test_a_bad_first_frame_closes_with_its_code_and_reason(
    tmp_path: Path, name: str, frame: Any, as_text: bool | None, code: int, reason: str,
) -> None:
    async with desk_app(tmp_path) as env, served(env.app) as base:
        ws = await connect(f"{base.replace('http', 'ws')}/ws/desk", max_size=None)
        await ws.send(frame, text=as_text)
        got_code, got_reason = await closed_with(ws)
        assert got_code == code
        assert reason in got_reason


async def test_text_that_is_not_json_gets_an_error_and_the_socket_stays(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env, served(env.app) as base:
        token = await env.token("agent1001", "agent-1001")
        async with await open_socket(base, token) as ws:
            await next_message(ws, "hello")
            await ws.send("this is not json")
            error = await next_message(ws, "error")
            assert "messages must be JSON" in error["detail"]
            await ws.send(json.dumps({"type": "ping", "t": 7}))
            assert (await next_message(ws, "pong"))["t"] == 7


async def test_the_size_limit_is_a_setting(tmp_path: Path) -> None:
    settings = AuthSettings(ws_max_message_bytes=2048)
    async with desk_app(tmp_path, auth_settings=settings) as env, served(env.app) as base:
        token = await env.token("agent1001", "agent-1001")
        async with await open_socket(base, token) as ws:
            await next_message(ws, "hello")
            await ws.send(json.dumps({"type": "ping", "t": "x" * 1900}))
            await next_message(ws, "pong")
            await ws.send(json.dumps({"type": "ping", "t": "x" * 2100}))
            code, reason = await closed_with(ws)
            assert code == 1009
            assert "limit of 2048 bytes" in reason


async def test_a_fault_in_the_socket_handler_closes_1011_and_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    def broken(*_a: Any, **_k: Any) -> bool:
        raise RuntimeError("boom")

    async with desk_app(tmp_path) as env, served(env.app) as base:
        token = await env.token("supervisor", "supervisor-pw")
        monkeypatch.setattr(desk_ws, "may_follow", broken)
        async with await open_socket(base, token) as ws:
            await next_message(ws, "hello")
            await ws.send(json.dumps({"type": "subscribe", "topic": "agent:1001"}))
            assert await closed_with(ws) == (1011, "internal error")
    assert "ws.failed" in capsys.readouterr().out
