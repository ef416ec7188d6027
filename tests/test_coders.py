"""Beam's coders for our models: every stage that carries them declares them, so Beam sizes them cheaply."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam import typehints

from pipelines.coders import MODELS, ModelCoder, estimate_size, register_model_coders
from pipelines.enrich import EnrichConfig, shared_enricher
from pipelines.pipeline import create_pipeline
from pipelines.transforms import PipelineConfig
from schemas import Article, RawArticle
from tests.conftest import SEED_TITLE


def _element_types(pipeline: beam.Pipeline) -> dict[str, Any]:
    found: dict[str, Any] = {}

    class Visitor(beam.pipeline.PipelineVisitor):  # type: ignore[misc]
        def visit_transform(self, node: Any) -> None:
            for tag, output in node.outputs.items():
                found[f"{node.full_label}[{tag}]"] = output.element_type

    pipeline.visit(Visitor())
    return found


def _uses_model_coder(coder: beam.coders.Coder) -> bool:
    return isinstance(coder, ModelCoder) or any(_uses_model_coder(c) for c in coder._get_component_coders())


def test_the_stages_that_carry_articles_and_alerts_declare_them(tmp_path: Path) -> None:
    records = tmp_path / "records.jsonl"
    records.write_text("")
    types = _element_types(create_pipeline(str(records), PipelineConfig()))
    expected = {
        "Dedupe/GroupById[None]": typehints.Tuple[str, typehints.Iterable[RawArticle]],
        "SkipUnchanged/Batch/ParDo(_GlobalWindowsBatchingDoFn)[None]": typehints.List[RawArticle],
        "Enrich/EnrichBatch/ParDo(_EnrichFn)[None]": Article,
        "Index/Batch/ParDo(_GlobalWindowsBatchingDoFn)[None]": typehints.List[Article],
        "Index/Upsert/ParDo(_WriteArticlesFn)[None]": Article,
    }
    for label, element_type in expected.items():
        assert types[label] == element_type, label
        assert _uses_model_coder(beam.coders.registry.get_coder(element_type)), label
    model_types = [t for t in types.values() if any(m.__name__ in str(t) for m in MODELS)]
    # Parse to deliver: 14 steps carry models (the dead-letter side outputs stay untyped: few and small).
    assert len(model_types) == 14, types


def test_model_coder_round_trips_and_estimates_without_encoding(seed_text: str) -> None:
    raw = RawArticle(title=SEED_TITLE, text=seed_text, url="https://news.example.com/seed")
    article = shared_enricher(EnrichConfig(use_model=False)).enrich(raw)
    coder = ModelCoder()
    for value in (raw, article):
        encoded = coder.encode(value)
        assert coder.decode(encoded) == value
        # An estimate for Beam's byte counters: the right order of magnitude is all they need.
        assert len(encoded) / 4 <= estimate_size(value) <= len(encoded) * 4
    assert len(article.entities) > 5 and estimate_size(article) > estimate_size(raw)
    register_model_coders()
    batch = beam.coders.registry.get_coder(typehints.List[Article]).get_impl()
    size, _ = batch.get_estimated_size_and_observables([article] * 200)
    assert size >= 200 * estimate_size(article)
