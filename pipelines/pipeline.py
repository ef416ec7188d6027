"""The pipeline factory: one cycle's records in, enriched articles, alerts and dead letters out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import DebugOptions, PipelineOptions, StandardOptions, TypeOptions
from apache_beam.options.pipeline_options_context import scoped_pipeline_options
from apache_beam.runners.runner import PipelineResult
from apache_beam.transforms.environments import EmbeddedPythonEnvironment
from apache_beam.transforms.window import FixedWindows, GlobalWindows

from pipelines.coders import register_model_coders
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

    An unbounded input needs `dedupe_window_s`: GroupByKey (in DedupeById, and per subscription in
    DeliverAlerts) can only group an unbounded collection per window, so copies are merged and alerts
    gated within fixed event-time windows of that length, and the results go back to the global window
    afterwards (copies in different windows are upserts of one id; the store remembers earlier alerts)."""
    register_model_coders()  # the stages declare their models: Beam encodes and sizes them with ModelCoder
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
    if dedupe_window_s:  # DeliverAlerts groups by subscription: the same per-window grouping applies
        alerts = alerts | "AlertWindows" >> beam.WindowInto(FixedWindows(dedupe_window_s))
    undelivered = alerts | "DeliverAlerts" >> DeliverAlerts(config.store, config.channels)
    if dedupe_window_s:
        undelivered = undelivered | "DeadLettersGlobalWindow" >> beam.WindowInto(GlobalWindows())
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


class CyclePipeline:
    """The cycle pipeline built once per job process and run again each cycle on a fresh in-process
    FnApiRunner, over the same input file.

    Building the pipeline (applying the transforms, pickling every DoFn into the graph) was about 0.3 s of
    the 0.5 s a small cycle costs on the runner here (benchmarks/e2e_latency.py), and the graph changes only
    with the config. What Beam's FnApiRunner.run_pipeline does before running the graph is done once here.
    DoFns are still set up per run (each run has its own worker), so stores are opened and subscriptions
    reloaded every cycle, as before."""

    def __init__(self, input_path: Path, config: PipelineConfig, beam_args: Sequence[str] = ()) -> None:
        from apache_beam.runners.pipeline_utils import group_by_key_input_visitor
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        self.input_path = input_path
        self.options = pipeline_options(beam_args)
        debug = self.options.view_as(DebugOptions)
        debug.experiments = [*(debug.experiments or []), "beam_fn_api"]
        input_path.parent.mkdir(parents=True, exist_ok=True)
        input_path.write_text("", encoding="utf-8")  # ReadFromText checks the file exists when built
        environment = EmbeddedPythonEnvironment.default()
        pipeline = beam.Pipeline(runner=FnApiRunner(default_environment=environment), options=self.options)
        build(pipeline, str(input_path), config)
        deterministic = not self.options.view_as(TypeOptions).allow_non_deterministic_key_coders
        pipeline.visit(group_by_key_input_visitor(deterministic))
        self.proto = pipeline.to_runner_api(default_environment=environment)

    def run(self, records: Sequence[str]) -> PipelineResult:
        """One cycle: the records into the input file, the graph through a new runner; the result is done."""
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        with self.input_path.open("w", encoding="utf-8") as out:
            out.writelines(r + "\n" for r in records)
        try:
            with scoped_pipeline_options(self.options):
                return FnApiRunner().run_via_runner_api(self.proto, self.options)
        finally:
            self.input_path.write_text("", encoding="utf-8")


def reusable(beam_args: Sequence[str]) -> bool:
    """Whether the cycle can reuse its pipeline: only on the in-process runner (no --runner given)."""
    return not any(arg == "--runner" or arg.startswith("--runner=") for arg in beam_args)


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
