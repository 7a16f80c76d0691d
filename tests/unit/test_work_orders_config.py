"""config/work_orders.yaml: unknown keys, bad references, file:line:col errors; a broken file
is refused on reload with the running config kept; `cti check-work-orders`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cti.cli import app
from cti.domain.work_orders import Status
from cti.features.work_orders.config import WorkOrderRules, load_work_orders, parse_work_orders
from cti.platform.errors import ConfigError
from cti.platform.settings import REPO_ROOT

SHIPPED = REPO_ROOT / "config" / "work_orders.yaml"
BASE = """\
severities: [normal, high]
teams: [desk, managers]
escalation_targets: {duty_manager: managers}
types:
  complaint:
    complaint: true
    team: desk
    sla:
      normal: {resolve_within_h: 24, priority: 2, acknowledge_within_min: 60}
"""


def test_the_shipped_file_loads() -> None:
    config = load_work_orders(SHIPPED)
    assert {"service_request", "complaint"} <= set(config.types)
    assert Status.IN_PROGRESS in config.flow[Status.CLOSED]


@pytest.mark.parametrize(("extra", "message"), [
    ("colour: red\n", "<wo>:10:1: colour: Extra inputs are not permitted"),
    ("escalations:\n  - {name: a, to: boss, severities: [high]}\n",
     "<wo>:11:19: escalations.0.to: unknown escalation target 'boss' (known: duty_manager)"),
    ("escalations:\n  - {name: a, to: duty_manager, severities: [urgent]}\n",
     "<wo>:11:46: escalations.0.severities.0: unknown severity 'urgent' (known: normal, high)"),
    ("escalations:\n  - {name: a, to: duty_manager}\n", "exactly one condition"),
    ("escalations:\n  - {name: a, to: duty_manager, types: [other], not_acknowledged: true}\n",
     "'other' is not a complaint type"),
    ("flow:\n  new: [in_progress]\n  resolved: [closed]\n",
     "<wo>:12:3: flow.resolved: the flow must allow resolved -> in_progress"),
    ("flow:\n  new: [nowhere]\n", "flow.new.0"),
])
def test_bad_files_name_file_line_col(extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_work_orders(BASE + extra, "<wo>")
    assert message in info.value.message, info.value.message


def test_unknown_team_and_severity_references() -> None:
    text = BASE.replace("team: desk", "team: nobody").replace("normal: {", "urgent: {")
    with pytest.raises(ConfigError) as info:
        parse_work_orders(text, "<wo>")
    assert info.value.message.splitlines() == [
        "<wo>:7:11: types.complaint.team: unknown team 'nobody' (known: desk, managers)",
        "<wo>:9:7: types.complaint.sla.urgent: unknown severity 'urgent' (known: normal, high)",
    ]


def test_a_broken_file_is_refused_on_reload_and_the_running_config_kept(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wo.yaml"
    shutil.copyfile(SHIPPED, path)
    rules = WorkOrderRules(path)
    running = rules.config
    path.write_text(BASE + "bogus: 1\n", encoding="utf-8")
    ok, message = rules.reload()
    assert not ok
    assert f"{path}:10:1: bogus" in message
    assert rules.config is running
    path.write_text(BASE, encoding="utf-8")
    assert rules.reload()[0]
    assert set(rules.config.types) == {"complaint"}


def test_check_work_orders_command(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["check-work-orders", str(SHIPPED)])
    assert result.exit_code == 0
    assert "escalation stalled -> back_office" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE + "types2: {}\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["check-work-orders", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:10:1: types2" in result.output
