"""Enrichment throughput: the production Beam pipeline vs a plain loop over the same functions, same run.

    python benchmarks/throughput.py            # default enrichment (spaCy NER + gazetteer), 2,000 x ~800 words
    python benchmarks/throughput.py --fast     # gazetteer and rules only
    python benchmarks/throughput.py --count 300 --repeat 1   # a quicker look (Beam's start-up weighs more)

Both paths parse records, de-duplicate, enrich, write to a fresh SQLite store and match the default
subscriptions; the model is loaded before timing starts. Beam and the loop run in turns (--repeat pairs, 3 by
default: this shared machine's speed drifts by tens of percent within minutes) and the figures are medians.
Each run also reports its CPU per article, split between the job's process and the enrichment workers.
With --fast, a last run times the loop over articles enriched beforehand: the job's own work alone, the
ceiling that no faster enrichment can lift while that work runs on one core.
Last line: one JSON object with articles_per_s (Beam), loop_articles_per_s and ratio_vs_loop, and whether
the targets (60 articles/s default, 1,500 fast, Beam >= 0.8 x the loop) were met.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import CACHE, build_corpus, cpu_times, finish, load_average, peak_rss_mb, print_machine
from connectors.sqlite_store import SqliteStore
from connectors.store import StoreConfig
from pipelines.alerting import AlertGate, shared_matchers
from pipelines.delivery import Dispatcher
from pipelines.enrich import EnrichConfig, shared_enricher
from pipelines.enrich.pool import BatchEnricher, Outcome, default_workers
from pipelines.pipeline import counts, create_pipeline
from pipelines.records import article_record, normalize, parse_record, prefer
from pipelines.subscriptions import load_subscriptions_file
from pipelines.transforms import ChannelConfig, PipelineConfig, build_channels
from schemas import Alert, Article, DeadLetter, RawArticle
from seeds import seed_path


def _records(corpus: Path) -> Path:
    path = CACHE / f"records-{corpus.stem}.jsonl"
    if not path.exists():
        with corpus.open(encoding="utf-8") as lines, path.open("w", encoding="utf-8") as out:
            for line in lines:
                out.write(article_record(RawArticle.model_validate_json(line)) + "\n")
    return path


def _config(directory: str, enrich: EnrichConfig) -> PipelineConfig:
    """A fresh SQLite store in `directory` with the default subscriptions, alerts kept off the console."""
    store = StoreConfig(sqlite_path=str(Path(directory) / "newswatch.db"))
    with SqliteStore(store.sqlite_path) as sqlite:
        sqlite.seed_subscriptions(load_subscriptions_file(seed_path("subscriptions.yaml")))
    return PipelineConfig(store=store, enrich=enrich, channels=ChannelConfig(console=False))


def run_beam(records: Path, config: PipelineConfig) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    result = create_pipeline(str(records), config).run()
    result.wait_until_finish()
    return time.perf_counter() - started, counts(result).values


# The targets on a 2-core machine for ~800-word articles (docs/performance.md).
DEFAULT_TARGET = 60
FAST_TARGET = 1500
RATIO_TARGET = 0.8

EnrichStep = Callable[[Iterator[list[RawArticle]]], Iterator[list[Outcome]]]
TimedPath = Callable[[Path, PipelineConfig], tuple[float, dict[str, int]]]


def read_unique(records: Path) -> tuple[list[RawArticle], int, int]:
    """The records file's articles, parsed, normalized and de-duplicated; with the counts of records read
    and rejected."""
    unique: dict[str, RawArticle] = {}
    read = rejected = 0
    with records.open(encoding="utf-8") as lines:
        for line in lines:
            parsed = parse_record(line)
            if isinstance(parsed, DeadLetter):
                rejected += 1
                continue
            read += 1
            article = normalize(parsed)
            unique[article.id] = prefer(unique[article.id], article) if article.id in unique else article
    return list(unique.values()), read, rejected


def run_loop(
    records: Path, config: PipelineConfig, enrich_step: EnrichStep | None = None
) -> tuple[float, dict[str, int]]:
    """The same steps as the pipeline, as plain calls: what Beam's overhead is measured against.
    Parse, de-duplicate, skip stored, enrich (through the same worker pool, batches in flight while
    earlier ones are written), upsert, match, gate and deliver the alerts per subscription.
    `enrich_step` replaces the worker pool (the job-floor measurement passes articles enriched beforehand)."""
    started = time.perf_counter()
    pending, read, rejected = read_unique(records)
    figures = {"read": read, "enriched": 0, "alerts": 0, "dead_letters": rejected}
    with SqliteStore(config.store.sqlite_path) as store, contextlib.ExitStack() as resources:
        if enrich_step is None:
            pool = resources.enter_context(BatchEnricher(config.enrich, config.enrich.workers))
            enrich_step = lambda batches: (outcomes for _, outcomes in pool.map(batches))  # noqa: E731
        matcher = shared_matchers.get(config.store, store)
        gate = AlertGate(store)
        dispatcher = Dispatcher(build_channels(config.channels), config.channels.delivery)
        subscriptions = {s.id: s for s in store.list_subscriptions()}
        alerts: dict[str, list[Alert]] = defaultdict(list)
        size = config.enrich.batch_size

        def fresh() -> Iterator[list[RawArticle]]:
            for start in range(0, len(pending), size):
                batch = pending[start : start + size]
                known = store.stored_hashes(a.id for a in batch)
                yield [a for a in batch if a.id not in known]

        written: list[Article] = []
        for outcomes in enrich_step(fresh()):
            enriched = [a for a in outcomes if isinstance(a, Article)]
            figures["enriched"] += len(enriched)
            figures["dead_letters"] += len(outcomes) - len(enriched)
            written += enriched
            if len(written) >= config.write_batch_size:
                for article, _ in store.write_articles(written):
                    for alert in matcher.match(article):
                        alerts[alert.subscription_id].append(alert)
                written = []
        for article, _ in store.write_articles(written):
            for alert in matcher.match(article):
                alerts[alert.subscription_id].append(alert)
        for subscription_id, matched in alerts.items():
            result = gate.admit(subscriptions[subscription_id], matched)
            figures["alerts"] += result.counts["delivered"]
            for alert in result.to_deliver:
                list(dispatcher.deliver(subscriptions[subscription_id], alert))
        dispatcher.close()
    return time.perf_counter() - started, figures


def enrich_beforehand(records: Path, enrich: EnrichConfig) -> dict[str, Article]:
    """Every distinct article of the records file, enriched in this process (not timed)."""
    enricher = shared_enricher(enrich)
    raws = read_unique(records)[0]
    return {a.id: a for start in range(0, len(raws), 64) for a in enricher.enrich_batch(raws[start : start + 64])}


def job_floor(enriched: dict[str, Article]) -> TimedPath:
    """The plain loop with enrichment already done: what the job's own steps (parse, de-duplicate, store
    with its full-text index, match, gate) cost per article, i.e. the rate no enrichment speed-up can pass
    while that work stays on one core."""
    return lambda records, config: run_loop(
        records, config, lambda batches: ([enriched[raw.id] for raw in batch] for batch in batches)
    )


@dataclass
class Run:
    """One timed pass of one path: wall time, CPU of this process (the job: parse, store, match, Beam)
    and of the enrichment workers it started and joined (children)."""

    seconds: float
    job_cpu: float
    workers_cpu: float
    counts: dict[str, int]

    @property
    def cpu(self) -> float:
        return self.job_cpu + self.workers_cpu


def _timed(path: TimedPath, records: Path, config: PipelineConfig) -> Run:
    own, children = cpu_times()
    seconds, figures = path(records, config)
    own_after, children_after = cpu_times()
    return Run(seconds, own_after - own, children_after - children, figures)


def _median_run(runs: list[Run]) -> Run:
    """The run of median wall time (its CPU figures come with it)."""
    return sorted(runs, key=lambda run: run.seconds)[len(runs) // 2]


def _describe(label: str, run: Run, count: int) -> str:
    return (
        f"{label} {run.seconds:.1f}s, {count / run.seconds:.1f} articles/s; CPU per article: "
        f"{run.job_cpu / count * 1000:.1f} ms in the job process + {run.workers_cpu / count * 1000:.1f} ms in "
        f"enrichment workers (enriched={run.counts.get('enriched', 0)} alerts={run.counts.get('alerts', 0)})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="no statistical NER (gazetteer and rules only)")
    parser.add_argument("--count", type=int, default=2000, help="articles in the corpus (default 2000)")
    parser.add_argument("--words", type=int, default=800, help="words per article (default 800)")
    parser.add_argument("--ner-max-chars", type=int, default=None, help="override NEWSWATCH_NER_MAX_CHARS")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="pairs of runs (Beam, then the loop), each on fresh stores; figures are the medians (default 3)",
    )
    parser.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="with --fast, skip the job-floor run (the loop over articles enriched beforehand)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

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
        f"{'fast (no NER)' if args.fast else 'spaCy NER + gazetteer'}; {args.repeat} pair(s) of runs"
    )
    loading = time.perf_counter()
    shared_enricher(enrich)  # loaded once per process, reused by the Beam DoFns and the loop
    print(f"enrichment resources loaded in {time.perf_counter() - loading:.1f}s (not timed below)")

    beam_runs: list[Run] = []
    loop_runs: list[Run] = []
    load_before = load_average()
    for n in range(1, args.repeat + 1):
        with tempfile.TemporaryDirectory() as beam_dir, tempfile.TemporaryDirectory() as loop_dir:
            beam_runs.append(_timed(run_beam, records, _config(beam_dir, enrich)))
            print(_describe(f"[{n}] beam pipeline:", beam_runs[-1], args.count))
            loop_runs.append(_timed(run_loop, records, _config(loop_dir, enrich)))
            print(_describe(f"[{n}] plain loop:   ", loop_runs[-1], args.count))
        if beam_runs[-1].counts.get("enriched") != loop_runs[-1].counts["enriched"]:
            print("warning: the two paths enriched different numbers of articles", file=sys.stderr)
    load_after = load_average()
    floor: Run | None = None
    if args.fast and args.floor:
        with tempfile.TemporaryDirectory() as floor_dir:
            floor = _timed(job_floor(enrich_beforehand(records, enrich)), records, _config(floor_dir, enrich))
        print(_describe("job floor (the loop over articles enriched beforehand):", floor, args.count))

    beam, loop = _median_run(beam_runs), _median_run(loop_runs)
    pairs = list(zip(beam_runs, loop_runs, strict=True))
    workers = default_workers() if enrich.workers is None else enrich.workers
    figures = {
        "articles": args.count,
        "words_per_article": args.words,
        "mode": "fast" if args.fast else "ner",
        "ner_max_chars": None if args.fast else enrich.ner_max_chars,
        "enrich_workers": workers if workers > 1 else 0,
        "repeat": args.repeat,
        "articles_per_s": round(args.count / beam.seconds, 1),
        "loop_articles_per_s": round(args.count / loop.seconds, 1),
        # Paired: each Beam run against the loop run right after it, so a slow spell of the machine
        # moves both sides of a ratio.
        "ratio_vs_loop": round(statistics.median(lo.seconds / b.seconds for b, lo in pairs), 3),
        "articles_per_cpu_s": round(args.count / beam.cpu, 1),
        "loop_articles_per_cpu_s": round(args.count / loop.cpu, 1),
        "cpu_ratio_vs_loop": round(statistics.median(lo.cpu / b.cpu for b, lo in pairs), 3),
        "job_cpu_ms_per_article": round(beam.job_cpu / args.count * 1000, 2),
        "workers_cpu_ms_per_article": round(beam.workers_cpu / args.count * 1000, 2),
        "runs_articles_per_s": [round(args.count / r.seconds, 1) for r in beam_runs],
        "runs_loop_articles_per_s": [round(args.count / r.seconds, 1) for r in loop_runs],
        "floor_articles_per_s": None if floor is None else round(args.count / floor.seconds, 1),
        "floor_cpu_ms_per_article": None if floor is None else round(floor.job_cpu / args.count * 1000, 2),
        "load_average": [round(load_before, 2), round(load_after, 2)],
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    print(
        f"median of {args.repeat}: beam {figures['articles_per_s']} articles/s, loop "
        f"{figures['loop_articles_per_s']} articles/s; ratio beam/loop {figures['ratio_vs_loop']:.2f} "
        f"(in CPU time {figures['cpu_ratio_vs_loop']:.2f}); peak RSS {figures['peak_rss_mb']:.0f} MB; "
        f"load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} CPUs"
    )
    target = FAST_TARGET if args.fast else DEFAULT_TARGET
    figures["target_articles_per_s"] = target
    figures["target_met"] = figures["articles_per_s"] >= target
    figures["target_ratio_met"] = figures["ratio_vs_loop"] >= RATIO_TARGET
    print(
        f"target >= {target:,} articles/s ({figures['mode']}): {'met' if figures['target_met'] else 'NOT met'}"
        + ("" if floor is None else f" (the job's own steps alone: {figures['floor_articles_per_s']} articles/s)")
        + f"; beam >= {RATIO_TARGET} x loop: {'met' if figures['target_ratio_met'] else 'NOT met'}"
    )
    finish(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
