"""Router decision time with 2,000 agents, 100 skills, 500 waiting calls; simulator speed.

Run: .venv/bin/python -m benchmarks.bench_router   (or python benchmarks/bench_router.py)

Two situations, both with 500 calls waiting:
- busy: every agent works; a freed agent takes the best waiting call it qualifies for, and a
  new call arrives for each one taken (the waiting line stays at 500);
- idle: 1,900 agents are available but none qualifies for the 500 waiting calls (they need
  skills whose agents are all on calls); each arrival picks among ~100-400 candidates by its
  queue's strategy, and each freed agent finds none of the 500 waiting calls fits (the worst
  case for that search).
p50/p99 are over every decision of both kinds; the target is p99 <= 500 µs.

Sizes: --agents, --skills, --waiting (e.g. `--agents 20000 --skills 1000 --waiting 5000
--target-us 100` for the scale-out figures); --rounds; --index-min (the router's
index_min_members); --no-sim skips the simulator run. The
last tenth of the skills belongs only to the first twentieth of the agents ("specialists"),
which at the defaults is exactly the original s90..s99 / a0..a99 layout.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cti.domain.routing.expressions import compile_expression
from cti.domain.routing.model import (
    AgentProfile,
    Fallback,
    Filter,
    Queue,
    RelaxationStep,
    RoutingRules,
    SkillRequirement,
    Strategy,
    Target,
)
from cti.domain.routing.router import Router

N_AGENTS, N_SKILLS, N_WAITING = 2000, 100, 500
TARGET_P99_US = 500.0
INDEX_MIN = 32  # pools with at least this many members keep orderings (Router's default)
STRATEGIES = list(Strategy)


def make_rules(seed: int = 7) -> RoutingRules:
    rng = random.Random(seed)
    skills = tuple(f"s{i}" for i in range(N_SKILLS))
    queues = {}
    for i in range(N_SKILLS):
        steps = (
            RelaxationStep(30, "lower_proficiency", min_proficiency=1),
            RelaxationStep(60, "add_queue", queue=f"q{(i + 1) % N_SKILLS}"),
        )
        queues[f"q{i}"] = Queue(
            f"q{i}",
            SkillRequirement.of({f"s{i}": 3}),
            priority=rng.randint(0, 3),
            strategy=STRATEGIES[i % len(STRATEGIES)],
            max_wait_s=1e9,
            fallback=Fallback("voicemail"),
            relaxation=steps,
        )
    agents = {}
    for a in range(N_AGENTS):
        # Skills s90..s99 belong only to agents 0..99 ("specialists"), so the idle case can
        # hold 500 calls no available agent qualifies for (scaled with --agents/--skills).
        pool = range(n_common(), N_SKILLS) if a < n_specialists() else range(n_common())
        chosen = rng.sample(list(pool), 5)
        agents[f"a{a}"] = AgentProfile(
            f"a{a}", f"PJSIP/{a}", {f"s{s}": rng.randint(1, 5) for s in chosen}, team=f"t{a % 20}"
        )
    filters = tuple(
        Filter(f"f{i}", compile_expression(f'queue == "q{i}"'), (Target(f"q{i}"),))
        for i in range(N_SKILLS)
    )
    tiers = {}
    return RoutingRules(skills, queues, tiers, agents, filters, "q0")


def n_common() -> int:
    return N_SKILLS - max(N_SKILLS // 10, 5)


def n_specialists() -> int:
    return max(N_AGENTS // 20, 1)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(int(len(s) * p), len(s) - 1)]


def bench_busy(rules: RoutingRules, rounds: int, rng: random.Random) -> list[float]:
    r = Router(rules, index_min_members=INDEX_MIN)
    now = 0.0
    for n in range(N_WAITING):
        r.enqueue(f"w{n}", {"queue": f"q{rng.randrange(N_SKILLS)}", "tier": "x"}, now)
    agents = list(rules.agents)
    times: list[float] = []
    n = N_WAITING
    clock = time.perf_counter_ns
    for _ in range(rounds):
        now += 0.05
        a = rng.choice(agents)
        if r.offer_of_agent(a) is not None or r.is_available(a):
            continue
        t0 = clock()
        d = r.agent_ready(a, now, after_call=True)
        times.append((clock() - t0) / 1000)
        if d.offer_id:
            r.offer_answered(d.offer_id, now)
            r.agent_call_ended(a, now)
        else:
            r.agent_unready(a)
        n += 1
        t0 = clock()
        r.enqueue(f"w{n}", {"queue": f"q{rng.randrange(N_SKILLS)}"}, now)
        times.append((clock() - t0) / 1000)
        if r.waiting_count() > N_WAITING:
            victim = r.waiting_calls()[-1].call_id
            r.remove_call(victim, now)
    return times


def bench_idle(
    rules: RoutingRules, rounds: int, rng: random.Random
) -> tuple[list[float], list[float]]:
    r = Router(rules, index_min_members=INDEX_MIN)
    now = 0.0
    for n in range(N_WAITING):  # waiting for specialist skills; specialists are all busy
        r.enqueue(f"w{n}", {"queue": f"q{n_common() + rng.randrange(9)}"}, now)
    for i in range(n_specialists(), N_AGENTS):
        r.agent_ready(f"a{i}", now - rng.random() * 100)
    arrivals: list[float] = []
    freed: list[float] = []
    clock = time.perf_counter_ns
    for k in range(rounds):
        now += 0.05
        t0 = clock()
        d = r.enqueue(f"n{k}", {"queue": f"q{rng.randrange(n_common() - 1)}"}, now)
        arrivals.append((clock() - t0) / 1000)
        if d.offer_id and d.agent_id:
            r.offer_answered(d.offer_id, now)
            r.agent_call_ended(d.agent_id, now + 1)
            t0 = clock()
            r.agent_ready(d.agent_id, now + 1, after_call=True)
            freed.append((clock() - t0) / 1000)
        else:
            r.remove_call(f"n{k}", now)
    return arrivals, freed


def bench_tick(rules: RoutingRules, rng: random.Random) -> float:
    r = Router(rules, index_min_members=INDEX_MIN)
    for n in range(N_WAITING):
        r.enqueue(f"w{n}", {"queue": f"q{n_common() + rng.randrange(9)}"}, rng.random() * 100)
    t0 = time.perf_counter()
    for i in range(200):
        r.tick(100 + i * 1.0)
    return (time.perf_counter() - t0) / 200 * 1e6


def bench_simulator() -> tuple[int, float]:
    from cti.features.routing.rules import load_rules
    from cti.features.routing.simulate import TraceCall, simulate

    rules = load_rules(Path(__file__).resolve().parent.parent / "config" / "routing.yaml")
    rng = random.Random(3)
    calls = []
    t = 0.0
    for i in range(20000):
        t += rng.expovariate(1 / 18.0)
        calls.append(
            TraceCall(
                f"c{i}",
                t,
                rng.lognormvariate(4.8, 0.5),
                rng.expovariate(1 / 120) + 10,
                {
                    "menu": rng.choice("1239"),
                    "tier": rng.choice(["standard"] * 8 + ["gold", "vip"]),
                },
            )
        )
    t0 = time.perf_counter()
    simulate(rules, calls)
    wall = time.perf_counter() - t0
    return len(calls), len(calls) / wall


def main() -> None:
    global N_AGENTS, N_SKILLS, N_WAITING, TARGET_P99_US, INDEX_MIN
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--agents", type=int, default=N_AGENTS)
    ap.add_argument("--skills", type=int, default=N_SKILLS)
    ap.add_argument("--waiting", type=int, default=N_WAITING)
    ap.add_argument("--rounds", type=int, default=4000)
    ap.add_argument("--target-us", type=float, default=TARGET_P99_US)
    ap.add_argument("--index-min", type=int, default=INDEX_MIN,
                    help="index pools of at least this many members (0: all)")
    ap.add_argument("--no-sim", action="store_true", help="skip the simulator run")
    args = ap.parse_args()
    N_AGENTS, N_SKILLS, N_WAITING = args.agents, args.skills, args.waiting
    TARGET_P99_US = args.target_us
    INDEX_MIN = args.index_min
    rng = random.Random(11)
    t0 = time.perf_counter()
    rules = make_rules()
    build_s = time.perf_counter() - t0
    Router(rules)  # warm caches
    busy = bench_busy(rules, args.rounds, rng)
    arrivals, freed = bench_idle(rules, args.rounds, rng)
    all_times = busy + arrivals + freed
    p50, p99 = pct(all_times, 0.50), pct(all_times, 0.99)
    print(
        f"router: {N_AGENTS} agents, {N_SKILLS} skills, {N_WAITING} waiting calls "
        f"(rules built in {build_s * 1000:.0f} ms)"
    )
    for name, xs in (
        ("busy (freed agent + arrival)", busy),
        ("idle: arrival, many candidates", arrivals),
        ("idle: freed agent, no call fits", freed),
    ):
        print(
            f"  {name:34s} n={len(xs):5d}  p50 {pct(xs, 0.5):7.1f} µs  p99 {pct(xs, 0.99):7.1f} µs"
            f"  max {max(xs):7.1f} µs"
        )
    print(
        f"  all decisions                      n={len(all_times):5d}  p50 {p50:7.1f} µs  "
        f"p99 {p99:7.1f} µs"
    )
    print(
        f"  target p99 <= {TARGET_P99_US:.0f} µs: ratio p99/target = {p99 / TARGET_P99_US:.2f} "
        f"({'met' if p99 <= TARGET_P99_US else 'MISSED'})"
    )
    print(f"  tick (re-evaluate {N_WAITING} waiting calls): {bench_tick(rules, rng):.0f} µs")
    if args.no_sim:
        return
    n, rate = bench_simulator()
    print(
        f"simulator: {n} calls through config/routing.yaml at {rate:,.0f} simulated calls / wall s"
    )


if __name__ == "__main__":
    main()
