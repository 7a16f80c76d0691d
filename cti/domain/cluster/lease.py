"""Leases with fencing tokens, pure: the store's rules and the holder's view.

A lease gives one node the right to act for a resource (a call, the ACD's decisions) until it
expires. Two views of the same lease, on two clocks:

- **The store** (`LeaseTable`; Redis in a cluster, cti/platform/cluster/) grants a resource
  to one holder at a time, with a fencing token that grows with every grant of that resource,
  and grants it to another holder only once the lease has expired by *its* clock. It accepts a
  write made under a lease only while that lease, with that token, is the current one — so a
  holder that was paused past its expiry cannot overwrite its successor's work.
- **The holder** (`HeldLease`) counts its lease from the moment it *sent* the request, which is
  no later than the moment the store started counting, and considers it lost `margin` seconds
  before its end. With clocks whose rates differ by less than `margin / ttl`, a holder always
  stops acting before the store can grant the resource to anyone else.

Time is passed in (seconds on some monotonic clock); nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class LeaseTimes:
    """How long a lease lasts, how early its holder gives it up, how often it is renewed.

    `margin` covers the holder's clock running slow against the store's and the longest step
    the holder takes after checking its lease; renewals come often enough that a renewal or
    two may be lost without the lease lapsing."""

    ttl: float = 2.0
    margin: float = 0.4
    renew_every: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.margin < self.ttl:
            raise ValueError(f"lease margin {self.margin} s must be within (0, ttl={self.ttl} s)")
        if not 0 < self.renew_every < self.ttl - self.margin:
            raise ValueError(
                f"lease renew_every {self.renew_every} s must be under ttl - margin "
                f"({self.ttl - self.margin:g} s), or the holder gives the lease up between "
                "two renewals"
            )


@dataclass(frozen=True, slots=True)
class Lease:
    """The store's record: `holder` may act for `resource` under `token` until `expires_at`."""

    resource: str
    holder: str
    token: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class Refused:
    """Someone else holds the resource, until `expires_at` unless they renew."""

    resource: str
    holder: str
    expires_at: float


class LeaseTable:
    """The store's rules. The Redis adapter implements the same rules in Lua; this one is the
    reference (and the single-node store)."""

    def __init__(self) -> None:
        self._leases: dict[str, Lease] = {}
        self._tokens: dict[str, int] = {}  # the last token granted per resource; never reset

    def current(self, resource: str, now: float) -> Lease | None:
        lease = self._leases.get(resource)
        if lease is not None and now >= lease.expires_at:
            del self._leases[resource]
            return None
        return lease

    def acquire(self, resource: str, holder: str, now: float, ttl: float) -> Lease | Refused:
        """A new lease (a new token) when the resource is free or its lease expired; the same
        lease extended when `holder` already has it; refused otherwise."""
        if ttl <= 0:
            raise ValueError(f"lease ttl must be positive, not {ttl}")
        lease = self.current(resource, now)
        if lease is not None:
            if lease.holder != holder:
                return Refused(resource, lease.holder, lease.expires_at)
            lease = replace(lease, expires_at=now + ttl)
        else:
            token = self._tokens.get(resource, 0) + 1
            self._tokens[resource] = token
            lease = Lease(resource, holder, token, now + ttl)
        self._leases[resource] = lease
        return lease

    def renew(
        self, resource: str, holder: str, token: int, now: float, ttl: float
    ) -> Lease | None:
        """Extend the lease if it is still `holder`'s under `token`; None once it has expired
        (even if nobody took it: the holder has already stopped acting, it acquires anew)."""
        lease = self.current(resource, now)
        if lease is None or lease.holder != holder or lease.token != token:
            return None
        lease = replace(lease, expires_at=now + ttl)
        self._leases[resource] = lease
        return lease

    def release(self, resource: str, holder: str, token: int, now: float) -> bool:
        lease = self.current(resource, now)
        if lease is None or lease.holder != holder or lease.token != token:
            return False
        del self._leases[resource]
        return True

    def accepts(self, resource: str, token: int, now: float) -> bool:
        """A fenced write: accepted only under the current, unexpired lease's token."""
        lease = self.current(resource, now)
        return lease is not None and lease.token == token

    def last_token(self, resource: str) -> int:
        return self._tokens.get(resource, 0)


@dataclass(frozen=True, slots=True)
class HeldLease:
    """The holder's view of its lease, on the holder's own clock. `since` is when the holder
    sent the request that granted or last renewed it (before the store's clock started)."""

    resource: str
    token: int
    since: float
    times: LeaseTimes

    @property
    def acts_until(self) -> float:
        """The holder stops acting for the resource at this time (its clock)."""
        return self.since + self.times.ttl - self.times.margin

    def valid(self, now: float) -> bool:
        return now < self.acts_until

    def renew_due(self, now: float) -> bool:
        return now >= self.since + self.times.renew_every

    def renewed(self, sent_at: float) -> HeldLease:
        """After a successful renewal whose request was sent at `sent_at`."""
        return replace(self, since=max(self.since, sent_at))
