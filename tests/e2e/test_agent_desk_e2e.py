"""The agent desk on the real call path: a real service (ARI on the sandbox Asterisk, ACD, IVR,
screen pop) served by uvicorn, the agent pages in Debian's chromium, sipp as the callers and as
the agents' SIP phones.

One story, in order: agent 1001 logs in and goes available; the demo VIP calls; the pop shows
name and tier while 1001's phone still rings; the phone answers and the ARI bridge holds caller
and agent with RTP flowing both ways; a reload mid-call comes back with the same state; "noisy
line" plays the goodbye and the call ends 5 s after it; a second caller reaches 1001, who
transfers them to 1002 (logged in on a second page) with one click. Screenshots go to
artifacts/desk_*.png.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from cti.app import create_app
from cti.domain.ivr.config import DetectionSettings
from cti.domain.routing.events import CallOffered, RoutingEvent
from cti.features.desk.demo import seed_demo_desk
from cti.features.routing.call_routing import ROUTING_EVENTS
from cti.platform.ari.events import ChannelDestroyed, PlaybackFinished
from cti.platform.db.migrate import upgrade_async
from cti.runtime import Service
from tests.api.desk_app import served
from tests.e2e import media
from tests.e2e.conftest import EventLog, service_settings, wait_until
from tests.e2e.pbx import (
    PBX_ROOT,
    AgentPhone,
    Pbx,
    SippResult,
    free_port,
    register_agent,
    run_sipp,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

DATA = Path(__file__).resolve().parent / "data"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM = "/usr/bin/chromium"
PBX_CERT = PBX_ROOT / "etc" / "asterisk-keys" / "asterisk.pem"  # made by scripts/pbx
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    # ICE candidates as plain 127.0.0.1, not mDNS names the PBX cannot resolve
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
VIP_NUMBER = "+49305551"  # demo customer 王伟, tier vip
GOLD_NUMBER = "+8613800138000"  # demo customer 李娜, tier gold
NOISY_HANGUP_S = 5.0
TOLERANCE_S = 0.25

# Records Date.now() when a pop card first shows a customer name (offer -> rendered card).
WATCH_POP = """() => {
  window.__popShownAt = null;
  new MutationObserver(() => {
    const el = document.querySelector('[data-testid=customer-name]');
    if (el && el.textContent && window.__popShownAt === null) window.__popShownAt = Date.now();
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


class Offers:
    """When the ACD made each offer (its wall clock, stamped on CallOffered)."""

    def __init__(self) -> None:
        self.at: dict[tuple[str, str], float] = {}

    async def on_routing_event(self, event: RoutingEvent) -> None:
        if isinstance(event, CallOffered):
            self.at[(event.call_id, event.agent_id)] = event.at.timestamp()


async def _running_service(
    pbx: Pbx, tmp_path: Path, **extra: Any
) -> tuple[Service, EventLog, Offers]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'desk.db'}"
    await upgrade_async(url)
    settings = service_settings(
        pbx, url,
        inbound_flow="desk_inbound",
        flows_dir=DATA / "desk_flows",
        rules_file=DATA / "desk_routing.yaml",
        # the test's callers send 10 s of speech then nothing: no automatic silent-call runs
        detection=DetectionSettings(auto_start=False),
        **extra,
    )
    service = Service.build(settings)
    log, offers = EventLog(), Offers()
    service.dispatcher.listen(log.record)
    service.bus.subscribe("test.routing", offers.on_routing_event, ROUTING_EVENTS)
    await service.start()
    await seed_demo_desk(service.sessions)
    return service, log, offers


async def _agent_page(browser: Browser, base: str, agent: str) -> Page:
    page = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
    await page.goto(f"{base}/desk/")
    await page.fill("#username", f"agent{agent}")
    await page.fill("#password", f"agent-{agent}")
    await page.click("#login-btn")
    await expect(page.get_by_test_id("connection")).to_have_text("在线")
    return page


async def _go_available(page: Page) -> None:
    await page.click("[data-action=available]")
    await expect(page.get_by_test_id("agent-state")).to_have_attribute(
        "data-state", "available"
    )


def _long_speech(pbx: Pbx) -> Path:
    """60 s of speech: the caller talks through the greeting and the checks that follow
    (a channel playing a prompt in a bridge sends nothing into the bridge meanwhile)."""
    path = pbx.workdir / "desk-speech-60s-pcmu.pcap"
    if not path.exists():
        media.write_rtp_pcap(path, media.standard_signals(60.0)["speech"], "pcmu")
    return path


def _call(sipp_caller: str, pbx: Pbx) -> asyncio.Task[SippResult]:
    return asyncio.create_task(run_sipp(
        pbx, "caller_wait_bye", service="4000", caller=sipp_caller, caller_name="Customer",
        pcap=_long_speech(pbx), max_wait_s=90, timeout=120,
    ))


async def _caller_channel(service: Service, number: str) -> str:
    found: list[str] = []

    def has_call() -> bool:
        found[:] = [s.call.channel_id for s in service.registry.sessions()
                    if s.call.caller_number == number and not s.call.is_over]
        return bool(found)

    await wait_until(has_call, timeout=10, what=f"a call from {number}")
    return found[0]


async def _bridge_of(service: Service, channel: str) -> Any:
    bridges = [b for b in await service.telephony.list_bridges() if channel in b.channels]
    return bridges[0] if bridges else None


async def _rtp_counts(service: Service, channels: list[str]) -> dict[str, tuple[int, int]]:
    out = {}
    for ch in channels:
        stats = await service.telephony.rtp_statistics(ch)
        out[ch] = (int(stats.get("rxcount", 0)), int(stats.get("txcount", 0)))
    return out


def _answered(phone: AgentPhone) -> bool:
    return any(m.direction == "sent" and m.method_or_status == "200"
               and "INVITE" in m.text.split("CSeq:", 1)[-1].split("\n", 1)[0]
               for m in phone.messages())


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            await instance.close()


async def test_agent_desk_pop_answer_noisy_line_reload_and_one_click_transfer(
    pbx: Pbx, tmp_path: Path, browser: Browser
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    started = time.monotonic()
    service, log, offers = await _running_service(pbx, tmp_path)
    figures: dict[str, float] = {}
    try:
        async with (
            served(create_app(service)) as base,
            await register_agent(pbx, "1001", ring_ms=3000) as phone_1001,
            await register_agent(pbx, "1002", ring_ms=1500) as phone_1002,
        ):
            desk_1001 = await _agent_page(browser, base, "1001")
            await _go_available(desk_1001)
            await desk_1001.evaluate(WATCH_POP)

            # --- call 1: the VIP; the pop arrives while 1001's phone rings ----------------
            call_1 = _call(VIP_NUMBER, pbx)
            card = desk_1001.get_by_test_id("pop-card")
            await expect(card.get_by_test_id("customer-name")).to_have_text("王伟", timeout=15000)
            await expect(card.get_by_test_id("customer-tier")).to_have_text("vip")
            await expect(card).to_have_attribute("data-state", "ringing")
            caller_1 = await _caller_channel(service, VIP_NUMBER)
            legs = [c for c in await service.telephony.list_channels() if c.id.startswith("acd-")]
            assert [c.state for c in legs] == ["Ringing"], legs  # not answered yet
            assert not _answered(phone_1001)
            await desk_1001.screenshot(path=str(ARTIFACTS / "desk_pop.png"), full_page=True)
            shown_at = await desk_1001.evaluate("() => window.__popShownAt")
            offered_at = offers.at[(caller_1, "1001")]
            figures["offer_to_card_ms"] = shown_at - offered_at * 1000

            # --- the phone answers: caller and agent in one bridge, audio both ways ----------
            await expect(card).to_have_attribute("data-state", "connected", timeout=10000)
            await expect(desk_1001.get_by_test_id("agent-state")).to_have_attribute(
                "data-state", "on_call"
            )
            bridge = await _bridge_of(service, caller_1)
            assert bridge is not None
            assert len(bridge.channels) == 2, bridge
            agent_leg = next(c for c in bridge.channels if c != caller_1)
            assert agent_leg.startswith("acd-")
            await log.wait_for(  # the agent's greeting, said to the caller, is over
                lambda e: isinstance(e, PlaybackFinished)
                and e.playback.target_uri == f"channel:{caller_1}"
                and "greeting_answer" in e.playback.media_uri,
                timeout=20,
            )
            before = await _rtp_counts(service, [caller_1, agent_leg])
            await asyncio.sleep(1.0)
            after = await _rtp_counts(service, [caller_1, agent_leg])
            for ch in (caller_1, agent_leg):
                rx = after[ch][0] - before[ch][0]
                tx = after[ch][1] - before[ch][1]
                assert rx > 25, (ch, before[ch], after[ch])  # 50 packets/s each way
                assert tx > 25, (ch, before[ch], after[ch])
            await desk_1001.screenshot(path=str(ARTIFACTS / "desk_connected.png"), full_page=True)

            # --- a reload mid-call comes back with the same state -------------------------
            await desk_1001.reload()
            card = desk_1001.get_by_test_id("pop-card")
            await expect(card.get_by_test_id("customer-name")).to_have_text("王伟")
            await expect(card).to_have_attribute("data-state", "connected")
            await expect(desk_1001.get_by_test_id("agent-state")).to_have_attribute(
                "data-state", "on_call"
            )

            # --- "noisy line": the goodbye, then the hang-up 5 s after it ------------------
            await card.locator("[data-procedure=noisy_line]").click()
            hung_at, _ = await log.wait_for(
                lambda e: isinstance(e, ChannelDestroyed) and e.channel.id == caller_1,
                timeout=30,
            )
            goodbyes = [
                (t, e) for t, e in log.of_type("PlaybackFinished")
                if isinstance(e, PlaybackFinished)
                and e.playback.target_uri == f"channel:{caller_1}"
                and "noisy_goodbye" in e.playback.media_uri
            ]
            assert goodbyes, [e.type for _, e in log.events]
            figures["goodbye_to_hangup_s"] = hung_at - goodbyes[-1][0]
            assert abs(figures["goodbye_to_hangup_s"] - NOISY_HANGUP_S) <= TOLERANCE_S, figures
            result_1 = await call_1
            assert result_1.ok, result_1.describe()
            await expect(card).to_have_attribute("data-state", "ended")
            await desk_1001.screenshot(path=str(ARTIFACTS / "desk_noisy_ended.png"),
                                       full_page=True)
            # wrap-up (3 s in the test rules), then available again
            await expect(desk_1001.get_by_test_id("agent-state")).to_have_attribute(
                "data-state", "available", timeout=10000
            )

            # --- call 2: reaches 1001, who transfers it to 1002 with one click -----------------
            desk_1002 = await _agent_page(browser, base, "1002")  # logged out: gets no offer
            call_2 = _call(GOLD_NUMBER, pbx)
            card = desk_1001.get_by_test_id("pop-card")
            await expect(card.get_by_test_id("customer-name")).to_have_text("李娜", timeout=15000)
            await expect(card).to_have_attribute("data-state", "connected", timeout=10000)
            caller_2 = await _caller_channel(service, GOLD_NUMBER)
            await _go_available(desk_1002)

            await card.locator(".transfer select[name=target_type]").select_option("agent")
            await card.locator(".transfer input[name=target]").fill("1002")
            clicked = time.monotonic()
            await card.locator(".transfer button[value=blind]").click()

            card_1002 = desk_1002.get_by_test_id("pop-card")
            await expect(card_1002.get_by_test_id("customer-name")).to_have_text("李娜")
            await expect(card_1002.get_by_test_id("customer-tier")).to_have_text("gold")
            await expect(card).to_have_attribute("data-state", "ended")
            await expect(desk_1001.get_by_test_id("agent-state")).to_have_attribute(
                "data-state", "wrap_up"
            )
            await expect(card_1002).to_have_attribute("data-state", "connected", timeout=10000)
            figures["transfer_click_to_connected_s"] = time.monotonic() - clicked
            bridge = await _bridge_of(service, caller_2)
            assert bridge is not None
            assert len(bridge.channels) == 2, bridge
            assert service.acd.core.agent_of_call(caller_2) == "1002"
            session = service.registry.get(caller_2)
            assert session is not None
            assert session.call.agent_id == "1002"
            assert len(phone_1002.invites()) == 1
            await desk_1001.screenshot(path=str(ARTIFACTS / "desk_transfer_from_1001.png"),
                                       full_page=True)
            await desk_1002.screenshot(path=str(ARTIFACTS / "desk_transfer_to_1002.png"),
                                       full_page=True)

            # 1002 hangs up from the page; the caller gets the BYE
            await card_1002.locator("[data-call=hangup]").click()
            result_2 = await call_2
            assert result_2.ok, result_2.describe()
            await expect(card_1002).to_have_attribute("data-state", "ended")
    finally:
        await service.stop()
    figures["test_s"] = time.monotonic() - started
    print("figures:", {k: round(v, 3) for k, v in figures.items()})
    assert 0 < figures["offer_to_card_ms"] < 1000, figures


@pytest.fixture
def tls_pbx(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Pbx, int]]:
    """An instance of its own with TLS on (scripts/pbx: CTI_PBX_HTTPS_PORT) for wss://."""
    https_port = free_port("tcp")
    monkeypatch.setenv("CTI_PBX_HTTPS_PORT", str(https_port))
    with Pbx(f"{os.environ.get('CTI_E2E_PBX', 'e2e-desk')}-wss") as instance:
        yield instance, https_port


def _spki_hash(pem: Path) -> str:
    """base64 SHA-256 of the certificate's public key: chromium trusts exactly that key."""
    pub = subprocess.run(["openssl", "x509", "-in", str(pem), "-pubkey", "-noout"],
                         capture_output=True, check=True).stdout
    spki = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                          capture_output=True, check=True).stdout
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


async def test_page_softphone_registers_over_wss_and_answers_the_call(
    tls_pbx: tuple[Pbx, int], tmp_path: Path
) -> None:
    """Agent 1003's phone is the page's JsSIP softphone (WebRTC endpoint 2001 of the sandbox
    PBX, over WSS with the locally made certificate): the answer button answers it, and the
    ACD bridges it with the caller."""
    pbx, https_port = tls_pbx
    trust = f"--ignore-certificate-errors-spki-list={_spki_hash(PBX_CERT)}"
    service, _log, _offers = await _running_service(pbx, tmp_path)
    try:
        async with served(create_app(service)) as base, async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, trust]
            )
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            settings = {"wssUrl": f"wss://127.0.0.1:{https_port}/ws",
                        "sipUri": "sip:2001@127.0.0.1", "password": "agent-2001"}
            await context.add_init_script(
                f"localStorage.setItem('desk.softphone', JSON.stringify({json.dumps(settings)}))"
            )
            page = await context.new_page()
            await page.goto(f"{base}/desk/")
            await page.fill("#username", "agent1003")
            await page.fill("#password", "agent-1003")
            await page.click("#login-btn")
            await expect(page.get_by_test_id("softphone-status")).to_have_text(
                "已注册", timeout=10000
            )
            await _go_available(page)
            call = _call(VIP_NUMBER, pbx)
            card = page.get_by_test_id("pop-card")
            await expect(card.get_by_test_id("customer-name")).to_have_text("王伟", timeout=15000)
            await expect(card).to_have_attribute("data-state", "ringing")
            await card.locator("[data-call=answer]").click()
            await expect(card).to_have_attribute("data-state", "connected", timeout=10000)
            caller = await _caller_channel(service, VIP_NUMBER)
            bridge = await _bridge_of(service, caller)
            assert bridge is not None
            assert len(bridge.channels) == 2, bridge
            await page.screenshot(path=str(ARTIFACTS / "desk_softphone.png"), full_page=True)
            leg = next(c for c in bridge.channels if c != caller)
            before = await _rtp_counts(service, [leg])
            await asyncio.sleep(1.0)
            after = await _rtp_counts(service, [leg])
            assert after[leg][0] - before[leg][0] > 25, (before, after)  # the page's audio
            await card.locator("[data-call=hangup]").click()
            result = await call
            assert result.ok, result.describe()
            await browser.close()
    finally:
        await service.stop()
