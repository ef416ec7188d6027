"""The pipeline factory: one cycle's records in, enriched articles, alerts and dead letters out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineResult
from apache_beam.transforms.window import FixedWindows, GlobalWindows

from pipelines.transforms import (
    NAMESPACE,
    DedupeById,
    DeliverAlerts,
    Enrich,
    MatchSubscriptions,
    ParseRecords,
    PipelineConfig,
    PublishDeadLetters,
    SkipUnchanged,
    WriteArticles,
    WriteDeadLetters,
)

log = logging.getLogger(__name__)


def build(pipeline: beam.Pipeline, input_pattern: str, config: PipelineConfig) -> None:
    """read -> parse -> normalize/dedupe -> skip unchanged -> enrich -> index -> match -> deliver,
    with every step that can fail feeding the dead-letter sink."""
    lines = pipeline | "ReadRecords" >> beam.io.ReadFromText(input_pattern)
    process_records(lines, config)


def process_records(lines: beam.PCollection[str], config: PipelineConfig, dedupe_window_s: float | None = None) -> None:
    """Everything after the read, shared by the bounded cycle and the streaming job (pipelines/streaming.py).

    An unbounded input needs `dedupe_window_s`: GroupByKey (in DedupeById) can only group an unbounded
    collection per window, so copies are merged within fixed event-time windows of that length, and the
    articles go back to the global window afterwards (copies in different windows are upserts of one id)."""
    parsed = lines | "Parse" >> ParseRecords()
    articles = parsed.articles
    if dedupe_window_s:
        articles = articles | "DedupeWindows" >> beam.WindowInto(FixedWindows(dedupe_window_s))
    unique = articles | "Dedupe" >> DedupeById()
    if dedupe_window_s:
        unique = unique | "GlobalWindow" >> beam.WindowInto(GlobalWindows())
    fresh = unique | "SkipUnchanged" >> SkipUnchanged(config.store, config.enrich, disabled=config.reenrich)
    enriched = fresh | "Enrich" >> Enrich(config.enrich)
    # The flush interval bounds how long articles of an unbounded source wait for a batch; bounded
    # cycles end their batches themselves (and Beam's timer-based batching needs a streaming runner).
    streaming = lines.pipeline.options.view_as(StandardOptions).streaming
    flush = config.write_flush_interval if streaming else None
    written = enriched.articles | "Index" >> WriteArticles(config.store, config.write_batch_size, flush)
    alerts = written.articles | "MatchSubscriptions" >> MatchSubscriptions(
        config.store, refresh_s=config.subscriptions_refresh_s
    )
    undelivered = alerts | "DeliverAlerts" >> DeliverAlerts(config.store, config.channels)
    letters = (parsed.dead_letters, enriched.dead_letters, written.dead_letters, undelivered)
    dead = letters | "AllDeadLetters" >> beam.Flatten()
    dead | "DeadLetters" >> WriteDeadLetters(config.store)
    if config.dead_letter_topic is not None:
        dead | "DeadLetterTopic" >> PublishDeadLetters(config.dead_letter_topic)


def pipeline_options(beam_args: Sequence[str] = ()) -> PipelineOptions:
    return PipelineOptions(list(beam_args), save_main_session=False)


def create_pipeline(input_pattern: str, config: PipelineConfig, beam_args: Sequence[str] = ()) -> beam.Pipeline:
    """A pipeline on the runner named by --runner, else the in-process FnApiRunner (pinned: the
    DirectRunner would try to download Prism first, which fails offline)."""
    options = pipeline_options(beam_args)
    runner = None
    if not any(arg == "--runner" or arg.startswith("--runner=") for arg in beam_args):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        runner = FnApiRunner()
    pipeline = beam.Pipeline(runner=runner, options=options)
    build(pipeline, input_pattern, config)
    return pipeline


@dataclass
class PipelineCounts:
    values: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, name: str) -> int:
        return self.values.get(name, 0)


def counts(result: PipelineResult) -> PipelineCounts:
    """The newswatch counters of a finished run (committed values where the runner has them)."""
    found: dict[str, int] = {}
    for metric in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = metric.committed if metric.committed is not None else metric.attempted
        found[metric.key.metric.name] = found.get(metric.key.metric.name, 0) + int(value or 0)
    return PipelineCounts(found)
