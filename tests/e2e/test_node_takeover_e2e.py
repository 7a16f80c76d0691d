"""Two CTI nodes on one PBX, PostgreSQL and Redis, as real processes; `kill -9` of the active
node while a caller talks with an agent, two wait in the queue, one is in the silent-call
procedure's 5 s wait and one is in the menu (docs/cluster.md, "Takeover").

The standby drives the PBX within 3 s; the talking call stays up with its agent; the silent
caller's next prompt starts at the kept deadline (+-250 ms, from Asterisk's own time stamps);
the menu caller goes on to the queue; the waiting callers are answered in their original
order, the menu caller after them; the agent's page connected to the standby keeps its live
socket and sees the calls after the takeover; the API answers through either node; the killed
node comes back as a standby; and over the whole run no agent was offered two calls at once
and no call was connected twice (from the event log).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from cti.features.desk.demo import seed_demo_desk
from cti.features.ivr.checkpoints import CheckpointStore
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.settings import REPO_ROOT
from tests.e2e.cluster_nodes import Node, cluster_prefix, node_settings
from tests.e2e.conftest import DATA
from tests.e2e.pbx import Pbx, SippResult, run_sipp
from tests.e2e.test_restart_resume_e2e import FLOW, WAIT_S, AriProbe, caller, prompts_rendered
from tests.e2e.test_routing_e2e import _from_user, _phones, _stop

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]

ADOPTION_TARGET_S = 3.0
TOLERANCE_S = 0.25
__all__ = ["prompts_rendered"]  # the module fixture, used by name


async def _login(base: str, user: str, password: str) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(f"{base}/auth/login", json={"username": user, "password": password})
        assert r.status_code == 200, r.text
        return str(r.json()["token"])


async def _api(base: str, token: str, method: str, path: str, **kw: Any) -> Any:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.request(method, f"{base}{path}",
                                 headers={"authorization": f"Bearer {token}"}, **kw)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None


class PageSocket:
    """The agent page's live socket (the desk's protocol), kept as the page keeps it."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.messages: list[dict[str, Any]] = []
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PageSocket:
        self.task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def _run(self) -> None:
        async with websockets.connect(self.url) as ws:
            await ws.send(json.dumps({"type": "auth", "token": self.token}))
            async for raw in ws:
                self.messages.append(json.loads(raw))

    def text(self) -> str:
        return json.dumps(self.messages, ensure_ascii=False)

    async def wait_for(self, needle: str, after: int = 0, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in json.dumps(self.messages[after:], ensure_ascii=False):
                return
            if self.task is not None and self.task.done():
                raise AssertionError(f"page socket closed: {self.task.exception()!r}")
            await asyncio.sleep(0.05)
        raise AssertionError(f"{needle!r} not on the page socket: {self.text()[-2000:]}")


@pytest.fixture
async def nodes(
    pbx: Pbx, database_url: str, tmp_path: Path, prompts_rendered: None
) -> AsyncIterator[list[Node]]:
    rules_file = tmp_path / "routing.yaml"
    shutil.copy(DATA / "routing_rules.yaml", rules_file)  # open around the clock
    engine = make_engine(database_url)
    await seed_demo_desk(make_sessionmaker(engine))
    await engine.dispose()
    flows = tmp_path / "flows"
    flows.mkdir()
    shutil.copy(REPO_ROOT / "ivr_flows" / "agent_greeting.yaml", flows)
    (flows / "restart_resume.yaml").write_text(FLOW)  # 1: billing, 2: a silent conversation
    shared = node_settings(
        pbx, database_url, cluster_prefix(), inbound_flow="restart_resume",
        flows_dir=str(flows), rules_file=str(rules_file),
    )
    made = [Node("a", tmp_path, shared), Node("b", tmp_path, shared)]
    try:
        yield made
    finally:
        for node in made:
            await node.stop()


def _calls_by_number(calls: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["caller_number"]: c for c in calls}


async def test_kill_9_of_the_active_node_loses_no_call_and_keeps_queue_order(
    pbx: Pbx, nodes: list[Node], database_url: str
) -> None:
    a, b = nodes
    probe = AriProbe(pbx)
    await probe.start()
    engine = make_engine(database_url)
    checkpoints = CheckpointStore(make_sessionmaker(engine))
    await a.start()
    await a.wait_role("active")
    await b.start()
    standby = await b.wait_role("standby")
    assert standby["cluster"]["active_node"] == "a"
    assert standby["ari_connected"] is False  # one node drives the PBX

    phones = await _phones(pbx, a1001="answer")
    callers: list[asyncio.Task[SippResult]] = []
    try:
        # the agent works through the standby: its requests go on to the active node
        agent = await _login(b.url, "agent1001", "agent-1001")
        sup = await _login(b.url, "supervisor", "supervisor-pw")
        async with PageSocket(b.url.replace("http", "ws") + "/ws/desk", agent) as page:
            await page.wait_for('"hello"')
            await _api(b.url, agent, "POST", "/agents/me/state", json={"state": "available"})

            callers.append(caller(pbx, "+8613800000701", "1", "speech"))  # 1001 answers
            await _until_state(b, sup, "+8613800000701", "connected")
            await page.wait_for("+8613800000701")  # its pop, from node a over the stream
            callers.append(caller(pbx, "+8613800000702", "1", "speech"))
            await _until_state(b, sup, "+8613800000702", "queued")
            callers.append(caller(pbx, "+8613800000703", "1", "speech"))
            await _until_state(b, sup, "+8613800000703", "queued")
            # a silent caller in a conversation nobody is on: the silent-call procedure
            callers.append(caller(pbx, "+8613800000704", "2", "silence"))
            await _until_state(b, sup, "+8613800000704", "answered")
            silent = _calls_by_number(
                await _api(b.url, sup, "GET", "/calls?active=true"))["+8613800000704"]["id"]
            first_end = await probe.wait_playback(
                "PlaybackFinished", silent, "silent_call_first", timeout=40)
            # a caller who is in the menu at the kill, and presses 1 some seconds later
            callers.append(asyncio.create_task(run_sipp(
                pbx, "caller_dtmf_wait_bye", service="4000", caller="+8613800000705",
                pcap=pbx.media("speech"), dtmf_pcap=pbx.media("dtmf-1"),
                variables={"dtmf_delay_ms": 3000}, max_wait_s=90, timeout=100)))
            await _until_state(b, sup, "+8613800000705", "answered")
            await _until_checkpoint(checkpoints, silent, "wait_1")
            before = {n: c["id"] for n, c in _calls_by_number(
                await _api(b.url, sup, "GET", "/calls?active=true")).items()}
            assert len(before) == 5

            seen = len(page.messages)
            killed = time.monotonic()
            a.kill()
            took = await b.wait_role("active", timeout=10)
            adopted_in = time.monotonic() - killed
            assert adopted_in <= ADOPTION_TARGET_S, (adopted_in, took["cluster"])
            assert took["last_resync"]["adopted"] == 5
            assert took["cluster"]["took_lease_s"] is not None

            # the silent caller's procedure goes on at its kept deadline
            next_start = await probe.wait_playback(
                "PlaybackStarted", silent, "silent_call_second", timeout=15)
            late = (next_start - (first_end + timedelta(seconds=WAIT_S))).total_seconds()
            assert abs(late) <= TOLERANCE_S, f"second prompt {late * 1000:+.0f} ms off"

            # every call is where it was: the same ids, the talker with the agent
            now = _calls_by_number(await _api(b.url, sup, "GET", "/calls?active=true"))
            assert {n: c["id"] for n, c in now.items()} == before
            assert now["+8613800000701"]["state"] == "connected"
            assert now["+8613800000701"]["agent_id"] == "1001"
            assert {now[n]["state"] for n in ("+8613800000702", "+8613800000703")} == {"queued"}
            assert len(phones["1001"].invites()) == 1  # the busy agent was not rung again
            # the menu caller goes on from the menu to the queue (its key, or the menu's end)
            await _until_state(b, sup, "+8613800000705", "queued", timeout=30)

            # the agent ends the talking call; after wrap-up the waiting callers come in order
            for number in ("+8613800000701", "+8613800000702"):
                await _hang_up_agent_leg(pbx)
                await _until_state(b, sup, number, None)
            await _until_state(b, sup, "+8613800000703", "connected", timeout=20)
            # the page on node b kept its socket and saw the calls the new active node made
            await page.wait_for("+8613800000703", after=seen)
            await _hang_up_agent_leg(pbx)
            await _until_state(b, sup, "+8613800000705", "connected", timeout=20)
            await _hang_up_agent_leg(pbx)
            assert _from_user(phones["1001"]) == [
                "+8613800000701", "+8613800000702", "+8613800000703", "+8613800000705"]
            for task in callers:
                result = await asyncio.wait_for(task, 30)
                assert result.ok, result.describe()

        # the killed node comes back as a standby of b
        await a.start()
        back = await a.wait_role("standby")
        assert back["cluster"]["active_node"] == "b"

        # over the whole run: never two offers at once to one agent, one connection per call
        events = await _api(a.url, sup, "GET", "/events?limit=10000")
        _assert_exactly_once(events)
    finally:
        await _stop(phones)
        for task in callers:
            if not task.done():
                task.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
        await probe.stop()
        await engine.dispose()


async def _until_checkpoint(store: CheckpointStore, call_id: str, node: str) -> None:
    """Until the call's IVR position kept in the record is the procedure's `node`."""
    deadline = time.monotonic() + 5
    while True:
        kept = await store.load(call_id)
        proc = kept.state.get("procedure") if kept else None
        if proc and proc["name"] == "silent_call" and proc["node"] == node:
            return
        assert time.monotonic() < deadline, "the wait's checkpoint was not written"
        await asyncio.sleep(0.02)


def _assert_exactly_once(events: list[dict[str, Any]]) -> None:
    ringing: dict[str, str] = {}  # agent -> call offered and not yet answered or withdrawn
    talking: dict[str, str] = {}  # agent -> connected call not yet ended
    connected: dict[str, int] = {}
    for e in events:
        kind, agent, call = e["type"], e["agent_id"], e["call_id"]
        if kind == "CallOffered":
            assert agent not in ringing, f"{agent} offered {call} while ringing {ringing[agent]}"
            assert talking.get(agent) in (None, call), f"{agent} offered {call} while talking"
            ringing[agent] = call
        elif kind == "OfferWithdrawn":
            ringing.pop(agent, None)
        elif kind == "CallConnected":
            ringing.pop(agent, None)
            talking[agent] = call
            connected[call] = connected.get(call, 0) + 1
        elif kind == "CallEnded" and call is not None:
            for who, c in list(talking.items()):
                if c == call:
                    del talking[who]
    assert connected
    assert all(n == 1 for n in connected.values()), connected


async def _state(node: Node, token: str, number: str) -> str | None:
    calls = _calls_by_number(await _api(node.url, token, "GET", "/calls?active=true"))
    call = calls.get(number)
    return None if call is None else str(call["state"])


async def _until_state(
    node: Node, token: str, number: str, state: str | None, timeout: float = 15.0
) -> None:
    """Until the call from `number` is in `state` (None: over), as the API through `node`
    says; a 503 during a takeover is asked again."""
    deadline = time.monotonic() + timeout
    seen: str | None = "?"
    while time.monotonic() < deadline:
        with contextlib.suppress(AssertionError, httpx.HTTPError):
            seen = await _state(node, token, number)
            if seen == state:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{number} not {state} after {timeout} s (last: {seen})")


async def _hang_up_agent_leg(pbx: Pbx) -> None:
    """The agent's phone hangs up: the ACD's leg to it ends (as a softphone's BYE would)."""
    auth = (pbx.ari_user, pbx.ari_password)
    async with httpx.AsyncClient(timeout=5, auth=auth) as client:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            channels = (await client.get(f"{pbx.ari_url}/channels")).json()
            legs = [c["id"] for c in channels
                    if c["id"].startswith("acd-") and c["state"] == "Up"]
            if legs:
                for leg in legs:
                    await client.delete(f"{pbx.ari_url}/channels/{leg}")
                return
            await asyncio.sleep(0.1)
    raise AssertionError("no answered agent leg to hang up")
