"""The Kafka side of the job: settings -> connection, the cycle source, and where dead letters and alerts go."""

from __future__ import annotations

import base64
import logging
from typing import Any

from connectors.kafka import (
    CycleRead,
    KafkaClientFactory,
    KafkaClients,
    KafkaMessage,
    KafkaReader,
    KafkaUnavailable,
    MemberSlot,
    ReadLimits,
    TopicTarget,
    format_offsets,
)
from pipelines.job import CycleFailed, SourceBatch
from pipelines.records import dead_letter_record, message_record
from pipelines.settings import Settings
from pipelines.stores import kafka_connection
from schemas import DeadLetter

log = logging.getLogger(__name__)


def kafka_clients(settings: Settings) -> KafkaClients:
    return KafkaClients(kafka_connection(settings))


def dead_letter_target(settings: Settings, clients: KafkaClientFactory | None = None) -> TopicTarget | None:
    """The dead-letter topic, when the job reads Kafka and a topic is named (empty string: none)."""
    if "kafka" not in settings.sources or not settings.kafka_dlq_topic:
        return None
    return TopicTarget(clients or kafka_clients(settings), settings.kafka_dlq_topic)


def alerts_target(settings: Settings, clients: KafkaClientFactory | None = None) -> TopicTarget | None:
    if not settings.alerts_topic:
        return None
    return TopicTarget(clients or kafka_clients(settings), settings.alerts_topic)


class KafkaSource:
    """One topic read as a consumer-group member, a bounded batch per cycle. Messages become `message`
    records (decoded, and dead-lettered when bad, inside the pipeline); oversized or empty ones become dead
    letters here. Offsets are committed by the batch's `commit`, which the job calls only after the sinks
    and alert delivery succeeded."""

    name = "kafka"

    def __init__(self, reader: KafkaReader, max_message_bytes: int, slot: MemberSlot | None = None) -> None:
        self.reader = reader
        self.max_message_bytes = max_message_bytes
        self.slot = slot

    @classmethod
    def from_settings(cls, settings: Settings, clients: KafkaClientFactory | None = None) -> KafkaSource:
        clients = clients or kafka_clients(settings)
        slot: MemberSlot | None = None
        instance_id = settings.kafka_group_instance_id
        if instance_id is None:
            slot = MemberSlot(settings.data_dir / "kafka")
            instance_id = slot.acquire()
        elif instance_id == "dynamic":
            instance_id = None
        reader = KafkaReader(
            clients,
            settings.kafka_topic,
            settings.kafka_group_id,
            limits=ReadLimits(
                max_records=settings.kafka_max_records,
                read_timeout_s=settings.kafka_read_timeout,
                join_timeout_s=settings.kafka_read_timeout,
            ),
            auto_offset_reset=settings.kafka_auto_offset_reset,
            max_message_bytes=settings.kafka_max_message_bytes,
            group_instance_id=instance_id,
        )
        log.info(
            "kafka: topic %s, group %s, %s",
            settings.kafka_topic,
            settings.kafka_group_id,
            f"static member {instance_id}" if instance_id else "dynamic member",
        )
        return cls(reader, settings.kafka_max_message_bytes, slot)

    def poll(self, force: bool = False) -> SourceBatch:
        try:
            read = self.reader.read()
        except KafkaUnavailable as exc:
            raise CycleFailed(f"kafka: {exc}") from exc
        records = [self.record(m) for m in read.messages]
        stats: dict[str, Any] = {
            "partitions": ",".join(f"p{tp.partition}" for tp in sorted(read.end)) or "-",
            "messages": len(read.messages),
            "rejected": sum(1 for m in read.messages if self.refusal(m)),
            "lag": format_offsets(read.lag()),
        }
        if read.lost:
            stats["rebalanced_away"] = ",".join(f"p{tp.partition}" for tp in sorted(read.lost))
        log.info(
            "kafka: read %d message(s) from %s partition(s) %s (end offsets %s)",
            len(read.messages),
            self.reader.topic,
            stats["partitions"],
            format_offsets(read.end),
        )
        backlog = any(read.lag().values())  # the read stopped at max_records below the end offsets
        return SourceBatch(self.name, records, stats, commit=lambda: self._commit(read, stats), backlog=backlog)

    def _commit(self, read: CycleRead, stats: dict[str, Any]) -> None:
        try:
            result = self.reader.commit(read)
        except KafkaUnavailable as exc:
            # Everything was stored (idempotently): the messages are read and stored again next cycle.
            log.warning("kafka: %s; this cycle's messages will be read again", exc)
            stats["commit"] = "failed"
            return
        stats["committed"] = format_offsets(result.committed)
        stats["lag"] = format_offsets(result.lag)
        if result.skipped:
            log.warning(
                "kafka: not committing %s, assigned to another member meanwhile (it reads them again)",
                ",".join(f"p{tp.partition}" for tp in sorted(result.skipped)),
            )

    def refusal(self, message: KafkaMessage) -> str | None:
        """Why a message is dead-lettered before decoding, if it is."""
        return refusal(message, self.max_message_bytes)

    def record(self, message: KafkaMessage) -> str:
        return message_to_record(message, self.max_message_bytes)

    def close(self) -> None:
        self.reader.close()
        if self.slot is not None:
            self.slot.release()


def refusal(message: KafkaMessage, max_message_bytes: int) -> str | None:
    """Why a message is dead-lettered before decoding (null value, oversized), if it is."""
    if message.value is None:
        return "empty message (null value, a tombstone)"
    if message.size > max_message_bytes:
        return f"oversized message: {message.size} bytes, more than kafka_max_message_bytes={max_message_bytes}"
    return None


def message_to_record(message: KafkaMessage, max_message_bytes: int) -> str:
    """A Kafka message -> the record line the pipeline parses (the cycle source and the streaming one)."""
    source = f"kafka:{message.topic}"
    meta = message.coordinates()
    reason = refusal(message, max_message_bytes)
    if reason is None:
        return message_record(message.value or b"", source=source, meta=meta)
    value_b64 = None if message.value is None else base64.b64encode(message.value).decode("ascii")
    return dead_letter_record(
        DeadLetter(
            stage="parse",
            reason=reason,
            payload=message.value or b"",
            source=source,
            details={**meta, "value_b64": value_b64},
        )
    )
