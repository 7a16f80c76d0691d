"""The call review's time line (cti.domain.review), built from kept events as the event log
stores them (event_record payloads): lanes and order, where each moment is in the recording
(pauses taken out), stretches, procedure runs with offsets, and the departures from the
script."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cti.domain.review import Decision, Fact, MediaPos, Segment, build_review, media_position
from cti.domain.routing.events import CallConnected, CallOffered, CallQueued
from cti.events import (
    CallAnswered,
    CallArrived,
    CallEnded,
    CallHeld,
    CallResumed,
    CallRouted,
    CallTransferred,
    IvrNoted,
    MenuKeyPressed,
    ProcedureEnded,
    ProcedureStarted,
    ProcedureStepped,
    RecordingPaused,
    RecordingResumed,
    RecordingStarted,
    RecordingStopped,
    TransferStarted,
    event_record,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CALL = "c1"


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def facts(*events: Any) -> list[Fact]:
    out = []
    for seq, e in enumerate(events, start=1):
        r = event_record(e)
        out.append(Fact(seq, r.at, r.type, r.payload))
    return out


def run_events(run: str, start: float, steps: list[tuple[float, str, dict[str, Any]]],
               end: tuple[float, str] | None, **started: Any) -> list[Any]:
    """A procedure run as the IVR publishes it; mono runs with wall time from 1000.0."""
    out: list[Any] = [ProcedureStarted(CALL, at(start), 1000 + start, run, "silent",
                                       {"started_by": "auto", **started})]
    for s, kind, detail in steps:
        out.append(ProcedureStepped(CALL, at(s), 1000 + s, run, "silent", kind, detail))
    if end is not None:
        out.append(ProcedureEnded(CALL, at(end[0]), 1000 + end[0], run, "silent",
                                  {"reason": end[1]}))
    return out


SEG = Segment(7, 1, "done", at(20), at(60), "1001",
              pauses=((at(30), at(40)),))


@pytest.mark.parametrize(("t", "expected"), [
    (10, None),                        # before the recording
    (20, MediaPos(7, 0.0)),            # its first moment
    (25, MediaPos(7, 5.0)),
    (30, MediaPos(7, 10.0)),           # the pause starts here
    (35, MediaPos(7, 10.0, True)),     # inside the pause: where the pause is in the file
    (40, MediaPos(7, 10.0)),           # resumed
    (50, MediaPos(7, 20.0)),           # 30 s since start, less 10 s paused
    (60, MediaPos(7, 30.0)),
    (61, None),                        # after it
])
def test_media_position_takes_the_pauses_out(t: float, expected: MediaPos | None) -> None:
    assert media_position([SEG], at(t)) == expected


def test_media_position_in_a_pause_never_resumed_and_in_the_second_segment() -> None:
    open_pause = Segment(1, 1, "recording", at(0), None, pauses=((at(5), None),))
    assert media_position([open_pause], at(9)) == MediaPos(1, 5.0, True)
    segs = [Segment(1, 1, "done", at(0), at(10)), Segment(2, 2, "done", at(12), at(30))]
    assert media_position(segs, at(15)) == MediaPos(2, 3.0)
    assert media_position(segs, at(11)) is None  # between segments (the transfer)


def test_failed_and_deleted_recordings_have_no_position() -> None:
    for status in ("failed", "deleted"):
        assert media_position([Segment(1, 1, status, at(0), at(10))], at(5)) is None


def test_a_whole_call_on_one_time_line() -> None:
    events = [
        CallArrived(CALL, at(0), "ch", "+861380000", "4000"),
        CallAnswered(CALL, at(0.2)),
        IvrNoted(CALL, at(0.3), 1000.3, "ivr_node", detail={"node": "menu", "type": "menu",
                                                            "phrase": "main_menu"}),
        MenuKeyPressed(CALL, at(4), "2"),
        IvrNoted(CALL, at(4.1), 1004.1, "routed", detail={"queue": "billing"}),  # said twice
        CallRouted(CALL, at(4.1), "billing", "zh"),
        CallQueued(CALL, "billing", 0, 1, at(4.2)),
        CallOffered(CALL, "1001", "billing", 1.0, {}, at(5.2)),
        CallConnected(CALL, "1001", "billing", 15.8, at(20)),
        RecordingStarted(CALL, at(20), "call-c1-1", "call", "1001", 1),
        RecordingPaused(CALL, at(30), "call-c1-1", "1001", "1001"),
        RecordingResumed(CALL, at(40), "call-c1-1", "1001", "1001"),
        CallHeld(CALL, at(45), "1001"),
        CallResumed(CALL, at(50), "1001"),
        TransferStarted(CALL, at(55), "1001", "blind", "agent", "1002"),
        CallTransferred(CALL, at(55.5), "1001", "blind", "agent", "1002"),
        RecordingStopped(CALL, at(60), "call-c1-1", 30.0, purpose="call", agent_id="1001"),
        CallEnded(CALL, at(70), 16, "Normal Clearing", "caller", "1002", "billing"),
    ]
    decisions = [Decision(at(5.2), "offered", "billing", "1001", "longest idle", "arrival")]
    review = build_review(CALL, facts(*events), [SEG], decisions)

    assert review.started_at == at(0)
    assert review.ended_at == at(70)
    assert review.duration_s == 70.0
    assert review.agents == ("1001", "1002")
    assert review.queues == ("billing",)
    lanes = [(e.offset_s, e.lane, e.kind) for e in review.entries]
    assert lanes == [
        (0.0, "call", "arrived"), (0.2, "call", "answered"), (0.3, "ivr", "node"),
        (4.0, "ivr", "menu_key"), (4.1, "ivr", "routed"), (4.2, "routing", "queued"),
        (5.2, "routing", "offered"), (5.2, "routing", "decision"),
        (20.0, "routing", "connected"), (20.0, "recording", "recording_started"),
        (30.0, "recording", "recording_paused"), (40.0, "recording", "recording_resumed"),
        (45.0, "hold", "held"), (50.0, "hold", "resumed"),
        (55.0, "transfer", "transfer_started"), (55.5, "transfer", "transferred"),
        (60.0, "recording", "recording_stopped"), (70.0, "call", "ended"),
    ]
    by_kind = {e.kind: e for e in review.entries}
    assert by_kind["node"].text == "node menu says main_menu"
    assert by_kind["menu_key"].text == "menu key 2"
    assert by_kind["decision"].text == "decision offered in billing: agent 1001 (longest idle)"
    assert by_kind["menu_key"].media is None  # before the recording
    assert by_kind["held"].media == MediaPos(7, 15.0)  # 25 s in, less the 10 s pause
    assert by_kind["ended"].media is None
    stretches = {(s.lane, s.kind): (s.start_s, s.end_s) for s in review.stretches}
    assert stretches == {
        ("routing", "queue_wait"): (4.2, 20.0), ("recording", "segment"): (20.0, 60.0),
        ("recording", "pause"): (30.0, 40.0), ("hold", "hold"): (45.0, 50.0),
    }
    assert review.departures == ()


def test_procedure_runs_keep_their_prompts_and_waits_with_offsets() -> None:
    events = [CallArrived(CALL, at(0), "ch", "1", "2"), *run_events(
        "r1", 10, [(10, "prompt_started", {"phrase": "silent_a"}),
                   (12.5, "prompt_finished", {}), (12.5, "wait_started", {"seconds": 5}),
                   (17.5, "wait_finished", {"seconds": 5})],
        (30, "hangup"))]
    review = build_review(CALL, facts(*events))
    (run,) = review.runs
    assert (run.procedure, run.started_by, run.end_reason) == ("silent", "auto", "hangup")
    assert [(s.offset_ms, s.kind) for s in run.steps] == [
        (0, "prompt_started"), (2500, "prompt_finished"), (2500, "wait_started"),
        (7500, "wait_finished")]
    texts = [e.text for e in review.entries if e.lane == "procedure"]
    assert texts[1] == "silent: prompt_started silent_a"
    assert texts[3] == "silent: wait_started 5 s"
    assert [(s.kind, s.start_s, s.end_s) for s in review.stretches] == [("run", 10.0, 30.0)]
    assert review.departures == ()


def _departures(*events: Any) -> list[tuple[float, str, str]]:
    review = build_review(CALL, facts(CallArrived(CALL, at(0), "ch", "1", "2"), *events))
    return [(d.offset_s, d.kind, d.what) for d in review.departures]


def test_a_hang_up_during_a_procedure_is_a_blocked_direct_hang_up() -> None:
    assert _departures(
        *run_events("r1", 5, [], None),
        IvrNoted(CALL, at(8), 1008, "departure", "r1", "noisy_line",
                 {"what": "agent_hangup_runs_procedure", "agent_id": "1001"}),
        IvrNoted(CALL, at(9), 1009, "departure", "r1", "noisy_line",
                 {"what": "agent_hangup_during_goodbye", "agent_id": "1001"}),
    ) == [(8.0, "direct_hangup_blocked", "agent_hangup_runs_procedure"),
          (9.0, "direct_hangup_blocked", "agent_hangup_during_goodbye")]


def test_a_hang_up_that_started_the_procedure_is_a_blocked_direct_hang_up() -> None:
    review = build_review(CALL, facts(*run_events("r1", 5, [], None, started_by="agent",
                                                  agent_id="1001", via_hangup=True)))
    (d,) = review.departures
    assert (d.kind, d.what, d.agent_id, d.run_id) == (
        "direct_hangup_blocked", "agent_hangup_ran_procedure", "1001", "r1")


def test_a_procedure_cancelled_before_its_first_prompt_was_said_is_skipped() -> None:
    assert _departures(
        *run_events("r1", 5, [(5, "prompt_started", {"phrase": "silent_a"})], None),
        IvrNoted(CALL, at(6), 1006, "departure", "r1", "silent",
                 {"what": "procedure_cancelled_by_agent", "agent_id": "1001"}),
        ProcedureEnded(CALL, at(6), 1006, "r1", "silent", {"reason": "cancelled_by_agent"}),
    ) == [(6.0, "procedure_skipped", "procedure_cancelled_by_agent")]


def test_a_procedure_cancelled_after_a_prompt_is_cut_short() -> None:
    assert _departures(
        *run_events("r1", 5, [(5, "prompt_started", {}), (7, "prompt_finished", {})], None),
        IvrNoted(CALL, at(8), 1008, "departure", "r1", "silent",
                 {"what": "procedure_cancelled_by_agent", "agent_id": "1001"}),
        ProcedureEnded(CALL, at(8), 1008, "r1", "silent", {"reason": "cancelled_by_agent"}),
    ) == [(8.0, "procedure_cut_short", "procedure_cancelled_by_agent")]


def test_a_procedure_superseded_or_switched_away_is_cut_short() -> None:
    assert _departures(
        *run_events("r1", 5, [(5, "prompt_started", {}), (6, "prompt_finished", {})],
                    (9, "superseded")),
        *run_events("r2", 9, [], (10, "flow_switched")),
        *run_events("r3", 11, [], (20, "completed")),
        *run_events("r4", 21, [], (25, "caller_present")),  # the script says: go on
    ) == [(9.0, "procedure_cut_short", "superseded"),
          (10.0, "procedure_skipped", "flow_switched")]


def test_a_forbidden_phrase_refused_and_other_departures_are_listed() -> None:
    assert _departures(
        IvrNoted(CALL, at(3), 1003, "departure",
                 detail={"what": "forbidden_phrase_blocked", "phrase": "greeting_by_name"}),
        IvrNoted(CALL, at(4), 1004, "departure", detail={"what": "prompt_failed"}),
    ) == [(3.0, "forbidden_phrase_blocked", "forbidden_phrase_blocked"),
          (4.0, "prompt_failed", "prompt_failed")]


def test_an_unfinished_call_leaves_its_stretches_open() -> None:
    review = build_review(CALL, facts(
        CallArrived(CALL, at(0), "ch", "1", "2"), CallQueued(CALL, "q", 0, 1, at(1)),
        CallHeld(CALL, at(2), "1001")))
    assert review.ended_at is None
    assert {(s.kind, s.end_s) for s in review.stretches} == {("queue_wait", None),
                                                             ("hold", None)}


def test_no_arrival_kept_starts_the_axis_at_the_first_fact() -> None:
    review = build_review(CALL, facts(CallHeld(CALL, at(5), "1001"),
                                      CallResumed(CALL, at(8), "1001")))
    assert [e.offset_s for e in review.entries] == [0.0, 3.0]
    assert build_review(CALL, []).entries == ()
