"""Logout and deactivation end tokens before they expire: for HTTP, for new sockets, and for
open sockets (closed 4401 with a reason) — at once in this process, within the revocation
cache time when done by another instance or the CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from desk_app import SECRET, DeskEnv, closed_with, desk_app, next_message, open_socket, served
from typer.testing import CliRunner

from cti.cli import app as cli_app
from cti.features.auth.service import TOKEN_ALGORITHM, UserDirectory
from cti.features.desk.desk import AgentDesk
from cti.platform.clock import FakeClock

AT_ONCE_S = 5.0  # the desk's periodic token re-check is 10 s: a close before this was woken


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def me(env: DeskEnv, token: str) -> Any:
    return await env.client.get("/auth/me", headers=bearer(token))


async def test_logout_ends_the_token_for_http_and_leaves_other_sessions(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env:
        token = await env.token("agent1001", "agent-1001")
        other_tab = await env.token("agent1001", "agent-1001")
        assert (await me(env, token)).status_code == 200
        r = await env.client.post("/auth/logout", headers=bearer(token))
        assert r.status_code == 204
        r = await me(env, token)
        assert r.status_code == 401
        assert "logged out" in r.json()["detail"]
        assert (await env.client.post("/auth/logout", headers=bearer(token))).status_code == 401
        assert (await me(env, other_tab)).status_code == 200


async def test_logout_without_a_token_is_401(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env:
        assert (await env.client.post("/auth/logout")).status_code == 401


async def test_logout_closes_the_tokens_open_socket_at_once_and_refuses_new_ones(
    tmp_path: Path,
) -> None:
    async with desk_app(tmp_path) as env, served(env.app) as base:
        token = await env.token("agent1001", "agent-1001")
        other_tab = await env.token("agent1001", "agent-1001")
        ws = await open_socket(base, token)
        kept = await open_socket(base, other_tab)
        await next_message(ws, "hello")
        await next_message(kept, "hello")
        assert (await env.client.post("/auth/logout", headers=bearer(token))).status_code == 204
        # at once: well before the socket's periodic re-check (10 s) would notice
        assert await closed_with(ws, within=AT_ONCE_S) == (4401, "token revoked: logged out")
        await kept.send(json.dumps({"type": "ping", "t": 1}))
        assert (await next_message(kept, "pong"))["t"] == 1
        again = await open_socket(base, token)
        assert await closed_with(again) == (4401, "token revoked: logged out")
        await kept.close()


async def test_deactivating_a_user_ends_their_tokens_and_closes_their_sockets_at_once(
    tmp_path: Path,
) -> None:
    async with desk_app(tmp_path) as env, served(env.app) as base:
        admin = await env.login("admin", "admin-pw")
        token = await env.token("agent1001", "agent-1001")
        second = await env.token("agent1001", "agent-1001")
        colleague = await env.token("agent1002", "agent-1002")
        sockets = [await open_socket(base, t) for t in (token, second)]
        other = await open_socket(base, colleague)
        for ws in (*sockets, other):
            await next_message(ws, "hello")
        r = await env.client.patch("/auth/users/agent1001", headers=admin,
                                   json={"active": False})
        assert r.status_code == 200, r.text
        assert r.json()["active"] is False
        for ws in sockets:
            assert await closed_with(ws, within=AT_ONCE_S) == (
                4401, "token revoked: the user is deactivated")
        for t in (token, second):
            assert (await me(env, t)).status_code == 401
        r = await env.client.post("/auth/login",
                                  json={"username": "agent1001", "password": "agent-1001"})
        assert r.status_code == 401
        # the colleague is untouched
        await other.send(json.dumps({"type": "ping"}))
        await next_message(other, "pong")
        assert (await me(env, colleague)).status_code == 200
        # re-activated: a new login works, the old tokens stay ended
        r = await env.client.patch("/auth/users/agent1001", headers=admin,
                                   json={"active": True})
        assert r.status_code == 200
        fresh = await env.token("agent1001", "agent-1001")
        assert (await me(env, fresh)).status_code == 200
        r = await me(env, token)
        assert (r.status_code, r.json()["detail"]) == (
            401, "token revoked: all sessions of the user were ended")
        await other.close()


@pytest.mark.parametrize(("who", "password", "status"),
                         [("agent1002", "agent-1002", 403), ("supervisor", "supervisor-pw", 403)])
async def test_only_admins_deactivate_users(
    tmp_path: Path, who: str, password: str, status: int
) -> None:
    async with desk_app(tmp_path) as env:
        headers = await env.login(who, password)
        r = await env.client.patch("/auth/users/agent1001", headers=headers,
                                   json={"active": False})
        assert r.status_code == status
        await env.login("agent1001", "agent-1001")


async def test_deactivating_an_unknown_user_is_404_and_oneself_409(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env:
        admin = await env.login("admin", "admin-pw")
        r = await env.client.patch("/auth/users/nobody", headers=admin, json={"active": False})
        assert r.status_code == 404
        r = await env.client.patch("/auth/users/admin", headers=admin, json={"active": False})
        assert r.status_code == 409


async def test_another_instances_logout_is_seen_after_the_cache_time(tmp_path: Path) -> None:
    clock = FakeClock()
    async with desk_app(tmp_path, clock=clock) as env:
        # a second service instance over the same database and secret
        other = AgentDesk.build(env.desk.sessions, token_secret=SECRET, clock=clock)
        token = await env.token("agent1001", "agent-1001")
        assert (await me(env, token)).status_code == 200  # read once: cached here
        verified = await other.auth.verify(token)
        await other.auth.logout(verified)
        cache_s = env.desk.auth.revocations.cache_s
        clock.advance(cache_s - 0.5)
        assert (await me(env, token)).status_code == 200  # within the cache time
        clock.advance(0.5)
        r = await me(env, token)
        assert (r.status_code, r.json()["detail"]) == (401, "token revoked: logged out")


async def test_deactivation_elsewhere_closes_an_open_socket_at_its_next_message(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with desk_app(tmp_path, clock=clock) as env, served(env.app) as base:
        token = await env.token("agent1001", "agent-1001")
        ws = await open_socket(base, token)
        await next_message(ws, "hello")
        # the CLI or another instance: the database changes, this process is not told
        await UserDirectory(env.desk.sessions).set_active("agent1001", False)
        await ws.send(json.dumps({"type": "ping"}))
        await next_message(ws, "pong")  # still within the cache time
        clock.advance(env.desk.auth.revocations.cache_s)
        await ws.send(json.dumps({"type": "ping"}))
        assert await closed_with(ws) == (4401, "token revoked: the user is deactivated")


async def test_cli_deactivate_and_activate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    async with desk_app(tmp_path, clock=clock) as env:
        monkeypatch.setenv("CTI_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'desk.db'}")
        token = await env.token("agent1001", "agent-1001")
        runner = CliRunner()
        # the CLI runs its own event loop: off this one, as it would be in its own process
        result = await asyncio.to_thread(runner.invoke, cli_app,
                                         ["users", "deactivate", "agent1001"])
        assert result.exit_code == 0, result.output
        assert "agent1001 deactivated" in result.output
        clock.advance(env.desk.auth.revocations.cache_s)
        assert (await me(env, token)).status_code == 401
        result = await asyncio.to_thread(runner.invoke, cli_app, ["users", "activate", "agent1001"])
        assert result.exit_code == 0, result.output
        await env.login("agent1001", "agent-1001")
        result = await asyncio.to_thread(runner.invoke, cli_app, ["users", "deactivate", "nobody"])
        assert result.exit_code == 2
        assert "no user 'nobody'" in result.output


async def test_a_token_without_an_id_is_refused(tmp_path: Path) -> None:
    clock = FakeClock()
    async with desk_app(tmp_path, clock=clock) as env:
        token = await env.token("agent1001", "agent-1001")
        claims = jwt.decode(token, SECRET, algorithms=[TOKEN_ALGORITHM],
                            options={"verify_exp": False})
        del claims["jti"]  # as issued before logout existed: it could never be ended
        old = jwt.encode(claims, SECRET, TOKEN_ALGORITHM)
        r = await me(env, old)
        assert r.status_code == 401
        assert "jti" in r.json()["detail"]


async def test_an_open_socket_is_closed_when_its_token_expires(tmp_path: Path) -> None:
    clock = FakeClock()
    async with desk_app(tmp_path, clock=clock) as env, served(env.app) as base:
        ws = await open_socket(base, await env.token("agent1001", "agent-1001"))
        await next_message(ws, "hello")
        clock.advance(13 * 3600)
        await ws.send(json.dumps({"type": "ping"}))
        assert await closed_with(ws) == (4401, "token expired; log in again")


async def test_revoked_token_rows_are_deleted_once_the_tokens_expired(tmp_path: Path) -> None:
    from sqlalchemy import func, select

    from cti.platform.db.tables.users import RevokedTokenRow

    clock = FakeClock()
    async with desk_app(tmp_path, clock=clock) as env:

        async def rows() -> int:
            async with env.desk.sessions() as db:
                return int(await db.scalar(select(func.count()).select_from(RevokedTokenRow)))

        first = await env.token("agent1001", "agent-1001")
        await env.client.post("/auth/logout", headers=bearer(first))
        assert await rows() == 1
        clock.advance(13 * 3600)  # the first token has expired
        second = await env.token("agent1001", "agent-1001")
        await env.client.post("/auth/logout", headers=bearer(second))
        assert await rows() == 1
