"""The queue_log of real calls, end to end: real Asterisk, sipp callers pressing menu keys,
registered sipp agent phones (one never answers), the real service writing its queue_log file
as the events happen, and `cti export queue-log` (a separate process) reading the same calls
back from the database. What a queue_log reader expects must be there, with sane fields:

- a caller queued in billing, rung at an agent who does not answer, answered by the next
  and hanging up: ENTERQUEUE, RINGNOANSWER, CONNECT, COMPLETECALLER;
- a caller waiting in a queue nobody serves who hangs up: ENTERQUEUE, ABANDON;
- the agents' log-ins, a pause and its end, the log-outs: ADDMEMBER, PAUSE, UNPAUSE,
  REMOVEMEMBER.

Own instance:  CTI_E2E_PBX=e2e-qlog .venv/bin/pytest tests/e2e/test_queue_log_e2e.py
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cti.domain.routing.events import CallLeftQueue, CallOffered
from cti.events import CallEnded, DomainEvent
from cti.runtime import Service
from tests.e2e.conftest import DATA, call_from, flows_dir, service_settings, wait_until
from tests.e2e.pbx import AgentPhone, Pbx, SippResult, register_agent, run_sipp

# One backend: the queue_log lines are the subject; the event log they are read from is kept
# and read back on both backends by tests/service/test_event_log.py and
# tests/unit/test_queue_log_export.py.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Line:
    """One queue_log line, split as a reader splits it."""

    time: int
    callid: str
    queue: str
    agent: str
    event: str
    data: list[str]

    @classmethod
    def parse(cls, text: str) -> Line:
        fields = text.split("|")
        assert len(fields) >= 5, text
        return cls(int(fields[0]), fields[1], fields[2], fields[3], fields[4], fields[5:])

    def num(self, index: int) -> int:
        return int(self.data[index])


@dataclass
class Logged:
    service: Service
    pbx: Pbx
    queue_log: Path
    rules_file: Path
    database_url: str
    events: list[DomainEvent]


@pytest.fixture
async def logged(pbx: Pbx, database_url: str, tmp_path: Path) -> AsyncIterator[Logged]:
    rules_file = tmp_path / "routing.yaml"
    shutil.copy(DATA / "routing_rules.yaml", rules_file)
    queue_log = tmp_path / "queue_log"
    settings = service_settings(
        pbx, database_url, inbound_flow="routing_menu", flows_dir=flows_dir(tmp_path, data=None),
        rules_file=rules_file, queue_log_file=queue_log,
    )
    service = Service.build(settings)
    events: list[DomainEvent] = []

    async def record(event: DomainEvent) -> None:
        events.append(event)

    service.bus.subscribe("test.events", record, (CallOffered, CallLeftQueue, CallEnded))
    await service.start()
    try:
        yield Logged(service, pbx, queue_log, rules_file, database_url, events)
    finally:
        await service.stop()


def caller(pbx: Pbx, number: str, digit: str, talk_ms: int) -> asyncio.Task[SippResult]:
    """A caller who presses `digit` a second after answer and hangs up talk_ms after that."""
    return asyncio.create_task(
        run_sipp(
            pbx, "caller_dtmf_hangup", service="4000", caller=number, pcap=pbx.media("speech"),
            dtmf_pcap=pbx.media(f"dtmf-{digit}"),
            variables={"dtmf_delay_ms": 1000, "talk_ms": talk_ms},
            max_wait_s=40, timeout=60,
        )
    )


async def export_queue_log(logged: Logged, since: datetime, until: datetime) -> list[str]:
    """`cti export queue-log` as an administrator runs it: another process, same database."""
    env = {
        **os.environ,
        "CTI_DATABASE_URL": logged.database_url,
        "CTI_RULES_FILE": str(logged.rules_file),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cti", "export", "queue-log",
        "--since", since.isoformat(), "--until", until.isoformat(),
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode().splitlines()


async def test_queue_log_of_an_answered_and_an_abandoned_call(logged: Logged) -> None:
    service, acd, sandbox = logged.service, logged.service.acd, logged.pbx
    started = datetime.now(UTC)
    t_start = int(time.time())
    phones: list[AgentPhone] = []
    try:
        phones.append(await register_agent(sandbox, "1001", mode="noanswer", ring_ms=400))
        phones.append(await register_agent(sandbox, "1003", mode="answer", ring_ms=400))
        await acd.agent_login("1001")  # idle longest: offered first, never answers
        await asyncio.sleep(0.05)
        await acd.agent_login("1003")

        # the first caller: billing, 1001 rings out (3 s), 1003 answers, the caller hangs up
        first = caller(sandbox, "+8613800000601", "1", talk_ms=10_000)
        first_call = await call_from(service, "+8613800000601")
        result = await first
        assert result.ok, result.describe()
        await wait_until(lambda: any(isinstance(e, CallEnded) and e.call_id == first_call
                                     for e in logged.events), what="first call ended")

        # the second caller: tech, which nobody logged in serves; hangs up after ~4 s
        second = caller(sandbox, "+8613800000602", "2", talk_ms=4_000)
        second_call = await call_from(service, "+8613800000602")
        result = await second
        assert result.ok, result.describe()
        await wait_until(lambda: any(isinstance(e, CallLeftQueue) and e.call_id == second_call
                                     for e in logged.events), what="second call left the queue")

        await acd.agent_pause("1001", "lunch")
        await acd.agent_available("1001")
        await acd.agent_logout("1001")
        await acd.agent_logout("1003")
    finally:
        for phone in phones:
            await phone.stop()
    await service.bus.drain()
    t_end = int(time.time())

    written = logged.queue_log.read_text().splitlines()
    exported = await export_queue_log(
        logged, started - timedelta(minutes=1), datetime.now(UTC) + timedelta(minutes=1)
    )
    # the file written as the calls happened and the export of the kept events agree
    assert exported == written
    lines = [Line.parse(text) for text in written]
    assert all(t_start - 1 <= ln.time <= t_end for ln in lines), written

    # ----- the answered call
    mine = [ln for ln in lines if ln.callid == first_call]
    assert [ln.event for ln in mine] == [
        "ENTERQUEUE", "RINGNOANSWER", "CONNECT", "COMPLETECALLER",
    ], written
    enter, rna, connect, complete = mine
    assert {ln.queue for ln in mine} == {"billing"}
    assert (enter.agent, enter.data) == ("NONE", ["", "+8613800000601", "1"])
    assert rna.agent == "Agent/1001"
    assert 2900 <= rna.num(0) <= 4500, rna  # the queue's ring timeout is 3 s
    assert 2 <= rna.time - enter.time <= 5
    assert connect.agent == "Agent/1003"
    holdtime, leg, ringtime = connect.num(0), connect.data[1], connect.num(2)
    offer_1003 = [e for e in logged.events if isinstance(e, CallOffered)
                  and e.call_id == first_call and e.agent_id == "1003"]
    assert leg == offer_1003[0].offer_id != ""
    assert holdtime == connect.time - enter.time  # waited from entry to the agent's answer
    assert 3 <= holdtime <= 6, connect  # the 3 s ring-out, then 1003's 0.4 s ring
    assert 0 <= ringtime <= 1, connect
    assert complete.agent == "Agent/1003"
    assert complete.num(0) == holdtime
    assert complete.num(1) == complete.time - connect.time
    assert 2 <= complete.num(1) <= 9, complete  # the caller talked until their hang-up
    assert complete.num(2) == 1  # origposition

    # ----- the abandoned call
    gone = [ln for ln in lines if ln.callid == second_call]
    assert [ln.event for ln in gone] == ["ENTERQUEUE", "ABANDON"], written
    enter, abandon = gone
    assert {ln.queue for ln in gone} == {"tech"}
    assert (enter.agent, enter.data) == ("NONE", ["", "+8613800000602", "1"])
    assert abandon.agent == "NONE"
    position, origposition, waittime = (abandon.num(i) for i in range(3))
    assert (position, origposition) == (1, 1)
    assert waittime == abandon.time - enter.time
    assert 2 <= waittime <= 7, abandon  # hung up ~4 s after pressing 2

    # ----- the agents: members of billing (their skills), one pause with its reason
    members = [(ln.agent, ln.event, ln.data) for ln in lines if ln.callid == "NONE"]
    assert {ln.queue for ln in lines if ln.callid == "NONE"} == {"billing"}
    assert members == [
        ("Agent/1001", "ADDMEMBER", [""]),
        ("Agent/1003", "ADDMEMBER", [""]),
        ("Agent/1001", "PAUSE", ["lunch"]),
        ("Agent/1001", "UNPAUSE", [""]),
        ("Agent/1001", "REMOVEMEMBER", [""]),
        ("Agent/1003", "REMOVEMEMBER", [""]),
    ]
