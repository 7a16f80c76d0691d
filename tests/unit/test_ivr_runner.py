"""The asyncio driver: commands reach the PBX port, timers are scheduled per generation,
audits land in the database, the agent's hang-up goes through the procedure."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from ivr_sim import _FLOWS, SLOTS

from cti.domain.ivr import events as e
from cti.domain.ivr.engine import CallContext, Phase
from cti.features.ivr.runner import CATCH_UP_MAX_S, IvrRunner, UnknownProcedure, ari_to_domain
from cti.features.procedures.audit import ProcedureAudit
from cti.platform.clock import FakeClock
from cti.platform.db.base import Base, make_engine, make_sessionmaker
from cti.platform.errors import ChannelGone
from cti.platform.scheduler import ManualScheduler


class FakeTelephony:
    """Records what the runner asks of the PBX (unit tests of the driver only)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def play(self, channel_id: str, media: Sequence[str], playback_id: str | None = None,
                   lang: str | None = None) -> str:
        self.calls.append(("play", (playback_id, list(media))))
        return playback_id or ""

    async def stop_playback(self, playback_id: str) -> None:
        self.calls.append(("stop_playback", playback_id))

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        self.calls.append(("hangup", channel_id))

    async def set_volume(self, channel_id: str, direction: str, gain: int) -> None:
        self.calls.append(("set_volume", (direction, gain)))

    async def start_moh(self, channel_id: str, moh_class: str | None = None) -> None:
        self.calls.append(("start_moh", channel_id))

    async def stop_moh(self, channel_id: str) -> None:
        self.calls.append(("stop_moh", channel_id))

    def plays(self) -> list[tuple[str, list[str]]]:
        return [args for name, args in self.calls if name == "play"]


class Prompts:
    async def media(self, phrase_id: str, slots: Mapping[str, str], lang: str) -> list[str]:
        return [f"sound:custom/{phrase_id}__{lang}"]


@pytest.fixture
async def audit(tmp_path: Path) -> AsyncIterator[ProcedureAudit]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'ivr.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    service = ProcedureAudit(make_sessionmaker(engine))
    yield service
    await service.close()
    await engine.dispose()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def make_runner(
    audit: ProcedureAudit,
) -> tuple[IvrRunner, FakeTelephony, ManualScheduler, FakeClock]:
    clock = FakeClock()
    timers = ManualScheduler(clock)
    tel = FakeTelephony()
    runner = IvrRunner(tel, clock, audit, Prompts(), SimpleNamespace(flows=_FLOWS),  # type: ignore[arg-type]
                       timers=timers)
    return runner, tel, timers, clock


async def finish_prompt(runner: IvrRunner, tel: FakeTelephony) -> None:
    runner.feed("c1", e.PromptFinished(tel.plays()[-1][0]))
    await settle()


async def test_silent_call_through_the_driver_with_audit_timeline(audit: ProcedureAudit) -> None:
    runner, tel, timers, _ = make_runner(audit)
    task = asyncio.create_task(runner.run_call(CallContext("c1", "zh", SLOTS), "agent_greeting",
                                               "chan-1"))
    await settle()
    assert tel.plays()[0][1] == ["sound:custom/greeting_answer__zh"]
    await finish_prompt(runner, tel)
    assert [round(t, 3) for t in timers.pending()] == [5.0]  # the silence watch
    timers.advance(5.0)
    await settle()
    for expected in ("silent_call_first", "silent_call_second", "silent_call_goodbye"):
        assert tel.plays()[-1][1] == [f"sound:custom/{expected}__zh"]
        await finish_prompt(runner, tel)
        assert len(timers.pending()) == 1
        assert timers.pending()[0] - timers.clock.monotonic() == pytest.approx(5.0)
        timers.advance(5.0)
        await settle()
    state = await asyncio.wait_for(task, 1)
    assert state.phase is Phase.ENDED
    assert tel.calls[-1] == ("hangup", "chan-1")
    await audit.flush()
    report = await audit.runs_for_call("c1")
    (run,) = report["runs"]
    assert run["procedure"] == "silent_call"
    assert run["started_by"] == "auto"
    assert run["hung_up"] is True
    kinds = [s["kind"] for s in run["timeline"]]
    assert kinds[:4] == ["prompt_started", "prompt_finished", "wait_started", "wait_finished"]
    assert kinds[-1] == "hangup"
    waits = [s["offset_ms"] for s in run["timeline"] if s["kind"] in ("wait_started",
                                                                       "wait_finished")]
    assert [b - a for a, b in zip(waits[::2], waits[1::2], strict=True)] == [5000, 5000, 5000]


async def test_agent_hangup_on_a_noisy_line_goes_through_the_procedure(
    audit: ProcedureAudit,
) -> None:
    runner, tel, timers, _ = make_runner(audit)
    task = asyncio.create_task(runner.run_call(CallContext("c1", "zh", SLOTS), "agent_greeting"))
    await settle()
    await finish_prompt(runner, tel)
    runner.feed("c1", e.AudioClassified("noisy"))
    await settle()
    assert await runner.request_hangup("c1", "a1") is True
    assert ("hangup", "c1") not in tel.calls
    assert tel.plays()[-1][1] == ["sound:custom/noisy_goodbye__zh"]
    await finish_prompt(runner, tel)
    timers.advance(4.9)
    await settle()
    assert ("hangup", "c1") not in tel.calls
    timers.advance(0.1)
    await settle()
    assert tel.calls[-1] == ("hangup", "c1")
    await asyncio.wait_for(task, 1)
    await audit.flush()
    report = await audit.runs_for_call("c1")
    assert [d["what"] for d in report["departures"]] == []
    assert report["runs"][0]["started_by"] == "agent"


async def test_stopping_a_prompt_that_just_ended_keeps_the_call_in_the_ivr(
    audit: ProcedureAudit,
) -> None:
    """The agent starts a procedure as the greeting ends: ARI answers 404 to stopping the
    finished greeting. That is no hang-up: the procedure runs and the agent's hang-up waits."""
    runner, tel, _, _ = make_runner(audit)

    async def already_finished(playback_id: str) -> None:
        raise ChannelGone(f"ARI DELETE /playbacks/{playback_id}: Playback not found")

    tel.stop_playback = already_finished  # type: ignore[method-assign]
    task = asyncio.create_task(runner.run_call(CallContext("c1", "zh", SLOTS), "agent_greeting"))
    await settle()
    await runner.start_procedure("c1", "noisy_line", "a1")
    await settle()
    assert runner.state_of("c1") is not None
    assert await runner.request_hangup("c1", "a1") is True
    assert tel.plays()[-1][1] == ["sound:custom/noisy_goodbye__zh"]
    assert ("hangup", "c1") not in tel.calls
    runner.feed("c1", e.HangUp())
    await asyncio.wait_for(task, 1)


class BrokenSink:
    """An audit sink (say, a screen-pop forwarder) with a bug: it raises on every fact."""

    def submit(self, entry: Any) -> None:
        raise TypeError("bug in a sink")


async def test_a_failing_audit_sink_neither_stops_the_procedure_nor_strands_the_agent() -> None:
    clock = FakeClock()
    timers = ManualScheduler(clock)
    tel = FakeTelephony()
    runner = IvrRunner(tel, clock, BrokenSink(), Prompts(),  # type: ignore[arg-type]
                       SimpleNamespace(flows=_FLOWS), timers=timers)  # type: ignore[arg-type]
    task = asyncio.create_task(runner.run_call(CallContext("c1", "zh", SLOTS), "agent_greeting"))
    await settle()
    await finish_prompt(runner, tel)
    await asyncio.wait_for(runner.start_procedure("c1", "noisy_line", "a1"), 1)
    assert await asyncio.wait_for(runner.request_hangup("c1", "a1"), 1) is True
    await finish_prompt(runner, tel)
    timers.advance(5.0)
    await settle()
    assert tel.calls[-1] == ("hangup", "c1")
    await asyncio.wait_for(task, 1)


async def test_agent_hangup_in_conversation_is_direct_and_unknown_call_is_not_ours(
    audit: ProcedureAudit,
) -> None:
    runner, tel, _, _ = make_runner(audit)
    assert await runner.request_hangup("nope", "a1") is False
    task = asyncio.create_task(runner.run_call(CallContext("c1", "zh", SLOTS), "agent_greeting"))
    await settle()
    runner.feed("c1", e.SpeechStarted())
    await settle()
    assert await runner.request_hangup("c1", "a1") is False
    await asyncio.wait_for(task, 1)
    assert tel.calls[-1] == ("hangup", "c1")


async def test_agent_page_names_and_unknown_procedures(audit: ProcedureAudit) -> None:
    runner, tel, _, _ = make_runner(audit)
    task = asyncio.create_task(runner.run_call(CallContext("c1", "zh", SLOTS), "agent_greeting"))
    await settle()
    runner.feed("c1", e.SpeechStarted())
    await runner.start_procedure("c1", "volume_up", "a1")
    await settle()
    await finish_prompt(runner, tel)  # 对不起,
    assert ("set_volume", ("TX", 3)) in tel.calls
    with pytest.raises(UnknownProcedure, match="unknown procedure 'shout'"):
        await runner.start_procedure("c1", "shout", "a1")
    runner.feed("c1", e.HangUp())
    await asyncio.wait_for(task, 1)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (SimpleNamespace(type="PlaybackFinished",
                         playback=SimpleNamespace(id="c1-p3", target_uri="channel:ch9")),
         ("ch9", e.PromptFinished("c1-p3"))),
        (SimpleNamespace(type="ChannelDtmfReceived", channel=SimpleNamespace(id="ch9"), digit="5"),
         ("ch9", e.Dtmf("5"))),
        (SimpleNamespace(type="ChannelTalkingStarted", channel=SimpleNamespace(id="ch9")),
         ("ch9", e.SpeechStarted())),
        (SimpleNamespace(type="ChannelTalkingFinished", channel=SimpleNamespace(id="ch9"),
                         duration=1200), ("ch9", e.SpeechStopped(1200))),
        (SimpleNamespace(type="StasisEnd", channel=SimpleNamespace(id="ch9")),
         ("ch9", e.HangUp("StasisEnd"))),
        (SimpleNamespace(type="ChannelDestroyed", channel=SimpleNamespace(id="ch9")),
         ("ch9", e.HangUp("ChannelDestroyed"))),
        (SimpleNamespace(type="ChannelEnteredBridge", channel=SimpleNamespace(id="ch9"),
                         bridge=SimpleNamespace(id="cti-acd-c1-1")), ("ch9", e.AgentLink(True))),
        (SimpleNamespace(type="ChannelLeftBridge", channel=SimpleNamespace(id="ch9"),
                         bridge=SimpleNamespace(id="cti-acd-c1-1")), ("ch9", e.AgentLink(False))),
        # the line watch's own bridge holds the caller in the IVR: no one is on the call
        (SimpleNamespace(type="ChannelEnteredBridge", channel=SimpleNamespace(id="ch9"),
                         bridge=SimpleNamespace(id="cti-tap-c1-ab12cd34")), None),
        (SimpleNamespace(type="ChannelLeftBridge", channel=SimpleNamespace(id="ch9"),
                         bridge=SimpleNamespace(id="cti-tap-c1-ab12cd34")), None),
        (SimpleNamespace(type="ChannelVarset", channel=SimpleNamespace(id="ch9")), None),
    ],
)
def test_ari_events_translate_to_domain_events(event: Any, expected: Any) -> None:
    assert ari_to_domain(event) == expected


# -- the presence check before a procedure's hang-up, answered by the driver ---------------------


async def agent_hangup_in_silent_call(
    runner: IvrRunner, tel: FakeTelephony, timers: ManualScheduler, *,
    windows: str | None = "silent",
) -> asyncio.Task[Any]:
    """Greeting, 5 s of silence, row 4's first prompt; the agent's hang-up: the goodbye, then
    the 5 s wait (which speech no longer stops) runs until 0.5 s before its end. `windows`:
    what the audio tap reports every second meanwhile (None: no tap)."""
    task = asyncio.create_task(runner.run_call(CallContext("c1", "zh", SLOTS), "agent_greeting",
                                               "chan-1"))
    await settle()
    await finish_prompt(runner, tel)
    timers.advance(5.0)
    await settle()
    assert tel.plays()[-1][1] == ["sound:custom/silent_call_first__zh"]
    assert await runner.request_hangup("c1", "a1") is True
    assert tel.plays()[-1][1] == ["sound:custom/silent_call_goodbye__zh"]
    await finish_prompt(runner, tel)
    for _ in range(4):
        timers.advance(1.0)
        if windows:
            runner.feed("c1", e.AudioClassified(windows))  # type: ignore[arg-type]
        await settle()
    timers.advance(0.5)
    await settle()
    return task


async def test_an_absent_caller_is_hung_up_on_time_after_the_check(
    audit: ProcedureAudit,
) -> None:
    runner, tel, timers, _ = make_runner(audit)
    task = await agent_hangup_in_silent_call(runner, tel, timers)
    assert ("hangup", "chan-1") not in tel.calls
    timers.advance(0.5)  # the wait's end: the check is answered at once, the line cut now
    await settle()
    assert tel.calls[-1] == ("hangup", "chan-1")
    assert timers.pending() == []  # the check's bound on its answer was cancelled
    await asyncio.wait_for(task, 1)
    await audit.flush()
    (run,) = (await audit.runs_for_call("c1"))["runs"]
    hangup = run["timeline"][-1]
    assert hangup["kind"] == "hangup"
    assert hangup["detail"]["presence"] == "absent"
    assert hangup["detail"]["evidence"]["windows"] == {"silent": 3}
    waits = [s["offset_ms"] for s in run["timeline"] if s["kind"] in ("wait_started",
                                                                       "wait_finished")]
    assert waits[-1] - waits[-2] == 5000
    assert hangup["offset_ms"] == waits[-1]  # not a millisecond later


@pytest.mark.parametrize(
    ("sign", "found"),
    [
        (e.AudioClassified("quiet"), "quiet"),
        (e.AudioClassified("normal"), "normal"),
        (e.SpeechStarted(), "talk"),  # TALK_DETECT
        (e.Dtmf("7"), "key"),
    ],
)
async def test_a_caller_heard_in_the_last_seconds_is_not_hung_up_and_goes_on(
    audit: ProcedureAudit, sign: e.Event, found: str,
) -> None:
    runner, tel, timers, _ = make_runner(audit)
    task = await agent_hangup_in_silent_call(runner, tel, timers)
    runner.feed("c1", sign)  # 0.5 s before the hang-up
    await settle()
    timers.advance(0.5)
    await settle()
    assert ("hangup", "chan-1") not in tel.calls
    # No agent on this call: the flow's next step at once (the transfer, then the queue).
    assert tel.plays()[-1][1] == ["sound:custom/menu_transfer__zh"]
    state = runner.state_of("c1")
    assert state is not None
    assert state.procedure is None
    assert state.node == "transfer"
    runner.feed("c1", e.HangUp())
    await asyncio.wait_for(task, 1)
    await audit.flush()
    report = await audit.runs_for_call("c1")
    (run,) = report["runs"]
    assert (run["end_reason"], run["hung_up"]) == ("caller_present", False)
    (trigger,) = [s for s in run["timeline"] if s["kind"] == "trigger"]
    assert trigger["detail"]["trigger"] == "caller_present"
    assert found in trigger["detail"]["counted"]
    assert [d["what"] for d in report["departures"]] == [
        "agent_hangup_runs_procedure", "hangup_cancelled_caller_present"
    ]
    assert found in report["departures"][-1]["detail"]["evidence"]["found"]


async def test_with_the_agent_on_the_call_a_present_caller_goes_back_to_the_agent(
    audit: ProcedureAudit,
) -> None:
    runner, tel, timers, _ = make_runner(audit)
    task = asyncio.create_task(runner.run_call(CallContext("c1", "zh", SLOTS), "agent_greeting",
                                               "chan-1"))
    await settle()
    runner.feed("c1", ari_to_domain(SimpleNamespace(  # type: ignore[index]
        type="ChannelEnteredBridge", channel=SimpleNamespace(id="chan-1"),
        bridge=SimpleNamespace(id="cti-acd-c1-1")))[1])
    await finish_prompt(runner, tel)
    timers.advance(5.0)
    await settle()
    assert await runner.request_hangup("c1", "a1") is True
    await finish_prompt(runner, tel)
    timers.advance(4.0)
    runner.feed("c1", e.AudioClassified("quiet"))
    await settle()
    plays = len(tel.plays())
    timers.advance(1.0)
    await settle()
    assert ("hangup", "chan-1") not in tel.calls
    assert len(tel.plays()) == plays  # nothing plays over the agent and the caller
    state = runner.state_of("c1")
    assert state is not None
    assert state.procedure is None
    assert state.node == "conversation"
    runner.feed("c1", e.HangUp())
    await asyncio.wait_for(task, 1)


async def test_without_an_audio_tap_the_hang_up_goes_ahead_and_says_so(
    audit: ProcedureAudit,
) -> None:
    runner, tel, timers, _ = make_runner(audit)
    task = await agent_hangup_in_silent_call(runner, tel, timers, windows=None)
    timers.advance(0.5)
    await settle()
    assert tel.calls[-1] == ("hangup", "chan-1")
    await asyncio.wait_for(task, 1)
    await audit.flush()
    (run,) = (await audit.runs_for_call("c1"))["runs"]
    assert run["timeline"][-1]["detail"]["presence"] == "unknown"


def test_migration_0003_creates_the_ivr_tables(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from cti.platform.db.migrate import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    upgrade(url, "0003")
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        names = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"ivr_procedure_runs", "ivr_procedure_steps", "ivr_script_departures"} <= names


async def test_a_prompt_whose_text_is_forbidden_is_not_played_and_is_a_departure(
    audit: ProcedureAudit,
) -> None:
    """A slot value can make a phrase say a forbidden phrase (the library refuses it when it
    is filled): nothing is played, the flow goes on, and quality review sees the refusal."""
    from cti.domain.phrases import ForbiddenPhraseRefused

    class Refusing(Prompts):
        async def media(self, phrase_id: str, slots: Mapping[str, str], lang: str) -> list[str]:
            if phrase_id == "greeting_answer":
                raise ForbiddenPhraseRefused("prompt greeting_answer (zh): forbidden phrase")
            return await super().media(phrase_id, slots, lang)

    runner, tel, timers, _ = make_runner(audit)
    runner.prompts = Refusing()
    task = asyncio.create_task(runner.run_call(CallContext("c1", "zh", SLOTS), "agent_greeting",
                                               "chan-1"))
    await settle()
    assert tel.plays() == []  # the greeting was refused, not played
    assert [round(t, 3) for t in timers.pending()] == [5.0]  # the flow went on: silence watch
    await audit.flush()
    (departure,) = (await audit.runs_for_call("c1"))["departures"]
    assert departure["what"] == "forbidden_phrase_blocked"
    assert departure["detail"]["phrase"] == "greeting_answer"
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# -- waits timed from the PBX's stamp of the prompt's end ----------------------------------------


async def test_a_wait_is_timed_from_the_prompts_end_as_the_pbx_stamped_it(
    audit: ProcedureAudit,
) -> None:
    """A PlaybackFinished that reached the service 40 ms later than usual: the silent-call
    waits after it are set 40 ms shorter, so the caller hears 5 s. A PBX clock that is off
    by a constant (here the stamps all 100 ms behind ours) shortens nothing; a delay is never
    taken off beyond CATCH_UP_MAX_S."""
    runner, tel, timers, clock = make_runner(audit)
    task = asyncio.create_task(runner.run_call(CallContext("c1", "zh", SLOTS), "agent_greeting",
                                               "chan-1"))
    await settle()

    async def finished(delay_s: float) -> float:
        stamp = clock.now() - timedelta(seconds=delay_s)
        runner.feed("c1", e.PromptFinished(tel.plays()[-1][0], stamp))
        await settle()
        (due,) = timers.pending()
        return due - clock.monotonic()

    assert await finished(0.102) == pytest.approx(5.0)  # greeting: the first delay seen
    timers.advance(5.0)
    await settle()
    assert await finished(0.100) == pytest.approx(5.0)  # 4a: the usual delay (the clock skew)
    timers.advance(5.0)
    await settle()
    assert await finished(0.140) == pytest.approx(4.96)  # 4b: 40 ms late -> 40 ms less
    timers.advance(4.96)
    await settle()
    assert await finished(2.0) == pytest.approx(5.0 - CATCH_UP_MAX_S)  # 4c: at most 0.25 s
    timers.advance(5.0)
    await settle()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_playback_finished_carries_the_pbx_time_stamp() -> None:
    event = SimpleNamespace(type="PlaybackFinished", timestamp="2026-12-01T10:23:59.343+0000",
                            playback=SimpleNamespace(id="c1-p3", target_uri="channel:ch9"))
    assert ari_to_domain(event) == ("ch9", e.PromptFinished(
        "c1-p3", datetime(2026, 12, 1, 10, 23, 59, 343000, tzinfo=UTC)
    ))
    event.timestamp = "2026-12-01T18:23:59.343+0800"  # another zone: the same instant
    assert ari_to_domain(event) == ("ch9", e.PromptFinished(
        "c1-p3", datetime(2026, 12, 1, 10, 23, 59, 343000, tzinfo=UTC)
    ))
    for bad in ("not a time", "2026-12-01T10:23:59.343"):  # no zone: not taken
        event.timestamp = bad
        assert ari_to_domain(event) == ("ch9", e.PromptFinished("c1-p3"))


async def test_the_handover_hook_runs_before_the_caller_is_routed(
    audit: ProcedureAudit,
) -> None:
    """Before the queue takes the caller (CallRouted), the hand-over hook has let the caller's
    channel out of what holds it for the IVR (the line watch's bridge): awaited, in order."""
    runner, tel, timers, _ = make_runner(audit)
    order: list[str] = []
    runner.bus = SimpleNamespace(  # type: ignore[assignment]
        publish=lambda event: order.append(type(event).__name__))

    async def handover() -> None:
        await asyncio.sleep(0)  # a request to the PBX
        order.append("handover")

    task = asyncio.create_task(runner.run_call(
        CallContext("c1", "zh", SLOTS), "agent_greeting", "chan-1", on_handover=handover))
    await settle()
    await finish_prompt(runner, tel)  # the greeting; the silence watch starts
    timers.advance(5.0)
    await settle()
    assert tel.plays()[-1][1] == ["sound:custom/silent_call_first__zh"]
    runner.feed("c1", e.SpeechStarted())  # the caller speaks: the procedure ends, then: transfer
    await settle()
    assert tel.plays()[-1][1] == ["sound:custom/menu_transfer__zh"]
    assert order == []  # no hand-over while the IVR still plays to the caller
    await finish_prompt(runner, tel)
    assert order == ["handover", "CallRouted"]
    runner.feed("c1", e.HangUp())
    await asyncio.wait_for(task, 1)
