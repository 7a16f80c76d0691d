"""Routing-rules validation: the demo file loads; bad files fail with file:line:col and reason;
the expression language is safe; `cti check-rules` exits 0 or 1."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cti.cli import app
from cti.domain.routing.expressions import ExpressionError, compile_expression
from cti.domain.routing.hours import is_open
from cti.features.routing.rules import load_rules, parse_rules
from cti.platform.errors import ConfigError
from cti.platform.settings import REPO_ROOT

DEMO = REPO_ROOT / "config" / "routing.yaml"

HEAD = """\
skills: [billing, general]
default_queue: general
agents:
  "1001": {skills: {general: 2, billing: 3}}
queues:
  general: {skills: {general: 1}}
"""


def test_demo_rules_load_with_expected_queues_and_agents() -> None:
    rules = load_rules(DEMO)
    assert set(rules.queues) == {"billing", "tech_support", "complaints", "general", "vip"}
    assert list(rules.agents) == [str(n) for n in range(1001, 1011)]
    assert rules.agents["1006"].endpoint == "PJSIP/1006"
    assert rules.tiers["vip"].priority_boost > rules.tiers["gold"].priority_boost


@pytest.mark.parametrize(
    ("extra", "where", "reason"),
    [
        (
            "  billing: {skills: {billing: 2}, colour: red}\n",
            ":7:35:",
            "Extra inputs are not permitted",
        ),
        ("  billing: {skills: {sales: 2}}\n", ":7:22:", "unknown skill 'sales'"),
        ("  billing: {skills: {billing: 9}}\n", ":7:3:", "must be 1..5, got 9"),
        ("  billing: {skills: {billing: 2}, max_wait_s: -5}\n", ":7:3", "greater than 0"),
        (
            "  billing:\n    skills: {billing: 2}\n    fallback: {action: queue, queue: nowhere}\n",
            ":9:38:",
            "unknown queue 'nowhere'",
        ),
        (
            "  billing:\n    skills: {billing: 2}\n"
            "    relaxation: [{after_s: 400, min_proficiency: 1}]\n",
            ":9:",
            "could never apply",
        ),
        (
            "  billing:\n    skills: {billing: 2}\n"
            "    relaxation: [{after_s: 10, min_proficiency: 3}]\n",
            ":9:",
            "lowers nothing",
        ),
        (
            "  billing:\n    skills: {billing: 2}\n    relaxation: [{after_s: 10}]\n",
            ":9:",
            "exactly one of",
        ),
        (
            "  billing:\n    skills: {billing: 2}\n    fallback: {action: queue, queue: billing}\n",
            ":9:",
            "fallback queues loop",
        ),
        ("  billing: {skills: {billing: 5}}\n", ":7:", "no agent can ever serve queue 'billing'"),
        (
            "  billing:\n    skills: {billing: 2}\n    wallboard: {asa_s: [40, 20]}\n",
            ":9:",
            "asa_s: [amber, red] with 0 <= amber <= red, got [40.0, 20.0]",
        ),
        (
            "  billing:\n    skills: {billing: 2}\n    wallboard: {sl_warn_points: 120}\n",
            ":9:",
            "less than or equal to 100",
        ),
    ],
)
def test_bad_queue_is_reported_with_position_and_reason(
    extra: str, where: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_rules(HEAD + extra, "r.yaml")
    assert f"r.yaml{where}" in exc.value.message
    assert reason in exc.value.message


@pytest.mark.parametrize(
    ("rule", "where", "reason"),
    [
        ("  - {name: a, targets: [{queue: nope}]}\n", "r.yaml:8:33:", "unknown queue 'nope'"),
        (
            "  - {name: a, when: menu == , targets: [{queue: general}]}\n",
            "r.yaml:8:21:",
            "syntax error",
        ),
        (
            '  - {name: a, when: __import__("os"), targets: [{queue: general}]}\n',
            "r.yaml:8:",
            "only the string methods",
        ),
        (
            '  - {name: a, when: agent.team == "x", targets: [{queue: general}]}\n',
            "r.yaml:8:",
            "a call condition cannot read 'agent.team'",
        ),
        (
            '  - {name: a, targets: [{queue: general, agents: menu == "1"}]}\n',
            "r.yaml:8:",
            "an agent expression reads only agent.*",
        ),
        (
            "  - {name: a, targets: [{queue: general}, {queue: general}]}\n",
            "r.yaml:8:",
            "only the last target may omit timeout_s",
        ),
    ],
)
def test_bad_rule_is_reported_with_position_and_reason(rule: str, where: str, reason: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_rules(HEAD + "rules:\n" + rule, "r.yaml")
    assert where in exc.value.message
    assert reason in exc.value.message


def test_bad_yaml_syntax_is_reported_with_position() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_rules(HEAD + "  billing: {skills: [}\n", "r.yaml")
    assert exc.value.message.startswith("r.yaml:7:")


@pytest.mark.parametrize(
    ("expr", "attrs", "expected"),
    [
        ('menu == "1"', {"menu": "1"}, True),
        ('menu == "1"', {}, False),
        ('tier in ["vip", "gold"] and language != "en"', {"tier": "vip", "language": "zh"}, True),
        ('crm.segment == "enterprise"', {"crm": {"segment": "enterprise"}}, True),
        ('crm.segment == "enterprise"', {"crm.segment": "enterprise"}, True),
        ('dialled.startswith("400")', {"dialled": "4008003000"}, True),
        ('dialled.startswith("400")', {}, False),
        ("crm.balance > 1000", {"crm": {"balance": 5000}}, True),
        ("crm.balance > 1000", {"crm": {"balance": "n/a"}}, False),  # no TypeError
        ("not crm.open_complaint == true", {}, True),
    ],
)
def test_expression_language(expr: str, attrs: dict[str, object], expected: bool) -> None:
    assert compile_expression(expr).test(attrs) is expected


@pytest.mark.parametrize(
    "bad",
    [
        "__import__('os').system('x')",
        "().__class__",
        "open('f')",
        "x + 1",
        "[i for i in x]",
        "lambda: 1",
        "a if b else c",
        "x[0]",
    ],
)
def test_expression_language_rejects_anything_outside_the_whitelist(bad: str) -> None:
    with pytest.raises(ExpressionError):
        compile_expression(bad)


def test_wallboard_thresholds_per_queue() -> None:
    rules = load_rules(DEMO)
    billing = rules.queues["billing"].thresholds
    assert billing.asa_s == (20, 40)
    assert billing.abandonment == (0.05, 0.1)  # percent in the file, shares in the model
    assert billing.longest_wait_s == (60, 120)
    assert billing.sl_warn == 0.1
    assert rules.queues["general"].thresholds.asa_s is None  # not set: not coloured


def test_business_hours_and_holidays() -> None:
    hours = load_rules(DEMO).business_hours
    assert is_open(hours, datetime(2026, 1, 5, 2, 0, tzinfo=UTC))  # Mon 10:00 Shanghai
    assert not is_open(hours, datetime(2026, 1, 5, 14, 0, tzinfo=UTC))  # Mon 22:00
    assert not is_open(hours, datetime(2026, 1, 1, 2, 0, tzinfo=UTC))  # New Year holiday
    assert is_open(None, datetime(2026, 1, 1, 2, 0, tzinfo=UTC))


def test_check_rules_cli_prints_summary_or_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["check-rules", str(DEMO)])
    assert ok.exit_code == 0, ok.output
    assert "5 queues, 10 agents" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(HEAD + "rules:\n  - {name: a, targets: [{queue: nope}]}\n", encoding="utf-8")
    res = runner.invoke(app, ["check-rules", str(bad)])
    assert res.exit_code == 1
    assert f"{bad}:8:33: rules.0.targets.0.queue: unknown queue 'nope'" in res.output
