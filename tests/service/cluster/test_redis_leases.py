"""Leases with fencing tokens on a real Redis (cti/platform/cluster/leases.py): the Lua scripts
keep LeaseTable's rules, and two nodes contending for one resource never both act."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from cti.domain.cluster.lease import Lease, LeaseTimes, Refused
from cti.platform.clock import FakeClock, SystemClock
from cti.platform.cluster.leases import LeaseKeeper, RedisLeases

FAST = LeaseTimes(ttl=0.3, margin=0.06, renew_every=0.08)


async def test_a_lease_is_granted_once_and_refused_to_another_node(
    redis: Redis, prefix: str
) -> None:
    leases = RedisLeases(redis, prefix)
    first = await leases.acquire("acd", "a", ttl=5.0)
    assert isinstance(first, Lease)
    assert (first.holder, first.token) == ("a", 1)
    refused = await leases.acquire("acd", "b", ttl=5.0)
    assert isinstance(refused, Refused)
    assert refused.holder == "a"
    assert abs(refused.expires_at - first.expires_at) < 0.1  # when a's lease ends
    again = await leases.acquire("acd", "a", ttl=5.0)
    assert isinstance(again, Lease)
    assert again.token == 1  # the holder asking again keeps its token
    assert await leases.current("acd") == ("a", 1)


async def test_tokens_grow_across_expiry_and_release(redis: Redis, prefix: str) -> None:
    leases = RedisLeases(redis, prefix)
    a = await leases.acquire("call:1", "a", ttl=0.05)
    assert isinstance(a, Lease)
    await asyncio.sleep(0.08)
    b = await leases.acquire("call:1", "b", ttl=5.0)
    assert isinstance(b, Lease)
    assert await leases.release("call:1", "b", b.token)
    c = await leases.acquire("call:1", "a", ttl=5.0)
    assert isinstance(c, Lease)
    assert [a.token, b.token, c.token] == [1, 2, 3]
    assert await leases.last_token("call:1") == 3


async def test_renew_and_release_need_the_holder_and_its_token(redis: Redis, prefix: str) -> None:
    leases = RedisLeases(redis, prefix)
    lease = await leases.acquire("acd", "a", ttl=5.0)
    assert isinstance(lease, Lease)
    assert await leases.renew_many({"acd": lease.token}, "a", ttl=5.0) == {"acd": True}
    assert await leases.renew_many({"acd": lease.token}, "b", ttl=5.0) == {"acd": False}
    assert await leases.renew_many({"acd": 99}, "a", ttl=5.0) == {"acd": False}
    assert not await leases.release("acd", "b", lease.token)
    assert not await leases.release("acd", "a", 99)
    assert await leases.release("acd", "a", lease.token)
    assert await leases.current("acd") is None


async def test_a_renewal_after_expiry_fails_even_if_nobody_took_over(
    redis: Redis, prefix: str
) -> None:
    leases = RedisLeases(redis, prefix)
    lease = await leases.acquire("acd", "a", ttl=0.05)
    assert isinstance(lease, Lease)
    await asyncio.sleep(0.08)
    assert await leases.renew_many({"acd": lease.token}, "a", ttl=5.0) == {"acd": False}


async def test_fenced_writes_under_a_superseded_token_are_refused(
    redis: Redis, prefix: str
) -> None:
    leases = RedisLeases(redis, prefix)
    old = await leases.acquire("call:7", "a", ttl=0.05)
    assert isinstance(old, Lease)
    assert await leases.fenced_write("call:7", old.token, {"step": "1", "due": "10.5"})
    await asyncio.sleep(0.08)  # node a stalls past its lease; b takes over
    new = await leases.acquire("call:7", "b", ttl=5.0)
    assert isinstance(new, Lease)
    assert not await leases.fenced_write("call:7", old.token, {"step": "stale"})
    assert await leases.fenced_write("call:7", new.token, {"step": "2"})
    assert await leases.state("call:7") == {"step": "2", "due": "10.5", "_token": "2"}


async def test_many_nodes_racing_for_a_free_resource_get_one_grant(
    redis: Redis, prefix: str
) -> None:
    leases = RedisLeases(redis, prefix)
    for round_ in range(20):
        results = await asyncio.gather(
            *(leases.acquire(f"r{round_}", f"n{i}", ttl=5.0) for i in range(8))
        )
        granted = [r for r in results if isinstance(r, Lease)]
        assert len(granted) == 1
        assert granted[0].token == 1
        assert {r.holder for r in results if isinstance(r, Refused)} == {granted[0].holder}


async def test_the_keeper_renews_what_it_holds(redis: Redis, prefix: str) -> None:
    keeper = LeaseKeeper(RedisLeases(redis, prefix), "a", SystemClock(), FAST)
    assert await keeper.acquire("acd") is not None
    keeper.start()
    try:
        await asyncio.sleep(FAST.ttl * 3)
        assert keeper.holds("acd") is not None
        assert await keeper.leases.current("acd") == ("a", 1)
    finally:
        await keeper.aclose()
    assert await keeper.leases.current("acd") is None  # released on the way out


async def test_split_brain_a_stalled_node_stops_acting_before_the_other_takes_over(
    redis: Redis, prefix: str
) -> None:
    """Node a holds the ACD lease, then stalls (no renewals: a network cut, a long pause).
    By its own clock it gives the lease up before Redis lets node b have it; b's grant has a
    higher token; a's late writes under its old token are refused; and a's next renewal
    reports the lease lost."""
    clock = SystemClock()
    lost: list[tuple[str, int]] = []

    async def on_lost(resource: str, token: int) -> None:
        lost.append((resource, token))

    a = LeaseKeeper(RedisLeases(redis, prefix), "a", clock, FAST, on_lost=on_lost)
    b = LeaseKeeper(RedisLeases(redis, prefix), "b", clock, FAST)
    held_a = await a.acquire("acd")
    assert held_a is not None
    assert await b.acquire("acd") is None  # contended while a is alive

    a_stopped_at = b_granted_at = None
    while b_granted_at is None:  # a makes no renewals; b keeps trying
        if a_stopped_at is None and a.holds("acd") is None:
            a_stopped_at = clock.monotonic()
        if await b.acquire("acd") is not None:
            b_granted_at = clock.monotonic()
        await asyncio.sleep(0.005)
    assert a_stopped_at is not None
    assert a_stopped_at < b_granted_at
    held_b = b.holds("acd")
    assert held_b is not None
    assert held_b.token == held_a.token + 1

    assert not await a.leases.fenced_write("acd", held_a.token, {"decision": "from a"})
    assert await b.leases.fenced_write("acd", held_b.token, {"decision": "from b"})
    await a.renew()
    assert lost == [("acd", held_a.token)]
    assert a.holds("acd") is None
    assert await a.leases.state("acd") == {"decision": "from b", "_token": str(held_b.token)}
    await b.aclose()
    await a.aclose()


async def test_a_keeper_that_cannot_reach_redis_keeps_acting_until_its_own_deadline(
    redis: Redis, prefix: str,
) -> None:
    """Renewals failing (Redis away) do not drop a lease early: the node acts until the
    lease's end by its clock, minus the margin, then reports it lost."""
    from cti.platform.cluster.redis_store import connect

    clock = FakeClock()
    lost: list[str] = []

    async def on_lost(resource: str, token: int) -> None:
        lost.append(resource)

    keeper = LeaseKeeper(RedisLeases(redis, prefix), "a", clock, FAST, on_lost=on_lost)
    assert await keeper.acquire("acd") is not None
    dead = connect("redis://127.0.0.1:1/0")  # nothing listens there: Redis went away
    keeper.leases = RedisLeases(dead, prefix)
    clock.advance(FAST.renew_every)
    await keeper.renew()
    assert keeper.holds("acd") is not None
    assert lost == []
    clock.advance(FAST.ttl - FAST.margin - FAST.renew_every)
    await keeper.renew()
    assert keeper.holds("acd") is None
    assert lost == ["acd"]
    await dead.aclose()
