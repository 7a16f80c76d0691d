"""Leases with fencing tokens in Redis: the rules of cti/domain/cluster/lease.py (LeaseTable),
each operation one Lua script, so a check and its write are one atomic step on the store.

Keys (under the cluster's prefix):
  lease:<resource>   hash {holder, token}, expiring with the lease (PEXPIRE; Redis's clock)
  token:<resource>   the last token granted (INCR; never expires, so tokens only grow)
  state:<resource>   hash written only under the current lease (`fenced_write`)

`LeaseKeeper` is the holder's side: it renews what it holds in one round trip, and answers
`holds(resource)` from the holder's own clock (HeldLease), so a node that cannot renew stops
acting before the store can grant the resource to another node.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping

from redis.asyncio import Redis

from cti.domain.cluster.lease import HeldLease, Lease, LeaseTimes, Refused
from cti.platform.clock import Clock
from cti.platform.cluster.redis_store import SOCKET_TIMEOUT_S, as_str, call
from cti.platform.errors import ClusterUnavailable
from cti.platform.log import get_logger

log = get_logger(__name__)

# The store's clock, in seconds, for the expiry it reports.
_NOW = "local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)"

_ACQUIRE = _NOW + """
local holder = redis.call('HGET', KEYS[1], 'holder')
if holder and holder ~= ARGV[1] then
  return {0, holder, 0, now + redis.call('PTTL', KEYS[1])}
end
local token
if holder then
  token = tonumber(redis.call('HGET', KEYS[1], 'token'))
else
  token = redis.call('INCR', KEYS[2])
  redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'token', token)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, ARGV[1], token, now + tonumber(ARGV[2])}
"""

_RENEW = """
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1]
   and redis.call('HGET', KEYS[1], 'token') == ARGV[2] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 0
"""

_RELEASE = """
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1]
   and redis.call('HGET', KEYS[1], 'token') == ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: lease, state. ARGV: token, field, value, field, value...
_FENCED_WRITE = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], '_token', ARGV[1], unpack(ARGV, 2))
return 1
"""


class RedisLeases:
    """The store: acquire, renew, release, fenced writes (the LeaseTable's rules)."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._fenced = redis.register_script(_FENCED_WRITE)

    def _lease(self, resource: str) -> str:
        return f"{self.prefix}lease:{resource}"

    async def acquire(self, resource: str, holder: str, ttl: float) -> Lease | Refused:
        keys = [self._lease(resource), f"{self.prefix}token:{resource}"]
        granted, who, token, expires_ms = await call(
            "lease acquire", lambda: self._acquire(keys, [holder, _ms(ttl)])
        )
        if not granted:
            return Refused(resource, as_str(who), int(expires_ms) / 1000)
        return Lease(resource, holder, int(token), int(expires_ms) / 1000)

    async def renew_many(
        self, held: Mapping[str, int], holder: str, ttl: float
    ) -> dict[str, bool]:
        """Renew every (resource, token) in one round trip; which were still ours."""
        names = list(held)
        async with self.redis.pipeline(transaction=False) as pipe:
            for resource in names:
                await self._renew(
                    [self._lease(resource)], [holder, held[resource], _ms(ttl)], client=pipe
                )
            results = await call("lease renew", pipe.execute)
        return {r: bool(ok) for r, ok in zip(names, results, strict=True)}

    async def release(self, resource: str, holder: str, token: int) -> bool:
        result = await call(
            "lease release", lambda: self._release([self._lease(resource)], [holder, token])
        )
        return bool(result)

    async def current(self, resource: str) -> tuple[str, int] | None:
        """(holder, token) of the resource's live lease, if any."""
        values = await call(
            "lease read", lambda: self.redis.hmget(self._lease(resource), ["holder", "token"])
        )
        holder, token = values
        return None if holder is None or token is None else (as_str(holder), int(token))

    async def last_token(self, resource: str) -> int:
        value = await call("token read", lambda: self.redis.get(f"{self.prefix}token:{resource}"))
        return int(value or 0)

    async def fenced_write(self, resource: str, token: int, values: Mapping[str, str]) -> bool:
        """Write `values` into the resource's state only while `token` is its current lease's;
        False (nothing written) for a superseded or expired token."""
        if not values:
            raise ValueError("a fenced write needs at least one field")
        flat = [x for kv in values.items() for x in kv]
        keys = [self._lease(resource), f"{self.prefix}state:{resource}"]
        result = await call("fenced write", lambda: self._fenced(keys, [token, *flat]))
        return bool(result)

    async def state(self, resource: str) -> dict[str, str]:
        raw = await call(
            "state read", lambda: self.redis.hgetall(f"{self.prefix}state:{resource}")
        )
        return {as_str(k): as_str(v) for k, v in raw.items()}


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


LostHandler = Callable[[str, int], Awaitable[None]]


class LeaseKeeper:
    """The leases this node holds, renewed together; `holds` is the guard before acting."""

    def __init__(
        self, leases: RedisLeases, node_id: str, clock: Clock, times: LeaseTimes,
        on_lost: LostHandler | None = None,
    ) -> None:
        self.leases = leases
        self.node_id = node_id
        self.clock = clock
        self.times = times
        self.on_lost = on_lost
        self._held: dict[str, HeldLease] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def acquire(self, resource: str) -> HeldLease | None:
        """The lease, or None while another node holds it. ClusterUnavailable if Redis is
        away (the caller decides: a node alone keeps acting for what it already owns)."""
        sent = self.clock.monotonic()
        result = await self.leases.acquire(resource, self.node_id, self.times.ttl)
        if isinstance(result, Refused):
            return None
        held = self._held.get(resource)
        if held is not None and held.token == result.token:
            held = held.renewed(sent)
        else:
            held = HeldLease(resource, result.token, sent, self.times)
        self._held[resource] = held
        return held

    def holds(self, resource: str) -> HeldLease | None:
        """The lease if this node may act for `resource` now, by its own clock."""
        held = self._held.get(resource)
        if held is None or not held.valid(self.clock.monotonic()):
            return None
        return held

    def held(self) -> list[str]:
        return list(self._held)

    async def release(self, resource: str) -> None:
        held = self._held.pop(resource, None)
        if held is not None:
            with contextlib.suppress(ClusterUnavailable):  # it expires by itself
                await self.leases.release(resource, self.node_id, held.token)

    async def renew(self) -> None:
        """Renew everything held; a lease the store no longer has for us, or one whose time
        ran out on our clock (renewals failing), is dropped and reported lost."""
        if not self._held:
            return
        sent = self.clock.monotonic()
        tokens = {r: h.token for r, h in self._held.items()}
        try:
            results = await self.leases.renew_many(tokens, self.node_id, self.times.ttl)
        except ClusterUnavailable as exc:
            log.warning("cluster.renew_failed", error=exc.message, leases=len(tokens))
            results = {}
        now = self.clock.monotonic()
        for resource, token in tokens.items():
            held = self._held.get(resource)
            if held is None or held.token != token:
                continue  # released or re-acquired meanwhile
            if results.get(resource):
                self._held[resource] = held.renewed(sent)
            elif resource in results or not held.valid(now):
                del self._held[resource]
                log.warning("cluster.lease_lost", resource=resource, token=token)
                if self.on_lost is not None:
                    await self.on_lost(resource, token)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lease-keeper")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.times.renew_every)
                return
            try:
                await self.renew()
            except Exception:  # a bug in a lost-lease handler must not stop the renewals
                log.exception("cluster.renew_loop_failed")

    async def aclose(self) -> None:
        await stop_loop(self._task, self._stopping)
        self._task = None
        for resource in list(self._held):
            await self.release(resource)


async def stop_loop(task: asyncio.Task[None] | None, stopping: asyncio.Event) -> None:
    """End a loop by its flag, so no Redis command is cancelled halfway (the client could be
    left waiting on its connection); cancelled only if Redis hangs past its socket timeout."""
    stopping.set()
    if task is None:
        return
    _, late = await asyncio.wait({task}, timeout=SOCKET_TIMEOUT_S * 2 + 1)
    for t in late:
        t.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
