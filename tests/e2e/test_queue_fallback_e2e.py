"""The routing rules' fallback at max wait, end to end: real Asterisk, sipp callers with real
audio, the real service (IVR -> ACD -> nobody logged in -> max wait -> the fallback's flow).

Two callers wait at once, each in a queue of its own with a 3 s max wait and no agent:
- voicemail: the caller hears the prompt (played to its end), the beep, speaks and hangs up
  mid-message; the message is kept (Asterisk ends the recording with the call), listed at
  GET /voicemails with its mailbox and length, and GET /voicemails/{id}/audio is that WAV;
- callback: the caller presses 1 (RFC 4733) during the offer, hears the confirmation and is
  hung up; GET /callbacks lists the request with number, language and queue.
Run with an instance of your own:
    CTI_E2E_PBX=e2e-fallback .venv/bin/pytest tests/e2e/test_queue_fallback_e2e.py
"""

from __future__ import annotations

import asyncio
import io
import wave
from pathlib import Path

import httpx
import pytest

from cti.app import create_app
from cti.domain.routing.events import CallLeftQueue, RoutingEvent
from cti.features.auth.service import NewUser, Role
from cti.features.routing.call_routing import ROUTING_EVENTS
from cti.platform.ari.events import PlaybackFinished, RecordingStarted
from cti.runtime import Service
from tests.e2e import media
from tests.e2e.conftest import EventLog, call_from, flows_dir, service_settings, wait_until
from tests.e2e.pbx import Pbx, run_sipp

# One backend: the voicemail and call-back rows are stored on both backends by
# tests/api/test_fallback_api.py and tests/service/test_pending_callbacks.py.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

VOICEMAIL_CALLER = "+8613800000801"
CALLBACK_CALLER = "+8613800000802"

RULES = f"""\
# Nobody is logged in: every caller reaches max wait and goes to the queue's fallback.
version: 1
skills: [general]
default_queue: general
queues:
  general:
    skills: {{general: 1}}
    max_wait_s: 3
    fallback: {{action: voicemail, mailbox: sales-box}}
    announce: {{position: false, estimated_wait: false}}
  later:
    skills: {{general: 1}}
    max_wait_s: 3
    fallback: {{action: callback}}
    announce: {{position: false, estimated_wait: false}}
agents:
  "1001": {{skills: {{general: 2}}}}
rules:
  - name: call-back caller
    when: caller == "{CALLBACK_CALLER}"
    targets:
      - {{queue: later}}
"""


class Left:
    """CallLeftQueue events (a RoutingListener)."""

    def __init__(self) -> None:
        self.events: list[CallLeftQueue] = []

    async def on_routing_event(self, event: RoutingEvent) -> None:
        if isinstance(event, CallLeftQueue):
            self.events.append(event)


def _speech_pcap(pbx: Pbx, seconds: float) -> Path:
    """A caller talking for `seconds` (the standard speech repeated), as an RTP capture."""
    path = pbx.workdir / f"fallback-speech-{seconds:g}s-pcmu.pcap"
    if not path.exists():
        media.write_rtp_pcap(path, media.standard_signals(seconds)["speech"], "pcmu")
    return path


async def test_max_wait_sends_callers_to_voicemail_and_to_the_callback_offer(
    pbx: Pbx, database_url: str, tmp_path: Path
) -> None:
    rules_file = tmp_path / "routing.yaml"
    rules_file.write_text(RULES, encoding="utf-8")
    # routing_direct: straight into the ACD
    flows = flows_dir(tmp_path, repo=("agent_greeting", "queue_callback", "queue_voicemail"))
    settings = service_settings(
        pbx, database_url, inbound_flow="routing_direct", flows_dir=flows, rules_file=rules_file,
    )
    service = Service.build(settings)
    ari = EventLog()
    service.dispatcher.listen(ari.record)
    left = Left()
    service.bus.subscribe("test.routing", left.on_routing_event, ROUTING_EVENTS)
    # What `cti phrases render` does for a deployment: the prompts exist before the first call.
    for phrase in ("queue_voicemail_prompt", "queue_voicemail_thanks", "queue_callback_offer",
                   "queue_callback_confirmed", "menu_goodbye"):
        await service.prompts.media(phrase, {}, "zh")
    await service.start()
    await service.desk.auth.users.create(NewUser("boss", "boss-e2e-pw", Role.SUPERVISOR))
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(service)), base_url="http://cti"
    )
    try:
        r = await client.post("/auth/login", json={"username": "boss", "password": "boss-e2e-pw"})
        assert r.status_code == 200, r.text
        boss = {"Authorization": f"Bearer {r.json()['token']}"}

        # Voicemail: talks all along; max wait ~3 s + the prompt ~6 s, then ~7 s of message.
        voicemail = asyncio.create_task(run_sipp(
            pbx, "caller_hangup", caller=VOICEMAIL_CALLER, pcap=_speech_pcap(pbx, 24),
            variables={"talk_ms": 16000}, timeout=40,
        ))
        # Callback: presses 1 while the offer is said (it starts ~3-4 s after the answer).
        callback = asyncio.create_task(run_sipp(
            pbx, "caller_dtmf_wait_bye", caller=CALLBACK_CALLER, pcap=pbx.media("silence"),
            dtmf_pcap=pbx.media("dtmf-1"), variables={"dtmf_delay_ms": 5500}, max_wait_s=30,
            timeout=40,
        ))
        vm_call = await call_from(service, VOICEMAIL_CALLER)
        cb_call = await call_from(service, CALLBACK_CALLER)

        # Both reached max wait in their queue and left it for the queue's fallback.
        await wait_until(lambda: len(left.events) == 2, 10, what="both fallbacks")
        by_call = {e.call_id: e for e in left.events}
        assert by_call[vm_call].fallback == "voicemail"
        assert by_call[vm_call].queue == "general"
        assert by_call[vm_call].waited_s >= 3
        assert by_call[cb_call].fallback == "callback"
        assert by_call[cb_call].queue == "later"

        # The voicemail prompt was played to its end before the recording started.
        _, started = await ari.wait_for(
            lambda e: isinstance(e, RecordingStarted)
            and e.recording.target_uri == f"channel:{vm_call}", timeout=15,
        )
        prompt_end = [
            t for t, e in ari.events
            if isinstance(e, PlaybackFinished) and "queue_voicemail_prompt" in e.playback.media_uri
            and e.playback.target_uri == f"channel:{vm_call}"
        ]
        assert prompt_end, ari.types()
        assert isinstance(started, RecordingStarted)

        for result in await asyncio.gather(voicemail, callback):
            assert result.ok, result.describe()
        # The callback caller was hung up by the service (the confirmation, then BYE).
        assert callback.result().first("received", "BYE") is not None

        # The message is kept although the caller hung up mid-message.
        await wait_until(lambda: not service.voicemails._pending, 10, what="voicemail stored")
        await service.voicemails.flush()
        r = await client.get("/voicemails", headers=boss)
        assert r.status_code == 200, r.text
        [vm] = [v for v in r.json() if v["call_id"] == vm_call]
        assert vm["caller_number"] == VOICEMAIL_CALLER
        assert vm["mailbox"] == "sales-box"
        assert vm["queue"] == "general"
        assert vm["duration_s"] is not None, vm
        assert vm["duration_s"] > 1, vm
        r = await client.get(f"/voicemails/{vm['id']}/audio", headers=boss)
        assert r.status_code == 200
        assert r.headers["content-type"] == "audio/wav"
        with wave.open(io.BytesIO(r.content)) as w:
            seconds = w.getnframes() / w.getframerate()
            frames = w.readframes(w.getnframes())
        assert seconds > 1, seconds
        assert max(abs(int.from_bytes(frames[i:i + 2], "little", signed=True))
                   for i in range(0, len(frames), 2)) > 1000  # the caller's speech, not silence
        assert (await client.get("/voicemails/999999/audio", headers=boss)).status_code == 404

        r = await client.get("/callbacks", headers=boss)
        assert r.status_code == 200, r.text
        [cb] = [c for c in r.json() if c["call_id"] == cb_call]
        assert cb["caller_number"] == CALLBACK_CALLER
        assert cb["queue"] == "later"
        assert cb["lang"] == "zh"
        assert (await client.get("/callbacks")).status_code == 401
    finally:
        await client.aclose()
        await service.stop()

