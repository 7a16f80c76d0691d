"""A scripted set of real calls gives exactly the hand-computed figures (docs/metrics.md), live
on the wallboard (`GET /reports/live`) and in the report (`GET /reports/queues`), on SQLite
(the embedded default). The same figures from the same events on PostgreSQL too are proven by
tests/service/test_reports.py and tests/service/test_report_rollups.py (both backends).

Queue `general`: service-level threshold T = 2 s, short-abandon threshold 5 s (the default),
ring timeout 3 s, wrap-up 1 s. Agents 1001 (A) and 1002 (B) answer after 0.3 s; 1003 (C)
never answers. Sipp callers send a tone; the test hangs callers up through ARI, so every
wait and talk is the test's own doing. In order:

1. answered fast:   A available, answers at once (wait < T: in SL); 2 s talk.
2. answered slow:   A paused ("break"); the caller waits 5 s, A is made available and answers
                    (wait > T: not in SL); 2 s talk.
3. short abandon:   A paused ("lunch") from here to call 6; the caller hangs up after 2 s.
4. long abandon:    the caller hangs up after 7 s (> 5 s: an abandon; > T: not in SL).
5. ring-no-answer:  C and B log in, C idle longest: C rings 3 s and misses, B answers
                    (wait > T); 2 s talk.
6. transfer:        A back; the agent who answers (wait < T) transfers blind to the other
                    after 2 s, who answers; 2 s talk.

Hand-computed, for `general`: offered 6, answered 4, answered in SL 2, abandoned 1 (not in SL),
short abandons 1, SL 2/4 = 0.5, SL2 (2 + 0) / (4 + 1) = 0.4, abandonment rate 1/5 = 0.2,
handled 4, transfers out 1; per agent: A 3 calls (1, 2 and 6), B 2 (5 and 6), C 1 missed, one
transfer out and one in, A's pause by reason. Times (waits, talk, wrap-up, pauses) are the
test's own clock's, within half a second each.

Own instance:
  CTI_E2E_INSTANCE_SUFFIX=fig .venv/bin/pytest tests/e2e/test_scripted_calls_figures_e2e.py
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cti.app import create_app
from cti.domain.routing.events import (
    AgentStateChanged,
    CallConnected,
    CallLeftQueue,
    CallOffered,
    CallQueued,
    OfferWithdrawn,
)
from cti.events import CallEnded
from cti.features.auth.service import NewUser, Role
from cti.runtime import Service
from tests.e2e import media
from tests.e2e.conftest import call_from, flows_dir, service_settings, wait_until
from tests.e2e.pbx import AgentPhone, Pbx, SippResult, register_agent, run_sipp

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

RULES = """\
version: 1
skills: [general]
max_missed_offers: 3
default_queue: general
queues:
  general:
    skills: {general: 1}
    strategy: longest_idle
    service_level: {percent: 80, seconds: 2}
    ring_timeout_s: 3
    wrap_up_s: 1
    max_wait_s: 120
    fallback: {action: voicemail}
    announce: {position: false, estimated_wait: false}
agents:
  "1001": {skills: {general: 5}}
  "1002": {skills: {general: 5}}
  "1003": {skills: {general: 5}}
rules: []
"""
QUIET_FLOW = ("name: agent_quiet\nstart: talk\nnodes:\n"
              "  talk: {type: wait, seconds: 3600, next: talk}\n")
TALK_S = 2.0
TOL = 0.5  # each time the test measures against the figures' own


class Script:
    """The running service, its events with the test's clock, and the callers."""

    def __init__(self, service: Service, pbx: Pbx, pcap: Path) -> None:
        self.service, self.pbx, self.pcap = service, pbx, pcap
        self.events: list[tuple[float, Any]] = []
        self.callers: list[asyncio.Task[SippResult]] = []
        service.bus.subscribe("test.script", self._note, (
            CallQueued, CallOffered, CallConnected, CallLeftQueue, CallEnded, OfferWithdrawn,
            AgentStateChanged))

    async def _note(self, event: Any) -> None:
        self.events.append((time.monotonic(), event))

    def first(self, kind: type[Any], **match: Any) -> tuple[float, Any] | None:
        for t, e in self.events:
            if isinstance(e, kind) and all(getattr(e, k) == v for k, v in match.items()):
                return t, e
        return None

    async def wait(self, kind: type[Any], what: str, timeout: float = 15, **match: Any
                   ) -> Any:
        try:
            await wait_until(lambda: self.first(kind, **match) is not None, timeout, what)
        except AssertionError:
            raise AssertionError(f"{what}: not among {[e for _, e in self.events]}") from None
        found = self.first(kind, **match)
        assert found is not None
        return found[1]

    async def call(self, number: str) -> str:
        self.callers.append(asyncio.create_task(run_sipp(
            self.pbx, "caller_wait_bye", service="4000", caller=number, pcap=self.pcap,
            max_wait_s=60, timeout=90)))
        call_id = await call_from(self.service, number)
        # in the ACD: waiting (CallQueued), or offered at once to a free agent
        await wait_until(lambda: any(isinstance(e, CallQueued | CallOffered)
                                     and e.call_id == call_id for _, e in self.events),
                         15, f"{number} in the queue")
        return call_id

    async def hang_up(self, call_id: str) -> None:
        await self.service.telephony.hangup(call_id)
        await self.wait(CallEnded, f"{call_id} ended", call_id=call_id)

    async def idle(self, agent: str) -> None:
        await wait_until(lambda: self.service.acd.agent_status(agent).state == "available",
                         10, f"{agent} available")


async def test_a_scripted_day_gives_the_hand_computed_figures_live_and_in_the_report(
    pbx: Pbx, database_url: str, tmp_path: Path
) -> None:
    rules_file = tmp_path / "routing.yaml"
    rules_file.write_text(RULES, encoding="utf-8")
    flows = flows_dir(tmp_path)
    (flows / "agent_quiet.yaml").write_text(QUIET_FLOW, encoding="utf-8")
    pcap = tmp_path / "caller.pcap"
    media.write_rtp_pcap(pcap, media.tone(600.0, 60.0))
    settings = service_settings(pbx, database_url, inbound_flow="routing_direct",
                                flows_dir=flows, rules_file=rules_file, agent_flow="agent_quiet")
    service = Service.build(settings)
    s = Script(service, pbx, pcap)  # subscribed before the bus starts
    await service.start()
    acd = service.acd
    phones: list[AgentPhone] = []
    began = datetime.now(UTC)
    mark: dict[str, float] = {}
    try:
        phones.append(await register_agent(pbx, "1001", ring_ms=300))
        phones.append(await register_agent(pbx, "1002", ring_ms=300))
        phones.append(await register_agent(pbx, "1003", mode="noanswer"))
        await acd.agent_login("1001")

        # 1. answered fast
        c1 = await s.call("+8613800000701")
        await s.wait(CallConnected, "call 1 answered", call_id=c1)
        await asyncio.sleep(TALK_S)
        await s.hang_up(c1)
        await s.idle("1001")

        # 2. answered slow, while A is paused for a break
        await acd.agent_pause("1001", "break")
        mark["break"] = time.monotonic()
        c2 = await s.call("+8613800000702")
        await asyncio.sleep(5.0)
        await acd.agent_available("1001")
        mark["break"] = time.monotonic() - mark["break"]
        await s.wait(CallConnected, "call 2 answered", call_id=c2)
        await asyncio.sleep(TALK_S)
        await s.hang_up(c2)
        await s.idle("1001")

        # 3. short abandon and 4. long abandon: nobody available (A at lunch)
        await acd.agent_pause("1001", "lunch")
        mark["lunch"] = time.monotonic()
        c3 = await s.call("+8613800000703")
        await asyncio.sleep(2.0)
        await s.hang_up(c3)
        c4 = await s.call("+8613800000704")
        await asyncio.sleep(7.0)
        await s.hang_up(c4)

        # 5. ring-no-answer at C, answered by B
        await acd.agent_login("1003")
        await asyncio.sleep(0.05)
        await acd.agent_login("1002")
        c5 = await s.call("+8613800000705")
        missed = await s.wait(OfferWithdrawn, "C's ring to time out", call_id=c5)
        assert (missed.agent_id, missed.reason) == ("1003", "no_answer")
        await acd.agent_logout("1003")
        connected5 = await s.wait(CallConnected, "call 5 answered", call_id=c5)
        assert connected5.agent_id == "1002"
        await asyncio.sleep(TALK_S)
        await s.hang_up(c5)
        await s.idle("1002")

        # 6. transfer: whoever answers hands the call to the other
        await acd.agent_available("1001")
        mark["lunch"] = time.monotonic() - mark["lunch"]
        c6 = await s.call("+8613800000706")
        first6 = await s.wait(CallConnected, "call 6 answered", call_id=c6)
        x = first6.agent_id
        y = "1002" if x == "1001" else "1001"
        await asyncio.sleep(TALK_S)
        await service.transfers.transfer(c6, agent_id=x, target_type="agent", target=y,
                                         kind="blind")
        await s.wait(CallConnected, "call 6 at the colleague", call_id=c6, agent_id=y)
        await asyncio.sleep(TALK_S)
        await s.hang_up(c6)
        await s.idle(x)
        await s.idle(y)
        for caller in s.callers:
            result = await caller
            assert result.ok, result.describe()
        s.callers.clear()
        await service.bus.drain()

        # ----- the figures, over HTTP, as a supervisor reads them
        boss = await service.desk.auth.users.create(
            NewUser("boss", "boss-e2e-pw", Role.SUPERVISOR))
        token = service.desk.auth.tokens.issue(boss).token
        app = create_app(service)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://cti",
                                     headers={"Authorization": f"Bearer {token}"}) as client:
            r = await client.get("/reports/live")
            assert r.status_code == 200, r.text
            live = r.json()
            r = await client.get("/reports/queues", params={
                "since": (began - timedelta(minutes=1)).isoformat(),
                # until now: agents still logged in are counted up to the same moment
                "until": datetime.now(UTC).isoformat(),
                "interval": "all", "tz": "UTC"})
            assert r.status_code == 200, r.text
            report = r.json()

        (live_q,) = [q for q in live["queues"] if q["queue"] == "general"]
        (report_q,) = report["queues"]
        assert report_q["queue"] == "general"
        waits: dict[str, float] = {}
        for _, e in s.events:  # each call's answer (not call 6's second agent)
            if isinstance(e, CallConnected):
                waits.setdefault(e.call_id, e.waited_s)
        print("waits", waits)
        for name, figures in (("live", live_q), ("report", report_q)):
            print(name, {k: figures[k] for k in sorted(figures) if not isinstance(
                figures[k], dict)})
            exact = {k: figures[k] for k in (
                "offered", "answered", "answered_in_sl", "abandoned", "abandoned_in_sl",
                "short_abandoned", "callbacks", "voicemails", "handled", "transfers_out")}
            assert exact == {
                "offered": 6, "answered": 4, "answered_in_sl": 2, "abandoned": 1,
                "abandoned_in_sl": 0, "short_abandoned": 1, "callbacks": 0, "voicemails": 0,
                "handled": 4, "transfers_out": 1}, name
            assert figures["sl"] == pytest.approx(0.5), name
            assert figures["sl2"] == pytest.approx(0.4), name
            assert figures["service_level"] == pytest.approx(0.5), name
            assert figures["abandonment_rate"] == pytest.approx(0.2), name
            # ASA: the mean of the four answered waits, as the test saw them: call 1 and 6
            # at once (the 0.3 s ring), call 2 after ~5 s, call 5 after C's 3 s ring
            assert figures["asa_s"] == pytest.approx(
                (waits[c1] + waits[c2] + waits[c5] + waits[c6]) / 4, abs=1e-3), name
            assert waits[c1] < 2, waits
            assert waits[c6] < 2, waits
            assert 5 - TOL < waits[c2] < 5 + 2 * TOL, waits
            assert 3 - TOL < waits[c5] < 3 + 2 * TOL, waits
            # AHT: (4 calls' talk, call 6 in two parts, + 5 wrap-ups of 1 s) / 4 handled
            talk = 5 * TALK_S
            assert figures["aht_s"] == pytest.approx((talk + 5 * 1.0) / 4, abs=TOL), name
        # live and historical: the same numbers
        for key, value in report_q.items():
            if key in live_q and not isinstance(value, dict) and key != "interval_start":
                assert live_q[key] == pytest.approx(value, abs=1e-3), key

        live_a = {a["agent_id"]: a for a in live["agents"]}
        report_a = {a["agent_id"]: a for a in report["agents"]}
        for name, agents in (("live", live_a), ("report", report_a)):
            assert agents["1001"]["calls"] == 3, name
            assert agents["1002"]["calls"] == 2, name
            assert agents["1003"]["calls"] == 0, name
            assert agents["1003"]["missed"] == 1, name
            assert (agents[x]["transfers_out"], agents[x]["transfers_in"]) == (1, 0), name
            assert (agents[y]["transfers_out"], agents[y]["transfers_in"]) == (0, 1), name
            pauses = agents["1001"]["pause_s"]
            assert set(pauses) == {"break", "lunch"}, name
            assert pauses["break"] == pytest.approx(mark["break"], abs=TOL), name
            assert pauses["lunch"] == pytest.approx(mark["lunch"], abs=TOL), name
            for agent in ("1001", "1002", "1003"):
                for key in ("calls", "talk_s", "hold_s", "wrap_s", "paused_s", "logged_in_s",
                            "missed", "transfers_in", "transfers_out"):
                    # the live board closes open states at its own "now", a moment after the
                    # report's end: a still-logged-in agent's time runs on meanwhile
                    tol = 2.0 if key == "logged_in_s" else 1e-3
                    assert live_a[agent][key] == pytest.approx(report_a[agent][key], abs=tol), (
                        agent, key)
    finally:
        for caller in s.callers:
            caller.cancel()
        for phone in phones:
            await phone.stop()
        await service.stop()
