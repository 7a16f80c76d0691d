"""The scripted procedures on real calls (docs/phrases.md#row-4, #row-5b, #row-6b; issue 3,
"Proof on a real call"), and the callers' phone menu by DTMF.

Real Asterisk (a sandbox instance of its own), real SIP callers (sipp) sending RTP audio made
for each case, the real service and database. Every wait is measured from the ARI events'
own time stamps, i.e. on the caller's line (PlaybackFinished of a prompt -> PlaybackStarted of
the next, or -> the caller's ChannelDestroyed), and to the BYE in sipp's trace, and asserted
within +-250 ms of the specification; when the service received each event is printed beside.

No dead air, no hang-up on a present caller (docs/no_dead_air.md): a caller who speaks during
the silent-call goodbye hears the flow's next step at once; one who speaks in the wait after
the agent's hang-up request is found there when the hang-up is due, and not hung up on.

The callers of one test run at once against one service (as on a real line), so the whole file
takes about as long as its longest call: ~1.5 min (one database, see pytestmark), with Mandarin
prompts at a person's pace (docs/prompts.md: the row 1 greeting ~5.9 s, the goodbye ~5.5 s).

    .venv/bin/pytest tests/e2e/test_procedures_e2e.py -q -s    (-s prints every measured wait)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cti.app import create_app
from cti.domain.calls import CallState
from cti.domain.routing.announcements import PHRASE_IDS as ANNOUNCEMENT_PHRASES
from cti.events import ProcedureEnded
from cti.features.auth.service import NewUser, Role
from cti.features.ivr.caller_audio import is_tap_channel
from cti.features.phrases.library import load_phrase_library
from cti.platform.ari.events import AriEvent, ChannelDtmfReceived, StasisStart
from cti.platform.audio.render import install, render_all
from cti.platform.settings import REPO_ROOT, CompanySettings
from cti.runtime import Service
from tests.e2e import media
from tests.e2e.conftest import EventLog, RunningService, service_settings, wait_until
from tests.e2e.pbx import Pbx, SippResult, run_sipp

# One backend: the waits are the subject. PostgreSQL, so the procedure audit is read back from
# it on a real call; on SQLite by test_waits_heard_e2e.py and tests/unit/test_ivr_runner.py.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]

SPEC_WAIT_S = 5.0  # rows 4 and 6b, and row 5b's default
TOLERANCE_S = 0.25
BARGE_IN_S = 1.0  # a menu key stops its prompt and the next step starts "at once"
PHRASES_DIR = REPO_ROOT / "scripts_lib"
COMPANY = CompanySettings()  # zh, the product's default language
SLOTS = {"company": COMPANY.name, "agent_id": COMPANY.default_agent_id}


# --- the sandbox, the prompts, the callers' audio ---------------------------------------------


@pytest.fixture(scope="module")
def pbx() -> Iterator[Pbx]:
    """An Asterisk instance of this module's own: other e2e runs on the shared instance would
    take the Stasis app (ApplicationReplaced) from under these long calls."""
    with Pbx(os.environ.get("CTI_E2E_PROCEDURES_PBX", "e2e-procedures")) as instance:
        # What `cti phrases render` does for a deployment: every prompt rendered (only changed
        # ones again) and installed, so no prompt is rendered on demand in the middle of a wait.
        library = load_phrase_library(PHRASES_DIR)
        plan = library.render_plan({"company": {"zh": [COMPANY.name], "en": [COMPANY.name_en]}})
        render_all(plan, PHRASES_DIR / "audio")
        install(PHRASES_DIR / "audio", instance.sounds_dir)
        yield instance


def seconds_of(phrase: str, lang: str = "zh", slots: dict[str, str] | None = None) -> float:
    """How long a phrase plays (its sound files, as the PBX has them)."""
    library = load_phrase_library(PHRASES_DIR)
    total = 0.0
    for name in library.media_files(phrase, lang, slots or {}):
        with wave.open(str(REPO_ROOT / "scripts_lib/audio/rendered" / f"{name}.wav")) as w:
            total += w.getnframes() / w.getframerate()
    return total


@dataclass(frozen=True)
class LineAudio:
    """RTP captures for the callers, made for these cases (written once per chroot)."""

    silence: Path  # digital silence for the whole call
    hiss: Path  # a silent caller on a line with faint hiss (-50 dBFS)
    quiet: Path  # speech 30 dB down, for the whole call
    noisy: Path  # speech under white noise as loud as the speech
    noise: Path  # loud white noise only
    speech: Path  # normal speech, then the caller listens
    silence_then_speech: Path  # silent into the silent-call procedure, then speaks
    speech_starts_at: float
    speech_in_goodbye: Path  # silent through 4a and 4b, speaks during the 4c goodbye
    speech_in_goodbye_at: float
    speech_after_goodbye: Path  # row 4 by the agent's hang-up: speaks in the wait after 4c
    speech_after_goodbye_at: float
    dtmf_1_2: Path  # menu keys: 1 (中文), 2 s later 2 (technical support)
    dtmf_2_3: Path  # menu keys: 2 (English), 2 s later 3 (complaints)


@pytest.fixture(scope="module")
def line_audio(pbx: Pbx) -> LineAudio:
    out = pbx.workdir / "procedures-media"
    signals = media.standard_signals(seconds=60.0)
    greeting = seconds_of("greeting_answer", slots=SLOTS)
    # In the middle of the first 5 s wait of the silent-call procedure.
    speech_at = greeting + SPEC_WAIT_S + seconds_of("silent_call_first") + 2.5
    talk = media.concat(media.silence(speech_at), media.speech(media.SPEECH_TEXT))
    # Silent through 4a, 4b and their waits; speaking 3 s into the 11.6 s goodbye (4c).
    in_goodbye_at = greeting + SPEC_WAIT_S + sum(
        (seconds_of("silent_call_first"), SPEC_WAIT_S, seconds_of("silent_call_second"),
         SPEC_WAIT_S, 3.0)
    )
    # The agent's hang-up as 4a starts: the goodbye at once, then its 5 s wait, which speech
    # no longer stops. The caller speaks from 2 s into that wait on, until after its end.
    after_goodbye_at = greeting + SPEC_WAIT_S + seconds_of("silent_call_goodbye") + 2.0
    long_talk = signals["speech"][: 16 * media.SAMPLE_RATE]
    files = {
        "silence": signals["silence"],
        "hiss": signals["hiss"],
        "quiet": signals["speech-quiet"],
        "noisy": signals["speech-noisy"][: 20 * media.SAMPLE_RATE],
        "noise": signals["noise"][: 20 * media.SAMPLE_RATE],
        "speech": signals["speech"][: 8 * media.SAMPLE_RATE],
        "silence_then_speech": talk,
        "speech_in_goodbye": media.concat(media.silence(in_goodbye_at), long_talk),
        "speech_after_goodbye": media.concat(media.silence(after_goodbye_at), long_talk),
    }
    paths = {name: out / f"{name}.pcap" for name in files}
    for name, samples in files.items():
        media.write_rtp_pcap(paths[name], samples)
    media.write_dtmf_pcap(out / "dtmf-1-2.pcap", "12", gap_ms=2000)
    media.write_dtmf_pcap(out / "dtmf-2-3.pcap", "23", gap_ms=2000)
    return LineAudio(
        **paths, speech_starts_at=speech_at, speech_in_goodbye_at=in_goodbye_at,
        speech_after_goodbye_at=after_goodbye_at,
        dtmf_1_2=out / "dtmf-1-2.pcap", dtmf_2_3=out / "dtmf-2-3.pcap",
    )


@contextlib.asynccontextmanager
async def running_service(pbx: Pbx, database_url: str, **settings: Any) -> AsyncIterator[
    RunningService
]:
    service = Service.build(service_settings(pbx, database_url, **settings))
    log = EventLog()
    service.dispatcher.listen(log.record)
    await service.start()
    try:
        yield RunningService(service, log)
    finally:
        await service.stop()


# --- reading the call from the ARI events -----------------------------------------------------


def ari_time(event: AriEvent) -> datetime:
    """Asterisk's own time stamp of an event (what the caller's line saw), UTC."""
    return datetime.strptime(event.timestamp, "%Y-%m-%dT%H:%M:%S.%f%z")


def utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Moment:
    """When something happened on the line: Asterisk's time stamp of the ARI event (what the
    caller hears; asserted) and when the service received the event (monotonic; reported)."""

    pbx: datetime
    arrived: float


@dataclass(frozen=True)
class Prompt:
    phrase: str
    started: Moment
    finished: Moment | None


def prompts(log: EventLog, channel: str) -> list[Prompt]:
    """The prompts played to a channel, in order (a prompt of several files counts once)."""
    started: dict[str, tuple[str, Moment]] = {}
    finished: dict[str, Moment] = {}
    for at, event in log.events:
        playback = getattr(event, "playback", None)
        if playback is None or playback.target_uri != f"channel:{channel}":
            continue
        if event.type == "PlaybackStarted" and playback.id not in started:
            phrase = playback.media_uri.removeprefix("sound:custom/").split("__")[0]
            started[playback.id] = (phrase, Moment(ari_time(event), at))
        elif event.type == "PlaybackFinished":
            finished[playback.id] = Moment(ari_time(event), at)
    return [
        Prompt(phrase, moment, finished.get(pid))
        for pid, (phrase, moment) in sorted(started.items(), key=lambda kv: kv[1][1].arrived)
    ]


def on_channel(type_: str, channel: str) -> Callable[[AriEvent], bool]:
    return lambda e: e.type == type_ and getattr(e, "channel", None) is not None \
        and e.channel.id == channel  # type: ignore[attr-defined]


def moments(log: EventLog, type_: str, channel: str) -> list[tuple[Moment, AriEvent]]:
    match = on_channel(type_, channel)
    return [(Moment(ari_time(e), at), e) for at, e in log.events if match(e)]


async def caller_channel(log: EventLog, caller: str, timeout: float = 20.0) -> str:
    _, start = await log.wait_for(
        lambda e: isinstance(e, StasisStart) and e.channel.caller.number == caller
        and not is_tap_channel(e.channel.id),
        timeout=timeout,
    )
    return start.channel.id  # type: ignore[attr-defined, no-any-return]


MEASURED: list[str] = []  # printed at the end of each test (pytest -s shows them)


def assert_wait(case: str, what: str, start: Moment | None, end: Moment | datetime | None,
                expected: float = SPEC_WAIT_S) -> float:
    """The wait between two moments on the line, within +-250 ms of `expected`."""
    assert start is not None, f"{case}: {what}: no start"
    assert end is not None, f"{case}: {what}: no end"
    end_pbx = end.pbx if isinstance(end, Moment) else end
    waited = (end_pbx - start.pbx).total_seconds()
    seen = f"(service saw {(end.arrived - start.arrived) * 1000:.0f})" \
        if isinstance(end, Moment) else "(sipp trace)"
    MEASURED.append(f"{case:>26}: {what:<32} {waited * 1000:6.0f} ms {seen}")
    assert abs(waited - expected) <= TOLERANCE_S, (
        f"{case}: {what} took {waited:.3f} s, the spec says {expected:.1f} s +- {TOLERANCE_S} s"
    )
    return waited


async def assert_phrases(
    case: str, cti: RunningService, channel: str, played: list[Prompt], expected: list[str]
) -> None:
    if [p.phrase for p in played] != expected:
        raise AssertionError(f"{case}: prompts {played}; {await story(cti, channel)}")


async def story(cti: RunningService, channel: str) -> str:
    """For failure messages: what the IVR recorded and what the detector heard."""
    audit = await audit_of(cti.service, channel)
    runs = [(r["procedure"], r["started_by"], r["end_reason"],
             [(t["kind"], t["detail"].get("trigger", "")) for t in r["timeline"]])
            for r in audit["runs"]]
    talk = [e.type for _, e in cti.log.events if e.type.startswith("ChannelTalking")
            and getattr(e, "channel", None) is not None and e.channel.id == channel]
    return f"audit runs {runs}; TALK_DETECT {talk}"


async def assert_ended_by_service(
    case: str, cti: RunningService, channel: str, last: Prompt, sipp: SippResult
) -> None:
    """The service hung up 5 s after the last prompt ended: ChannelDestroyed, the BYE at the
    caller, and the call row (ended by the service, normal clearing)."""
    assert sipp.ok, f"{case}: {sipp.describe()}"
    await cti.log.wait_for(on_channel("ChannelDestroyed", channel), timeout=5)
    (gone, _), *_ = moments(cti.log, "ChannelDestroyed", channel)
    assert_wait(case, f"{last.phrase} end -> hang-up", last.finished, gone)
    bye = sipp.first("received", "BYE")
    assert bye is not None, f"{case}: {sipp.describe()}"
    assert_wait(case, "... -> BYE at the caller", last.finished, utc(bye.at))
    await wait_until(lambda: cti.service.registry.get(channel) is None, what=f"{case} closed")
    row = await cti.service.calls_repo.get(channel)
    assert row is not None
    assert row.state is CallState.ENDED
    assert (row.ended_by, row.hangup_cause) == ("service", 16), f"{case}: {row}"


async def procedure_runs(service: Service, channel: str) -> list[dict[str, Any]]:
    await service.audit.flush()
    runs: list[dict[str, Any]] = (await service.audit.runs_for_call(channel))["runs"]
    return runs


def timeline_kinds(run: dict[str, Any]) -> list[str]:
    return [step["kind"] for step in run["timeline"]]


async def audit_of(service: Service, channel: str) -> dict[str, Any]:
    await service.audit.flush()
    return await service.audit.runs_for_call(channel)


def assert_timeline_waits(case: str, run: dict[str, Any]) -> None:
    """The service's own record: each wait that ran out (wait_started -> wait_finished) took
    its seconds (quality review's proof that the script was followed)."""
    steps = run["timeline"]
    waits = [
        (steps[i], steps[i + 1]) for i in range(len(steps) - 1)
        if (steps[i]["kind"], steps[i + 1]["kind"]) == ("wait_started", "wait_finished")
    ]
    assert waits, f"{case}: no wait in the audit timeline {timeline_kinds(run)}"
    for begin, end in waits:
        waited = (end["offset_ms"] - begin["offset_ms"]) / 1000
        assert abs(waited - begin["detail"]["seconds"]) <= TOLERANCE_S, (case, begin, end)


# --- the cases: each one caller, all at once against one service -------------------------------


async def silent_call(cti: RunningService, pbx: Pbx, caller: str, pcap: Path | None) -> None:
    """Row 4: greeting -> silence -> 4a -> 5 s -> 4b -> 5 s -> 4c goodbye -> 5 s -> hang-up."""
    case = f"silent call {caller}"
    scenario = "caller_wait_bye" if pcap is not None else "caller_mute_wait_bye"
    sipp = asyncio.create_task(
        run_sipp(pbx, scenario, caller=caller, pcap=pcap, max_wait_s=120, timeout=130)
    )
    channel = await caller_channel(cti.log, caller)
    result = await sipp
    played = prompts(cti.log, channel)
    await assert_phrases(case, cti, channel, played, [
        "greeting_answer", "silent_call_first", "silent_call_second", "silent_call_goodbye",
    ])
    greeting, first, second, goodbye = played
    silence = cti.service.settings.detection.silence_seconds
    assert_wait(case, "greeting end -> 4a (silence)", greeting.finished, first.started, silence)
    assert_wait(case, "4a end -> 4b", first.finished, second.started)
    assert_wait(case, "4b end -> 4c goodbye", second.finished, goodbye.started)
    await assert_ended_by_service(case, cti, channel, goodbye, result)
    (run,) = await procedure_runs(cti.service, channel)
    assert (run["procedure"], run["started_by"], run["hung_up"], run["end_reason"]) == (
        "silent_call", "auto", True, "hangup"
    )
    assert timeline_kinds(run) == [
        "prompt_started", "prompt_finished", "wait_started", "wait_finished",
    ] * 3 + ["hangup"]
    assert_timeline_waits(case, run)
    # Judged again before the hang-up (docs/no_dead_air.md): nothing but silence heard; with
    # no RTP at all there may be nothing to judge by, which the audit says too.
    presence = run["timeline"][-1]["detail"]["presence"]
    assert presence in (("absent", "unknown") if pcap is None else ("absent",)), (case, run)


async def speech_ends_silent_call(
    cti: RunningService, pbx: Pbx, caller: str, audio: LineAudio
) -> None:
    """Row 4: "any sound of speech from the caller ends the procedure and the call goes on"."""
    case = "speech ends row 4"
    # The caller hangs up 4 s after the service would have, had the procedure gone on.
    would_hang_up = audio.speech_starts_at + sum(
        (SPEC_WAIT_S, seconds_of("silent_call_second"), SPEC_WAIT_S,
         seconds_of("silent_call_goodbye"), SPEC_WAIT_S)
    )
    sipp = asyncio.create_task(run_sipp(
        pbx, "caller_hangup", caller=caller, pcap=audio.silence_then_speech,
        variables={"talk_ms": round((would_hang_up + 4) * 1000)}, timeout=130,
    ))
    channel = await caller_channel(cti.log, caller)
    result = await sipp
    assert result.ok, f"{case}: {result.describe()}"
    assert result.first("sent", "BYE") is not None
    assert result.first("received", "BYE") is None, f"{case}: the service hung up"
    played = prompts(cti.log, channel)
    # No agent on these calls: the procedure's end hands the caller to the flow's next step
    # (then: the transfer phrase, then the queue), whose music or fallback may follow.
    await assert_phrases(case, cti, channel, played[:3],
                         ["greeting_answer", "silent_call_first", "menu_transfer"])
    greeting, first, _ = played[:3]
    silence = cti.service.settings.detection.silence_seconds
    assert_wait(case, "greeting end -> 4a (silence)", greeting.finished, first.started, silence)
    (run,) = await procedure_runs(cti.service, channel)
    assert (run["procedure"], run["started_by"], run["hung_up"], run["end_reason"]) == (
        "silent_call", "auto", False, "completed"
    )
    trigger = [s for s in run["timeline"] if s["kind"] == "trigger"]
    assert [t["detail"]["trigger"] for t in trigger] == ["speech"]
    # Ended within 1.5 s of the caller's first word: sipp starts the capture on its ACK.
    ack = result.first("sent", "ACK")
    assert ack is not None
    first_word = utc(ack.at) + timedelta(seconds=audio.speech_starts_at)
    heard_after = (datetime.fromisoformat(trigger[0]["at"]) - first_word).total_seconds()
    MEASURED.append(f"{case:>22}: {'speech -> procedure ended':<40} {heard_after * 1000:8.0f} ms")
    assert 0 <= heard_after <= 1.5, f"{case}: speech heard {heard_after:.2f} s after it began"
    await wait_until(lambda: cti.service.registry.get(channel) is None, what=f"{case} closed")
    row = await cti.service.calls_repo.get(channel)
    assert row is not None
    assert (row.ended_by, row.hangup_cause) == ("caller", 16), row


async def quiet_caller(cti: RunningService, pbx: Pbx, caller: str, pcap: Path) -> None:
    """Row 5b: speak-louder -> still too quiet -> change-phone phrase -> 5 s -> hang-up."""
    case = "quiet caller (5b)"
    sipp = asyncio.create_task(
        run_sipp(pbx, "caller_wait_bye", caller=caller, pcap=pcap, max_wait_s=120, timeout=130)
    )
    channel = await caller_channel(cti.log, caller)
    result = await sipp
    played = prompts(cti.log, channel)
    await assert_phrases(
        case, cti, channel, played, ["greeting_answer", "quiet_speak_louder", "quiet_change_phone"]
    )
    await assert_ended_by_service(case, cti, channel, played[-1], result)
    (run,) = await procedure_runs(cti.service, channel)
    assert (run["procedure"], run["started_by"], run["hung_up"]) == ("quiet", "auto", True)
    assert [s["detail"]["trigger"] for s in run["timeline"] if s["kind"] == "trigger"] == [
        "audio:quiet"  # judged "still unclear" from the caller's audio, not the recheck timeout
    ]
    assert_timeline_waits(case, run)


async def noisy_line(cti: RunningService, pbx: Pbx, caller: str, pcap: Path, case: str) -> None:
    """Row 6b: the noisy-line goodbye -> 5 s -> hang-up."""
    sipp = asyncio.create_task(
        run_sipp(pbx, "caller_wait_bye", caller=caller, pcap=pcap, max_wait_s=120, timeout=130)
    )
    channel = await caller_channel(cti.log, caller)
    result = await sipp
    played = prompts(cti.log, channel)
    await assert_phrases(case, cti, channel, played, ["greeting_answer", "noisy_goodbye"])
    await assert_ended_by_service(case, cti, channel, played[-1], result)
    (run,) = await procedure_runs(cti.service, channel)
    assert (run["procedure"], run["started_by"], run["hung_up"]) == ("noisy", "auto", True)
    assert_timeline_waits(case, run)


async def greeting_done(log: EventLog, channel: str) -> None:
    await log.wait_for(
        lambda e: e.type == "PlaybackFinished" and e.playback.target_uri == f"channel:{channel}"
        and "greeting_answer" in e.playback.media_uri,  # type: ignore[attr-defined]
        timeout=40,
    )


async def prompt_started(log: EventLog, channel: str, phrase: str) -> None:
    await log.wait_for(
        lambda e: e.type == "PlaybackStarted" and e.playback.target_uri == f"channel:{channel}"
        and f"/{phrase}__" in e.playback.media_uri,  # type: ignore[attr-defined]
        timeout=40,
    )


Http = Callable[[str, str], Awaitable[httpx.Response]]


async def agent_noisy_line_by_http(
    cti: RunningService, pbx: Pbx, caller: str, pcap: Path, post: Http
) -> None:
    """The agent page's one click (POST /calls/{id}/procedures/noisy_line), then its hang-up
    button during the goodbye: the procedure keeps the line until 5 s after the goodbye."""
    case = "agent 6b (HTTP)"
    sipp = asyncio.create_task(
        run_sipp(pbx, "caller_wait_bye", caller=caller, pcap=pcap, max_wait_s=120, timeout=130)
    )
    channel = await caller_channel(cti.log, caller)
    await greeting_done(cti.log, channel)
    started = await post(channel, "procedures/noisy_line")
    assert started.status_code == 200, started.text
    await prompt_started(cti.log, channel, "noisy_goodbye")
    hangup = await post(channel, "hangup")
    assert (hangup.status_code, hangup.json()["state"]) == (200, "procedure"), hangup.text
    result = await sipp
    played = prompts(cti.log, channel)
    await assert_phrases(case, cti, channel, played, ["greeting_answer", "noisy_goodbye"])
    await assert_ended_by_service(case, cti, channel, played[-1], result)
    audit = await audit_of(cti.service, channel)
    (run,) = audit["runs"]
    assert (run["procedure"], run["started_by"], run["agent_id"], run["hung_up"]) == (
        "noisy", "agent", "1001", True
    )
    assert [d["what"] for d in audit["departures"]] == ["agent_hangup_during_goodbye"]


async def agent_noisy_line_by_api(cti: RunningService, pbx: Pbx, caller: str, pcap: Path) -> None:
    """The same through the service API the page calls (`IvrRunner.start_procedure`)."""
    case = "agent 6b (API)"
    sipp = asyncio.create_task(
        run_sipp(pbx, "caller_wait_bye", caller=caller, pcap=pcap, max_wait_s=120, timeout=130)
    )
    channel = await caller_channel(cti.log, caller)
    await greeting_done(cti.log, channel)
    await cti.service.ivr.start_procedure(channel, "noisy_line", agent_id="1001")
    # The agent's hang-up at once: taken over by the procedure, not a direct hang-up.
    assert await cti.service.ivr.request_hangup(channel, "1001") is True
    result = await sipp
    played = prompts(cti.log, channel)
    await assert_phrases(case, cti, channel, played, ["greeting_answer", "noisy_goodbye"])
    await assert_ended_by_service(case, cti, channel, played[-1], result)
    (run,) = await procedure_runs(cti.service, channel)
    assert (run["procedure"], run["started_by"], run["agent_id"]) == ("noisy", "agent", "1001")


async def agent_hangup_in_silent_call(
    cti: RunningService, pbx: Pbx, caller: str, pcap: Path
) -> None:
    """The agent's hang-up during row 4 (before its goodbye): the goodbye, 5 s, then hang-up."""
    case = "agent hang-up in row 4"
    sipp = asyncio.create_task(
        run_sipp(pbx, "caller_wait_bye", caller=caller, pcap=pcap, max_wait_s=120, timeout=130)
    )
    channel = await caller_channel(cti.log, caller)
    await prompt_started(cti.log, channel, "silent_call_first")
    assert await cti.service.ivr.request_hangup(channel, "1001") is True
    result = await sipp
    played = prompts(cti.log, channel)
    await assert_phrases(
        case, cti, channel, played, ["greeting_answer", "silent_call_first", "silent_call_goodbye"]
    )
    await assert_ended_by_service(case, cti, channel, played[-1], result)
    audit = await audit_of(cti.service, channel)
    (run,) = audit["runs"]
    assert (run["procedure"], run["started_by"], run["hung_up"]) == ("silent_call", "auto", True)
    assert [d["what"] for d in audit["departures"]] == ["agent_hangup_runs_procedure"]


Ended = list[ProcedureEnded]


def ends_of(ended: Ended, channel: str) -> list[dict[str, Any]]:
    return [dict(ev.detail) for ev in ended if ev.call_id == channel]


async def speech_during_the_goodbye(
    cti: RunningService, pbx: Pbx, caller: str, audio: LineAudio, ended: Ended
) -> None:
    """Row 4: silent through 4a and 4b, the caller speaks during the 4c goodbye. The
    procedure ends, the caller is not hung up on and does not sit in dead air: the flow's next
    step (the transfer phrase) starts within a second of the goodbye being cut short."""
    case = "speech in the 4c goodbye"
    sipp = asyncio.create_task(run_sipp(
        pbx, "caller_hangup", caller=caller, pcap=audio.speech_in_goodbye,
        variables={"talk_ms": round((audio.speech_in_goodbye_at + 14) * 1000)}, timeout=130,
    ))
    channel = await caller_channel(cti.log, caller)
    result = await sipp
    assert result.ok, f"{case}: {result.describe()}"
    assert result.first("received", "BYE") is None, f"{case}: the service hung up"
    played = prompts(cti.log, channel)
    await assert_phrases(case, cti, channel, played[:5], [
        "greeting_answer", "silent_call_first", "silent_call_second", "silent_call_goodbye",
        "menu_transfer",
    ])
    _, first, second, goodbye, transfer = played[:5]
    assert_wait(case, "4a end -> 4b", first.finished, second.started)
    assert_wait(case, "4b end -> 4c goodbye", second.finished, goodbye.started)
    assert goodbye.finished is not None
    said = (goodbye.finished.pbx - goodbye.started.pbx).total_seconds()
    assert said < seconds_of("silent_call_goodbye") - 2, f"{case}: the goodbye ran {said:.1f} s"
    gap = (transfer.started.pbx - goodbye.finished.pbx).total_seconds()
    MEASURED.append(f"{case:>26}: {'goodbye cut -> next step':<32} {gap * 1000:6.0f} ms")
    assert 0 <= gap <= 1.0, f"{case}: {gap:.2f} s of silence before the next step"
    ack = result.first("sent", "ACK")
    assert ack is not None
    first_word = utc(ack.at) + timedelta(seconds=audio.speech_in_goodbye_at)
    heard = (transfer.started.pbx - first_word).total_seconds()
    MEASURED.append(f"{case:>26}: {'first word -> next step':<32} {heard * 1000:6.0f} ms")
    assert 0 <= heard <= 2.0, f"{case}: the next step came {heard:.2f} s after the first word"
    # The audit: why it ended, and where the call went.
    (run,) = await procedure_runs(cti.service, channel)
    assert (run["procedure"], run["started_by"], run["hung_up"], run["end_reason"]) == (
        "silent_call", "auto", False, "completed"
    )
    assert [s["detail"]["trigger"] for s in run["timeline"] if s["kind"] == "trigger"] == [
        "speech"
    ]
    assert "hangup" not in timeline_kinds(run)
    assert ends_of(ended, channel) == [{"reason": "completed", "next": "transfer"}]
    await wait_until(lambda: cti.service.registry.get(channel) is None, what=f"{case} closed")
    row = await cti.service.calls_repo.get(channel)
    assert row is not None
    assert (row.ended_by, row.hangup_cause) == ("caller", 16), row


async def caller_there_at_the_hang_up(
    cti: RunningService, pbx: Pbx, caller: str, audio: LineAudio, ended: Ended
) -> None:
    """The safety net: the agent's hang-up during row 4 runs the goodbye and its 5 s wait,
    which speech no longer stops; the caller speaks in that wait. At its end the last 3 s of
    the caller's audio are judged again: the caller is there, so no hang-up; the call goes on
    (the flow's next step) at the very moment the hang-up would have come."""
    case = "caller there at hang-up"
    sipp = asyncio.create_task(run_sipp(
        pbx, "caller_hangup", caller=caller, pcap=audio.speech_after_goodbye,
        variables={"talk_ms": round((audio.speech_after_goodbye_at + 14) * 1000)}, timeout=130,
    ))
    channel = await caller_channel(cti.log, caller)
    await prompt_started(cti.log, channel, "silent_call_first")
    assert await cti.service.ivr.request_hangup(channel, "1001") is True
    result = await sipp
    assert result.ok, f"{case}: {result.describe()}"
    assert result.first("received", "BYE") is None, f"{case}: the service hung up"
    played = prompts(cti.log, channel)
    await assert_phrases(case, cti, channel, played[:4], [
        "greeting_answer", "silent_call_first", "silent_call_goodbye", "menu_transfer",
    ])
    goodbye, transfer = played[2:4]
    # Decided from what was already heard: the next step exactly when the hang-up was due.
    assert_wait(case, "4c end -> next step (no hang-up)", goodbye.finished, transfer.started)
    audit = await audit_of(cti.service, channel)
    (run,) = audit["runs"]
    assert (run["procedure"], run["hung_up"], run["end_reason"]) == (
        "silent_call", False, "caller_present"
    ), f"{case}: {run}"
    (trigger,) = [s for s in run["timeline"] if s["kind"] == "trigger"]
    assert trigger["detail"]["trigger"] == "caller_present"
    assert trigger["detail"]["counted"], trigger
    assert [d["what"] for d in audit["departures"]] == [
        "agent_hangup_runs_procedure", "hangup_cancelled_caller_present"
    ]
    assert ends_of(ended, channel) == [{"reason": "caller_present", "next": "transfer"}]
    await wait_until(lambda: cti.service.registry.get(channel) is None, what=f"{case} closed")
    row = await cti.service.calls_repo.get(channel)
    assert row is not None
    assert (row.ended_by, row.hangup_cause) == ("caller", 16), row


async def gather_cases(*cases: Awaitable[None]) -> None:
    """Run the callers at once; report every failing case, not only the first."""
    started = time.monotonic()
    outcomes = await asyncio.gather(*cases, return_exceptions=True)
    print(f"\n{len(cases)} calls in {time.monotonic() - started:.1f} s; measured waits:")
    print("\n".join(MEASURED))
    MEASURED.clear()
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if failures:
        for failure in failures[1:]:
            print(f"also failed: {failure!r}")
        raise failures[0]


# --- the tests --------------------------------------------------------------------------------


def open_rules(tmp_path: Path) -> Path:
    """The real routing rules, open around the clock: after hours (Asia/Shanghai) the ACD
    would send a caller the procedure hands on to voicemail instead of queueing them, and the
    tests would depend on the hour they run at."""
    rules = (REPO_ROOT / "config" / "routing.yaml").read_text(encoding="utf-8")
    head, rest = rules.split("\nbusiness_hours:\n", 1)
    rules_file = tmp_path / "routing.yaml"
    rules_file.write_text(head + "\n" + rest.split("\n\n", 1)[1], encoding="utf-8")
    return rules_file


async def test_procedures_start_on_the_callers_audio_and_keep_the_5s_waits(
    pbx: Pbx, line_audio: LineAudio, database_url: str, tmp_path: Path
) -> None:
    async with running_service(
        pbx, database_url, company=COMPANY, rules_file=open_rules(tmp_path)
    ) as cti:
        app = create_app(cti.service)
        await cti.service.desk.auth.users.create(NewUser(
            "sup-e2e", "secret-e2e", Role.SUPERVISOR, agent_id="1001", display_name="Sup"
        ))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://cti"
        ) as http:
            login = await http.post(
                "/auth/login", json={"username": "sup-e2e", "password": "secret-e2e"}
            )
            assert login.status_code == 200, login.text
            headers = {"Authorization": f"Bearer {login.json()['token']}"}

            async def post(call_id: str, path: str) -> httpx.Response:
                return await http.post(f"/calls/{call_id}/{path}", headers=headers)

            ended: Ended = []

            async def on_ended(event: ProcedureEnded) -> None:
                ended.append(event)

            cti.service.bus.subscribe("e2e.procedure_ended", on_ended, (ProcedureEnded,))
            a = line_audio
            await gather_cases(
                silent_call(cti, pbx, "+8610000000001", a.silence),
                silent_call(cti, pbx, "+8610000000002", None),  # no RTP at all
                silent_call(cti, pbx, "+8610000000003", a.hiss),
                speech_ends_silent_call(cti, pbx, "+8610000000004", a),
                quiet_caller(cti, pbx, "+8610000000005", a.quiet),
                noisy_line(cti, pbx, "+8610000000006", a.noisy, "speech under noise (6b)"),
                noisy_line(cti, pbx, "+8610000000007", a.noise, "pure noise (6b)"),
                agent_noisy_line_by_http(cti, pbx, "+8610000000008", a.speech, post),
                agent_noisy_line_by_api(cti, pbx, "+8610000000009", a.speech),
                agent_hangup_in_silent_call(cti, pbx, "+8610000000010", a.silence),
                speech_during_the_goodbye(cti, pbx, "+8610000000011", a, ended),
                caller_there_at_the_hang_up(cti, pbx, "+8610000000012", a, ended),
            )


async def menu_caller(
    cti: RunningService, pbx: Pbx, caller: str, silence: Path, keys: Path,
    lang: str, queue: str, digits: tuple[str, str], acd_rule: tuple[str, str],
) -> None:
    """welcome -> language menu (first key) -> main menu in that language (second key) ->
    the transfer phrase -> the queue for that key (the IVR's route node, in the call log),
    and the ACD's decision under the routing rules (`acd_rule`: its queue and rule)."""
    case = f"menu {''.join(digits)}"
    welcome = seconds_of("menu_welcome", slots={"company": COMPANY.name})
    sipp = asyncio.create_task(run_sipp(
        pbx, "caller_dtmf_hangup", caller=caller, pcap=silence, dtmf_pcap=keys,
        variables={"dtmf_delay_ms": round((welcome + 1.5) * 1000), "talk_ms": 9000},
        timeout=60,
    ))
    channel = await caller_channel(cti.log, caller)
    result = await sipp
    # The caller hangs up while waiting in the queue (no agent is logged in).
    assert not result.timed_out, f"{case}: {result.describe()}"
    assert result.first("sent", "BYE") is not None, f"{case}: {result.describe()}"
    keys_heard = [
        (moment, e.digit) for moment, e in moments(cti.log, "ChannelDtmfReceived", channel)
        if isinstance(e, ChannelDtmfReceived)
    ]
    assert [d for _, d in keys_heard] == list(digits), case
    # The IVR's part ends with the transfer phrase. The caller is then the queue's, which
    # greets them with its position/wait announcement (config/routing.yaml: on joining) if
    # the caller has not hung up yet, a race between the service and sipp's scripted BYE:
    # allowed after the transfer phrase, never required, and nothing else is.
    played = prompts(cti.log, channel)
    ivr_part = ["menu_welcome", "menu_language", "menu_main", "menu_transfer"]
    in_queue = [p.phrase for p in played[len(ivr_part):]]
    if any(phrase not in ANNOUNCEMENT_PHRASES for phrase in in_queue):
        raise AssertionError(f"{case}: prompts {played}; {await story(cti, channel)}")
    await assert_phrases(case, cti, channel, played[:len(ivr_part)], ivr_part)
    _, language, main, transfer = played[:len(ivr_part)]
    # Each key cuts its menu prompt short (barge-in) and the next step follows at once.
    steps = ((keys_heard[0], language, main), (keys_heard[1], main, transfer))
    for (key, digit), menu, nxt in steps:
        assert menu.finished is not None, (case, digit)
        assert (menu.finished.pbx - key.pbx).total_seconds() < BARGE_IN_S, (case, digit, menu)
        assert (nxt.started.pbx - key.pbx).total_seconds() < BARGE_IN_S, (case, digit, nxt)
    lang_files = {
        e.playback.media_uri for _, e in cti.log.events  # type: ignore[attr-defined]
        if e.type == "PlaybackStarted" and e.playback.target_uri == f"channel:{channel}"  # type: ignore[attr-defined]
        and "menu_main" in e.playback.media_uri  # type: ignore[attr-defined]
    }
    assert lang_files == {f"sound:custom/menu_main__{lang}"}, case
    await wait_until(lambda: cti.service.registry.get(channel) is None, what=f"{case} closed")
    row = await cti.service.calls_repo.get(channel)
    assert row is not None
    assert row.queue == queue, f"{case}: {row}"
    # ... and the ACD took the call with the key and language the caller chose. Its first
    # decision places the call by the routing rules, which read those attributes: the
    # English caller's first matching rule is "english speakers" (queue general), whatever
    # the key; the Mandarin caller's is the key's own rule.
    assert row.attributes == {"menu": digits[1], "language": lang}, f"{case}: {row}"
    decisions = cti.service.acd.decisions_for(channel)
    assert decisions, f"{case}: the ACD made no routing decision for the call"
    arrived = decisions[0]
    assert (arrived["trigger"], arrived["outcome"], arrived["queue"], arrived["filter"]) == (
        "call_arrived", "queued", *acd_rule
    ), f"{case}: {arrived}"


async def test_menu_keys_reach_the_queue_of_the_digit(
    pbx: Pbx, line_audio: LineAudio, database_url: str, tmp_path: Path
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    for source in (REPO_ROOT / "ivr_flows").glob("*.yaml"):
        text = source.read_text(encoding="utf-8")
        if source.stem == "main_menu":
            # The real menu, open around the clock so the test does not depend on the hour.
            head, rest = text.split("business_hours:\n", 1)
            rest = rest.split("\n\n", 1)[1]
            text = (head + "business_hours:\n  timezone: UTC\n  days: [mon, tue, wed, thu, "
                    "fri, sat, sun]\n  open: \"00:00\"\n  close: \"23:59:59\"\n\n" + rest)
        (flows / source.name).write_text(text, encoding="utf-8")
    async with running_service(
        pbx, database_url, company=COMPANY, inbound_flow="main_menu", flows_dir=flows,
        rules_file=open_rules(tmp_path),
    ) as cti:
        a = line_audio
        await gather_cases(
            menu_caller(cti, pbx, "+8620000000001", a.silence, a.dtmf_1_2, "zh", "tech_support",
                        ("1", "2"), ("tech_support", "technical support")),
            menu_caller(cti, pbx, "+8620000000002", a.silence, a.dtmf_2_3, "en", "complaints",
                        ("2", "3"), ("general", "english speakers")),
        )
