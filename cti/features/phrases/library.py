"""Loading the phrase library (scripts_lib/) and the forbidden-phrase check over files.

`check_forbidden_everywhere` is what `cti check-phrases` and service start-up run: the phrase
library, every flow file and any extra prompt text, each hit reported as file:line and phrase.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from cti.domain.forbidden import ForbiddenList, ForbiddenPhrase, Violation
from cti.domain.phrases import SLOTS, Phrase, PhraseLibrary
from cti.platform.errors import ConfigError
from cti.platform.textfile import read_text_file
from cti.platform.yaml_source import load_yaml, parse_yaml, validate_yaml

PHRASES_FILE = "phrases.yaml"
FORBIDDEN_FILE = "forbidden.yaml"
PHRASE_ID = re.compile(r"^[a-z][a-z0-9_]*$")


class PhraseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    row: str | None = None
    situation: str = ""
    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)


class PhraseFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    languages: list[str] = Field(default_factory=lambda: ["zh", "en"])
    phrases: dict[str, PhraseSpec]
    slot_values: dict[str, dict[str, list[str]]] = Field(default_factory=dict)

    @field_validator("phrases")
    @classmethod
    def _ids(cls, value: dict[str, PhraseSpec]) -> dict[str, PhraseSpec]:
        bad = [k for k in value if not PHRASE_ID.match(k)]
        if bad:
            raise ValueError(f"phrase ids must match [a-z][a-z0-9_]*: {', '.join(bad)}")
        return value


class ForbiddenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    row: str | None = None


class ForbiddenFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    standard: list[ForbiddenEntry]
    custom: list[ForbiddenEntry | str] = Field(default_factory=list)


def load_forbidden(phrases_dir: Path) -> ForbiddenList:
    path = phrases_dir / FORBIDDEN_FILE
    spec = validate_yaml(ForbiddenFile, load_yaml(path), str(path))
    if not spec.standard:
        raise ConfigError(f"{path}:1:1: standard: the manual's never-say list cannot be empty")
    entries = [ForbiddenPhrase(e.text, f"standard (row {e.row})") for e in spec.standard]
    for item in spec.custom:
        text = item if isinstance(item, str) else item.text
        entries.append(ForbiddenPhrase(text, "custom"))
    return ForbiddenList(entries)


def load_phrase_library(phrases_dir: Path, forbidden: ForbiddenList | None = None) -> PhraseLibrary:
    """Load and validate phrases.yaml; raise ConfigError naming file:line:col and reason."""
    forbidden = forbidden or load_forbidden(phrases_dir)
    path = phrases_dir / PHRASES_FILE
    tree = load_yaml(path)
    spec = validate_yaml(PhraseFile, tree, str(path))
    errors = [v.message() for v in scan_yaml(path, forbidden, tree)]
    phrases: dict[str, Phrase] = {}
    for pid, p in spec.phrases.items():
        phrase = Phrase(pid, {"zh": p.zh, "en": p.en}, p.row, p.situation)
        for lang in spec.languages:
            if lang not in phrase.text:
                errors.append(f"{path}:{_line_of(tree, ['phrases', pid])}: {pid}: no {lang} text")
                continue
            try:
                unknown = [s for s in phrase.slots(lang) if s not in SLOTS]
            except ValueError as exc:
                where = _line_of(tree, ["phrases", pid, lang])
                errors.append(f"{path}:{where}: {pid}.{lang}: {exc}")
                continue
            if unknown:
                errors.append(
                    f"{path}:{_line_of(tree, ['phrases', pid, lang])}: {pid}.{lang}: unknown "
                    f"slot(s) {', '.join(unknown)} (allowed: {', '.join(SLOTS)})"
                )
        phrases[pid] = phrase
    if errors:
        raise ConfigError("\n".join(errors))
    return PhraseLibrary(phrases, spec.languages, forbidden, spec.slot_values)


def _line_of(tree: Any, keys: list[str]) -> str:
    node = tree
    where = "1:1"
    for key in keys:
        if isinstance(node, CommentedMap) and key in node:
            line, col = node.lc.key(key)
            where = f"{line + 1}:{col + 1}"
            node = node[key]
    return where


def _scalars(node: Any, line: int) -> Iterable[tuple[int, str]]:
    """Every string in a ruamel tree (keys and values) with its 1-based line."""
    if isinstance(node, CommentedMap):
        for key, value in node.items():
            kline = node.lc.key(key)[0] + 1
            if isinstance(key, str):
                yield kline, key
            vline = node.lc.value(key)[0] + 1 if isinstance(value, str) else kline
            yield from _scalars(value, vline)
    elif isinstance(node, CommentedSeq):
        for index, value in enumerate(node):
            yield from _scalars(value, node.lc.item(index)[0] + 1)
    elif isinstance(node, str):
        yield line, node


def scan_text(source: str, text: str, forbidden: ForbiddenList) -> list[Violation]:
    """Line by line (comments too): a forbidden phrase may not sit anywhere in the file."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        violation = forbidden.check(line, f"{source}:{number}")
        if violation:
            out.append(violation)
    return out


def scan_yaml(path: Path, forbidden: ForbiddenList, tree: Any = None) -> list[Violation]:
    """Lines plus parsed scalars (a folded multi-line string can hide a phrase across lines)."""
    text = read_text_file(path)  # not UTF-8, too large: one ConfigError naming the file
    found = scan_text(str(path), text, forbidden)
    seen = {(v.source, v.phrase) for v in found}
    if tree is None:
        # A file that does not parse cannot be said to be free of forbidden phrases (a folded
        # string may hide one), so its error is raised, not skipped.
        tree = parse_yaml(text, str(path))
    for line, value in _scalars(tree, 1):
        violation = forbidden.check(value, f"{path}:{line}")
        if violation and (violation.source, violation.phrase) not in seen:
            seen.add((violation.source, violation.phrase))
            found.append(violation)
    return found


def check_forbidden_everywhere(
    phrases_dir: Path,
    flows_dir: Path,
    extra_texts: Mapping[str, str] | None = None,
) -> list[Violation]:
    """Every forbidden phrase in the library, the flows, or extra prompt text (source -> text)."""
    forbidden = load_forbidden(phrases_dir)
    files = sorted(p for p in phrases_dir.rglob("*.yaml") if p.name != FORBIDDEN_FILE)
    if not flows_dir.is_dir():  # a mistyped --flows-dir must not pass as "nothing found"
        raise ConfigError(f"{flows_dir}: flows directory not found")
    files += sorted(flows_dir.rglob("*.yaml"))
    violations: list[Violation] = []
    for path in files:
        violations.extend(scan_yaml(path, forbidden))
    for source, text in (extra_texts or {}).items():
        violation = forbidden.check(text, source)
        if violation:
            violations.append(violation)
    return violations


def require_no_forbidden(
    phrases_dir: Path, flows_dir: Path, extra_texts: Mapping[str, str] | None = None
) -> None:
    """For service start-up: raise ConfigError listing every hit as "file:line: phrase"."""
    violations = check_forbidden_everywhere(phrases_dir, flows_dir, extra_texts)
    if violations:
        raise ConfigError("\n".join(v.message() for v in violations))
