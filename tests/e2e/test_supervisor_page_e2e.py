"""The supervisor page in a real browser (Debian's chromium, headless) against the real service
and a sandbox Asterisk: what callers left at the fallback is listed and the voicemail plays.

The supervisor logs in on the desk's login page and lands on the supervisor page, which shows
both panels empty; then a call-back request (through the IVR audit, as the `callback` node
stores it) and a voicemail (its row, and its WAV in the instance's recording spool where
Asterisk's GET /recordings/stored/{name}/file finds it) appear on "refresh". Pressing play
fetches the WAV with the bearer token through the service and ARI, and the page's <audio>
element loads it. Marking the request done greys it out.
Run with an instance of your own:
    CTI_E2E_PBX=e2e-sup .venv/bin/pytest tests/e2e/test_supervisor_page_e2e.py
"""

from __future__ import annotations

import io
import math
import uuid
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright, expect

from cti.app import create_app
from cti.domain.ivr.commands import Audit
from cti.events import CallConnected, CallLeftQueue, CallQueued
from cti.features.auth.service import NewUser, Role
from cti.features.procedures.audit import AuditEntry
from cti.platform.db.tables.fallback import VoicemailRow
from cti.runtime import Service
from tests.api.desk_app import served
from tests.e2e.conftest import service_settings
from tests.e2e.pbx import PBX_ROOT, Pbx
from tests.e2e.test_agent_page import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, csp_violations

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

OLD_CALLER = "+8613800000901"
NEW_CALLER = "+8613800000902"
VOICEMAIL_CALLER = "+8613800000903"
SECONDS = 2.0


def _tone_wav(seconds: float) -> bytes:
    """A 440 Hz tone, 8 kHz mono 16-bit: what Asterisk's recordings look like."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(
            round(8000 * math.sin(2 * math.pi * 440 * i / 8000)).to_bytes(2, "little", signed=True)
            for i in range(round(seconds * 8000))
        ))
    return out.getvalue()


def _recording_dir(pbx: Pbx) -> Path:
    """Host path of the instance's recording spool (scripts/pbx: /var/spool/asterisk-NAME)."""
    return PBX_ROOT / "var" / "spool" / f"asterisk-{pbx.name}" / "recording"


async def _log_in(page: Page, base: str) -> None:
    await page.goto(f"{base}/desk/")
    await page.fill("#username", "boss")
    await page.fill("#password", "boss-e2e-pw")
    await page.click("#login-btn")
    await page.wait_for_url("**/supervisor.html")
    await expect(page.locator("#connection")).to_have_text("在线")


async def test_supervisor_sees_callbacks_and_plays_a_voicemail(pbx: Pbx, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    service = Service.build(service_settings(pbx, f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}"))
    await service.start()
    recording = f"vm-e2e-sup-{uuid.uuid4().hex[:8]}"
    wav_file = _recording_dir(pbx) / f"{recording}.wav"
    try:
        await service.desk.auth.users.create(NewUser("boss", "boss-e2e-pw", Role.SUPERVISOR))
        async with served(create_app(service)) as base, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                refused = csp_violations(page)
                await _log_in(page, base)
                await expect(page.get_by_test_id("callbacks-empty")).to_have_text("暂无回拨请求")
                await expect(page.get_by_test_id("voicemails-empty")).to_have_text("暂无语音留言")

                # What the IVR leaves: two call-back requests (the audit's writer stores them)
                # and one voicemail, whose file is where Asterisk keeps stored recordings.
                now = datetime.now(UTC)
                for call_id, caller, at in (("cb-old", OLD_CALLER, now - timedelta(minutes=5)),
                                            ("cb-new", NEW_CALLER, now)):
                    service.audit.submit(AuditEntry(call_id, Audit("callback_requested", detail={
                        "number": caller, "lang": "zh", "queue": "later"}), at, 0.0))
                await service.audit.flush()
                wav_file.write_bytes(_tone_wav(SECONDS))
                async with service.sessions.begin() as session:
                    session.add(VoicemailRow(
                        call_id="vm-call", caller_number=VOICEMAIL_CALLER, mailbox="sales-box",
                        queue="general", lang="zh", recording=recording, format="wav",
                        duration_s=SECONDS, started_at=now - timedelta(seconds=10),
                        recorded_at=now,
                    ))

                await page.click("#fallback-refresh")
                callbacks = page.get_by_test_id("callback-row")
                await expect(callbacks).to_have_count(2)
                await expect(page.get_by_test_id("callbacks-empty")).to_be_hidden()
                newest = callbacks.nth(0)  # newest first
                await expect(newest.locator("td").nth(0)).to_have_text(NEW_CALLER)
                await expect(newest.locator("td").nth(2)).to_have_text("later")
                await expect(newest.locator("td").nth(3)).to_have_text("中文")
                await expect(callbacks.nth(1).locator("td").nth(0)).to_have_text(OLD_CALLER)
                local = now.astimezone()  # the browser shares this machine's time zone
                await expect(newest.locator("td").nth(1)).to_have_text(
                    f"{local.year}/{local.month}/{local.day} {local:%H:%M}"
                )

                vm = page.get_by_test_id("voicemail-row")
                await expect(vm).to_have_count(1)
                await expect(vm.locator("td").nth(0)).to_have_text(VOICEMAIL_CALLER)
                await expect(vm.locator("td").nth(1)).to_have_text("sales-box · general")
                await expect(vm.locator("td").nth(3)).to_have_text("0:02")

                # Play: the WAV comes through the service (bearer token) from Asterisk.
                await vm.locator("[data-action=play]").click()
                audio = page.get_by_test_id("voicemail-audio")
                await expect(audio).to_be_visible()
                await page.wait_for_function(
                    "() => { const a = document.querySelector('#voicemail-player');"
                    " return a.readyState >= 1 && a.duration > 0; }",
                    timeout=10000,
                )
                played = await audio.evaluate("a => ({src: a.src, duration: a.duration})")
                assert played["src"].startswith("blob:"), played
                assert abs(played["duration"] - SECONDS) < 0.1, played
                await expect(page.locator("#fallback-error")).to_have_text("")
                await expect(page.locator("#player-label")).to_have_text(
                    f"正在播放:{VOICEMAIL_CALLER}"
                )

                # Done: the request is marked (stored) and shown as handled.
                await newest.locator("[data-action=done]").click()
                await expect(newest).to_have_class("done")
                await expect(newest.locator("td").nth(4)).to_contain_text("已处理")
                stored = {cb["call_id"]: cb for cb in await service.audit.callbacks()}
                assert stored["cb-new"]["done_at"] is not None
                assert stored["cb-old"]["done_at"] is None
                await expect(callbacks.nth(1).locator("[data-action=done]")).to_be_visible()
                await page.screenshot(path=str(ARTIFACTS / "supervisor_page.png"), full_page=True)

                await page.click("#lang-toggle")
                await expect(page.locator("[data-i18n=callbacks]")).to_have_text(
                    "Call-back requests"
                )
                await expect(vm.locator("[data-action=play]")).to_have_text("Play")
                await expect(page.locator("#connection")).to_have_text("online")
                await expect(callbacks.nth(1).locator("[data-action=done]")).to_have_text("Done")
                await expect(newest.locator("td").nth(3)).to_have_text("Chinese")
                await expect(page.locator("#player-label")).to_have_text(
                    f"Playing: {VOICEMAIL_CALLER}"
                )
                await page.screenshot(
                    path=str(ARTIFACTS / "supervisor_page_en.png"), full_page=True
                )
                assert refused == []
            finally:
                await browser.close()
    finally:
        wav_file.unlink(missing_ok=True)
        await service.stop()


async def test_the_wallboard_updates_as_events_happen(pbx: Pbx, tmp_path: Path) -> None:
    """Events on the running service's stream reach the page's wallboard within a second:
    offered, answered, a short abandon apart, the service level coloured against its goal."""
    service = Service.build(service_settings(pbx, f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}"))
    await service.start()
    try:
        await service.desk.auth.users.create(NewUser("boss", "boss-e2e-pw", Role.SUPERVISOR))
        async with served(create_app(service)) as base, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                refused = csp_violations(page)
                await _log_in(page, base)
                now = datetime.now(UTC)
                bus = service.bus
                # "general" (config/routing.yaml): answer 80 % within 20 s
                bus.publish(CallQueued("wb-1", "general", 0, 1, now))
                bus.publish(CallConnected("wb-1", "1001", "general", 30.0, now))  # too slow
                bus.publish(CallQueued("wb-2", "general", 0, 1, now))
                bus.publish(CallLeftQueue("wb-2", "general", "abandoned", 2.0, now))  # short
                row = page.locator("#wallboard-queues tr[data-queue=general]")
                cells = row.locator("td")
                await expect(cells.nth(3)).to_have_text("2", timeout=1000)  # offered
                await expect(cells.nth(4)).to_have_text("1")  # answered
                await expect(cells.nth(5)).to_have_text("0 (+1)")  # the short abandon apart
                await expect(cells.nth(6)).to_have_text("0%")
                await expect(cells.nth(6)).to_have_class("sl-bad")
                await expect(cells.nth(7)).to_have_text("0:30")  # ASA
                bus.publish(CallQueued("wb-3", "general", 0, 1, now))
                bus.publish(CallConnected("wb-3", "1002", "general", 4.0, now))
                await expect(cells.nth(6)).to_have_text("50%", timeout=1000)
                await page.screenshot(path=str(ARTIFACTS / "supervisor_wallboard.png"),
                                      full_page=True)
                assert refused == []
            finally:
                await browser.close()
    finally:
        await service.stop()
