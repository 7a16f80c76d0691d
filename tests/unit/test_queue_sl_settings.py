"""Per-queue service-level mode (SL or SL2) and short-abandon threshold, from the rules to
the figures (docs/metrics.md)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from routing_fixtures import BASIC

from cti.features.routing.acd import Acd
from cti.features.routing.rules import parse_rules
from cti.platform.errors import ConfigError

RULES = BASIC.replace("{strategy}", "longest_idle").replace(
    "  general:\n    skills: {general: 1}\n",
    "  general:\n    skills: {general: 1}\n"
    "    service_level: {percent: 90, seconds: 30, mode: sl2, short_abandon_s: 8}\n",
)


def test_a_queue_sets_its_sl_mode_and_short_abandon_threshold() -> None:
    rules = parse_rules(RULES, "basic.yaml")
    core = SimpleNamespace(core=SimpleNamespace(rules=rules))
    general = Acd.queue_targets(core, "general")  # type: ignore[arg-type]
    assert (general.sl_s, general.sl_mode, general.short_abandon_s, general.sl_goal) == (
        30.0, "sl2", 8.0, 0.9)
    billing = Acd.queue_targets(core, "billing")  # type: ignore[arg-type]
    assert (billing.sl_mode, billing.short_abandon_s) == ("sl", 5.0)  # the defaults


@pytest.mark.parametrize(("bad", "reason"), [
    ("mode: sl3", "service_level.mode"),
    ("short_abandon_s: -1", "service_level.short_abandon_s"),
])
def test_a_bad_setting_is_refused_with_its_line(bad: str, reason: str) -> None:
    text = RULES.replace("mode: sl2, short_abandon_s: 8", bad)
    with pytest.raises(ConfigError) as err:
        parse_rules(text, "basic.yaml")
    assert "basic.yaml:" in str(err.value)
    assert reason in str(err.value)
