"""Model <-> document mapping, the index templates' coverage of every model field, and the pure helpers
of the Elasticsearch connector (search bodies, batching, backoff, URLs). No server needed."""

from __future__ import annotations

import json
import pickle
import random
from datetime import UTC, datetime, timedelta
from typing import get_args

import pytest
from pydantic import BaseModel, SecretStr

from connectors.elasticsearch import (
    IndexLayout,
    RetryPolicy,
    batches,
    build_search,
    bulk_items,
    lenient_search,
    redact_url,
    split_url_credentials,
)
from connectors.es_documents import (
    DERIVED_ARTICLE_FIELDS,
    alert_document,
    alert_from_source,
    article_document,
    article_from_source,
    dead_letter_document,
    document_fields,
    mapping_fields,
    subscription_document,
    subscription_from_source,
)
from connectors.es_setup import index_version, load_templates
from connectors.store import ElasticsearchConfig, SearchQuery, StoreConfig
from deploy import ELASTICSEARCH_DIR
from schemas import Alert, Article, DeadLetter, Subscription, TopicTag, WebhookTarget
from tests.es_support import rich_article

TEMPLATES = load_templates(ELASTICSEARCH_DIR, "newswatch")
HOOK_SECRET = "es-doc-s3cret"
# A subscription with every kind of target and timing, and an alert with every status field set.
FULL_SUBSCRIPTION = Subscription.model_validate(
    {
        "id": "full",
        "name": "Full",
        "rule": {"all": [{"topic": "coup"}, {"not": {"country": "US"}}]},
        "targets": [
            {"kind": "webhook", "url": "https://hooks.example/n", "secret": HOOK_SECRET},
            {"kind": "kafka", "topic": "alerts.full"},
            {"kind": "email", "to": ["desk@news.example"]},
        ],
        "realert": "12h",
        "digest": "1h30m",
        "active_hours": "22:00-06:00",
        "timezone": "Europe/Berlin",
    }
)
FULL_ALERT = Alert(
    subscription_id="s",
    article_id="a",
    title="t",
    topics=[TopicTag(id="coup", score=0.5)],
    summary="The lead of the story.",
    status="suppressed",
    status_reason="near-duplicate (0.93) of 'T', within realert 1d",
    duplicate_of="earlier-alert",
)


def model_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Dotted paths of every field of a model, descending into nested models and lists of them."""
    paths: set[str] = set()
    for name, info in model.model_fields.items():
        key = info.alias or name
        paths.add(f"{prefix}{key}")
        inner = [info.annotation, *get_args(info.annotation)]
        for candidate in inner:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel) and candidate is not model:
                paths |= model_paths(candidate, f"{prefix}{key}.")
    return paths


def test_article_document_adds_location_and_entity_arrays() -> None:
    article = rich_article()
    doc = article_document(article, indexed_at=datetime(2024, 2, 1, tzinfo=UTC))
    assert doc["places"][0]["location"] == {"lat": 33.34058, "lon": 44.40088}
    assert doc["people"] == ["Qassem Soleimani", "Mike Pompeo"]
    assert doc["organizations"] == ["Council of Representatives of Iraq"]
    assert doc["locations"] == ["Iraq"]
    assert doc["groups"] == ["Iranian"]
    assert doc["entity_ids"] == ["soleimani", "IQ", "IR"]
    assert doc["@timestamp"] == doc["published"] == "2024-01-01T00:00:00Z"
    assert doc["indexed_at"].startswith("2024-02-01")


def test_article_without_date_is_placed_in_time_by_fetch_time() -> None:
    article = Article(title="Undated", text="No pubDate here.", fetched_at=datetime(2024, 3, 7, 9, tzinfo=UTC))
    assert article_document(article)["@timestamp"] == "2024-03-07T09:00:00Z"


def test_documents_read_back_as_the_models_written() -> None:
    article = rich_article()
    assert article_from_source(json.loads(json.dumps(article_document(article)))) == article
    subscription = Subscription.model_validate(
        {"id": "iq", "name": "Iraq", "rule": {"all": [{"topic": "troop_withdrawal"}, {"not": {"country": "US"}}]}}
    )
    assert subscription_from_source(json.loads(json.dumps(subscription_document(subscription)))) == subscription
    assert alert_from_source(json.loads(json.dumps(alert_document(FULL_ALERT)))) == FULL_ALERT


def test_subscriptions_are_stored_with_their_secrets_but_never_indexed() -> None:
    """A masked secret in the store would make every webhook signature wrong; the index must not search it."""
    doc = json.loads(json.dumps(subscription_document(FULL_SUBSCRIPTION)))
    assert doc["targets"][0]["secret"] == HOOK_SECRET
    back = subscription_from_source(doc)
    assert back == FULL_SUBSCRIPTION
    webhook = back.targets[0]
    assert isinstance(webhook, WebhookTarget) and webhook.secret is not None
    assert webhook.secret.get_secret_value() == HOOK_SECRET
    assert (back.realert, back.digest) == (timedelta(hours=12), timedelta(hours=1, minutes=30))
    targets = TEMPLATES.mappings("subscriptions")["properties"]["targets"]  # type: ignore[index]
    assert targets == {"type": "object", "enabled": False}


@pytest.mark.parametrize(
    ("kind", "model", "document", "opaque"),
    [
        ("articles", Article, article_document(rich_article()), {"places.location"}),
        (
            "alerts",
            Alert,
            alert_document(FULL_ALERT),
            set(),
        ),
        (
            "deadletters",
            DeadLetter,
            dead_letter_document(DeadLetter(stage="index", reason="r", details={"a": {"b": 1}})),
            {"details"},
        ),
        (
            "subscriptions",
            Subscription,
            subscription_document(FULL_SUBSCRIPTION),
            {"rule", "targets"},
        ),
    ],
)
def test_mapping_covers_every_model_field(
    kind: str, model: type[BaseModel], document: dict[str, object], opaque: set[str]
) -> None:
    """dynamic: strict rejects any field the mapping lacks, so the mapping must know every one we write."""
    mapped = mapping_fields(TEMPLATES.mappings(kind)["properties"])  # type: ignore[arg-type]
    assert TEMPLATES.mappings(kind)["dynamic"] == "strict"  # type: ignore[arg-type]
    missing_model = {p for p in model_paths(model) - mapped if not any(p.startswith(f"{o}.") for o in opaque)}
    assert not missing_model, f"{kind}: model fields without a mapping: {sorted(missing_model)}"
    missing_doc = document_fields(document, opaque=frozenset(opaque)) - mapped
    assert not missing_doc, f"{kind}: document fields without a mapping: {sorted(missing_doc)}"


def test_article_mapping_is_built_for_kibana() -> None:
    props = TEMPLATES.mappings("articles")["properties"]  # type: ignore[arg-type]
    assert props["title"]["analyzer"] == "english" and props["title"]["fields"]["keyword"]["type"] == "keyword"
    assert props["text"]["analyzer"] == "english"
    assert props["entities"]["type"] == "nested"
    assert {props["entities"]["properties"][f]["type"] for f in ("canonical", "label")} == {"keyword"}
    assert props["places"]["properties"]["location"]["type"] == "geo_point"
    assert props["topics"]["properties"]["id"]["type"] == "keyword"
    assert props["topics"]["properties"]["score"]["type"] == "float"
    for field in (
        "countries",
        "regions",
        *[f for f in DERIVED_ARTICLE_FIELDS if f not in ("@timestamp", "indexed_at")],
    ):
        assert props[field]["type"] == "keyword", field
    for field in ("published", "fetched_at", "enriched_at", "indexed_at", "@timestamp"):
        assert props[field]["type"] == "date", field


def test_search_body_filters_and_highlights() -> None:
    body = build_search(
        SearchQuery(
            text="troops withdrawal",
            topics=["troop_withdrawal"],
            countries=["iq"],
            since=datetime(2020, 1, 1, tzinfo=UTC),
            until=datetime(2021, 1, 1, tzinfo=UTC),
            limit=5,
        )
    )
    assert body["size"] == 5
    bool_query = body["query"]["bool"]
    assert bool_query["must"][0]["query_string"]["query"] == "troops withdrawal"
    assert {"term": {"topics.id": "troop_withdrawal"}} in bool_query["filter"]
    assert {"term": {"countries": "IQ"}} in bool_query["filter"]
    assert {"range": {"published": {"gte": "2020-01-01T00:00:00+00:00", "lt": "2021-01-01T00:00:00+00:00"}}} in (
        bool_query["filter"]
    )
    assert set(body["highlight"]["fields"]) == {"title", "summary", "text"}
    relaxed = lenient_search(body)
    assert "simple_query_string" in relaxed["query"]["bool"]["must"][0]
    assert relaxed["query"]["bool"]["filter"] == bool_query["filter"]
    newest = build_search(SearchQuery(countries=["FR"]))
    assert newest["sort"][0] == {"published": {"order": "desc", "missing": "_last"}}
    assert "highlight" not in newest


def test_batches_are_bounded_by_count_and_bytes() -> None:
    docs = [(f"id{i}", {"text": "x" * (100 if i != 5 else 5000)}) for i in range(12)]
    items = bulk_items("idx", "index", docs)
    by_count = list(batches(items, max_docs=4, max_bytes=10**9))
    assert [len(b) for b in by_count] == [4, 4, 4]
    by_bytes = list(batches(items, max_docs=100, max_bytes=600))
    assert all(sum(i.size for i in b) <= 600 or len(b) == 1 for b in by_bytes)
    assert [i.position for b in by_bytes for i in b] == list(range(12))  # order kept, nothing lost
    assert [len(b) for b in by_bytes if any(i.position == 5 for i in b)] == [1]  # the big one goes alone


def test_backoff_is_exponential_and_capped() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=4.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    jittered = RetryPolicy(initial_backoff=0.5, max_backoff=4.0, jitter=0.2)
    rng = random.Random(1)
    assert all(0.8 * 4.0 <= jittered.delay(10, rng) <= 4.0 for _ in range(50))


def test_credentials_in_the_url_never_stay_in_it() -> None:
    hosts, auth = split_url_credentials("https://writer:s%40cret@es1.example:9200,es2.example:9201")
    assert hosts == ["https://es1.example:9200", "http://es2.example:9201"]
    assert auth == ("writer", "s@cret")
    assert "cret" not in redact_url("https://writer:s%40cret@es1.example:9200")


def test_store_config_pickles_and_hides_secrets() -> None:
    config = StoreConfig(
        kind="elasticsearch",
        elasticsearch=ElasticsearchConfig(
            url="http://es:9200", api_key=SecretStr("k3y-v4lue"), password=SecretStr("pw")
        ),
    )
    assert pickle.loads(pickle.dumps(config)) == config
    assert "k3y-v4lue" not in repr(config) and "pw'" not in repr(config)


def test_index_names_and_versions() -> None:
    layout = IndexLayout("nw")
    assert layout.index_name("articles", 3) == "nw-articles-v3"
    assert layout.index_name("deadletters", 1, rollover=True) == "nw-deadletters-v1-000001"
    assert (layout.read_alias("alerts"), layout.write_alias("alerts")) == ("nw-alerts", "nw-alerts-write")
    assert index_version("nw-articles-v3") == 3
    assert index_version("nw-deadletters-v2-000007") == 2
    assert index_version("nw-articles") is None
