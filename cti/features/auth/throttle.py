"""Login throttling (pure): failed attempts counted per user name and per client address over a
sliding window; past a limit, further attempts are refused until the oldest failure leaves the
window. Time is passed in (monotonic seconds), so the logic needs no clock and no sleeps.

An attempt is counted when it starts, before the password is checked: otherwise a burst of
concurrent requests would all pass the check and all run argon2. A success takes its own
attempt back and clears the user's failures; the address keeps its other failures (else one
valid account would let an address reset its count and guess at the others).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass

# Keys tracked per kind. A spray of made-up user names must not grow memory without bound;
# past this, the least recently failed keys are forgotten (they are the least likely blocked).
MAX_KEYS = 10_000


@dataclass(frozen=True, slots=True)
class ThrottleLimits:
    window_s: float = 300.0
    per_user: int = 5
    per_address: int = 20


@dataclass(frozen=True, slots=True)
class Attempt:
    """A started login attempt: hand it back to `succeeded` when the password was right."""

    user: str
    address: str | None
    at: float


class LoginThrottled(Exception):
    def __init__(self, retry_after_s: int, key: str) -> None:
        super().__init__(f"too many failed logins for {key}; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s
        self.key = key


def user_key(username: str) -> str:
    # Case and surrounding blanks must not give an attacker fresh counters for one account.
    return username.strip().casefold()


class _Failures:
    """Failure times per key, oldest key first (by last failure)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self._limit = limit
        self._window = window_s
        self._times: OrderedDict[str, deque[float]] = OrderedDict()

    def _live(self, key: str, now: float) -> deque[float] | None:
        times = self._times.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._times[key]
            return None
        return times

    def retry_after(self, key: str, now: float) -> float | None:
        """Seconds until `key` may try again; None when it may now."""
        times = self._live(key, now)
        if times is None or len(times) < self._limit:
            return None
        # Blocked until enough failures have left the window to be under the limit again.
        return times[len(times) - self._limit] + self._window - now

    def add(self, key: str, now: float) -> None:
        times = self._times.get(key)
        if times is None:
            times = self._times[key] = deque()
            while len(self._times) > MAX_KEYS:
                self._times.popitem(last=False)
        else:
            self._times.move_to_end(key)
        times.append(now)

    def take_back(self, key: str, at: float) -> None:
        times = self._times.get(key)
        if times is not None:
            if at in times:  # else already out of the window: nothing to take back
                times.remove(at)
            if not times:
                del self._times[key]

    def clear(self, key: str) -> None:
        self._times.pop(key, None)

    def __len__(self) -> int:
        return len(self._times)


class LoginThrottle:
    def __init__(self, limits: ThrottleLimits | None = None) -> None:
        self.limits = limits or ThrottleLimits()
        self._users = _Failures(self.limits.per_user, self.limits.window_s)
        self._addresses = _Failures(self.limits.per_address, self.limits.window_s)

    def begin(self, username: str, address: str | None, now: float) -> Attempt:
        """Count an attempt, or raise LoginThrottled (nothing counted) when over a limit."""
        user = user_key(username)
        waits = [(self._users.retry_after(user, now), f"user {user!r}")]
        if address is not None:
            waits.append((self._addresses.retry_after(address, now), f"address {address}"))
        blocked = [(w, key) for w, key in waits if w is not None]
        if blocked:
            wait, key = max(blocked)
            raise LoginThrottled(max(1, math.ceil(wait)), key)
        self._users.add(user, now)
        if address is not None:
            self._addresses.add(address, now)
        return Attempt(user, address, now)

    def succeeded(self, attempt: Attempt) -> None:
        self._users.clear(attempt.user)
        if attempt.address is not None:
            self._addresses.take_back(attempt.address, attempt.at)

    def tracked(self) -> tuple[int, int]:
        """(user names, addresses) with failures on record; for tests and metrics."""
        return len(self._users), len(self._addresses)
