"""Settings -> the picklable StoreConfig every DoFn and CLI command opens its store from."""

from __future__ import annotations

from connectors.store import ElasticsearchConfig, StoreConfig
from pipelines.settings import Settings


def elasticsearch_config(settings: Settings) -> ElasticsearchConfig:
    return ElasticsearchConfig(
        url=settings.es_url or "http://localhost:9200",
        api_key=settings.es_api_key,
        username=settings.es_username,
        password=settings.es_password,
        ca_file=str(settings.es_ca_file) if settings.es_ca_file else None,
        index_prefix=settings.es_index_prefix,
        timeout=settings.es_timeout,
        max_retries=settings.es_max_retries,
        max_backoff=settings.es_max_backoff,
        bulk_max_docs=settings.es_bulk_max_docs,
        bulk_max_bytes=settings.es_bulk_max_bytes,
    )


def store_config(settings: Settings) -> StoreConfig:
    return StoreConfig(
        kind=settings.sink, sqlite_path=str(settings.store_path), elasticsearch=elasticsearch_config(settings)
    )
