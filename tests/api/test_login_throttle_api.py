"""POST /auth/login is throttled per user name and per client address (429 + Retry-After),
without running argon2 while throttled; the clock is a fake one, moved by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from argon2 import PasswordHasher
from desk_app import DeskEnv, desk_app

from cti.features.auth.service import UserDirectory
from cti.features.auth.settings import AuthSettings, LoginThrottleSettings
from cti.platform.clock import FakeClock


class CountingHasher(PasswordHasher):
    """Counts password verifications (each one is an argon2 run)."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.verifies = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verifies += 1
        return super().verify(hash, password)


def counting(env: DeskEnv) -> CountingHasher:
    hasher = CountingHasher()
    env.desk.auth.users = UserDirectory(env.desk.sessions, hasher=hasher, clock=env.desk.clock)
    return hasher


async def attempt(
    client: httpx.AsyncClient, username: str, password: str = "wrong-pw"
) -> httpx.Response:
    return await client.post("/auth/login", json={"username": username, "password": password})


def from_address(env: DeskEnv, host: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=env.app, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://desk")


async def test_sixth_failed_login_for_a_user_is_429_with_retry_after_and_no_argon2(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with desk_app(tmp_path, clock=clock) as env:
        hasher = counting(env)
        for _ in range(5):
            assert (await attempt(env.client, "agent1001")).status_code == 401
            clock.advance(1)
        assert hasher.verifies == 5
        refused = await attempt(env.client, "agent1001", "agent-1001")  # even the right one
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "295"  # now 5; the failure at 0 leaves at 300
        assert refused.json()["error"] == "too_many_attempts"
        assert "try again in 295 s" in refused.json()["detail"]
        for _ in range(20):
            assert (await attempt(env.client, "agent1001")).status_code == 429
        assert hasher.verifies == 5  # throttled attempts never reached argon2
        clock.advance(295)
        assert (await attempt(env.client, "agent1001", "agent-1001")).status_code == 200
        assert hasher.verifies == 6


async def test_another_user_is_not_throttled_by_one_users_failures(tmp_path: Path) -> None:
    async with desk_app(tmp_path, clock=FakeClock()) as env:
        for _ in range(5):
            await attempt(env.client, "agent1001")
        assert (await attempt(env.client, "agent1001")).status_code == 429
        assert (await attempt(env.client, "agent1002", "agent-1002")).status_code == 200


async def test_a_successful_login_resets_the_users_failure_count(tmp_path: Path) -> None:
    async with desk_app(tmp_path, clock=FakeClock()) as env:
        for _ in range(4):
            assert (await attempt(env.client, "agent1001")).status_code == 401
        assert (await attempt(env.client, "agent1001", "agent-1001")).status_code == 200
        for _ in range(4):
            assert (await attempt(env.client, "agent1001")).status_code == 401
        assert (await attempt(env.client, "agent1001", "agent-1001")).status_code == 200


async def test_failures_from_one_address_throttle_it_for_every_user_name(tmp_path: Path) -> None:
    clock = FakeClock()
    async with desk_app(tmp_path, clock=clock) as env:
        hasher = counting(env)
        async with from_address(env, "198.51.100.7") as attacker, \
                from_address(env, "198.51.100.8") as colleague:
            for i in range(20):  # 4 guesses each for 5 names: no user reaches its limit
                r = await attempt(attacker, f"user{i % 5}")
                assert r.status_code == 401, i
            refused = await attempt(attacker, "agent1001", "agent-1001")
            assert refused.status_code == 429
            assert int(refused.headers["Retry-After"]) == 300
            assert hasher.verifies == 20
            # the same user, from another address, still logs in
            assert (await attempt(colleague, "agent1001", "agent-1001")).status_code == 200


async def test_throttle_limits_come_from_the_settings(tmp_path: Path) -> None:
    settings = AuthSettings(
        login_throttle=LoginThrottleSettings(window_s=60, max_failures_per_user=2)
    )
    clock = FakeClock()
    async with desk_app(tmp_path, clock=clock, auth_settings=settings) as env:
        for _ in range(2):
            assert (await attempt(env.client, "agent1001")).status_code == 401
        r = await attempt(env.client, "agent1001", "agent-1001")
        assert (r.status_code, r.headers["Retry-After"]) == (429, "60")
        clock.advance(60)
        assert (await attempt(env.client, "agent1001", "agent-1001")).status_code == 200


async def test_concurrent_guesses_cannot_outrun_the_throttle(tmp_path: Path) -> None:
    import asyncio

    async with desk_app(tmp_path, clock=FakeClock()) as env:
        hasher = counting(env)
        answers: list[Any] = await asyncio.gather(
            *(attempt(env.client, "agent1001") for _ in range(30))
        )
        codes = sorted(r.status_code for r in answers)
        assert codes == [401] * 5 + [429] * 25
        assert hasher.verifies == 5
