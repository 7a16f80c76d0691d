"""Erlang C: probability of waiting, service level and estimated wait for a queue (pure).

Used for the caller's estimated wait announcement and for staffing what-ifs. The traffic
intensity is A = arrival rate × average handling time (Erlangs); with N agents and A < N:
    P(wait) = Erlang C(N, A)
    SL(t)   = 1 - P(wait) · exp(-(N - A) · t / AHT)
    ASA     = P(wait) · AHT / (N - A)
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


def erlang_c(agents: int, traffic_erlangs: float) -> float:
    """Probability that an arriving call waits (1.0 when the queue is unstable)."""
    if agents <= 0 or traffic_erlangs >= agents:
        return 1.0
    if traffic_erlangs <= 0:
        return 0.0
    # Erlang B by the stable recurrence, then C from B.
    b = 1.0
    for k in range(1, agents + 1):
        b = traffic_erlangs * b / (k + traffic_erlangs * b)
    rho = traffic_erlangs / agents
    return b / (1 - rho + rho * b)


def service_level(agents: int, traffic_erlangs: float, aht_s: float, target_s: float) -> float:
    if traffic_erlangs >= agents:
        return 0.0
    pw = erlang_c(agents, traffic_erlangs)
    return 1.0 - pw * math.exp(-(agents - traffic_erlangs) * target_s / aht_s)


def average_speed_of_answer(agents: int, traffic_erlangs: float, aht_s: float) -> float:
    if traffic_erlangs >= agents:
        return math.inf
    return erlang_c(agents, traffic_erlangs) * aht_s / (agents - traffic_erlangs)


def agents_for_service_level(
    traffic_erlangs: float, aht_s: float, target_s: float, percent: float, *, limit: int = 10000
) -> int:
    """Fewest agents reaching `percent`% answered within `target_s`."""
    n = max(1, math.floor(traffic_erlangs) + 1)
    while n < limit and service_level(n, traffic_erlangs, aht_s, target_s) * 100 < percent:
        n += 1
    return n


def estimated_wait(
    position: int, agents_serving: int, aht_s: float, running_avg_wait_s: float | None = None
) -> float:
    """Estimated wait for a caller at `position` (1 = next): the position times the mean time
    between agents freeing up (AHT / agents), blended half-and-half with the queue's running
    average wait when there is one. With no agent serving, the running average (or inf)."""
    if agents_serving <= 0:
        return running_avg_wait_s if running_avg_wait_s is not None else math.inf
    by_position = position * aht_s / agents_serving
    if running_avg_wait_s is None:
        return by_position
    return 0.5 * by_position + 0.5 * running_avg_wait_s


class RunningAverage:
    """Mean of the last `size` observations (e.g. answered calls' waits)."""

    def __init__(self, size: int = 50) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._sum = 0.0

    def add(self, value: float) -> None:
        if len(self._values) == self._values.maxlen:
            self._sum -= self._values[0]
        self._values.append(value)
        self._sum += value

    @property
    def value(self) -> float | None:
        return self._sum / len(self._values) if self._values else None


@dataclass(frozen=True, slots=True)
class IntervalStaffing:
    """Erlang C for one interval: the agents needed to answer `goal` of the calls within
    `target_s`, given the calls offered in the interval and their handling time."""

    offered: int
    interval_s: float
    aht_s: float
    traffic_erlangs: float  # arrival rate × AHT
    agents_needed: int
    predicted_sl: float  # with `agents_needed` agents
    predicted_asa_s: float


def staffing_for_interval(
    offered: int, interval_s: float, aht_s: float, target_s: float, goal: float,
) -> IntervalStaffing:
    """`goal` a share (0.8 = 80 %). No calls need no agents; a call needs at least one."""
    if interval_s <= 0 or aht_s <= 0:
        raise ValueError("interval and handling time must be positive")
    traffic = offered * aht_s / interval_s
    if offered == 0:
        return IntervalStaffing(0, interval_s, aht_s, 0.0, 0, 1.0, 0.0)
    # the goal in percent, nudged down so 0.8 × 100 = 80.00000000000001 does not ask for more
    needed = agents_for_service_level(traffic, aht_s, target_s, goal * 100 - 1e-9)
    return IntervalStaffing(
        offered, interval_s, aht_s, traffic, needed,
        service_level(needed, traffic, aht_s, target_s),
        average_speed_of_answer(needed, traffic, aht_s),
    )
