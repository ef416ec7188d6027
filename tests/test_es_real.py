"""What only a real Elasticsearch can show: ILM, and the geo aggregations Kibana's map needs.
Run with NEWSWATCH_TEST_ES_URL=http(s)://user:password@host:9200 (a disposable cluster: it creates
and deletes indices under a random prefix)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch

from connectors.elasticsearch import ElasticsearchStore, make_client
from tests.es_support import apply_setup, es_config, rich_article, unique_prefix

ES_URL = os.environ.get("NEWSWATCH_TEST_ES_URL", "")
pytestmark = [
    pytest.mark.real_es,
    pytest.mark.skipif(not ES_URL, reason="needs a real Elasticsearch: set NEWSWATCH_TEST_ES_URL"),
]


@pytest.fixture
def prefix() -> Iterator[str]:
    name = unique_prefix()
    yield name
    client = make_client(es_config(ES_URL, name)).options(ignore_status=[400, 404])
    # Real clusters refuse wildcard deletes (action.destructive_requires_name): name every index.
    for index in client.indices.get(index=f"{name}-*", expand_wildcards="all").body:
        client.indices.delete(index=index)
    for kind in ("articles", "alerts", "deadletters", "subscriptions"):
        client.indices.delete_index_template(name=f"{name}-{kind}")
    for component in client.cluster.get_component_template(name=f"{name}-*").body.get("component_templates", []):
        client.cluster.delete_component_template(name=component["name"])
    client.ilm.delete_lifecycle(name=f"{name}-deadletters")
    client.close()


def test_setup_applies_ilm_to_dead_letters(prefix: str) -> None:
    report = apply_setup(ES_URL, prefix)
    assert report.ilm
    client: Elasticsearch = make_client(es_config(ES_URL, prefix))
    policy = client.ilm.get_lifecycle(name=f"{prefix}-deadletters")[f"{prefix}-deadletters"]["policy"]
    assert "rollover" in policy["phases"]["hot"]["actions"]
    settings = client.indices.get_settings(index=f"{prefix}-deadletters-v1-000001")
    lifecycle = next(iter(settings.values()))["settings"]["index"]["lifecycle"]
    assert lifecycle == {"name": f"{prefix}-deadletters", "rollover_alias": f"{prefix}-deadletters-write"}
    rolled = client.indices.rollover(alias=f"{prefix}-deadletters-write")
    assert rolled["new_index"] == f"{prefix}-deadletters-v1-000002"
    aliases = client.indices.get_alias(name=f"{prefix}-deadletters")
    assert set(aliases) == {f"{prefix}-deadletters-v1-000001", f"{prefix}-deadletters-v1-000002"}
    client.close()


def test_places_support_the_maps_geo_queries_and_aggregations(prefix: str) -> None:
    apply_setup(ES_URL, prefix)
    with ElasticsearchStore(es_config(ES_URL, prefix)) as store:
        store.write_articles([rich_article(1)])
        store.refresh("articles")
    client = make_client(es_config(ES_URL, prefix))
    near = client.search(
        index=f"{prefix}-articles",
        query={"geo_distance": {"distance": "50km", "places.location": {"lat": 33.3, "lon": 44.4}}},
    )
    assert near["hits"]["total"]["value"] == 1
    tiles = client.search(
        index=f"{prefix}-articles",
        size=0,
        aggs={"grid": {"geotile_grid": {"field": "places.location", "precision": 5}}},
    )
    assert tiles["aggregations"]["grid"]["buckets"][0]["doc_count"] == 1
    centroid = client.search(
        index=f"{prefix}-articles", size=0, aggs={"c": {"geo_centroid": {"field": "places.location"}}}
    )
    assert centroid["aggregations"]["c"]["location"]["lat"] == pytest.approx(33.34, abs=0.01)
    client.close()


def test_writes_are_visible_to_readers_after_the_store_closes(prefix: str) -> None:
    """A real cluster shows writes only after a refresh: closing the store refreshes what it wrote."""
    apply_setup(ES_URL, prefix)
    with ElasticsearchStore(es_config(ES_URL, prefix)) as store:
        store.write_articles([rich_article(2)])
    reader = make_client(es_config(ES_URL, prefix))
    assert reader.count(index=f"{prefix}-articles")["count"] == 1
    reader.close()
