"""The first call, end to end: real Asterisk, real SIP caller (sipp) with RTP, real database."""

from __future__ import annotations

import asyncio

import pytest

from cti.domain.calls import CallState
from cti.platform.ari.client import UNUSED_EVENT_TYPES
from cti.platform.ari.events import PlaybackFinished, PlaybackStarted, StasisStart
from cti.runtime import Service
from tests.e2e.conftest import EventLog, RunningService, service_settings, wait_until
from tests.e2e.pbx import Pbx, run_sipp

# One backend: the call log is stored and read back on SQLite and PostgreSQL by
# tests/service/test_call_repository.py (with a restarted service's routing attributes); here the
# call itself is the subject, on the embedded default (SQLite).
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


def _started(log: EventLog) -> str:
    starts = [e for _, e in log.of_type("StasisStart") if isinstance(e, StasisStart)]
    assert starts, f"no StasisStart; events: {log.types()}"
    return starts[0].channel.id


async def test_inbound_call_is_answered_greeted_and_logged(pbx: Pbx, cti: RunningService) -> None:
    sipp = asyncio.create_task(
        run_sipp(
            pbx,
            "caller_hangup",
            service="4000",
            caller="+8613800000001",
            pcap=pbx.media("speech"),
            variables={"talk_ms": 16000},
            timeout=40,
        )
    )
    _, start = await cti.log.wait_for(lambda e: isinstance(e, StasisStart), timeout=10)
    assert isinstance(start, StasisStart)
    channel = start.channel.id
    assert start.args == ["inbound", "4000"]
    _played_at, playback = await cti.log.wait_for(
        lambda e: isinstance(e, PlaybackFinished) and e.playback.target_uri == f"channel:{channel}",
        timeout=20,
    )
    assert isinstance(playback, PlaybackFinished)
    assert playback.playback.media_uri.startswith("sound:custom/greeting_answer")
    result = await sipp
    assert result.ok, result.describe()
    bye = result.first("sent", "BYE")
    assert bye is not None
    # the greeting played to its end before the caller hung up
    assert any(isinstance(e, PlaybackStarted) for _, e in cti.log.events)
    # Asterisk was asked not to send the event types nobody reads (a fifth of our CPU)
    assert not set(UNUSED_EVENT_TYPES) & set(cti.log.types())

    await wait_until(lambda: cti.service.registry.get(channel) is None, what="call closed")
    row = await cti.service.calls_repo.get(channel)
    assert row is not None
    assert row.state is CallState.ENDED
    assert row.caller_number == "+8613800000001"
    assert row.dialled_number == "4000"
    assert row.answered_at is not None
    assert row.ended_at is not None
    assert row.arrived_at <= row.answered_at < row.ended_at
    assert (row.ended_at - row.answered_at).total_seconds() > 15
    assert row.greeting_played is True
    assert (row.hangup_cause, row.ended_by) == (16, "caller")


async def test_ari_socket_drop_mid_call_reconnects_and_ends_the_call_cleanly(
    pbx: Pbx, cti: RunningService
) -> None:
    service = cti.service
    sipp = asyncio.create_task(
        run_sipp(
            pbx,
            "caller_hangup",
            pcap=pbx.media("speech"),
            variables={"talk_ms": 6000},
            timeout=30,
        )
    )
    await cti.log.wait_for(lambda e: isinstance(e, StasisStart))
    channel = _started(cti.log)
    await wait_until(
        lambda: (s := service.registry.get(channel)) is not None and s.call.answered_at is not None,
        what="answered",
    )
    generation = service.ari.generation
    await service.ari.drop_connection()
    await wait_until(
        lambda: (r := service.resync.last) is not None and r.generation == generation + 1,
        what="reconnect and resync",
    )
    assert service.resync.last is not None
    assert service.resync.last.kept == 1
    assert service.registry.get(channel) is not None  # the call was not lost

    result = await sipp
    assert result.ok, result.describe()
    await wait_until(lambda: service.registry.get(channel) is None, what="call closed")
    row = await service.calls_repo.get(channel)
    assert row is not None
    assert row.state is CallState.ENDED
    assert (row.hangup_cause, row.ended_by) == (16, "caller")


async def test_service_restart_mid_call_adopts_the_call_and_logs_its_end(
    pbx: Pbx, database_url: str
) -> None:
    settings = service_settings(pbx, database_url)
    first = Service.build(settings)
    await first.start()
    sipp = asyncio.create_task(
        run_sipp(
            pbx,
            "caller_hangup",
            pcap=pbx.media("speech"),
            variables={"talk_ms": 7000},
            timeout=30,
        )
    )
    try:
        await wait_until(lambda: len(first.registry) == 1, what="call arrived")
        channel = first.registry.sessions()[0].call.id
        await wait_until(
            lambda: first.registry.sessions()[0].call.answered_at is not None, what="answered"
        )
    finally:
        await first.stop()  # the process goes away; the call stays up on the PBX

    second = Service.build(settings)
    await second.start()
    try:
        assert second.resync.last is not None
        assert second.resync.last.adopted == 1
        adopted = second.registry.get(channel)
        assert adopted is not None
        assert adopted.adopted
        assert adopted.call.state is CallState.ANSWERED
        result = await sipp
        assert result.ok, result.describe()
        await wait_until(lambda: second.registry.get(channel) is None, what="call closed")
        row = await second.calls_repo.get(channel)
        assert row is not None
        assert row.state is CallState.ENDED
        assert (row.hangup_cause, row.ended_by) == (16, "caller")
    finally:
        await second.stop()
