"""The knowledge base over HTTP: search (any user, from the agent page), articles (read: any
user; write: supervisors), knowledge gaps (record: any user; list and answer: supervisors)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from cti.features.auth.http import CurrentUser
from cti.features.knowledge.service import Found, KnowledgeBase
from cti.features.knowledge.storage import Article, Gap, NewArticle
from cti.platform.http_guards import IdPath, IsoTime, error_responses
from cti.platform.provide import provide

router = APIRouter(tags=["knowledge"], responses=error_responses(401, 403, 422))
Kb = Annotated[KnowledgeBase, Depends(provide(KnowledgeBase))]
Language = Literal["zh", "en"]
Tag = Annotated[str, Field(min_length=1, max_length=32)]


class ArticleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    language: Language
    title: str = Field(min_length=1, max_length=255)
    body: str = Field(min_length=1, max_length=20000)
    tags: list[Tag] = Field(default_factory=list, max_length=20)

    def new(self) -> NewArticle:
        return NewArticle(self.language, self.title.strip(), self.body, tuple(self.tags))


class ArticleOut(BaseModel):
    id: int
    language: str
    title: str
    body: str
    tags: list[str]
    created_at: IsoTime
    updated_at: IsoTime
    author: str
    gap_id: int | None

    @classmethod
    def of(cls, a: Article) -> ArticleOut:
        return cls(id=a.id, language=a.language, title=a.title, body=a.body, tags=list(a.tags),
                   created_at=a.created_at.isoformat(), updated_at=a.updated_at.isoformat(),
                   author=a.author, gap_id=a.gap_id)


class HitOut(BaseModel):
    id: int
    language: str
    title: str
    tags: list[str]
    snippet: str
    score: float

    @classmethod
    def of(cls, f: Found) -> HitOut:
        a = f.article
        return cls(id=a.id, language=a.language, title=a.title, tags=list(a.tags),
                   snippet=f.snippet, score=round(f.score, 3))


class GapIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=2, max_length=2000)
    language: Language = "zh"
    call_id: str | None = Field(default=None, min_length=1, max_length=128)


class AnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer: str = Field(min_length=1, max_length=20000)
    publish: ArticleIn | None = Field(default=None,
                                      description="also publish the answer as this article")


class GapOut(BaseModel):
    id: int
    question: str
    language: str
    asked_by: str
    agent_id: str | None
    call_id: str | None
    asked_at: IsoTime
    status: str
    answer: str
    answered_by: str | None
    answered_at: IsoTime | None
    article_id: int | None

    @classmethod
    def of(cls, g: Gap) -> GapOut:
        return cls(id=g.id, question=g.question, language=g.language, asked_by=g.asked_by,
                   agent_id=g.agent_id, call_id=g.call_id, asked_at=g.asked_at.isoformat(),
                   status=g.status, answer=g.answer, answered_by=g.answered_by,
                   answered_at=g.answered_at.isoformat() if g.answered_at else None,
                   article_id=g.article_id)


@router.get("/kb/search")
async def search(
    kb: Kb, _who: CurrentUser,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    language: Annotated[Language | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> list[HitOut]:
    """Articles having every term of `q` (Chinese: two characters find them inside words),
    the query as typed in the title first. 422 `invalid_query` for a query of one Chinese
    character or no letters."""
    return [HitOut.of(f) for f in await kb.search(q, language, limit)]


@router.get("/kb/articles/{article_id}", responses=error_responses(404))
async def get_article(article_id: IdPath, kb: Kb, _who: CurrentUser) -> ArticleOut:
    return ArticleOut.of(await kb.store.get(article_id))


@router.post("/kb/articles", status_code=201)
async def create_article(body: ArticleIn, kb: Kb, who: CurrentUser) -> ArticleOut:
    """Supervisors (duty managers)."""
    return ArticleOut.of(await kb.write(who, body.new()))


@router.put("/kb/articles/{article_id}", responses=error_responses(404))
async def replace_article(article_id: IdPath, body: ArticleIn, kb: Kb, who: CurrentUser
                          ) -> ArticleOut:
    return ArticleOut.of(await kb.write(who, body.new(), article_id))


@router.delete("/kb/articles/{article_id}", status_code=204, responses=error_responses(404))
async def delete_article(article_id: IdPath, kb: Kb, who: CurrentUser) -> None:
    await kb.delete(who, article_id)


@router.post("/kb/gaps", status_code=201)
async def record_gap(body: GapIn, kb: Kb, who: CurrentUser) -> GapOut:
    """A question the knowledge base did not answer: recorded and escalated to the duty
    manager."""
    return GapOut.of(await kb.record_gap(who, body.question, body.language, body.call_id))


@router.get("/kb/gaps")
async def list_gaps(
    kb: Kb, who: CurrentUser,
    status: Annotated[Literal["open", "answered"] | None, Query()] = "open",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[GapOut]:
    """Supervisors: the questions waiting for an answer (or all, or the answered ones)."""
    from cti.features.knowledge.service import _supervisor

    _supervisor(who)
    return [GapOut.of(g) for g in await kb.store.gaps(status, limit)]


@router.post("/kb/gaps/{gap_id}/answer", responses=error_responses(404, 409))
async def answer_gap(gap_id: IdPath, body: AnswerIn, kb: Kb, who: CurrentUser) -> GapOut:
    """Supervisors: the answer goes to the agent who asked; with `publish` it also becomes an
    article."""
    return GapOut.of(await kb.answer_gap(
        who, gap_id, body.answer, body.publish.new() if body.publish else None))
