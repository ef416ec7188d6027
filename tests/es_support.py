"""Elasticsearch test helpers: a fresh index prefix per test, stores and clients on the noida-db server."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from connectors.elasticsearch import ElasticsearchStore, IndexLayout, Retrier, RetryPolicy, make_client
from connectors.es_setup import IndexSetup, SetupReport, load_templates
from connectors.store import ElasticsearchConfig
from deploy import ELASTICSEARCH_DIR
from schemas import Article, Entity, Place, TopicTag
from tests.servers import NoidaServer


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def es_config(url: str, prefix: str, **overrides: Any) -> ElasticsearchConfig:
    """Short retries for tests; a real cluster's CA (tests/test_es_real.py) from NEWSWATCH_TEST_ES_CA_FILE."""
    defaults = {"max_retries": 2, "max_backoff": 0.2, "ca_file": os.environ.get("NEWSWATCH_TEST_ES_CA_FILE") or None}
    return ElasticsearchConfig(url=url, index_prefix=prefix, **{**defaults, **overrides})


def es_env(url: str, prefix: str, data_dir: Path) -> dict[str, str]:
    """The environment of a `newswatch` command that uses this server and prefix as its store."""
    return {
        "NEWSWATCH_ES_URL": url,
        "NEWSWATCH_ES_INDEX_PREFIX": prefix,
        "NEWSWATCH_DATA_DIR": str(data_dir),
        "NEWSWATCH_SINK": "elasticsearch",
        "NEWSWATCH_FAST": "true",
        "NEWSWATCH_CONSOLE_ALERTS": "false",
        "NEWSWATCH_ES_MAX_RETRIES": "2",
        "NEWSWATCH_ES_MAX_BACKOFF": "0.5",
    }


def apply_setup(url: str, prefix: str, templates: Path = ELASTICSEARCH_DIR, migrate: bool = False) -> SetupReport:
    client = make_client(es_config(url, prefix))
    try:
        return IndexSetup(client, IndexLayout(prefix), Retrier(RetryPolicy(max_retries=2, max_backoff=0.2))).apply(
            load_templates(templates, prefix), migrate=migrate
        )
    finally:
        client.close()


def edited_templates(tmp_path: Path, edit: Callable[[dict[str, Path]], None]) -> Path:
    """A copy of deploy/elasticsearch that `edit` changes (gets name -> path of every JSON file)."""
    target = tmp_path / "elasticsearch"
    shutil.copytree(ELASTICSEARCH_DIR, target)
    edit({f"{p.parent.name}/{p.stem}": p for p in target.rglob("*.json")})
    return target


def update_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def make_article(n: int, *, title: str = "", text: str = "", **fields: Any) -> Article:
    return Article(
        url=f"https://news.example.com/test/{n}",
        title=title or f"Test article number {n} about troops",
        text=text or f"Body of article {n}. Soldiers withdrew from the base near Baghdad.",
        published=fields.pop("published", datetime(2024, 1, 1 + n % 28, tzinfo=UTC)),
        source="https://news.example.com/feed.xml",
        source_name="Test Wire",
        **fields,
    )


def rich_article(n: int = 0) -> Article:
    """An article with every kind of enrichment, like the seed article's."""
    return make_article(
        n,
        title="Iraq's parliament calls for expulsion of U.S. troops after Soleimani killing",
        text="BAGHDAD — Iraq's Parliament called for the expulsion of U.S. forces. "
        "Secretary of State Mike Pompeo said the strike that killed Qassem Soleimani was lawful.",
        entities=[
            Entity(text="Soleimani", label="PERSON", start=59, end=68, canonical="Qassem Soleimani", kb_id="soleimani"),
            Entity(text="Mike Pompeo", label="PERSON", start=120, end=131, role="Secretary of State"),
            Entity(text="Parliament", label="ORG", start=80, end=90, canonical="Council of Representatives of Iraq"),
            Entity(text="Iraq", label="GPE", start=0, end=4, kb_id="IQ"),
            Entity(text="Iranian", label="NORP", start=10, end=17, kb_id="IR"),
        ],
        countries=["IQ", "US", "IR"],
        places=[Place(name="Baghdad", country="IQ", lat=33.34058, lon=44.40088, geonames_id=98182, mentions=3)],
        regions=["Asia", "Western Asia"],
        topics=[TopicTag(id="troop_withdrawal", score=0.99, evidence=["calls for expulsion of U.S. troops"])],
        enrichment_version="test-1",
    )


@pytest.fixture
def es_prefix() -> str:
    return unique_prefix()


@pytest.fixture
def es_client(noida_es: NoidaServer) -> Iterator[Elasticsearch]:
    client = Elasticsearch(noida_es.es_url)
    yield client
    client.close()


@pytest.fixture
def es_store(noida_es: NoidaServer, es_prefix: str) -> Iterator[ElasticsearchStore]:
    """A store on freshly set-up indices with their own prefix."""
    apply_setup(noida_es.es_url, es_prefix)
    store = ElasticsearchStore(es_config(noida_es.es_url, es_prefix))
    yield store
    store.close()
