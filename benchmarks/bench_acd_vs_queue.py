"""End to end on the sandbox: from a call's arrival to the chosen agent's phone ringing, our ACD
vs Asterisk's own app_queue, on the same Asterisk, with the same agents, in the same run.

Run: .venv/bin/python benchmarks/bench_acd_vs_queue.py [--agents 20] [--rates 1 20] [--seconds 10]

- One sandbox Asterisk of its own (instance "bench-acd", free ports), started and stopped here,
  with N registered sipp agent phones (PJSIP/1001..; benchmarks/sipp/bench_agent.xml).
- Ours: sip:4000 -> Stasis -> the CTI service (answer, CRM lookup, call log, IVR flow
  `routing_direct` = straight to the ACD, no menu) -> ACD (round robin over the N agents, no
  wrap-up) -> ARI originate to the agent's phone.
  app_queue: sip:queue-bench -> Answer() -> Queue(bench) (rrmemory over the same N phones).
- Each caller (sipp, RTP) has its own number; the agent's INVITE carries it in From. Latency =
  agent phone's INVITE received - caller's INVITE sent, both from sipp's message traces
  (one clock: both run on this machine). The agent answers after 100 ms of ringing and hangs
  up 300 ms later; the caller waits for that. 20 agents keep most of them free at 20 calls/s
  (about 9 busy), so the figure is the routing path, not a wait for a free agent.
- The caller-audio tap (snoop + external media feeding the silence/noise detector) is off by
  default, as app_queue has nothing like it; --audio-tap measures with it on.
- Two nodes (path `two_nodes`): the same service as node a of a cluster (the local Redis, the
  same PostgreSQL), driving the PBX under the `active` lease, with node b a `cti serve` process
  standing by (docs/cluster.md): every event also goes onto the shared stream.
- 1 call/s and 20 calls/s (--rates), each path in turn; p50/p99 of each and the ratios
  ours/app_queue and two_nodes/app_queue (target: within 1.5x), and two_nodes/ours. Exit
  status 0 only when every rate is within it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from benchmarks.stage_trace import StageTrace
from cti.domain.agents.state import AgentState
from cti.domain.ivr.config import DetectionSettings
from cti.platform import event_loop
from cti.platform.db.migrate import upgrade_async
from cti.platform.event_loop import LoopKind
from cti.platform.log import configure_logging
from cti.platform.settings import AriSettings, ClusterSettings, Settings
from cti.runtime import Service
from tests.e2e.cluster_nodes import REDIS_URL, SECRET, Node, cluster_prefix, node_settings
from tests.e2e.pbx import (
    PBX_SCRIPT,
    SCENARIO_DIR,
    AgentPhone,
    Pbx,
    PbxError,
    SipMessage,
    SippResult,
    free_port,
    run_sipp,
)

REPO = Path(__file__).resolve().parent.parent
SCENARIO = Path(__file__).resolve().parent / "sipp" / "bench_caller.xml"
AGENT_SCENARIO = Path(__file__).resolve().parent / "sipp" / "bench_agent.xml"
DIRECT_FLOW = REPO / "tests" / "e2e" / "data" / "flows" / "routing_direct.yaml"
PG_DSN = os.environ.get("CTI_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
TARGET_RATIO = 1.5
RING_MS = 100  # the agent's phone rings this long, then answers
TALK_MS = 300  # and hangs up this long after answering


def rules_yaml(agents: Iterable[str]) -> str:
    """One queue over every agent, round robin (as rrmemory), no wrap-up (as wrapuptime=0),
    open around the clock."""
    lines = [
        "version: 1",
        "skills: [general]",
        "default_queue: general",
        "queues:",
        "  general:",
        "    skills: {general: 1}",
        "    strategy: round_robin",
        "    ring_timeout_s: 15",
        "    wrap_up_s: 0",
        "    max_wait_s: 120",
        "    fallback: {action: voicemail}",
        "agents:",
        *(f'  "{a}": {{skills: {{general: 3}}}}' for a in agents),
    ]
    return "\n".join(lines) + "\n"


@dataclass
class Phase:
    name: str  # "ours" | "app_queue"
    rate: float
    prefix: str  # caller numbers are prefix + sipp call number
    result: SippResult | None = None
    latencies_ms: list[float] | None = None
    missing: int = 0


def _from_user(message: SipMessage) -> str:
    for line in message.text.splitlines():
        if line.lower().startswith("from:") and "sip:" in line:
            return line.split("sip:", 1)[1].split("@", 1)[0]
    return ""


def first_invites(messages: Iterable[SipMessage], direction: str) -> dict[str, float]:
    """Caller number -> time (UTC epoch seconds) of the first INVITE sent/received for it."""
    out: dict[str, float] = {}
    for m in messages:
        if m.direction == direction and m.method_or_status == "INVITE":
            user = _from_user(m)
            if user and user not in out:
                out[user] = m.at.timestamp()
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


async def start_agent(pbx: Pbx, agent: str, register_xml: str, answer_xml: str) -> AgentPhone:
    """Agent `agent`'s phone: REGISTER, then each call rings RING_MS, is answered and hung up
    by the agent TALK_MS later (bench_agent.xml). Scenario paths are the chroot's, staged once
    by the caller (two copies of one file at once could leave sipp a half-written one)."""
    sip_port, media_port = free_port("udp"), free_port("udp", count=4, align=2)
    trace = pbx.workdir / f"bench-agent-{agent}.messages.log"
    errors = pbx.workdir / f"bench-agent-{agent}.errors.log"
    for stale in (trace, errors):
        stale.unlink(missing_ok=True)
    args = [
        "-sf", register_xml, "-oocsf", answer_xml, "-p", str(sip_port), "-mp", str(media_port),
        "-nostdin", "-trace_msg", "-message_file", pbx.inside(trace),
        "-trace_err", "-error_file", pbx.inside(errors), "-key", "agent", agent,
        "-set", "hold_ms", str(24 * 3600 * 1000), "-set", "ring_ms", str(RING_MS),
        "-set", "talk_ms", str(TALK_MS), "-rtp_echo", "-au", agent, "-ap", f"agent-{agent}",
        "-m", "1", "-l", "1", pbx.sip_address,
    ]
    proc = await asyncio.create_subprocess_exec(
        str(PBX_SCRIPT), "sipp", *args, env=pbx.env(), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    phone = AgentPhone(pbx, agent, "answer", proc, trace, errors)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.returncode is None:
        if any(m.direction == "received" and m.method_or_status == "200"
               for m in phone.messages()):
            return phone
        await asyncio.sleep(0.05)
    proc.kill()
    await proc.wait()
    raise PbxError(f"bench agent {agent} did not register (sipp exit {proc.returncode})")


async def make_database() -> tuple[str, str]:
    name = f"cti_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{base}/{name}"
    await upgrade_async(url, "heads")
    return name, url


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(PG_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def run_phase(pbx: Pbx, phase: Phase, calls: int) -> None:
    service = "queue-bench" if phase.name == "app_queue" else "4000"
    phase.result = await run_sipp(
        pbx, SCENARIO, service=service, caller=phase.prefix, pcap=pbx.media("speech"),
        calls=calls, rate=phase.rate,
        extra_args=["-l", str(calls)], max_wait_s=30, timeout=calls / phase.rate + 60,
    )


def measure(phase: Phase, phones: list[AgentPhone]) -> None:
    assert phase.result is not None
    sent = {
        u: t for u, t in first_invites(phase.result.messages(), "sent").items()
        if u.startswith(phase.prefix)
    }
    rung: dict[str, float] = {}
    for phone in phones:
        for user, t in first_invites(phone.messages(), "received").items():
            if user.startswith(phase.prefix) and (user not in rung or t < rung[user]):
                rung[user] = t
    phase.latencies_ms = [(rung[u] - t) * 1000 for u, t in sent.items() if u in rung]
    phase.missing = len(sent) - len(phase.latencies_ms)


def report(phases: list[Phase]) -> bool:
    ok = True
    print(f"\n{'rate':>7} {'path':>10} {'calls':>6} {'rung':>5} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8}  sipp")
    for ph in phases:
        lat = ph.latencies_ms or []
        res = ph.result
        status = "ok" if res is not None and res.ok else (
            f"exit {res.returncode}" if res is not None else "not run"
        )
        if lat:
            print(f"{ph.rate:>5g}/s {ph.name:>10} {len(lat) + ph.missing:>6} {len(lat):>5} "
                  f"{pct(lat, 50):>8.1f} {pct(lat, 99):>8.1f} {max(lat):>8.1f}  {status}")
        else:
            print(f"{ph.rate:>5g}/s {ph.name:>10}  no measurements  {status}")
    print()
    for rate in sorted({p.rate for p in phases}):
        queue = next((p for p in phases if p.rate == rate and p.name == "app_queue"), None)
        one = next((p for p in phases if p.rate == rate and p.name == "ours"), None)
        for name in ("ours", "two_nodes"):
            ours = next((p for p in phases if p.rate == rate and p.name == name), None)
            if ours is None:
                continue
            if queue is None or not ours.latencies_ms or not queue.latencies_ms:
                ok = False
                continue
            r50 = pct(ours.latencies_ms, 50) / pct(queue.latencies_ms, 50)
            r99 = pct(ours.latencies_ms, 99) / pct(queue.latencies_ms, 99)
            verdict = "within" if max(r50, r99) <= TARGET_RATIO else "NOT within"
            ok = ok and max(r50, r99) <= TARGET_RATIO and not ours.missing and not queue.missing
            print(f"{rate:>5g}/s  {name}/app_queue  p50 {r50:.2f}x  p99 {r99:.2f}x  "
                  f"({verdict} the {TARGET_RATIO}x target)")
            if name == "two_nodes" and one is not None and one.latencies_ms:
                print(f"{rate:>5g}/s  two_nodes/ours  p50 "
                      f"{pct(ours.latencies_ms, 50) / pct(one.latencies_ms, 50):.2f}x  p99 "
                      f"{pct(ours.latencies_ms, 99) / pct(one.latencies_ms, 99):.2f}x")
    return ok


async def start_ours(
    settings: Settings, work: Path, pbx: Pbx, agents: list[str], *, cluster: bool
) -> tuple[Service, Node | None]:
    """Our service on the PBX with every agent ready. `cluster`: as node a of two (Redis, the
    same PostgreSQL), node b a `cti serve` process standing by; a drives the PBX."""
    standby: Node | None = None
    if cluster:
        prefix = cluster_prefix()
        settings = settings.model_copy(update={
            "redis_url": REDIS_URL, "auth_secret": SECRET,
            "cluster": ClusterSettings(node_id="bench-a", key_prefix=prefix),
        })
    service = Service.build(settings)
    await service.start()
    if cluster:
        deadline = time.monotonic() + 30
        while not (service.cluster.role is not None and service.cluster.role.state == "active"
                   and service.ari.connected.is_set() and service.resync.last is not None):
            assert time.monotonic() < deadline, "node a did not become active"
            await asyncio.sleep(0.05)
        standby = Node("bench-b", work, node_settings(
            pbx, settings.database_url, prefix, inbound_flow=settings.inbound_flow,
            flows_dir=str(settings.flows_dir), rules_file=str(settings.rules_file),
            log_level="warning"))
        await standby.start()
        await standby.wait_role("standby")
    for agent in agents:
        # a second service finds them as the first left them (the record of agent states)
        if service.acd.agent_status(agent).state is AgentState.LOGGED_OUT:
            await service.acd.agent_login(agent)
    return service, standby


async def main(args: argparse.Namespace) -> int:
    configure_logging("error")  # overload warnings (e.g. a leg gone before bridging) aside
    agents = [str(1001 + i) for i in range(args.agents)]
    os.environ["CTI_PBX_AGENTS"] = " ".join(agents)  # scripts/pbx writes one endpoint per agent
    work = Path(tempfile.mkdtemp(prefix="bench-acd-"))
    flows = work / "flows"
    flows.mkdir()
    shutil.copy(REPO / "ivr_flows" / "agent_greeting.yaml", flows)
    shutil.copy(DIRECT_FLOW, flows)
    rules = work / "routing.yaml"
    rules.write_text(rules_yaml(agents))

    pbx = Pbx("bench-acd", rtp_size=1000)
    db_name: str | None = None
    service: Service | None = None
    standby: Node | None = None
    phones: list[AgentPhone] = []
    t0 = time.monotonic()
    try:
        print(f"[bench] starting Asterisk instance {pbx.name} with {len(agents)} agents ...")
        await asyncio.to_thread(pbx.up)
        for agent in agents[3:]:  # queues.conf [bench] lists 1001..1003; the rest join here
            await asyncio.to_thread(pbx.cli, f"queue add member PJSIP/{agent} to bench")
        members = await asyncio.to_thread(pbx.cli, "queue show bench")
        assert members.count("PJSIP/") == len(agents), members
        db_name, db_url = await make_database()
        settings = Settings(
            database_url=db_url,
            ari=AriSettings(url=pbx.ari_url, username=pbx.ari_user, password=pbx.ari_password,
                            app=pbx.app),
            sounds_dir=pbx.sounds_dir, flows_dir=flows, inbound_flow="routing_direct",
            rules_file=rules, log_level="warning",
            detection=DetectionSettings(auto_start=args.audio_tap),
        )
        print(f"[bench] registering {len(agents)} agent phones ...")
        register_xml = pbx.stage(SCENARIO_DIR / "agent_register.xml")
        answer_xml = pbx.stage(AGENT_SCENARIO)
        phones.extend(await asyncio.gather(
            *(start_agent(pbx, a, register_xml, answer_xml) for a in agents)
        ))
        print(f"[bench] ready after {time.monotonic() - t0:.1f} s")

        phases: list[Phase] = []
        plan = [(rate, max(30, round(rate * args.seconds))) for rate in args.rates]
        # One path at a time (the service it needs up), every rate, warmed up first.
        for j, name in enumerate(args.paths):
            if name != "app_queue":
                service, standby = await start_ours(settings, work, pbx, agents,
                                                    cluster=name == "two_nodes")
            await run_phase(pbx, Phase(name, 2, f"+4930{j}0"), 4)  # warm-up
            for i, (rate, calls) in enumerate(plan):
                phase = Phase(name, rate, f"+4931{i}{j}0")
                print(f"[bench] {name}: {calls} calls at {rate:g}/s ...")
                trace = StageTrace() if args.stages and service is not None else None
                if trace is not None and service is not None:
                    trace.install(service.bus)
                await run_phase(pbx, phase, calls)
                await asyncio.sleep(TALK_MS / 1000 + 1)  # let the last calls end
                measure(phase, phones)
                if trace is not None:
                    trace.uninstall()
                    print(trace.report())
                phases.append(phase)
            if service is not None:
                await service.stop()
                service = None
            if standby is not None:
                await standby.stop()
                standby = None
        ok = report(phases)
        for ph in phases:
            if ph.result is not None and not ph.result.ok:
                print(f"\n[bench] {ph.name} at {ph.rate:g}/s: sipp reported failed calls:\n"
                      f"{ph.result.stdout[-1500:]}{ph.result.stderr[-500:]}")
        return 0 if ok else 1
    finally:
        for phone in phones:  # one by one, as they were started
            with contextlib.suppress(Exception):
                await phone.stop()
        if service is not None:
            await service.stop()
        if standby is not None:
            await standby.stop()
        await asyncio.to_thread(pbx.down)
        if db_name is not None:
            await drop_database(db_name)
        shutil.rmtree(work, ignore_errors=True)
        print(f"[bench] done in {time.monotonic() - t0:.0f} s (Asterisk and phones stopped)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--audio-tap", action="store_true", help="caller-audio detection on")
    parser.add_argument("--paths", nargs="+", default=["ours", "two_nodes", "app_queue"],
                        choices=["ours", "two_nodes", "app_queue"],
                        help="ours: one node (no Redis); two_nodes: the active node of two "
                             "(Redis, a standby `cti serve` process); app_queue: Asterisk's own")
    parser.add_argument("--stages", action="store_true",
                        help="print where our path's time goes (benchmarks/stage_trace.py)")
    parser.add_argument("--rates", type=float, nargs="+", default=[1.0, 20.0],
                        help="calls arriving per second, one phase per rate and path")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="length of each phase (at least 30 calls per phase)")
    parser.add_argument("--loop", choices=get_args(LoopKind), default="auto",
                        help="the event loop of our service, in this process and the standby "
                             "(`event_loop`; auto: uvloop if installed, as `cti serve`)")
    arguments = parser.parse_args()
    os.environ["CTI_EVENT_LOOP"] = arguments.loop  # the standby `cti serve` too
    sys.exit(event_loop.run(main(arguments), arguments.loop))
