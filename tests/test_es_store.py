"""ElasticsearchStore and `es setup` against a real Elasticsearch-API server (noida-db) over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from connectors.elasticsearch import ElasticsearchStore
from connectors.store import RejectedDocument, SearchQuery, StoreUnavailable
from schemas import Alert, DeadLetter, Subscription
from tests.es_support import (
    apply_setup,
    edited_templates,
    es_config,
    make_article,
    rich_article,
    update_json,
)
from tests.servers import NoidaServer


def test_setup_is_idempotent(noida_es: NoidaServer, es_prefix: str, es_client: Elasticsearch) -> None:
    first = apply_setup(noida_es.es_url, es_prefix)
    assert first.ok and first.version.startswith("8.")
    assert first.indices == {
        "articles": f"{es_prefix}-articles-v1",
        "alerts": f"{es_prefix}-alerts-v1",
        "deadletters": f"{es_prefix}-deadletters-v1-000001",
        "subscriptions": f"{es_prefix}-subscriptions-v1",
    }
    assert any("created" in a for a in first.actions)
    second = apply_setup(noida_es.es_url, es_prefix)
    assert second.indices == first.indices
    assert not any("created" in a for a in second.actions)
    aliases = es_client.indices.get_alias(name=f"{es_prefix}-articles*").body
    assert aliases == {
        f"{es_prefix}-articles-v1": {
            "aliases": {f"{es_prefix}-articles": {}, f"{es_prefix}-articles-write": {"is_write_index": True}}
        }
    }
    mapping = es_client.indices.get_mapping(index=f"{es_prefix}-articles").body[f"{es_prefix}-articles-v1"]["mappings"]
    assert mapping["dynamic"] == "strict"
    assert mapping["properties"]["places"]["properties"]["location"]["type"] == "geo_point"
    template = es_client.indices.get_index_template(name=f"{es_prefix}-articles").body["index_templates"][0]
    assert template["index_template"]["composed_of"] == [f"{es_prefix}-settings", f"{es_prefix}-articles-mappings"]


def test_articles_upsert_search_and_read_back(es_store: ElasticsearchStore) -> None:
    articles = [rich_article(0), *[make_article(n) for n in range(1, 8)]]
    outcomes = es_store.write_articles(articles)
    assert [o for _, o in outcomes] == ["new"] * 8
    changed = articles[3].model_copy(update={"title": "Updated headline about troops"})
    assert [o for _, o in es_store.write_articles([changed])] == ["updated"]
    es_store.refresh()
    assert es_store.counts()["articles"] == 8
    assert es_store.get_article(articles[0].id) == articles[0]
    assert es_store.get_article("no-such-id") is None
    assert es_store.stored_hashes([articles[0].id, "nope"]) == {articles[0].id: (articles[0].content_hash, "test-1")}
    hits = es_store.search(SearchQuery(text="Soleimani", countries=["iq"], topics=["troop_withdrawal"]))
    assert [h.article.id for h in hits] == [articles[0].id]
    assert "[Soleimani]" in " ".join(hits[0].highlights)
    dated = es_store.search(SearchQuery(since=datetime(2024, 1, 5, tzinfo=UTC), until=datetime(2024, 1, 7, tzinfo=UTC)))
    assert {h.article.id for h in dated} == {articles[4].id, articles[5].id}
    assert [h.article.published for h in es_store.search(SearchQuery(limit=3))] == sorted(
        (a.published for a in articles if a.published), reverse=True
    )[:3]
    # Lucene syntax errors fall back to a lenient search instead of failing.
    assert es_store.search(SearchQuery(text='"unbalanced (quote')) == []
    assert {h.article.id for h in es_store.search(SearchQuery(text="Pompeo OR headline"))} == {
        articles[0].id,
        articles[3].id,
    }


def test_iter_articles_pages_through_everything(es_store: ElasticsearchStore) -> None:
    articles = [make_article(n) for n in range(23)]
    es_store.write_articles(articles)
    es_store.refresh()
    seen = [a.id for a in es_store.iter_articles(batch_size=5)]
    assert sorted(seen) == sorted(a.id for a in articles)


def test_alerts_are_recorded_once(es_store: ElasticsearchStore) -> None:
    alert = Alert(subscription_id="iraq", article_id="a1", title="Troops", url="https://x.example/1")
    assert es_store.record_alert(alert) is True
    assert es_store.record_alert(Alert(subscription_id="iraq", article_id="a1", title="Troops again")) is False
    assert es_store.record_alert(Alert(subscription_id="other", article_id="a1", title="Troops")) is True
    es_store.refresh()
    assert es_store.counts()["alerts"] == 2
    assert [a.subscription_id for a in es_store.list_alerts(subscription_id="iraq")] == ["iraq"]
    assert es_store.list_alerts()[0].subscription_id == "other"  # newest first


def test_dead_letters_are_stored_and_listed(es_store: ElasticsearchStore) -> None:
    letters = [
        DeadLetter(stage="parse", reason="invalid JSON", payload="{nope", details={"line": 3, "nested": {"a": [1]}}),
        DeadLetter(stage="index", reason="rejected", payload="{}", source="feed"),
    ]
    es_store.write_dead_letters(letters)
    es_store.refresh()
    assert es_store.counts()["deadletters"] == 2
    assert [d.reason for d in es_store.list_dead_letters(stage="parse")] == ["invalid JSON"]
    assert es_store.list_dead_letters(stage="parse")[0].details == {"line": 3, "nested": {"a": [1]}}


def test_subscriptions_crud_and_seeding_once(es_store: ElasticsearchStore) -> None:
    defaults = [
        Subscription.model_validate({"id": "a", "name": "A", "rule": {"topic": "coup"}}),
        Subscription.model_validate({"id": "b", "name": "B", "rule": {"country": "iq"}, "enabled": False}),
    ]
    assert es_store.seed_subscriptions(defaults) == 2
    assert [s.id for s in es_store.list_subscriptions()] == ["a", "b"]
    assert [s.id for s in es_store.list_subscriptions(include_disabled=False)] == ["a"]
    assert es_store.remove_subscription("a") is True
    assert es_store.remove_subscription("a") is False
    assert es_store.seed_subscriptions(defaults) == 0  # removed defaults do not come back
    custom = Subscription.model_validate({"id": "c", "name": "C", "rule": {"not": {"text": "cash withdrawal"}}})
    es_store.put_subscription(custom)
    assert [s.id for s in es_store.list_subscriptions()] == ["b", "c"]
    assert es_store.list_subscriptions()[1] == custom
    assert es_store.counts()["subscriptions"] == 2  # the seeding marker is not a subscription


def test_a_document_the_mapping_rejects_comes_back_rejected(
    noida_es: NoidaServer, es_prefix: str, tmp_path: Path
) -> None:
    """A mapping that lacks a field we write (here: an older deployment without places.kind)."""
    templates = edited_templates(
        tmp_path,
        lambda files: update_json(
            files["component_templates/articles-mappings"],
            lambda t: t["template"]["mappings"]["properties"]["places"]["properties"].pop("kind"),
        ),
    )
    apply_setup(noida_es.es_url, es_prefix, templates)
    with ElasticsearchStore(es_config(noida_es.es_url, es_prefix)) as store:
        outcomes = store.write_articles([make_article(1), rich_article(2), make_article(3)])
        assert [o if isinstance(o, str) else "rejected" for _, o in outcomes] == ["new", "rejected", "new"]
        rejected = outcomes[1][1]
        assert isinstance(rejected, RejectedDocument)
        assert "strict_dynamic_mapping_exception" in str(rejected) and "kind" in str(rejected)
        store.refresh()
        assert store.counts()["articles"] == 2


def test_store_before_setup_fails_loudly_and_creates_nothing(
    noida_es: NoidaServer, es_prefix: str, es_client: Elasticsearch
) -> None:
    with ElasticsearchStore(es_config(noida_es.es_url, es_prefix)) as store:
        with pytest.raises(StoreUnavailable, match="es setup"):
            store.write_articles([make_article(1)])
        with pytest.raises(StoreUnavailable, match="es setup"):
            store.counts()
        with pytest.raises(StoreUnavailable, match="es setup"):
            store.record_alert(Alert(subscription_id="s", article_id="a", title="t"))
    assert not es_client.indices.exists(index=f"{es_prefix}-articles-write")
    assert not es_client.indices.exists(index=f"{es_prefix}-alerts-write")


def test_a_new_index_version_migrates_behind_the_aliases(
    noida_es: NoidaServer, es_prefix: str, es_client: Elasticsearch, tmp_path: Path
) -> None:
    apply_setup(noida_es.es_url, es_prefix)
    with ElasticsearchStore(es_config(noida_es.es_url, es_prefix)) as store:
        store.write_articles([make_article(n) for n in range(5)])
    es_client.indices.refresh(index=f"{es_prefix}-articles")

    def bump(files: dict[str, Path]) -> None:
        update_json(files["index_templates/articles"], lambda t: t["_meta"].update(index_version=2))
        update_json(
            files["component_templates/articles-mappings"],
            lambda t: t["template"]["mappings"]["properties"].update(summary={"type": "text", "analyzer": "standard"}),
        )

    templates = edited_templates(tmp_path, bump)
    pending = apply_setup(noida_es.es_url, es_prefix, templates)
    assert not pending.ok and "articles" in pending.pending_migrations[0]
    migrated = apply_setup(noida_es.es_url, es_prefix, templates, migrate=True)
    assert migrated.ok and migrated.indices["articles"] == f"{es_prefix}-articles-v2"
    aliases = es_client.indices.get_alias(name=f"{es_prefix}-articles*").body
    assert set(aliases[f"{es_prefix}-articles-v2"]["aliases"]) == {
        f"{es_prefix}-articles",
        f"{es_prefix}-articles-write",
    }
    assert aliases.get(f"{es_prefix}-articles-v1", {}).get("aliases", {}) == {}  # kept, but out of both aliases
    assert es_client.count(index=f"{es_prefix}-articles")["count"] == 5
    summary = es_client.indices.get_mapping(index=f"{es_prefix}-articles").body[f"{es_prefix}-articles-v2"]
    assert summary["mappings"]["properties"]["summary"]["analyzer"] == "standard"
    assert apply_setup(noida_es.es_url, es_prefix, templates).ok  # and it stays idempotent
