from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hostile_yaml import BOMB, BOMB_ERROR, GBK, GBK_ERROR, alias_bomb
from pydantic import BaseModel, ConfigDict

from cti.domain.ivr.loader import FlowRefs, load_flow_file
from cti.features.phrases.library import (
    check_forbidden_everywhere,
    load_forbidden,
    load_phrase_library,
)
from cti.features.routing.rules import load_rules
from cti.platform.errors import ConfigError
from cti.platform.settings import load_settings
from cti.platform.textfile import MAX_CONFIG_BYTES
from cti.platform.yaml_source import MAX_ALIASES, load_yaml, parse_yaml, to_plain, validate_yaml

REPO = Path(__file__).resolve().parents[2]


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: int


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    items: list[Inner]


def test_yaml_12_keeps_on_as_a_string_key() -> None:
    data = parse_yaml("on: 1\n", "x.yaml")
    assert list(data.keys()) == ["on"]


def test_syntax_error_names_file_line_and_column() -> None:
    with pytest.raises(ConfigError, match=r"^rules\.yaml:2:5: mapping values are not allowed"):
        parse_yaml("a: 1\nb: c: d\n", "rules.yaml")


def test_duplicate_keys_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"rules\.yaml"):
        parse_yaml("a: 1\na: 2\n", "rules.yaml")


def test_validation_error_points_at_the_offending_key() -> None:
    text = "name: x\nitems:\n  - port: 1\n  - port: nope\n"
    with pytest.raises(ConfigError) as info:
        validate_yaml(Outer, parse_yaml(text, "f.yaml"), "f.yaml")
    assert str(info.value).startswith("f.yaml:4:5: items.1.port:")


def test_unknown_key_is_rejected_with_its_line() -> None:
    text = "name: x\nitems: []\nextra_key: 3\n"
    with pytest.raises(ConfigError, match=r"f\.yaml:3:1: extra_key: Extra inputs"):
        validate_yaml(Outer, parse_yaml(text, "f.yaml"), "f.yaml")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_yaml(tmp_path / "missing.yaml")


# ----- hostile or wrong files: refused quickly, as one ConfigError naming file:line:col -----


_BILLION_LAUGHS_CHILD = """
import json, resource, sys, time, tracemalloc
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # an unprotected run dies, not the host
from cti.features.routing.rules import load_rules
from cti.platform.errors import ConfigError
tracemalloc.start()
t0 = time.perf_counter()
try:
    load_rules(Path(sys.argv[1]))
    error = None
except ConfigError as exc:
    error = exc.message
print(json.dumps({"s": time.perf_counter() - t0, "peak": tracemalloc.get_traced_memory()[1],
                  "error": error}))
"""


def test_billion_laughs_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "routing.yaml"
    bomb.write_text(alias_bomb(9), encoding="utf-8")  # 10**9 strings once expanded
    # A child process: were the protection gone, the expansion would be killed by its own
    # memory limit or the timeout, never take the test run down with it.
    done = subprocess.run(
        [sys.executable, "-c", _BILLION_LAUGHS_CHILD, str(bomb)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert re.match(re.escape(str(bomb)) + BOMB_ERROR, result["error"])
    # How fast is a figure, not a pass mark (a slow machine must not fail this): the bound on
    # memory is what tells a refused expansion from a performed one.
    print(f"billion laughs refused in {result['s'] * 1000:.1f} ms")
    assert result["peak"] < 5 * 1024 * 1024  # bytes allocated at the peak, while refusing it


def _write_phrase_dir(tmp_path: Path, bad_file: str, text: str | bytes) -> Path:
    lib = tmp_path / "scripts_lib"
    lib.mkdir()
    for name in ("phrases.yaml", "forbidden.yaml"):
        shutil.copy(REPO / "scripts_lib" / name, lib / name)
    target = lib / bad_file
    if isinstance(text, bytes):
        target.write_bytes(text)
    else:
        target.write_text(text, encoding="utf-8")
    return target


def _load_through(entry: str, tmp_path: Path, text: str | bytes) -> tuple[Path, Callable[[], Any]]:
    """Write `text` where `entry` reads it; return the file and the call that loads it."""
    if entry in ("phrases", "forbidden"):
        path = _write_phrase_dir(tmp_path, f"{entry}.yaml", text)
        load = load_phrase_library if entry == "phrases" else load_forbidden
        return path, lambda: load(path.parent)
    path = tmp_path / f"{entry}.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    if entry == "rules":
        return path, lambda: load_rules(path)
    if entry == "flow":
        return path, lambda: load_flow_file(path, FlowRefs(phrases=()))
    if entry == "flow_scan":  # check-phrases and start-up scan every flow file for phrases
        (tmp_path / "flows").mkdir()
        flow = path.rename(tmp_path / "flows" / "main_menu.yaml")
        return flow, lambda: check_forbidden_everywhere(REPO / "scripts_lib", flow.parent)
    return path, lambda: load_settings(path)


ENTRY_POINTS = ["rules", "flow", "flow_scan", "phrases", "forbidden", "settings"]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_yaml_entry_point_refuses_an_alias_bomb(entry: str, tmp_path: Path) -> None:
    path, load = _load_through(entry, tmp_path, BOMB)
    with pytest.raises(ConfigError) as info:
        load()
    assert re.match(re.escape(str(path)) + BOMB_ERROR, info.value.message)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_yaml_entry_point_refuses_non_utf8_text(entry: str, tmp_path: Path) -> None:
    path, load = _load_through(entry, tmp_path, GBK)
    with pytest.raises(ConfigError) as info:
        load()
    assert info.value.message == f"{path}: {GBK_ERROR}"


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("a: &x [*x]\n", 8),  # a list holding itself
        ("a: &x {b: *x}\n", 11),  # a mapping holding itself
        ("a: &x {<<: *x}\n", 12),  # a merge key merging its own mapping
        ("a: &x\n  b:\n    - c: *x\n", 10),  # deeper inside, block style
    ],
)
def test_recursive_alias_is_refused_with_its_position(text: str, column: int) -> None:
    line = text.count("\n", 0, text.index("*x")) + 1
    with pytest.raises(
        ConfigError, match=rf"^r\.yaml:{line}:{column}: recursive alias \*x: it is inside"
    ):
        validate_yaml(Outer, parse_yaml(text, "r.yaml"), "r.yaml")


def test_merge_keys_and_a_few_aliases_stay_allowed() -> None:
    text = (
        "defaults: &q {max_wait_s: 120, wrap_up_s: 10}\n"
        "billing: {<<: *q, max_wait_s: 60}\n"
        "tech: *q\n"
    )
    assert to_plain(parse_yaml(text, "r.yaml")) == {
        "defaults": {"max_wait_s": 120, "wrap_up_s": 10},
        "billing": {"max_wait_s": 60, "wrap_up_s": 10},
        "tech": {"max_wait_s": 120, "wrap_up_s": 10},
    }


def test_too_many_aliases_are_refused() -> None:
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n"
    with pytest.raises(ConfigError, match=rf"^r\.yaml:2:\d+: more than {MAX_ALIASES} aliases"):
        parse_yaml(text, "r.yaml")
    parse_yaml("a: &a 1\nb: [" + ", ".join(["*a"] * MAX_ALIASES) + "]\n", "r.yaml")


def test_absurd_nesting_is_refused_before_it_exhausts_the_stack() -> None:
    text = "a: " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(ConfigError, match=r"^r\.yaml:1:\d+: nested more than 100 levels deep"):
        parse_yaml(text, "r.yaml")


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "routing.yaml"
    big.write_text("# " + "x" * MAX_CONFIG_BYTES + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"too large for a config file \(over 2 MB\)"):
        load_yaml(big)


def test_binary_file_is_not_utf8(tmp_path: Path) -> None:
    png = tmp_path / "routing.yaml"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(ConfigError) as info:
        load_yaml(png)
    assert info.value.message == f"{png}: not UTF-8 text (byte 0x89 at offset 0); save it as UTF-8"


def test_nul_byte_marks_a_binary_file(tmp_path: Path) -> None:
    f = tmp_path / "routing.yaml"
    f.write_bytes(b"a: 1\x00\n")
    with pytest.raises(ConfigError, match=r"not a text file \(NUL byte at offset 4\)"):
        load_yaml(f)


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    f = tmp_path / "cti.yaml"
    f.write_bytes("\ufeffname: 示例\n".encode())
    assert to_plain(load_yaml(f)) == {"name": "示例"}


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r": is a directory, not a file$"):
        load_yaml(tmp_path)


def test_empty_file_is_one_line_not_one_per_missing_key(tmp_path: Path) -> None:
    f = tmp_path / "routing.yaml"
    f.write_text("# nothing yet\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_rules(f)
    assert info.value.message == f"{f}:1:1: no content (the file is empty or only comments)"
