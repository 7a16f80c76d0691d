"""The ACD's fallback handler: the caller's hold music stops and its IVR continues in the
fallback's flow with the queue and mailbox as slots; with no flow, the caller is hung up."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace

from ivr_sim import _FLOWS
from test_ivr_runner import FakeTelephony, Prompts, settle

from cti.domain.calls import Call, CallState
from cti.domain.ivr.engine import CallContext
from cti.domain.ivr.events import HangUp
from cti.events import FallbackReached
from cti.features.calls.registry import CallRegistry, CallSession
from cti.features.fallback.service import QueueFallback
from cti.features.ivr.runner import IvrRunner
from cti.platform.clock import FakeClock

FLOWS = {"callback": "queue_callback", "voicemail": "queue_voicemail"}


class NoAudit:
    def submit(self, entry: object) -> None:
        pass


class Repo:
    def __init__(self) -> None:
        self.saved: list[Call] = []

    async def save(self, call: Call) -> None:
        self.saved.append(call)


def setup() -> tuple[IvrRunner, FakeTelephony, CallRegistry, Repo]:
    tel = FakeTelephony()
    runner = IvrRunner(tel, FakeClock(), NoAudit(), Prompts(),  # type: ignore[arg-type]
                       SimpleNamespace(flows=_FLOWS))
    registry = CallRegistry()
    registry.add(CallSession(call=Call(
        id="c1", channel_id="c1", caller_number="+8613800000001", caller_name="",
        dialled_number="4000", arrived_at=datetime(2026, 1, 5, 9, tzinfo=UTC),
        state=CallState.QUEUED, queue="general",
    )))
    return runner, tel, registry, Repo()


def reached(call_id: str, action: str, *, channel: str | None = None, queue: str = "",
            mailbox: str | None = None, target: str | None = None) -> FallbackReached:
    return FallbackReached(call_id, datetime.now(UTC), call_id if channel is None else channel,
                           queue, action, mailbox=mailbox, target=target)


async def test_voicemail_fallback_switches_the_callers_ivr_with_queue_and_mailbox() -> None:
    runner, tel, registry, repo = setup()
    fallback = QueueFallback(tel, runner, registry, repo, FLOWS)  # type: ignore[arg-type]
    task = asyncio.create_task(runner.run_call(CallContext("c1", "zh", {}), "agent_greeting"))
    await settle()
    await fallback.on_fallback_reached(reached("c1", "voicemail", queue="overflow",
                                               mailbox="sales-box"))
    state = runner.state_of("c1")
    assert state is not None
    assert state.flow == "queue_voicemail"
    assert state.ctx.slots["zh"] == {"queue": "overflow", "mailbox": "sales-box"}
    assert ("stop_moh", "c1") in tel.calls
    assert tel.plays()[-1][1] == ["sound:custom/queue_voicemail_prompt__zh"]
    assert [c.state for c in repo.saved] == [CallState.ANSWERED]
    runner.feed("c1", HangUp())
    await asyncio.wait_for(task, 1)


async def test_without_a_flow_or_an_ivr_the_caller_is_hung_up() -> None:
    runner, tel, registry, repo = setup()
    fallback = QueueFallback(tel, runner, registry, repo,  # type: ignore[arg-type]
                             {"callback": None, "voicemail": "queue_voicemail"})
    await fallback.on_fallback_reached(reached("c1", "callback"))
    await fallback.on_fallback_reached(reached("c1", "voicemail"))  # no IVR runs the call
    await fallback.on_fallback_reached(reached("c1", "queue", target="general"))  # after hours
    assert tel.calls.count(("hangup", "c1")) == 3
    # the ACD no longer knew the call
    await fallback.on_fallback_reached(reached("c1", "voicemail", channel=""))
    assert tel.calls.count(("hangup", "c1")) == 3
