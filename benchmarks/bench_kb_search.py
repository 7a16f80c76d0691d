"""Knowledge-base search over 100,000 articles: p50 / p99 of `KnowledgeBase.search` (the
service's real path: terms, the term counts, the grouped scoring query, re-ranking) on
PostgreSQL and on SQLite.

The articles are generated, seeded: Chinese words of two to four characters drawn from a Zipf
distribution over a 4,000-word vocabulary (so common words are in many articles, as in a real
base), a fifth of the articles in English. They are loaded with the store's own weights
(`cti.domain.knowledge.index_weights`), in bulk (COPY on PostgreSQL). Queries: two characters
taken from inside an article's text (often across or inside a word), three or four characters,
two Chinese words, an English word.

    .venv/bin/python benchmarks/bench_kb_search.py [--articles 100000] [--queries 400]
        [--backend both|postgresql|sqlite]

Target (issue 11): p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cti.domain.knowledge import index_weights
from cti.features.knowledge.service import KnowledgeBase
from cti.features.knowledge.storage import ALL, KnowledgeStore
from cti.platform.bus import InProcessBus
from cti.platform.clock import FakeClock
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.db.migrate import upgrade_async

PG_DSN = os.environ.get("CTI_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
TARGET_MS = 100.0
NOW = datetime(2026, 3, 1, tzinfo=UTC)
EN_WORDS = [
    "refund", "invoice", "broadband", "router", "password", "account", "billing", "payment",
    "roaming", "package", "upgrade", "contract", "delivery", "warranty", "repair", "install",
    "cancel", "transfer", "balance", "recharge", "points", "coupon", "outage", "signal",
    "modem", "fibre", "sim", "card", "number", "porting", "voicemail", "international", "data",
    "plan", "speed", "limit",
]


def make_corpus(n: int, seed: int = 7) -> list[tuple[str, str, str, list[str]]]:
    rng = random.Random(seed)
    chars = [chr(c) for c in rng.sample(range(0x4E00, 0x4E00 + 3500), 1500)]
    vocab = list(dict.fromkeys(
        "".join(rng.choice(chars) for _ in range(rng.choice((2, 2, 2, 3, 4))))
        for _ in range(4500)))[:4000]
    weights = [1 / (i + 1) ** 0.9 for i in range(len(vocab))]
    out = []
    for i in range(n):
        if i % 5 == 4:
            words = rng.choices(EN_WORDS, k=rng.randint(20, 40))
            out.append(("en", " ".join(words[:4]).capitalize(), " ".join(words[4:]), words[:2]))
            continue
        words = rng.choices(vocab, weights=weights, k=rng.randint(25, 45))
        out.append(("zh", "".join(words[:3]), ",".join(
            "".join(words[j:j + 4]) for j in range(3, len(words), 4)), words[:2]))
    return out


def make_queries(corpus: list[tuple[str, str, str, list[str]]], n: int, seed: int = 11
                 ) -> list[str]:
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        lang, title, body, tags = rng.choice(corpus)
        kind = len(out) % 4
        if lang == "en":
            out.append(rng.choice(body.split()))
            continue
        text = rng.choice([title, body.replace(",", "")])
        if kind in (0, 1):
            size = 2 if kind == 0 else rng.choice((3, 4))
            at = rng.randrange(0, max(1, len(text) - size))
            out.append(text[at:at + size])
        else:
            out.append(" ".join(tags[:2]))
    return out


def rows(corpus: list[tuple[str, str, str, list[str]]]):  # type: ignore[no-untyped-def]
    articles, postings, counts = [], [], Counter()
    for i, (lang, title, body, tags) in enumerate(corpus, start=1):
        articles.append((i, lang, title, body, tags))
        for term, weight in index_weights(title, body, tags).items():
            postings.append((term, i, weight))
            counts[term] += 1
    counts[ALL] = len(corpus)
    return articles, postings, counts


async def load_pg(url: str, corpus) -> None:  # type: ignore[no-untyped-def]
    import json

    import asyncpg

    articles, postings, counts = rows(corpus)
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        await conn.copy_records_to_table(
            "kb_articles", columns=["id", "language", "title", "body", "tags", "created_at",
                                    "updated_at", "author"],
            records=[(i, lang, t, b, json.dumps(tags), NOW, NOW, "bench")
                     for i, lang, t, b, tags in articles])
        # a bulk load: the foreign-key checks and the indexes off while copying, built once after
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("DROP INDEX ix_kb_postings_article_id")
        await conn.execute("DROP INDEX ix_kb_postings_term_cover")
        await conn.execute("DROP INDEX ix_kb_postings_term_weight")
        await conn.execute("ALTER TABLE kb_postings DROP CONSTRAINT pk_kb_postings")
        await conn.copy_records_to_table("kb_postings", columns=["term", "article_id", "weight"],
                                         records=postings)
        await conn.execute("ALTER TABLE kb_postings ADD CONSTRAINT pk_kb_postings "
                           "PRIMARY KEY (term, article_id)")
        await conn.execute("CREATE INDEX ix_kb_postings_article_id ON kb_postings (article_id)")
        await conn.execute("CREATE INDEX ix_kb_postings_term_cover ON kb_postings "
                           "(term, article_id) INCLUDE (weight)")
        await conn.execute("CREATE INDEX ix_kb_postings_term_weight ON kb_postings "
                           "(term, weight, article_id)")
        await conn.execute("SET session_replication_role = origin")
        await conn.copy_records_to_table("kb_terms", columns=["term", "articles"],
                                         records=list(counts.items()))
        await conn.execute(f"SELECT setval('kb_articles_id_seq', {len(articles)})")
        await conn.execute("VACUUM ANALYZE kb_postings")
        await conn.execute("ANALYZE kb_articles")
        await conn.execute("ANALYZE kb_terms")
    finally:
        await conn.close()
    print(f"  loaded {len(articles):,} articles, {len(postings):,} postings, "
          f"{len(counts):,} terms")


def load_sqlite(path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    import json
    import sqlite3

    articles, postings, counts = rows(corpus)
    db = sqlite3.connect(path)
    with db:
        db.executemany(
            "INSERT INTO kb_articles (id, language, title, body, tags, created_at, updated_at,"
            " author) VALUES (?, ?, ?, ?, ?, ?, ?, 'bench')",
            [(i, lang, t, b, json.dumps(tags), NOW.isoformat(), NOW.isoformat())
             for i, lang, t, b, tags in articles])
        postings.sort()
        db.executemany("INSERT INTO kb_postings (term, article_id, weight) VALUES (?, ?, ?)",
                       postings)
        db.executemany("INSERT INTO kb_terms (term, articles) VALUES (?, ?)",
                       list(counts.items()))
    db.execute("ANALYZE")
    db.close()
    print(f"  loaded {len(articles):,} articles, {len(postings):,} postings, "
          f"{len(counts):,} terms")


async def measure(url: str, queries: list[str]) -> tuple[list[float], int]:
    engine = make_engine(url)
    kb = KnowledgeBase(KnowledgeStore(make_sessionmaker(engine)), InProcessBus(), FakeClock())
    try:
        for q in queries[:30]:  # warm the pool, the caches and the prepared statements
            await kb.search(q)
        times, empty = [], 0
        c0 = time.process_time()
        for q in queries:
            t0 = time.perf_counter()
            found = await kb.search(q)
            times.append((time.perf_counter() - t0) * 1000)
            empty += not found
        cpu = (time.process_time() - c0) * 1000 / len(queries)
        print(f"  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; this "
              f"process's CPU {cpu:.1f} ms per search on average)")
        return times, empty
    finally:
        await engine.dispose()


def report(name: str, times: list[float], empty: int) -> None:
    times.sort()
    p50 = statistics.median(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"  {name}: {len(times)} searches, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
          f"max {times[-1]:.1f} ms; {empty} found nothing; "
          f"target p99 <= {TARGET_MS:.0f} ms: ratio {p99 / TARGET_MS:.2f} "
          f"({'met' if p99 <= TARGET_MS else 'NOT met'})")


async def run_pg(corpus, queries) -> None:  # type: ignore[no-untyped-def]
    import asyncpg

    name = f"cti_bench_kb_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/" + name
    try:
        await upgrade_async(url)
        t0 = time.perf_counter()
        await load_pg(url, corpus)
        print(f"  load {time.perf_counter() - t0:.0f} s")
        report("PostgreSQL", *await measure(url, queries))
    finally:
        admin = await asyncpg.connect(PG_DSN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def run_sqlite(corpus, queries) -> None:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kb.db"
        url = f"sqlite+aiosqlite:///{path}"
        await upgrade_async(url)
        t0 = time.perf_counter()
        load_sqlite(path, corpus)
        print(f"  load {time.perf_counter() - t0:.0f} s")
        report("SQLite", *await measure(url, queries))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--backend", choices=("both", "postgresql", "sqlite"), default="both")
    args = parser.parse_args()
    corpus = make_corpus(args.articles)
    queries = make_queries(corpus, args.queries)
    print(f"knowledge-base search, {args.articles:,} articles, {len(queries)} queries "
          f"(e.g. {', '.join(queries[:6])})")
    if args.backend in ("both", "postgresql"):
        await run_pg(corpus, queries)
    if args.backend in ("both", "sqlite"):
        await run_sqlite(corpus, queries)


if __name__ == "__main__":
    asyncio.run(main())
