"""The streaming job: unbounded sources feeding the same composite transforms as the bounded cycle.

`newswatch run --streaming --runner PortableRunner|DataflowRunner ...` builds this pipeline:

    Impulse -> list partitions -> Reshuffle -> ReadPartitionFn (Splittable DoFn) -> record lines ─┐
    PeriodicImpulse -> (feed, tick) per feed -> PollFeedFn (state per feed: ETag, seen ids) ───────┴-> process_records

`process_records` (pipelines/pipeline.py) is the cycle pipeline's chain: ParseRecords, DedupeById (in fixed
windows, see there), SkipUnchanged, Enrich, WriteArticles, MatchSubscriptions, DeliverAlerts, the dead
letters. Kafka: one restriction per topic-partition, an OffsetRange over offsets claimed per message, the
watermark from message timestamps; the runner's checkpoints hold the residual offsets, and the group's
committed offsets are where a *new* job starts. Locally (FnApiRunner) Beam's streaming is weak (design.md):
windows fire only when the sources end and deferred restrictions are resumed at once, so a local run must be
bounded with `max_records`/`max_seconds`; it then commits the offsets only after the whole run succeeded.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import apache_beam as beam
from apache_beam.coders import StrUtf8Coder
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.runners.runner import PipelineResult, PipelineState
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.periodicsequence import PeriodicImpulse, RebaseMode
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.transforms.window import TimestampedValue
from apache_beam.typehints import Tuple
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Duration, Timestamp
from kafka import TopicPartition

from connectors.feed_state import state_from_json, state_to_json
from connectors.kafka import KafkaClientFactory, KafkaMessage, OffsetReset
from connectors.kafka_partitions import (
    MAX_OFFSET,
    PartitionFetcher,
    PartitionSpec,
    list_partitions,
    shared_group_offsets,
)
from connectors.rss import FeedFetcher, FeedState, FetchLimits, PollPolicy, read_feed_list
from connectors.store import open_store
from pipelines.kafka_source import kafka_clients, message_to_record
from pipelines.pipeline import pipeline_options, process_records
from pipelines.records import article_record, dead_letter_record
from pipelines.settings import Settings, SettingsError
from pipelines.subscriptions import load_subscriptions_file
from pipelines.transforms import NAMESPACE, PipelineConfig, counter
from schemas import content_hash
from seeds import SEEDS_DIR

log = logging.getLogger(__name__)

# finalize: when the runner finalizes a bundle (cluster runners); after_run: by the launcher once a local run has
# succeeded; none: never (a job that must not move the group's offsets).
CommitMode = Literal["finalize", "after_run", "none"]
OFFSET_GAUGE = "kafka_next_offset"  # gauge name prefix: kafka_next_offset:<topic>:<partition>
SEEDS_PREFIX = "seeds:"  # bundled feeds, resolved on the worker (its install path differs from the launcher's)


# --- Kafka: a Splittable DoFn over partitions ---


@dataclass(frozen=True)
class KafkaReadConfig:
    """What the Kafka readers need on the workers (picklable)."""

    clients: KafkaClientFactory
    topic: str
    group_id: str
    auto_offset_reset: OffsetReset = "earliest"
    max_message_bytes: int = 1024 * 1024
    poll_timeout_s: float = 1.0  # one fetch waits at most this long for messages
    idle_resume_s: float = 1.0  # with nothing to read, ask the runner to resume after this long
    idle_watermark_lag_s: float = 1.0  # a caught-up partition's watermark: now minus this
    max_records: int | None = None  # per partition: bounded (test) runs
    max_seconds: float | None = None  # from the start of the run: bounded (test) runs
    commit: CommitMode = "finalize"
    avg_message_bytes: int = 4096  # backlog size estimate for the runner (messages x this)


class PartitionOffsetTracker(OffsetRestrictionTracker):
    """OffsetRestrictionTracker that keeps a partition in one reader: it takes checkpoints (the residual
    [next offset, end) is resumed later) but refuses dynamic splits, which would cut an open-ended range
    at an offset that does not exist yet and read one partition out of order."""

    def try_split(self, fraction_of_remainder: float) -> Any:
        if fraction_of_remainder > 0:
            return None
        return super().try_split(fraction_of_remainder)

    def is_bounded(self) -> bool:
        return bool(self.current_restriction().stop != MAX_OFFSET)


def event_time(message: KafkaMessage, watermark: Timestamp | None) -> Timestamp:
    """The message's timestamp, never behind the reader's watermark: a late timestamp (producer clock
    skew, a caught-up partition's watermark moved to now) is moved up rather than dropped by a window."""
    stamp = Timestamp.of(message.timestamp / 1000) if message.timestamp is not None else Timestamp.now()
    return stamp if watermark is None or stamp >= watermark else watermark


# Beam reads these from process()'s defaults: the restriction comes from the DoFn itself (a RestrictionProvider),
# the watermark is set by hand from message timestamps.
_RESTRICTION = beam.DoFn.RestrictionParam()
_WATERMARK = beam.DoFn.WatermarkEstimatorParam(ManualWatermarkEstimator.default_provider())


class ReadPartitionFn(beam.DoFn, RestrictionProvider):
    """Splittable DoFn: one element per topic-partition, whose restriction is an OffsetRange of offsets.

    Restrictions: [committed offset, MAX_OFFSET), or [start, start + max_records) for a bounded run, sized
    by the backlog (log end - start) so runners can scale on it, dropped on drain (`truncate`). Processing
    reads from the restriction's start (a resumed residual starts where the last checkpoint left off),
    claims each message's offset, stamps it with its timestamp and moves the watermark along. After each
    fetch it checkpoints (`defer_remainder`): at once when messages came, after idle_resume_s when the
    partition was caught up, which also moves the watermark to about now so that an idle partition does
    not hold the others' windows back. Offsets are committed to the group once the runner has made the
    bundle's output durable (bundle finalization), or by the launcher after a local run succeeded."""

    def __init__(self, config: KafkaReadConfig) -> None:
        self.config = config
        self.fetcher: PartitionFetcher | None = None

    def _offsets(self) -> Any:
        c = self.config
        return shared_group_offsets(c.clients, c.group_id, c.auto_offset_reset)

    # --- RestrictionProvider ---

    def initial_restriction(self, spec: PartitionSpec) -> OffsetRange:
        start = self._offsets().start(spec.tp)
        stop = start + self.config.max_records if self.config.max_records else MAX_OFFSET
        log.info("kafka: %s:p%d starts at offset %d", spec.topic, spec.partition, start)
        return OffsetRange(start, stop)

    def create_tracker(self, restriction: OffsetRange) -> PartitionOffsetTracker:
        return PartitionOffsetTracker(restriction)

    def restriction_size(self, spec: PartitionSpec, restriction: OffsetRange) -> int:
        end = self._offsets().end(spec.tp)
        if end is None:
            return 0
        return max(0, min(restriction.stop, end) - restriction.start) * self.config.avg_message_bytes

    def truncate(self, spec: PartitionSpec, restriction: OffsetRange) -> OffsetRange | None:
        """On drain an open-ended restriction stops at once: the unread rest stays in Kafka, and the next
        job starts from the offsets committed for what was processed. A bounded one is finished."""
        return None if restriction.stop == MAX_OFFSET else restriction

    # --- DoFn ---

    def setup(self) -> None:
        self.fetcher = PartitionFetcher(self.config.clients, max_message_bytes=self.config.max_message_bytes)

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        spec: PartitionSpec,
        finalizer: Any = beam.DoFn.BundleFinalizerParam,  # positional for Beam: before the keyword-only params
        tracker: Any = _RESTRICTION,
        watermark: Any = _WATERMARK,
    ) -> Iterator[TimestampedValue]:
        assert self.fetcher is not None
        restriction = tracker.current_restriction()
        if spec.stop_at is not None and time.time() >= spec.stop_at:
            tracker.try_claim(restriction.stop)  # gives the rest up, as truncate does on drain
            return
        messages = self.fetcher.fetch(spec.tp, restriction.start, self.config.poll_timeout_s)
        claimed: int | None = None
        for message in messages:
            if not tracker.try_claim(message.offset):
                break  # the restriction ends before this offset (bounded run, or the runner split it)
            claimed = message.offset
            current = watermark.current_watermark()
            stamp = event_time(message, current)
            if current is None or stamp > current:
                watermark.set_watermark(stamp)
            counter("kafka_messages").inc()
            yield TimestampedValue(message, stamp)
        else:
            if claimed is not None:
                self._progress(spec, claimed + 1, finalizer)
            if not messages:
                idle = Timestamp.now() - Duration(seconds=self.config.idle_watermark_lag_s)
                current = watermark.current_watermark()
                if current is None or idle > current:
                    watermark.set_watermark(idle)
            tracker.defer_remainder(Duration(seconds=0 if messages else self.config.idle_resume_s))
            return
        if claimed is not None:
            self._progress(spec, claimed + 1, finalizer)

    def _progress(self, spec: PartitionSpec, next_offset: int, finalizer: Any) -> None:
        """Where this partition's reading got to: a gauge (the launcher of a local run commits from it), and
        with commit=finalize a commit once the runner made this bundle's output durable."""
        Metrics.gauge(NAMESPACE, f"{OFFSET_GAUGE}:{spec.topic}:{spec.partition}").set(next_offset)
        if self.config.commit == "finalize":
            offsets, tp = self._offsets(), spec.tp
            finalizer.register(lambda: offsets.commit({tp: next_offset}))

    def teardown(self) -> None:
        if self.fetcher is not None:
            self.fetcher.close()
            self.fetcher = None


class _ListPartitions(beam.DoFn):
    """At run time, not at construction (the graph builds without a broker): one element per partition."""

    def __init__(self, config: KafkaReadConfig) -> None:
        self.config = config

    def process(self, _: Any) -> Iterator[PartitionSpec]:
        stop_at = time.time() + self.config.max_seconds if self.config.max_seconds else None
        partitions = list_partitions(self.config.clients, self.config.topic)
        log.info("kafka: reading %s partitions %s", self.config.topic, partitions)
        for partition in partitions:
            yield PartitionSpec(self.config.topic, partition, stop_at)


class ReadFromKafka(beam.PTransform):
    """Unbounded: every partition of the topic as KafkaMessage elements stamped with message time."""

    def __init__(self, config: KafkaReadConfig) -> None:
        super().__init__()
        self.config = config

    def expand(self, pbegin: Any) -> Any:
        return (
            pbegin
            | "Impulse" >> beam.Impulse()
            | "ListPartitions" >> beam.ParDo(_ListPartitions(self.config))
            | "SpreadPartitions" >> beam.Reshuffle()
            # Declared: Beam 2.78 takes `TimestampedValue` in the process hint for the element type.
            | "ReadPartitions" >> beam.ParDo(ReadPartitionFn(self.config)).with_output_types(KafkaMessage)
        )


def kafka_offsets_from_metrics(result: PipelineResult) -> dict[TopicPartition, int]:
    """The next offset per partition the readers reached, from their gauges (local runs commit these)."""
    found: dict[TopicPartition, int] = {}
    for gauge in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["gauges"]:
        name = gauge.key.metric.name
        if not name.startswith(OFFSET_GAUGE + ":"):
            continue
        _, topic, partition = name.rsplit(":", 2)
        value = gauge.committed if gauge.committed is not None else gauge.attempted
        if value is not None and value.value is not None:
            tp = TopicPartition(topic, int(partition))
            found[tp] = max(found.get(tp, 0), int(value.value))
    return found


# --- RSS: PeriodicImpulse and per-feed state ---


@dataclass(frozen=True)
class FeedPollConfig:
    """What the feed pollers need on the workers (picklable)."""

    feeds: tuple[str, ...]
    tick_s: float = 300.0  # how often the impulse asks which feeds are due
    limits: FetchLimits = field(default_factory=FetchLimits)
    policy: PollPolicy = field(default_factory=PollPolicy)
    feed_dirs: tuple[str, ...] = ()
    max_seconds: float | None = None  # bounded (test) runs


def portable_feed(spec: str) -> str:
    """Bundled feeds as `seeds:feeds/x.xml`: the launcher's install path means nothing on a worker."""
    path = Path(spec)
    if not path.is_absolute():
        return spec
    try:
        return SEEDS_PREFIX + path.resolve().relative_to(SEEDS_DIR).as_posix()
    except ValueError:
        return spec


def local_feed(spec: str) -> str:
    return str(SEEDS_DIR / spec.removeprefix(SEEDS_PREFIX)) if spec.startswith(SEEDS_PREFIX) else spec


@dataclass(frozen=True)
class FeedMemory:
    """One feed's Beam state: its conditional-GET and schedule state, and the ids (with content hashes) of
    the entries last seen, so a changed feed emits only its new or edited entries."""

    state: FeedState | None = None
    seen: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"state": state_to_json(self.state) if self.state else None, "seen": self.seen})

    @classmethod
    def from_json(cls, doc: str | None) -> FeedMemory:
        if not doc:
            return cls()
        data = json.loads(doc)
        return cls(state_from_json(data["state"]) if data.get("state") else None, dict(data.get("seen") or {}))


def poll_due_feed(
    feed: str, memory: FeedMemory, fetcher: FeedFetcher, policy: PollPolicy, now: datetime
) -> tuple[list[str], FeedMemory] | None:
    """Poll one feed if it is due: the record lines to emit (new or changed entries, dead letters) and the
    memory to keep. None when not due. Plain function: the stateful DoFn only wires it to Beam state."""
    from connectors.rss import poll_feed

    if memory.state is not None and not memory.state.is_due(now):
        return None
    batch = poll_feed(local_feed(feed), memory.state, fetcher, policy, now)
    counter("feeds_polled").inc()
    if batch.not_modified:
        counter("feeds_not_modified").inc()
    hashes = {a.id: content_hash(a.title, a.text) for a in batch.articles}
    fresh = [a for a in batch.articles if memory.seen.get(a.id) != hashes[a.id]]
    records = [article_record(a) for a in fresh] + [dead_letter_record(d) for d in batch.dead_letters]
    seen = memory.seen if batch.not_modified or (not batch.articles and batch.dead_letters) else hashes
    return records, FeedMemory(batch.state or memory.state, seen)


_FEED_MEMORY = beam.DoFn.StateParam(ReadModifyWriteStateSpec("feed", StrUtf8Coder()))


class PollFeedFn(beam.DoFn):
    """Stateful, keyed by feed: each impulse polls the feed if it is due, with conditional GET from the
    state, and emits only entries not seen unchanged before. The state is the runner's (checkpointed with
    the outputs), so a restarted worker neither refetches nor re-emits; a replay after a failure re-emits at
    most one poll's entries, which the store's upsert by id absorbs."""

    def __init__(self, config: FeedPollConfig) -> None:
        self.config = config

    def setup(self) -> None:
        dirs = [SEEDS_DIR, Path.cwd(), *(Path(d) for d in self.config.feed_dirs)]
        self.fetcher = FeedFetcher(self.config.limits, allowed_dirs=dirs)

    def process(self, element: tuple[str, Any], memory: Any = _FEED_MEMORY) -> Iterator[str]:
        feed, _tick = element
        polled = poll_due_feed(feed, FeedMemory.from_json(memory.read()), self.fetcher, self.config.policy, _now())
        if polled is None:
            return
        records, kept = polled
        memory.write(kept.to_json())
        yield from records


def _now() -> datetime:
    return datetime.now(UTC)


class ReadFeedsPeriodically(beam.PTransform):
    """Unbounded: every tick_s a PeriodicImpulse asks each feed's poller whether the feed is due."""

    def __init__(self, config: FeedPollConfig) -> None:
        super().__init__()
        self.config = config

    def expand(self, pbegin: Any) -> Any:
        c = self.config
        now = Timestamp.now()
        if c.max_seconds:
            impulse = PeriodicImpulse(
                now, now + Duration(seconds=c.max_seconds), c.tick_s, rebase=RebaseMode.REBASE_ALL
            )
        else:
            impulse = PeriodicImpulse(now, MAX_TIMESTAMP, c.tick_s, rebase=RebaseMode.REBASE_START)
        feeds = c.feeds
        return (
            pbegin
            | "Ticks" >> impulse
            | "EachFeed"
            >> beam.FlatMap(lambda tick: [(feed, tick) for feed in feeds]).with_output_types(Tuple[str, Any])
            | "PollDueFeeds" >> beam.ParDo(PollFeedFn(c))
        )


# --- The job ---


@dataclass(frozen=True)
class StreamingConfig:
    kafka: KafkaReadConfig | None = None
    feeds: FeedPollConfig | None = None
    dedupe_window_s: float = 2.0

    @property
    def bounded(self) -> bool:
        k, f = self.kafka, self.feeds
        return (k is None or bool(k.max_records or k.max_seconds)) and (f is None or bool(f.max_seconds))


def build_streaming(pipeline: beam.Pipeline, streaming: StreamingConfig, config: PipelineConfig) -> None:
    """Sources -> record lines -> the cycle pipeline's transforms (process_records)."""
    branches = []
    if streaming.kafka is not None:
        kafka = streaming.kafka
        branches.append(
            pipeline
            | "ReadKafka" >> ReadFromKafka(kafka)
            | "KafkaRecords" >> beam.Map(message_to_record, kafka.max_message_bytes)
        )
    if streaming.feeds is not None:
        branches.append(pipeline | "ReadFeeds" >> ReadFeedsPeriodically(streaming.feeds))
    if not branches:
        raise SettingsError("sources: the streaming job needs rss, kafka or both")
    lines = branches[0] if len(branches) == 1 else tuple(branches) | "AllRecords" >> beam.Flatten()
    process_records(lines, config, dedupe_window_s=streaming.dedupe_window_s)


def has_runner(beam_args: Sequence[str]) -> bool:
    return any(arg == "--runner" or arg.startswith("--runner=") for arg in beam_args)


def create_streaming_pipeline(
    streaming: StreamingConfig, config: PipelineConfig, beam_args: Sequence[str] = ()
) -> beam.Pipeline:
    """The streaming pipeline on --runner, else (bounded runs only) the in-process FnApiRunner."""
    options = pipeline_options(beam_args)
    options.view_as(StandardOptions).streaming = True
    runner = None
    if not has_runner(beam_args):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        runner = FnApiRunner()
    pipeline = beam.Pipeline(runner=runner, options=options)
    build_streaming(pipeline, streaming, config)
    return pipeline


def streaming_config(
    settings: Settings,
    *,
    max_records: int | None = None,
    max_seconds: float | None = None,
    commit: CommitMode = "finalize",
    dedupe_window_s: float = 2.0,
) -> StreamingConfig:
    kafka = None
    if "kafka" in settings.sources:
        kafka = KafkaReadConfig(  # kafka_clients validates the security settings
            clients=kafka_clients(settings),
            topic=settings.kafka_topic,
            group_id=settings.kafka_group_id,
            auto_offset_reset=settings.kafka_auto_offset_reset,
            max_message_bytes=settings.kafka_max_message_bytes,
            max_records=max_records,
            max_seconds=max_seconds,
            commit=commit,
        )
    feeds = None
    if "rss" in settings.sources:
        feeds = FeedPollConfig(
            feeds=tuple(portable_feed(f) for f in read_feed_list(settings.feeds)),
            tick_s=min(settings.interval, settings.feed_interval),
            limits=FetchLimits(
                read_timeout_s=settings.fetch_timeout,
                total_timeout_s=settings.fetch_timeout * 2,
                max_bytes=settings.fetch_max_bytes,
                user_agent=settings.user_agent,
            ),
            policy=PollPolicy(
                interval=timedelta(seconds=settings.feed_interval),
                max_backoff=timedelta(seconds=settings.feed_max_backoff),
            ),
            feed_dirs=tuple(settings.feed_dirs),
            max_seconds=max_seconds,
        )
    return StreamingConfig(kafka=kafka, feeds=feeds, dedupe_window_s=dedupe_window_s)


def prepare_store(config: PipelineConfig, subscriptions_file: Path) -> None:
    """Create the store and load the default subscriptions into an empty one (as the cycle job does)."""
    store = open_store(config.store)
    try:
        added = store.seed_subscriptions(load_subscriptions_file(subscriptions_file))
        if added:
            log.info("loaded %d default subscription(s) from %s", added, subscriptions_file)
    finally:
        store.close()


def run_streaming(
    settings: Settings,
    beam_args: Sequence[str],
    *,
    max_records: int | None = None,
    max_seconds: float | None = None,
    detach: bool = False,
) -> int:
    """`newswatch run --streaming`: submit (remote runner) or run (local, bounded) the streaming job."""
    from pipelines.job import pipeline_config

    local = not has_runner(beam_args)
    if local and not (max_records or max_seconds):
        raise SettingsError(
            "--streaming without --runner runs on the in-process FnApiRunner, whose windows fire only when the "
            "sources end: bound the run with --max-records/--max-seconds, use a streaming runner "
            "(--runner PortableRunner/DataflowRunner, see deploy/flink and deploy/dataflow), or drop --streaming "
            "for the cycle-based job"
        )
    if not local and settings.sink == "sqlite":
        raise SettingsError(
            "sink (NEWSWATCH_SINK): a cluster runner's workers cannot share an embedded SQLite file; "
            "use --sink elasticsearch with --runner"
        )
    config = replace(pipeline_config(settings), subscriptions_refresh_s=60.0)
    streaming = streaming_config(
        settings, max_records=max_records, max_seconds=max_seconds, commit="after_run" if local else "finalize"
    )
    if local or settings.sink == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    prepare_store(config, settings.subscriptions_file)
    pipeline = create_streaming_pipeline(streaming, config, beam_args)
    log.info(
        "newswatch run --streaming: sources=%s sink=%s runner=%s%s",
        ",".join(settings.sources),
        settings.sink,
        type(pipeline.runner).__name__,
        f" (bounded: max_records={max_records} max_seconds={max_seconds})" if streaming.bounded else "",
    )
    result = pipeline.run()
    if detach and not local:
        log.info("submitted; not waiting (--detach). The job runs until cancelled or drained on the runner")
        return 0
    try:
        state = result.wait_until_finish()
    except KeyboardInterrupt:
        if not local:
            log.warning("stopped waiting; the job keeps running on the runner (cancel or drain it there)")
        raise
    if state not in (PipelineState.DONE, None):
        log.error("the streaming job ended in state %s", state)
        return 1
    if streaming.kafka is not None and streaming.kafka.commit == "after_run":
        commit_after_run(result, streaming.kafka)
    log.info("streaming run finished: %s", summary_line(result))
    return 0


def commit_after_run(result: PipelineResult, kafka: KafkaReadConfig) -> dict[TopicPartition, int]:
    """A local (bounded) run commits the offsets it reached only now that every sink has acknowledged."""
    offsets = kafka_offsets_from_metrics(result)
    if offsets:
        shared_group_offsets(kafka.clients, kafka.group_id, kafka.auto_offset_reset).commit(offsets)
        log.info("kafka: committed %s", ",".join(f"p{tp.partition}:{n}" for tp, n in sorted(offsets.items())))
    return offsets


def summary_line(result: PipelineResult) -> str:
    from pipelines.pipeline import counts

    c = counts(result)
    names = "kafka_messages feeds_polled feeds_not_modified read duplicates unchanged enriched new updated"
    names += " dead_letters alerts"
    return " ".join(f"{name}={c[name]}" for name in names.split())
