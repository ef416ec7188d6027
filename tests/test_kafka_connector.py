"""connectors/kafka against a real broker (noida-db's Kafka protocol): bounded reads, commits only on request,
the dead-letter topic's headers, alert publishing, and the secrets that must never show."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from kafka import TopicPartition
from pydantic import SecretStr

from connectors.alert_channels import DeliveryError
from connectors.kafka import (
    H_OFFSET,
    H_PARTITION,
    H_REASON,
    H_STAGE,
    H_TOPIC,
    H_TRUNCATED,
    KafkaAlertChannel,
    KafkaClients,
    KafkaConnection,
    KafkaPublisher,
    KafkaReader,
    KafkaUnavailable,
    OutgoingMessage,
    ReadLimits,
    TopicTarget,
    committed_offsets,
    dead_letter_message,
    end_offsets,
    ensure_topic,
    headers_dict,
    read_all,
)
from pipelines.kafka_source import KafkaSource
from pipelines.records import parse_record
from pipelines.settings import SettingsError, load_settings
from pipelines.stores import kafka_connection
from schemas import Alert, DeadLetter, RawArticle
from tests.servers import NoidaServer, free_port


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def clients(noida_kafka: NoidaServer) -> KafkaClients:
    return KafkaClients(KafkaConnection((noida_kafka.kafka_bootstrap,)))


def produce(clients: KafkaClients, topic: str, values: list[bytes], partition: int | None = None) -> None:
    publisher = KafkaPublisher(TopicTarget(clients, topic))
    producer = publisher.producer
    try:
        for value in values:
            producer.send(topic, value=value, partition=partition)
        producer.flush(timeout=30)
    finally:
        publisher.close()


def article(i: int) -> bytes:
    return json.dumps({"title": f"Story {i}", "text": f"Body of story {i}.", "url": f"https://x.example/{i}"}).encode()


def reader(clients: KafkaClients, topic: str, group: str, **limits: float) -> KafkaReader:
    return KafkaReader(clients, topic, group, limits=ReadLimits(read_timeout_s=20, join_timeout_s=20, **limits))


def test_reads_up_to_the_end_seen_at_start_and_commits_only_when_told(clients: KafkaClients) -> None:
    topic, group = unique("read"), unique("g")
    ensure_topic(clients, topic, 2)
    produce(clients, topic, [article(i) for i in range(10)])

    first = reader(clients, topic, group)
    try:
        read = first.read()
        assert sorted(json.loads(m.value or b"")["title"] for m in read.messages) == sorted(
            f"Story {i}" for i in range(10)
        )
        assert read.end == {TopicPartition(topic, p): o for p, o in end_offsets(clients, topic).items()}
        produce(clients, topic, [article(i) for i in range(10, 13)])  # after the cycle's end offsets
        # Not committed: reading again (a failed cycle) starts over from the committed offsets.
        again = first.read()
        assert len(again.messages) == 13
        assert committed_offsets(clients, group, topic) == {0: None, 1: None}
        result = first.commit(again)
        assert committed_offsets(clients, group, topic) == end_offsets(clients, topic)
        assert set(result.lag.values()) == {0}
        assert first.read().messages == []
    finally:
        first.close()

    # A new member of the group resumes from the committed offsets.
    produce(clients, topic, [article(99)])
    second = reader(clients, topic, group)
    try:
        assert [json.loads(m.value or b"")["title"] for m in second.read().messages] == ["Story 99"]
    finally:
        second.close()


def test_a_backlog_is_read_in_bounded_cycles(clients: KafkaClients) -> None:
    topic, group = unique("backlog"), unique("g")
    ensure_topic(clients, topic, 3)
    produce(clients, topic, [article(i) for i in range(25)])
    member = reader(clients, topic, group, max_records=10, poll_records=4)
    try:
        sizes, seen = [], set()
        for _ in range(4):
            read = member.read()
            sizes.append(len(read.messages))
            seen |= {(m.partition, m.offset) for m in read.messages}
            member.commit(read)
        assert sizes == [10, 10, 5, 0]
        assert len(seen) == 25
        assert committed_offsets(clients, group, topic) == end_offsets(clients, topic)
    finally:
        member.close()


def test_latest_reset_skips_history_for_a_new_group(clients: KafkaClients) -> None:
    topic, group = unique("latest"), unique("g")
    ensure_topic(clients, topic, 1)
    produce(clients, topic, [article(i) for i in range(5)])
    member = KafkaReader(clients, topic, group, auto_offset_reset="latest", limits=ReadLimits(join_timeout_s=20))
    try:
        read = member.read()
        assert read.messages == []
        member.commit(read)
        assert committed_offsets(clients, group, topic) == {0: 5}
        produce(clients, topic, [article(7)])
        assert [m.offset for m in member.read().messages] == [5]
    finally:
        member.close()


def test_kafka_source_records_keep_coordinates_and_refuse_oversized_and_null(clients: KafkaClients) -> None:
    topic, group = unique("source"), unique("g")
    ensure_topic(clients, topic, 1)
    produce(clients, topic, [article(1), b"x" * 3000, b"{not json"])
    publisher = KafkaPublisher(TopicTarget(clients, topic))
    publisher.producer.send(topic, key=b"k", value=None, headers=[("trace", b"t-1")])
    publisher.producer.flush(timeout=30)
    publisher.close()

    source = KafkaSource(reader(clients, topic, group), max_message_bytes=2048)
    try:
        batch = source.poll()
        parsed = [parse_record(r) for r in batch.records]
        assert isinstance(parsed[0], RawArticle)
        assert parsed[0].source == f"kafka:{topic}"
        oversized, bad_json, tombstone = parsed[1], parsed[2], parsed[3]
        assert isinstance(oversized, DeadLetter) and oversized.reason.startswith("oversized message: 3000 bytes")
        assert isinstance(bad_json, DeadLetter) and bad_json.reason.startswith("invalid JSON")
        assert isinstance(tombstone, DeadLetter) and "null value" in tombstone.reason
        assert oversized.details["offset"] == 1 and bad_json.details["partition"] == 0
        assert batch.stats["messages"] == 4 and batch.stats["rejected"] == 2
        assert batch.stats["lag"] == "p0:0"  # everything below the end offsets was read
        # The exact original bytes survive for the dead-letter topic.
        assert dead_letter_message(oversized).value == b"x" * 3000
        assert dead_letter_message(bad_json).value == b"{not json"
        null_copy = dead_letter_message(tombstone)
        assert null_copy is not None and null_copy.value is None and null_copy.key == b"k"
        assert headers_dict(null_copy.headers)["trace"] == "t-1"
        assert committed_offsets(clients, group, topic) == {0: None}
        batch.commit()
        assert committed_offsets(clients, group, topic) == {0: 4}
        assert batch.stats["committed"] == "p0:4"
    finally:
        source.close()


def test_dead_letter_message_carries_original_bytes_key_headers_and_reason() -> None:
    raw = b"\xff\xfe not utf-8"
    record = json.dumps(
        {
            "kind": "message",
            "source": "kafka:articles",
            "meta": {
                "origin": "kafka",
                "topic": "articles",
                "partition": 2,
                "offset": 41,
                "timestamp": 1700000000000,
                "key_b64": "a2V5",
                "headers": [["trace", "dC0x"], [H_REASON, "b2xk"]],
            },
            "value_b64": "//4gbm90IHV0Zi04",
        }
    )
    letter = parse_record(record)
    assert isinstance(letter, DeadLetter) and letter.reason.startswith("not UTF-8")
    message = dead_letter_message(letter)
    assert message is not None
    assert message.value == raw and message.key == b"key"
    headers = headers_dict(message.headers)
    assert headers["trace"] == "t-1"
    assert headers[H_REASON] == letter.reason  # the original's stale header of that name was dropped
    assert [k for k, _ in message.headers].count(H_REASON) == 1
    assert (headers[H_STAGE], headers[H_TOPIC], headers[H_PARTITION], headers[H_OFFSET]) == (
        "parse",
        "articles",
        "2",
        "41",
    )
    # Letters that did not come from Kafka are not sent to the dead-letter topic.
    assert dead_letter_message(DeadLetter(stage="fetch", reason="HTTP 500", source="https://f.example")) is None


def test_publisher_cuts_what_the_broker_refuses_as_too_large(clients: KafkaClients) -> None:
    topic = unique("dlq-big")
    ensure_topic(clients, topic, 1)
    publisher = KafkaPublisher(TopicTarget(clients, topic), fallback_bytes=100_000)
    try:
        big = b"y" * (3 * 1024 * 1024)  # noida-db, like Kafka's default, refuses messages over ~1 MB
        publisher.send(OutgoingMessage(b"k", big, ((H_REASON, b"oversized"),)))
        publisher.send(OutgoingMessage(b"k", b"small"))
        assert publisher.flush() == 2
    finally:
        publisher.close()
    stored = read_all(clients, topic)
    assert sorted(len(m.value or b"") for m in stored) == [5, 100_000]
    cut = next(m for m in stored if len(m.value or b"") == 100_000)
    assert headers_dict(cut.headers)[H_TRUNCATED] == str(len(big))


def test_alert_channel_publishes_alert_json_keyed_by_subscription(clients: KafkaClients) -> None:
    topic = unique("alerts")
    ensure_topic(clients, topic, 2)
    channel = KafkaAlertChannel(TopicTarget(clients, topic))
    alerts = [
        Alert(subscription_id="troop-withdrawal", article_id=f"a{i}", title=f"Troops leave {i}", reasons=["topic"])
        for i in range(3)
    ]
    try:
        for alert in alerts:
            channel.deliver(alert)
    finally:
        channel.close()
    stored = read_all(clients, topic)
    assert {m.key for m in stored} == {b"troop-withdrawal"}
    assert len({m.partition for m in stored}) == 1  # one key, one partition: in order
    assert sorted(Alert.model_validate_json(m.value or b"").id for m in stored) == sorted(a.id for a in alerts)


def test_alert_channel_reports_an_unreachable_broker_as_delivery_error() -> None:
    dead = KafkaClients(KafkaConnection((f"127.0.0.1:{free_port()}",), connect_timeout_s=2))
    channel = KafkaAlertChannel(TopicTarget(dead, "alerts"), timeout_s=5)
    with pytest.raises(DeliveryError, match="topic alerts"):
        channel.deliver(Alert(subscription_id="s", article_id="a", title="t"))
    channel.close()


def test_reader_reports_an_unreachable_broker() -> None:
    dead = KafkaClients(KafkaConnection((f"127.0.0.1:{free_port()}",), connect_timeout_s=2))
    member = KafkaReader(dead, "t", "g", limits=ReadLimits(join_timeout_s=3))
    with pytest.raises(KafkaUnavailable):
        member.read()
    member.close()


# --- settings and secrets ---


def test_sasl_settings_come_from_a_file_and_never_show(tmp_path, monkeypatch, caplog) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text("s3cr3t-pw\n")
    monkeypatch.setenv("NEWSWATCH_KAFKA_SASL_PASSWORD_FILE", str(secret))
    settings = load_settings(
        kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="nw"
    )
    connection = kafka_connection(settings)
    assert connection.client_config()["sasl_plain_password"] == "s3cr3t-pw"
    assert "s3cr3t-pw" not in repr(connection) and "s3cr3t-pw" not in repr(settings)
    # kafka-python's admin client logs its configuration at DEBUG: the password is masked there.
    with caplog.at_level(logging.DEBUG, logger="kafka.admin.client"):
        logging.getLogger("kafka.admin.client").debug(
            "Starting KafkaAdminClient with configuration: %s", connection.client_config()
        )
    assert "s3cr3t-pw" not in caplog.text and "sasl_plain_password" in caplog.text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kafka_security_protocol": "SASL_PLAINTEXT"}, "kafka_sasl_mechanism"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "PLAIN"}, "kafka_sasl_username"),
        ({"kafka_sasl_mechanism": "PLAIN"}, "not SASL"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "/c.pem"}, "kafka_ssl_keyfile"),
    ],
)
def test_incomplete_security_settings_fail_naming_the_setting(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        kafka_connection(load_settings(**overrides))


def test_ssl_and_sasl_options_reach_the_client() -> None:
    connection = KafkaConnection(
        ("b1:9093", "b2:9093"),
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="nw",
        sasl_password=SecretStr("pw"),
        ssl_cafile="/etc/ca.pem",
    )
    config = connection.client_config()
    assert config["bootstrap_servers"] == ["b1:9093", "b2:9093"]
    assert (config["sasl_mechanism"], config["sasl_plain_username"], config["ssl_cafile"]) == (
        "SCRAM-SHA-256",
        "nw",
        "/etc/ca.pem",
    )
    assert "ssl_cafile" not in KafkaConnection(("b:9092",)).client_config()


def test_unknown_kafka_setting_values_fail_at_start_up() -> None:
    with pytest.raises(SettingsError, match="kafka_auto_offset_reset"):
        load_settings(kafka_auto_offset_reset="middle")
    with pytest.raises(SettingsError, match="kafka_max_records"):
        load_settings(kafka_max_records=0)
