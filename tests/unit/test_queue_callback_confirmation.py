"""A waiting caller who presses the call-back key hears the confirmation with the number they
will be called back at (phrase queue_callback_leaving, flow queue_callback_left), and only then
is the call hung up: by the flow, after the prompt's PlaybackFinished. The real IVR runner and
flows over a PBX fake that records what is asked of it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from ivr_sim import _FLOWS, _LIBRARY
from test_ivr_runner import FakeTelephony, settle

from cti.domain.calls import Call, CallState
from cti.domain.ivr.engine import CallContext
from cti.domain.ivr.events import PromptFinished
from cti.events import MenuKeyPressed
from cti.features.calls.registry import CallRegistry, CallSession
from cti.features.ivr.runner import IvrRunner
from cti.features.routing.queue_callbacks import QueueCallbacks
from cti.platform.bus import InProcessBus
from cti.platform.clock import FakeClock

NUMBER = "+8613800000702"


class NoAudit:
    def submit(self, entry: object) -> None:
        pass


class LibraryPrompts:
    """The files the phrase library says the filled phrase is played from."""

    async def media(self, phrase_id: str, slots: Any, lang: str) -> list[str]:
        return [f"sound:custom/{f}" for f in _LIBRARY.media_files(phrase_id, lang, slots)]


class Acd:
    """The ACD as the call-back key sees it: the call waits in "general" and can leave."""

    def __init__(self) -> None:
        self.kept: list[tuple[str, str]] = []
        self.core = SimpleNamespace(router=SimpleNamespace(
            queue_of=lambda call_id: "general", waited=lambda call_id, now: 12.0,
            attributes_of=lambda call_id: {"menu": "", "language": "zh"}))

    async def keep_place(self, call_id: str, number: str) -> bool:
        self.kept.append((call_id, number))
        return True


async def test_the_caller_hears_their_number_then_the_call_ends() -> None:
    tel = FakeTelephony()
    clock = FakeClock()
    runner = IvrRunner(tel, clock, NoAudit(), LibraryPrompts(),  # type: ignore[arg-type]
                       SimpleNamespace(flows=_FLOWS))
    registry = CallRegistry()
    registry.add(CallSession(call=Call(
        id="c1", channel_id="c1", caller_number=NUMBER, caller_name="",
        dialled_number="4000", arrived_at=datetime(2026, 1, 5, 9, tzinfo=UTC),
        state=CallState.QUEUED, queue="general",
    )))
    bus = InProcessBus()
    acd = Acd()
    callbacks = QueueCallbacks(acd, registry, tel, bus, clock, "5",  # type: ignore[arg-type]
                               runner=runner)
    call = asyncio.create_task(runner.run_call(CallContext("c1", "zh", {}), "agent_greeting"))
    try:
        await settle()
        before = len(tel.calls)
        await callbacks.on_key(MenuKeyPressed("c1", clock.now(), "5"))
        await settle()
        assert acd.kept == [("c1", NUMBER)]
        asked = tel.calls[before:]
        assert asked[0] == ("stop_moh", "c1")  # the music stops for the confirmation
        playback_id, media = asked[1][1]
        assert asked[1][0] == "play"
        # the sentence, then the number digit by digit ("+" is not said), then the rest
        digits = [m for m in media if m.startswith("sound:custom/char__zh__")]
        assert "".join(d[-1] for d in digits) == NUMBER.lstrip("+")
        assert media[0].startswith("sound:custom/queue_callback_leaving__zh__p")
        assert ("hangup", "c1") not in tel.calls  # not while the prompt plays
        runner.feed("c1", PromptFinished(playback_id))
        await asyncio.wait_for(call, 1)
        assert tel.calls[-1] == ("hangup", "c1")  # after it
    finally:
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        await bus.aclose()


async def test_without_an_ivr_on_the_call_it_simply_ends() -> None:
    tel = FakeTelephony()
    clock = FakeClock()
    registry = CallRegistry()
    registry.add(CallSession(call=Call(
        id="c2", channel_id="ch2", caller_number=NUMBER, caller_name="",
        dialled_number="4000", arrived_at=datetime(2026, 1, 5, 9, tzinfo=UTC),
        state=CallState.QUEUED, queue="general",
    )))
    bus = InProcessBus()
    callbacks = QueueCallbacks(Acd(), registry, tel, bus, clock, "5")  # type: ignore[arg-type]
    await callbacks.on_key(MenuKeyPressed("c2", clock.now(), "5"))
    assert tel.calls == [("hangup", "ch2")]
    await bus.aclose()
