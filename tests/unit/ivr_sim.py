"""A simulated call for unit tests of the pure IVR engine: a fake clock and a fake line.

Every prompt takes `prompt_seconds` to play; timers fire when simulated time reaches them.
The timeline records (time, command) so tests can assert the exact waits. A procedure's
presence check (ConfirmCallerAbsent) is answered at once, as the runner does, from what the
caller was fed in the last seconds (`CallerAudioMemory`); `answers_presence=False` plays a
driver that never answers.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cti.domain.ivr import commands as c
from cti.domain.ivr import events as e
from cti.domain.ivr.config import DetectionSettings, ProcedureSettings
from cti.domain.ivr.engine import CallContext, CallState, IvrMachine, Phase
from cti.domain.ivr.loader import FlowRefs, load_flows
from cti.domain.ivr.presence import CallerAudioMemory
from cti.domain.ivr.procedures import build_procedures
from cti.features.phrases.library import load_phrase_library

REPO = Path(__file__).resolve().parents[2]
OPEN = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)  # a Monday, 10:00 in Shanghai
CLOSED = datetime(2026, 1, 4, 2, 0, tzinfo=UTC)  # a Sunday

_LIBRARY = load_phrase_library(REPO / "scripts_lib")
_FLOWS = load_flows(
    REPO / "ivr_flows", FlowRefs(_LIBRARY.phrases, _LIBRARY.languages, None, _LIBRARY.forbidden)
)


def library():  # type: ignore[no-untyped-def]
    return _LIBRARY


def machine(
    procedures: ProcedureSettings | None = None, detection: DetectionSettings | None = None
) -> IvrMachine:
    return IvrMachine(_FLOWS, build_procedures(procedures or ProcedureSettings()), detection)


SLOTS = {
    "zh": {"company": "示例科技", "agent_id": "007", "surname": "王", "title": "先生"},
    "en": {"company": "Example Tech", "agent_id": "007", "surname": "Wang", "title": "Mr."},
}


@dataclass
class SimCall:
    m: IvrMachine
    state: CallState
    prompt_seconds: float = 2.0
    now: float = 0.0
    timeline: list[tuple[float, c.Command]] = field(default_factory=list)
    fed: list[tuple[float, e.Event]] = field(default_factory=list)
    _queue: list[tuple[float, int, e.Event]] = field(default_factory=list)
    _seq: int = 0
    _timers: dict[int, int] = field(default_factory=dict)  # gen -> seq of its queued event
    heard: CallerAudioMemory = field(default_factory=CallerAudioMemory)
    answers_presence: bool = True
    answers: list[e.CallerPresence] = field(default_factory=list)

    @classmethod
    def start(
        cls, flow: str = "agent_greeting", *, vip: bool = False, at: datetime = OPEN,
        m: IvrMachine | None = None, prompt_seconds: float = 2.0, agent: bool = False,
    ) -> SimCall:
        """`agent`: the caller is bridged with an agent (as when the agent flow runs)."""
        m = m or machine()
        state = m.new_call(CallContext("call1", "zh", SLOTS, vip, "13800000000"), flow)
        sim = cls(m, state, prompt_seconds)
        sim.feed(e.Answered(at))
        if agent:
            sim.feed(e.AgentLink(True))
        return sim

    # -- driving ------------------------------------------------------------------------------

    def feed(self, event: e.Event) -> list[c.Command]:
        self.fed.append((self.now, event))
        self.heard.note(self.now, event)
        self.state, out = self.m.step(self.state, event)
        for command in out:
            self.timeline.append((self.now, command))
            self._execute(command)
        for command in out:
            if isinstance(command, c.ConfirmCallerAbsent) and self.answers_presence:
                answer = self.heard.judge(self.now, command)
                self.answers.append(answer)
                out = [*out, *self.feed(answer)]
        return out

    def _schedule(self, delay: float, event: e.Event) -> int:
        self._seq += 1
        heapq.heappush(self._queue, (self.now + delay, self._seq, event))
        return self._seq

    def _execute(self, command: c.Command) -> None:
        if isinstance(command, c.Play):
            self._schedule(self.prompt_seconds, e.PromptFinished(command.playback_id))
        elif isinstance(command, c.StopPlayback):
            self._queue = [q for q in self._queue if q[2] != e.PromptFinished(command.playback_id)]
            heapq.heapify(self._queue)
        elif isinstance(command, c.StartTimer):
            self._timers[command.gen] = self._schedule(command.seconds, e.TimerFired(command.gen))
        elif isinstance(command, c.CancelTimer):
            seq = self._timers.pop(command.gen, None)
            self._queue = [q for q in self._queue if q[1] != seq]
            heapq.heapify(self._queue)

    def run_until(self, t: float) -> None:
        """Deliver every scheduled event up to simulated time t."""
        while self._queue and self._queue[0][0] <= t:
            when, _, event = heapq.heappop(self._queue)
            self.now = when
            if isinstance(event, e.TimerFired):
                self._timers.pop(event.gen, None)
            self.feed(event)
        self.now = max(self.now, t)

    def run(self, limit: float = 120.0) -> None:
        self.run_until(self.now + limit)

    # -- reading ------------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self.state.phase is Phase.ENDED

    def plays(self) -> list[tuple[float, str]]:
        return [(t, cmd.phrase_id) for t, cmd in self.timeline if isinstance(cmd, c.Play)]

    def first(self, kind: type) -> tuple[float, c.Command] | None:
        return next(((t, cmd) for t, cmd in self.timeline if isinstance(cmd, kind)), None)

    def of(self, kind: type) -> list[tuple[float, c.Command]]:
        return [(t, cmd) for t, cmd in self.timeline if isinstance(cmd, kind)]

    def audits(self, kind: str | None = None) -> list[c.Audit]:
        return [
            cmd for _, cmd in self.timeline
            if isinstance(cmd, c.Audit) and (kind is None or cmd.kind == kind)
        ]
