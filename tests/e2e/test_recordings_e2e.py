"""Call recording end to end: a real call in a queue with `record: true` (a sipp caller sending
a 600 Hz tone, with a 2200 Hz stretch in the middle, and a registered sipp agent phone
answering with a 1400 Hz tone of its own) is recorded in its bridge. The stored WAV, fetched
through ARI, holds both parties (each tone found by FFT); the agent pauses the recording over
the caller's 2200 Hz stretch, which is nowhere in the file; the pause is on the call's record.

Run with an instance of your own:
  CTI_E2E_INSTANCE_SUFFIX=rec .venv/bin/pytest tests/e2e/test_recordings_e2e.py -q
"""

from __future__ import annotations

import asyncio
import io
import shutil
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cti.events import RecordingPaused, RecordingResumed, RecordingStarted, RecordingStopped
from cti.runtime import Service
from tests.e2e import media
from tests.e2e.conftest import DATA, call_from, flows_dir, service_settings, wait_until
from tests.e2e.pbx import Pbx, register_agent, run_sipp

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

# After the answer: nothing said, no line watch (the test tones would be a "noisy line"); a
# timed wait, as flows must have (a wait on nothing would be dead air after a procedure).
QUIET_FLOW = ("name: agent_quiet\nstart: talk\nnodes:\n"
              "  talk: {type: wait, seconds: 3600, next: talk}\n")

CALLER_HZ, AGENT_HZ, SECRET_HZ = 600.0, 1400.0, 2200.0
# The caller's line, from its answer: the 2200 Hz stretch is SECRET_FROM..SECRET_TO.
SECRET_FROM, SECRET_TO, LINE_S = 10.0, 14.0, 40.0
PAUSE_AT, RESUME_AT, HANGUP_AT = 8.0, 16.0, 22.0  # seconds after the caller's answer


def band(samples: np.ndarray[Any, Any], hz: float, rate: int = 8000, width: float = 15) -> float:
    """The spectrum's magnitude within `width` Hz of `hz`, over the whole file."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    freqs = np.fft.rfftfreq(samples.size, 1 / rate)
    return float(spectrum[(freqs > hz - width) & (freqs < hz + width)].sum())


def read(data: bytes) -> tuple[np.ndarray[Any, Any], int]:
    with wave.open(io.BytesIO(data)) as w:
        assert w.getsampwidth() == 2
        assert w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), "<i2"), w.getframerate()


async def test_a_recorded_call_holds_both_parties_and_not_the_paused_stretch(
    pbx: Pbx, database_url: str, tmp_path: Path
) -> None:
    rules_file = tmp_path / "routing.yaml"
    rules = (DATA / "routing_rules.yaml").read_text(encoding="utf-8")
    rules = rules.replace("  general:\n    skills: {general: 1}\n",
                          "  general:\n    skills: {general: 1}\n    record: true\n")
    assert "record: true" in rules
    rules_file.write_text(rules, encoding="utf-8")
    caller_pcap, agent_pcap = tmp_path / "rec-caller.pcap", tmp_path / "rec-agent.pcap"
    media.write_rtp_pcap(caller_pcap, media.concat(
        media.tone(CALLER_HZ, SECRET_FROM), media.tone(SECRET_HZ, SECRET_TO - SECRET_FROM),
        media.tone(CALLER_HZ, LINE_S - SECRET_TO)))
    media.write_rtp_pcap(agent_pcap, media.tone(AGENT_HZ, LINE_S))
    flows = flows_dir(tmp_path)
    # After the answer the call just talks: the product's agent_greeting would play a prompt
    # to the caller (out of the mix meanwhile) and its line watch would take a pure tone for
    # a noisy line and run that procedure.
    (flows / "agent_quiet.yaml").write_text(QUIET_FLOW, encoding="utf-8")
    settings = service_settings(pbx, database_url, inbound_flow="routing_direct",
                                flows_dir=flows, rules_file=rules_file, agent_flow="agent_quiet")
    service = Service.build(settings)
    seen: list[Any] = []
    times: dict[str, float] = {}

    async def note(event: Any) -> None:
        seen.append(event)
        times.setdefault(type(event).__name__, time.monotonic())

    service.bus.subscribe("test.recordings", note, (RecordingStarted, RecordingStopped,
                                                    RecordingPaused, RecordingResumed))
    await service.start()
    phone = await register_agent(pbx, "1004", ring_ms=300, pcap=agent_pcap)
    caller = None
    try:
        await service.acd.agent_login("1004")
        caller = asyncio.create_task(run_sipp(
            pbx, "caller_wait_bye", service="4000", caller="+8613800000777", pcap=caller_pcap,
            max_wait_s=60, timeout=70))
        call_id = await call_from(service, "+8613800000777")
        answered = time.monotonic()
        await wait_until(lambda: any(isinstance(e, RecordingStarted) for e in seen), 15,
                         "the recording to start")

        async def at(offset: float) -> None:
            await asyncio.sleep(max(0.0, answered + offset - time.monotonic()))

        await at(PAUSE_AT)
        await service.recordings.pause(call_id, "1004")
        await at(RESUME_AT)
        await service.recordings.resume(call_id, "1004")
        await at(HANGUP_AT)
        session = service.registry.get(call_id)
        assert session is not None
        await service.telephony.hangup(session.call.channel_id)
        await wait_until(lambda: any(isinstance(e, RecordingStopped) for e in seen), 15,
                         "the recording to be stored")
        result = await caller
        caller = None
        assert result.ok, result.describe()

        (stopped,) = [e for e in seen if isinstance(e, RecordingStopped)]
        assert not stopped.failed, stopped.reason
        assert [type(e).__name__ for e in seen] == [
            "RecordingStarted", "RecordingPaused", "RecordingResumed", "RecordingStopped"]
        (row,) = await service.recordings.of_call(call_id)
        assert row["status"] == "done", row
        assert len(row["pauses"]) == 1
        assert row["pauses"][0]["resumed_at"] is not None

        data = await service.telephony.recording_file(row["name"])
        samples, rate = read(data)
        seconds = samples.size / rate
        caller_band, agent_band = band(samples, CALLER_HZ, rate), band(samples, AGENT_HZ, rate)
        secret_band = band(samples, SECRET_HZ, rate)
        print(f"recording {row['name']}: {seconds:.1f} s, duration_s {row['duration_s']}, "
              f"600 Hz {caller_band:.3g}, 1400 Hz {agent_band:.3g}, 2200 Hz {secret_band:.3g}")
        # both parties are in the file, mixed
        assert caller_band > 0
        assert agent_band > 0
        assert 0.1 < caller_band / agent_band < 10
        # the paused stretch is not: the caller's 2200 Hz is no more than noise
        assert secret_band < 0.02 * min(caller_band, agent_band)
        # from bridge-up to hang-up, less the pause (not written), give or take a second
        recorded = times["RecordingStopped"] - times["RecordingStarted"]
        paused = times["RecordingResumed"] - times["RecordingPaused"]
        assert abs(seconds - (recorded - paused)) < 1.5, (seconds, recorded, paused)
    finally:
        if caller is not None:
            caller.cancel()
        await phone.stop()
        await service.stop()
        shutil.rmtree(tmp_path / "flows", ignore_errors=True)


async def test_a_transfer_continues_the_recording_as_a_new_segment(
    pbx: Pbx, database_url: str, tmp_path: Path
) -> None:
    """Agent 1001 (1400 Hz) takes the call and transfers it blind to 1002 (1800 Hz): two
    segments, each with the caller and only its own agent."""
    b_hz = 1800.0
    rules_file = tmp_path / "routing.yaml"
    rules = (DATA / "transfer_rules.yaml").read_text(encoding="utf-8")
    rules = rules.replace("  general:\n    skills: {general: 1}\n",
                          "  general:\n    skills: {general: 1}\n    record: true\n")
    assert "record: true" in rules
    rules_file.write_text(rules, encoding="utf-8")
    caller_pcap = tmp_path / "xfer-caller.pcap"
    a_pcap, b_pcap = tmp_path / "xfer-a.pcap", tmp_path / "xfer-b.pcap"
    media.write_rtp_pcap(caller_pcap, media.tone(CALLER_HZ, LINE_S))
    media.write_rtp_pcap(a_pcap, media.tone(AGENT_HZ, LINE_S))
    media.write_rtp_pcap(b_pcap, media.tone(b_hz, LINE_S))
    flows = flows_dir(tmp_path)
    (flows / "agent_quiet.yaml").write_text(QUIET_FLOW, encoding="utf-8")
    settings = service_settings(pbx, database_url, inbound_flow="routing_direct",
                                flows_dir=flows, rules_file=rules_file, agent_flow="agent_quiet")
    service = Service.build(settings)
    seen: list[Any] = []

    async def note(event: Any) -> None:
        seen.append(event)

    service.bus.subscribe("test.recordings", note, (RecordingStarted, RecordingStopped))
    await service.start()
    a = await register_agent(pbx, "1001", ring_ms=300, pcap=a_pcap)
    b = await register_agent(pbx, "1002", ring_ms=300, pcap=b_pcap)
    caller = None
    try:
        await service.acd.agent_login("1001")
        await service.acd.agent_login("1002")
        caller = asyncio.create_task(run_sipp(
            pbx, "caller_wait_bye", service="4000", caller="+8613800000778", pcap=caller_pcap,
            max_wait_s=60, timeout=70))
        call_id = await call_from(service, "+8613800000778")
        await wait_until(lambda: any(isinstance(e, RecordingStarted) for e in seen), 15,
                         "the recording to start")
        await asyncio.sleep(5)
        await service.transfers.transfer(call_id, agent_id="1001", target_type="agent",
                                         target="1002", kind="blind")
        await wait_until(
            lambda: sum(isinstance(e, RecordingStarted) for e in seen) == 2, 15,
            "the second segment")
        await asyncio.sleep(5)
        session = service.registry.get(call_id)
        assert session is not None
        await service.telephony.hangup(session.call.channel_id)
        await wait_until(
            lambda: sum(isinstance(e, RecordingStopped) for e in seen) == 2, 15,
            "both segments stored")
        result = await caller
        caller = None
        assert result.ok, result.describe()

        rows = await service.recordings.of_call(call_id)
        assert [(r["segment"], r["status"], r["agent_id"]) for r in rows] == [
            (1, "done", "1001"), (2, "done", "1002")], rows
        for row, mine, other in ((rows[0], AGENT_HZ, b_hz), (rows[1], b_hz, AGENT_HZ)):
            samples, rate = read(await service.telephony.recording_file(row["name"]))
            caller_band, mine_band = band(samples, CALLER_HZ, rate), band(samples, mine, rate)
            other_band = band(samples, other, rate)
            print(f"segment {row['segment']}: {samples.size / rate:.1f} s, 600 Hz "
                  f"{caller_band:.3g}, own agent {mine_band:.3g}, other agent {other_band:.3g}")
            assert 0.1 < caller_band / mine_band < 10
            assert other_band < 0.02 * min(caller_band, mine_band)
    finally:
        if caller is not None:
            caller.cancel()
        await a.stop()
        await b.stop()
        await service.stop()
