"""The knowledge base: agents search it during a call; supervisors (duty managers) write the
articles. A question it cannot answer is recorded as a knowledge gap and escalated to the duty
manager (`KnowledgeGapRecorded` on the bus: the supervisors' desk hears at once, and the duty
manager's e-mail follows through the messages feature); the manager's answer goes back to the
agent who asked (`KnowledgeGapAnswered`) and can be published as an article."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cti.domain.knowledge import QueryError, query_terms, rerank, snippet
from cti.events import Bus, KnowledgeGapAnswered, KnowledgeGapRecorded
from cti.features.auth.service import Principal, Role
from cti.features.knowledge.storage import Article, Gap, KnowledgeStore, NewArticle
from cti.platform.clock import Clock
from cti.platform.errors import Conflict, CtiError, Forbidden
from cti.platform.log import get_logger
from cti.platform.ports import Publisher

log = get_logger(__name__)

SUPERVISORS = "supervisors"


class InvalidQuery(CtiError):
    error_id = "invalid_query"
    http_status = 422


@dataclass(frozen=True, slots=True)
class Found:
    article: Article
    score: float
    snippet: str


class KnowledgeBase:
    def __init__(self, store: KnowledgeStore, bus: Bus, clock: Clock) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock

    async def search(self, query: str, language: str | None = None, limit: int = 10
                     ) -> list[Found]:
        try:
            found = query_terms(query)
        except QueryError as exc:
            raise InvalidQuery(str(exc)) from None
        pairs = await self.store.search(found, language)
        articles = {h.article_id: a for h, a in pairs}
        ranked = rerank(query, [h for h, _ in pairs])[:limit]
        return [Found(articles[h.article_id], h.score, snippet(h.body, query)) for h in ranked]

    async def write(self, who: Principal, article: NewArticle, article_id: int | None = None
                    ) -> Article:
        _supervisor(who)
        if article_id is None:
            return await self.store.add(article, who.username, self.clock.now())
        return await self.store.replace(article_id, article, self.clock.now())

    async def delete(self, who: Principal, article_id: int) -> None:
        _supervisor(who)
        await self.store.delete(article_id)

    async def record_gap(self, who: Principal, question: str, language: str,
                         call_id: str | None = None) -> Gap:
        gap = await self.store.add_gap(question, language, who.username, who.agent_id,
                                       call_id, self.clock.now())
        self.bus.publish(KnowledgeGapRecorded(gap.id, gap.asked_at, question, who.username,
                                              language, who.agent_id, call_id))
        log.info("knowledge.gap", gap_id=gap.id, by=who.username)
        return gap

    async def answer_gap(self, who: Principal, gap_id: int, answer: str,
                         publish: NewArticle | None = None) -> Gap:
        _supervisor(who)
        gap = await self.store.gap(gap_id)
        if gap.status != "open":
            raise Conflict(f"knowledge gap {gap_id} is already answered")
        article = None
        if publish is not None:
            article = await self.store.add(publish, who.username, self.clock.now(), gap_id)
        done = await self.store.answer_gap(gap_id, answer, who.username, self.clock.now(),
                                           article.id if article else None)
        self.bus.publish(KnowledgeGapAnswered(gap_id, self.clock.now(), who.username,
                                              gap.asked_by, gap.agent_id,
                                              article.id if article else None, answer))
        return done


def _supervisor(who: Principal) -> None:
    if not who.may(Role.SUPERVISOR):
        raise Forbidden("only supervisors (duty managers) write the knowledge base")


class GapNotifier:
    """Knowledge gaps on the desk: a new one to the supervisors' page, the answer to the agent
    who asked."""

    def __init__(self, bus: Bus, hub: Publisher) -> None:
        self.hub = hub
        bus.subscribe("knowledge.notify", self.on_event,
                      (KnowledgeGapRecorded, KnowledgeGapAnswered), everywhere=True)

    async def on_event(self, event: KnowledgeGapRecorded | KnowledgeGapAnswered) -> None:
        body: dict[str, Any] = {"type": "knowledge_gap", "gap_id": event.gap_id,
                                "at": event.at.isoformat()}
        if isinstance(event, KnowledgeGapRecorded):
            await self.hub.publish(SUPERVISORS, {**body, "event": "recorded",
                                                 "question": event.question,
                                                 "asked_by": event.asked_by,
                                                 "call_id": event.call_id})
        elif event.agent_id:
            await self.hub.publish(f"agent:{event.agent_id}", {
                **body, "event": "answered", "article_id": event.article_id,
                "answer": event.answer,
            })
