"""Enrichment throughput: the production Beam pipeline vs a plain loop over the same functions, same run.

    python benchmarks/throughput.py            # default enrichment (spaCy NER + gazetteer), 2,000 x ~800 words
    python benchmarks/throughput.py --fast     # gazetteer and rules only
    python benchmarks/throughput.py --count 300 --words 800   # a quicker look

Both paths parse records, de-duplicate, enrich, write to a fresh SQLite store and match the default
subscriptions; the model is loaded before timing starts. Last line: one JSON object with articles_per_s
(Beam), loop_articles_per_s and ratio_vs_loop.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import CACHE, build_corpus, finish, peak_rss_mb, print_machine
from connectors.sqlite_store import SqliteStore
from connectors.store import StoreConfig
from pipelines.enrich import EnrichConfig, shared_enricher
from pipelines.matching import SubscriptionMatcher
from pipelines.pipeline import counts, create_pipeline
from pipelines.records import article_record, normalize, parse_record, prefer
from pipelines.subscriptions import load_subscriptions_file
from pipelines.transforms import ChannelConfig, PipelineConfig
from schemas import DeadLetter, RawArticle
from seeds import seed_path


def _records(corpus: Path) -> Path:
    path = CACHE / f"records-{corpus.stem}.jsonl"
    if not path.exists():
        with corpus.open(encoding="utf-8") as lines, path.open("w", encoding="utf-8") as out:
            for line in lines:
                out.write(article_record(RawArticle.model_validate_json(line)) + "\n")
    return path


def _store(directory: Path) -> StoreConfig:
    config = StoreConfig(sqlite_path=str(directory / "newswatch.db"))
    with SqliteStore(config.sqlite_path) as store:
        store.seed_subscriptions(load_subscriptions_file(seed_path("subscriptions.yaml")))
    return config


def run_beam(records: Path, config: PipelineConfig) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    result = create_pipeline(str(records), config).run()
    result.wait_until_finish()
    return time.perf_counter() - started, counts(result).values


def run_loop(records: Path, config: PipelineConfig) -> tuple[float, dict[str, int]]:
    """The same steps as the pipeline, as plain calls: what Beam's overhead is measured against."""
    started = time.perf_counter()
    enricher = shared_enricher(config.enrich)
    figures = {"read": 0, "enriched": 0, "alerts": 0, "dead_letters": 0}
    unique: dict[str, RawArticle] = {}
    with records.open(encoding="utf-8") as lines:
        for line in lines:
            parsed = parse_record(line)
            if isinstance(parsed, DeadLetter):
                figures["dead_letters"] += 1
                continue
            figures["read"] += 1
            article = normalize(parsed)
            unique[article.id] = prefer(unique[article.id], article) if article.id in unique else article
    with SqliteStore(config.store.sqlite_path) as store:
        matcher = SubscriptionMatcher(store.list_subscriptions(include_disabled=False))
        pending = list(unique.values())
        for start in range(0, len(pending), config.write_batch_size):
            batch = pending[start : start + config.write_batch_size]
            known = store.stored_hashes(a.id for a in batch)
            batch = [a for a in batch if a.id not in known]
            enriched = []
            for offset in range(0, len(batch), config.enrich.batch_size):
                enriched += enricher.enrich_batch(batch[offset : offset + config.enrich.batch_size])
            figures["enriched"] += len(enriched)
            for article, _ in store.write_articles(enriched):
                for alert in matcher.match(article):
                    figures["alerts"] += store.record_alert(alert)
    return time.perf_counter() - started, figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="no statistical NER (gazetteer and rules only)")
    parser.add_argument("--count", type=int, default=2000, help="articles in the corpus (default 2000)")
    parser.add_argument("--words", type=int, default=800, help="words per article (default 800)")
    parser.add_argument("--ner-max-chars", type=int, default=None, help="override NEWSWATCH_NER_MAX_CHARS")
    args = parser.parse_args(argv)

    print_machine()
    corpus = build_corpus(args.count, args.words)
    records = _records(corpus)
    enrich = (
        EnrichConfig(use_model=not args.fast)
        if args.ner_max_chars is None
        else EnrichConfig(use_model=not args.fast, ner_max_chars=args.ner_max_chars)
    )
    print(
        f"corpus: {args.count} articles of ~{args.words} words ({corpus}); enrichment: "
        f"{'fast (no NER)' if args.fast else 'spaCy NER + gazetteer'}"
    )
    loading = time.perf_counter()
    shared_enricher(enrich)  # loaded once per process, reused by the Beam DoFns and the loop
    print(f"enrichment resources loaded in {time.perf_counter() - loading:.1f}s (not timed below)")

    with tempfile.TemporaryDirectory() as beam_dir, tempfile.TemporaryDirectory() as loop_dir:
        beam_config = PipelineConfig(store=_store(Path(beam_dir)), enrich=enrich, channels=ChannelConfig(console=False))
        loop_config = PipelineConfig(store=_store(Path(loop_dir)), enrich=enrich, channels=ChannelConfig(console=False))
        beam_seconds, beam_counts = run_beam(records, beam_config)
        print(
            f"beam pipeline: {beam_seconds:.1f}s, {args.count / beam_seconds:.1f} articles/s "
            f"(enriched={beam_counts.get('enriched', 0)} alerts={beam_counts.get('alerts', 0)})"
        )
        loop_seconds, loop_counts = run_loop(records, loop_config)
        print(
            f"plain loop:    {loop_seconds:.1f}s, {args.count / loop_seconds:.1f} articles/s "
            f"(enriched={loop_counts['enriched']} alerts={loop_counts['alerts']})"
        )
    if beam_counts.get("enriched") != loop_counts["enriched"]:
        print("warning: the two paths enriched different numbers of articles", file=sys.stderr)
    figures = {
        "articles": args.count,
        "words_per_article": args.words,
        "mode": "fast" if args.fast else "ner",
        "articles_per_s": round(args.count / beam_seconds, 1),
        "loop_articles_per_s": round(args.count / loop_seconds, 1),
        "ratio_vs_loop": round(loop_seconds / beam_seconds, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    print(f"ratio beam/loop: {figures['ratio_vs_loop']:.2f}   peak RSS: {figures['peak_rss_mb']:.0f} MB")
    finish(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
