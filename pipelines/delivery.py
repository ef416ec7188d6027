"""Which channels an alert goes to, and what a failed delivery leaves behind (a dead letter per channel).

Operator channels (console, JSON Lines file, the operator's alert topic) get every alert; a subscription's
own targets (webhook, Kafka topic, email) get only its alerts. The store itself is the system of record:
`record_alert` writes every alert, with its status, to the alerts table or Elasticsearch alerts index.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from connectors.alert_channels import AlertChannel, DeliveryError, deliver_digest
from connectors.email_channel import EmailChannel, SmtpConfig
from connectors.kafka import KafkaConnection
from connectors.topic_channel import KafkaTopicChannel, Producer, ProducerFactory, kafka_producer_factory
from connectors.webhook import Resolver, WebhookChannel, WebhookPolicy, default_resolver, redact_url, webhook_session
from pipelines import logs
from pipelines.settings import Settings
from pipelines.stores import kafka_connection
from schemas import (
    REVEAL_SECRETS,
    Alert,
    AlertDigest,
    DeadLetter,
    EmailTarget,
    KafkaTarget,
    Subscription,
    Target,
    WebhookTarget,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryConfig:
    """Picklable settings of the subscriber channels; each worker builds its clients from it."""

    webhook: WebhookPolicy = field(default_factory=WebhookPolicy)
    smtp: SmtpConfig | None = None
    kafka: KafkaConnection | None = field(default_factory=KafkaConnection)


class _Unavailable:
    """A target the operator has not configured: every delivery fails with the reason (a dead letter)."""

    def __init__(self, name: str, reason: str) -> None:
        self.name, self.reason = name, reason

    def deliver(self, alert: Alert) -> None:
        raise DeliveryError(self.reason)

    def close(self) -> None:
        return None


class Dispatcher:
    """Builds and caches the channels of each subscription; clients are created lazily and shared."""

    def __init__(
        self,
        operator_channels: Sequence[AlertChannel],
        config: DeliveryConfig | None = None,
        *,
        session: requests.Session | None = None,
        producer_factory: ProducerFactory | None = None,
        resolver: Resolver = default_resolver,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.operator = list(operator_channels)
        self.config = config or DeliveryConfig()
        self._session = session
        self._producer_factory = producer_factory
        self._producer: Producer | None = None
        self._producer_error: str | None = None
        self._resolver, self._sleep = resolver, sleep
        self._targets: dict[str, AlertChannel] = {}

    # --- channel construction ---

    def _http(self) -> requests.Session:
        if self._session is None:
            self._session = webhook_session(self.config.webhook.allow_private)
        return self._session

    def producer(self) -> Producer:
        """One producer for all topic targets; if it cannot be created, the other alerts of this run fail
        at once with the same reason instead of each waiting for the broker again."""
        if self._producer_error is not None:
            raise RuntimeError(f"{self._producer_error} (not retried until the next cycle)")
        if self._producer is None:
            factory = self._producer_factory
            if factory is None:
                factory = kafka_producer_factory(self.config.kafka or KafkaConnection())
            try:
                self._producer = factory()
            except Exception as exc:
                self._producer_error = f"{type(exc).__name__}: {exc}"
                raise
        return self._producer

    def _build(self, target: Target) -> AlertChannel:
        extra: dict[str, Any] = {"sleep": self._sleep} if self._sleep else {}
        if isinstance(target, WebhookTarget):
            logs.add_secrets(target.secret.get_secret_value() if target.secret else None)
            return WebhookChannel(
                target.url,
                target.secret,
                self.config.webhook,
                session=self._http(),
                resolver=self._resolver,
                **extra,
            )
        if isinstance(target, KafkaTarget):
            if self.config.kafka is None and self._producer_factory is None:
                return _Unavailable("kafka", "no Kafka configured for alert topics (NEWSWATCH_KAFKA_BOOTSTRAP_SERVERS)")
            return KafkaTopicChannel(target.topic, self.producer)
        if isinstance(target, EmailTarget):
            if self.config.smtp is None:
                return _Unavailable("email", "no SMTP server configured (NEWSWATCH_SMTP_HOST)")
            return EmailChannel(target.to, self.config.smtp, **extra)
        raise TypeError(type(target).__name__)

    def channels_for(self, subscription: Subscription) -> list[AlertChannel]:
        channels = list(self.operator)
        for target in subscription.targets:
            key = target.model_dump_json(context=REVEAL_SECRETS)
            if key not in self._targets:
                self._targets[key] = self._build(target)
            channels.append(self._targets[key])
        return channels

    # --- delivery ---

    def deliver(self, subscription: Subscription, alert: Alert) -> list[DeadLetter]:
        return self._each(subscription, alert.model_dump_json(), alert.id, lambda ch: ch.deliver(alert))

    def deliver_digest(self, subscription: Subscription, digest: AlertDigest) -> list[DeadLetter]:
        return self._each(subscription, digest.model_dump_json(), digest.id, lambda ch: deliver_digest(ch, digest))

    def _each(
        self, subscription: Subscription, payload: str, ref: str, send: Callable[[AlertChannel], None]
    ) -> list[DeadLetter]:
        letters = []
        for channel in self.channels_for(subscription):
            try:
                send(channel)
            except DeliveryError as exc:
                log.warning("delivery failed subscription=%s channel=%s: %s", subscription.id, channel.name, exc)
                letters.append(
                    DeadLetter(
                        stage="deliver",
                        reason=f"{channel.name}: {exc}",
                        payload=payload,
                        source=subscription.id,
                        details={"channel": channel.name, "ref": ref, "target": _describe_channel(channel)},
                    )
                )
        return letters

    def close(self) -> None:
        for channel in [*self.operator, *self._targets.values()]:
            channel.close()
        if self._producer is not None:
            try:
                self._producer.flush(timeout=10)
                self._producer.close(timeout=10)
            except Exception as exc:  # closing must not hide the cycle's outcome
                log.warning("closing the alert producer failed: %s", exc)
            self._producer = None
        if self._session is not None:
            self._session.close()


def _describe_channel(channel: AlertChannel) -> str:
    if isinstance(channel, WebhookChannel):
        return redact_url(channel.url)
    if isinstance(channel, KafkaTopicChannel):
        return channel.topic
    if isinstance(channel, EmailChannel):
        return ", ".join(channel.recipients)
    return channel.name


def delivery_config(settings: Settings) -> DeliveryConfig:
    """The subscriber channels' part of the settings (NEWSWATCH_WEBHOOK_*, NEWSWATCH_SMTP_*, NEWSWATCH_KAFKA_*)."""
    smtp = None
    if settings.smtp_host:
        smtp = SmtpConfig(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            sender=settings.smtp_from,
            starttls=settings.smtp_starttls,
            ssl=settings.smtp_ssl,
            timeout=settings.smtp_timeout,
        )
    return DeliveryConfig(
        webhook=WebhookPolicy(
            timeout=settings.webhook_timeout,
            attempts=settings.webhook_attempts,
            backoff_max=settings.webhook_backoff_max,
            allow_private=settings.webhook_allow_private,
        ),
        smtp=smtp,
        kafka=kafka_connection(settings),
    )
