"""The service killed (-9) and started again: what the callers were in goes on (docs/cluster.md,
"What is kept outside the process"; issue 13).

The first process is `cti serve` in a process of its own, with two callers waiting in billing
(no agent ready) and a third, silent, in the silent-call procedure's first 5 s wait. It is
killed with SIGKILL as soon as that wait's checkpoint is in the database, and a second process
starts on the same database and Asterisk. Then:

- the silent caller's second prompt starts 5 s after the first one ended, +-250 ms, both
  read from Asterisk's own time stamps (an ARI socket of the test's, subscribed to all);
- the silent caller's line is watched again (a new audio tap; the dead process's is gone);
- when agent 1001 becomes ready, the first of the two waiting callers is offered first, the
  other waits first in line, and the offer's wait counts from the original queue entry.

Run with an instance of your own: CTI_E2E_INSTANCE_SUFFIX=<you> .venv/bin/pytest <this file>
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from cti.domain.calls import CallState
from cti.domain.routing.events import CallOffered
from cti.features.calls.storage import CallRepository
from cti.features.ivr.caller_audio import TAP_BRIDGE_PREFIX
from cti.features.ivr.checkpoints import CheckpointStore
from cti.features.phrases.library import load_phrase_library
from cti.features.routing.call_routing import ROUTING_EVENTS
from cti.platform.audio.render import install, render_all
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.db.migrate import upgrade_async
from cti.platform.settings import REPO_ROOT, CompanySettings
from cti.runtime import Service
from tests.e2e.conftest import DATA, service_settings, wait_until
from tests.e2e.pbx import Pbx, SippResult, free_port, run_sipp
from tests.e2e.test_routing_e2e import RoutingEvents, _phones, _stop

pytestmark = pytest.mark.e2e

WAIT_S = 5.0  # the silent-call procedure's waits (row 4)
TOLERANCE_S = 0.25
COMPANY = CompanySettings()

# A menu: 1 waits in billing (no agent ready); 2 goes to a conversation with nobody on it, where
# the caller's silence starts the silent-call procedure after detection.silence_seconds (5 s).
FLOW = """\
name: restart_resume
description: e2e of a restart mid-call (tests/e2e/test_restart_resume_e2e.py)
start: main
nodes:
  main:
    type: menu
    prompt: menu_main
    options: {"1": billing_queue, "2": conversation}
    timeout: 8
    retries: 1
    on_fail: billing_queue
  conversation: {type: listen, then: billing_queue}
  billing_queue: {type: route, queue: billing, skill: billing}
"""


@dataclass
class AriProbe:
    """The PBX's own events for every channel (a second ARI app, subscribed to all): the
    test's clock on the line, which no CTI process's death interrupts."""

    pbx: Pbx
    events: list[dict[str, Any]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        token = base64.b64encode(f"{self.pbx.ari_user}:{self.pbx.ari_password}".encode())
        self._http = aiohttp.ClientSession(headers={"Authorization": f"Basic {token.decode()}"})
        url = self.pbx.ari_url.replace("http://", "ws://") + "/events"
        ws = await self._http.ws_connect(url, params={"app": f"{self.pbx.app}-probe",
                                                      "subscribeAll": "true"})

        async def read() -> None:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self.events.append(json.loads(msg.data))

        self._task = asyncio.create_task(read())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._http is not None:
            await self._http.close()

    def playbacks(self, type_: str, channel: str, phrase: str) -> list[datetime]:
        return [
            datetime.strptime(ev["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z")
            for ev in self.events
            if ev.get("type") == type_
            and ev["playback"].get("target_uri") == f"channel:{channel}"
            and phrase in ev["playback"].get("media_uri", "")
        ]

    async def wait_playback(
        self, type_: str, channel: str, phrase: str, timeout: float
    ) -> datetime:
        await wait_until(lambda: bool(self.playbacks(type_, channel, phrase)), timeout,
                         what=f"{type_} of {phrase} on {channel}")
        return self.playbacks(type_, channel, phrase)[0]


def render_prompts(sounds_dir: Path) -> None:
    """Every prompt rendered and installed before the calls (as `cti phrases render` does for
    a deployment): none is rendered on demand in the middle of a timed wait."""
    library = load_phrase_library(REPO_ROOT / "scripts_lib")
    plan = library.render_plan({"company": {"zh": [COMPANY.name], "en": [COMPANY.name_en]}})
    render_all(plan, REPO_ROOT / "scripts_lib" / "audio")
    install(REPO_ROOT / "scripts_lib" / "audio", sounds_dir)


@pytest.fixture(scope="module")
def prompts_rendered(pbx: Pbx) -> None:
    render_prompts(pbx.sounds_dir)


@contextlib.asynccontextmanager
async def service_process(
    env: dict[str, str], port: int
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`cti serve` as a process of its own, up when its /health answers; killed at the end if
    the test has not killed it."""
    proc = await asyncio.create_subprocess_exec(
        str(REPO_ROOT / ".venv" / "bin" / "cti"), "serve", env={**os.environ, **env},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + 60
            while True:
                assert proc.returncode is None, "cti serve exited at start"
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://127.0.0.1:{port}/health")).status_code < 500:
                        break
                assert time.monotonic() < deadline, "cti serve did not come up in 60 s"
                await asyncio.sleep(0.1)
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def caller(pbx: Pbx, number: str, digit: str, line: str) -> asyncio.Task[SippResult]:
    """A caller who presses `digit` a second after answer, then waits for the far end's BYE;
    `line`: what their phone sends meanwhile (speech, or silence)."""
    return asyncio.create_task(run_sipp(
        pbx, "caller_dtmf_wait_bye", service="4000", caller=number, pcap=pbx.media(line),
        dtmf_pcap=pbx.media(f"dtmf-{digit}"), variables={"dtmf_delay_ms": 1000},
        max_wait_s=90, timeout=100,
    ))


async def test_kill_9_keeps_the_procedures_deadline_and_the_callers_order(
    pbx: Pbx, prompts_rendered: None, tmp_path: Path
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}"
    await upgrade_async(database_url)
    flows = tmp_path / "flows"
    flows.mkdir()
    shutil.copy(REPO_ROOT / "ivr_flows" / "agent_greeting.yaml", flows)
    (flows / "restart_resume.yaml").write_text(FLOW)
    rules_file = tmp_path / "routing.yaml"
    shutil.copy(DATA / "routing_rules.yaml", rules_file)  # open around the clock
    port = free_port("tcp")
    env = {**pbx.cti_env(), "CTI_DATABASE_URL": database_url, "CTI_HTTP_PORT": str(port),
           "CTI_INBOUND_FLOW": "restart_resume", "CTI_FLOWS_DIR": str(flows),
           "CTI_RULES_FILE": str(rules_file), "CTI_LOG_LEVEL": "warning"}
    engine = make_engine(database_url)
    repo, store = CallRepository(make_sessionmaker(engine)), CheckpointStore(
        make_sessionmaker(engine))
    probe = AriProbe(pbx)
    await probe.start()
    callers: list[asyncio.Task[SippResult]] = []
    phones: dict[str, Any] = {}
    second: Service | None = None
    t0 = time.monotonic()

    async def open_call(number: str, state: CallState) -> str:
        found: list[str] = []

        async def look() -> bool:
            found[:] = [c.id for c in await repo.open_calls()
                        if c.caller_number == number and c.state is state]
            return bool(found)

        deadline = time.monotonic() + 30
        while not await look():
            assert time.monotonic() < deadline, f"no {state} call from {number}"
            await asyncio.sleep(0.1)
        return found[0]

    try:
        async with service_process(env, port) as first:
            callers.append(caller(pbx, "+8613800000701", "1", "speech"))
            first_id = await open_call("+8613800000701", CallState.QUEUED)
            await asyncio.sleep(1.0)  # the second caller enters the queue clearly later
            callers.append(caller(pbx, "+8613800000702", "1", "speech"))
            second_id = await open_call("+8613800000702", CallState.QUEUED)
            callers.append(caller(pbx, "+8613800000703", "2", "silence"))
            silent_id = await open_call("+8613800000703", CallState.ANSWERED)
            # the first prompt of the silent-call procedure ends; its 5 s wait starts
            first_end = await probe.wait_playback(
                "PlaybackFinished", silent_id, "silent_call_first", timeout=40)
            deadline = time.monotonic() + 5
            while True:
                kept = await store.load(silent_id)
                proc = kept.state.get("procedure") if kept else None
                if proc and proc["name"] == "silent_call" and proc["node"] == "wait_1":
                    break
                assert time.monotonic() < deadline, "the wait's checkpoint was not written"
                await asyncio.sleep(0.02)
            first.send_signal(signal.SIGKILL)
            await first.wait()
            killed_at = datetime.now(UTC)

        events = RoutingEvents()
        second = Service.build(service_settings(
            pbx, database_url, inbound_flow="restart_resume", flows_dir=flows,
            rules_file=rules_file,
        ))
        second.bus.subscribe("test.routing", events.on_routing_event, ROUTING_EVENTS)
        await second.start()
        restarted_in = (datetime.now(UTC) - killed_at).total_seconds()
        assert second.resync.last is not None
        assert second.resync.last.adopted == 3
        assert restarted_in < 3.0, f"restart took {restarted_in:.2f} s"

        # the silent caller: the procedure's next prompt at the kept deadline
        next_start = await probe.wait_playback(
            "PlaybackStarted", silent_id, "silent_call_second", timeout=15)
        late = (next_start - (first_end + timedelta(seconds=WAIT_S))).total_seconds()
        print(f"\nkilled {(killed_at - first_end).total_seconds():.2f} s into the wait, "
              f"restarted in {restarted_in:.2f} s; second prompt {late * 1000:+.0f} ms "
              "from the 5 s after the first")
        assert abs(late) <= TOLERANCE_S

        # its line is watched again: a tap of the new process's, the dead one's removed
        async def taps() -> list[tuple[str, ...]]:
            return [b.channels for b in await second.telephony.list_bridges()
                    if b.id.startswith(TAP_BRIDGE_PREFIX + silent_id)]

        deadline = time.monotonic() + 10
        while [len(t) for t in await taps()] != [2]:
            assert time.monotonic() < deadline, f"tap bridges: {await taps()}"
            await asyncio.sleep(0.1)
        session = second.registry.get(silent_id)
        assert session is not None
        assert set((await taps())[0]) <= set(session.channels)

        # the waiting callers: in their original order when an agent becomes ready
        acd = second.acd
        assert acd.core.router.position(first_id) == 1
        assert acd.core.router.position(second_id) == 2
        phones = await _phones(pbx, a1001="answer")
        await acd.agent_login("1001")
        offered = await events.wait(CallOffered, timeout=15)
        assert offered.call_id == first_id
        assert acd.core.router.position(second_id) == 1
        # its wait counts from when it first entered the queue, before the kill
        assert offered.waited_s >= (killed_at - first_end).total_seconds() + 1.0
        print(f"offered {first_id} first after {offered.waited_s:.1f} s in the queue; "
              f"test {time.monotonic() - t0:.1f} s")
    finally:
        if second is not None:
            for call_id in [s.call.id for s in second.registry.sessions()]:
                with contextlib.suppress(Exception):
                    await second.telephony.hangup(call_id)
            await second.stop()
        await _stop(phones)
        for task in callers:
            if not task.done():
                task.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
        await probe.stop()
        await engine.dispose()
