"""A call's review time line, pure: from the call's kept events (in stream order), its routing
decisions and its recording segments, one time line a supervisor reads beside the recording
(docs/quality_review.md).

- **entries**: every fact on one axis (seconds since the call arrived), each in a lane (call,
  ivr, routing, procedure, recording, transfer, hold, departure) and, when the recording holds
  that moment, where in which recording file it is (the page seeks there);
- **stretches**: what lasts (recording segments, their pauses, holds, queue waits, procedure
  runs), with start and end;
- **runs**: every procedure run with its prompts and waits (offsets from the run's start, from
  the service's monotonic clock);
- **departures** from the script: a direct hang-up the system blocked (the procedure ran
  instead), a procedure skipped (cancelled before its first prompt was said) or cut short, a
  forbidden phrase refused, and the engine's other departures.

No I/O and no clock: the caller hands everything in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

LANES = ("call", "ivr", "routing", "procedure", "recording", "transfer", "hold", "departure")
# What the engine's departures (IvrNoted kind "departure", detail.what) are, for the reviewer.
BLOCKED_HANGUPS = frozenset({"agent_hangup_runs_procedure", "agent_hangup_during_goodbye"})
CUT_SHORT_REASONS = frozenset({"cancelled_by_agent", "flow_switched", "superseded"})
FORBIDDEN = "forbidden_phrase_blocked"


@dataclass(frozen=True, slots=True)
class Fact:
    """One kept event as the time line needs it (cti.features.events.store.StoredEvent)."""

    seq: int
    at: datetime
    type: str
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Segment:
    """One recording segment (cti.features.recordings): its file runs from `started_at` to
    `ended_at`, less its pauses (nothing is written while paused)."""

    id: int
    segment: int
    status: str  # recording | done | failed | deleted
    started_at: datetime
    ended_at: datetime | None
    agent_id: str | None = None
    reason: str | None = None
    pauses: tuple[tuple[datetime, datetime | None], ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """One routing decision (cti.features.routing.storage)."""

    at: datetime
    outcome: str
    queue: str
    agent_id: str | None
    reason: str
    trigger: str = ""


@dataclass(frozen=True, slots=True)
class MediaPos:
    recording_id: int
    at_s: float  # seconds into that recording's file
    paused: bool = False  # the moment fell in a pause: at_s is where the pause is in the file


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    at: datetime
    offset_s: float
    lane: str
    kind: str
    text: str
    detail: dict[str, Any] = field(default_factory=dict)
    media: MediaPos | None = None


@dataclass(frozen=True, slots=True)
class Stretch:
    lane: str
    kind: str
    start_s: float
    end_s: float | None  # None: still going (or never closed)
    label: str
    recording_id: int | None = None


@dataclass(frozen=True, slots=True)
class Step:
    at: datetime
    offset_ms: int
    kind: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Run:
    run_id: str
    procedure: str
    started_by: str
    agent_id: str | None
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Departure:
    at: datetime
    offset_s: float
    kind: str  # direct_hangup_blocked | procedure_skipped | procedure_cut_short |
    #            forbidden_phrase_blocked | the engine's own `what`
    what: str
    run_id: str | None
    agent_id: str | None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Review:
    call_id: str
    started_at: datetime | None
    ended_at: datetime | None
    duration_s: float | None
    agents: tuple[str, ...]
    queues: tuple[str, ...]
    entries: tuple[Entry, ...]
    stretches: tuple[Stretch, ...]
    runs: tuple[Run, ...]
    departures: tuple[Departure, ...]


def media_position(segments: Sequence[Segment], at: datetime) -> MediaPos | None:
    """Where `at` is in the call's recording: the segment whose span holds it (done or still
    recording), and the seconds into its file (the span less the pauses before `at`); None when
    nothing playable was recording then."""
    for seg in segments:
        if seg.status not in ("done", "recording") or at < seg.started_at:
            continue
        if seg.ended_at is not None and at > seg.ended_at:
            continue
        paused_s, inside = 0.0, False
        for start, end in seg.pauses:
            if start >= at:
                break
            stop = end if end is not None and end <= at else at
            if end is None or end > at:
                inside = True
            paused_s += (stop - start).total_seconds()
        pos = max(0.0, (at - seg.started_at).total_seconds() - paused_s)
        return MediaPos(seg.id, round(pos, 3), inside)
    return None


def _s(value: Any) -> str:
    return "" if value is None else str(value)


def _describe(f: Fact) -> tuple[str, str, str] | None:
    """(lane, kind, text) of a kept event, None for one the time line leaves out."""
    p = f.payload
    t = f.type
    simple: dict[str, tuple[str, str, str]] = {
        "CallArrived": ("call", "arrived", f"call from {_s(p.get('caller_number'))} to "
                                           f"{_s(p.get('dialled_number'))}"),
        "CallAnswered": ("call", "answered", "answered"),
        "CustomerIdentified": ("call", "identified",
                               "caller identified" if p.get("customer") else "caller unknown"),
        "MenuKeyPressed": ("ivr", "menu_key", f"menu key {_s(p.get('digit'))}"),
        "CallRouted": ("ivr", "routed", f"routed to queue {_s(p.get('queue'))} "
                                         f"({_s(p.get('lang'))})"),
        "CallQueued": ("routing", "queued", f"queued in {_s(p.get('queue'))} at position "
                                             f"{_s(p.get('position'))}"),
        "CallOffered": ("routing", "offered", f"offered to agent {_s(p.get('agent_id'))}"),
        "OfferWithdrawn": ("routing", "offer_withdrawn",
                           f"offer to {_s(p.get('agent_id'))} withdrawn: {_s(p.get('reason'))}"),
        "CallConnected": ("routing", "connected",
                          f"connected to agent {_s(p.get('agent_id'))} after "
                          f"{float(p.get('waited_s') or 0):.1f} s"),
        "CallLeftQueue": ("routing", "left_queue", f"left the queue: {_s(p.get('outcome'))}"),
        "FallbackReached": ("routing", "fallback", f"fallback {_s(p.get('action'))}"),
        "CallHeld": ("hold", "held", "on hold"),
        "CallResumed": ("hold", "resumed", "off hold"),
        "CallMuted": ("hold", "muted" if p.get("on") else "unmuted",
                      "muted" if p.get("on") else "unmuted"),
        "TransferStarted": ("transfer", "transfer_started",
                            f"{_s(p.get('kind'))} transfer to {_s(p.get('target_type'))} "
                            f"{_s(p.get('target'))}"),
        "CallTransferred": ("transfer", "transferred",
                            f"transferred to {_s(p.get('target_type'))} {_s(p.get('target'))}"),
        "TransferCancelled": ("transfer", "transfer_cancelled",
                              f"transfer cancelled {_s(p.get('reason'))}".strip()),
        "RecordingStarted": ("recording", "recording_started",
                             f"{_s(p.get('purpose'))} recording started"),
        "RecordingStopped": ("recording", "recording_failed" if p.get("failed")
                             else "recording_stopped",
                             f"{_s(p.get('purpose'))} recording "
                             + (f"failed: {_s(p.get('reason'))}" if p.get("failed")
                                else "stopped")),
        "RecordingPaused": ("recording", "recording_paused",
                            f"recording paused by {_s(p.get('by'))}"),
        "RecordingResumed": ("recording", "recording_resumed",
                             f"recording resumed by {_s(p.get('by'))}"),
        "CallEnded": ("call", "ended", f"ended by {_s(p.get('ended_by'))}"
                                       + (f" ({p['cause_text']})" if p.get("cause_text") else "")),
        "ProcedureStarted": ("procedure", "procedure_started",
                             f"procedure {_s(p.get('procedure'))} started by "
                             f"{_s((p.get('detail') or {}).get('started_by', 'agent'))}"),
        "ProcedureEnded": ("procedure", "procedure_ended",
                           f"procedure {_s(p.get('procedure'))} ended: "
                           f"{_s((p.get('detail') or {}).get('reason'))}"),
    }
    if t in simple:
        return simple[t]
    if t == "ProcedureStepped":
        d = p.get("detail") or {}
        kind = _s(p.get("kind"))
        what = d.get("phrase") or (f"{d['seconds']} s" if "seconds" in d else "")
        return "procedure", kind, f"{_s(p.get('procedure'))}: {kind} {what}".strip()
    if t == "IvrNoted":
        d = p.get("detail") or {}
        kind = _s(p.get("kind"))
        if kind == "routed":  # the IVR's own note of what CallRouted says
            return None
        if kind == "departure":
            return "departure", _s(d.get("what")), f"departure: {_s(d.get('what'))}"
        if kind == "ivr_node":
            text = f"node {_s(d.get('node'))}"
            if d.get("phrase"):
                text += f" says {d['phrase']}"
            return "ivr", "node", text
        return "ivr", kind, kind.replace("_", " ")
    return None


def _payload_detail(f: Fact) -> dict[str, Any]:
    d = {k: v for k, v in f.payload.items() if k not in ("call_id", "mono")}
    inner = d.pop("detail", None)
    if isinstance(inner, Mapping):
        d.update(inner)
    return d


class _Runs:
    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.prompted: set[str] = set()  # runs that finished saying at least one prompt

    def add(self, f: Fact) -> None:
        p = f.payload
        run_id = _s(p.get("run_id"))
        if not run_id:
            return
        d = dict(p.get("detail") or {})
        mono = float(p.get("mono") or 0.0)
        if f.type == "ProcedureStarted":
            self.runs[run_id] = {
                "run_id": run_id, "procedure": _s(p.get("procedure")),
                "started_by": _s(d.get("started_by") or "agent"),
                "agent_id": d.get("agent_id"), "started_at": f.at, "mono": mono,
                "ended_at": None, "end_reason": None, "steps": [],
            }
            return
        run = self.runs.get(run_id)
        if run is None:  # the start is not in the log (e.g. before it was kept): skip
            return
        if f.type == "ProcedureEnded":
            run["ended_at"], run["end_reason"] = f.at, _s(d.get("reason")) or None
        elif f.type == "ProcedureStepped":
            kind = _s(p.get("kind"))
            if kind == "prompt_finished":
                self.prompted.add(run_id)
            run["steps"].append(Step(f.at, round((mono - run["mono"]) * 1000), kind, d))

    def result(self) -> tuple[Run, ...]:
        return tuple(
            Run(r["run_id"], r["procedure"], r["started_by"], r["agent_id"], r["started_at"],
                r["ended_at"], r["end_reason"], tuple(r["steps"]))
            for r in self.runs.values()
        )


def build_review(
    call_id: str, facts: Iterable[Fact], segments: Sequence[Segment] = (),
    decisions: Sequence[Decision] = (),
) -> Review:
    """The call's review: entries in time order (stream order within the same instant),
    stretches, procedure runs and departures."""
    ordered = sorted(facts, key=lambda f: f.seq)
    times = [f.at for f in ordered] + [s.started_at for s in segments] + [d.at for d in decisions]
    arrived = next((f.at for f in ordered if f.type == "CallArrived"), None)
    t0 = arrived or (min(times) if times else None)
    ended = next((f.at for f in reversed(ordered) if f.type == "CallEnded"), None)

    def off(at: datetime) -> float:
        return round((at - t0).total_seconds(), 3) if t0 is not None else 0.0

    entries: list[Entry] = []
    stretches: list[Stretch] = []
    departures: list[Departure] = []
    runs = _Runs()
    agents: list[str] = []
    queues: list[str] = []
    open_hold: float | None = None
    open_wait: tuple[float, str] | None = None

    def depart(f: Fact, kind: str, what: str, detail: dict[str, Any]) -> None:
        p = f.payload
        departures.append(Departure(
            f.at, off(f.at), kind, what, p.get("run_id") or None,
            detail.get("agent_id") or p.get("agent_id"), detail,
        ))

    for f in ordered:
        described = _describe(f)
        p = f.payload
        for key, seen in (("agent_id", agents), ("queue", queues)):
            value = p.get(key)
            if isinstance(value, str) and value and value not in seen:
                seen.append(value)
        if f.type in ("ProcedureStarted", "ProcedureStepped", "ProcedureEnded"):
            runs.add(f)
        if described is None:
            continue
        lane, kind, text = described
        detail = _payload_detail(f)
        entries.append(Entry(f.seq, f.at, off(f.at), lane, kind, text, detail,
                             media_position(segments, f.at)))
        # stretches
        if f.type == "CallHeld":
            open_hold = off(f.at)
        elif f.type == "CallResumed" and open_hold is not None:
            stretches.append(Stretch("hold", "hold", open_hold, off(f.at), "on hold"))
            open_hold = None
        elif f.type == "CallQueued":
            open_wait = (off(f.at), _s(p.get("queue")))
        elif f.type in ("CallConnected", "CallLeftQueue") and open_wait is not None:
            stretches.append(Stretch("routing", "queue_wait", open_wait[0], off(f.at),
                                     f"waiting in {open_wait[1]}"))
            open_wait = None
        # departures
        if f.type == "IvrNoted" and p.get("kind") == "departure":
            what = _s(detail.get("what"))
            if what in BLOCKED_HANGUPS:
                depart(f, "direct_hangup_blocked", what, detail)
            elif what == "procedure_cancelled_by_agent":
                run_id = _s(p.get("run_id"))
                kind_ = ("procedure_cut_short" if run_id in runs.prompted
                         else "procedure_skipped")
                depart(f, kind_, what, detail)
            else:
                depart(f, what or "departure", what, detail)
        elif f.type == "ProcedureStarted" and detail.get("via_hangup"):
            depart(f, "direct_hangup_blocked", "agent_hangup_ran_procedure", detail)
        elif f.type == "ProcedureEnded" and detail.get("reason") in CUT_SHORT_REASONS - {
                "cancelled_by_agent"}:
            run_id = _s(p.get("run_id"))
            kind_ = "procedure_cut_short" if run_id in runs.prompted else "procedure_skipped"
            depart(f, kind_, _s(detail.get("reason")), detail)

    end_s = off(ended) if ended is not None else None
    if open_hold is not None:
        stretches.append(Stretch("hold", "hold", open_hold, end_s, "on hold"))
    if open_wait is not None:
        stretches.append(Stretch("routing", "queue_wait", open_wait[0], end_s,
                                 f"waiting in {open_wait[1]}"))
    for d in decisions:
        entries.append(Entry(0, d.at, off(d.at), "routing", "decision",
                             f"decision {d.outcome} in {d.queue}"
                             + (f": agent {d.agent_id}" if d.agent_id else "")
                             + (f" ({d.reason})" if d.reason else ""),
                             {"outcome": d.outcome, "queue": d.queue, "agent_id": d.agent_id,
                              "reason": d.reason, "trigger": d.trigger},
                             media_position(segments, d.at)))
    for seg in segments:
        seg_end = off(seg.ended_at) if seg.ended_at is not None else end_s
        label = f"recording {seg.segment} ({seg.status})"
        if seg.reason:
            label += f": {seg.reason}"
        stretches.append(Stretch("recording", "segment", off(seg.started_at), seg_end, label,
                                 seg.id))
        for start, stop in seg.pauses:
            stretches.append(Stretch(
                "recording", "pause", off(start),
                off(stop) if stop is not None else seg_end, "recording paused", seg.id))
    for r in runs.result():
        stretches.append(Stretch(
            "procedure", "run", off(r.started_at),
            off(r.ended_at) if r.ended_at is not None else end_s,
            f"{r.procedure} ({r.end_reason or 'running'})"))
    # Decisions have no stream number: at equal times they go after the event they explain.
    entries.sort(key=lambda e: (e.at, e.seq == 0, e.seq))
    stretches.sort(key=lambda s: (s.start_s, LANES.index(s.lane)))
    duration = (round((ended - t0).total_seconds(), 3)
                if ended is not None and t0 is not None else None)
    return Review(call_id, t0, ended, duration, tuple(agents), tuple(queues), tuple(entries),
                  tuple(stretches), runs.result(), tuple(departures))
