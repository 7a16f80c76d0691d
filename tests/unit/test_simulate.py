"""The dry run: a trace through the real router with a simulated clock gives the expected
service figures on cases worked out by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
from routing_fixtures import basic_rules
from typer.testing import CliRunner

from cti.cli import app
from cti.features.routing.simulate import TraceCall, read_trace, simulate
from cti.platform.errors import ConfigError
from cti.platform.settings import REPO_ROOT


def call(
    cid: str, t: float, handling: float, patience: float | None = None, menu: str = "1"
) -> TraceCall:
    return TraceCall(cid, t, handling, patience, {"menu": menu})


def test_two_billing_calls_three_billing_agents_are_answered_at_once() -> None:
    res = simulate(basic_rules(), [call("c1", 0, 60), call("c2", 1, 60)], answer_delay_s=2)
    assert [c.ended for c in res.calls.values()] == ["answered", "answered"]
    assert res.asa() == pytest.approx(2.0)
    assert res.service_level() == 1.0
    assert res.abandonment() == 0.0


def test_impatient_caller_abandons_when_every_agent_is_busy() -> None:
    # One agent qualified for tech (a3 tech 4, a5 tech 2 -> both); three calls, patience 5 s.
    trace = [call(f"c{i}", 0, 100, 5, menu="2") for i in range(3)]
    res = simulate(basic_rules(), trace, answer_delay_s=1)
    outcomes = sorted(c.ended for c in res.calls.values())
    assert outcomes == ["abandoned", "answered", "answered"]
    assert res.abandonment() == pytest.approx(1 / 3)


def test_occupancy_counts_ringing_talking_and_wrap_up() -> None:
    res = simulate(basic_rules(), [call("c1", 0, 98)], answer_delay_s=2)
    # a1 rings 2 s, talks 98 s, wraps up 10 s (default) = 110 s of a 110 s run
    assert res.occupancy()["a1"] == pytest.approx(1.0)
    assert res.occupancy()["a4"] == 0.0


def test_relaxation_in_the_simulation_serves_billing_with_general_agents_after_60s() -> None:
    # Billing agents a1..a3 all busy for long calls; a4/a5 (general) take the 4th after 60 s.
    trace = [call(f"c{i}", 0, 1000) for i in range(4)]
    res = simulate(basic_rules(), trace, answer_delay_s=0.5)
    answered = sorted(c.answered_at or 0 for c in res.calls.values())
    assert answered[-1] == pytest.approx(60.5)


def test_trace_errors_name_the_line(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("arrival_s,handling_s,menu\n1,30,1\nx,30,1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"t.csv:3:1:"):
        read_trace(p)


def test_simulate_cli_prints_the_report() -> None:
    res = CliRunner().invoke(
        app,
        [
            "simulate",
            "--rules",
            str(REPO_ROOT / "config" / "routing.yaml"),
            "--trace",
            str(REPO_ROOT / "benchmarks" / "traces" / "demo.csv"),
        ],
    )
    assert res.exit_code == 0, res.output
    for needle in ("service level", "ASA", "abandonment", "per-agent occupancy", "1010:"):
        assert needle in res.output
