"""Customer records (CRM), pure: the record model, phone-number normalisation, the greeting the
agent should say (docs/phrases.md#row-1, #row-3), CSV row validation and the external-CRM
field mapping.

No I/O here: the store, the external HTTP lookup and the CSV file reading live in adapters.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

import phonenumbers

DEFAULT_REGION = "CN"
MAX_NAME = 128
MAX_NOTES = 4000


class InvalidPhoneNumber(ValueError):
    """A string that is not a phone number we can store or look up; the message says why."""


class Title(StrEnum):
    """How the scripted phrases address a caller by surname (docs/phrases.md#row-3)."""

    MR = "mr"  # 先生
    MS = "ms"  # 小姐

    @classmethod
    def parse(cls, raw: str) -> Title:
        key = raw.strip().lower().rstrip(".")
        found = _TITLE_ALIASES.get(key)
        if found is None:
            raise ValueError(f"unknown title {raw!r} (expected one of: mr, ms, 先生, 小姐)")
        return found


_TITLE_ALIASES: dict[str, Title] = {
    "mr": Title.MR,
    "先生": Title.MR,
    "ms": Title.MS,
    "mrs": Title.MS,
    "miss": Title.MS,
    "小姐": Title.MS,
    "女士": Title.MS,
}

_TITLE_WORDS: dict[str, dict[Title, str]] = {
    "zh": {Title.MR: "先生", Title.MS: "小姐"},
    "en": {Title.MR: "Mr", Title.MS: "Ms"},
}


def normalise_number(raw: str, default_region: str = DEFAULT_REGION) -> str:
    """E.164 form of a phone number (`+8613800138000`); raise InvalidPhoneNumber with the reason.

    A national number without `+` is read in `default_region`. Numbers must be possible numbers
    (right length for their country); we do not demand `is_valid_number` because private and new
    ranges are often unknown to the metadata and a CRM must still store them.
    """
    text = raw.strip()
    if not text:
        raise InvalidPhoneNumber("empty phone number")
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        parsed = phonenumbers.parse(text, None if text.startswith("+") else default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(f"not a phone number: {raw!r} ({exc._msg})") from None
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidPhoneNumber(f"not a possible phone number: {raw!r}")
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def lookup_key(raw: str, default_region: str = DEFAULT_REGION) -> str | None:
    """The key to look a caller up by: E.164 when the caller id is a phone number, else None.

    Caller ids from the PBX may be anything ("anonymous", an extension "1001"); those never match
    a stored customer and must not raise in the call path.
    """
    try:
        return normalise_number(raw, default_region)
    except InvalidPhoneNumber:
        return None


def number_variants(e164: str) -> tuple[str, ...]:
    """The spellings a PBX may log for one number (`+49305551`, `49305551`, `0049305551`,
    national `0305551`), so the call log can be searched without normalising every row."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return (e164,)
    digits = e164.lstrip("+")
    national = str(
        phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    )
    national_digits = "".join(ch for ch in national if ch.isdigit())
    out = [e164, digits, "00" + digits, national_digits]
    return tuple(dict.fromkeys(v for v in out if v))


@dataclass(frozen=True, slots=True)
class Customer:
    """One customer as the agent desk shows it. `numbers` are E.164, the first is the main one."""

    id: int | None
    numbers: tuple[str, ...]
    name: str = ""
    surname: str = ""
    title: Title | None = None
    tier: str = "standard"
    company: str = ""
    notes: str = ""
    source: str = "local"  # "local" | "external" | "merged"

    @property
    def is_vip(self) -> bool:
        return self.tier.lower() == "vip"


@dataclass(frozen=True, slots=True)
class CallSummary:
    """One past call of a customer, for the pop's history list."""

    call_id: str
    at: datetime
    outcome: str
    agent_id: str | None = None
    queue: str | None = None


@dataclass(frozen=True, slots=True)
class Greeting:
    """The script line suggested to the agent: the phrase id (scripts_lib) and its rendered text."""

    phrase_id: str
    text: str
    address_as: str | None = None  # "王先生": to be used for the rest of the call (row 3)


# Phrase ids of the phrase library (scripts_lib/) for the two greetings.
GREETING_STANDARD = "greeting.answer"
GREETING_KNOWN_CALLER = "greeting.known_caller"

_GREETING_TEXT: dict[str, dict[str, str]] = {
    "zh": {
        GREETING_STANDARD: (
            "您好,欢迎致电{company}客户服务热线,客服代表{agent_id}很高兴为您服务,请问有什么可以帮助您!"
        ),
        GREETING_KNOWN_CALLER: "{address},请问有什么可以帮助您?",
    },
    "en": {
        GREETING_STANDARD: (
            "Hello, welcome to the {company} customer service hotline, agent {agent_id} is glad "
            "to serve you, how may I help you?"
        ),
        GREETING_KNOWN_CALLER: "{address}, how may I help you?",
    },
}


def address_form(surname: str, title: Title, language: str = "zh") -> str:
    """`王先生` in Chinese, `Mr Wang` in English."""
    words = _TITLE_WORDS.get(language, _TITLE_WORDS["zh"])
    if language == "en":
        return f"{words[title]} {surname}"
    return f"{surname}{words[title]}"


def suggest_greeting(
    customer: Customer | None, *, agent_id: str, company: str, language: str = "zh"
) -> Greeting:
    """Row 3 (surname + title) when the CRM knows both, else row 1 with the agent's id."""
    texts = _GREETING_TEXT.get(language, _GREETING_TEXT["zh"])
    if customer is not None and customer.surname.strip() and customer.title is not None:
        address = address_form(customer.surname.strip(), customer.title, language)
        return Greeting(
            GREETING_KNOWN_CALLER, texts[GREETING_KNOWN_CALLER].format(address=address), address
        )
    return Greeting(
        GREETING_STANDARD, texts[GREETING_STANDARD].format(company=company, agent_id=agent_id)
    )


# ----------------------------------------------------------------------------- CSV rows

CSV_COLUMNS = ("numbers", "name", "surname", "title", "tier", "company", "notes")
REQUIRED_COLUMNS = frozenset({"numbers"})


@dataclass(frozen=True, slots=True)
class RowError:
    """A rejected import row: its 1-based line number in the file and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


def check_header(header: Iterable[str]) -> list[str]:
    """Problems with a CSV header (missing required or unknown columns); empty when fine."""
    cols = [c.strip().lower() for c in header]
    problems = [f"missing column {c!r}" for c in sorted(REQUIRED_COLUMNS) if c not in cols]
    known = ", ".join(CSV_COLUMNS)
    problems += [f"unknown column {c!r} (known: {known})" for c in cols if c not in CSV_COLUMNS]
    dupes = sorted({c for c in cols if cols.count(c) > 1})
    problems += [f"duplicate column {c!r}" for c in dupes]
    return problems


def customer_from_row(
    row: Mapping[str, str | None], line: int, default_region: str = DEFAULT_REGION
) -> Customer | RowError:
    """Validate one CSV row (`numbers` separated by `;` or `|`) into a Customer or a RowError."""
    values = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
    if None in row:  # csv.DictReader puts surplus cells under the key None
        return RowError(line, "more cells than columns")
    raw_numbers = [n for n in _split_numbers(values.get("numbers", "")) if n]
    if not raw_numbers:
        return RowError(line, "numbers: at least one phone number is required")
    numbers: list[str] = []
    for raw in raw_numbers:
        try:
            num = normalise_number(raw, default_region)
        except InvalidPhoneNumber as exc:
            return RowError(line, f"numbers: {exc}")
        if num not in numbers:
            numbers.append(num)
    title: Title | None = None
    if values.get("title"):
        try:
            title = Title.parse(values["title"])
        except ValueError as exc:
            return RowError(line, f"title: {exc}")
    for col in ("name", "surname", "company"):
        if len(values.get(col, "")) > MAX_NAME:
            return RowError(line, f"{col}: longer than {MAX_NAME} characters")
    if len(values.get("notes", "")) > MAX_NOTES:
        return RowError(line, f"notes: longer than {MAX_NOTES} characters")
    tier = values.get("tier") or "standard"
    if not tier.replace("-", "").replace("_", "").isalnum():
        return RowError(line, f"tier: {tier!r} must be a word (letters, digits, - or _)")
    return Customer(
        id=None,
        numbers=tuple(numbers),
        name=values.get("name", ""),
        surname=values.get("surname", ""),
        title=title,
        tier=tier.lower(),
        company=values.get("company", ""),
        notes=values.get("notes", ""),
    )


def parse_customer_csv(
    lines: Iterable[str], default_region: str = DEFAULT_REGION
) -> Iterator[tuple[int, Customer | RowError]]:
    """Rows of a customer CSV (UTF-8 text lines, header first): (line number, Customer or
    RowError). A bad header yields one RowError for line 1 and nothing else."""
    reader = csv.DictReader(lines)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        yield 1, RowError(1, f"unreadable header: {exc}")
        return
    if not header:
        yield 1, RowError(1, "empty file: expected a header line with a 'numbers' column")
        return
    problems = check_header(header)
    if problems:
        yield 1, RowError(1, "; ".join(problems))
        return
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, RowError(reader.line_num, f"unreadable row: {exc}")
            continue
        if not any((v or "").strip() for k, v in row.items() if k is not None):
            continue  # blank line
        yield reader.line_num, customer_from_row(row, reader.line_num, default_region)


def _split_numbers(text: str) -> list[str]:
    return [p.strip() for p in text.replace("|", ";").split(";")]


# ----------------------------------------------------------------------------- external CRM

EXTERNAL_FIELDS = ("name", "surname", "title", "tier", "company", "notes")


def _dig(payload: Any, path: str) -> Any:
    node = payload
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def customer_from_external(
    payload: Any, mapping: Mapping[str, str], number: str
) -> Customer | None:
    """Map an external CRM's JSON answer onto a Customer using `mapping` (our field -> dotted path).

    Returns None when the answer names no one (no mapped field has a value). A title the external
    system spells in a way we do not know is dropped rather than failing the whole lookup.
    """
    found: dict[str, str] = {}
    for ours, path in mapping.items():
        if ours not in EXTERNAL_FIELDS:
            continue
        value = _dig(payload, path)
        if value is not None and str(value).strip():
            found[ours] = str(value).strip()
    if not found:
        return None
    title: Title | None = None
    if "title" in found:
        try:
            title = Title.parse(found["title"])
        except ValueError:
            title = None
    return Customer(
        id=None,
        numbers=(number,),
        name=found.get("name", ""),
        surname=found.get("surname", ""),
        title=title,
        tier=found.get("tier", "standard").lower(),
        company=found.get("company", ""),
        notes=found.get("notes", ""),
        source="external",
    )


def merge_customers(local: Customer | None, external: Customer | None) -> Customer | None:
    """The record to show: the external CRM is the system of record where it has a value;
    the local store fills the gaps (and keeps its id, so edits go to the local row)."""
    if external is None:
        return local
    if local is None:
        return external
    merged = replace(
        local,
        name=external.name or local.name,
        surname=external.surname or local.surname,
        title=external.title or local.title,
        tier=external.tier if external.tier != "standard" else local.tier,
        company=external.company or local.company,
        notes="\n".join(n for n in (local.notes, external.notes) if n),
        source="merged",
    )
    return merged


@dataclass(frozen=True, slots=True)
class CustomerPatch:
    """A partial update from the agent page; None means unchanged."""

    numbers: tuple[str, ...] | None = None
    name: str | None = None
    surname: str | None = None
    title: Title | None = None
    clear_title: bool = False
    tier: str | None = None
    company: str | None = None
    notes: str | None = None


def apply_patch(customer: Customer, patch: CustomerPatch) -> Customer:
    return replace(
        customer,
        numbers=patch.numbers if patch.numbers is not None else customer.numbers,
        name=patch.name if patch.name is not None else customer.name,
        surname=patch.surname if patch.surname is not None else customer.surname,
        title=None if patch.clear_title else (patch.title or customer.title),
        tier=patch.tier.lower() if patch.tier is not None else customer.tier,
        company=patch.company if patch.company is not None else customer.company,
        notes=patch.notes if patch.notes is not None else customer.notes,
    )
