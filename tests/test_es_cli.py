"""Acceptance, as an operator runs it: `newswatch es setup`, then `newswatch run --once --sink elasticsearch`
on the bundled seed feeds, against a real Elasticsearch-API server (noida-db) over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from connectors.feed_state import FeedStateStore
from pipelines.job import CycleFailed, CycleRunner, SourceBatch, build_sources
from pipelines.settings import Settings
from tests.conftest import SEED_TITLE, run_cli
from tests.es_support import (
    apply_setup,
    edited_templates,
    es_env,
    unique_prefix,
    update_json,
)
from tests.servers import NoidaServer

SEED_ARTICLES = 27  # 28 entries in seeds/feeds, one story twice (seeds/feeds/README.md); broken.xml has none

pytestmark = pytest.mark.slow


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def article_count(client: Elasticsearch, prefix: str) -> int:
    client.indices.refresh(index=f"{prefix}-articles")
    return int(client.count(index=f"{prefix}-articles")["count"])


def test_setup_then_run_indexes_the_seed_feeds_once(
    noida_es: NoidaServer, es_prefix: str, es_client: Elasticsearch, tmp_path: Path
) -> None:
    env = es_env(noida_es.es_url, es_prefix, tmp_path / "data")
    setup = run_cli("es", "setup", "--json", env=env)
    assert setup.returncode == 0, setup.stderr
    assert json.loads(setup.stdout)["indices"]["articles"] == f"{es_prefix}-articles-v1"

    first = run_cli("run", "--once", env=env)
    assert first.returncode == 0, first.stderr
    assert f"new={SEED_ARTICLES}" in first.stderr
    assert article_count(es_client, es_prefix) == SEED_ARTICLES

    # The seed article's document: entities, countries, topics and a geo_point for Baghdad.
    hits = es_client.search(index=f"{es_prefix}-articles", query={"term": {"title.keyword": SEED_TITLE}})["hits"]
    assert len(hits["hits"]) == 1
    seed = hits["hits"][0]["_source"]
    assert seed["countries"][0] == "IQ" and "US" in seed["countries"]
    assert "troop_withdrawal" in [t["id"] for t in seed["topics"]]
    assert "Qassem Soleimani" in {e["canonical"] for e in seed["entities"] if e["label"] == "PERSON"}
    assert "Qassem Soleimani" in seed["people"]
    baghdad = next(p for p in seed["places"] if p["name"] == "Baghdad")
    assert baghdad["location"]["lat"] == pytest.approx(33.34, abs=0.05)
    assert baghdad["location"]["lon"] == pytest.approx(44.40, abs=0.05)
    mapping = es_client.indices.get_mapping(index=f"{es_prefix}-articles").body
    assert next(iter(mapping.values()))["mappings"]["properties"]["places"]["properties"]["location"] == {
        "type": "geo_point"
    }
    nested = es_client.search(
        index=f"{es_prefix}-articles",
        query={
            "nested": {
                "path": "entities",
                "query": {
                    "bool": {
                        "filter": [
                            {"term": {"entities.canonical": "Qassem Soleimani"}},
                            {"term": {"entities.label": "PERSON"}},
                        ]
                    }
                },
            }
        },
    )
    assert SEED_TITLE in [h["_source"]["title"] for h in nested["hits"]["hits"]]

    # A second run leaves the count unchanged; so does re-enriching everything from a fresh feed state.
    second = run_cli("run", "--once", env=env)
    assert second.returncode == 0, second.stderr
    assert article_count(es_client, es_prefix) == SEED_ARTICLES
    again = run_cli("run", "--once", "--reenrich", env={**env, "NEWSWATCH_DATA_DIR": str(tmp_path / "fresh")})
    assert again.returncode == 0, again.stderr
    assert f"updated={SEED_ARTICLES}" in again.stderr
    assert article_count(es_client, es_prefix) == SEED_ARTICLES

    # The read commands work against Elasticsearch too.
    stats = json.loads(run_cli("stats", "--json", env=env).stdout)
    assert stats["articles"] == SEED_ARTICLES and stats["store"] == "elasticsearch"
    assert stats["alerts"] >= 2 and stats["deadletters"] >= 1 and stats["subscriptions"] == 2
    found = json_lines(run_cli("search", "Soleimani", "--country", "IQ", "--json", env=env).stdout)
    assert found[0]["title"] == SEED_TITLE and "[Soleimani]" in found[0]["snippet"]
    by_topic = json_lines(run_cli("search", "--topic", "coup", "--json", env=env).stdout)
    assert by_topic and all("coup" in [t["id"] for t in a["topics"]] for a in by_topic)
    alerts = json_lines(run_cli("alerts", "list", "--json", "--subscription", "troop-withdrawal-iraq", env=env).stdout)
    assert [a["title"] for a in alerts] == [SEED_TITLE]
    letters = json_lines(run_cli("deadletters", "list", "--json", "--stage", "fetch", env=env).stdout)
    assert any(letter["source"].endswith("broken.xml") for letter in letters)
    subs = json_lines(run_cli("subscriptions", "list", "--json", env=env).stdout)
    assert {s["id"] for s in subs} == {"troop-withdrawal", "troop-withdrawal-iraq"}
    status = run_cli("es", "status", "--json", env=env)
    assert json.loads(status.stdout)["articles"]["documents"] == SEED_ARTICLES


def test_documents_the_mapping_rejects_are_dead_lettered_and_the_rest_indexed(
    noida_es: NoidaServer, es_prefix: str, es_client: Elasticsearch, tmp_path: Path
) -> None:
    """The deployed mapping lacks topics.label (an older template than the code): under dynamic: strict
    every article with a topic is refused, the articles without one are indexed."""
    templates = edited_templates(
        tmp_path,
        lambda files: update_json(
            files["component_templates/articles-mappings"],
            lambda t: t["template"]["mappings"]["properties"]["topics"]["properties"].pop("label"),
        ),
    )
    env = es_env(noida_es.es_url, es_prefix, tmp_path / "data")
    assert run_cli("es", "setup", "--templates", str(templates), env=env).returncode == 0
    result = run_cli("run", "--once", env=env)
    assert result.returncode == 0, result.stderr

    letters = json_lines(run_cli("deadletters", "list", "--json", "--stage", "index", "--limit", "100", env=env).stdout)
    assert letters, "nothing was rejected"
    for letter in letters:
        assert "strict_dynamic_mapping_exception" in letter["reason"] and "label" in letter["reason"]
        assert json.loads(letter["payload"])["topics"], "only articles with topics should be refused"
    indexed = article_count(es_client, es_prefix)
    assert indexed >= 1
    assert indexed + len(letters) == SEED_ARTICLES
    stored = es_client.search(index=f"{es_prefix}-articles", size=100)["hits"]["hits"]
    assert all(hit["_source"]["topics"] == [] for hit in stored)


def test_run_before_setup_fails_and_creates_no_index(
    noida_es: NoidaServer, es_prefix: str, es_client: Elasticsearch, tmp_path: Path
) -> None:
    result = run_cli("run", "--once", env=es_env(noida_es.es_url, es_prefix, tmp_path / "data"))
    assert result.returncode == 1
    assert "newswatch es setup" in result.stderr
    assert es_client.indices.get(index=f"{es_prefix}*").body == {}


class StopsServerAfterPolling:
    """The RSS source, except that the Elasticsearch server goes away once the feeds are read:
    the cycle dies between reading its sources and writing to the store."""

    name = "rss"

    def __init__(self, inner: Any, server: NoidaServer) -> None:
        self.inner, self.server, self.armed = inner, server, True

    def poll(self, force: bool = False) -> SourceBatch:
        batch = self.inner.poll(force)
        if self.armed:
            self.server.stop()
            self.armed = False
        return batch

    def close(self) -> None:
        self.inner.close()


def test_stopping_elasticsearch_mid_run_commits_nothing_and_the_next_cycle_catches_up(tmp_path: Path) -> None:
    server = NoidaServer(tmp_path / "noida", ("elasticsearch",)).start()
    prefix = unique_prefix()
    try:
        apply_setup(server.es_url, prefix)
        settings = Settings(
            data_dir=tmp_path / "data",
            sink="elasticsearch",
            es_url=server.es_url,
            es_index_prefix=prefix,
            fast=True,
            console_alerts=False,
            es_max_retries=2,
            es_max_backoff=0.5,
        )
        source = StopsServerAfterPolling(build_sources(settings)[0], server)
        runner = CycleRunner(settings, [source])
        runner.prepare()
        with pytest.raises(CycleFailed, match=r"store unavailable|StoreUnavailable"):
            runner.run_cycle(force=True)
        assert FeedStateStore(settings.state_path).get_all() == {}  # no feed marked as read

        server.start()  # same port, same data
        summary = runner.run_cycle(force=True)
        runner.close()
        assert summary.counts["new"] == SEED_ARTICLES
        client = Elasticsearch(server.es_url)
        assert article_count(client, prefix) == SEED_ARTICLES
        client.close()
        assert len(FeedStateStore(settings.state_path).get_all()) == 4
    finally:
        server.stop()
