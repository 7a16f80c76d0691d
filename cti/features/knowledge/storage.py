"""Articles, their search index and the knowledge gaps in the database (SQLite and PostgreSQL
alike: the index is our own table of terms, cti.domain.knowledge, not an engine's full-text
feature, so both rank the same).

Search: the query's terms' article counts are read first (a term no article has answers
nothing at once); then one grouped query over the terms' postings keeps the articles that have
all of them, scored by weight × idf, best first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from cti.domain.knowledge import Hit, index_weights, rarest_first, term_weights
from cti.platform.db.base import read_sessions
from cti.platform.db.tables.knowledge import ArticleRow, GapRow, PostingRow, TermRow
from cti.platform.errors import NotFound

ALL = "#articles"  # the kb_terms row counting every article ('#' is never in a term)
CANDIDATES = 50  # best-scored articles handed to the re-ranking


@dataclass(frozen=True, slots=True)
class Article:
    id: int
    language: str
    title: str
    body: str
    tags: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    author: str
    gap_id: int | None = None


@dataclass(frozen=True, slots=True)
class NewArticle:
    language: str
    title: str
    body: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Gap:
    id: int
    question: str
    language: str
    asked_by: str
    agent_id: str | None
    call_id: str | None
    asked_at: datetime
    status: str
    answer: str
    answered_by: str | None
    answered_at: datetime | None
    article_id: int | None


def _article(r: ArticleRow) -> Article:
    return Article(r.id, r.language, r.title, r.body, tuple(r.tags or ()), r.created_at,
                   r.updated_at, r.author, r.gap_id)


def _gap(r: GapRow) -> Gap:
    return Gap(r.id, r.question, r.language, r.asked_by, r.agent_id, r.call_id, r.asked_at,
               r.status, r.answer, r.answered_by, r.answered_at, r.article_id)


def _insert(session: AsyncSession) -> Any:
    assert session.bind is not None
    return postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert


async def _count_terms(session: AsyncSession, changes: Mapping[str, int]) -> None:
    """Add to each term's article count (negative: articles removed)."""
    items = sorted((t, n) for t, n in changes.items() if n)
    if not items:
        return
    insert = _insert(session)
    stmt = insert(TermRow).values([{"term": t, "articles": n} for t, n in items])
    await session.execute(stmt.on_conflict_do_update(
        index_elements=[TermRow.term], set_={"articles": TermRow.articles + stmt.excluded.articles}
    ))


def _best(terms: Sequence[str], weights: Mapping[str, float], limit: int) -> Any:
    """The best-scored articles having every term, as a subquery (id, score). Read from the
    rarest term's postings (first in `terms`), each other term looked up by its primary key
    (term, article): the work follows the rarest term, not the commonest. One term alone is
    read best weight first from (term, weight), so a common word costs `limit` rows."""
    first = aliased(PostingRow, name="p0")
    score: Any = first.weight * weights[terms[0]]
    query: Any = select(first.article_id.label("id")).where(first.term == terms[0])
    for i, term in enumerate(terms[1:], start=1):
        other = aliased(PostingRow, name=f"p{i}")
        query = query.join(other, (other.term == term) & (other.article_id == first.article_id))
        score = score + other.weight * weights[term]
    if len(terms) == 1:
        order = (first.weight.desc(), first.article_id.desc())
    else:
        order = (score.desc(), first.article_id.desc())
    return query.add_columns(score.label("score")).order_by(*order).limit(limit).subquery()


def postings_of(article_id: int, a: NewArticle) -> list[dict[str, Any]]:
    return [{"term": t, "article_id": article_id, "weight": w}
            for t, w in index_weights(a.title, a.body, a.tags).items()]


class KnowledgeStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.reads = read_sessions(sessions)  # docs/storage.md

    # ----- articles -----------------------------------------------------------------------

    async def add(self, article: NewArticle, author: str, now: datetime,
                  gap_id: int | None = None) -> Article:
        async with self.sessions.begin() as session:
            row = ArticleRow(language=article.language, title=article.title, body=article.body,
                             tags=list(article.tags), created_at=now, updated_at=now,
                             author=author, gap_id=gap_id)
            session.add(row)
            await session.flush()
            changes = await self._index(session, row.id, article)
            changes[ALL] += 1
            await _count_terms(session, changes)
            return _article(row)

    async def add_many(self, articles: Sequence[NewArticle], author: str, now: datetime) -> int:
        """A batch in one transaction (imports, the benchmark's data)."""
        async with self.sessions.begin() as session:
            rows = [ArticleRow(language=a.language, title=a.title, body=a.body,
                               tags=list(a.tags), created_at=now, updated_at=now,
                               author=author) for a in articles]
            session.add_all(rows)
            await session.flush()
            counts: Counter[str] = Counter()
            postings: list[dict[str, Any]] = []
            for row, a in zip(rows, articles, strict=True):
                p = postings_of(row.id, a)
                postings.extend(p)
                counts.update(x["term"] for x in p)
            for i in range(0, len(postings), 5000):
                await session.execute(insert(PostingRow), postings[i:i + 5000])
            counts[ALL] += len(rows)
            await _count_terms(session, counts)
        return len(articles)

    async def replace(self, article_id: int, article: NewArticle, now: datetime) -> Article:
        async with self.sessions.begin() as session:
            # The article locked first: two edits at once would both take the same old
            # postings out of the term counts (docs/storage.md).
            row = await session.get(ArticleRow, article_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no article {article_id}")
            changes = await self._unindex(session, article_id)
            row.language, row.title, row.body = article.language, article.title, article.body
            row.tags, row.updated_at = list(article.tags), now
            changes.update(await self._index(session, article_id, article))
            # one sweep over the terms, in order: two sweeps (out, then in) by two edits of
            # different articles could each hold a term the other waits for (a deadlock)
            await _count_terms(session, changes)
            return _article(row)

    async def delete(self, article_id: int) -> None:
        async with self.sessions.begin() as session:
            row = await session.get(ArticleRow, article_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no article {article_id}")
            changes = await self._unindex(session, article_id)
            await session.delete(row)
            changes[ALL] -= 1
            await _count_terms(session, changes)

    async def get(self, article_id: int) -> Article:
        async with self.reads() as session:
            row = await session.get(ArticleRow, article_id)
            if row is None:
                raise NotFound(f"no article {article_id}")
            return _article(row)

    async def _index(self, session: AsyncSession, article_id: int,
                     a: NewArticle) -> Counter[str]:
        """Insert the article's postings; the term counts to add (the caller adds them)."""
        postings = postings_of(article_id, a)
        if postings:
            await session.execute(insert(PostingRow), postings)
        return Counter(p["term"] for p in postings)

    async def _unindex(self, session: AsyncSession, article_id: int) -> Counter[str]:
        """Delete the article's postings; the term counts to take off (negative)."""
        old = (await session.scalars(
            select(PostingRow.term).where(PostingRow.article_id == article_id)
        )).all()
        await session.execute(delete(PostingRow).where(PostingRow.article_id == article_id))
        return Counter(dict.fromkeys(old, -1))

    # ----- search -------------------------------------------------------------------------

    async def search(self, found: Sequence[str], language: str | None = None,
                     limit: int = CANDIDATES) -> list[tuple[Hit, Article]]:
        """Articles having every term of `found`, best scored first (at most `limit`)."""
        async with self.reads() as session:
            df: dict[str, int] = dict((await session.execute(
                select(TermRow.term, TermRow.articles).where(TermRow.term.in_([*found, ALL]))
            )).all())
            total = df.pop(ALL, 0)
            if not found or any(df.get(t, 0) <= 0 for t in found):
                return []
            weights = term_weights(found, df, total)
            best = _best(rarest_first(found, df), weights, limit)
            # the articles come with their scores: one round trip, not two
            found_rows = (await session.execute(
                select(ArticleRow, best.c.score).join(best, ArticleRow.id == best.c.id)
                .order_by(best.c.score.desc(), ArticleRow.id.desc())
            )).all()
        out = []
        for row, s in found_rows:
            if language is not None and row.language != language:
                continue
            out.append((Hit(row.id, float(s), row.title, row.body), _article(row)))
        return out

    # ----- gaps ---------------------------------------------------------------------------

    async def add_gap(self, question: str, language: str, asked_by: str, agent_id: str | None,
                      call_id: str | None, now: datetime) -> Gap:
        async with self.sessions.begin() as session:
            row = GapRow(question=question, language=language, asked_by=asked_by,
                         agent_id=agent_id, call_id=call_id, asked_at=now, status="open",
                         answer="")
            session.add(row)
            await session.flush()
            return _gap(row)

    async def gap(self, gap_id: int) -> Gap:
        async with self.reads() as session:
            row = await session.get(GapRow, gap_id)
            if row is None:
                raise NotFound(f"no knowledge gap {gap_id}")
            return _gap(row)

    async def gaps(self, status: str | None, limit: int = 100) -> list[Gap]:
        query: Any = select(GapRow)
        if status is not None:
            query = query.where(GapRow.status == status)
        async with self.reads() as session:
            rows = (await session.scalars(query.order_by(GapRow.id.desc()).limit(limit))).all()
            return [_gap(r) for r in rows]

    async def answer_gap(self, gap_id: int, answer: str, by: str, now: datetime,
                         article_id: int | None) -> Gap:
        async with self.sessions.begin() as session:
            row = await session.get(GapRow, gap_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no knowledge gap {gap_id}")
            row.status, row.answer, row.answered_by = "answered", answer, by
            row.answered_at, row.article_id = now, article_id
            return _gap(row)


def hits_only(pairs: Iterable[tuple[Hit, Article]]) -> list[Hit]:
    return [h for h, _ in pairs]
