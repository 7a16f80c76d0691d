"""The pure CRM core: number normalisation, the suggested greeting, CSV rows, external mapping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.domain.crm import (
    GREETING_KNOWN_CALLER,
    GREETING_STANDARD,
    Customer,
    CustomerPatch,
    InvalidPhoneNumber,
    RowError,
    Title,
    apply_patch,
    check_header,
    customer_from_external,
    customer_from_row,
    lookup_key,
    merge_customers,
    normalise_number,
    number_variants,
    suggest_greeting,
)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+49305551", "CN", "+49305551"),
        ("+49 30 5551", "CN", "+49305551"),
        ("0049 30 5551", "CN", "+49305551"),
        ("030 5551", "DE", "+49305551"),
        ("13800138000", "CN", "+8613800138000"),
        ("138-0013-8000", "CN", "+8613800138000"),
        ("+86 138 0013 8000", "DE", "+8613800138000"),
        ("010-12345678", "CN", "+861012345678"),
    ],
)
def test_numbers_normalise_to_e164(raw: str, region: str, expected: str) -> None:
    assert normalise_number(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("", "empty"), ("   ", "empty"), ("abc", "not a phone number"), ("1001", "not a possible")],
)
def test_bad_numbers_raise_with_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidPhoneNumber, match=reason):
        normalise_number(raw, "CN")


@pytest.mark.parametrize("raw", ["anonymous", "", "1001", "sipp"])
def test_lookup_key_is_none_for_caller_ids_that_are_not_numbers(raw: str) -> None:
    assert lookup_key(raw) is None


# Mainland mobile ranges (179 is unallocated: phonenumbers rightly calls it impossible).
@given(st.from_regex(r"1(3[0-9]|5[0-9]|8[0-9]|9[0-8])[0-9]{8}", fullmatch=True))
def test_normalising_a_normalised_number_changes_nothing(national: str) -> None:
    once = normalise_number(national, "CN")
    assert normalise_number(once, "DE") == once
    assert once.startswith("+86")


VIP = Customer(id=1, numbers=("+49305551",), name="王伟", surname="王", title=Title.MR, tier="vip")


@pytest.mark.parametrize(
    ("customer", "language", "phrase", "text"),
    [
        (VIP, "zh", GREETING_KNOWN_CALLER, "王先生,请问有什么可以帮助您?"),
        (VIP, "en", GREETING_KNOWN_CALLER, "Mr 王, how may I help you?"),
        (
            Customer(id=2, numbers=("+1",), surname="李", title=Title.MS),
            "zh",
            GREETING_KNOWN_CALLER,
            "李小姐,请问有什么可以帮助您?",
        ),
        (
            None,
            "zh",
            GREETING_STANDARD,
            "您好,欢迎致电示例科技客户服务热线,客服代表1001很高兴为您服务,请问有什么可以帮助您!",
        ),
        (  # surname without title: we cannot guess 先生/小姐, so the standard greeting
            Customer(id=3, numbers=("+1",), surname="张"),
            "zh",
            GREETING_STANDARD,
            "您好,欢迎致电示例科技客户服务热线,客服代表1001很高兴为您服务,请问有什么可以帮助您!",
        ),
        (
            Customer(id=4, numbers=("+1",), title=Title.MR),
            "en",
            GREETING_STANDARD,
            "Hello, welcome to the 示例科技 customer service hotline, agent 1001 is glad to serve "
            "you, how may I help you?",
        ),
    ],
)
def test_greeting_uses_surname_and_title_when_known_else_agent_id(
    customer: Customer | None, language: str, phrase: str, text: str
) -> None:
    greeting = suggest_greeting(customer, agent_id="1001", company="示例科技", language=language)
    assert (greeting.phrase_id, greeting.text) == (phrase, text)


def test_known_caller_greeting_gives_the_address_for_the_rest_of_the_call() -> None:
    assert suggest_greeting(VIP, agent_id="1", company="x").address_as == "王先生"
    assert suggest_greeting(None, agent_id="1", company="x").address_as is None


@pytest.mark.parametrize(
    ("raw", "title"),
    [("mr", Title.MR), ("Mr.", Title.MR), ("先生", Title.MR), ("小姐", Title.MS),
     ("Mrs", Title.MS)],
)
def test_titles_parse_in_both_languages(raw: str, title: Title) -> None:
    assert Title.parse(raw) is title


def test_unknown_title_is_rejected_with_the_choices() -> None:
    with pytest.raises(ValueError, match="expected one of"):
        Title.parse("dr")


@pytest.mark.parametrize(
    ("header", "problems"),
    [
        (["numbers", "name"], []),
        (["Numbers", " surname "], []),
        (["name"], ["missing column 'numbers'"]),
        (["numbers", "age"], ["unknown column 'age'"]),
        (["numbers", "name", "name"], ["duplicate column 'name'"]),
    ],
)
def test_csv_header_checks(header: list[str], problems: list[str]) -> None:
    found = check_header(header)
    assert len(found) == len(problems)
    for got, want in zip(found, problems, strict=True):
        assert got.startswith(want)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"numbers": ""}, "numbers: at least one phone number is required"),
        ({"numbers": "abc"}, "numbers: not a phone number"),
        ({"numbers": "+49305551;12"}, "numbers: not a possible phone number"),
        ({"numbers": "+49305551", "title": "dr"}, "title: unknown title"),
        ({"numbers": "+49305551", "name": "x" * 200}, "name: longer than 128"),
        ({"numbers": "+49305551", "tier": "v i p"}, "tier:"),
    ],
)
def test_bad_rows_are_rejected_with_line_and_reason(row: dict[str, str], reason: str) -> None:
    result = customer_from_row(row, 7)
    assert isinstance(result, RowError)
    assert result.line == 7
    assert result.reason.startswith(reason)
    assert str(result).startswith("line 7: ")


def test_surplus_cells_are_rejected() -> None:
    result = customer_from_row({"numbers": "+49305551", None: "extra"}, 3)  # type: ignore[dict-item]
    assert result == RowError(3, "more cells than columns")


def test_good_row_becomes_a_customer_with_normalised_unique_numbers() -> None:
    result = customer_from_row(
        {
            "numbers": "13800138000; +86 138 0013 8000 | 0049 30 5551",
            "name": " 王伟 ",
            "surname": "王",
            "title": "先生",
            "tier": "VIP",
            "company": "ACME",
            "notes": "prefers mornings",
        },
        2,
        "CN",
    )
    assert result == Customer(
        id=None,
        numbers=("+8613800138000", "+49305551"),
        name="王伟",
        surname="王",
        title=Title.MR,
        tier="vip",
        company="ACME",
        notes="prefers mornings",
    )


MAPPING = {"name": "contact.fullName", "surname": "contact.last", "tier": "segment",
           "title": "contact.salutation", "notes": "tickets.0.subject"}


def test_external_payload_is_mapped_by_dotted_paths() -> None:
    payload = {
        "contact": {"fullName": "Anna Schmidt", "last": "Schmidt", "salutation": "Ms"},
        "segment": "Gold",
        "tickets": [{"subject": "router broken"}],
    }
    c = customer_from_external(payload, MAPPING, "+49305551")
    assert c is not None
    assert (c.name, c.surname, c.title, c.tier, c.notes, c.source) == (
        "Anna Schmidt", "Schmidt", Title.MS, "gold", "router broken", "external")


@pytest.mark.parametrize("payload", [{}, [], None, {"contact": {}}, {"segment": "  "}])
def test_external_payload_without_mapped_values_is_no_customer(payload: object) -> None:
    assert customer_from_external(payload, MAPPING, "+49305551") is None


def test_external_unknown_title_is_dropped_not_fatal() -> None:
    c = customer_from_external({"contact": {"last": "Li", "salutation": "Dr"}}, MAPPING, "+1")
    assert c is not None
    assert c.title is None


def test_merge_prefers_external_values_and_keeps_local_id() -> None:
    local = Customer(id=9, numbers=("+49305551",), name="W", surname="王", title=Title.MR,
                     tier="vip", notes="local note")
    external = Customer(id=None, numbers=("+49305551",), name="Wang Wei", tier="standard",
                        notes="ticket open", source="external")
    merged = merge_customers(local, external)
    assert merged is not None
    assert (merged.id, merged.name, merged.surname, merged.tier, merged.notes, merged.source) == (
        9, "Wang Wei", "王", "vip", "local note\nticket open", "merged")


@pytest.mark.parametrize(("local", "external"), [(VIP, None), (None, VIP), (None, None)])
def test_merge_with_one_side_missing_returns_the_other(
    local: Customer | None, external: Customer | None
) -> None:
    assert merge_customers(local, external) == (local or external)


def test_patch_changes_only_given_fields_and_can_clear_title() -> None:
    patched = apply_patch(VIP, CustomerPatch(notes="new", tier="Gold"))
    assert (patched.name, patched.notes, patched.tier, patched.title) == ("王伟", "new", "gold",
                                                                          Title.MR)
    assert apply_patch(VIP, CustomerPatch(clear_title=True)).title is None


@pytest.mark.parametrize(
    ("e164", "variants"),
    [
        ("+49305551", {"+49305551", "49305551", "0049305551", "0305551"}),
        ("+8613800138000", {"+8613800138000", "8613800138000", "13800138000"}),
    ],
)
def test_number_variants_cover_the_spellings_a_pbx_logs(e164: str, variants: set[str]) -> None:
    assert variants <= set(number_variants(e164))
    assert number_variants(e164)[0] == e164
