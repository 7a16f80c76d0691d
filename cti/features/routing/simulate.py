"""Dry run: replay a call trace through the rules with the real ACD core and a simulated clock.

Trace CSV columns: `arrival_s` (seconds from start), `handling_s` (talk time), `patience_s`
(how long the caller waits before hanging up; empty = forever); every other column is a call
attribute (menu, language, tier, dialled, caller, crm.<field>, ...). All configured agents log
in at the start and answer `answer_delay_s` after their phone starts ringing.
"""

from __future__ import annotations

import csv
import heapq
import io
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cti.domain.routing.acd import (
    AcdCore,
    Command,
    Connect,
    Emit,
    RingAgent,
    SendToFallback,
    StartWrapUpTimer,
)
from cti.domain.routing.events import AgentStateChanged
from cti.domain.routing.model import RoutingRules
from cti.platform.errors import ConfigError
from cti.platform.textfile import read_text_file

DEFAULT_START = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)  # a Monday, 10:00 in Asia/Shanghai


@dataclass(frozen=True, slots=True)
class TraceCall:
    call_id: str
    arrival_s: float
    handling_s: float
    patience_s: float | None
    attributes: dict[str, Any]


def read_trace(path: Path) -> list[TraceCall]:
    # Read whole and checked first (UTF-8, no NUL): a decode error mid-iteration would escape
    # as a traceback. No size cap: a long trace is a legitimate input.
    reader = csv.DictReader(io.StringIO(read_text_file(path, max_bytes=None), newline=""))
    calls: list[TraceCall] = []
    try:
        missing = {"arrival_s", "handling_s"} - set(reader.fieldnames or ())
        if missing:
            raise ConfigError(f"{path}:1:1: missing column(s): {', '.join(sorted(missing))}")
        for row in reader:
            n = reader.line_num
            try:
                arrival = float(row.pop("arrival_s"))
                handling = float(row.pop("handling_s"))
                patience_txt = (row.pop("patience_s", "") or "").strip()
                patience = float(patience_txt) if patience_txt else None
            except (TypeError, ValueError) as exc:  # TypeError: a short row (value None)
                raise ConfigError(f"{path}:{n}:1: {exc}") from None
            times = [arrival, handling] + ([] if patience is None else [patience])
            if not all(math.isfinite(t) for t in times):  # inf/nan would stall the clock
                raise ConfigError(f"{path}:{n}:1: times must be finite numbers")
            if any(t < 0 for t in times):
                raise ConfigError(f"{path}:{n}:1: times must not be negative")
            call_id = row.pop("call_id", "") or f"call-{len(calls) + 1}"
            attrs = {k: v for k, v in row.items() if k and v not in (None, "")}
            calls.append(TraceCall(call_id, arrival, handling, patience, attrs))
    except csv.Error as exc:  # e.g. a field over the csv module's size limit
        # the inner reader's count: DictReader's own is updated only after a row parses
        raise ConfigError(f"{path}:{reader.reader.line_num}:1: {exc}") from None
    calls.sort(key=lambda c: c.arrival_s)
    return calls


@dataclass
class CallOutcome:
    arrival: float
    queue: str = ""
    answered_at: float | None = None
    ended: str = ""  # answered | abandoned | fallback


@dataclass
class SimResult:
    calls: dict[str, CallOutcome]
    queues_sl: dict[str, tuple[float, float]]  # queue -> (percent target, seconds)
    busy_s: dict[str, float]
    duration_s: float
    decisions: int = 0
    per_queue: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def answered(self) -> list[CallOutcome]:
        return [c for c in self.calls.values() if c.answered_at is not None]

    def service_level(self, queue: str | None = None) -> float:
        calls = [c for c in self.calls.values() if queue is None or c.queue == queue]
        if not calls:
            return 1.0
        ok = sum(
            1
            for c in calls
            if c.answered_at is not None
            and c.answered_at - c.arrival <= self.queues_sl.get(c.queue, (80, 20))[1]
        )
        return ok / len(calls)

    def asa(self) -> float:
        a = self.answered
        return (
            sum(c.answered_at - c.arrival for c in a if c.answered_at is not None) / len(a)
            if a
            else 0.0
        )

    def abandonment(self) -> float:
        return sum(1 for c in self.calls.values() if c.ended == "abandoned") / max(
            len(self.calls), 1
        )

    def occupancy(self) -> dict[str, float]:
        return {a: b / self.duration_s if self.duration_s else 0.0 for a, b in self.busy_s.items()}

    def report(self) -> str:
        lines = [
            f"calls {len(self.calls)}: answered {len(self.answered)}, abandoned "
            f"{sum(1 for c in self.calls.values() if c.ended == 'abandoned')}, fallback "
            f"{sum(1 for c in self.calls.values() if c.ended == 'fallback')}",
            f"service level {self.service_level():.1%} (each queue's own threshold)",
            f"ASA {self.asa():.1f} s",
            f"abandonment {self.abandonment():.1%}",
            "per queue:",
        ]
        for q, (pct, secs) in self.queues_sl.items():
            n = sum(1 for c in self.calls.values() if c.queue == q)
            if n:
                lines.append(
                    f"  {q}: {n} calls, SL {self.service_level(q):.1%} in {secs:g}s "
                    f"(target {pct:g}%)"
                )
        lines.append("per-agent occupancy (reserved + talking + wrap-up):")
        for a, occ in sorted(self.occupancy().items()):
            lines.append(f"  {a}: {occ:.1%}")
        return "\n".join(lines)


_BUSY = {"reserved", "on_call", "wrap_up"}


def simulate(
    rules: RoutingRules,
    trace: Iterable[TraceCall],
    *,
    answer_delay_s: float = 2.0,
    no_answer_rate: float = 0.0,
    tick_s: float = 1.0,
    start: datetime = DEFAULT_START,
    seed: int = 1,
) -> SimResult:
    rng = random.Random(seed)
    core = AcdCore(rules)
    calls = list(trace)
    by_id = {c.call_id: c for c in calls}
    out: dict[str, CallOutcome] = {c.call_id: CallOutcome(c.arrival_s) for c in calls}
    heap: list[tuple[float, int, str, tuple[Any, ...]]] = []
    seq = 0

    def push(t: float, kind: str, *payload: Any) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(heap, (t, seq, kind, payload))

    busy_since: dict[str, float] = {}
    busy_s: dict[str, float] = dict.fromkeys(rules.agents, 0.0)
    ringing: dict[str, str] = {}  # call_id -> offer_id
    n_decisions = 0
    now = 0.0

    def run(cmds: list[Command]) -> None:
        nonlocal n_decisions
        for cmd in cmds:
            if isinstance(cmd, RingAgent):
                ringing[cmd.call_id] = cmd.offer_id
                out[cmd.call_id].queue = _queue_of(core, cmd.call_id) or out[cmd.call_id].queue
                if rng.random() < no_answer_rate:
                    push(now + cmd.timeout_s, "no_answer", cmd.offer_id)
                else:
                    push(now + min(answer_delay_s, cmd.timeout_s), "answer", cmd.offer_id)
            elif isinstance(cmd, Connect):
                ringing.pop(cmd.call_id, None)
                out[cmd.call_id].answered_at = now
                out[cmd.call_id].ended = "answered"
                push(now + by_id[cmd.call_id].handling_s, "end", cmd.call_id)
            elif isinstance(cmd, StartWrapUpTimer):
                push(now + cmd.seconds, "wrap", cmd.agent_id, cmd.gen)
            elif isinstance(cmd, SendToFallback):
                out[cmd.call_id].ended = "fallback"
            elif isinstance(cmd, Emit) and isinstance(cmd.event, AgentStateChanged):
                ev = cmd.event
                if ev.new in _BUSY and ev.old not in _BUSY:
                    busy_since[ev.agent_id] = now
                elif ev.old in _BUSY and ev.new not in _BUSY and ev.agent_id in busy_since:
                    busy_s[ev.agent_id] += now - busy_since.pop(ev.agent_id)
            else:
                n_decisions += 1

    def at(t: float) -> datetime:
        return start + timedelta(seconds=t)

    for agent_id in rules.agents:
        run(core.agent_login(agent_id, 0.0, start))
    for c in calls:
        push(c.arrival_s, "arrive", c.call_id)
        if c.patience_s is not None:
            push(c.arrival_s + c.patience_s, "abandon", c.call_id)
    next_tick = tick_s
    while heap:
        t, _, kind, payload = heapq.heappop(heap)
        # Relaxation and max wait are evaluated on ticks, as in the live service.
        while core.router.waiting_count() and next_tick <= t:
            now = next_tick
            run(core.tick(now, at(now)))
            next_tick += tick_s
        now = t
        next_tick = max(next_tick, now)
        if kind == "arrive":
            cid = payload[0]
            cmds = core.enqueue(cid, by_id[cid].attributes, now, at(now))
            if not out[cid].queue:
                out[cid].queue = _queue_of(core, cid) or rules.default_queue
            run(cmds)
        elif kind == "abandon":
            cid = payload[0]
            if out[cid].ended == "" and cid in by_id:
                out[cid].ended = "abandoned"
                ringing.pop(cid, None)
                run(core.caller_hangup(cid, now, at(now)))
        elif kind == "answer":
            offer = core.router.offer(payload[0])
            if offer is not None:
                run(core.offer_answered(offer.offer_id, now, at(now)))
        elif kind == "no_answer":
            run(core.offer_failed(payload[0], now, at(now)))
        elif kind == "end":
            run(core.call_ended(payload[0], now, at(now)))
        elif kind == "wrap":
            run(core.wrap_up_elapsed(payload[0], payload[1], now, at(now)))
    for agent_id, since in busy_since.items():
        busy_s[agent_id] += now - since
    sl = {q.name: (q.service_level_percent, q.service_level_s) for q in rules.queues.values()}
    return SimResult(out, sl, busy_s, now, n_decisions)


def _queue_of(core: AcdCore, call_id: str) -> str | None:
    return core.router.queue_of(call_id)
