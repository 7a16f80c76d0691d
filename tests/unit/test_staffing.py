"""Erlang C against published figures, and the estimated-wait blend."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from cti.domain.staffing import (
    RunningAverage,
    agents_for_service_level,
    average_speed_of_answer,
    erlang_c,
    estimated_wait,
    service_level,
    staffing_for_interval,
)


@pytest.mark.parametrize(
    ("agents", "erlangs", "p_wait"),
    [
        (1, 0.5, 0.5),  # M/M/1: P(wait) = rho
        (2, 1.0, 1 / 3),
        (14, 10.0, 0.1741),  # classic table value
        (10, 10.0, 1.0),  # unstable
        (5, 0.0, 0.0),
    ],
)
def test_erlang_c_matches_known_values(agents: int, erlangs: float, p_wait: float) -> None:
    assert erlang_c(agents, erlangs) == pytest.approx(p_wait, abs=1e-3)


def test_service_level_and_asa_for_the_textbook_example() -> None:
    # 100 calls / 30 min, AHT 180 s -> 10 Erlangs; 14 agents: SL(20s) ~ 88.9%, ASA ~ 7.8 s
    assert service_level(14, 10.0, 180, 20) == pytest.approx(0.889, abs=0.005)
    assert average_speed_of_answer(14, 10.0, 180) == pytest.approx(7.8, abs=0.2)
    assert agents_for_service_level(10.0, 180, 20, 80) == 14  # 13 gives 79.6%


def test_estimated_wait_blends_position_with_running_average() -> None:
    assert estimated_wait(3, 2, 120) == 180
    assert estimated_wait(3, 2, 120, 60) == 120
    assert estimated_wait(1, 0, 120) == math.inf
    avg = RunningAverage(2)
    for v in (10, 20, 30):
        avg.add(v)
    assert avg.value == 25


def _erlang_c_by_definition(n: int, a: Fraction) -> Fraction:
    """P(wait) from its definition, in exact rationals: the independent check."""
    top = a ** n / math.factorial(n) * Fraction(n) / (n - a)
    return top / (sum(a ** k / math.factorial(k) for k in range(n)) + top)


@pytest.mark.parametrize("agents", [1, 2, 3, 5, 8, 13, 21, 34])
@pytest.mark.parametrize("load", [Fraction(1, 10), Fraction(1, 2), Fraction(4, 5),
                                  Fraction(19, 20)])
def test_erlang_c_equals_its_definition(agents: int, load: Fraction) -> None:
    traffic = load * agents
    assert erlang_c(agents, float(traffic)) == pytest.approx(
        float(_erlang_c_by_definition(agents, traffic)), rel=1e-12)


@pytest.mark.parametrize(
    ("agents", "erlangs", "p_wait"),
    [
        (3, 2.0, 4 / 9),  # by hand: (8/6·3)/(1 + 2 + 2 + 8/6·3)
        (11, 10.0, 0.6821),  # 100 calls / 30 min at 180 s: the textbook's first try
        (12, 10.0, 0.4494),
        (13, 10.0, 0.2853),
        (15, 10.0, 0.1020),
    ],
)
def test_erlang_c_textbook_table(agents: int, erlangs: float, p_wait: float) -> None:
    assert erlang_c(agents, erlangs) == pytest.approx(p_wait, abs=5e-5)


def test_staffing_for_an_interval_is_the_fewest_agents_meeting_the_goal() -> None:
    # 100 calls in 30 minutes, 180 s each: 10 Erlangs; 80 % in 20 s needs 14 (13 give 79.6 %)
    need = staffing_for_interval(100, 1800, 180, 20, 0.8)
    assert need.traffic_erlangs == pytest.approx(10.0)
    assert need.agents_needed == 14
    assert need.predicted_sl == pytest.approx(0.889, abs=0.001)
    assert service_level(13, 10.0, 180, 20) < 0.8
    # exactly on the goal is enough (0.8 × 100 is 80.00000000000001 in floating point)
    sl = service_level(14, 10.0, 180, 20)
    assert staffing_for_interval(100, 1800, 180, 20, sl).agents_needed == 14


@pytest.mark.parametrize("offered", [1, 5, 20, 60, 200, 600])
@pytest.mark.parametrize(("aht", "target", "goal"), [(120, 20, 0.8), (300, 30, 0.9),
                                                      (60, 10, 0.95)])
def test_staffing_is_minimal_and_stable(offered: int, aht: float, target: float,
                                        goal: float) -> None:
    need = staffing_for_interval(offered, 900, aht, target, goal)
    traffic = offered * aht / 900
    assert need.agents_needed > traffic  # a stable queue
    assert service_level(need.agents_needed, traffic, aht, target) >= goal - 1e-9
    if need.agents_needed - 1 > traffic:
        assert service_level(need.agents_needed - 1, traffic, aht, target) < goal


def test_no_calls_need_no_agents_and_bad_input_is_refused() -> None:
    assert staffing_for_interval(0, 900, 180, 20, 0.8).agents_needed == 0
    with pytest.raises(ValueError, match="positive"):
        staffing_for_interval(5, 0, 180, 20, 0.8)
    with pytest.raises(ValueError, match="positive"):
        staffing_for_interval(5, 900, 0, 20, 0.8)
