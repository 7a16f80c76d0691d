"""Bad configuration gives one clear line naming what and where, and a non-zero exit."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_yaml import BOMB, BOMB_ERROR, GBK, GBK_ERROR
from typer.testing import CliRunner

from cti.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
DEMO_RULES = REPO / "config" / "routing.yaml"
TRACE = REPO / "benchmarks" / "traces" / "demo.csv"


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


# ----- every command, bad input: one `error:` line last on stderr, non-zero exit, no traceback.
# Real processes: `cti` itself (cti.cli.main) turns click's usage errors into that line.


def cti(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    base["CTI_DATABASE_URL"] = f"sqlite+aiosqlite:///{cwd / 'cti.db'}"
    base["CTI_ARI__URL"] = "http://127.0.0.1:1/ari"  # nothing gets as far as the PBX
    return subprocess.run(
        [sys.executable, "-m", "cti", *args], env={**base, **(env or {})}, cwd=cwd,
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The command failed, its last stderr line is its only `error:` line, no traceback."""
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert done.stderr.rstrip().splitlines()[-1] == errors[0]
    return errors[0]


BAD_YAML: dict[str, tuple[str | bytes | None, str]] = {
    # name: (content; None = no such file, "/" = a directory), expected message after the path
    "missing": (None, ": file not found"),
    "directory": ("/", ": is a directory, not a file"),
    "empty": ("", ":1:1: no content (the file is empty or only comments)"),
    "bad_yaml": ("queues: [oops\n", ":2:1: expected ',' or ']', but got '<stream end>'"),
    "bomb": (BOMB, BOMB_ERROR),
    "recursive": ("a: &x [*x]\n", ":1:8: recursive alias *x: it is inside the anchor &x"),
    "gbk": (GBK, ": " + GBK_ERROR),
    "png": (b"\x89PNG\r\n\x1a\n\x00\x00", ": not UTF-8 text (byte 0x89 at offset 0)"),
    "too_large": ("#" * (2 * 1024 * 1024 + 1), ": too large for a config file (over 2 MB)"),
    "deep": ("a: " + "[" * 500 + "]" * 500, r":1:\d+: nested more than 100 levels deep"),
}


def bad_file(tmp_path: Path, kind: str, name: str = "bad.yaml") -> tuple[Path, str]:
    """A file of that kind at tmp_path/name, and the regex its error line must match."""
    content, reason = BAD_YAML[kind]
    path = tmp_path / name
    if content == "/":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    literal = kind not in ("bomb", "deep")
    return path, "error: " + re.escape(str(path)) + (re.escape(reason) if literal else reason)


@pytest.mark.parametrize("kind", list(BAD_YAML))
def test_check_rules_bad_file_is_one_error_line(kind: str, tmp_path: Path) -> None:
    path, expected = bad_file(tmp_path, kind)
    assert re.match(expected, one_error_line(cti(["check-rules", str(path)], tmp_path)))


SETTINGS_KINDS = ["missing", "directory", "bad_yaml", "bomb", "recursive", "gbk", "png",
                  "too_large"]


@pytest.mark.parametrize(
    ("command", "kind"),
    [(["check-config", "-c"], kind) for kind in SETTINGS_KINDS]
    # the other commands read the settings file through the same loader: two kinds each
    + [(command, kind) for command in (["serve", "-c"], ["migrate", "-c"], ["demo", "seed", "-c"],
                                       ["crm", "import", str(TRACE), "-c"])
       for kind in ("bomb", "gbk")],
)
def test_settings_file_bad_file_is_one_error_line(
    command: list[str], kind: str, tmp_path: Path
) -> None:
    path, expected = bad_file(tmp_path, kind, "cti.yaml")
    assert re.match(expected, one_error_line(cti([*command, str(path)], tmp_path)))


@pytest.mark.parametrize("kind", ["bomb", "gbk"])
def test_simulate_with_bad_rules_file_is_one_error_line(kind: str, tmp_path: Path) -> None:
    path, expected = bad_file(tmp_path, kind)
    done = cti(["simulate", "--rules", str(path), "--trace", str(TRACE)], tmp_path)
    assert re.match(expected, one_error_line(done))


@pytest.mark.parametrize("kind", ["bomb", "gbk"])
def test_serve_start_up_with_bad_rules_file_is_one_error_line(kind: str, tmp_path: Path) -> None:
    path, expected = bad_file(tmp_path, kind, "routing.yaml")
    done = cti(["serve"], tmp_path, env={"CTI_RULES_FILE": str(path)})
    assert re.match(expected, one_error_line(done))


def _library_copy(tmp_path: Path) -> tuple[Path, Path]:
    lib, flows = tmp_path / "scripts_lib", tmp_path / "ivr_flows"
    lib.mkdir()
    for name in ("phrases.yaml", "forbidden.yaml"):
        shutil.copy(REPO / "scripts_lib" / name, lib / name)
    shutil.copytree(REPO / "ivr_flows", flows)
    return lib, flows


@pytest.mark.parametrize("kind", ["bomb", "gbk"])
@pytest.mark.parametrize(
    "where", ["scripts_lib/phrases.yaml", "scripts_lib/forbidden.yaml", "ivr_flows/main_menu.yaml"]
)
def test_check_phrases_bad_file_is_one_error_line(kind: str, where: str, tmp_path: Path) -> None:
    lib, flows = _library_copy(tmp_path)
    (tmp_path / where).unlink()
    _path, expected = bad_file(tmp_path, kind, where)
    done = cti(["check-phrases", "--phrases-dir", str(lib), "--flows-dir", str(flows)], tmp_path)
    assert re.match(expected, one_error_line(done))


def test_serve_start_up_with_a_non_utf8_flow_is_one_error_line(tmp_path: Path) -> None:
    lib, flows = _library_copy(tmp_path)
    (flows / "main_menu.yaml").unlink()
    _path, expected = bad_file(tmp_path, "gbk", "ivr_flows/main_menu.yaml")
    done = cti(["serve"], tmp_path, env={"CTI_PHRASES_DIR": str(lib), "CTI_FLOWS_DIR": str(flows)})
    assert re.match(expected, one_error_line(done))


def test_phrases_render_with_an_alias_bomb_is_one_error_line(tmp_path: Path) -> None:
    lib, _flows = _library_copy(tmp_path)
    (lib / "phrases.yaml").unlink()
    _path, expected = bad_file(tmp_path, "bomb", "scripts_lib/phrases.yaml")
    done = cti(["phrases", "render", "--phrases-dir", str(lib), "--no-install"], tmp_path)
    assert re.match(expected, one_error_line(done))


def test_check_phrases_with_a_mistyped_flows_dir_fails(tmp_path: Path) -> None:
    done = cti(["check-phrases", "--flows-dir", str(tmp_path / "flowz")], tmp_path)
    assert one_error_line(done) == f"error: {tmp_path / 'flowz'}: flows directory not found"


# ----- CSV files: call traces (simulate) and customer lists (crm import)

TRACE_CASES: dict[str, tuple[bytes, str]] = {
    "gbk": ("arrival_s,handling_s,menu\n1,30,中\n".encode("gbk"),
            ": not UTF-8 text (byte 0xd6 at offset 31); save it as UTF-8"),
    "png": (b"\x89PNG\r\n\x1a\n", ": not UTF-8 text (byte 0x89 at offset 0)"),
    "nul": (b"arrival_s,handling_s\n1,3\x000\n", ": not a text file (NUL byte at offset 24)"),
    "bad_number": (b"arrival_s,handling_s\n1,30\nx,30\n",
                   ":3:1: could not convert string to float: 'x'"),
    "short_row": (b"arrival_s,handling_s\n1\n", ":2:1: "),
    "infinite": (b"arrival_s,handling_s\n1,inf\n", ":2:1: times must be finite numbers"),
    "huge_field": (b'arrival_s,handling_s,menu\n1,30,"' + b"x" * 200_000 + b'"\n',
                   ":2:1: field larger than field limit (131072)"),
    "no_header": (b"", ":1:1: missing column(s): arrival_s, handling_s"),
}


@pytest.mark.parametrize("kind", list(TRACE_CASES))
def test_simulate_bad_trace_is_one_error_line(kind: str, tmp_path: Path) -> None:
    data, reason = TRACE_CASES[kind]
    trace = tmp_path / "trace.csv"
    trace.write_bytes(data)
    done = cti(["simulate", "--rules", str(DEMO_RULES), "--trace", str(trace)], tmp_path)
    assert one_error_line(done).startswith(f"error: {trace}{reason}")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("numbers,name\n13800138000,王伟\n".encode("gbk"),
         ": not UTF-8 text (byte 0xcd at offset 25); save it as UTF-8"),
        (b"numbers,name\n13800138000,a\x00b\n", ": not a text file (NUL byte at offset 26)"),
        (b"\x89PNG\r\n\x1a\n", ": not UTF-8 text (byte 0x89 at offset 0); save it as UTF-8"),
    ],
)
def test_crm_import_of_a_file_that_is_not_utf8_text(
    data: bytes, reason: str, tmp_path: Path
) -> None:
    f = tmp_path / "customers.csv"
    f.write_bytes(data)
    assert one_error_line(cti(["crm", "import", str(f)], tmp_path)) == f"error: {f}{reason}"


def test_crm_import_names_a_bad_row_as_its_error_line(tmp_path: Path) -> None:
    assert cti(["migrate"], tmp_path).returncode == 0
    f = tmp_path / "customers.csv"
    f.write_text("numbers,name\n13800138000,王伟\nnope,x\n", encoding="utf-8")
    done = cti(["crm", "import", str(f)], tmp_path)
    assert one_error_line(done).startswith(f"error: {f}:3: numbers: not a phone number")
    assert "added 1, updated 0, rejected 1" in done.stdout


def test_crm_import_before_migrate_says_to_migrate(tmp_path: Path) -> None:
    f = tmp_path / "customers.csv"
    f.write_text("numbers,name\n13800138000,王伟\n", encoding="utf-8")
    line = one_error_line(cti(["crm", "import", str(f)], tmp_path))
    assert line.startswith(f"error: database sqlite+aiosqlite:///{tmp_path / 'cti.db'}: ")
    assert line.endswith("(the schema is missing: run `cti migrate`)")


@pytest.mark.parametrize("command", [["demo", "seed"], ["migrate"]])
def test_database_in_a_missing_directory_is_one_error_line(
    command: list[str], tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'nope' / 'cti.db'}"
    done = cti(command, tmp_path, env={"CTI_DATABASE_URL": url})
    assert one_error_line(done) == (
        f"error: database {url}: directory {tmp_path / 'nope'} does not exist"
    )


# ----- bad option values and usage


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["simulate", "--no-answer-rate", "3"], "error: Invalid value for '--no-answer-rate'"),
        (["simulate", "--answer-delay", "-1"], "error: Invalid value for '--answer-delay'"),
        (["simulate", "--seed", "x"], "error: Invalid value for '--seed'"),
        (["check-rules"], "error: Missing argument"),
        (["no-such-command"], "error: No such command 'no-such-command'"),
        (["users", "add", "bob"], "error: --password is required when not run at a terminal"),
        (["users", "add", "bob", "--role", "king", "--password", "secret1"],
         "error: --role: 'king' is not one of agent, supervisor, admin"),
    ],
)
def test_bad_option_values_are_one_error_line(
    args: list[str], expected: str, tmp_path: Path
) -> None:
    if args[0] == "simulate":
        args = [*args, "--rules", str(DEMO_RULES), "--trace", str(TRACE)]
    assert one_error_line(cti(args, tmp_path)).startswith(expected)


def test_database_password_is_masked_in_errors(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://cti:s3cret@127.0.0.1:1/cti"
    line = one_error_line(cti(["demo", "seed"], tmp_path, env={"CTI_DATABASE_URL": url}))
    assert line.startswith("error: database postgresql+asyncpg://cti:***@127.0.0.1:1/cti: ")
    assert "s3cret" not in line
