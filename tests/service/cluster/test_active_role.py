"""Which node drives the PBX (cti/platform/cluster/active.py) on a real Redis: one active node at
a time, a standby takes over when the active one stops renewing (a kill), the URL standbys
forward to is the current holder's only, and a node that loses the lease fences itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from cti.domain.cluster.lease import LeaseTimes
from cti.domain.ivr.checkpoint import Checkpoint
from cti.features.ivr.checkpoints import CheckpointWriter
from cti.platform.ari.client import AriClient
from cti.platform.clock import FakeClock, SystemClock
from cti.platform.cluster.active import ACTIVE, ActiveRole
from cti.platform.cluster.leases import LeaseKeeper, RedisLeases
from cti.platform.cluster.redis_store import connect
from cti.platform.errors import TelephonyUnavailable
from cti.platform.settings import AriSettings
from tests.service.cluster.redis_server import RedisServer

FAST = LeaseTimes(ttl=0.4, margin=0.08, renew_every=0.1)


async def _until(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def _role(redis: Redis, prefix: str, node: str, fenced: list[str]) -> ActiveRole:
    store = RedisLeases(redis, prefix)
    keeper = LeaseKeeper(store, node, SystemClock(), FAST)
    role = ActiveRole(keeper, store, SystemClock(), f"http://{node}:8000", poll_s=0.02,
                      fence=lambda why: fenced.append(f"{node}: {why}"))
    keeper.on_lost = role.on_lost
    return role


async def test_one_node_is_active_and_a_standby_takes_over_when_it_dies(
    redis: Redis, prefix: str
) -> None:
    fenced: list[str] = []
    a, b = _role(redis, prefix, "a", fenced), _role(redis, prefix, "b", fenced)
    held = await asyncio.wait_for(a.wait_active(), 2)
    a.keeper.start()
    assert a.state == "active"
    standby = asyncio.create_task(b.wait_active())
    await asyncio.sleep(FAST.ttl * 3)  # a renews: b keeps waiting
    assert not standby.done()
    assert b.state == "standby"
    found = await b.active(max_age_s=0)
    assert found is not None
    assert (found.node_id, found.url, found.token) == ("a", "http://a:8000", held.token)

    # a dies: no more renewals, nothing released (its process is gone)
    assert a.keeper._task is not None
    a.keeper._task.cancel()
    await a.aclose()  # its guard is gone with it
    died = time.monotonic()
    taken = await asyncio.wait_for(standby, FAST.ttl * 4)
    took = time.monotonic() - died
    assert took <= FAST.ttl + 0.15  # the lease's end, then the next ask
    assert taken.token == held.token + 1
    found = await a.active(max_age_s=0)
    assert found is not None
    assert (found.node_id, found.url) == ("b", "http://b:8000")
    assert fenced == []
    await b.aclose()
    await b.keeper.aclose()


async def test_a_stalled_node_that_wakes_after_another_took_over_fences_itself(
    redis: Redis, prefix: str
) -> None:
    fenced: list[str] = []
    paused = FakeClock(mono=time.monotonic())  # a's clock stands still: its process is paused
    store = RedisLeases(redis, prefix)
    keeper = LeaseKeeper(store, "a", paused, FAST)
    a = ActiveRole(keeper, store, paused, "http://a:8000", poll_s=0.02,
                   fence=lambda why: fenced.append(why))
    keeper.on_lost = a.on_lost
    held = await a.wait_active()  # and then no renewals: the stall
    b = _role(redis, prefix, "b", [])
    taken = await asyncio.wait_for(b.wait_active(), FAST.ttl * 4)
    assert taken.token == held.token + 1
    assert fenced == []  # a, paused, has not looked yet
    paused.advance(FAST.ttl * 2)  # a wakes up: its first look finds the lease gone
    await _until(lambda: bool(fenced))
    assert fenced == ["the active lease is another node's"]
    assert a.state == "standby"
    await a.aclose()
    await b.aclose()
    await b.keeper.aclose()


async def test_renewals_that_failed_without_a_rival_take_the_lease_again(
    redis: Redis, prefix: str
) -> None:
    """A node that missed its renewals (a slow loop) while Redis was fine and nobody else
    asked: nobody acted meanwhile, so it keeps its calls."""
    fenced: list[str] = []
    a = _role(redis, prefix, "a", fenced)
    await a.wait_active()  # its keeper never renews
    await asyncio.sleep(FAST.ttl * 3)
    assert fenced == []
    assert a.state == "active"
    assert a.keeper.holds(ACTIVE) is not None
    await a.aclose()
    await a.keeper.aclose()


async def test_redis_away_for_every_node_leaves_the_active_node_driving_alone(
    redis_server: RedisServer, prefix: str
) -> None:
    fenced: list[str] = []
    asked: list[str] = []

    async def peer_says_redis_is_away_too(url: str) -> bool:
        asked.append(url)
        return False

    redis = connect(redis_server.url)
    store = RedisLeases(redis, prefix)
    keeper = LeaseKeeper(store, "a", SystemClock(), FAST)
    a = ActiveRole(keeper, store, SystemClock(), "http://a:8000", poll_s=0.02,
                   fence=fenced.append, ask_peer=peer_says_redis_is_away_too)
    keeper.on_lost = a.on_lost
    first = await a.wait_active()
    keeper.start()
    a.peers = {"b": "http://b:8000"}
    await redis_server.stop()
    await _until(lambda: a.alone, timeout=FAST.ttl + 3)
    assert a.state == "active"
    assert fenced == []
    assert asked == ["http://b:8000"]
    await redis_server.start()  # empty: it keeps nothing on disk
    await _until(lambda: a.keeper.holds(ACTIVE) is not None and not a.alone, timeout=5)
    assert fenced == []
    assert a.held is not None  # holding it again (Redis restarted empty: tokens from 1)
    assert first.token >= 1
    await a.aclose()
    await keeper.aclose()
    await redis.aclose()


async def test_cut_off_from_redis_while_a_peer_reaches_it_fences(
    redis_server: RedisServer, prefix: str
) -> None:
    fenced: list[str] = []

    async def peer_reaches_redis(url: str) -> bool:
        return True

    redis = connect(redis_server.url)
    store = RedisLeases(redis, prefix)
    keeper = LeaseKeeper(store, "a", SystemClock(), FAST)
    a = ActiveRole(keeper, store, SystemClock(), "http://a:8000", poll_s=0.02,
                   fence=fenced.append, ask_peer=peer_reaches_redis)
    keeper.on_lost = a.on_lost
    await a.wait_active()
    keeper.start()
    a.peers = {"b": "http://b:8000"}
    await redis_server.stop()
    started = time.monotonic()
    await _until(lambda: bool(fenced), timeout=FAST.ttl + 3)
    assert fenced == ["cut off from Redis while a peer reaches it"]
    assert not a.alone
    assert time.monotonic() - started < FAST.ttl + 2.5  # its deadline, then one 1 s attempt
    await a.aclose()
    await keeper.aclose()
    await redis.aclose()


async def test_a_refused_renewal_fences_at_once(redis: Redis, prefix: str) -> None:
    fenced: list[str] = []
    a = _role(redis, prefix, "a", fenced)
    await a.wait_active()
    # the lease is taken from under a (split brain attempt: it expired and b got it)
    await redis.delete(f"{prefix}lease:{ACTIVE}")
    b = _role(redis, prefix, "b", [])
    await b.wait_active()
    await a.keeper.renew()
    assert fenced == ["a: the active lease is another node's"]
    found = await b.active(max_age_s=0)
    assert found is not None
    assert found.node_id == "b"
    await a.aclose()
    await b.aclose()
    await b.keeper.aclose()


async def test_no_active_node_and_a_stale_url_are_not_forwarded_to(
    redis: Redis, prefix: str
) -> None:
    fenced: list[str] = []
    a = _role(redis, prefix, "a", fenced)
    assert await a.active(max_age_s=0) is None
    await a.wait_active()
    await a.aclose()
    await a.keeper.aclose()  # a clean stop gives the lease up
    b = _role(redis, prefix, "b", [])
    # a's URL is still in the state hash, but no lease holds it
    assert await b.active(max_age_s=0) is None


async def test_a_paused_node_looks_at_the_lease_before_it_acts_on_waking(
    redis: Redis, prefix: str
) -> None:
    """The guard looks ten times a second, but what a paused process does first on waking may
    be a timer's prompt or a checkpoint write: each asks `may_drive`, which takes the guard's
    decision itself (here: fence) before anything reaches the PBX or the record."""
    fenced: list[str] = []
    paused = FakeClock(mono=time.monotonic())
    store = RedisLeases(redis, prefix)
    keeper = LeaseKeeper(store, "a", paused, FAST)
    a = ActiveRole(keeper, store, paused, "http://a:8000", poll_s=60,  # the guard sleeps
                   fence=lambda why: fenced.append(why))
    keeper.on_lost = a.on_lost
    await a.wait_active()
    assert await a.may_drive()  # its lease is current
    b = _role(redis, prefix, "b", [])
    assert not await b.may_drive()  # a standby drives nothing
    await asyncio.wait_for(b.wait_active(), FAST.ttl * 4)
    paused.advance(FAST.ttl * 2)  # a wakes up

    client = AriClient(AriSettings(url="http://127.0.0.1:9/ari"))  # never reached
    client.gate = a.may_drive
    with pytest.raises(TelephonyUnavailable, match="does not hold the active lease"):
        await client.request("POST", "channels/caller-1/play", params={"media": "sound:x"})
    assert fenced == ["the active lease is another node's"]

    written: list[int] = []

    class Store:
        async def write(self, keep: list[Checkpoint], drop: list[str]) -> None:
            written.append(len(keep) + len(drop))

    writer = CheckpointWriter(Store(), gate=a.may_drive)  # type: ignore[arg-type]
    writer.drop("call-1")
    assert await writer.flush()
    assert written == []
    assert writer.refused == 1
    await writer.close()
    await client.close()
    await a.aclose()
    await b.aclose()
    await b.keeper.aclose()


async def test_the_node_that_drives_acts_and_one_stopping_cleanly_finishes_its_stop(
    redis: Redis, prefix: str
) -> None:
    fenced: list[str] = []
    a = _role(redis, prefix, "a", fenced)
    await a.wait_active()
    a.keeper.start()
    await asyncio.sleep(FAST.ttl * 2)  # renewed meanwhile
    assert await a.may_drive()
    await a.aclose()  # a clean stop: its last commands go out before the lease is given up
    assert await a.may_drive()
    assert fenced == []
    await a.keeper.aclose()
