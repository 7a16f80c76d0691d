"""Redis and PostgreSQL go away during calls (docs/cluster.md, "Failure behaviour").

Two `cti serve` processes (a active, b standby) on a Redis and a PostgreSQL of the test's own
(never the machine's shared ones), the sandbox PBX, an agent phone and sipp callers:

- Redis stopped: a call that arrives is answered and put through to the agent; a's /health
  says Redis is unreachable and what the node cannot do, b's that it is a standby that can
  neither take over nor find the active node. Redis started again, empty: both recover by
  themselves (the same processes), a holds the lease again, b sees a as active, no limits,
  and the pop a made during the outage reaches the agent's page socket on b (the kept events
  are sent to the stream when Redis is back).
- PostgreSQL stopped (`pg_ctl stop -m fast`, the first half of a restart) while a caller talks
  and another waits; a third caller arrives while it is down and is answered and queued; /health
  says the database is unreachable, since when, and what each writer keeps; PostgreSQL started
  again: reachable, nothing kept; the three calls go on to the agent in order, and after they
  end the call log, the event log and the routing decisions of every call are complete.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cti.features.calls.storage import CallRepository
from cti.features.desk.demo import seed_demo_desk
from cti.features.events.store import EventLog
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.db.migrate import upgrade_async
from cti.platform.db.tables.routing import RoutingDecisionRow
from cti.platform.settings import REPO_ROOT
from tests.e2e.cluster_nodes import Node, cluster_prefix, node_settings
from tests.e2e.conftest import DATA
from tests.e2e.pbx import Pbx, SippResult, free_port
from tests.e2e.test_node_takeover_e2e import (
    PageSocket,
    _api,
    _hang_up_agent_leg,
    _login,
    _until_state,
)
from tests.e2e.test_restart_resume_e2e import FLOW, caller, prompts_rendered
from tests.e2e.test_routing_e2e import _from_user, _phones, _stop
from tests.service.cluster.redis_server import RedisServer
from tests.service.private_pg import PrivatePostgres

pytestmark = pytest.mark.e2e
__all__ = ["prompts_rendered"]  # the module fixture, used by name

R1, P2, P3, P4 = "+8613800000801", "+8613800000802", "+8613800000803", "+8613800000804"


@dataclass
class Outages:
    redis: RedisServer
    pg: PrivatePostgres
    a: Node
    b: Node


@pytest.fixture
async def outages(pbx: Pbx, tmp_path: Path, prompts_rendered: None) -> AsyncIterator[Outages]:
    redis = RedisServer(free_port("tcp"))
    pg = PrivatePostgres(free_port("tcp"))
    nodes: list[Node] = []
    try:
        await asyncio.gather(redis.start(), pg.start())
        await upgrade_async(pg.url)
        engine = make_engine(pg.url)
        await seed_demo_desk(make_sessionmaker(engine))
        await engine.dispose()
        rules = (DATA / "routing_rules.yaml").read_text()
        # billing's wrap-up 1 s instead of 4: three calls go to the agent one after the other
        (tmp_path / "routing.yaml").write_text(rules.replace("wrap_up_s: 4", "wrap_up_s: 1", 1))
        flows = tmp_path / "flows"
        flows.mkdir()
        shutil.copy(REPO_ROOT / "ivr_flows" / "agent_greeting.yaml", flows)
        (flows / "restart_resume.yaml").write_text(FLOW)  # 1: billing
        shared = node_settings(
            pbx, pg.url, cluster_prefix(), redis_url=redis.url, inbound_flow="restart_resume",
            flows_dir=str(flows), rules_file=str(tmp_path / "routing.yaml"),
        )
        nodes = [Node("a", tmp_path, shared), Node("b", tmp_path, shared)]
        yield Outages(redis, pg, *nodes)
    finally:
        for node in nodes:
            await node.stop()
        await redis.stop()
        await pg.remove()


async def _until(
    what: str, node: Node, check: Callable[[dict[str, Any]], bool], timeout: float = 15.0
) -> dict[str, Any]:
    """Until the node's /health passes `check`; the node must not have ended meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert node.proc is not None
        assert node.proc.returncode is None, (
            f"node {node.name} ended ({node.proc.returncode}): {node.tail()}")
        h = await node.health()
        if h is not None and check(h):
            return h
        await asyncio.sleep(0.05)
    raise AssertionError(f"node {node.name}: not {what} after {timeout} s: {node.last_health}")


async def _roles(x: Node, y: Node, timeout: float = 120.0) -> tuple[Node, Node]:
    """(active, standby) once one node drives the PBX and the other stands by for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for node in (x, y):
            assert node.proc is not None
            assert node.proc.returncode is None, f"node {node.name} ended: {node.tail()}"
        hx, hy = await x.health(), await y.health()
        for (n1, h1), (n2, h2) in (((x, hx), (y, hy)), ((y, hy), (x, hx))):
            if (h1 is not None and h2 is not None and h1["cluster"]["role"] == "active"
                    and h1["ari_connected"] and h1["last_resync"] is not None
                    and h2["cluster"]["role"] == "standby"
                    and h2["cluster"]["active_node"] == n1.name):
                return n1, n2
        await asyncio.sleep(0.05)
    raise AssertionError(f"no active and standby pair: {x.last_health} / {y.last_health}")


def _limits(h: dict[str, Any]) -> str:
    return " | ".join(h["cluster"]["limits"])


async def test_redis_and_postgresql_outages_during_calls_lose_nothing(
    pbx: Pbx, outages: Outages
) -> None:
    t0 = time.monotonic()
    # Both at once (a node's start is mostly imports: ~15 s each on a loaded box); `a` is
    # whichever takes the lease first, `b` the other one.
    await asyncio.gather(outages.a.start(), outages.b.start())
    registering = asyncio.create_task(_phones(pbx, a1001="answer"))
    try:
        a, b = await _roles(outages.a, outages.b)
    finally:
        phones = await registering
    pids = (a.proc and a.proc.pid, b.proc and b.proc.pid)
    up_s = time.monotonic() - t0
    callers: dict[str, asyncio.Task[SippResult]] = {}
    started = time.monotonic()
    try:
        agent = await _login(a.url, "agent1001", "agent-1001")
        sup = await _login(a.url, "supervisor", "supervisor-pw")
        async with PageSocket(b.url.replace("http", "ws") + "/ws/desk", agent) as page:
            await page.wait_for('"hello"')
            await _api(a.url, agent, "POST", "/agents/me/state", json={"state": "available"})

            # ---------------------------------------------------------------- Redis down
            await outages.redis.stop()
            alone = await _until("alone", a, lambda h: h["cluster"]["role"] == "active"
                                 and "without its lease" in _limits(h))
            assert alone["cluster"]["redis_reachable"] is False
            assert alone["cluster"]["redis_error"]
            assert "goes on alone" in _limits(alone)
            assert "no node holds the active lease" not in _limits(alone)
            stand = await _until("cut off", b, lambda h: "neither take over nor find"
                                 in _limits(h))
            assert stand["cluster"]["role"] == "standby"
            assert stand["cluster"]["redis_reachable"] is False
            # b cannot find the active node: its API says why
            forwarded = await _status(b, sup, "/calls?active=true")
            assert forwarded[0] == 503, forwarded
            assert "Redis is unreachable" in forwarded[1], forwarded

            seen = len(page.messages)
            callers[R1] = caller(pbx, R1, "1", "speech")
            await _until_state(a, sup, R1, "connected")
            assert len(phones["1001"].invites()) == 1
            # (b cannot hear it yet: the stream is Redis's)
            assert R1 not in json.dumps(page.messages[seen:], ensure_ascii=False)
            down = await a.health()
            assert down is not None
            assert down["cluster"]["stream_backlog"] > 0

            # Redis back, empty: both recover by themselves, a keeps driving
            await outages.redis.start()
            back = await _until("active with its lease again", a, lambda h:
                                h["cluster"]["redis_reachable"] is True
                                and h["cluster"]["leases_held"] >= 1
                                and h["cluster"]["active_node"] == a.name
                                and not h["cluster"]["limits"])
            assert back["cluster"]["role"] == "active"
            standby = await _until("standby of a again", b, lambda h:
                                   h["cluster"]["redis_reachable"] is True
                                   and h["cluster"]["active_node"] == a.name
                                   and not h["cluster"]["limits"])
            assert standby["cluster"]["role"] == "standby"
            # the pop a made while Redis was down reaches the page on b
            await page.wait_for(R1, after=seen, timeout=10)
            assert (a.proc and a.proc.pid, b.proc and b.proc.pid) == pids
            # the API through b reaches a again
            assert (await _api(b.url, sup, "GET", "/calls?active=true"))[0][
                "caller_number"] == R1
            await _hang_up_agent_leg(pbx)
            await _until_state(a, sup, R1, None)
            redis_part = time.monotonic() - started

            # ------------------------------------------------------- PostgreSQL restart
            callers[P2] = caller(pbx, P2, "1", "speech")
            await _until_state(a, sup, P2, "connected", timeout=20)
            callers[P3] = caller(pbx, P3, "1", "speech")
            await _until_state(a, sup, P3, "queued")
            await outages.pg.stop_server()
            gone = await _until("without its database", a,
                                lambda h: h["database"]["reachable"] is False)
            assert gone["database"]["error"]
            assert gone["database"]["since"]
            assert "unreachable" in " ".join(gone["database"]["limits"])
            # what reads the record says why it cannot (the live calls do not need it)
            recent = await _status(a, sup, "/calls")
            assert recent[0] == 503, recent
            assert "database_unavailable" in recent[1], recent
            callers[P4] = caller(pbx, P4, "1", "speech")  # arrives while the record is away
            await _until_state(a, sup, P4, "queued", timeout=20)
            kept = await _until("keeping the call log", a, lambda h:
                                h["database"]["pending_writes"].get("call_log", 0) >= 1)
            assert kept["database"]["pending_writes"]["events"] >= 1
            await outages.pg.start_server()
            caught_up = await _until("with its database again", a, lambda h:
                                     h["database"]["reachable"] is True
                                     and not h["database"]["pending_writes"])
            assert caught_up["database"]["since"] > gone["database"]["since"]
            assert not caught_up["database"]["limits"]
            await _until("with its database again", b, lambda h: h["database"]["reachable"])

            # the calls go on: the talker with the agent, then the waiting callers in order
            assert await _state(a, sup, P2) == "connected"
            for number, following in ((P2, P3), (P3, P4), (P4, None)):
                await _hang_up_agent_leg(pbx)
                await _until_state(a, sup, number, None)
                if following is not None:
                    await _until_state(a, sup, following, "connected", timeout=20)
            assert _from_user(phones["1001"]) == [R1, P2, P3, P4]
            for task in callers.values():
                result = await asyncio.wait_for(task, 30)
                assert result.ok, result.describe()
        pg_part = time.monotonic() - started - redis_part

        # the record of every call is complete, the outage's writes included
        await _record_complete(outages.pg.url, [R1, P2, P3, P4], waited=[P3, P4])
        # (-s shows where the time goes)
        print(f"nodes up {up_s:.1f} s, Redis part {redis_part:.1f} s, PostgreSQL part "
              f"{pg_part:.1f} s, all {time.monotonic() - t0:.1f} s")
        assert (a.proc and a.proc.pid, b.proc and b.proc.pid) == pids
    finally:
        await _stop(phones)
        for task in callers.values():
            if not task.done():
                task.cancel()
        await asyncio.gather(*callers.values(), return_exceptions=True)


async def _status(node: Node, token: str, path: str) -> tuple[int, str]:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(f"{node.url}{path}", headers={"authorization": f"Bearer {token}"})
    return r.status_code, r.text


async def _state(node: Node, token: str, number: str) -> str | None:
    calls = await _api(node.url, token, "GET", "/calls?active=true")
    return next((str(c["state"]) for c in calls if c["caller_number"] == number), None)


async def _record_complete(url: str, numbers: list[str], waited: list[str]) -> None:
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    try:
        calls = {c.caller_number: c for c in await CallRepository(sessions).recent(50)}
        log = EventLog(sessions)
        for number in numbers:
            call = calls.get(number)
            assert call is not None, f"no call log row for {number}"
            assert call.state.value == "ended", (number, call)
            assert None not in (call.answered_at, call.ended_at, call.queued_at), (number, call)
            assert (call.agent_id, call.queue) == ("1001", "billing"), (number, call)
            kinds = [e.type for e in await log.read(call_id=call.id)]
            expected = ["CallArrived", "CallAnswered", "CallRouted", "CallOffered",
                        "CallConnected", "CallEnded"]
            if number in waited:  # (an agent ready at once: offered without a queue entry)
                expected.append("CallQueued")
            for kind in expected:
                assert kind in kinds, f"{number}: no {kind} in the event log: {kinds}"
            async with sessions() as s:
                outcomes = (await s.scalars(select(RoutingDecisionRow.outcome).where(
                    RoutingDecisionRow.call_id == call.id))).all()
            assert outcomes, f"{number}: no routing decision kept"
    finally:
        await engine.dispose()

