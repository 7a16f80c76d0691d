"""The phrase library: word-for-word standard phrases, slots, and the forbidden-phrase check."""

from __future__ import annotations

import functools
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cti.cli import app
from cti.domain.forbidden import ForbiddenList, ForbiddenPhrase
from cti.domain.phrases import PhraseError
from cti.features.phrases.library import check_forbidden_everywhere, load_phrase_library
from cti.platform.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
LIB = load_phrase_library(REPO / "scripts_lib")

# The repository's rendering of the training manual's table: one section per row, opened by
# an anchor line such as <a id="row-4"></a>; its phrases in tables whose rows read
# | step | `phrase_id` | 中文 | English |.
DOCS = REPO / "docs" / "phrases.md"
ROWS = ("1", "2", "3", "4", "5a", "5b", "6a", "6b", "7", "8", "9")
_ANCHOR = re.compile(r'^<a id="([^"]+)"></a>$')
_PHRASE = re.compile(r"^\|[^|]*\|\s*`([a-z][a-z0-9_]*)`\s*\|([^|]*)\|([^|]*)\|")
STANDARD_ROW = re.compile(r"^standard \(row (\w+)\)$")


@dataclass(frozen=True)
class DocumentedPhrase:
    section: str  # the anchor of its row, e.g. "row-4"
    zh: str
    en: str


@dataclass(frozen=True)
class PhrasesPage:
    phrases: dict[str, DocumentedPhrase]
    sections: dict[str, str]  # row anchor -> the section's text


@functools.cache
def phrases_page() -> PhrasesPage:
    assert DOCS.is_file(), f"{DOCS} is missing: it is the reference the phrase library follows"
    phrases: dict[str, DocumentedPhrase] = {}
    sections: dict[str, str] = {}
    section: str | None = None
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        anchor = _ANCHOR.match(line.strip())
        if anchor:  # a row's section runs to the next anchor of any kind
            section = anchor.group(1) if anchor.group(1).startswith("row-") else None
            if section is not None:
                sections[section] = ""
            continue
        if section is None:
            continue
        sections[section] += line + "\n"
        found = _PHRASE.match(line)
        if found:
            pid, zh, en = found.group(1), found.group(2).strip(), found.group(3).strip()
            assert pid not in phrases, f"{DOCS}: {pid} appears twice"
            phrases[pid] = DocumentedPhrase(section, zh, en)
    return PhrasesPage(phrases, sections)


def section_of(row: str) -> str:
    """The page's section for a library row: "4a" is step (a) of row 4; "5a" has its own."""
    sections = phrases_page().sections
    return f"row-{row}" if f"row-{row}" in sections else f"row-{row.rstrip('abc')}"


STANDARD_IDS = sorted(p.id for p in LIB.phrases.values() if p.row)


def test_the_docs_page_has_a_section_per_row_of_the_manual() -> None:
    assert sorted(phrases_page().sections) == sorted(f"row-{r}" for r in ROWS)


@pytest.mark.parametrize("phrase_id", STANDARD_IDS)
def test_standard_phrase_is_word_for_word_from_the_docs_table(phrase_id: str) -> None:
    phrase = LIB.phrases[phrase_id]
    documented = phrases_page().phrases.get(phrase_id)
    assert documented is not None, f"{phrase_id} (row {phrase.row}) is not in {DOCS}"
    assert documented.section == section_of(str(phrase.row))
    zh = phrase.text["zh"]
    if phrase_id == "greeting_by_name":  # the manual writes the title as 先生/小姐
        zh = zh.replace("{surname}{title}", "{surname}先生/小姐")
    assert zh == documented.zh
    assert phrase.text["en"] == documented.en


def test_the_docs_table_names_no_phrase_the_library_lacks() -> None:
    assert sorted(phrases_page().phrases) == STANDARD_IDS


def test_the_manuals_never_say_list_is_in_the_docs_under_its_row() -> None:
    standard = [
        (phrase, STANDARD_ROW.match(phrase.origin))
        for phrase in LIB.forbidden.phrases if phrase.origin != "custom"
    ]
    assert standard
    for phrase, row in standard:
        assert row is not None, phrase.origin
        text = phrases_page().sections[section_of(row.group(1))]
        assert ForbiddenList([phrase]).find(text) is not None, (phrase.text, row.group(1))


@pytest.mark.parametrize(
    ("phrase_id", "zh"),
    [
        ("silent_call_first", "您好!请问有什么可以帮助您?"),
        ("silent_call_second", "您好,请问有什么可以帮助您?"),
        ("silent_call_goodbye", "对不起,您的电话没有声音,请您换一部电话再次打来,好吗?再见!"),
        ("hands_free_pick_up", "对不起,您的声音太小,请您拿起话筒说话好吗?"),
        ("quiet_speak_louder", "对不起!请您大声一点,好吗?"),
        ("quiet_change_phone", "对不起!您的电话声音太小,请您换一部电话打来,好吗?"),
        ("please_hold", "请稍等"),
        ("noisy_goodbye", "对不起,您的电话杂音太大,听不清,请您换一部电话再次打来好吗?再见!"),
        ("dialect_ask_mandarin", "对不起,请您讲普通话,好吗?谢谢!"),
        ("dialect_ask_other_person", "对不起,请您找一个可以讲普通话的人来,好吗?谢谢!"),
        ("greeting_reply", "您好,请问有什么可以帮助您?"),
    ],
)
def test_procedure_phrases_have_the_manuals_exact_text(phrase_id: str, zh: str) -> None:
    assert LIB.fill(phrase_id, "zh") == zh


def test_every_phrase_has_chinese_and_english() -> None:
    for phrase in LIB.phrases.values():
        assert phrase.text["zh"], phrase.id
        assert phrase.text["en"], phrase.id


def test_greeting_is_filled_with_company_and_agent_id() -> None:
    text = LIB.fill("greeting_answer", "zh", {"company": "示例科技", "agent_id": "007"})
    assert text == (
        "您好,欢迎致电示例科技客户服务热线,客服代表007很高兴为您服务,请问有什么可以帮助您!"
    )


def test_surname_and_title_address_the_caller() -> None:
    assert LIB.fill("greeting_by_name", "zh", {"surname": "王", "title": "先生"}) == (
        "王先生,请问有什么可以帮助您?"
    )
    assert LIB.fill("greeting_by_name", "en", {"surname": "Wang", "title": "Mr."}) == (
        "Mr. Wang, how may I help you?"
    )


def test_missing_slot_is_refused_by_name() -> None:
    with pytest.raises(PhraseError, match="needs slot\\(s\\) agent_id"):
        LIB.fill("greeting_answer", "zh", {"company": "示例科技"})


def test_a_slot_value_cannot_smuggle_a_forbidden_phrase() -> None:
    with pytest.raises(PhraseError, match="forbidden phrase '慢慢等着吧'"):
        LIB.fill("greeting_answer", "zh", {"company": "慢慢等着吧", "agent_id": "1"})


def test_templated_phrase_is_assembled_from_parts_and_digits() -> None:
    files = LIB.media_files("greeting_answer", "zh", {"company": "ACME", "agent_id": "07"})
    assert files == [
        "greeting_answer__zh__p0", "slot_company__zh__acme", "greeting_answer__zh__p2",
        "char__zh__0", "char__zh__7", "greeting_answer__zh__p4",
    ]
    assert LIB.media_files("please_hold", "en") == ["please_hold__en"]
    planned = {item.file for item in LIB.render_plan({"company": {"zh": ["ACME"]}})}
    assert set(files) <= planned


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        ("喂,大声一点儿!", "喂,大声一点儿!"),
        ("喂 ， 大声一点儿！", "喂,大声一点儿!"),
        ("请你喂大声一点儿", "喂,大声一点儿!"),
        ("HEY LOUDER", "Hey, louder!"),
        ("hey... louder", "Hey, louder!"),
        ("they louder", None),
        ("慢慢 等着吧", "慢慢等着吧"),
        ("听不见就算了", "听不见就算了"),
        ("If you can’t hear, forget it.", "If you can't hear, forget it"),
        ("对不起!请您大声一点,好吗?", None),
        ("请稍等", None),
    ],
)
def test_forbidden_phrases_are_found_despite_spacing_case_and_punctuation(
    text: str, hit: str | None
) -> None:
    found = LIB.forbidden.find(text)
    assert (found.text if found else None) == hit


def test_no_library_phrase_is_forbidden() -> None:
    for phrase in LIB.phrases.values():
        for text in phrase.text.values():
            assert LIB.forbidden.find(text) is None, phrase.id


def test_the_repository_passes_the_forbidden_check() -> None:
    assert check_forbidden_everywhere(REPO / "scripts_lib", REPO / "ivr_flows") == []


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "scripts_lib", tmp_path / "scripts_lib",
                    ignore=shutil.ignore_patterns("rendered"))
    shutil.copytree(REPO / "ivr_flows", tmp_path / "ivr_flows")
    return tmp_path


def plant(path: Path, after: str, line: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    index = next(i for i, text in enumerate(lines) if after in text) + 1
    lines.insert(index, line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return index + 1


def test_planted_forbidden_phrase_in_the_library_fails_with_file_line_and_phrase(
    repo_copy: Path,
) -> None:
    phrases = repo_copy / "scripts_lib" / "phrases.yaml"
    text = phrases.read_text(encoding="utf-8")
    text = text.replace('en: "Please hold."', 'en: "Please hold. 慢慢等着吧"')
    phrases.write_text(text, encoding="utf-8")
    line = 1 + text.splitlines().index('    en: "Please hold. 慢慢等着吧"')
    with pytest.raises(ConfigError) as info:
        load_phrase_library(repo_copy / "scripts_lib")
    assert f"{phrases}:{line}: forbidden phrase '慢慢等着吧'" in info.value.message


def test_check_phrases_command_fails_on_a_planted_phrase(repo_copy: Path) -> None:
    flow = repo_copy / "ivr_flows" / "agent_greeting.yaml"
    line = plant(flow, "name: agent_greeting", "# 喂, 大声一点儿!")
    result = CliRunner().invoke(
        app, ["check-phrases", "--phrases-dir", str(repo_copy / "scripts_lib"),
              "--flows-dir", str(repo_copy / "ivr_flows")],
    )
    assert result.exit_code == 1
    assert f"{flow}:{line}: forbidden phrase '喂,大声一点儿!'" in result.output


def test_check_phrases_command_passes_on_the_repository() -> None:
    result = CliRunner().invoke(
        app, ["check-phrases", "--phrases-dir", str(REPO / "scripts_lib"),
              "--flows-dir", str(REPO / "ivr_flows")],
    )
    assert result.exit_code == 0, result.output
    assert "no forbidden phrase" in result.output


def test_administrator_can_extend_the_forbidden_list(repo_copy: Path) -> None:
    forbidden = repo_copy / "scripts_lib" / "forbidden.yaml"
    forbidden.write_text(
        forbidden.read_text(encoding="utf-8").replace("custom: []", "custom:\n  - 请稍等"),
        encoding="utf-8",
    )
    violations = check_forbidden_everywhere(repo_copy / "scripts_lib", repo_copy / "ivr_flows")
    assert any(v.phrase == "请稍等" for v in violations)


def test_forbidden_list_rejects_an_empty_phrase() -> None:
    with pytest.raises(ValueError, match="no letters"):
        ForbiddenList([ForbiddenPhrase("!!", "custom")])


def test_service_start_up_check_raises_with_file_line_and_phrase(repo_copy: Path) -> None:
    from cti.features.phrases.library import require_no_forbidden

    flow = repo_copy / "ivr_flows" / "main_menu.yaml"
    line = plant(flow, "name: main_menu", "# Hey, louder!")
    with pytest.raises(ConfigError) as info:
        require_no_forbidden(repo_copy / "scripts_lib", repo_copy / "ivr_flows")
    assert f"{flow}:{line}: forbidden phrase 'Hey, louder!'" in info.value.message
