"""The ACD service saying position/wait announcements over a fake PBX: music off, prompts in
the caller's language, music back when the playback ends; the playback stopped before the
caller joins the agent's bridge; a caller hanging up mid-announcement; a ring-no-answer."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from cti.domain.routing.events import CallConnected, RoutingEvent
from cti.features.routing.acd import Acd
from cti.platform.clock import FakeClock
from cti.platform.errors import ChannelGone, TelephonyError
from cti.platform.ports import ChannelInfo
from cti.platform.scheduler import ManualScheduler

RULES = """\
skills: [billing]
default_queue: billing
queues:
  billing:
    skills: {billing: 1}
    ring_timeout_s: RING
    wrap_up_s: 0.05
    aht_s: 120
    announce: {first_after_s: 0, every_s: 30}
agents:
  a1: {skills: {billing: 2}}
  a2: {skills: {billing: 2}}
"""
CALLER = {"menu": "1", "language": "en"}


class FakeTelephony:
    """Records PBX requests; `fail` maps a request name to the error it raises."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.kw: list[dict[str, Any]] = []
        self.fail: dict[str, Exception] = {}

    def __getattr__(self, name: str) -> Any:
        async def op(*args: Any, **kw: Any) -> Any:
            self.calls.append((name, args))
            self.kw.append(kw)
            if name in self.fail:
                raise self.fail[name]
            if name == "originate":
                return ChannelInfo(kw["channel_id"], args[0], "Down", "", "", "", "")
            if name == "create_bridge":
                return args[0]
            if name == "play":
                return kw.get("playback_id", "")
            return None

        return op

    def names(self) -> list[str]:
        return [n for n, _ in self.calls]

    def index(self, name: str) -> int:
        return self.names().index(name)

    def plays(self) -> list[tuple[str, list[str], str]]:
        """(channel, media, playback id) of every play request."""
        return [
            (args[0], list(args[1]), str(kw.get("playback_id")))
            for (name, args), kw in zip(self.calls, self.kw, strict=True)
            if name == "play"
        ]


class FakePrompts:
    """Media named after the phrase, slots and language; `gate` holds rendering back."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, dict[str, str], str]] = []
        self.gate: asyncio.Event | None = None

    async def media(self, phrase_id: str, slots: Mapping[str, str], lang: str) -> list[str]:
        self.asked.append((phrase_id, dict(slots), lang))
        if self.gate is not None:
            await self.gate.wait()
        suffix = "".join(f"__{v}" for v in slots.values())
        return [f"sound:custom/{phrase_id}__{lang}{suffix}"]


class Events:
    def __init__(self) -> None:
        self.items: list[RoutingEvent] = []

    async def on_routing_event(self, event: RoutingEvent) -> None:
        self.items.append(event)


def rules_file(tmp: Path, ring_timeout_s: float = 15) -> Path:
    path = tmp / "routing.yaml"
    path.write_text(RULES.replace("RING", str(ring_timeout_s)), encoding="utf-8")
    return path


async def settle(predicate: Any = None, turns: int = 200) -> None:
    """Let the announcement tasks run (until `predicate()` holds, when given): turns of the
    event loop, no time passes."""
    for _ in range(turns if predicate is not None else 20):
        await asyncio.sleep(0)
        if predicate is not None and predicate():
            return


async def make(tmp: Path, *, ring_timeout_s: float = 15, prompts: bool = True) -> tuple[
    Acd, FakeTelephony, FakePrompts, ManualScheduler, Events
]:
    """A started ACD (ticking every second) on a ManualScheduler: `scheduler.pass_time(s)`."""
    tel = FakeTelephony()
    fake_prompts = FakePrompts()
    scheduler = ManualScheduler(FakeClock())
    events = Events()
    acd = Acd.from_file(
        tel, rules_file(tmp, ring_timeout_s), clock=scheduler.clock, scheduler=scheduler,
        watch_s=0, listeners=[events], prompts=fake_prompts if prompts else None, language="zh",
    )
    await acd.start()
    return acd, tel, fake_prompts, scheduler, events


async def test_waiting_caller_hears_the_announcement_then_the_music_again(tmp_path: Path) -> None:
    acd, tel, prompts, _, _ = await make(tmp_path)
    await acd.enqueue("c1", "chan-c1", CALLER)
    await settle(lambda: "play" in tel.names())
    assert tel.calls[0] == ("start_moh", ("chan-c1", "default"))
    # nobody logged in: the position only ("you are next"), in the caller's language
    assert prompts.asked == [("queue_next", {}, "en")]
    assert tel.index("stop_moh") < tel.index("play")
    pid = acd.calls.by_id["c1"].announcement.playback_id
    assert pid is not None
    assert pid.startswith("acd-announce-")
    assert tel.plays() == [("chan-c1", ["sound:custom/queue_next__en"], pid)]
    acd.on_playback_finished("someone-elses")  # an IVR prompt's end: not ours
    acd.on_playback_finished(pid)
    await settle(lambda: tel.names().count("start_moh") == 2)
    assert tel.calls[-1] == ("start_moh", ("chan-c1", "default"))
    assert acd.calls.by_id["c1"].announcement.playback_id is None
    await acd.aclose()


async def test_announcement_repeats_with_position_and_estimate(tmp_path: Path) -> None:
    acd, tel, prompts, scheduler, _ = await make(tmp_path)
    await acd.agent_login("a1")
    await acd.enqueue("busy", "chan-busy", CALLER)  # a1 takes it
    leg = next(iter(acd.calls.by_channel))
    await acd.on_agent_channel_answered(leg)
    await acd.enqueue("c1", "chan-c1", {"menu": "1"})  # no language: the default (zh)
    await acd.enqueue("c2", "chan-c2", CALLER)
    await settle(lambda: len(prompts.asked) == 4)
    # one agent serving, 120 s a call: 120 s and 240 s by position, blended with the answered
    # call's 0 s wait: 60 s ("less than one minute") and 120 s ("about 2 minutes")
    assert sorted(prompts.asked, key=repr) == sorted([
        ("queue_next", {}, "zh"), ("queue_wait_under_minute", {}, "zh"),
        ("queue_position", {"position": "2"}, "en"), ("queue_wait_minutes", {"minutes": "2"}, "en"),
    ], key=repr)
    assert len(tel.plays()) == 2
    for call_id in ("c1", "c2"):
        pid = acd.calls.by_id[call_id].announcement.playback_id
        assert pid is not None
        acd.on_playback_finished(pid)
    await settle()
    prompts.asked.clear()
    await scheduler.pass_time(10)
    await settle()
    assert prompts.asked == []  # not yet
    await scheduler.pass_time(20)
    await settle(lambda: len(prompts.asked) == 4)
    assert len(prompts.asked) == 4
    assert len(tel.plays()) == 4
    await acd.aclose()


async def test_agent_answer_stops_the_announcement_before_the_bridge(tmp_path: Path) -> None:
    acd, tel, _, _, events = await make(tmp_path)
    await acd.enqueue("c1", "chan-c1", CALLER)
    await settle(lambda: "play" in tel.names())
    pid = acd.calls.by_id["c1"].announcement.playback_id
    await acd.agent_login("a1")
    # ringing the agent does not touch the announcement (nor wait for it)
    assert "stop_playback" not in tel.names()
    leg = next(iter(acd.calls.by_channel))
    await acd.on_agent_channel_answered(leg)
    assert ("stop_playback", (pid,)) in tel.calls
    assert tel.index("stop_playback") < tel.index("add_to_bridge")
    assert ("add_to_bridge", ("acd-c1", ["chan-c1", leg])) in tel.calls
    assert any(isinstance(e, CallConnected) for e in events.items)
    # the stopped playback's end does not bring the music back into the bridge
    n = tel.names().count("start_moh")
    assert pid is not None
    acd.on_playback_finished(pid)
    await settle()
    assert tel.names().count("start_moh") == n
    await acd.aclose()


async def test_answer_while_the_media_is_still_rendering_cancels_it(tmp_path: Path) -> None:
    acd, tel, prompts, _, _ = await make(tmp_path)
    prompts.gate = asyncio.Event()  # rendering takes "forever"
    await acd.enqueue("c1", "chan-c1", CALLER)
    await settle(lambda: bool(prompts.asked))
    await acd.agent_login("a1")
    leg = next(iter(acd.calls.by_channel))
    await asyncio.wait_for(acd.on_agent_channel_answered(leg), 1.0)  # not held up
    assert "add_to_bridge" in tel.names()
    prompts.gate.set()
    await settle()
    assert "play" not in tel.names()
    assert "stop_playback" not in tel.names()
    await acd.aclose()


async def test_no_announcement_starts_once_the_call_is_offered(tmp_path: Path) -> None:
    acd, tel, prompts, _, _ = await make(tmp_path)
    prompts.gate = asyncio.Event()
    await acd.enqueue("c1", "chan-c1", CALLER)
    await settle(lambda: bool(prompts.asked))
    await acd.agent_login("a1")  # offered: the agent's phone rings
    prompts.gate.set()
    await settle()
    assert "play" not in tel.names()
    await acd.aclose()


async def test_caller_hangup_mid_announcement_is_quiet(tmp_path: Path) -> None:
    acd, tel, _, _, _ = await make(tmp_path)
    await acd.enqueue("c1", "chan-c1", CALLER)
    await settle(lambda: "play" in tel.names())
    pid = acd.calls.by_id["c1"].announcement.playback_id
    assert pid is not None
    tel.fail = {n: ChannelGone("channel not found") for n in ("start_moh", "stop_playback")}
    await acd.on_caller_hangup("c1")
    acd.on_playback_finished(pid)  # Asterisk ends the playback with the channel
    await settle()
    assert "start_moh" not in tel.names()[tel.names().index("play"):]
    assert acd.announcements.playing == {}
    await acd.aclose()


async def test_caller_gone_before_the_play_request_is_quiet(tmp_path: Path) -> None:
    acd, tel, _, _, _ = await make(tmp_path)
    tel.fail = {n: ChannelGone("channel not found") for n in ("stop_moh", "play", "start_moh")}
    await acd.enqueue("c1", "chan-c1", CALLER)
    await settle(lambda: "stop_moh" in tel.names())
    await settle()
    assert acd.calls.by_id["c1"].announcement.playback_id is None
    assert acd.announcements.playing == {}
    await acd.on_caller_hangup("c1")
    await acd.aclose()


async def test_a_failed_play_brings_the_music_back(tmp_path: Path) -> None:
    acd, tel, _, _, _ = await make(tmp_path)
    tel.fail = {"play": TelephonyError("play failed with 500")}
    await acd.enqueue("c1", "chan-c1", CALLER)
    await settle(lambda: tel.names().count("start_moh") == 2)
    assert tel.names() == ["start_moh", "stop_moh", "play", "start_moh"]
    await acd.aclose()


async def test_ring_no_answer_goes_back_to_the_queue_and_is_announced_again(
    tmp_path: Path,
) -> None:
    acd, tel, _, scheduler, events = await make(tmp_path, ring_timeout_s=0.05)
    await acd.agent_login("a1")
    await acd.enqueue("c1", "chan-c1", CALLER)  # offered to a1 at once: no announcement
    await settle()
    assert "play" not in tel.names()
    await scheduler.pass_time(0.05)  # a1 does not answer
    assert acd.core.router.is_waiting("c1")
    await scheduler.pass_time(1)
    await settle(lambda: "play" in tel.names())
    pid = acd.calls.by_id["c1"].announcement.playback_id
    await acd.agent_login("a2")
    leg = next(ch for ch, lg in acd.calls.by_channel.items() if lg.agent_id == "a2")
    await acd.on_agent_channel_answered(leg)
    assert ("stop_playback", (pid,)) in tel.calls
    assert tel.index("stop_playback") < tel.index("add_to_bridge")
    connected = [e for e in events.items if isinstance(e, CallConnected)]
    assert [e.agent_id for e in connected] == ["a2"]
    await acd.aclose()


async def test_without_prompts_callers_hear_only_music(tmp_path: Path) -> None:
    acd, tel, _, scheduler, _ = await make(tmp_path, prompts=False)
    await acd.enqueue("c1", "chan-c1", CALLER)
    await scheduler.pass_time(60)
    await settle()
    assert tel.names() == ["start_moh"]
    await acd.aclose()


@pytest.mark.parametrize("language", ["fr"])
async def test_a_prompt_that_cannot_be_said_leaves_the_music_on(
    tmp_path: Path, language: str
) -> None:
    from cti.domain.phrases import PhraseError

    acd, tel, prompts, _, _ = await make(tmp_path)

    async def refuse(phrase_id: str, slots: Mapping[str, str], lang: str) -> list[str]:
        raise PhraseError(f"phrase {phrase_id!r} has no text in language {lang!r}")

    prompts.media = refuse  # type: ignore[method-assign]
    await acd.enqueue("c1", "chan-c1", {**CALLER, "language": language})
    await settle()
    assert tel.names() == ["start_moh"]
    await acd.aclose()
