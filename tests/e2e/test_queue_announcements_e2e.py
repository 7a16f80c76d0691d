"""Position and estimated-wait announcements for a waiting caller, end to end: real Asterisk,
sipp callers, a registered sipp agent phone, the real service (IVR -> ACD -> announcements
over the hold music -> ring the agent -> bridge).

The only qualified agent is in a long wrap-up after a first call, so a second caller waits:
the test sees the announcement played on that caller's channel (ARI PlaybackStarted/Finished
with the ACD's playback ids), played to its end, repeated at the queue's interval, and, when
the agent becomes available in the middle of an announcement, stopped so the caller joins the
agent's bridge at once. Run with an instance of your own:
    CTI_E2E_PBX=e2e-announce .venv/bin/pytest tests/e2e/test_queue_announcements_e2e.py
"""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cti.domain.agents.state import AgentState
from cti.domain.routing.events import CallConnected, CallOffered, CallQueued, RoutingEvent
from cti.features.routing.call_routing import ROUTING_EVENTS
from cti.platform.ari.events import (
    ChannelEnteredBridge,
    PlaybackFinished,
    PlaybackStarted,
)
from cti.runtime import Service
from tests.e2e.conftest import EventLog, call_from, flows_dir, service_settings, wait_until
from tests.e2e.pbx import AgentPhone, Pbx, SippResult, register_agent, run_sipp

# One backend: what the waiting caller hears is the subject, not the database.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

EVERY_S = 10  # the announcement (zh, position + wait) lasts about 8 s

RULES = f"""\
# One queue, one agent; a long wrap-up keeps the agent serving but not available.
version: 1
skills: [general]
default_queue: general
queues:
  general:
    skills: {{general: 1}}
    ring_timeout_s: 5
    wrap_up_s: 60
    max_wait_s: 300
    aht_s: 60
    fallback: {{action: voicemail}}
    announce: {{position: true, estimated_wait: true, first_after_s: 0, every_s: {EVERY_S}}}
agents:
  "1001": {{skills: {{general: 2}}}}
"""
PROMPT = "acd-announce-"  # the ACD's announcement playback ids


@dataclass
class Timeline:
    """Routing events with the monotonic time they arrived (a RoutingListener)."""

    events: list[tuple[float, RoutingEvent]] = field(default_factory=list)

    async def on_routing_event(self, event: RoutingEvent) -> None:
        self.events.append((time.monotonic(), event))

    async def wait(self, kind: type, call_id: str, timeout: float = 15.0) -> tuple[float, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, e in self.events:
                if isinstance(e, kind) and getattr(e, "call_id", None) == call_id:
                    return t, e
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {kind.__name__} for {call_id}; got {self.events}")


@dataclass
class Announcing:
    service: Service
    ari: EventLog
    routing: Timeline
    pbx: Pbx
    played: list[tuple[str, list[str], str]]  # (channel, media, playback id) asked of ARI

    async def call_from(self, caller: str) -> str:
        return await call_from(self.service, caller)

    def starts(self, channel: str) -> list[tuple[float, PlaybackStarted]]:
        """The announcements started on `channel`, in order (the first PlaybackStarted of
        each: Asterisk sends one per media of a playback)."""
        seen: set[str] = set()
        out = []
        for t, e in self.ari.events:
            if (
                isinstance(e, PlaybackStarted) and e.playback.id.startswith(PROMPT)
                and e.playback.target_uri == f"channel:{channel}"
                and e.playback.id not in seen
            ):
                seen.add(e.playback.id)
                out.append((t, e))
        return out

    def finished(self, playback_id: str) -> float | None:
        for t, e in self.ari.events:
            if isinstance(e, PlaybackFinished) and e.playback.id == playback_id:
                return t
        return None

    def entered_bridge(self, channel: str) -> float | None:
        for t, e in self.ari.events:
            if isinstance(e, ChannelEnteredBridge) and e.channel.id == channel:
                return t
        return None

    async def nth_start(
        self, channel: str, n: int, timeout: float
    ) -> tuple[float, PlaybackStarted]:
        await wait_until(lambda: len(self.starts(channel)) >= n, timeout,
                         what=f"announcement {n} on {channel}")
        return self.starts(channel)[n - 1]


def seconds_of(media: Sequence[str], sounds_dir: Path) -> float:
    """How long the media take to play, from their WAV files (sound:custom/<name>)."""
    total = 0.0
    for uri in media:
        path = sounds_dir / f"{uri.removeprefix('sound:custom/')}.wav"
        with wave.open(str(path)) as w:
            total += w.getnframes() / w.getframerate()
    return total


@pytest.fixture
async def announcing(pbx: Pbx, database_url: str, tmp_path: Path) -> AsyncIterator[Announcing]:
    rules_file = tmp_path / "routing.yaml"
    rules_file.write_text(RULES, encoding="utf-8")
    flows = flows_dir(tmp_path)  # the agent greeting, and routing_direct: straight to the ACD
    settings = service_settings(
        pbx, database_url, inbound_flow="routing_direct", flows_dir=flows, rules_file=rules_file,
    )
    service = Service.build(settings)
    ari = EventLog()
    service.dispatcher.listen(ari.record)
    routing = Timeline()
    service.bus.subscribe("test.routing", routing.on_routing_event, ROUTING_EVENTS)
    played: list[tuple[str, list[str], str]] = []
    real_play = service.telephony.play

    async def play(
        channel_id: str, media: Sequence[str], playback_id: str | None = None,
        lang: str | None = None,
    ) -> str:
        played.append((channel_id, list(media), playback_id or ""))
        return await real_play(channel_id, media, playback_id=playback_id, lang=lang)

    service.telephony.play = play  # type: ignore[method-assign]
    # What `cti phrases render` does for a deployment: the prompts exist before the first
    # caller waits (else the first one is rendered on demand, a moment later).
    for phrase in ("queue_next", "queue_wait_under_minute"):
        await service.prompts.media(phrase, {}, "zh")
    await service.start()
    try:
        yield Announcing(service, ari, routing, pbx, played)
    finally:
        await service.stop()


def _caller(pbx: Pbx, number: str) -> asyncio.Task[SippResult]:
    """A caller with speech on the line who stays until the far end's BYE."""
    return asyncio.create_task(
        run_sipp(
            pbx, "caller_wait_bye", service="4000", caller=number, pcap=pbx.media("speech"),
            max_wait_s=60, timeout=70,
        )
    )


async def test_waiting_caller_hears_position_and_wait_repeated_then_joins_the_agent(
    announcing: Announcing,
) -> None:
    a = announcing
    acd = a.service.acd
    phone: AgentPhone = await register_agent(a.pbx, "1001", mode="answer", ring_ms=400)
    try:
        await acd.agent_login("1001")
        # The first caller is answered at once (no announcement for an offered call), and
        # hangs up: the agent's 60 s wrap-up keeps them serving the queue, not available.
        first = _caller(a.pbx, "+8613800000701")
        first_call = await a.call_from("+8613800000701")
        await a.routing.wait(CallConnected, first_call)
        await asyncio.sleep(0.5)
        await a.service.telephony.hangup(first_call)
        await wait_until(
            lambda: acd.agent_status("1001").state is AgentState.WRAP_UP, what="wrap-up"
        )

        second = _caller(a.pbx, "+8613800000702")
        call = await a.call_from("+8613800000702")
        _, queued = await a.routing.wait(CallQueued, call)

        # On joining: "you are next; estimated wait less than one minute" (one agent serving;
        # history: the first call's talk + 60 s wrap-up, blended with its near-zero wait), in
        # the caller's language (the IVR's, zh), after the music was stopped for it.
        t1, start1 = await a.nth_start(call, 1, timeout=5)
        ours = [(m, pid) for ch, m, pid in a.played if ch == call and pid.startswith(PROMPT)]
        assert ours, a.played
        media, pid1 = ours[0]
        assert pid1 == start1.playback.id
        assert [m.removeprefix("sound:custom/").split("__")[:2] for m in media] == [
            ["queue_next", "zh"], ["queue_wait_under_minute", "zh"]
        ]
        length = seconds_of(media, a.pbx.sounds_dir)
        assert 4 < length < EVERY_S, length  # said whole before the next one is due

        # It is played to its end, then repeated every EVERY_S seconds while the caller waits.
        await wait_until(lambda: a.finished(pid1) is not None, length + 3, what="first end")
        t1_end = a.finished(pid1)
        assert t1_end is not None
        assert length - 0.5 < t1_end - t1 < length + 1.5, (t1_end - t1, length)
        t2, start2 = await a.nth_start(call, 2, timeout=EVERY_S + 3)
        assert EVERY_S - 1.0 < t2 - t1 < EVERY_S + 1.5, t2 - t1
        # the call offered at once heard none (only the agent's greeting, from the IVR)
        assert not [p for p in a.played if p[0] == first_call and p[2].startswith(PROMPT)]

        # The agent becomes available in the middle of the second announcement: the call
        # is offered at once, and on answer the playback is stopped so the caller joins the
        # bridge now, not when the announcement would have ended.
        await asyncio.sleep(0.3)
        assert a.finished(start2.playback.id) is None
        await acd.agent_available("1001")
        t_connected, connected = await a.routing.wait(CallConnected, call)
        assert connected.agent_id == "1001"  # type: ignore[attr-defined]
        t_offered, _ = await a.routing.wait(CallOffered, call)
        assert t_offered - t2 < 1.5  # the announcement did not hold the ring back
        await wait_until(lambda: a.entered_bridge(call) is not None, 3, what="caller bridged")
        t_bridged = a.entered_bridge(call)
        assert t_bridged is not None
        assert t_bridged - t_connected < 1.0, t_bridged - t_connected
        t2_end = a.finished(start2.playback.id)
        assert t2_end is not None
        assert t2_end - t2 < length - 2, (t2_end - t2, length)  # cut short, not waited out
        assert t2_end <= t_bridged + 0.2

        bridges = [b.channels for b in await a.service.telephony.list_bridges()]
        [channels] = [chs for chs in bridges if call in chs]
        (agent_leg,) = set(channels) - {call}
        names = {c.id: c.name for c in await a.service.telephony.list_channels()}
        assert names[agent_leg].startswith("PJSIP/1001-")
        assert acd.agent_status("1001").state is AgentState.ON_CALL

        # Nothing more is announced to a connected caller.
        await asyncio.sleep(1.0)
        assert all(t < t_connected for t, _ in a.starts(call))
        assert queued.queue == "general"  # type: ignore[attr-defined]

        await a.service.telephony.hangup(call)
        for result in await asyncio.gather(first, second):
            assert result.ok, result.describe()
    finally:
        await phone.stop()
