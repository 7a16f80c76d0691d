"""The knowledge base (cti/features/knowledge/): articles, their search index (terms ->
articles, cti.domain.knowledge), and the questions it could not answer (knowledge gaps)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cti.platform.db.base import Base, UtcDateTime


class ArticleRow(Base):
    __tablename__ = "kb_articles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    language: Mapped[str] = mapped_column(String(8), index=True)
    title: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    author: Mapped[str] = mapped_column(String(96))
    gap_id: Mapped[int | None] = mapped_column(Integer)  # written as the answer to this gap


class PostingRow(Base):
    """One term of one article with its weight. The primary key (term, article) is the search
    path: all articles of a term, in one index range (SQLite stores the table in that order)."""

    __tablename__ = "kb_postings"
    __table_args__ = (
        Index("ix_kb_postings_article_id", "article_id"),
        # one-term searches: a term's best-weighted articles first, from the index alone
        Index("ix_kb_postings_term_weight", "term", "weight", "article_id"),
        {"sqlite_with_rowid": False},
    )

    term: Mapped[str] = mapped_column(String(32), primary_key=True)
    article_id: Mapped[int] = mapped_column(
        ForeignKey("kb_articles.id", ondelete="CASCADE"), primary_key=True
    )
    weight: Mapped[int] = mapped_column(Integer)


class TermRow(Base):
    """How many articles have each term (its idf, and which query term is rarest)."""

    __tablename__ = "kb_terms"

    term: Mapped[str] = mapped_column(String(32), primary_key=True)
    articles: Mapped[int] = mapped_column(Integer)


class GapRow(Base):
    """A question the knowledge base had no answer to, escalated to the duty manager."""

    __tablename__ = "kb_gaps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    question: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(8))
    asked_by: Mapped[str] = mapped_column(String(96))
    agent_id: Mapped[str | None] = mapped_column(String(64))
    call_id: Mapped[str | None] = mapped_column(String(128))
    asked_at: Mapped[datetime] = mapped_column(UtcDateTime())
    status: Mapped[str] = mapped_column(String(16), index=True)  # open | answered
    answer: Mapped[str] = mapped_column(Text, default="")
    answered_by: Mapped[str | None] = mapped_column(String(96))
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    article_id: Mapped[int | None] = mapped_column(Integer)
