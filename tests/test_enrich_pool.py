"""The enrichment worker pool: the same Articles as in-process enrichment, in order; a small bundle spread
over every worker; a failing article dead-lettered alone; a worker that dies costs only its own article.

Fast enrichment (no model) keeps these quick: the pool does not care what the Enricher computes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import pytest

from pipelines.enrich import EnrichConfig, Enricher, shared_enricher
from pipelines.enrich.pool import BatchEnricher, EnrichFailure, Outcome, pool_supported, release_pool
from schemas import Article, RawArticle

pytestmark = pytest.mark.skipif(not pool_supported(), reason="the pool needs the fork start method")

CONFIG = EnrichConfig(use_model=False, batch_size=8)


def _articles(count: int) -> list[RawArticle]:
    places = ["Baghdad", "Kyiv", "Khartoum", "Caracas", "Kabul", "Gaza", "Tripoli", "Goma"]
    return [
        RawArticle(
            title=f"Troops withdraw from {places[n % len(places)]} in phase {n}",
            text=f"{places[n % len(places)].upper()} (Wire) — Soldiers began to pull out on day {n}, officials said.",
            url=f"https://pool.example.com/{n}",
        )
        for n in range(count)
    ]


def _comparable(article: Article) -> dict[str, object]:
    return article.model_dump(exclude={"fetched_at", "enriched_at"})


@pytest.fixture
def enricher() -> Iterator[Enricher]:
    yield shared_enricher(CONFIG)


def test_outcomes_match_in_process_enrichment_in_order(enricher: Enricher) -> None:
    raws = _articles(21)
    expected = [_comparable(a) for a in enricher.enrich_batch(raws)]
    with BatchEnricher(CONFIG, workers=2) as batches:
        assert batches.pool is not None
        got: list[Outcome] = []
        for _, outcomes in batches.map([raws[:10], raws[10:]]):
            got += outcomes
    assert all(isinstance(o, Article) for o in got)
    assert [_comparable(o) for o in got if isinstance(o, Article)] == expected


def test_a_small_bundle_is_split_over_every_worker(enricher: Enricher) -> None:
    raws = _articles(5)
    with BatchEnricher(CONFIG, workers=2) as batches:
        assert batches.chunk_size == 4  # batch_size 8 over 2 workers
        early = [done for raw in raws[:3] for done in batches.add(raw, raw.id)]
        assert early == []  # 3 < one chunk: nothing submitted yet
        chunks = list(batches.flush()) + [done for raw in raws[3:] for done in batches.add(raw, raw.id)]
        chunks += list(batches.flush())
    # flush split the 3 buffered articles 2 + 1 over the two workers; the last 2 likewise 1 + 1
    assert [len(chunk) for _, chunk, _ in chunks] == [2, 1, 1, 1]
    assert [tag for tags, _, _ in chunks for tag in tags] == [raw.id for raw in raws]


def _failing_batch(real: Enricher, bad_title: str, kill: bool) -> object:
    """Enricher.enrich_batch that fails (or kills its worker process) on one article."""

    original = real.enrich_batch

    def enrich_batch(raws: Sequence[RawArticle]) -> list[Article]:
        if any(r.title == bad_title for r in raws):
            if kill and os.getpid() != parent:
                os._exit(9)  # what the kernel's OOM killer does to a worker
            raise ValueError(f"cannot enrich {bad_title!r}")
        return original(raws)

    parent = os.getpid()
    return enrich_batch


@pytest.mark.parametrize("kill", [False, True], ids=["exception", "worker-dies"])
def test_one_bad_article_fails_alone(enricher: Enricher, monkeypatch: pytest.MonkeyPatch, kill: bool) -> None:
    # A fault no real input reliably shows (an article that crashes or kills a worker), injected before the
    # workers fork so they inherit it.
    raws = _articles(6)
    bad = raws[2].title
    monkeypatch.setattr(enricher, "enrich_batch", _failing_batch(enricher, bad, kill))
    monkeypatch.setattr(enricher, "enrich", lambda raw: enricher.enrich_batch([raw])[0])
    with BatchEnricher(CONFIG, workers=2) as batches:
        outcomes: list[Outcome] = []
        for _, done in batches.map([raws]):
            outcomes += done
        pool = batches.pool
    assert [isinstance(o, EnrichFailure) for o in outcomes] == [False, False, True, False, False, False]
    failure = outcomes[2]
    assert isinstance(failure, EnrichFailure)
    assert ("worker died" if kill else "cannot enrich") in failure.reason
    assert [o.title for o in outcomes if isinstance(o, Article)] == [r.title for r in raws if r.title != bad]
    release_pool(pool)
