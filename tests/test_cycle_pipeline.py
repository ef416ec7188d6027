"""The cycle pipeline built once and run again every cycle (pipelines/pipeline.py CyclePipeline): each run sees
only its own records, counts are per run, and what DoFns load in setup() (subscriptions) is fresh per run."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.sqlite_store import SqliteStore
from connectors.store import StoreConfig
from pipelines.enrich import EnrichConfig
from pipelines.job import CycleSummary, next_wait
from pipelines.pipeline import CyclePipeline, PipelineCounts, counts, reusable
from pipelines.records import article_record
from pipelines.subscriptions import load_subscriptions_file, subscription_from_options
from pipelines.transforms import ChannelConfig, PipelineConfig
from schemas import RawArticle
from seeds import seed_path

pytestmark = pytest.mark.slow

# Distinct stories: the alert gate suppresses near-duplicates of one story within its realert window.
STORIES = {
    1: ("U.S. troops leave Kirkuk base", "U.S. troops began withdrawing from the base near Kirkuk in Iraq on Monday."),
    2: ("Iraq asks coalition to pull out", "Baghdad formally asked the coalition to pull out its soldiers from Iraq."),
    3: (
        "Marines depart Anbar garrison",
        "The last Marines withdrew from the Anbar garrison in western Iraq and Kirkuk.",
    ),
}


def record(n: int) -> str:
    title, text = STORIES[n]
    return article_record(RawArticle(title=title, text=text, url=f"https://c.example/{n}"))


def test_one_built_pipeline_runs_every_cycle_with_fresh_inputs_counts_and_subscriptions(tmp_path: Path) -> None:
    store = StoreConfig(sqlite_path=str(tmp_path / "newswatch.db"))
    with SqliteStore(store.sqlite_path) as db:
        db.seed_subscriptions(load_subscriptions_file(seed_path("subscriptions.yaml")))
    config = PipelineConfig(store=store, enrich=EnrichConfig(use_model=False), channels=ChannelConfig(console=False))
    cycle = CyclePipeline(tmp_path / "cycles" / "cycle-1.jsonl", config)
    proto = cycle.proto

    first = counts(cycle.run([record(1), record(2), "not a record"]))
    assert (first["read"], first["new"], first["dead_letters"]) == (2, 2, 1)
    assert first["alerts"] == 4  # both default subscriptions, two articles
    assert cycle.input_path.read_text() == ""  # the input is emptied after each run

    with SqliteStore(store.sqlite_path) as db:  # a subscription added between cycles
        db.put_subscription(subscription_from_options("Kirkuk", query='"Kirkuk"', subscription_id="kirkuk"))
    second = counts(cycle.run([record(3), record(1)]))
    assert (second["read"], second["new"], second["unchanged"]) == (2, 1, 1)
    assert second["alerts"] == 3  # article 3: two defaults + the new one; article 1 is unchanged
    assert cycle.proto is proto

    with SqliteStore(store.sqlite_path) as db:
        assert {a.subscription_id for a in db.list_alerts()} == {"troop-withdrawal", "troop-withdrawal-iraq", "kirkuk"}
        assert len(list(db.iter_articles())) == 3


def test_only_the_in_process_runner_reuses_the_pipeline() -> None:
    assert reusable([]) and reusable(["--experiments=x"])
    assert not reusable(["--runner", "DirectRunner"]) and not reusable(["--runner=PortableRunner"])


def test_cycles_start_every_interval_and_at_once_on_a_backlog() -> None:
    def summary(seconds: float, backlog: bool = False) -> CycleSummary:
        return CycleSummary(1, seconds, {}, PipelineCounts(), backlog=backlog)

    assert next_wait(summary(10.0), 300.0) == 290.0  # a cycle every 5 minutes, not 5 minutes after each
    assert next_wait(summary(1.3), 0.5) == 0.0  # fell behind: the next cycle starts at once
    assert next_wait(summary(0.1, backlog=True), 300.0) == 0.0  # more than one cycle's worth is waiting
