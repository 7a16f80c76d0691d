"""The knowledge base's pure core: Chinese text becomes character bigrams (so two characters
find an article inside longer words), other text words; queries; weights; idf; re-ranking."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.domain.knowledge import (
    TITLE_WEIGHT,
    Hit,
    QueryError,
    idf,
    index_weights,
    query_terms,
    rarest_first,
    rerank,
    snippet,
    term_weights,
    terms,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("退款流程", ["退款", "款流", "流程"]),
    ("退", ["退"]),
    ("如何退款？请拨打4008", ["如何", "何退", "退款", "请拨", "拨打", "4008"]),
    ("Refund POLICY", ["refund", "policy"]),
    ("ＶＩＰ客户", ["vip", "客户"]),  # full-width letters fold to ASCII (NFKC)
    ("5G套餐 top-up", ["5g", "套餐", "top", "up"]),
    ("", []),
    ("  ,。!  ", []),
])
def test_terms(text: str, expected: list[str]) -> None:
    assert terms(text) == expected


@given(st.text(alphabet="退款流程申请订单号的是", min_size=2, max_size=30),
       st.integers(min_value=0, max_value=28))
def test_any_two_adjacent_characters_of_a_chinese_text_are_one_of_its_terms(
    text: str, at: int
) -> None:
    at = at % (len(text) - 1)
    assert text[at:at + 2] in terms(text)


def test_a_query_is_its_distinct_terms() -> None:
    assert query_terms("退款 退款 refund") == ["退款", "refund"]
    assert query_terms("A型血") == ["a", "型血"]


@pytest.mark.parametrize("query", ["", "   ", "？！", "退"])
def test_unsearchable_queries_say_why(query: str) -> None:
    with pytest.raises(QueryError):
        query_terms(query)


def test_title_and_tags_weigh_more_than_the_body_and_repeats_are_damped() -> None:
    w = index_weights("退款", "退款 " * 50 + "到账", ["账单"])
    assert w["到账"] == 1
    assert w["账单"] == 1 + int(4 * 1.584962500721156)  # one tag occurrence: TITLE_WEIGHT
    assert TITLE_WEIGHT == 3
    assert w["退款"] < 53  # 3 + 50 occurrences, damped
    assert w["退款"] > w["账单"]


def test_rarer_terms_weigh_more_and_never_negative() -> None:
    assert idf(1, 1000) > idf(100, 1000) > idf(1000, 1000) >= 0
    weights = term_weights(["退款", "流程"], {"退款": 5, "流程": 500}, 1000)
    assert weights["退款"] > weights["流程"]
    assert rarest_first(["流程", "退款", "缺失"], {"退款": 5, "流程": 500}) == [
        "缺失", "退款", "流程"]


def test_rerank_puts_the_query_as_typed_first_title_before_body() -> None:
    hits = [
        Hit(1, 9.0, "订单查询", "退 款 流 程"),
        Hit(2, 5.0, "常见问题", "申请退款流程如下"),
        Hit(3, 1.0, "退款流程说明", "..."),
        Hit(4, 9.0, "订单查询", "无关"),
    ]
    assert [h.article_id for h in rerank("退款流程", hits)] == [3, 2, 4, 1]


def test_snippet_is_cut_around_the_query() -> None:
    body = "开头" * 60 + "退款三天到账" + "结尾" * 60
    s = snippet(body, "退款", width=20)
    assert "退款" in s
    assert s.startswith("…")
    assert s.endswith("…")
    assert snippet("短文本", "退款") == "短文本"
