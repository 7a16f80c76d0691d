"""Quality review in a real browser (Debian's chromium, headless) over a real recorded call on
the sandbox Asterisk: a sipp caller (600 Hz) is answered by a registered sipp agent phone
(1400 Hz) in a queue with `record: true`; the agent pauses the recording for a stretch. The
supervisor opens the review page from the supervisor page, finds the call by its number,
sees its time line (connected, the recording with its pause), plays the recording (the
<audio> element's time advances with no error; the server answered byte ranges, so the whole
file is seekable), seeks from a time-line entry to its place in the file, and fills in and
saves an evaluation, which the API then returns. Screenshots go to artifacts/.

Run with an instance of your own:
  CTI_E2E_INSTANCE_SUFFIX=rev .venv/bin/pytest tests/e2e/test_review_page_e2e.py -q
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from cti.app import create_app
from cti.events import RecordingStarted, RecordingStopped
from cti.features.auth.service import NewUser, Role
from cti.runtime import Service
from tests.api.desk_app import served
from tests.e2e import media
from tests.e2e.conftest import DATA, call_from, flows_dir, service_settings, wait_until
from tests.e2e.pbx import Pbx, register_agent, run_sipp
from tests.e2e.test_agent_page import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, csp_violations
from tests.e2e.test_recordings_e2e import QUIET_FLOW

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

CALLER = "+8613800000931"
PAUSE_AT, RESUME_AT, HANGUP_AT = 4.0, 7.0, 14.0  # seconds after the answer
# The page plays without a click of the user's (the test drives it): no autoplay gesture rule.
ARGS = [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required", "--mute-audio"]


async def _recorded_call(service: Service, pbx: Pbx, tmp_path: Path) -> str:
    """One real call, recorded, with a pause; returns its call id once the file is stored."""
    seen: list[Any] = []

    async def note(event: Any) -> None:
        seen.append(event)

    service.bus.subscribe("test.review", note, (RecordingStarted, RecordingStopped))
    caller_pcap, agent_pcap = tmp_path / "caller.pcap", tmp_path / "agent.pcap"
    media.write_rtp_pcap(caller_pcap, media.tone(600.0, 30))
    media.write_rtp_pcap(agent_pcap, media.tone(1400.0, 30))
    phone = await register_agent(pbx, "1004", ring_ms=300, pcap=agent_pcap)
    caller = None
    try:
        await service.acd.agent_login("1004")
        caller = asyncio.create_task(run_sipp(
            pbx, "caller_wait_bye", service="4000", caller=CALLER, pcap=caller_pcap,
            max_wait_s=60, timeout=70))
        call_id = await call_from(service, CALLER)
        await wait_until(lambda: any(isinstance(e, RecordingStarted) for e in seen), 15,
                         "the recording to start")
        answered = time.monotonic()

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
        return call_id
    finally:
        if caller is not None:
            caller.cancel()
        await phone.stop()


async def test_supervisor_reviews_plays_seeks_and_evaluates_a_recorded_call(
    pbx: Pbx, database_url: str, tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    rules_file = tmp_path / "routing.yaml"
    rules = (DATA / "routing_rules.yaml").read_text(encoding="utf-8")
    rules = rules.replace("  general:\n    skills: {general: 1}\n",
                          "  general:\n    skills: {general: 1}\n    record: true\n")
    assert "record: true" in rules
    rules_file.write_text(rules, encoding="utf-8")
    flows = flows_dir(tmp_path)
    (flows / "agent_quiet.yaml").write_text(QUIET_FLOW, encoding="utf-8")
    settings = service_settings(pbx, database_url, inbound_flow="routing_direct",
                                flows_dir=flows, rules_file=rules_file, agent_flow="agent_quiet")
    service = Service.build(settings)
    await service.start()
    try:
        call_id = await _recorded_call(service, pbx, tmp_path)
        await service.desk.auth.users.create(NewUser("boss", "boss-e2e-pw", Role.SUPERVISOR))
        async with served(create_app(service)) as base, async_playwright_browser() as browser:
            page = await browser.new_page(viewport={"width": 1600, "height": 1000})
            refused = csp_violations(page)
            await page.goto(f"{base}/desk/")
            await page.fill("#username", "boss")
            await page.fill("#password", "boss-e2e-pw")
            await page.click("#login-btn")
            await page.wait_for_url("**/supervisor.html")
            await page.get_by_test_id("to-review").click()
            await page.wait_for_url("**/review.html")

            # find the call by its number and open it
            await page.get_by_test_id("call-search").fill(CALLER[-6:])
            rows = page.get_by_test_id("call-row")
            await expect(rows).to_have_count(1)
            await rows.first.click()
            await expect(page.get_by_test_id("review-summary")).to_contain_text("1004")
            entries = page.get_by_test_id("timeline").locator("tr[data-testid=entry]")
            kinds = await entries.evaluate_all("rows => rows.map(r => r.dataset.kind)")
            print("time line kinds:", kinds)
            assert kinds.count("routed") == 1
            for kind in ("arrived", "routed", "offered", "decision", "connected",
                         "recording_started", "recording_paused", "recording_resumed",
                         "recording_stopped", "ended"):
                assert kind in kinds, (kind, kinds)
            assert await page.locator(".lane[data-lane=recording] .bar-span.pause").count() == 1
            assert await page.get_by_test_id("departure").count() == 0

            # the recording plays: its time advances, no error; the whole file is seekable
            audio = page.get_by_test_id("review-audio")
            await page.wait_for_function(
                "() => document.querySelector('#review-audio').readyState >= 1", timeout=15000)
            info = await audio.evaluate(
                "a => ({src: a.src, duration: a.duration,"
                " stored: window.reviewDebug.state.review.recordings[0].duration_s})")
            assert "/audio?key=" in info["src"], info
            # the element read the stored file: its length, the call's less the pause
            assert abs(info["duration"] - info["stored"]) < 0.5, info
            assert info["duration"] < HANGUP_AT - (RESUME_AT - PAUSE_AT) + 1.0, info
            await audio.evaluate("a => a.play()")
            await page.wait_for_function(
                "() => document.querySelector('#review-audio').currentTime > 1.0", timeout=15000)
            state = await audio.evaluate(
                "a => ({error: a.error && a.error.code, paused: a.paused, "
                "seekable: a.seekable.length ? a.seekable.end(0) : 0, duration: a.duration})")
            assert state["error"] is None, state
            assert state["seekable"] >= state["duration"] - 0.5, state  # Range answered
            await page.screenshot(path=str(ARTIFACTS / "review_page.png"), full_page=True)

            # seeking from the time line: "recording resumed" is at PAUSE_AT in the file
            await page.locator("tr[data-testid=entry][data-kind=recording_resumed] "
                               "button[data-action=seek]").click()
            await page.wait_for_function(
                f"() => Math.abs(document.querySelector('#review-audio').currentTime - "
                f"{PAUSE_AT}) < 1.5", timeout=10000)
            await page.wait_for_function(
                f"() => document.querySelector('#review-audio').currentTime > {PAUSE_AT} + 0.5"
                " && !document.querySelector('#review-audio').error", timeout=10000)
            await audio.evaluate("a => a.pause()")
            # the player's place on the call's axis: past the pause, by the file's time
            placed = await page.evaluate(
                "() => { const s = window.reviewDebug.state;"
                " const e = s.review.entries.find(x => x.kind === 'recording_resumed');"
                " const a = document.querySelector('#review-audio');"
                " const c = document.querySelector('[data-testid=play-cursor]');"
                " return {cursor: parseFloat(c.style.left), total: s.total,"
                " expected: 100 * (e.offset_s + a.currentTime - e.media.at_s) / s.total}; }")
            assert abs(placed["cursor"] - placed["expected"]) < 2.0, placed

            # the evaluation: the best answer everywhere, but "surname used" not applicable
            questions = page.get_by_test_id("question")
            count = await questions.count()
            assert count == 9
            for i in range(count):
                await questions.nth(i).locator("input[type=radio]").first.check()
            await page.locator("input[name=surname_used][value=na]").check()
            await page.fill("#evaluation-comment", "e2e review")
            await page.get_by_test_id("evaluation-save").click()
            result = page.get_by_test_id("evaluation-result")
            await expect(result).to_contain_text("100")
            await expect(page.get_by_test_id("evaluation-row")).to_have_count(1)
            await page.screenshot(path=str(ARTIFACTS / "review_evaluation.png"), full_page=True)
            assert refused == [], refused

            # read back through the API
            async with httpx.AsyncClient(base_url=base) as client:
                r = await client.post("/auth/login", json={"username": "boss",
                                                           "password": "boss-e2e-pw"})
                headers = {"Authorization": f"Bearer {r.json()['token']}"}
                r = await client.get("/evaluations", params={"call_id": call_id},
                                     headers=headers)
                (saved,) = r.json()["evaluations"]
                assert (saved["score"], saved["agent_id"], saved["evaluator"]) == (
                    100.0, "1004", "boss")
                assert saved["answers"]["surname_used"] == "na"
                assert saved["comment"] == "e2e review"
                assert r.json()["agents"][0]["key"] == "1004"
    finally:
        await service.stop()


class async_playwright_browser:
    """Chromium for one test, closed with its Playwright whatever happens."""

    async def __aenter__(self) -> Any:
        from playwright.async_api import async_playwright

        self._pw = await async_playwright().start()
        try:
            self._browser = await self._pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        except BaseException:
            await self._pw.stop()
            raise
        return self._browser

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._browser.close()
        finally:
            await self._pw.stop()
