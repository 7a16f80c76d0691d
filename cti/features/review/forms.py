"""Evaluation forms (config/evaluation_forms/*.yaml, one form a file): sections, questions,
weights, not-applicable, automatic fails (docs/quality_review.md).

Validated like the routing rules: pydantic with extra="forbid", then the cross-checks (ids unique
in a form and across the files); every error names file:line:col and the reason. A broken file
stops the start and fails `cti check-forms`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cti.domain.evaluation import Form, Question, Section
from cti.features.routing.rules.loader import _Errors
from cti.platform.errors import ConfigError, NotFound
from cti.platform.yaml_source import load_yaml, parse_yaml, validate_yaml

ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QuestionSpec(_Strict):
    id: str = Field(pattern=ID)
    text: str = Field(min_length=1, max_length=500)
    weight: float = Field(default=1.0, gt=0, le=1000)
    scale: int = Field(default=1, ge=1, le=10, description="1: yes/no; n: answers 0..n")
    na: bool = Field(default=False, description="not applicable allowed")
    auto_fail: bool = Field(default=False, description="answered 0: the evaluation scores 0")


class SectionSpec(_Strict):
    id: str = Field(pattern=ID)
    title: str = Field(min_length=1, max_length=200)
    weight: float = Field(gt=0, le=1000)
    questions: list[QuestionSpec] = Field(min_length=1, max_length=100)


class FormSpec(_Strict):
    id: str = Field(pattern=ID)
    version: int = Field(ge=1)
    title: str = Field(min_length=1, max_length=200)
    sections: list[SectionSpec] = Field(min_length=1, max_length=50)


class UnknownForm(NotFound):
    error_id = "unknown_form"


def parse_form(text: str, source: str = "<form>") -> Form:
    return _compile(parse_yaml(text, source), source)


def load_form(path: Path) -> Form:
    return _compile(load_yaml(path), str(path))


def _compile(tree: Any, source: str) -> Form:
    if tree is not None and not isinstance(tree, dict):
        raise ConfigError(f"{source}:1:1: expected a mapping at the top level")
    spec = validate_yaml(FormSpec, tree, source)
    errors = _Errors(tree, source)
    sections: set[str] = set()
    questions: set[str] = set()
    for i, s in enumerate(spec.sections):
        if s.id in sections:
            errors.add(["sections", i, "id"], f"duplicate section id {s.id!r}", value=True)
        sections.add(s.id)
        for j, q in enumerate(s.questions):
            if q.id in questions:
                errors.add(["sections", i, "questions", j, "id"],
                           f"duplicate question id {q.id!r} (ids are unique in a form)",
                           value=True)
            questions.add(q.id)
    errors.raise_if_any()
    return Form(spec.id, spec.version, spec.title, tuple(
        Section(s.id, s.title, s.weight, tuple(
            Question(q.id, q.text, q.weight, q.scale, q.na, q.auto_fail) for q in s.questions
        )) for s in spec.sections
    ))


def load_forms(directory: Path) -> dict[str, Form]:
    """Every `*.yaml` form in `directory`; ConfigError with every file's problems (a form id
    used by two files is one)."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such directory of evaluation forms")
    forms: dict[str, Form] = {}
    where: dict[str, Path] = {}
    problems: list[str] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            form = load_form(path)
        except ConfigError as exc:
            problems.append(exc.message)
            continue
        if form.id in forms:
            problems.append(f"{path}:1:1: form id {form.id!r} is also the id of {where[form.id]}")
            continue
        forms[form.id], where[form.id] = form, path
    if problems:
        raise ConfigError("\n".join(problems))
    if not forms:
        raise ConfigError(f"{directory}: no evaluation form (*.yaml) in it")
    return forms


def summarize(forms: dict[str, Form]) -> str:
    lines = []
    for f in forms.values():
        count = sum(len(s.questions) for s in f.sections)
        fails = [q.id for s in f.sections for q in s.questions if q.auto_fail]
        lines.append(f"{f.id} v{f.version} ({f.title}): {len(f.sections)} sections, {count} "
                     f"questions, automatic fail: {', '.join(fails) or 'none'}")
    return "\n".join(lines)


class EvaluationForms:
    """The forms the service scores with, loaded at start."""

    def __init__(self, directory: Path, forms: dict[str, Form] | None = None) -> None:
        self.directory = directory
        self.forms = forms if forms is not None else load_forms(directory)

    def get(self, form_id: str) -> Form:
        form = self.forms.get(form_id)
        if form is None:
            raise UnknownForm(
                f"no evaluation form {form_id!r} (known: {', '.join(sorted(self.forms))})")
        return form
