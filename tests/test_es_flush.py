"""The flush interval: on a streaming runner the index step batches with Beam's timer-based
BatchElements (a partial batch is written after `es_flush_interval` seconds); bounded cycles keep
the plain batching, since their input ends and a processing-time timer cannot fire there."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.job import pipeline_config
from pipelines.pipeline import build
from pipelines.settings import Settings
from pipelines.transforms import PipelineConfig


def index_steps(args: list[str], config: PipelineConfig, tmp_path: Path) -> set[str]:
    records = tmp_path / "records.jsonl"
    records.write_text("{}\n")
    pipeline = beam.Pipeline(options=PipelineOptions(args))
    build(pipeline, str(records), config)
    transforms = pipeline.to_runner_api().components.transforms.values()
    return {t.unique_name for t in transforms if t.unique_name.startswith("Index/Batch/")}


@pytest.mark.parametrize(("args", "stateful"), [(["--streaming"], True), ([], False)])
def test_flush_interval_applies_to_streaming_pipelines(args: list[str], stateful: bool, tmp_path: Path) -> None:
    config = pipeline_config(Settings(es_flush_interval=2.0, data_dir=tmp_path))
    assert config.write_flush_interval == 2.0
    steps = index_steps(args, config, tmp_path)
    assert ("Index/Batch/ParDo(_StatefulBatchElementsDoFn)" in steps) is stateful
