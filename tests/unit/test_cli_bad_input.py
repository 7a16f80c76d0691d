"""Bad configuration gives one clear line naming what and where, and a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cti.cli import app

runner = CliRunner()


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, args, env=env or {})
    return result.exit_code, result.output


def test_unknown_setting_names_file_line_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "cti.yaml"
    cfg.write_text("http_port: 8000\nari:\n  url: http://pbx:8088/ari\n  pasword: x\n")
    code, out = run(["check-config", "-c", str(cfg)])
    assert code != 0
    assert out.strip() == f"error: {cfg}:4:3: ari.pasword: Extra inputs are not permitted"


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "cti.yaml"
    cfg.write_text("ari:\n  url: [http://x\n")
    code, out = run(["check-config", "-c", str(cfg)])
    assert code != 0
    assert out.startswith(f"error: {cfg}:3:1: ")
    assert len(out.strip().splitlines()) == 1


def test_bad_value_type_in_file(tmp_path: Path) -> None:
    cfg = tmp_path / "cti.yaml"
    cfg.write_text("http_port: 99999\n")
    code, out = run(["check-config", "-c", str(cfg)])
    assert code != 0
    assert f"{cfg}:1:1: http_port: Input should be less than or equal to 65535" in out


def test_transfer_dial_without_number_slot_is_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "cti.yaml"
    cfg.write_text("transfer_dial: PJSIP/1000@trunk\n")
    code, out = run(["check-config", "-c", str(cfg)])
    assert code != 0
    assert f"{cfg}:1:1: transfer_dial: String should match pattern" in out


def test_bad_environment_value_names_the_variable() -> None:
    code, out = run(["check-config"], env={"CTI_HTTP_PORT": "eighty"})
    assert code != 0
    assert "environment CTI_HTTP_PORT" in out


def test_missing_config_file(tmp_path: Path) -> None:
    code, out = run(["check-config", "-c", str(tmp_path / "nope.yaml")])
    assert code != 0
    assert out.strip() == f"error: {tmp_path / 'nope.yaml'}: file not found"


@pytest.mark.parametrize("command", [["check-config", "--ari"], ["serve"]])
def test_asterisk_not_running_is_one_line(command: list[str], tmp_path: Path) -> None:
    # A real process: `serve` configures logging for the whole interpreter.
    env = {
        **os.environ,
        "CTI_ARI__URL": "http://127.0.0.1:1/ari",
        "CTI_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'c.db'}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "cti", *command], env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert done.returncode != 0
    assert "error: cannot reach ARI at http://127.0.0.1:1/ari" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
