"""Call-backs instead of waiting, on the real path: the service on the sandbox Asterisk, three
sipp callers waiting in the general queue, the middle one pressing the call-back key (5) and
hanging up, agent 1001's sipp phone, and endpoint 1004 standing in for the trunk that calls
the caller back.

The middle caller hears the confirmation with their number (queue_callback_leaving) and is
then hung up; they keep their place (position 2 of 3 after leaving); when 1001 becomes
available the calls are answered in the original order: the first caller, then the caller
called back (1001's phone first, then the caller's number, bridged), then the third.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cti.domain.routing.events import CallConnected
from cti.events import QueueCallbackRequested
from cti.platform.settings import OutboundSettings
from tests.e2e.conftest import wait_until
from tests.e2e.pbx import Pbx, SippResult, register_agent, run_sipp
from tests.e2e.test_agent_desk_e2e import _bridge_of, _long_speech, _running_service

pytestmark = [pytest.mark.e2e]

FIRST, MIDDLE, LAST = "+8613800000701", "+8613800000702", "+8613800000703"


class Seen:
    def __init__(self) -> None:
        self.connected: list[CallConnected] = []
        self.callbacks: list[QueueCallbackRequested] = []

    async def on_event(self, event: CallConnected | QueueCallbackRequested) -> None:
        if isinstance(event, CallConnected):
            self.connected.append(event)
        else:
            self.callbacks.append(event)


def _caller(pbx: Pbx, number: str, *, press: str | None = None) -> asyncio.Task[SippResult]:
    if press is None:
        return asyncio.create_task(run_sipp(
            pbx, "caller_wait_bye", service="4000", caller=number, pcap=_long_speech(pbx),
            max_wait_s=120, timeout=150))
    return asyncio.create_task(run_sipp(
        pbx, "caller_dtmf_wait_bye", service="4000", caller=number, pcap=_long_speech(pbx),
        dtmf_pcap=pbx.media(f"dtmf-{press}"), variables={"dtmf_delay_ms": 2500},
        max_wait_s=60, timeout=90))


async def test_the_middle_caller_leaves_for_a_call_back_and_keeps_their_place(
    pbx: Pbx, tmp_path: Path
) -> None:
    service, _log, _offers = await _running_service(
        pbx, tmp_path, queue_callback_key="5",
        outbound=OutboundSettings(dial="PJSIP/{number}@1004", caller_id="+864001234567",
                                  customer_ring_s=15),
    )
    seen = Seen()
    service.bus.subscribe("test.queue_callbacks", seen.on_event,
                          (CallConnected, QueueCallbackRequested))
    # What the PBX is asked to do on each channel, in order: the confirmation, then the hang-up
    asked: list[tuple[str, str, str]] = []
    tel: Any = service.telephony
    play, hangup = tel.play, tel.hangup

    async def recording_play(channel_id: str, media: Any, *a: Any, **kw: Any) -> Any:
        asked.append(("play", channel_id, " ".join(media)))
        return await play(channel_id, media, *a, **kw)

    async def recording_hangup(channel_id: str, *a: Any, **kw: Any) -> Any:
        asked.append(("hangup", channel_id, ""))
        return await hangup(channel_id, *a, **kw)

    tel.play, tel.hangup = recording_play, recording_hangup
    router = service.acd.core.router

    def waiting(number: str) -> str | None:
        for s in service.registry.sessions():
            if s.call.caller_number == number and router.position(s.call.id) is not None:
                return s.call.id
        return None

    callers: list[asyncio.Task[SippResult]] = []
    try:
        async with (
            await register_agent(pbx, "1001", ring_ms=300),
            await register_agent(pbx, "1004", ring_ms=300) as called_back,
        ):
            await service.acd.agent_login("1001", available=False)  # nobody answers yet
            ids: dict[str, str] = {}
            for number in (FIRST, MIDDLE, LAST):
                callers.append(_caller(pbx, number, press="5" if number == MIDDLE else None))
                await wait_until(lambda n=number: waiting(n) is not None, timeout=15,  # type: ignore[misc]
                                 what=f"{number} waiting")
                ids[number] = waiting(number) or ""
            await wait_until(lambda: len(seen.callbacks) == 1, timeout=15,
                             what="the middle caller's call-back request")
            assert seen.callbacks[0].call_id == ids[MIDDLE]
            assert seen.callbacks[0].number == MIDDLE
            middle_result = await callers[1]
            assert middle_result.ok, middle_result.describe()  # they were hung up (BYE)
            # they heard the confirmation with their number before the line was hung up
            on_middle = [(what, media) for what, channel, media in asked
                         if channel == ids[MIDDLE]]
            confirm = [i for i, (what, media) in enumerate(on_middle)
                       if what == "play" and "queue_callback_leaving" in media]
            assert confirm, on_middle
            assert ("hangup", "") in on_middle[confirm[0]:], on_middle
            assert ("hangup", "") not in on_middle[:confirm[0]], on_middle
            await wait_until(lambda: service.registry.get(ids[MIDDLE]) is None,
                             what="the middle caller's call gone")
            # gone from the line, not from the queue: still between the other two
            assert [router.position(ids[n]) for n in (FIRST, MIDDLE, LAST)] == [1, 2, 3]

            await service.acd.agent_available("1001")
            await wait_until(lambda: len(seen.connected) == 1, timeout=20, what="first answered")
            assert seen.connected[0].call_id == ids[FIRST]
            await service.telephony.hangup(ids[FIRST])

            # the call-back's turn: 1001's phone, then the middle caller's number, bridged
            await wait_until(lambda: len(seen.connected) == 2, timeout=20,
                             what="the call-back taken")
            assert seen.connected[1].call_id == ids[MIDDLE]
            await wait_until(lambda: len(called_back.invites()) == 1, timeout=15,
                             what="the caller called back")
            (invite,) = called_back.invites()
            assert invite.first_line.startswith(f"INVITE sip:{MIDDLE}@"), invite.first_line
            channel: list[str] = []

            async def bridged() -> bool:
                call = service.acd.calls.get(ids[MIDDLE])
                if call is None or call.callback_channel is None:
                    return False
                bridge = await _bridge_of(service, call.callback_channel)
                if bridge is None or len(bridge.channels) != 2:
                    return False
                channel[:] = [call.callback_channel]
                return True

            for _ in range(200):
                if await bridged():
                    break
                await asyncio.sleep(0.05)
            assert channel, "the called-back caller was not bridged with the agent"
            bridge = await _bridge_of(service, channel[0])
            assert bridge is not None
            agent_leg = next(c for c in bridge.channels if c != channel[0])
            assert agent_leg == service.acd.agent_channel_of(ids[MIDDLE])
            assert service.acd.core.agent_of_call(ids[MIDDLE]) == "1001"
            await service.telephony.hangup(channel[0])

            await wait_until(lambda: len(seen.connected) == 3, timeout=20, what="last answered")
            assert [c.call_id for c in seen.connected] == [ids[FIRST], ids[MIDDLE], ids[LAST]]
            await service.telephony.hangup(ids[LAST])
            for task in (callers[0], callers[2]):
                result = await task
                assert result.ok, result.describe()
    finally:
        for task in callers:
            if not task.done():
                task.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
        await service.stop()
