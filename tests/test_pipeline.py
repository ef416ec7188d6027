"""The Beam pipeline on the pinned local runner, from a records file to the store."""

from __future__ import annotations

import json
from pathlib import Path

from connectors.sqlite_store import SqliteStore
from connectors.store import StoreConfig
from pipelines.enrich import EnrichConfig
from pipelines.pipeline import PipelineCounts, counts, create_pipeline
from pipelines.records import article_record, message_record
from pipelines.transforms import ChannelConfig, PipelineConfig
from schemas import RawArticle, Subscription
from tests.conftest import SEED_TITLE


def _run(records: list[str], tmp_path: Path, **config: object) -> tuple[SqliteStore, PipelineCounts]:
    path = tmp_path / "records.jsonl"
    path.write_text("".join(r + "\n" for r in records))
    store_config = StoreConfig(sqlite_path=str(tmp_path / "nw.db"))
    store = SqliteStore(store_config.sqlite_path)
    store.seed_subscriptions([Subscription(id="tw", name="Troop withdrawal", rule={"topic": "troop_withdrawal"})])
    pipeline_config = PipelineConfig(
        store=store_config,
        enrich=EnrichConfig(use_model=False),
        channels=ChannelConfig(console=False, jsonl_path=str(tmp_path / "alerts.jsonl")),
        **config,
    )  # type: ignore[arg-type]
    result = create_pipeline(str(path), pipeline_config).run()
    result.wait_until_finish()
    return store, counts(result)


def test_pipeline_enriches_dedupes_alerts_and_dead_letters(tmp_path: Path, seed_text: str) -> None:
    seed = RawArticle(title=SEED_TITLE, text=seed_text, url="https://news.example.com/seed")
    copy = RawArticle(title=SEED_TITLE, text=seed_text, url="https://news.example.com/seed/?utm_source=x")
    other = RawArticle(
        title="Earthquake strikes Japan",
        text="A magnitude 7 quake hit near Tokyo.",
        url="https://news.example.com/quake",
    )
    records = [
        article_record(seed),
        article_record(copy),
        article_record(other),
        message_record(b'{"title": "broken', source="kafka:t/0/7"),
        message_record(json.dumps({"title": "", "text": ""}).encode(), source="kafka:t/0/8"),
        message_record(b"\xff\xfe", source="kafka:t/1/3"),
        "this is not a record",
    ]
    store, c = _run(records, tmp_path)
    assert c["read"] == 3 and c["duplicates"] == 1
    assert c["enriched"] == 2 and c["new"] == 2
    assert c["alerts"] == 1
    assert c["dead_letters"] == 4
    stored = store.get_article(seed.id)
    assert stored is not None and stored.topic("troop_withdrawal") is not None
    assert {"IQ", "IR", "US"} <= set(stored.countries)
    reasons = sorted(d.reason.split(":")[0] for d in store.list_dead_letters())
    assert reasons == ["invalid JSON", "not UTF-8", "schema violation", "unreadable record"]
    alert_lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(line)["article_id"] for line in alert_lines] == [seed.id]

    # The same input again: nothing new, nothing re-enriched, no second alert.
    _, again = _run(records, tmp_path)
    assert again["unchanged"] == 2 and again["enriched"] == 0 and again["alerts"] == 0
    assert store.counts()["articles"] == 2 and store.counts()["alerts"] == 1

    # --reenrich enriches again and rewrites, still without alerting twice.
    _, forced = _run(records, tmp_path, reenrich=True)
    assert forced["enriched"] == 2 and forced["updated"] == 2 and forced["alerts_repeated"] == 1
