"""Evaluation forms in YAML (cti.features.review.forms): the shipped form loads; a broken one
is refused with file:line:col and the reason, by the loader and by `cti check-forms`."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cti.cli import app
from cti.features.review.forms import load_forms, parse_form
from cti.platform.errors import ConfigError
from cti.platform.settings import Settings

GOOD = """\
id: short
version: 3
title: Short
sections:
  - id: a
    title: A
    weight: 1
    questions:
      - {id: q1, text: one, scale: 5, na: true}
      - {id: q2, text: two, auto_fail: true, weight: 2}
"""


def test_the_shipped_forms_load() -> None:
    forms = load_forms(Settings().evaluation_forms_dir)
    form = forms["standard_call"]
    assert form.version >= 1
    fails = [q.id for s in form.sections for q in s.questions if q.auto_fail]
    assert fails == ["no_forbidden_phrase", "no_direct_hangup"]


def test_a_form_compiles_with_its_defaults() -> None:
    form = parse_form(GOOD, "short.yaml")
    (section,) = form.sections
    q1, q2 = section.questions
    assert (q1.max, q1.na_allowed, q1.auto_fail, q1.weight) == (5, True, False, 1.0)
    assert (q2.max, q2.na_allowed, q2.auto_fail, q2.weight) == (1, False, True, 2.0)


@pytest.mark.parametrize(("text", "message"), [
    (GOOD.replace("weight: 1\n", "weight: 0\n"),
     "f.yaml:7:5: sections.0.weight: Input should be greater than 0"),
    (GOOD.replace("scale: 5", "scale: 11"),
     "f.yaml:9:29: sections.0.questions.0.scale: Input should be less than or equal to 10"),
    (GOOD.replace("na: true", "na: true, colour: red"),
     "f.yaml:9:49: sections.0.questions.0.colour: Extra inputs are not permitted"),
    (GOOD.replace("id: q2", "id: q1"),
     "f.yaml:10:14: sections.0.questions.1.id: duplicate question id 'q1'"),
    (GOOD.replace("version: 3\n", ""), "f.yaml:1:1: version: Field required"),
    (GOOD.replace("id: short", "id: Short Form"),
     "f.yaml:1:1: id: String should match pattern"),
    ("- a\n", "f.yaml:1:1: expected a mapping at the top level"),
    ("", "f.yaml:1:1: no content"),
    ("id: [\n", "f.yaml:2:1:"),
])
def test_a_broken_form_names_file_line_column_and_reason(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_form(text, "f.yaml")
    assert message in caught.value.message


def test_two_files_with_one_form_id_and_an_empty_directory_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(GOOD, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"b\.yaml:1:1: form id 'short' is also the id of"):
        load_forms(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no evaluation form"):
        load_forms(empty)
    with pytest.raises(ConfigError, match="no such directory"):
        load_forms(tmp_path / "missing")


def test_check_forms_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["check-forms", str(Settings().evaluation_forms_dir)])
    assert ok.exit_code == 0, ok.output
    assert "standard_call v1" in ok.output
    assert "automatic fail: no_forbidden_phrase, no_direct_hangup" in ok.output
    (tmp_path / "bad.yaml").write_text(GOOD.replace("weight: 1\n", "weight: -1\n"),
                                       encoding="utf-8")
    bad = runner.invoke(app, ["check-forms", str(tmp_path)])
    assert bad.exit_code == 1
    assert f"{tmp_path / 'bad.yaml'}:7:5: sections.0.weight" in bad.output
