"""Per-subscription Kafka topics (`--kafka-topic`) against a real broker (noida-db)."""

from __future__ import annotations

import time
import uuid

from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic

from connectors.kafka import KafkaConnection
from pipelines.delivery import DeliveryConfig, Dispatcher
from pipelines.matching import make_alert
from schemas import Alert, AlertDigest, Article, Subscription, TopicTag
from tests.servers import NoidaServer


def test_alerts_go_to_the_subscriptions_topic_keyed_by_subscription_id(noida_kafka: NoidaServer) -> None:
    topic = f"alerts.sub-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=noida_kafka.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    admin.close()
    sub = Subscription(
        id="desk-iraq",
        name="Desk Iraq",
        rule={"topic": "troop_withdrawal"},
        targets=[{"kind": "kafka", "topic": topic}],
    )
    articles = [
        Article(
            title=f"Troops leave, part {n}",
            text="Soldiers pulled out.",
            url=f"https://x.example/{n}",
            topics=[TopicTag(id="troop_withdrawal", score=0.9)],
        )
        for n in range(3)
    ]
    alerts = [make_alert(sub, a, ["topic troop_withdrawal (score 0.90)"]) for a in articles]
    dispatcher = Dispatcher([], DeliveryConfig(kafka=KafkaConnection(bootstrap_servers=(noida_kafka.kafka_bootstrap,))))
    try:
        assert dispatcher.deliver(sub, alerts[0]) == []
        # A digest goes out as its alerts: consumers of an alert topic read Alert JSON only.
        assert dispatcher.deliver_digest(sub, AlertDigest(subscription_id=sub.id, alerts=alerts[1:])) == []
    finally:
        dispatcher.close()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=noida_kafka.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
        group_id=f"t-{uuid.uuid4().hex[:6]}",
    )
    received = []
    for message in consumer:
        received.append(message)
        if len(received) == 3:
            break
    consumer.close()
    assert [m.key for m in received] == [b"desk-iraq"] * 3
    assert [Alert.model_validate_json(m.value).title for m in received] == [a.title for a in alerts]


def test_an_unreachable_broker_becomes_a_dead_letter() -> None:
    sub = Subscription(id="s", name="s", rule={"topic": "coup"}, targets=[{"kind": "kafka", "topic": "alerts.s"}])
    alert = make_alert(sub, Article(title="Coup", text="Soldiers seized power."), ["topic coup"])
    config = KafkaConnection(bootstrap_servers=("127.0.0.1:1",), connect_timeout_s=1.0)
    dispatcher = Dispatcher([], DeliveryConfig(kafka=config))
    letters = dispatcher.deliver(sub, alert)
    assert len(letters) == 1 and letters[0].reason.startswith("kafka: kafka topic alerts.s: ")
    # The next alert of the same run fails at once with the same reason, without waiting again.
    started = time.monotonic()
    again = dispatcher.deliver(sub, alert)
    assert time.monotonic() - started < 0.5 and "not retried until the next cycle" in again[0].reason
    dispatcher.close()
