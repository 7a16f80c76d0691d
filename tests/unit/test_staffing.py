"""Erlang C against published figures, and the estimated-wait blend."""

from __future__ import annotations

import math

import pytest

from cti.domain.staffing import (
    RunningAverage,
    agents_for_service_level,
    average_speed_of_answer,
    erlang_c,
    estimated_wait,
    service_level,
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
