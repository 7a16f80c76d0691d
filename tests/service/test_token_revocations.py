"""Logout and deactivation through both database backends, as two service instances see them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from argon2 import PasswordHasher

from cti.features.auth.revocation import TokenRef, TokenRevocations
from cti.features.auth.service import AuthService, NewUser, Role, Tokens, UserDirectory
from cti.platform.clock import FakeClock
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.db.migrate import upgrade_async
from cti.platform.db.tables.users import RevokedTokenRow, UserRow

SECRET = "service-test-secret-0123456789-abcdef"
HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def instance(sessions: object, clock: FakeClock) -> AuthService:
    return AuthService(
        UserDirectory(sessions, hasher=HASHER, clock=clock),  # type: ignore[arg-type]
        Tokens(SECRET, clock=clock),
        TokenRevocations(sessions, clock, cache_s=5.0),  # type: ignore[arg-type]
        clock=clock,
    )


async def test_two_instances_agree_on_logout_and_deactivation(database_url: str) -> None:
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    clock = FakeClock()
    a, b = instance(sessions, clock), instance(sessions, clock)
    try:
        await a.users.create(NewUser("agent1001", "agent-1001", Role.AGENT, "1001"))
        first = (await a.login("agent1001", "agent-1001")).token
        second = (await b.login("agent1001", "agent-1001")).token
        assert (await b.check(first)).username == "agent1001"  # b has read the user now

        await a.logout(await a.verify(first))
        clock.advance(5)
        assert await b.revocations.reason_revoked(b.tokens.decode(first).ref) == (
            "token revoked: logged out")
        assert (await b.check(second)).username == "agent1001"  # the other session lives
        third = (await a.login("agent1001", "agent-1001")).token
        await b.set_active("agent1001", False)
        clock.advance(5)
        assert await a.revocations.reason_revoked(a.tokens.decode(third).ref) == (
            "token revoked: the user is deactivated")
        await b.set_active("agent1001", True)
        clock.advance(5)
        assert await a.revocations.reason_revoked(a.tokens.decode(third).ref) == (
            "token revoked: all sessions of the user were ended")
        fourth = (await a.login("agent1001", "agent-1001")).token
        assert (await b.check(fourth)).agent_id == "1001"
    finally:
        await engine.dispose()


async def test_one_refresh_checks_every_watched_token_and_wakes_only_the_bad(
    tmp_path: Path,
) -> None:
    """Open sockets are re-checked together (a query for all, not one per socket): a token
    logged out elsewhere and a deactivated user's are woken; a good one is not."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    await upgrade_async(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    clock = FakeClock()
    later = clock.now() + timedelta(hours=1)
    async with sessions() as db:
        for uid in (1, 2, 3):
            db.add(UserRow(id=uid, username=f"u{uid}", password_hash="!", role="agent",
                           agent_id=str(uid), created_at=datetime.now(UTC),
                           active=uid != 3))
        db.add(RevokedTokenRow(jti="t2", user_id=2, expires_at=later, revoked_at=clock.now()))
        await db.commit()
    revocations = TokenRevocations(sessions, clock, cache_s=5.0)  # type: ignore[arg-type]
    try:
        good, out, gone = (revocations.watch(TokenRef(f"t{u}", u, 0, later)) for u in (1, 2, 3))
        await revocations.refresh_watched()
        assert not good.changed.is_set()
        assert out.changed.is_set()  # logged out on another instance
        assert gone.changed.is_set()  # deactivated by the CLI
        assert await revocations.reason_revoked(out.token) == "token revoked: logged out"
    finally:
        await revocations.aclose()
        await engine.dispose()
