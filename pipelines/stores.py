"""Settings -> the picklable connection configs (store, Kafka) every DoFn and CLI command builds clients from."""

from __future__ import annotations

from connectors.kafka import KafkaConnection
from connectors.store import ElasticsearchConfig, StoreConfig
from pipelines.settings import Settings, SettingsError


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


def kafka_connection(settings: Settings) -> KafkaConnection:
    """The connection the settings describe; incomplete security settings fail at start-up."""
    connection = KafkaConnection(
        bootstrap_servers=tuple(settings.kafka_bootstrap_servers),
        security_protocol=settings.kafka_security_protocol,
        sasl_mechanism=settings.kafka_sasl_mechanism,
        sasl_username=settings.kafka_sasl_username,
        sasl_password=settings.kafka_sasl_password,
        ssl_cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
        ssl_certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
        ssl_keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
    )
    problems = connection.problems()
    if problems:
        raise SettingsError("invalid kafka settings: " + "; ".join(problems))
    return connection
