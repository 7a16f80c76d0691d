"""The knowledge base's search, pure: how text becomes index terms, how a query is read, and how
the found articles are ranked.

Chinese has no spaces between words, so words cannot be the terms: a run of Han characters
becomes its overlapping character pairs (bigrams: 退款流程 -> 退款 款流 流程), and a query is read
the same way, so a two-character query finds an article that has those two characters next to
each other anywhere, inside a longer word too. Latin letters and digits make words (lowercased,
NFKC-folded: full-width ＡＢＣ is abc). An article matches when it has every term of the query.

The store keeps, per term, the articles that have it with a weight (`index_weights`: title
terms count more than body ones, repeats count with diminishing returns), and the number of
articles with each term (for `idf`). It ranks by the sum of weight × idf over the query's terms
(`sql_score`), then `rerank` orders the best few with what only the text shows: the whole query
appearing as it was typed, in the title first.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

MAX_TERM = 32  # characters; longer "words" (a pasted hash) are cut
TITLE_WEIGHT = 3
MAX_QUERY_TERMS = 16

# Han ideographs (CJK Unified, Extension A, compatibility) and the kana of Japanese loanwords.
_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff"
_TOKEN = re.compile(rf"[{_HAN}]+|[^\W_{_HAN}]+", re.UNICODE)
_IS_HAN = re.compile(rf"[{_HAN}]")


class QueryError(ValueError):
    """A query that cannot be searched (empty, or a single Han character); says why."""


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def terms(text: str) -> list[str]:
    """The index terms of `text`, in order, repeats kept: Han runs as character bigrams (a lone
    Han character as itself), other letters and digits as words."""
    out: list[str] = []
    for match in _TOKEN.finditer(normalise(text)):
        run = match.group()
        if _IS_HAN.match(run):
            if len(run) == 1:
                out.append(run)
            else:
                out.extend(run[i:i + 2] for i in range(len(run) - 1))
        else:
            out.append(run[:MAX_TERM])
    return out


def query_terms(query: str) -> list[str]:
    """The distinct terms an article must all have to match `query` (in query order)."""
    found = list(dict.fromkeys(terms(query)))
    if not found:
        raise QueryError("the query has no letters, digits or Chinese characters")
    if all(len(t) == 1 and _IS_HAN.match(t) for t in found):
        raise QueryError("give at least two Chinese characters (or a word)")
    # A lone Han character next to a word ("A型") cannot be looked up as a pair: it is
    # dropped, the rest of the query still narrows.
    found = [t for t in found if not (len(t) == 1 and _IS_HAN.match(t))]
    return found[:MAX_QUERY_TERMS]


def index_weights(title: str, body: str, tags: Sequence[str] = ()) -> dict[str, int]:
    """term -> weight of one article: each title or tag occurrence counts TITLE_WEIGHT, each
    body occurrence 1; the sum is damped (1 + log2) so a term repeated 50 times does not drown
    the others."""
    raw: Counter[str] = Counter()
    for t in terms(title):
        raw[t] += TITLE_WEIGHT
    for tag in tags:
        for t in terms(tag):
            raw[t] += TITLE_WEIGHT
    for t in terms(body):
        raw[t] += 1
    return {t: 1 + int(4 * math.log2(n)) for t, n in raw.items()}


def idf(df: int, articles: int) -> float:
    """Rarer terms weigh more (BM25's idf, never negative)."""
    return math.log(1 + (articles - df + 0.5) / (df + 0.5))


def rarest_first(found: Iterable[str], df: Mapping[str, int]) -> list[str]:
    """The query's terms, rarest first (the store narrows by the rarest). A term no article has
    makes the result empty, and comes first."""
    return sorted(found, key=lambda t: (df.get(t, 0), t))


def term_weights(found: Sequence[str], df: Mapping[str, int], articles: int
                 ) -> dict[str, float]:
    """What one unit of each term's weight scores (idf, rounded for a stable SQL text)."""
    return {t: round(idf(df.get(t, 0), max(articles, 1)), 4) for t in found}


@dataclass(frozen=True, slots=True)
class Hit:
    article_id: int
    score: float
    title: str
    body: str


def rerank(query: str, hits: Sequence[Hit]) -> list[Hit]:
    """The store's best hits, ordered: the query as typed in the title, then in the body, then
    by score, then the newer article (higher id)."""
    q = normalise(query).strip()

    def key(h: Hit) -> tuple[int, float, int]:
        exact = 2 if q and q in normalise(h.title) else 1 if q and q in normalise(h.body) else 0
        return (-exact, -h.score, -h.article_id)

    return sorted(hits, key=key)


def snippet(body: str, query: str, width: int = 80) -> str:
    """A piece of the body around the first place the query (or its first term) appears."""
    text = " ".join(body.split())
    folded = normalise(text)
    q = normalise(query).strip()
    at = folded.find(q) if q else -1
    if at < 0:
        for t in terms(query):
            at = folded.find(t)
            if at >= 0:
                break
    if at < 0 or len(text) <= width:
        return text[:width] + ("…" if len(text) > width else "")
    start = max(0, at - width // 3)
    end = min(len(text), start + width)
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")
