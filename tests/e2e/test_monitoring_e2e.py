"""Listen, whisper, barge proven by audio on the sandbox Asterisk.

A sipp caller sends a 600 Hz tone, the agent's sipp phone (1004) answers with 1400 Hz and the
supervisor's sipp phone (1007) answers the monitor's call with 2200 Hz. What each party
*receives* is read off the wire: the RTP Asterisk sends to each phone, captured on the
loopback interface (tests/e2e/rtp_capture.py) for a few seconds in each mode. Each tone is
then looked for in each party's audio (FFT):

- listen:  the supervisor hears caller and agent; neither hears the supervisor;
- whisper: the agent hears the supervisor, the caller does not; the supervisor hears both;
- barge:   caller and agent both hear the supervisor; the supervisor hears both.

The supervisor's phone is dialled once: its sipp answers a single call (`-m 1`), and the
leg's channel stays the same through the three modes.

Run with an instance of your own:
  CTI_E2E_INSTANCE_SUFFIX=mon .venv/bin/pytest tests/e2e/test_monitoring_e2e.py -q -s
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.async_api import async_playwright, expect

from cti.app import create_app
from cti.domain.monitoring import Mode
from cti.events import MonitorModeChanged, MonitorStarted, MonitorStopped
from cti.features.auth.service import NewUser, Role
from cti.runtime import Service
from tests.api.desk_app import served
from tests.e2e import media
from tests.e2e.conftest import DATA, call_from, flows_dir, service_settings, wait_until
from tests.e2e.pbx import Pbx, register_agent, run_sipp
from tests.e2e.rtp_capture import RtpCapture
from tests.e2e.test_agent_page import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, csp_violations

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

QUIET_FLOW = ("name: agent_quiet\nstart: talk\nnodes:\n"
              "  talk: {type: wait, seconds: 3600, next: talk}\n")
CALLER_HZ, AGENT_HZ, SUPERVISOR_HZ = 600.0, 1400.0, 2200.0
TONES = {"caller": CALLER_HZ, "agent": AGENT_HZ, "supervisor": SUPERVISOR_HZ}
LINE_S = 90.0
PHASE_S = 3.0  # recorded per mode
SETTLE_S = 0.7  # after a mode change, before recording

# Who must hear whom, per mode (receiver -> tones present / absent). A party's own tone is not
# looked at: a snoop hearing what goes out to a phone may carry the phone's echo path.
HEARS: dict[Mode, dict[str, tuple[set[str], set[str]]]] = {
    Mode.LISTEN: {"caller": ({"agent"}, {"supervisor"}),
                  "agent": ({"caller"}, {"supervisor"}),
                  "supervisor": ({"caller", "agent"}, set())},
    Mode.WHISPER: {"caller": ({"agent"}, {"supervisor"}),
                   "agent": ({"caller", "supervisor"}, set()),
                   "supervisor": ({"caller", "agent"}, set())},
    Mode.BARGE: {"caller": ({"agent", "supervisor"}, set()),
                 "agent": ({"caller", "supervisor"}, set()),
                 "supervisor": ({"caller", "agent"}, set())},
}


def band(samples: np.ndarray[Any, Any], hz: float, rate: int = 8000, width: float = 15) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    freqs = np.fft.rfftfreq(samples.size, 1 / rate)
    return float(spectrum[(freqs > hz - width) & (freqs < hz + width)].sum())


async def test_listen_whisper_barge_each_reach_exactly_the_right_ears(
    pbx: Pbx, database_url: str, tmp_path: Path
) -> None:
    pcaps = {who: tmp_path / f"mon-{who}.pcap" for who in TONES}
    for who, hz in TONES.items():
        media.write_rtp_pcap(pcaps[who], media.tone(hz, LINE_S))
    flows = flows_dir(tmp_path)
    (flows / "agent_quiet.yaml").write_text(QUIET_FLOW, encoding="utf-8")
    settings = service_settings(pbx, database_url, inbound_flow="routing_direct",
                                flows_dir=flows, rules_file=DATA / "routing_rules.yaml",
                                agent_flow="agent_quiet")
    service = Service.build(settings)
    seen: list[Any] = []

    async def note(event: Any) -> None:
        seen.append(event)

    service.bus.subscribe("test.monitoring", note,
                          (MonitorStarted, MonitorModeChanged, MonitorStopped))
    await service.start()
    agent = await register_agent(pbx, "1004", ring_ms=300, pcap=pcaps["agent"])
    supervisor = await register_agent(pbx, "1007", ring_ms=300, pcap=pcaps["supervisor"])
    caller = None
    tel = service.telephony
    try:
        await service.acd.agent_login("1004")
        caller = asyncio.create_task(run_sipp(
            pbx, "caller_wait_bye", service="4000", caller="+8613800000991",
            pcap=pcaps["caller"], max_wait_s=80, timeout=90))
        call_id = await call_from(service, "+8613800000991")
        await wait_until(lambda: service.acd.connected(call_id) is not None, 15,
                         "the agent to answer")
        legs = service.acd.connected(call_id)
        assert legs is not None

        view = await service.monitoring.start(call_id, Mode.LISTEN, "PJSIP/1007", "sup")
        leg = f"mon-{view.monitor_id}"
        await wait_until(lambda: any(isinstance(e, MonitorStarted) for e in seen), 15,
                         "the supervisor's phone to answer")
        channels = {"caller": call_id, "agent": legs.agent_channel, "supervisor": leg}
        ports = {}
        for who, channel in channels.items():  # where Asterisk sends each phone's RTP
            dest = await tel.get_variable(channel, "CHANNEL(rtp,dest)")
            ports[who] = int(dest.rsplit(":", 1)[1])
        assert len(set(ports.values())) == 3, ports

        heard: dict[Mode, dict[str, dict[str, float]]] = {}
        with RtpCapture() as wire:
            for mode in (Mode.LISTEN, Mode.WHISPER, Mode.BARGE):
                if mode is not Mode.LISTEN:
                    await service.monitoring.change(call_id, mode, "sup")
                assert service.monitoring.get(call_id).mode is mode
                await asyncio.sleep(SETTLE_S)
                since = time.monotonic()
                await asyncio.sleep(PHASE_S)
                until = time.monotonic()
                heard[mode] = {}
                for who in TONES:
                    samples = wire.received(ports[who], since, until)
                    assert samples.size > 8000 * (PHASE_S - 1), (mode, who, samples.size)
                    heard[mode][who] = {src: band(samples, hz) for src, hz in TONES.items()}
                    print(f"{mode.value:8} {who:10} hears " + ", ".join(
                        f"{src} {v:.3g}" for src, v in heard[mode][who].items()))

        # the same leg all along: answered once (sipp takes one call), never re-dialled
        assert [type(e).__name__ for e in seen] == [
            "MonitorStarted", "MonitorModeChanged", "MonitorModeChanged"]
        assert {e.monitor_id for e in seen} == {view.monitor_id}
        assert [c.id for c in await tel.list_channels() if c.id.startswith("mon-")
                and "-s" not in c.id.removeprefix("mon-")] == [leg]

        for mode, receivers in HEARS.items():
            for who, (present, absent) in receivers.items():
                levels = heard[mode][who]
                loudest = max(levels[src] for src in present)
                for src in present:
                    assert levels[src] > 0.1 * loudest, (mode.value, who, "should hear", src,
                                                         levels)
                for src in absent:
                    assert levels[src] < 0.02 * loudest, (mode.value, who, "must not hear",
                                                          src, levels)

        await service.monitoring.stop(call_id, "sup")
        await wait_until(lambda: any(isinstance(e, MonitorStopped) for e in seen), 10,
                         "the monitor to stop")
        (stopped,) = [e for e in seen if isinstance(e, MonitorStopped)]
        assert stopped.reason == "stopped"
        for _ in range(50):  # the supervisor's leg is hung up
            if leg not in {c.id for c in await tel.list_channels()}:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the supervisor's leg is still up after the stop")
        assert len(supervisor.invites()) == 1  # dialled once for three modes
        # the call goes on without the supervisor
        assert service.acd.connected(call_id) == legs
        await tel.hangup(call_id)
        result = await caller
        caller = None
        assert result.ok, result.describe()
    finally:
        if caller is not None:
            caller.cancel()
        await agent.stop()
        await supervisor.stop()
        await service.stop()


@pytest.mark.browser
async def test_the_supervisor_page_listens_whispers_barges_and_stops(
    pbx: Pbx, database_url: str, tmp_path: Path
) -> None:
    """The buttons beside a connected call on the supervisor page (chromium): the phone typed
    in "my phone" is dialled once, the pressed mode is the monitor's, and Stop hangs it up."""
    ARTIFACTS.mkdir(exist_ok=True)
    line = tmp_path / "page-caller.pcap"
    media.write_rtp_pcap(line, media.tone(CALLER_HZ, LINE_S))
    flows = flows_dir(tmp_path)
    (flows / "agent_quiet.yaml").write_text(QUIET_FLOW, encoding="utf-8")
    settings = service_settings(pbx, database_url, inbound_flow="routing_direct",
                                flows_dir=flows, rules_file=DATA / "routing_rules.yaml",
                                agent_flow="agent_quiet")
    service = Service.build(settings)
    seen: list[Any] = []

    async def note(event: Any) -> None:
        seen.append(event)

    service.bus.subscribe("test.monitoring", note,
                          (MonitorStarted, MonitorModeChanged, MonitorStopped))
    await service.start()
    agent = await register_agent(pbx, "1004", ring_ms=300)
    supervisor = await register_agent(pbx, "1007", ring_ms=300)
    caller = None
    try:
        await service.desk.auth.users.create(NewUser("boss", "boss-e2e-pw", Role.SUPERVISOR))
        await service.acd.agent_login("1004")
        caller = asyncio.create_task(run_sipp(
            pbx, "caller_wait_bye", service="4000", caller="+8613800000992", pcap=line,
            max_wait_s=80, timeout=90))
        call_id = await call_from(service, "+8613800000992")
        await wait_until(lambda: service.acd.connected(call_id) is not None, 15,
                         "the agent to answer")
        async with served(create_app(service)) as base, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                refused = csp_violations(page)
                await page.goto(f"{base}/desk/")
                await page.fill("#username", "boss")
                await page.fill("#password", "boss-e2e-pw")
                await page.click("#login-btn")
                await page.wait_for_url("**/supervisor.html")
                row = page.locator(f"[data-testid=call-row][data-call-id='{call_id}']")
                await expect(row).to_be_visible(timeout=5000)
                await row.locator("[data-action=listen]").click()
                await expect(page.locator("#monitor-error")).to_have_text("请先填写您的话机")
                await page.fill("#monitor-endpoint", "1007")
                await row.locator("[data-action=listen]").click()
                await wait_until(lambda: any(isinstance(e, MonitorStarted) for e in seen), 15,
                                 "the supervisor's phone to answer")
                await expect(row.locator("[data-action=listen]")).to_have_attribute(
                    "aria-pressed", "true")
                await row.locator("[data-action=whisper]").click()
                await expect(row.locator("[data-action=whisper]")).to_have_attribute(
                    "aria-pressed", "true", timeout=5000)
                assert service.monitoring.get(call_id).mode is Mode.WHISPER
                await row.locator("[data-action=barge]").click()
                await expect(row.locator("[data-action=barge]")).to_have_attribute(
                    "aria-pressed", "true", timeout=5000)
                assert service.monitoring.get(call_id).mode is Mode.BARGE
                await page.screenshot(path=str(ARTIFACTS / "supervisor_monitor.png"),
                                      full_page=True)
                await row.locator("[data-action=stop-monitor]").click()
                await expect(row.locator("[data-action=stop-monitor]")).to_have_count(
                    0, timeout=5000)
                await expect(page.locator("#monitor-error")).to_have_text("")
                assert refused == []
            finally:
                await browser.close()
        await service.bus.drain()
        assert [(type(e).__name__, getattr(e, "mode", None)) for e in seen] == [
            ("MonitorStarted", "listen"), ("MonitorModeChanged", "whisper"),
            ("MonitorModeChanged", "barge"), ("MonitorStopped", None)]
        assert seen[0].endpoint == "PJSIP/1007"
        assert seen[0].supervisor == "boss"
        assert len(supervisor.invites()) == 1
        await service.telephony.hangup(call_id)
        result = await caller
        caller = None
        assert result.ok, result.describe()
    finally:
        if caller is not None:
            caller.cancel()
        await agent.stop()
        await supervisor.stop()
        await service.stop()
