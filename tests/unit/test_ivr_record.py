"""The queue fallback flows in the pure engine: the `record` node (voicemail) and the call-back
offer, on a simulated clock; and the driver's side of a recording."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from ivr_sim import _FLOWS, SimCall
from test_ivr_runner import FakeTelephony, Prompts, settle

from cti.domain.ivr import commands as c
from cti.domain.ivr import events as e
from cti.domain.ivr.engine import CallContext, CallState
from cti.domain.ivr.flow import Flow
from cti.domain.ivr.loader import check_flow
from cti.features.ivr.runner import IvrRunner, ari_to_domain
from cti.platform.clock import FakeClock
from cti.platform.errors import TelephonyError

FALLBACK_SLOTS = {"zh": {"queue": "general", "mailbox": "sales-box"},
                  "en": {"queue": "general", "mailbox": "sales-box"}}


def in_fallback(flow: str) -> SimCall:
    """A caller waiting in a queue (agent_greeting stands in for the menu) sent to `flow`."""
    sim = SimCall.start("agent_greeting")
    sim.run_until(0.5)
    sim.feed(e.SwitchFlow(flow, FALLBACK_SLOTS))
    return sim


def record_command(sim: SimCall) -> c.Record:
    [(_, cmd)] = sim.of(c.Record)
    assert isinstance(cmd, c.Record)
    return cmd


def test_voicemail_prompt_then_beep_record_then_thanks_and_hangup() -> None:
    sim = in_fallback("queue_voicemail")
    assert [p for _, p in sim.plays()][-1] == "queue_voicemail_prompt"
    start = sim.now
    sim.run_until(start + 2.0)  # the prompt ends: the recording starts at once
    t, cmd = sim.first(c.Record) or (None, None)
    assert t == pytest.approx(start + 2.0)
    assert cmd == c.Record("vm-call1-1", "sales-box", 120.0, 5.0, True, "#")
    sim.run_until(start + 9.0)
    assert not sim.ended
    assert sim.plays()[-1][1] == "queue_voicemail_prompt"
    sim.feed(e.RecordingEnded("vm-call1-1", 7.0))
    assert sim.plays()[-1] == (start + 9.0, "queue_voicemail_thanks")
    assert sim.audits("recording_finished")[0].detail == {"name": "vm-call1-1", "duration_s": 7.0}
    assert sim.audits("recording_started")[0].detail["mailbox"] == "sales-box"
    sim.run()
    assert sim.ended
    assert not sim.of(c.StopRecording)  # it ended by itself: nothing to stop
    assert sim.of(c.HangUpCall)[-1][1] == c.HangUpCall("flow")


def test_caller_hanging_up_mid_message_leaves_the_recording_to_the_pbx() -> None:
    sim = in_fallback("queue_voicemail")
    sim.run_until(sim.now + 2.0)
    record_command(sim)
    out = sim.feed(e.HangUp("caller"))
    assert sim.ended
    assert not [cmd for cmd in out if isinstance(cmd, c.StopRecording | c.HangUpCall)]
    assert sim.audits("recording_caller_hangup")[0].detail == {"name": "vm-call1-1"}
    # its end reported after the call's changes nothing
    assert sim.feed(e.RecordingEnded("vm-call1-1", 4.0)) == []


def test_an_unreported_end_stops_the_recording_after_the_limit() -> None:
    sim = in_fallback("queue_voicemail")
    sim.run_until(sim.now + 2.0)
    started = sim.now
    sim.run_until(started + 120 + 4.9)
    assert not sim.of(c.StopRecording)
    sim.run_until(started + 125.0)
    assert sim.of(c.StopRecording)[0] == (started + 125.0, c.StopRecording("vm-call1-1"))
    assert sim.plays()[-1][1] == "queue_voicemail_thanks"
    assert sim.audits("recording_timeout")
    assert sim.feed(e.RecordingEnded("vm-call1-1", 120.0)) == []  # late: ignored
    sim.run()
    assert sim.ended


def test_failed_or_unknown_recordings() -> None:
    sim = in_fallback("queue_voicemail")
    sim.run_until(sim.now + 2.0)
    assert sim.feed(e.RecordingEnded("vm-other-1", 3.0)) == []  # not this call's
    sim.feed(e.RecordingEnded("vm-call1-1", failed=True, cause="no disk"))
    assert sim.audits("recording_failed")[0].detail == {"name": "vm-call1-1", "cause": "no disk"}
    assert sim.plays()[-1][1] == "queue_voicemail_thanks"


def test_leaving_a_record_node_early_stops_the_recording() -> None:
    sim = in_fallback("queue_voicemail")
    sim.run_until(sim.now + 2.0)
    out = sim.feed(e.SwitchFlow("agent_greeting"))  # an agent took the call after all
    assert c.StopRecording("vm-call1-1") in out
    assert sim.state.recording is None


def test_callback_offer_press_1_registers_with_queue_then_goodbye() -> None:
    sim = in_fallback("queue_callback")
    assert sim.plays()[-1][1] == "queue_callback_offer"
    sim.run_until(sim.now + 1.0)  # pressed during the offer
    sim.feed(e.Dtmf("1"))
    [audit] = sim.audits("callback_requested")
    assert audit.detail == {"number": "13800000000", "lang": "zh", "queue": "general"}
    assert sim.plays()[-1][1] == "queue_callback_confirmed"
    sim.run()
    assert sim.ended


@pytest.mark.parametrize("keys", [[], ["5", "7"]])
def test_callback_offer_without_1_says_goodbye(keys: list[str]) -> None:
    sim = in_fallback("queue_callback")
    for key in keys:
        sim.run_until(sim.now + 2.5)
        sim.feed(e.Dtmf(key))
    sim.run()
    assert sim.ended
    assert not sim.audits("callback_requested")
    assert [p for _, p in sim.plays()][-1] == "menu_goodbye"


def test_record_node_own_mailbox_wins_and_bad_options_are_refused() -> None:
    flow = Flow.model_validate({
        "name": "vm", "start": "rec",
        "nodes": {"rec": {"type": "record", "mailbox": "boss", "max_seconds": 30,
                          "max_silence": 0, "beep": False, "terminate_on": "any", "next": "end"},
                  "end": {"type": "hangup"}},
    })
    assert check_flow(flow, SimpleNamespace(phrases=(), languages=("zh",), queues=None), "x") == []
    m = SimCall.start().m
    machine = type(m)({**_FLOWS, "vm": flow}, m.procedures)
    state = machine.new_call(CallContext("c9", "zh", FALLBACK_SLOTS), "vm")
    _, out = machine.step(state, e.Answered(SimCall.start().state.answered_at))  # type: ignore[arg-type]
    assert c.Record("vm-c9-1", "boss", 30.0, 0.0, False, "any") in out
    with pytest.raises(ValueError, match="terminate_on"):
        Flow.model_validate({"name": "vm", "start": "rec", "nodes": {
            "rec": {"type": "record", "terminate_on": "5", "next": "rec"}}})


def test_recording_events_translate_to_domain_events() -> None:
    finished = SimpleNamespace(type="RecordingFinished", recording=SimpleNamespace(
        name="vm-c1-1", target_uri="channel:c1", duration=6, cause=None))
    failed = SimpleNamespace(type="RecordingFailed", recording=SimpleNamespace(
        name="vm-c1-1", target_uri="channel:c1", duration=None, cause="no space"))
    assert ari_to_domain(finished) == ("c1", e.RecordingEnded("vm-c1-1", 6.0))
    assert ari_to_domain(failed) == ("c1", e.RecordingEnded("vm-c1-1", None, True, "no space"))


class RecordingTelephony(FakeTelephony):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fail = fail

    async def record(self, channel_id: str, name: str, **kw: Any) -> None:
        self.calls.append(("record", (channel_id, name, kw)))
        if self.fail:
            raise TelephonyError("ARI POST /channels/x/record failed with 422: bad format")

    async def stop_recording(self, name: str) -> None:
        self.calls.append(("stop_recording", name))


class Sink:
    def __init__(self) -> None:
        self.started: list[tuple[str, str, c.Record]] = []
        self.dropped: list[str] = []

    def recording_started(self, state: CallState, channel_id: str, command: c.Record) -> None:
        self.started.append((state.ctx.call_id, channel_id, command))

    def recording_not_started(self, name: str) -> None:
        self.dropped.append(name)


class NoAudit:
    def submit(self, entry: Any) -> None:
        pass


@pytest.mark.parametrize("fail", [False, True])
async def test_runner_records_through_the_port_and_tells_the_store(fail: bool) -> None:
    tel, sink = RecordingTelephony(fail), Sink()
    runner = IvrRunner(tel, FakeClock(), NoAudit(), Prompts(),  # type: ignore[arg-type]
                       SimpleNamespace(flows=_FLOWS), recordings=sink)
    task = asyncio.create_task(runner.run_call(CallContext("c1", "zh", {}), "queue_voicemail",
                                               "ch1"))
    await settle()
    runner.feed("c1", e.PromptFinished(tel.plays()[-1][0]))
    await settle()
    [(_, (channel, name, kw))] = [x for x in tel.calls if x[0] == "record"]
    assert (channel, name) == ("ch1", "vm-c1-1")
    assert kw == {"fmt": "wav", "max_duration_s": 120.0, "max_silence_s": 5.0, "beep": True,
                  "terminate_on": "#"}
    assert [s[:2] for s in sink.started] == [("c1", "ch1")]
    if fail:  # refused: the store forgets it, the caller hears the thanks all the same
        assert sink.dropped == ["vm-c1-1"]
        assert tel.plays()[-1][1] == ["sound:custom/queue_voicemail_thanks__zh"]
    else:
        assert sink.dropped == []
        runner.feed("c1", e.HangUp())
    if fail:
        runner.feed("c1", e.HangUp())
    await asyncio.wait_for(task, 1)
