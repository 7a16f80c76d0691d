"""The desk socket: screen pop at offer, withdrawal, sequence numbers, snapshot on reconnect."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from desk_app import desk_app, served
from test_crm_api import EXTERNAL, external_crm
from websockets.asyncio.client import ClientConnection, connect

from cti.domain.routing.events import (
    AgentStateChanged,
    CallConnected,
    CallOffered,
    CallQueued,
    OfferWithdrawn,
)
from cti.features.desk.demo import seed_demo_desk

AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def offered(call_id: str, agent: str, number: str = "+49305551", **attrs: Any) -> CallOffered:
    return CallOffered(call_id=call_id, agent_id=agent, queue="sales", waited_s=12.34,
                       attributes={"menu_path": ["main", "2-sales"], **attrs}, at=AT,
                       offer_id=f"o-{call_id}-{agent}", caller_number=number)


class Page:
    """A desk socket and everything it received, with its sequence numbers checked."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.last_seq: dict[str, int] = {}

    async def next(self, match: Callable[[dict[str, Any]], bool], timeout: float = 3.0) -> dict[
        str, Any
    ]:
        async with asyncio.timeout(timeout):
            while True:
                msg = json.loads(await self.ws.recv())
                self.messages.append(msg)
                if "seq" in msg and msg.get("topic"):
                    topic = msg["topic"]
                    if msg["type"] != "snapshot" and topic in self.last_seq:
                        assert msg["seq"] == self.last_seq[topic] + 1, "sequence gap"
                    self.last_seq[topic] = msg["seq"]
                if match(msg):
                    return msg


async def open_page(base: str, token: str) -> Page:
    ws = await connect(f"{base.replace('http', 'ws')}/ws/desk")
    await ws.send(json.dumps({"type": "auth", "token": token}))
    page = Page(ws)
    await page.next(lambda m: m["type"] == "hello")
    return page


async def test_offer_pops_the_callers_record_before_answer(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env, served(env.app) as base:
        await seed_demo_desk(env.desk.sessions)
        page = await open_page(base, await env.token("agent1001", "agent-1001"))
        snap = await page.next(lambda m: m["type"] == "snapshot")
        assert snap["items"] == []
        await env.desk.screen_pop.on_routing_event(offered("c1", "1001"))
        pop = await page.next(lambda m: m["type"] == "pop")
        customer = pop["caller"]["customer"]
        assert (customer["name"], customer["surname"], customer["title"], customer["tier"]) == (
            "王伟", "王", "mr", "vip")
        assert "complaint" in customer["notes"]
        assert pop["state"] == "ringing"
        assert pop["queue"] == "sales"
        assert pop["menu_path"] == ["main", "2-sales"]
        assert pop["waited_s"] == 12.3
        assert pop["script"]["text"]["zh"] == "王先生,请问有什么可以帮助您?"
        assert pop["script"]["address_as"] == {"zh": "王先生", "en": "Mr 王"}
        await page.ws.close()


async def test_unknown_caller_gets_the_standard_greeting_with_agent_id(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env, served(env.app) as base:
        page = await open_page(base, await env.token("agent1001", "agent-1001"))
        await env.desk.screen_pop.on_routing_event(offered("c1", "1001", number="anonymous"))
        pop = await page.next(lambda m: m["type"] == "pop")
        assert pop["caller"]["customer"] is None
        assert "客服代表1001很高兴为您服务" in pop["script"]["text"]["zh"]
        await page.ws.close()


async def test_pops_of_other_agents_are_withdrawn_when_one_answers(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env, served(env.app) as base:
        a = await open_page(base, await env.token("agent1001", "agent-1001"))
        b = await open_page(base, await env.token("agent1002", "agent-1002"))
        pop = env.desk.screen_pop
        await pop.on_routing_event(offered("c1", "1001"))
        await pop.on_routing_event(offered("c1", "1002"))
        await a.next(lambda m: m["type"] == "pop")
        await b.next(lambda m: m["type"] == "pop")
        await pop.on_routing_event(CallConnected("c1", "1001", "sales", 14.0, AT, "br1"))
        removed = await b.next(lambda m: m.get("op") == "remove")
        assert (removed["key"], removed["reason"]) == ("pop:c1", "answered_elsewhere")
        kept = await a.next(lambda m: m["type"] == "pop" and m["state"] == "connected")
        assert kept["caller"]["number"] == "+49305551"
        assert env.desk.hub.item("agent:1002", "pop:c1") is None
        await a.ws.close()
        await b.ws.close()


async def test_withdrawn_offer_removes_the_pop(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env, served(env.app) as base:
        a = await open_page(base, await env.token("agent1001", "agent-1001"))
        await env.desk.screen_pop.on_routing_event(offered("c1", "1001"))
        await env.desk.screen_pop.on_routing_event(
            OfferWithdrawn("c1", "1001", "caller_hangup", AT))
        removed = await a.next(lambda m: m.get("op") == "remove")
        assert removed["reason"] == "caller_hangup"
        await a.ws.close()


async def test_reconnect_gets_a_snapshot_then_deltas(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env, served(env.app) as base:
        token = await env.token("agent1001", "agent-1001")
        pop = env.desk.screen_pop
        first = await open_page(base, token)
        await pop.on_routing_event(AgentStateChanged("1001", "available", "reserved", AT))
        await pop.on_routing_event(offered("c1", "1001"))
        await first.next(lambda m: m["type"] == "pop")
        await first.ws.close()
        # while the page is away, the call is answered
        await pop.on_routing_event(CallConnected("c1", "1001", "sales", 14.0, AT))
        await pop.on_routing_event(AgentStateChanged("1001", "reserved", "on_call", AT))
        again = await open_page(base, token)
        snap = await again.next(lambda m: m["type"] == "snapshot")
        items = {i["key"]: i for i in snap["items"]}
        assert items["pop:c1"]["state"] == "connected"
        assert items["call:c1"]["state"] == "connected"
        assert items["agent_state"]["state"] == "on_call"
        assert snap["seq"] == max(i["seq"] for i in snap["items"])
        pop.procedure_progress("c1", "1001", "noisy_line", "goodbye", "running")
        delta = await again.next(lambda m: m["type"] == "procedure")
        assert delta["seq"] == snap["seq"] + 1
        await again.ws.close()


async def test_supervisors_see_agent_states_and_queues_agents_do_not(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env, served(env.app) as base:
        sup = await open_page(base, await env.token("supervisor", "supervisor-pw"))
        assert sup.messages[0]["topics"] == ["supervisors"]
        agent = await open_page(base, await env.token("agent1001", "agent-1001"))
        pop = env.desk.screen_pop
        await pop.on_routing_event(CallQueued("c9", "sales", 1, 1, AT))
        queue = await sup.next(lambda m: m["type"] == "queue.state")
        assert [c["call_id"] for c in queue["waiting"]] == ["c9"]
        await pop.on_routing_event(AgentStateChanged("1002", "logged_out", "available", AT))
        state = await sup.next(lambda m: m["type"] == "agent.state")
        assert (state["agent_id"], state["state"]) == ("1002", "available")
        await agent.ws.send(json.dumps({"type": "subscribe", "topic": "supervisors"}))
        error = await agent.next(lambda m: m["type"] == "error")
        assert "not allowed" in error["detail"]
        await agent.ws.send(json.dumps({"type": "subscribe", "topic": "agent:1002"}))
        await agent.next(lambda m: m["type"] == "error")
        await sup.ws.close()
        await agent.ws.close()


async def test_resync_sends_a_fresh_snapshot(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env, served(env.app) as base:
        page = await open_page(base, await env.token("agent1001", "agent-1001"))
        await env.desk.screen_pop.on_routing_event(offered("c1", "1001"))
        await page.next(lambda m: m["type"] == "pop")
        await page.ws.send(json.dumps({"type": "resync", "topic": "agent:1001"}))
        snap = await page.next(lambda m: m["type"] == "snapshot" and m["items"])
        assert [i["key"] for i in snap["items"]] == ["pop:c1"]
        await page.ws.close()


async def test_slow_external_crm_never_delays_the_pop(tmp_path: Path) -> None:
    transport = external_crm(0.15, {"contact": {"name": "Wang Wei (CRM)"}, "segment": "vip"})
    settings = EXTERNAL.model_copy(update={"timeout_s": 1.0})
    async with desk_app(tmp_path, external_crm=settings, external_transport=transport) as env, \
            served(env.app) as base:
        await seed_demo_desk(env.desk.sessions)
        page = await open_page(base, await env.token("agent1001", "agent-1001"))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await env.desk.screen_pop.on_routing_event(offered("c1", "1001"))
        first = await page.next(lambda m: m["type"] == "pop")
        assert loop.time() - started < 0.1  # the external CRM takes 0.15 s
        assert first["revision"] == 1
        assert first["caller"]["customer"]["name"] == "王伟"
        assert first["caller"]["external_pending"] is True
        update = await page.next(lambda m: m["type"] == "pop" and m["revision"] == 2)
        assert update["caller"]["customer"]["name"] == "Wang Wei (CRM)"
        assert update["caller"]["external_pending"] is False
        await page.ws.close()


async def test_failed_external_crm_leaves_the_local_pop(tmp_path: Path) -> None:
    async def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with desk_app(tmp_path, external_crm=EXTERNAL,
                        external_transport=httpx.MockTransport(refuse)) as env, \
            served(env.app) as base:
        await seed_demo_desk(env.desk.sessions)
        page = await open_page(base, await env.token("agent1001", "agent-1001"))
        await env.desk.screen_pop.on_routing_event(offered("c1", "1001"))
        update = await page.next(lambda m: m["type"] == "pop" and m["revision"] == 2)
        assert update["caller"]["customer"]["name"] == "王伟"
        assert "unreachable" in update["caller"]["external_error"]
        await page.ws.close()


async def test_agent_state_request_goes_to_the_acd(tmp_path: Path) -> None:
    requested: list[tuple[str, str, str | None]] = []

    class Acd:
        async def request_agent_state(self, agent_id: str, state: str,
                                      reason: str | None = None) -> None:
            requested.append((agent_id, state, reason))

    async with desk_app(tmp_path, agent_states=Acd()) as env:
        h = await env.login("agent1001", "agent-1001")
        r = await env.client.post("/agents/me/state", headers=h, json={"state": "paused"})
        assert r.status_code == 422
        assert "a pause needs a reason" in r.text
        r = await env.client.post("/agents/me/state", headers=h,
                                  json={"state": "paused", "reason": "lunch"})
        assert r.status_code == 200
        sup = await env.login("supervisor", "supervisor-pw")
        r = await env.client.post("/agents/me/state", headers=sup, json={"state": "available"})
        assert r.status_code == 403
        assert requested == [("1001", "paused", "lunch")]


async def test_agent_state_without_an_acd_is_503(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env:
        h = await env.login("agent1001", "agent-1001")
        r = await env.client.post("/agents/me/state", headers=h, json={"state": "available"})
        assert r.status_code == 503
