"""Two CTI nodes driving two trunked Asterisks, PostgreSQL and Redis, as real processes;
`kill -9` of the active node while callers on both PBXs are in the menu, in the silent-call
procedure's 5 s wait, waiting in the queue and talking (docs/cluster.md, "Takeover" and
"Several Asterisk servers").

Agent 1001's phone is on PBX a, 1003's on PBX b; the talking caller and one waiting caller are
on PBX b, the others on PBX a. Before the kill the talker (on b) reaches 1001 through the trunk;
after it, the first waiting caller (on a) reaches 1003 on b and the next (on b) 1001 on a.

The standby drives both PBXs within 3 s, each PBX's resync adopting its own calls; the talking
call stays up with its agent; the silent caller's next prompt starts at the kept deadline
(+-250 ms, from Asterisk's own time stamps); the menu caller goes on to the queue; the waiting
callers are answered in their original order across the PBXs, the menu caller after them; each
agent's phone shows the caller's number, through the trunk too; the agents' pages connected to
the standby keep their live sockets and see the calls after the takeover; the API answers
through either node; the killed node comes back as a standby; and over the whole run no agent
was offered two calls at once and no call was connected twice (from the event log).

Run alone:  CTI_E2E_INSTANCE_SUFFIX=me .venv/bin/pytest tests/e2e/test_node_takeover_e2e.py
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
import yaml

from cti.features.desk.demo import seed_demo_desk
from cti.features.ivr.checkpoints import CheckpointStore
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.settings import REPO_ROOT
from tests.e2e.cluster_nodes import Node, cluster_prefix, node_settings
from tests.e2e.conftest import DATA
from tests.e2e.pbx import Pbx, SippResult, pbx_pair, register_agent, run_sipp
from tests.e2e.test_restart_resume_e2e import FLOW, WAIT_S, AriProbe, caller, render_prompts
from tests.e2e.test_routing_e2e import _from_user

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]

ADOPTION_TARGET_S = 3.0
TOLERANCE_S = 0.25


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


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Pbx, Pbx]]:
    """Two sandbox Asterisks trunked together (systemnames pbxa, pbxb), with every prompt
    rendered first (one chroot: both play from the same sound:custom/)."""
    a, b = pbx_pair("e2e-takeover")
    render_prompts(a.sounds_dir)
    with a, b:
        yield a, b


@pytest.fixture
async def nodes(
    pair: tuple[Pbx, Pbx], database_url: str, tmp_path: Path
) -> AsyncIterator[list[Node]]:
    rules_file = tmp_path / "routing.yaml"
    rules = yaml.safe_load((DATA / "routing_rules.yaml").read_text())  # open around the clock
    rules["queues"]["billing"]["wrap_up_s"] = 1  # the next caller sooner: a shorter run
    rules_file.write_text(yaml.safe_dump(rules))
    engine = make_engine(database_url)
    await seed_demo_desk(make_sessionmaker(engine))
    await engine.dispose()
    flows = tmp_path / "flows"
    flows.mkdir()
    shutil.copy(REPO_ROOT / "ivr_flows" / "agent_greeting.yaml", flows)
    (flows / "restart_resume.yaml").write_text(FLOW)  # 1: billing, 2: a silent conversation
    shared = node_settings(
        pair, database_url, cluster_prefix(), inbound_flow="restart_resume",
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
    pair: tuple[Pbx, Pbx], nodes: list[Node], database_url: str
) -> None:
    pa, pb = pair
    probe = AriProbe(pa)  # the silent caller is on PBX a
    await probe.start()
    engine = make_engine(database_url)
    checkpoints = CheckpointStore(make_sessionmaker(engine))
    # both nodes and both phones (1001's on PBX a, 1003's on PBX b: both in billing) at once
    registered, (a, b) = await asyncio.gather(
        asyncio.gather(register_agent(pa, "1001", ring_ms=400),
                       register_agent(pb, "1003", ring_ms=400)),
        _started(nodes))  # a: the one that took the lease
    phones = dict(zip(("1001", "1003"), registered, strict=True))
    standby = await b.wait_role("standby")
    assert standby["cluster"]["active_node"] == a.name
    assert standby["ari_connected"] is False  # one node drives the PBXs
    assert [p["connected"] for p in standby["pbxs"]] == [False, False]

    callers: list[asyncio.Task[SippResult]] = []
    try:
        # the agents work through the standby: their requests go on to the active node
        agent1, agent3 = (await _login(b.url, "agent1001", "agent-1001"),
                          await _login(b.url, "agent1003", "agent-1003"))
        sup = await _login(b.url, "supervisor", "supervisor-pw")
        ws = b.url.replace("http", "ws") + "/ws/desk"
        async with PageSocket(ws, agent1) as page1, PageSocket(ws, agent3) as page3:
            await page1.wait_for('"hello"')
            await page3.wait_for('"hello"')
            await _api(b.url, agent1, "POST", "/agents/me/state", json={"state": "available"})

            # on PBX b, answered by 1001 on PBX a: through b's trunk
            callers.append(caller(pb, "+8613800000701", "1", "speech"))
            await _until_state(b, sup, "+8613800000701", "connected")
            await page1.wait_for("+8613800000701")  # its pop, from node a over the stream
            callers.append(caller(pa, "+8613800000702", "1", "speech"))
            await _until_state(b, sup, "+8613800000702", "queued")
            callers.append(caller(pb, "+8613800000703", "1", "speech"))
            await _until_state(b, sup, "+8613800000703", "queued")
            # a silent caller in a conversation nobody is on: the silent-call procedure
            callers.append(caller(pa, "+8613800000704", "2", "silence"))
            await _until_state(b, sup, "+8613800000704", "answered")
            silent = _calls_by_number(
                await _api(b.url, sup, "GET", "/calls?active=true"))["+8613800000704"]["id"]
            first_end = await probe.wait_playback(
                "PlaybackFinished", silent, "silent_call_first", timeout=40)
            # a caller who is in the menu at the kill, and presses 1 some seconds later
            callers.append(asyncio.create_task(run_sipp(
                pa, "caller_dtmf_wait_bye", service="4000", caller="+8613800000705",
                pcap=pa.media("speech"), dtmf_pcap=pa.media("dtmf-1"),
                variables={"dtmf_delay_ms": 3000}, max_wait_s=90, timeout=100)))
            await _until_state(b, sup, "+8613800000705", "answered")
            await _until_checkpoint(checkpoints, silent, "wait_1")
            before = {n: c["id"] for n, c in _calls_by_number(
                await _api(b.url, sup, "GET", "/calls?active=true")).items()}
            assert len(before) == 5
            # each call's id names its PBX (Asterisk's systemname starts its channel ids)
            assert {n: i.split("-", 1)[0] for n, i in before.items()} == {
                "+8613800000701": "pbxb", "+8613800000702": "pbxa",
                "+8613800000703": "pbxb", "+8613800000704": "pbxa",
                "+8613800000705": "pbxa"}

            seen1 = len(page1.messages)
            killed = time.monotonic()
            a.kill()
            took = await b.wait_role("active", timeout=10)
            adopted_in = time.monotonic() - killed
            assert adopted_in <= ADOPTION_TARGET_S, (adopted_in, took["cluster"])
            # each PBX's resync adopted its own calls
            assert {p["id"]: p["last_resync"]["adopted"] for p in took["pbxs"]} == {
                "pbxa": 3, "pbxb": 2}
            assert took["cluster"]["took_lease_s"] is not None

            # the silent caller's procedure goes on at its kept deadline
            next_start = await probe.wait_playback(
                "PlaybackStarted", silent, "silent_call_second", timeout=15)
            late = (next_start - (first_end + timedelta(seconds=WAIT_S))).total_seconds()
            assert abs(late) <= TOLERANCE_S, f"second prompt {late * 1000:+.0f} ms off"
            print(f"takeover: all calls adopted {adopted_in:.2f} s after the kill; "  # -s
                  f"the silent caller's second prompt {late * 1000:+.0f} ms off its deadline")
            # the killed node starts again (as a supervisor would start it) meanwhile
            await a.start()

            # every call is where it was: the same ids, the talker with the agent
            now = _calls_by_number(await _api(b.url, sup, "GET", "/calls?active=true"))
            assert {n: c["id"] for n, c in now.items()} == before
            assert now["+8613800000701"]["state"] == "connected"
            assert now["+8613800000701"]["agent_id"] == "1001"
            assert {now[n]["state"] for n in ("+8613800000702", "+8613800000703")} == {"queued"}
            assert len(phones["1001"].invites()) == 1  # the busy agent was not rung again
            assert phones["1003"].invites() == []
            # the menu caller goes on from the menu to the queue (its key, or the menu's end)
            await _until_state(b, sup, "+8613800000705", "queued", timeout=30)

            # 1003 (on b) is ready, from its page's node: the first waiting caller (on a)
            await _api(b.url, agent3, "POST", "/agents/me/state", json={"state": "available"})
            await _until_agent(b, sup, "+8613800000702", "1003")
            await page3.wait_for("+8613800000702")
            # 1001 ends the talking call; after wrap-up the next in line (on b) reaches it on a
            await _hang_up_agent_leg(pb, before["+8613800000701"])
            await _until_state(b, sup, "+8613800000701", None)
            await _until_agent(b, sup, "+8613800000703", "1001")
            # the page on node b kept its socket and saw the calls the new active node made
            await page1.wait_for("+8613800000703", after=seen1)
            # 1003 ends its call; the menu caller, last in line, reaches it
            await _hang_up_agent_leg(pa, before["+8613800000702"])
            await _until_state(b, sup, "+8613800000702", None)
            await _until_agent(b, sup, "+8613800000705", "1003")
            await _hang_up_agent_leg(pb, before["+8613800000703"])
            await _hang_up_agent_leg(pa, before["+8613800000705"])
            # each phone rang once per call, with the caller's number on its display
            assert _from_user(phones["1001"]) == ["+8613800000701", "+8613800000703"]
            assert _from_user(phones["1003"]) == ["+8613800000702", "+8613800000705"]
            for task in callers:
                result = await asyncio.wait_for(task, 30)
                assert result.ok, result.describe()

        # the killed node came back as a standby of b
        back = await a.wait_role("standby")
        assert back["cluster"]["active_node"] == b.name

        # over the whole run: never two offers at once to one agent, one connection per call,
        # and the callers connected in the order they first waited
        events = await _api(a.url, sup, "GET", "/events?limit=10000")
        _assert_exactly_once(events)
        order = [e["call_id"] for e in events if e["type"] == "CallConnected"]
        assert order == [before[n] for n in (
            "+8613800000701", "+8613800000702", "+8613800000703", "+8613800000705")]
    finally:
        await asyncio.gather(*(phone.stop() for phone in phones.values()))  # one per PBX
        for task in callers:
            if not task.done():
                task.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
        await probe.stop()
        await engine.dispose()


async def _started(nodes: list[Node]) -> tuple[Node, Node]:
    """Both nodes started at once: (the one that took the `active` lease, the other)."""
    await asyncio.gather(*(n.start() for n in nodes))
    waits = {asyncio.ensure_future(n.wait_role("active")): n for n in nodes}
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    first = next(iter(done))
    first.result()  # a node that ended raises here
    active = waits[first]
    return active, next(n for n in nodes if n is not active)


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


async def _until_agent(
    node: Node, token: str, number: str, agent: str, timeout: float = 20.0
) -> None:
    """Until the call from `number` is connected with `agent`."""
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        with contextlib.suppress(AssertionError, httpx.HTTPError):
            seen = _calls_by_number(
                await _api(node.url, token, "GET", "/calls?active=true")).get(number)
            if seen is not None and (seen["state"], seen["agent_id"]) == ("connected", agent):
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{number} not connected with {agent} after {timeout} s: {seen}")


async def _hang_up_agent_leg(pbx: Pbx, call_id: str | None = None) -> None:
    """The agent's phone hangs up the call (as a softphone's BYE would): the ACD's leg in the
    caller's bridge, on the caller's PBX (a leg to a phone on the other PBX goes through the
    trunk from there), ends. No `call_id`: every answered agent leg on `pbx`."""
    auth = (pbx.ari_user, pbx.ari_password)
    async with httpx.AsyncClient(timeout=5, auth=auth) as client:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if call_id is None:
                channels = (await client.get(f"{pbx.ari_url}/channels")).json()
                legs = [c["id"] for c in channels
                        if c["id"].startswith("acd-") and c["state"] == "Up"]
            else:
                bridges = (await client.get(f"{pbx.ari_url}/bridges")).json()
                legs = [c for br in bridges if call_id in br["channels"]
                        for c in br["channels"] if c.startswith("acd-")]
            if legs:
                for leg in legs:
                    await client.delete(f"{pbx.ari_url}/channels/{leg}")
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"no agent leg ({call_id or 'any call'}) to hang up")
