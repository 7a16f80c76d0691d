"""Logout and deactivation through both database backends, as two service instances see them."""

from __future__ import annotations

from argon2 import PasswordHasher

from cti.features.auth.revocation import TokenRevocations
from cti.features.auth.service import AuthService, NewUser, Role, Tokens, UserDirectory
from cti.platform.clock import FakeClock
from cti.platform.db.base import make_engine, make_sessionmaker

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
