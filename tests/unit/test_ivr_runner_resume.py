"""The driver's side of checkpoints: it keeps the live timer's deadline and the playing prompt
with each checkpoint, and a runner of another process that resumes the call from it arms the
rest of the wait, or ends the prompt at its start plus its length (or when the PBX says), then
times the wait after it from that end. A call whose IVR ends drops its checkpoint; a service
that stops keeps it for the next process."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import SimpleNamespace

import pytest
from ivr_sim import _FLOWS, SLOTS
from test_ivr_runner import FakeTelephony, audit, settle

from cti.domain.ivr import events as e
from cti.domain.ivr.checkpoint import Checkpoint
from cti.domain.ivr.engine import CallContext
from cti.features.ivr.runner import IvrRunner
from cti.features.procedures.audit import ProcedureAudit
from cti.platform.clock import FakeClock
from cti.platform.scheduler import ManualScheduler

__all__ = ["audit"]  # the fixture, shared with the runner's own tests
PROMPT_S = 3.0


class TimedPrompts:
    async def media(self, phrase_id: str, slots: Mapping[str, str], lang: str) -> list[str]:
        return [f"sound:custom/{phrase_id}__{lang}"]

    def seconds(self, media: list[str]) -> float | None:
        return PROMPT_S * len(media)


class ListingTelephony(FakeTelephony):
    def __init__(self, listed: bool) -> None:
        super().__init__()
        self.listed = listed

    async def playback_listed(self, playback_id: str) -> bool:
        return self.listed


class Sink:
    def __init__(self) -> None:
        self.kept: dict[str, Checkpoint] = {}
        self.dropped: list[str] = []

    def keep(self, checkpoint: Checkpoint) -> None:
        self.kept[checkpoint.call_id] = checkpoint

    def drop(self, call_id: str) -> None:
        self.dropped.append(call_id)
        self.kept.pop(call_id, None)


def runner_on(
    clock: FakeClock, audit: ProcedureAudit, tel: FakeTelephony | None = None
) -> tuple[IvrRunner, FakeTelephony, ManualScheduler, Sink]:
    timers, tel, sink = ManualScheduler(clock), tel or FakeTelephony(), Sink()
    runner = IvrRunner(tel, clock, audit, TimedPrompts(), SimpleNamespace(flows=_FLOWS),  # type: ignore[arg-type]
                       timers=timers, checkpoints=sink)
    return runner, tel, timers, sink


CTX = CallContext("c1", "zh", SLOTS)


async def into_silent_call(
    runner: IvrRunner, tel: FakeTelephony, timers: ManualScheduler
) -> asyncio.Task[object]:
    """The greeting said, then 5 s of silence: the silent-call procedure's first prompt."""
    task: asyncio.Task[object] = asyncio.create_task(
        runner.run_call(CTX, "agent_greeting", "chan-1"))
    await settle()
    runner.feed("c1", e.PromptFinished(tel.plays()[-1][0]))
    await settle()
    timers.advance(5.0)
    await settle()
    assert tel.plays()[-1][1] == ["sound:custom/silent_call_first__zh"]
    return task


async def died(task: asyncio.Task[object]) -> None:
    task.cancel()  # the process is gone: nothing more happens on its side
    await asyncio.gather(task, return_exceptions=True)


async def test_adopted_mid_wait_the_next_prompt_comes_at_the_original_deadline(
    audit: ProcedureAudit,
) -> None:
    clock = FakeClock()
    runner, tel, timers, sink = runner_on(clock, audit)
    task = await into_silent_call(runner, tel, timers)
    runner.feed("c1", e.PromptFinished(tel.plays()[-1][0]))
    await settle()
    cp = sink.kept["c1"]
    assert cp.timer is not None
    assert (cp.timer.deadline - clock.now()).total_seconds() == pytest.approx(5.0)
    due = cp.timer.deadline
    clock.advance(2.0)
    await died(task)
    clock.advance(1.2)  # the new process starts
    other, tel2, timers2, _ = runner_on(clock, audit)
    task2 = asyncio.create_task(other.run_call(CTX, "agent_greeting", "chan-1", checkpoint=cp))
    await settle()
    assert tel2.plays() == []  # nothing said again
    assert [t - clock.monotonic() for t in timers2.pending()] == [pytest.approx(1.8)]
    timers2.advance(1.8)
    await settle()
    assert clock.now() == due
    assert tel2.plays()[-1][1] == ["sound:custom/silent_call_second__zh"]
    await died(task2)


@pytest.mark.parametrize("listed", [False, True])
async def test_adopted_mid_prompt_the_wait_after_it_counts_from_its_real_end(
    audit: ProcedureAudit, listed: bool,
) -> None:
    clock = FakeClock()
    runner, tel, timers, sink = runner_on(clock, audit)
    task = await into_silent_call(runner, tel, timers)
    cp = sink.kept["c1"]
    assert cp.prompt is not None
    assert cp.prompt.duration_s == PROMPT_S
    pid = cp.prompt.playback_id
    clock.advance(1.0)
    await died(task)
    clock.advance(0.5)
    other, tel2, timers2, _ = runner_on(clock, audit, ListingTelephony(listed))
    task2 = asyncio.create_task(other.run_call(CTX, "agent_greeting", "chan-1", checkpoint=cp))
    await settle()
    if listed:  # still playing at the PBX: its own end comes, 1.5 s later
        assert timers2.pending() == []
        clock.advance(1.5)
        other.feed("c1", e.PromptFinished(pid, clock.now()))
    else:  # gone from the PBX: ended at start + length, 1.5 s from now
        assert [t - clock.monotonic() for t in timers2.pending()] == [pytest.approx(1.5)]
        timers2.advance(1.5)
    await settle()
    assert [t - clock.monotonic() for t in timers2.pending()] == [pytest.approx(5.0)]
    assert tel2.plays() == []
    await died(task2)


async def test_a_prompt_that_ended_while_nobody_ran_the_call_shortens_the_wait(
    audit: ProcedureAudit,
) -> None:
    clock = FakeClock()
    runner, tel, timers, sink = runner_on(clock, audit)
    task = await into_silent_call(runner, tel, timers)
    cp = sink.kept["c1"]
    await died(task)
    clock.advance(PROMPT_S + 2.0)  # the prompt ended 2 s ago, unheard by any process
    other, _, timers2, _ = runner_on(clock, audit)
    task2 = asyncio.create_task(other.run_call(CTX, "agent_greeting", "chan-1", checkpoint=cp))
    await settle()
    timers2.advance(0.0)  # the prompt's end, at once
    await settle()
    assert [t - clock.monotonic() for t in timers2.pending()] == [pytest.approx(3.0)]
    await died(task2)


async def test_an_ended_call_drops_its_checkpoint_a_stopping_service_keeps_it(
    audit: ProcedureAudit,
) -> None:
    clock = FakeClock()
    runner, tel, timers, sink = runner_on(clock, audit)
    task = await into_silent_call(runner, tel, timers)
    runner.feed("c1", e.HangUp("service_stopping"))
    await task
    assert "c1" in sink.kept
    assert sink.dropped == []
    task = await into_silent_call(runner, tel, timers)
    runner.feed("c1", e.HangUp("ChannelDestroyed"))
    await task
    assert sink.dropped == ["c1"]
    assert "c1" not in sink.kept
