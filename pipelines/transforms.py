"""Beam composite transforms: each wires plain functions from pipelines/ and stores from connectors/."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.utils.windowed_value import WindowedValue

from connectors.alert_channels import AlertChannel, ConsoleChannel, JsonlFileChannel
from connectors.kafka import KafkaAlertChannel, KafkaPublisher, TopicTarget, dead_letter_message
from connectors.store import ArticleStore, RejectedDocument, StoreConfig, open_store
from pipelines.alerting import AlertGate, shared_matchers
from pipelines.delivery import DeliveryConfig, Dispatcher
from pipelines.enrich import EnrichConfig, enrichment_version
from pipelines.enrich.pool import BatchEnricher, EnrichFailure
from pipelines.records import normalize, parse_record, prefer
from schemas import Alert, Article, DeadLetter, RawArticle, Stage, content_hash

log = logging.getLogger(__name__)

NAMESPACE = "newswatch"
DEAD = "dead_letters"


def counter(name: str) -> Any:
    return Metrics.counter(NAMESPACE, name)


@dataclass(frozen=True)
class ChannelConfig:
    """Operator channels every alert goes to (subscriber channels come from the subscription)."""

    console: bool = True
    jsonl_path: str | None = None
    kafka: TopicTarget | None = None  # the alerts topic (key = subscription id)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)  # subscribers' webhook/kafka/email targets


@dataclass(frozen=True)
class PipelineConfig:
    store: StoreConfig = field(default_factory=StoreConfig)
    enrich: EnrichConfig = field(default_factory=EnrichConfig)
    channels: ChannelConfig = field(default_factory=ChannelConfig)
    reenrich: bool = False
    write_batch_size: int = 200
    write_flush_interval: float | None = None  # streaming: index a partial batch after this many seconds
    dead_letter_topic: TopicTarget | None = None  # Kafka-origin dead letters also go here, original bytes
    subscriptions_refresh_s: float | None = None  # streaming: reload subscriptions this often (cycles: per run)


def fixed_batches(size: int, max_wait_s: float | None = None) -> beam.PTransform:
    """Batches of `size` (fewer at a bundle's end, or after `max_wait_s` on an unbounded source).
    A fixed size, because Beam's adaptive sizing starts at one element and fits a regression of
    batch timings after every batch: small first transactions and ~0.1 ms per article spent sizing."""
    return beam.BatchElements(min_batch_size=size, max_batch_size=size, max_batch_duration_secs=max_wait_s)


def _error_letter(stage: Stage, element: Any, exc: BaseException) -> DeadLetter:
    payload = element.model_dump_json() if hasattr(element, "model_dump_json") else repr(element)
    source = getattr(element, "source", "") or ""
    return DeadLetter(
        stage=stage,
        reason=f"{type(exc).__name__}: {exc}",
        payload=payload,
        source=source,
        details={"article_id": getattr(element, "id", None)},
    )


class _StoreDoFn(beam.DoFn):
    """Opens its own store client per worker in setup(), closes it in teardown()."""

    def __init__(self, store: StoreConfig) -> None:
        self.store_config = store
        self.store: ArticleStore | None = None

    def setup(self) -> None:
        self.store = open_store(self.store_config)

    def teardown(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None


# --- Parse and normalize ---


class _RouteParsed(beam.DoFn):
    def process(self, line: str) -> Iterator[Any]:
        parsed = parse_record(line)
        if isinstance(parsed, DeadLetter):
            yield TaggedOutput(DEAD, parsed)
        else:
            counter("read").inc()
            yield parsed


class ParseRecords(beam.PTransform):
    """Record lines -> RawArticles, with undecodable or invalid ones on the dead-letter output."""

    def expand(self, lines: beam.PCollection[str]) -> Any:
        return lines | "ParseAndValidate" >> beam.ParDo(_RouteParsed()).with_output_types(RawArticle).with_outputs(
            DEAD, main="articles"
        )


class DedupeById(beam.PTransform):
    """One record per article id within a cycle (the same story in two feeds, a replayed message)."""

    def expand(self, articles: beam.PCollection[RawArticle]) -> beam.PCollection[RawArticle]:
        return (
            articles
            | "Normalize" >> beam.Map(normalize).with_output_types(RawArticle)
            | "KeyById" >> beam.Map(lambda a: (a.id, a)).with_output_types(tuple[str, RawArticle])
            | "GroupById" >> beam.GroupByKey()
            | "KeepOne" >> beam.MapTuple(_keep_one).with_output_types(RawArticle)
        )


def _keep_one(_: str, copies: Iterable[RawArticle]) -> RawArticle:
    items = list(copies)
    if len(items) > 1:
        counter("duplicates").inc(len(items) - 1)
    return functools.reduce(prefer, items)


class _DropUnchangedFn(_StoreDoFn):
    def __init__(self, store: StoreConfig, version: str) -> None:
        super().__init__(store)
        self.version = version

    def process(self, batch: list[RawArticle]) -> Iterator[RawArticle]:
        assert self.store is not None
        stored = self.store.stored_hashes(a.id for a in batch)
        for article in batch:
            known = stored.get(article.id)
            if known and known[0] == content_hash(article.title, article.text) and known[1] == self.version:
                counter("unchanged").inc()
                continue
            yield article


class SkipUnchanged(beam.PTransform):
    """Articles already stored with the same content and enrichment version are not enriched again."""

    def __init__(self, store: StoreConfig, enrich: EnrichConfig, disabled: bool = False) -> None:
        super().__init__()
        self.store, self.disabled = store, disabled
        self.version = enrichment_version(enrich)

    def expand(self, articles: beam.PCollection[RawArticle]) -> beam.PCollection[RawArticle]:
        if self.disabled:
            return articles
        return (
            articles
            | "Batch" >> fixed_batches(500)
            | "DropUnchanged" >> beam.ParDo(_DropUnchangedFn(self.store, self.version)).with_output_types(RawArticle)
        )


# --- Enrich ---


class _EnrichFn(beam.DoFn):
    """Articles go to the enrichment worker processes (pipelines/enrich/pool.py) in chunks as they
    arrive and come back in order, a few chunks later or in finish_bundle, each in its own window.
    The chunking is the pool's (BatchEnricher): it spreads a small bundle over every worker."""

    def __init__(self, config: EnrichConfig) -> None:
        self.config = config
        self.batches: BatchEnricher | None = None

    def setup(self) -> None:
        self.batches = BatchEnricher(self.config, self.config.workers)

    def process(
        self, raw: RawArticle, window: Any = beam.DoFn.WindowParam, timestamp: Any = beam.DoFn.TimestampParam
    ) -> Iterator[Any]:
        assert self.batches is not None
        for tags, raws, outcomes in self.batches.add(raw, (window, timestamp)):
            yield from _enrich_outputs(tags, raws, outcomes)

    def finish_bundle(self) -> Iterator[Any]:
        assert self.batches is not None
        for tags, raws, outcomes in self.batches.flush():
            yield from _enrich_outputs(tags, raws, outcomes)

    def teardown(self) -> None:
        if self.batches is not None:
            self.batches.close()
            self.batches = None


def _enrich_outputs(
    tags: Sequence[tuple[Any, Any]], raws: Sequence[RawArticle], outcomes: Sequence[Any]
) -> Iterator[Any]:
    enriched = 0
    for (window, timestamp), raw, outcome in zip(tags, raws, outcomes, strict=True):
        if isinstance(outcome, EnrichFailure):
            letter = DeadLetter(
                stage="enrich",
                reason=outcome.reason,
                payload=raw.model_dump_json(),
                source=raw.source or "",
                details={"article_id": raw.id},
            )
            yield TaggedOutput(DEAD, WindowedValue(letter, timestamp, (window,)))
        else:
            enriched += 1
            yield WindowedValue(outcome, timestamp, (window,))
    if enriched:
        counter("enriched").inc(enriched)


class Enrich(beam.PTransform):
    """RawArticle -> Article (entities, countries, places, regions, topics), in chunks for nlp.pipe
    and the worker processes."""

    def __init__(self, config: EnrichConfig) -> None:
        super().__init__()
        self.config = config

    def expand(self, articles: beam.PCollection[RawArticle]) -> Any:
        return articles | "EnrichBatch" >> beam.ParDo(_EnrichFn(self.config)).with_output_types(Article).with_outputs(
            DEAD, main="articles"
        )


# --- Index ---


class _WriteArticlesFn(_StoreDoFn):
    def process(self, batch: list[Article]) -> Iterator[Any]:
        assert self.store is not None
        # StoreUnavailable propagates: the cycle fails and commits nothing.
        for article, outcome in self.store.write_articles(batch):
            if isinstance(outcome, RejectedDocument):
                yield TaggedOutput(
                    DEAD,
                    DeadLetter(
                        stage="index",
                        reason=f"rejected by the store: {outcome}",
                        payload=article.model_dump_json(),
                        source=article.source,
                        details={"article_id": article.id},
                    ),
                )
                continue
            counter(outcome).inc()
            yield article


class WriteArticles(beam.PTransform):
    """Upsert by article id; emits the articles the store acknowledged."""

    def __init__(self, store: StoreConfig, batch_size: int = 200, flush_interval: float | None = None) -> None:
        super().__init__()
        self.store, self.batch_size, self.flush_interval = store, batch_size, flush_interval

    def expand(self, articles: beam.PCollection[Article]) -> Any:
        # The store splits each batch further by bytes; flush_interval bounds how long an unbounded
        # source's articles wait for a batch to fill (Beam's stateful batching).
        return (
            articles
            | "Batch" >> fixed_batches(self.batch_size, self.flush_interval)
            | "Upsert"
            >> beam.ParDo(_WriteArticlesFn(self.store)).with_output_types(Article).with_outputs(DEAD, main="articles")
        )


# --- Alerts ---


class _MatchFn(_StoreDoFn):
    def __init__(self, store: StoreConfig, refresh_s: float | None = None) -> None:
        super().__init__(store)
        self.refresh_s = refresh_s

    def setup(self) -> None:
        super().setup()
        # Checked per pipeline run, so subscription changes take effect from the next cycle (the matcher
        # itself is rebuilt only when they changed); a streaming job, which never ends, checks every
        # refresh_s seconds.
        self._load()

    def _load(self) -> None:
        assert self.store is not None
        self.matcher = shared_matchers.get(self.store_config, self.store)
        self.loaded_at = time.monotonic()

    def start_bundle(self) -> None:
        if self.refresh_s is not None and time.monotonic() - self.loaded_at >= self.refresh_s:
            self._load()

    def process(self, article: Article) -> Iterator[Alert]:
        yield from self.matcher.match(article)


class MatchSubscriptions(beam.PTransform):
    def __init__(self, store: StoreConfig, refresh_s: float | None = None) -> None:
        super().__init__()
        self.store, self.refresh_s = store, refresh_s

    def expand(self, articles: beam.PCollection[Article]) -> beam.PCollection[Alert]:
        return articles | "Match" >> beam.ParDo(_MatchFn(self.store, self.refresh_s)).with_output_types(Alert)


def build_channels(config: ChannelConfig) -> list[AlertChannel]:
    channels: list[AlertChannel] = []
    if config.console:
        channels.append(ConsoleChannel())
    if config.jsonl_path:
        channels.append(JsonlFileChannel(config.jsonl_path))
    if config.kafka is not None:
        channels.append(KafkaAlertChannel(config.kafka))
    return channels


class _GateAndDeliverFn(_StoreDoFn):
    """Per subscription: drop repeats, suppress near-duplicates, hold for digests, deliver the rest."""

    def __init__(self, store: StoreConfig, channels: ChannelConfig) -> None:
        super().__init__(store)
        self.channel_config = channels

    def setup(self) -> None:
        super().setup()
        assert self.store is not None
        self.gate = AlertGate(self.store)
        self.dispatcher = Dispatcher(build_channels(self.channel_config), self.channel_config.delivery)
        self.subscriptions = {s.id: s for s in self.store.list_subscriptions()}

    def process(self, keyed: tuple[str, Iterable[Alert]]) -> Iterator[DeadLetter]:
        assert self.store is not None
        subscription_id, alerts = keyed
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None:  # removed since matching started: keep what matched, visibly
            self.subscriptions = {s.id: s for s in self.store.list_subscriptions()}
            subscription = self.subscriptions.get(subscription_id)
        if subscription is None:
            for alert in alerts:
                cancelled = alert.model_copy(update={"status": "cancelled", "status_reason": "subscription removed"})
                if self.store.record_alert(cancelled):
                    counter("alerts_cancelled").inc()
            return
        result = self.gate.admit(subscription, alerts)
        for outcome, name in (
            ("delivered", "alerts"),
            ("repeated", "alerts_repeated"),
            ("suppressed", "alerts_suppressed"),
            ("pending", "alerts_pending"),
        ):
            if result.counts[outcome]:
                counter(name).inc(result.counts[outcome])
        for alert in result.recorded:
            if alert.status == "suppressed":
                log.info(
                    "alert suppressed subscription=%s article=%s: %s",
                    alert.subscription_id,
                    alert.article_id,
                    alert.status_reason,
                )
        for alert in result.to_deliver:
            yield from self.dispatcher.deliver(subscription, alert)

    def teardown(self) -> None:
        dispatcher = getattr(self, "dispatcher", None)
        if dispatcher is not None:
            dispatcher.close()
        super().teardown()


class DeliverAlerts(beam.PTransform):
    """Group alerts by subscription, record each once per (subscription, article) with its status
    (delivered, pending for a digest, suppressed as a near-duplicate), deliver; failures are dead letters."""

    def __init__(self, store: StoreConfig, channels: ChannelConfig) -> None:
        super().__init__()
        self.store, self.channels = store, channels

    def expand(self, alerts: beam.PCollection[Alert]) -> beam.PCollection[DeadLetter]:
        return (
            alerts
            | "KeyBySubscription" >> beam.Map(lambda a: (a.subscription_id, a)).with_output_types(tuple[str, Alert])
            | "GroupBySubscription" >> beam.GroupByKey()
            | "GateAndDeliver" >> beam.ParDo(_GateAndDeliverFn(self.store, self.channels)).with_output_types(DeadLetter)
        )


# --- Dead letters ---


class _WriteDeadLettersFn(_StoreDoFn):
    # A sink: it yields nothing. Typed as an iterator because Beam (2.78+) rejects a `None` return hint.
    def process(self, batch: list[DeadLetter]) -> Iterator[None]:
        assert self.store is not None
        self.store.write_dead_letters(batch)
        for letter in batch:
            counter("dead_letters").inc()
            counter(f"dead_letters_{letter.stage}").inc()
            log.warning("dead letter stage=%s source=%s reason=%s", letter.stage, letter.source or "-", letter.reason)
        yield from ()


class WriteDeadLetters(beam.PTransform):
    def __init__(self, store: StoreConfig) -> None:
        super().__init__()
        self.store = store

    def expand(self, letters: beam.PCollection[DeadLetter]) -> Any:
        return letters | "Batch" >> fixed_batches(500) | "Write" >> beam.ParDo(_WriteDeadLettersFn(self.store))


# --- Kafka dead-letter topic ---


class _PublishDeadLettersFn(beam.DoFn):
    """Sends Kafka-origin dead letters to the dead-letter topic; finish_bundle waits for the broker's
    acknowledgements and raises otherwise, so the cycle fails and commits no offsets."""

    def __init__(self, target: TopicTarget) -> None:
        self.target = target
        self.publisher: KafkaPublisher | None = None

    def setup(self) -> None:
        self.publisher = KafkaPublisher(self.target)

    def process(self, letter: DeadLetter) -> Iterator[None]:
        assert self.publisher is not None
        message = dead_letter_message(letter)
        if message is not None:
            self.publisher.send(message)
        yield from ()

    def finish_bundle(self) -> None:
        assert self.publisher is not None
        counter("dead_letters_kafka").inc(self.publisher.flush())

    def teardown(self) -> None:
        if self.publisher is not None:
            self.publisher.close()
            self.publisher = None


class PublishDeadLetters(beam.PTransform):
    """Kafka messages the job could not use -> the dead-letter topic (others are only in the store)."""

    def __init__(self, target: TopicTarget) -> None:
        super().__init__()
        self.target = target

    def expand(self, letters: beam.PCollection[DeadLetter]) -> Any:
        return letters | "Publish" >> beam.ParDo(_PublishDeadLettersFn(self.target))
