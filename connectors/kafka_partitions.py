"""Kafka by partition and offset, for the unbounded (streaming) source.

The streaming runner, not Kafka's group coordinator, decides who reads which partition: each partition is a
Splittable DoFn restriction (pipelines/streaming.py), so consumers here are *assigned* partitions and seek to
the restriction's start offset. The consumer group is used only to remember where a job stands
(`GroupOffsets`): the offset a new job starts from, and the commits made once the runner has made a bundle's
output durable. I/O only; no decoding.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from connectors.kafka import KafkaClientFactory, KafkaMessage, KafkaUnavailable, OffsetReset

log = logging.getLogger(__name__)

# The open end of an unbounded restriction (Java's Long.MAX_VALUE, as Beam's KafkaIO uses).
MAX_OFFSET = 2**63 - 1


@dataclass(frozen=True)
class PartitionSpec:
    """One topic-partition to read: the Splittable DoFn's element. `stop_at` (epoch seconds) bounds a test
    run: the reader gives the rest of its restriction up once that time has passed."""

    topic: str
    partition: int
    stop_at: float | None = None

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


def list_partitions(clients: KafkaClientFactory, topic: str, timeout_s: float = 30.0) -> list[int]:
    """The topic's partition numbers; KafkaUnavailable if the topic does not exist within the timeout."""
    try:
        consumer = clients.consumer(enable_auto_commit=False)
    except KafkaError as exc:
        raise KafkaUnavailable(f"listing partitions of {topic}: {type(exc).__name__}: {exc}") from exc
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            partitions = consumer.partitions_for_topic(topic)
            if partitions:
                return sorted(partitions)
            if time.monotonic() > deadline:
                raise KafkaUnavailable(
                    f"topic {topic} not found (create it first, e.g. newswatch produce --partitions)"
                )
            time.sleep(0.5)
    finally:
        consumer.close()


class PartitionFetcher:
    """Reads partitions from given offsets: one assigned consumer per partition, kept between calls, so a
    reader resuming where it stopped does not seek (seeking drops the consumer's prefetched records)."""

    def __init__(
        self, clients: KafkaClientFactory, *, max_message_bytes: int = 1024 * 1024, poll_records: int = 500
    ) -> None:
        self.clients, self.max_message_bytes, self.poll_records = clients, max_message_bytes, poll_records
        self._consumers: dict[TopicPartition, KafkaConsumer] = {}
        self._next: dict[TopicPartition, int] = {}

    def fetch(self, tp: TopicPartition, start: int, timeout_s: float) -> list[KafkaMessage]:
        """Messages of `tp` from offset `start` on (what arrives within `timeout_s`, at most poll_records)."""
        try:
            consumer = self._consumers.get(tp)
            if consumer is None:
                consumer = self.clients.consumer(
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",  # an offset deleted by retention: go on from the oldest left
                    max_partition_fetch_bytes=max(1024 * 1024, self.max_message_bytes + 64 * 1024),
                )
                consumer.assign([tp])
                self._consumers[tp] = consumer
            if self._next.get(tp) != start:
                consumer.seek(tp, start)
            records = consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=self.poll_records).get(tp, [])
        except KafkaError as exc:
            raise KafkaUnavailable(f"reading {tp.topic}:p{tp.partition}: {type(exc).__name__}: {exc}") from exc
        messages = [KafkaMessage.from_record(r) for r in records if r.offset >= start]
        if messages:
            if messages[0].offset > start and self._next.get(tp) != start:
                log.warning(
                    "kafka: %s:p%d offsets %d-%d are gone (retention); went on from %d",
                    tp.topic,
                    tp.partition,
                    start,
                    messages[0].offset - 1,
                    messages[0].offset,
                )
            self._next[tp] = messages[-1].offset + 1
        else:
            self._next[tp] = start
        return messages

    def release(self, tp: TopicPartition) -> None:
        consumer = self._consumers.pop(tp, None)
        self._next.pop(tp, None)
        if consumer is not None:
            _close(consumer)

    def close(self) -> None:
        for tp in list(self._consumers):
            self.release(tp)


class GroupOffsets:
    """Where a consumer group stands on partitions it reads without joining the group: the offset to start
    from (committed, else the reset position), the log end (to size the backlog; cached briefly, because
    runners ask often), and monotonic commits. Thread-safe: runners size restrictions and finalize bundles on
    other threads than the one processing."""

    def __init__(
        self,
        clients: KafkaClientFactory,
        group_id: str,
        auto_offset_reset: OffsetReset = "earliest",
        end_cache_s: float = 2.0,
    ) -> None:
        self.clients, self.group_id, self.auto_offset_reset = clients, group_id, auto_offset_reset
        self.end_cache_s = end_cache_s
        self._lock = threading.Lock()
        self._consumer: KafkaConsumer | None = None
        self._ends: dict[TopicPartition, tuple[float, int]] = {}
        self._committed: dict[TopicPartition, int] = {}

    def _client(self) -> KafkaConsumer:
        if self._consumer is None:
            self._consumer = self.clients.consumer(group_id=self.group_id, enable_auto_commit=False)
        return self._consumer

    def start(self, tp: TopicPartition) -> int:
        """The committed offset, else the beginning or the end of the log (auto_offset_reset)."""
        with self._lock:
            try:
                consumer = self._client()
                committed = consumer.committed(tp)
                if committed is not None:
                    return int(committed)
                reset = (
                    consumer.beginning_offsets([tp])
                    if self.auto_offset_reset == "earliest"
                    else consumer.end_offsets([tp])
                )
                return int(reset[tp])
            except KafkaError as exc:
                self._reset()
                raise KafkaUnavailable(f"offsets of {self.group_id} on {tp.topic}:p{tp.partition}: {exc}") from exc

    def end(self, tp: TopicPartition) -> int | None:
        """The log end offset (cached for end_cache_s); None when the broker cannot say right now."""
        with self._lock:
            cached = self._ends.get(tp)
            if cached and time.monotonic() - cached[0] < self.end_cache_s:
                return cached[1]
            try:
                end = int(self._client().end_offsets([tp])[tp])
            except KafkaError as exc:
                log.debug("kafka: end offset of %s:p%d unknown: %s", tp.topic, tp.partition, exc)
                self._reset()
                return cached[1] if cached else None
            self._ends[tp] = (time.monotonic(), end)
            return end

    def commit(self, offsets: dict[TopicPartition, int]) -> bool:
        """Commit `offsets` (the next offset to read, per partition) where they move forward; False when the
        broker refused (logged: the next job then starts a little earlier and the store absorbs the replay)."""
        with self._lock:
            forward = {tp: n for tp, n in offsets.items() if n > self._committed.get(tp, -1)}
            if not forward:
                return True
            try:
                self._client().commit({tp: OffsetAndMetadata(n, "", -1) for tp, n in forward.items()})
            except KafkaError as exc:
                log.warning("kafka: commit of %s for group %s failed: %s", _labels(forward), self.group_id, exc)
                self._reset()
                return False
            self._committed.update(forward)
            log.debug("kafka: committed %s for group %s", _labels(forward), self.group_id)
            return True

    def _reset(self) -> None:
        if self._consumer is not None:
            _close(self._consumer)
            self._consumer = None

    def close(self) -> None:
        with self._lock:
            self._reset()


_SHARED: dict[tuple[Any, str, str], GroupOffsets] = {}
_SHARED_LOCK = threading.Lock()


def shared_group_offsets(clients: KafkaClientFactory, group_id: str, auto_offset_reset: OffsetReset) -> GroupOffsets:
    """One GroupOffsets per process and group: restriction sizing, the readers and bundle finalization share
    it (a worker process may run several of them). `clients` must be hashable (KafkaClients is)."""
    key = (clients, group_id, auto_offset_reset)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = GroupOffsets(clients, group_id, auto_offset_reset)
        return _SHARED[key]


def _labels(offsets: dict[TopicPartition, int]) -> str:
    return ",".join(f"{tp.topic}:p{tp.partition}:{n}" for tp, n in sorted(offsets.items()))


def _close(consumer: Any) -> None:
    try:
        consumer.close(autocommit=False)
    except KafkaError as exc:
        log.debug("kafka: closing a consumer: %s", exc)
