"""The continuous ingestion job: bounded cycles of read -> pipeline -> commit, until stopped."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from apache_beam.runners.runner import PipelineState

from connectors.feed_state import FeedStateStore
from connectors.rss import FeedBatch, FeedFetcher, FetchLimits, PollPolicy, poll_feed, read_feed_list
from connectors.store import StoreUnavailable, open_store
from pipelines.alerting import ReleaseReport, release_pending
from pipelines.delivery import Dispatcher, delivery_config
from pipelines.enrich import EnrichConfig
from pipelines.enrich.pool import EnrichPool, acquire_pool, release_pool
from pipelines.pipeline import CyclePipeline, PipelineCounts, counts, create_pipeline, reusable
from pipelines.records import article_record, dead_letter_record
from pipelines.settings import Settings
from pipelines.stores import store_config
from pipelines.subscriptions import load_subscriptions_file
from pipelines.transforms import ChannelConfig, PipelineConfig, build_channels
from seeds import SEEDS_DIR

log = logging.getLogger(__name__)


class CycleFailed(Exception):
    """A cycle did not complete; nothing it read was committed, so the next cycle reads it again."""


@dataclass
class SourceBatch:
    """What one source read in a cycle; `commit` runs only after every sink acknowledged."""

    source: str
    records: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    commit: Callable[[], None] = lambda: None
    backlog: bool = False  # the source held more than one cycle reads (a capped Kafka read): go on at once


class Source(Protocol):
    name: str

    def poll(self, force: bool = False) -> SourceBatch: ...

    def close(self) -> None: ...


class RssSource:
    """Polls the feeds that are due (all of them with force), in parallel, with conditional GET."""

    name = "rss"

    def __init__(
        self, feeds: Sequence[str], fetcher: FeedFetcher, policy: PollPolicy, state: FeedStateStore, workers: int = 8
    ) -> None:
        self.feeds, self.fetcher, self.policy, self.state, self.workers = list(feeds), fetcher, policy, state, workers

    def poll(self, force: bool = False) -> SourceBatch:
        now = datetime.now(UTC)
        states = self.state.get_all()
        due = [f for f in self.feeds if force or f not in states or states[f].is_due(now)]
        log.info(
            "polling %d feed(s)%s",
            len(due),
            f" ({len(self.feeds) - len(due)} not due yet)" if len(due) < len(self.feeds) else "",
        )
        with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(due) or 1))) as pool:
            batches: list[FeedBatch] = list(
                pool.map(lambda f: poll_feed(f, states.get(f), self.fetcher, self.policy, now), due)
            )
        records: list[str] = []
        for batch in batches:
            records += [article_record(a) for a in batch.articles]
            records += [dead_letter_record(d) for d in batch.dead_letters]
            if batch.articles or not batch.not_modified:
                log.info(
                    "feed=%s entries=%d dead_letters=%d%s",
                    batch.url,
                    len(batch.articles),
                    len(batch.dead_letters),
                    " (not modified)" if batch.not_modified else "",
                )
        new_states = [b.state for b in batches if b.state is not None]
        stats = {
            "feeds": len(due),
            "not_modified": sum(b.not_modified for b in batches),
            "failed": sum(1 for b in batches if not b.articles and b.dead_letters),
        }
        return SourceBatch(self.name, records, stats, commit=lambda: self.state.save(new_states))

    def close(self) -> None:
        self.state.close()


@dataclass
class CycleSummary:
    number: int
    seconds: float
    source_stats: dict[str, dict[str, Any]]
    counts: PipelineCounts
    released: ReleaseReport = field(default_factory=ReleaseReport)
    backlog: bool = False

    def line(self) -> str:
        c = self.counts
        parts = [f"cycle={self.number}", f"seconds={self.seconds:.1f}"]
        for name, stats in self.source_stats.items():
            parts += [f"{name}.{k}={v}" for k, v in stats.items() if not isinstance(v, dict)]
        parts += [f"{k}={c[k]}" for k in ("read", "duplicates", "unchanged", "enriched", "new", "updated")]
        parts += [f"dead_letters={c['dead_letters']}", f"alerts={c['alerts']}"]
        parts += [f"{k}={c[k]}" for k in ("alerts_suppressed", "alerts_pending", "alerts_repeated")]
        parts += [f"digests={self.released.digests}", f"alerts_digested={self.released.alerts}"]
        return " ".join(parts)


def pipeline_config(settings: Settings) -> PipelineConfig:
    from pipelines.kafka_source import alerts_target, dead_letter_target

    return PipelineConfig(
        store=store_config(settings),
        enrich=EnrichConfig(
            use_model=not settings.fast,
            model_name=settings.spacy_model,
            ner_max_chars=settings.ner_max_chars,
            workers=settings.enrich_workers,
        ),
        channels=ChannelConfig(
            console=settings.console_alerts,
            jsonl_path=str(settings.alerts_file) if settings.alerts_file else None,
            kafka=alerts_target(settings),
            delivery=delivery_config(settings),
        ),
        reenrich=settings.reenrich,
        write_flush_interval=settings.es_flush_interval,
        dead_letter_topic=dead_letter_target(settings),
    )


def allowed_feed_dirs(settings: Settings) -> list[Path]:
    """seeds/, the working directory (unless it is the filesystem root, where services often start: that
    would allow every file) and NEWSWATCH_FEED_DIRS."""
    cwd = Path.cwd()
    return [SEEDS_DIR, *([cwd] if cwd != Path(cwd.anchor) else []), *(Path(d) for d in settings.feed_dirs)]


def build_sources(settings: Settings) -> list[Source]:
    sources: list[Source] = []
    if "rss" in settings.sources:
        fetcher = FeedFetcher(
            FetchLimits(
                read_timeout_s=settings.fetch_timeout,
                total_timeout_s=settings.fetch_timeout * 2,
                max_bytes=settings.fetch_max_bytes,
                user_agent=settings.user_agent,
            ),
            allowed_dirs=allowed_feed_dirs(settings),
        )
        policy = PollPolicy(
            interval=timedelta(seconds=settings.feed_interval), max_backoff=timedelta(seconds=settings.feed_max_backoff)
        )
        sources.append(
            RssSource(
                read_feed_list(settings.feeds),
                fetcher,
                policy,
                FeedStateStore(settings.state_path),
                workers=settings.fetch_workers,
            )
        )
    if "kafka" in settings.sources:
        from pipelines.kafka_source import KafkaSource

        sources.append(KafkaSource.from_settings(settings))
    return sources


class CycleRunner:
    """Runs one cycle at a time: read every source, run the pipeline over it, then commit."""

    def __init__(self, settings: Settings, sources: Sequence[Source], beam_args: Sequence[str] = ()) -> None:
        self.settings = settings
        self.sources = list(sources)
        self.config = pipeline_config(settings)
        self.beam_args = list(beam_args)
        self.cycles = 0
        self.work_dir = settings.data_dir / "cycles"
        self._pipeline: CyclePipeline | None = None  # built on first use, reused by every cycle
        # The job holds the enrichment pool for its life: each cycle's DoFns acquire and release it,
        # and without this hold the last release of a cycle would stop the workers, to be forked again.
        self._pool: EnrichPool | None = None

    def prepare(self) -> None:
        """Create the store and load the default subscriptions on first use; start the enrichment workers."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        if self._pool is None and reusable(self.beam_args):
            self._pool = acquire_pool(self.config.enrich, self.config.enrich.workers)
        store = open_store(self.config.store)
        try:
            added = store.seed_subscriptions(load_subscriptions_file(self.settings.subscriptions_file))
            if added:
                log.info("loaded %d default subscription(s) from %s", added, self.settings.subscriptions_file)
        finally:
            store.close()

    def run_cycle(self, force: bool = False) -> CycleSummary:
        self.cycles += 1
        started = time.monotonic()
        batches = [source.poll(force=force) for source in self.sources]
        records = [r for b in batches for r in b.records]
        result_counts = PipelineCounts()
        if records:
            result_counts = self._run_pipeline(records)
        for batch in batches:
            batch.commit()
        released = self.release_pending()
        return CycleSummary(
            self.cycles,
            time.monotonic() - started,
            {b.source: b.stats for b in batches},
            result_counts,
            released,
            backlog=any(b.backlog for b in batches),
        )

    def release_pending(self) -> ReleaseReport:
        """At the cycle boundary: send the digests that are due (also in cycles that read nothing)."""
        try:
            store = open_store(self.config.store)
        except StoreUnavailable as exc:
            log.error("cannot release pending alerts: %s", exc)
            return ReleaseReport()
        dispatcher = Dispatcher(build_channels(self.config.channels), self.config.channels.delivery)
        try:
            subscriptions = {s.id: s for s in store.list_subscriptions()}
            report = release_pending(store, dispatcher, subscriptions)
            if report.dead_letters:
                store.write_dead_letters(report.dead_letters)
            return report
        except Exception as exc:  # after the commit: a failure here must not stop the job (they stay pending)
            log.error("releasing pending alerts failed: %s; they stay pending", one_line(exc))
            return ReleaseReport()
        finally:
            dispatcher.close()
            store.close()

    def _run_pipeline(self, records: list[str]) -> PipelineCounts:
        if reusable(self.beam_args):
            return self._run_reused(records)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=f"cycle-{self.cycles}-", suffix=".jsonl", dir=self.work_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.writelines(r + "\n" for r in records)
            log.info("processing %d record(s) through the pipeline", len(records))
            try:
                result = create_pipeline(path, self.config, self.beam_args).run()
                state = result.wait_until_finish()
            except Exception as exc:
                raise _cycle_failure(exc) from exc
            if state not in (PipelineState.DONE, None):
                raise CycleFailed(f"pipeline ended in state {state}")
            return counts(result)
        finally:
            Path(path).unlink(missing_ok=True)

    def _run_reused(self, records: list[str]) -> PipelineCounts:
        """On the in-process runner: the pipeline built once (per process: the input file is this process's)."""
        log.info("processing %d record(s) through the pipeline", len(records))
        try:
            if self._pipeline is None:
                path = self.work_dir / f"cycle-{os.getpid()}.jsonl"
                self._pipeline = CyclePipeline(path, self.config, self.beam_args)
            result = self._pipeline.run(records)
        except Exception as exc:
            raise _cycle_failure(exc) from exc
        if result.state not in (PipelineState.DONE, None):
            raise CycleFailed(f"pipeline ended in state {result.state}")
        return counts(result)

    def close(self) -> None:
        for source in self.sources:
            source.close()
        pool, self._pool = self._pool, None
        release_pool(pool)
        if self._pipeline is not None:
            self._pipeline.input_path.unlink(missing_ok=True)


def _cycle_failure(exc: Exception) -> CycleFailed | KeyboardInterrupt:
    """What a pipeline run's exception means for the job: the store is away, the pipeline failed, or a
    second SIGTERM/Ctrl-C arrived inside a DoFn (wrapped by Beam): then the job stops at once."""
    if isinstance(exc, StoreUnavailable):
        return CycleFailed(f"store unavailable: {exc}")
    cause = _root_cause(exc)
    if isinstance(cause, KeyboardInterrupt):
        return KeyboardInterrupt()
    return CycleFailed(f"pipeline failed: {type(cause).__name__}: {cause}")


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None or exc.__context__ is not None:
        nxt = exc.__cause__ or exc.__context__
        assert nxt is not None
        exc = nxt
    return exc


def one_line(exc: BaseException) -> str:
    """An error as one log line (Beam appends tracebacks to some messages): greppable, never multi-line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def next_wait(summary: CycleSummary, interval: float) -> float:
    """Cycles start every `interval` seconds (a cycle longer than that is followed at once), and at once
    while a source has a backlog: a job that fell behind catches up at full speed."""
    if summary.backlog:
        return 0.0
    return max(0.0, interval - summary.seconds)


def run_forever(runner: CycleRunner, interval: float, stop: threading.Event, max_failure_wait: float = 300.0) -> int:
    """Cycle until `stop` is set; a failed cycle is retried after a capped, growing wait."""
    failures = 0
    while not stop.is_set():
        try:
            summary = runner.run_cycle()
        except CycleFailed as exc:
            failures += 1
            wait = min(max_failure_wait, 2.0**failures)
            then = "stopping" if stop.is_set() else f"retrying in {wait:.0f}s"
            log.error("cycle %d failed (%s); nothing committed; %s", runner.cycles, one_line(exc), then)
        else:
            failures = 0
            wait = next_wait(summary, interval)
            log.info("%s", summary.line())
        if stop.wait(wait):
            break
    return 0
