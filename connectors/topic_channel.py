"""Per-subscription Kafka topics (`subscriptions add --kafka-topic T`): Alert JSON keyed by subscription id.

Only a small producer interface is needed, so the operator's Kafka settings (and the kafka connector's own
alert sink for NEWSWATCH_ALERTS_TOPIC) stay in one place: whoever wires delivery passes a producer factory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from connectors.alert_channels import DeliveryError
from connectors.kafka import KafkaClients, KafkaConnection
from schemas import Alert, AlertDigest


class Producer(Protocol):
    """What kafka-python's KafkaProducer offers and this channel uses."""

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


ProducerFactory = Callable[[], Producer]


def kafka_producer_factory(connection: KafkaConnection) -> ProducerFactory:
    """Producers for the operator's Kafka connection (security settings included, never logged)."""
    timeout_ms = int(connection.connect_timeout_s * 1000)

    def make() -> Producer:
        producer: Producer = KafkaClients(connection).producer(retries=5, max_block_ms=timeout_ms)
        return producer

    return make


class KafkaTopicChannel:
    """Publishes each alert to `topic` and waits for the broker's acknowledgement."""

    name = "kafka"

    def __init__(self, topic: str, producer: Callable[[], Producer], timeout: float = 15.0) -> None:
        self.topic, self._producer, self.timeout = topic, producer, timeout

    def deliver(self, alert: Alert) -> None:
        try:
            future = self._producer().send(
                self.topic, value=alert.model_dump_json().encode("utf-8"), key=alert.subscription_id.encode("utf-8")
            )
            future.get(timeout=self.timeout)
        except Exception as exc:  # kafka-python raises KafkaError subclasses, or plain errors when unreachable
            raise DeliveryError(f"kafka topic {self.topic}: {type(exc).__name__}: {exc}") from None

    def deliver_digest(self, digest: AlertDigest) -> None:
        """Consumers of an alert topic read Alert JSON, so a digest goes out as its alerts."""
        for alert in digest.alerts:
            self.deliver(alert)

    def close(self) -> None:
        return None
