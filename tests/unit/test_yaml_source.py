from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from cti.platform.errors import ConfigError
from cti.platform.yaml_source import load_yaml, parse_yaml, validate_yaml


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
