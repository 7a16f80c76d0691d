"""Login, tokens, roles, per-agent call access, and socket authentication."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import websockets
from desk_app import SECRET, desk_app, served

from cti.domain.calls import Call, CallState
from cti.features.auth.service import Principal, Role, Tokens
from cti.features.calls.registry import CallRegistry, CallSession
from cti.platform.clock import FakeClock


class RecordingTelephony:
    """Records PBX requests (the call-control API needs only these)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        async def request(*args: Any, **kwargs: Any) -> None:
            self.requests.append((name, args))

        return request


def _registry_with(call_id: str, agent_id: str | None) -> CallRegistry:
    registry = CallRegistry()
    call = Call(
        id=call_id, channel_id=f"ch-{call_id}", caller_number="+49305551", caller_name="",
        dialled_number="100", arrived_at=datetime(2026, 1, 5, tzinfo=UTC),
        state=CallState.CONNECTED, answered_at=datetime(2026, 1, 5, tzinfo=UTC), agent_id=agent_id,
    )
    registry.add(CallSession(call=call))
    return registry


async def test_login_returns_a_token_that_identifies_the_user(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env:
        r = await env.client.post(
            "/auth/login", json={"username": "agent1001", "password": "agent-1001"}
        )
        assert r.status_code == 200
        body = r.json()
        assert body["token_type"] == "bearer"
        assert body["user"]["agent_id"] == "1001"
        me = await env.client.get("/auth/me", headers={"Authorization": f"Bearer {body['token']}"})
        assert me.json()["username"] == "agent1001"
        assert me.json()["role"] == "agent"


@pytest.mark.parametrize(
    ("username", "password"),
    [("agent1001", "wrong"), ("nobody", "agent-1001"), ("agent1001", "agent-1002")],
)
async def test_wrong_credentials_are_401(tmp_path: Path, username: str, password: str) -> None:
    async with desk_app(tmp_path) as env:
        r = await env.client.post("/auth/login", json={"username": username, "password": password})
        assert r.status_code == 401
        assert r.json() == {"error": "unauthorized", "detail": "wrong username or password"}


@pytest.mark.parametrize(
    ("body", "field"),
    [({"username": "a"}, "password"), ({"password": "x"}, "username"),
     ({"username": "", "password": "x"}, "username"),
     ({"username": "a", "password": "x", "extra": 1}, "extra")],
)
async def test_bad_login_input_is_422_with_the_field(
    tmp_path: Path, body: dict[str, Any], field: str
) -> None:
    async with desk_app(tmp_path) as env:
        r = await env.client.post("/auth/login", json=body)
        assert r.status_code == 422
        assert any(field in e["loc"] for e in r.json()["detail"])


@pytest.mark.parametrize(
    "header",
    [None, "Bearer nonsense", "Bearer " + Tokens("another-secret-0123456789-0123456789").issue(
        Principal(1, "agent1001", Role.ADMIN, "1001", "", "zh")).token],
)
async def test_missing_or_forged_token_is_401(tmp_path: Path, header: str | None) -> None:
    async with desk_app(tmp_path) as env:
        headers = {"Authorization": header} if header else {}
        r = await env.client.get("/auth/me", headers=headers)
        assert r.status_code == 401


async def test_expired_token_is_401(tmp_path: Path) -> None:
    clock = FakeClock()
    async with desk_app(tmp_path, clock=clock) as env:
        headers = await env.login("agent1001", "agent-1001")
        assert (await env.client.get("/auth/me", headers=headers)).status_code == 200
        clock.advance(13 * 3600)
        r = await env.client.get("/auth/me", headers=headers)
        assert r.status_code == 401
        assert "expired" in r.json()["detail"]


@pytest.mark.parametrize(
    ("username", "password", "status"),
    [("agent1001", "agent-1001", 403), ("supervisor", "supervisor-pw", 403),
     ("admin", "admin-pw", 201)],
)
async def test_only_admins_add_users(
    tmp_path: Path, username: str, password: str, status: int
) -> None:
    async with desk_app(tmp_path) as env:
        headers = await env.login(username, password)
        r = await env.client.post(
            "/auth/users", headers=headers,
            json={"username": "agent1009", "password": "agent-1009", "role": "agent",
                  "agent_id": "1009"},
        )
        assert r.status_code == status, r.text


@pytest.mark.parametrize(
    ("body", "reason"),
    [({"username": "x y", "password": "secret1", "role": "agent", "agent_id": "1"}, "username"),
     ({"username": "x", "password": "short", "role": "agent", "agent_id": "1"}, "password"),
     ({"username": "x", "password": "secret1", "role": "boss"}, "role"),
     ({"username": "x", "password": "secret1", "role": "agent"}, "agent id")],
)
async def test_bad_user_input_is_422_with_reason(
    tmp_path: Path, body: dict[str, Any], reason: str
) -> None:
    async with desk_app(tmp_path) as env:
        headers = await env.login("admin", "admin-pw")
        r = await env.client.post("/auth/users", headers=headers, json=body)
        assert r.status_code == 422
        assert reason in json.dumps(r.json())


async def test_duplicate_agent_id_is_409(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env:
        headers = await env.login("admin", "admin-pw")
        r = await env.client.post(
            "/auth/users", headers=headers,
            json={"username": "other", "password": "secret1", "role": "agent", "agent_id": "1001"},
        )
        assert r.status_code == 409


async def test_an_agent_cannot_read_or_control_another_agents_call(tmp_path: Path) -> None:
    tel = RecordingTelephony()
    async with desk_app(tmp_path, calls=_registry_with("c1", "1001"), telephony=tel) as env:
        other = await env.login("agent1002", "agent-1002")
        assert (await env.client.get("/calls/c1/desk", headers=other)).status_code == 403
        for action in ("hold", "resume", "hangup"):
            r = await env.client.post(f"/calls/c1/{action}", headers=other)
            assert r.status_code == 403, action
        assert tel.requests == []


async def test_the_agent_controls_their_own_call(tmp_path: Path) -> None:
    tel = RecordingTelephony()
    async with desk_app(tmp_path, calls=_registry_with("c1", "1001"), telephony=tel) as env:
        mine = await env.login("agent1001", "agent-1001")
        assert (await env.client.get("/calls/c1/desk", headers=mine)).json()["agent_id"] == "1001"
        assert (await env.client.post("/calls/c1/hold", headers=mine)).status_code == 200
        r = await env.client.post("/calls/c1/mute", headers=mine, json={"on": True})
        assert r.status_code == 200
        assert (await env.client.post("/calls/c1/hangup", headers=mine)).status_code == 200
        assert tel.requests == [
            ("start_moh", ("ch-c1",)), ("mute", ("ch-c1", "out")), ("hangup", ("ch-c1",))
        ]


async def test_supervisor_may_control_any_call(tmp_path: Path) -> None:
    tel = RecordingTelephony()
    async with desk_app(tmp_path, calls=_registry_with("c1", "1001"), telephony=tel) as env:
        sup = await env.login("supervisor", "supervisor-pw")
        assert (await env.client.post("/calls/c1/resume", headers=sup)).status_code == 200


async def test_unknown_procedure_and_bad_transfer_are_422(tmp_path: Path) -> None:
    async with desk_app(tmp_path, calls=_registry_with("c1", "1001")) as env:
        mine = await env.login("agent1001", "agent-1001")
        r = await env.client.post("/calls/c1/procedures/shout", headers=mine)
        assert r.status_code == 422
        assert "unknown procedure" in r.text
        r = await env.client.post("/calls/c1/transfer", headers=mine,
                                  json={"target_type": "number", "target": "abc"})
        assert r.status_code == 422
        assert "not a phone number" in r.text


async def test_socket_without_token_is_refused(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env, served(env.app) as base:
        url = base.replace("http", "ws") + "/ws/desk"
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"type": "hello"}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4401


async def test_socket_with_a_token_in_the_url_is_closed_1008_even_when_it_is_good(
    tmp_path: Path,
) -> None:
    async with desk_app(tmp_path) as env, served(env.app) as base:
        token = await env.token("agent1001", "agent-1001")
        url = base.replace("http", "ws") + f"/ws/desk?token={token}"
        async with websockets.connect(url) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1008
            assert "token in the URL is refused" in closed.value.rcvd.reason
        assert env.desk.hub.connections("agent:1001") == 0


async def test_socket_with_a_forged_token_in_the_first_message_is_closed_4401(
    tmp_path: Path,
) -> None:
    async with desk_app(tmp_path) as env, served(env.app) as base, \
            websockets.connect(base.replace("http", "ws") + "/ws/desk") as ws:
            await ws.send(json.dumps({"type": "auth", "token": "forged"}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4401
            assert "invalid token" in closed.value.rcvd.reason


async def test_socket_authenticates_with_a_first_message(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env, served(env.app) as base:
        token = await env.token("agent1001", "agent-1001")
        async with websockets.connect(base.replace("http", "ws") + "/ws/desk") as ws:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            hello = json.loads(await ws.recv())
            assert hello["type"] == "hello"
            assert hello["topics"] == ["agent:1001"]


def test_token_secret_must_be_long_enough() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        Tokens("short")
    assert len(SECRET) >= 32
