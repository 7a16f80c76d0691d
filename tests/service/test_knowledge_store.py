"""The knowledge base on SQLite and PostgreSQL: Chinese search finds two characters inside
words, all terms must match, the title ranks first, edits and deletions keep the index and the
term counts right; knowledge gaps are recorded, published and answered into an article."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from cti.events import KnowledgeGapAnswered, KnowledgeGapRecorded
from cti.features.auth.service import Principal, Role
from cti.features.knowledge.service import GapNotifier, InvalidQuery, KnowledgeBase
from cti.features.knowledge.storage import ALL, KnowledgeStore, NewArticle
from cti.platform.bus import InProcessBus
from cti.platform.clock import FakeClock
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.db.tables.knowledge import PostingRow, TermRow
from cti.platform.errors import Forbidden

AGENT = Principal(1, "agent1001", Role.AGENT, "1001", "Agent", "zh")
BOSS = Principal(2, "supervisor", Role.SUPERVISOR, None, "Duty", "zh")
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)

ARTICLES = [
    NewArticle("zh", "退款流程说明", "申请退款需要提供订单号,三个工作日内原路退回。", ("退款",)),
    NewArticle("zh", "宽带报修", "宽带无法上网时,请先重启光猫;仍不能上网请报修。", ("宽带",)),
    NewArticle("zh", "发票开具", "电子发票在订单完成后开具,可在个人中心下载。", ("发票",)),
    NewArticle("en", "Refund policy", "Refunds are paid back within three working days.",
               ("refund",)),
]


class Hub:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def publish(self, topic: str, message: Any) -> None:
        self.sent.append((topic, dict(message)))


@pytest.fixture
async def kb(database_url: str) -> AsyncIterator[tuple[KnowledgeBase, InProcessBus, Hub, Any]]:
    engine = make_engine(database_url)
    bus = InProcessBus()
    hub = Hub()
    GapNotifier(bus, hub)
    base = KnowledgeBase(KnowledgeStore(make_sessionmaker(engine)), bus, FakeClock(T0))
    for a in ARTICLES:
        await base.write(BOSS, a)
    yield base, bus, hub, engine
    await bus.aclose()
    await engine.dispose()


async def titles(kb: KnowledgeBase, q: str, language: str | None = None) -> list[str]:
    return [f.article.title for f in await kb.search(q, language)]


async def test_two_chinese_characters_find_the_article_inside_words(kb: Any) -> None:
    base = kb[0]
    assert await titles(base, "退款") == ["退款流程说明"]
    assert await titles(base, "上网") == ["宽带报修"]  # inside 无法上网 / 不能上网
    assert await titles(base, "光猫") == ["宽带报修"]
    assert await titles(base, "订单") == ["退款流程说明", "发票开具"] or await titles(
        base, "订单") == ["发票开具", "退款流程说明"]
    assert await titles(base, "refund") == ["Refund policy"]
    assert await titles(base, "REFUNDS") == ["Refund policy"]


async def test_every_term_must_match_and_unknown_terms_find_nothing(kb: Any) -> None:
    base = kb[0]
    assert await titles(base, "退款 发票") == []
    assert await titles(base, "订单号 退款") == ["退款流程说明"]
    assert await titles(base, "火箭") == []
    with pytest.raises(InvalidQuery):
        await base.search("退")


async def test_the_title_ranks_before_the_body(kb: Any) -> None:
    base = kb[0]
    await base.write(BOSS, NewArticle("zh", "订单查询", "如何查询订单状态"))
    found = await titles(base, "订单")
    assert found[0] == "订单查询"
    assert set(found) == {"订单查询", "退款流程说明", "发票开具"}
    assert await titles(base, "订单", language="en") == []


async def test_edits_and_deletions_keep_the_index_and_counts(kb: Any) -> None:
    base, _bus, _hub, engine = kb
    [hit] = await base.search("宽带")
    await base.write(BOSS, NewArticle("zh", "光纤报修", "光纤中断请报修"), hit.article.id)
    assert await titles(base, "宽带") == []
    assert await titles(base, "光纤") == ["光纤报修"]
    await base.delete(BOSS, hit.article.id)
    assert await titles(base, "光纤") == []
    async with make_sessionmaker(engine)() as s:
        counts = dict((await s.execute(select(TermRow.term, TermRow.articles))).all())
        postings = (await s.scalars(select(PostingRow.term).where(PostingRow.term == "光纤"))
                    ).all()
    assert counts[ALL] == 3
    assert counts.get("光纤", 0) == 0
    assert counts["退款"] == 1
    assert postings == []


async def test_agents_do_not_write_articles(kb: Any) -> None:
    with pytest.raises(Forbidden):
        await kb[0].write(AGENT, NewArticle("zh", "x", "y"))


async def test_a_gap_is_escalated_and_its_answer_becomes_an_article(kb: Any) -> None:
    base, bus, hub, _engine = kb
    seen: list[Any] = []

    async def record(e: Any) -> None:
        seen.append(e)

    bus.subscribe("test", record, (KnowledgeGapRecorded, KnowledgeGapAnswered))
    assert await titles(base, "积分兑换") == []
    gap = await base.record_gap(AGENT, "积分怎么兑换话费?", "zh", call_id="c-1")
    await bus.drain()
    assert isinstance(seen[0], KnowledgeGapRecorded)
    assert (seen[0].gap_id, seen[0].agent_id, seen[0].call_id) == (gap.id, "1001", "c-1")
    assert hub.sent[0][0] == "supervisors"
    assert hub.sent[0][1]["question"] == "积分怎么兑换话费?"
    with pytest.raises(Forbidden):
        await base.answer_gap(AGENT, gap.id, "x")
    done = await base.answer_gap(
        BOSS, gap.id, "在个人中心-积分商城兑换",
        NewArticle("zh", "积分兑换话费", "在个人中心-积分商城兑换话费。", ("积分",)))
    await bus.drain()
    assert done.status == "answered"
    assert done.article_id is not None
    assert await titles(base, "积分兑换") == ["积分兑换话费"]
    assert isinstance(seen[1], KnowledgeGapAnswered)
    assert hub.sent[1] == ("agent:1001", {
        "type": "knowledge_gap", "gap_id": gap.id, "at": T0.isoformat(), "event": "answered",
        "article_id": done.article_id, "answer": "在个人中心-积分商城兑换"})
    assert [g.id for g in await base.store.gaps("open")] == []
