"""Kafka in and out (kafka-python): a consumer-group reader that reads bounded batches and commits only
when told to, the dead-letter topic, the alert topic and topic administration.

No decoding or enrichment here: messages come out as bytes with their coordinates, and what to do with
them is the job's business (pipelines/kafka_source.py).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import MemberToRemove, NewTopic
from kafka.errors import KafkaError, MessageSizeTooLargeError, TopicAlreadyExistsError
from kafka.structs import MemberState, OffsetAndMetadata
from pydantic import SecretStr

from connectors.alert_channels import DeliveryError
from schemas import Alert, DeadLetter

log = logging.getLogger(__name__)

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
OffsetReset = Literal["earliest", "latest"]

# Headers the dead-letter topic adds to the original message (which keeps its own headers, key and bytes).
H_REASON = "newswatch.error.reason"
H_STAGE = "newswatch.error.stage"
H_DEAD_LETTER_ID = "newswatch.error.id"
H_TOPIC = "newswatch.source.topic"
H_PARTITION = "newswatch.source.partition"
H_OFFSET = "newswatch.source.offset"
H_TIMESTAMP = "newswatch.source.timestamp"
H_TRUNCATED = "newswatch.error.truncated_from"
DEAD_LETTER_HEADERS = (H_REASON, H_STAGE, H_DEAD_LETTER_ID, H_TOPIC, H_PARTITION, H_OFFSET, H_TIMESTAMP, H_TRUNCATED)
MAX_HEADER_CHARS = 2000


class KafkaUnavailable(Exception):
    """The brokers could not be reached or refused a request; nothing was committed."""


class KafkaPublishError(Exception):
    """Messages could not be published (after the producer's own retries)."""


class _RedactAdminConfig(logging.Filter):
    """KafkaAdminClient logs its whole configuration, SASL password included, at DEBUG: mask it."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, dict):  # logging unwraps a lone mapping argument
            record.args = _masked(args)
        elif isinstance(args, tuple):
            record.args = tuple(_masked(a) if isinstance(a, dict) else a for a in args)
        return True


def _masked(config: Any) -> dict[str, Any]:
    return {k: "**********" if k in ("sasl_plain_password", "ssl_password") and v else v for k, v in config.items()}


logging.getLogger("kafka.admin.client").addFilter(_RedactAdminConfig())


@dataclass(frozen=True)
class KafkaConnection:
    """How to reach the brokers. Picklable (Beam ships it to workers); the password stays a SecretStr
    until the moment a client is built, so reprs and logs show it masked."""

    bootstrap_servers: tuple[str, ...] = ("localhost:9092",)
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    client_id: str = "newswatch"
    connect_timeout_s: float = 10.0

    def problems(self) -> list[str]:
        """What is missing for the chosen security protocol (empty when usable)."""
        found = []
        if not self.bootstrap_servers:
            found.append("kafka_bootstrap_servers: at least one host:port is needed")
        if self.security_protocol.startswith("SASL_"):
            if not self.sasl_mechanism:
                found.append(f"kafka_sasl_mechanism: required with security protocol {self.security_protocol}")
            if not self.sasl_username or self.sasl_password is None:
                found.append("kafka_sasl_username / kafka_sasl_password (or _FILE): required for SASL")
        elif self.sasl_mechanism:
            found.append(f"kafka_sasl_mechanism: set, but security protocol {self.security_protocol} is not SASL_*")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            found.append("kafka_ssl_certfile and kafka_ssl_keyfile: give both for client certificates, or neither")
        return found

    def client_config(self) -> dict[str, Any]:
        """kafka-python keyword arguments. Holds the plain password: never log the result."""
        config: dict[str, Any] = {
            "bootstrap_servers": list(self.bootstrap_servers),
            "security_protocol": self.security_protocol,
            "client_id": self.client_id,
            "bootstrap_timeout_ms": int(self.connect_timeout_s * 1000),
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            config.update(ssl_cafile=self.ssl_cafile, ssl_certfile=self.ssl_certfile, ssl_keyfile=self.ssl_keyfile)
        if self.security_protocol.startswith("SASL_"):
            config.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password.get_secret_value() if self.sasl_password else None,
            )
        return config


class KafkaClientFactory(Protocol):
    """Builds the clients every Kafka part uses; injected so tests and deployments choose the wiring."""

    def consumer(self, **config: Any) -> KafkaConsumer: ...

    def producer(self, **config: Any) -> KafkaProducer: ...

    def admin(self) -> KafkaAdminClient: ...


@dataclass(frozen=True)
class KafkaClients:
    """The default factory: kafka-python clients for one connection. Picklable."""

    connection: KafkaConnection = field(default_factory=KafkaConnection)

    def consumer(self, **config: Any) -> KafkaConsumer:
        return _build(KafkaConsumer, {**self.connection.client_config(), **config})

    def producer(self, **config: Any) -> KafkaProducer:
        defaults = {"acks": "all", "enable_idempotence": True, "linger_ms": 5, "delivery_timeout_ms": 60_000}
        return _build(KafkaProducer, {**self.connection.client_config(), **defaults, **config})

    def admin(self) -> KafkaAdminClient:
        return _build(KafkaAdminClient, self.connection.client_config())


def _build(cls: Any, config: dict[str, Any]) -> Any:
    try:
        return cls(**config)
    except KafkaError as exc:
        servers = ",".join(config.get("bootstrap_servers", []))
        raise KafkaUnavailable(f"cannot connect to {servers}: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class TopicTarget:
    """A topic to publish to and the clients to do it with (what Beam workers receive)."""

    clients: KafkaClientFactory
    topic: str


# --- Reading ---


class MemberSlot:
    """A stable group.instance.id (static membership) for this host and data directory: the lowest slot no
    live process holds. The slot is an flock, which the kernel releases even on SIGKILL, so a restarted job
    reclaims its predecessor's membership (and partitions) at once, while concurrent jobs get distinct ids."""

    def __init__(self, directory: Path, max_slots: int = 64) -> None:
        self.directory, self.max_slots = directory, max_slots
        self._handle: Any = None
        self.instance_id: str | None = None

    def acquire(self) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        where = hashlib.sha1(str(self.directory.resolve()).encode()).hexdigest()[:8]
        for slot in range(1, self.max_slots + 1):
            handle = open(self.directory / f"member-{slot}.lock", "a+")  # noqa: SIM115 - held until release()
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            self._handle = handle
            self.instance_id = f"newswatch-{socket.gethostname()}-{where}-{slot}"
            return self.instance_id
        raise KafkaUnavailable(f"all {self.max_slots} member slots in {self.directory} are held by running jobs")

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


@dataclass(frozen=True)
class KafkaMessage:
    topic: str
    partition: int
    offset: int
    timestamp: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def from_record(cls, record: Any) -> KafkaMessage:
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp=record.timestamp if record.timestamp is not None and record.timestamp >= 0 else None,
            key=record.key,
            value=record.value,
            headers=tuple((k, v if v is not None else b"") for k, v in (record.headers or ())),
        )

    @property
    def size(self) -> int:
        return len(self.value or b"")

    def coordinates(self) -> dict[str, Any]:
        """Where the message came from, and its key and headers, as JSON-safe values."""
        meta: dict[str, Any] = {
            "origin": "kafka",
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp,
        }
        if self.key is not None:
            meta["key_b64"] = base64.b64encode(self.key).decode("ascii")
        if self.headers:
            meta["headers"] = [[k, base64.b64encode(v).decode("ascii")] for k, v in self.headers]
        return meta


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on one cycle's read, so a backlog becomes several cycles rather than one huge one."""

    max_records: int = 10_000
    read_timeout_s: float = 60.0
    join_timeout_s: float = 60.0
    poll_records: int = 500
    keepalive_s: float = 1.0


@dataclass
class CycleRead:
    """One cycle's messages and, per partition, where it started, the end seen at the start, and the
    offset to commit once the messages are safely processed."""

    messages: list[KafkaMessage] = field(default_factory=list)
    start: dict[TopicPartition, int] = field(default_factory=dict)
    end: dict[TopicPartition, int] = field(default_factory=dict)
    next: dict[TopicPartition, int] = field(default_factory=dict)
    lost: set[TopicPartition] = field(default_factory=set)
    generation: int = -1

    def lag(self) -> dict[TopicPartition, int]:
        """Messages below the cycle's end offsets left for a later cycle."""
        return {tp: max(0, self.end[tp] - self.next.get(tp, self.start[tp])) for tp in self.end}


@dataclass
class CommitResult:
    committed: dict[TopicPartition, int]
    lag: dict[TopicPartition, int]
    skipped: set[TopicPartition] = field(default_factory=set)


class KafkaReader:
    """A consumer-group member that reads each assigned partition from its committed offset up to the end
    offset seen when the cycle started, and commits only when `commit` is called.

    The consumer stays in the group between cycles: a background thread keeps polling (with every
    partition paused) so the member answers rebalances promptly and is not dropped for being idle while
    the pipeline runs or the job sleeps. Every cycle starts again from the committed offsets, so a failed
    cycle is simply read again.
    """

    def __init__(
        self,
        clients: KafkaClientFactory,
        topic: str,
        group_id: str,
        *,
        limits: ReadLimits | None = None,
        auto_offset_reset: OffsetReset = "earliest",
        max_message_bytes: int = 1024 * 1024,
        group_instance_id: str | None = None,
        leave_on_close: bool = True,
    ) -> None:
        self.clients, self.topic, self.group_id = clients, topic, group_id
        self.group_instance_id = group_instance_id
        self.leave_on_close = leave_on_close
        self.limits = limits or ReadLimits()
        self.auto_offset_reset = auto_offset_reset
        self.max_message_bytes = max_message_bytes
        self._consumer: KafkaConsumer | None = None
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._keepalive: threading.Thread | None = None

    def _ensure_consumer(self) -> KafkaConsumer:
        if self._consumer is None:
            consumer = self.clients.consumer(
                group_id=self.group_id,
                enable_auto_commit=False,
                auto_offset_reset=self.auto_offset_reset,
                max_poll_records=max(1, min(self.limits.poll_records, self.limits.max_records)),
                # Room for one message above the limit, so it is seen (and dead-lettered), not split.
                max_partition_fetch_bytes=max(1024 * 1024, self.max_message_bytes + 64 * 1024),
                group_instance_id=self.group_instance_id,
            )
            consumer.subscribe([self.topic])
            self._consumer = consumer
            self._keepalive = threading.Thread(target=self._keep_alive, name="kafka-keepalive", daemon=True)
            self._keepalive.start()
        return self._consumer

    def read(self) -> CycleRead:
        """Join (or stay in) the group and read this cycle's bounded batch."""
        with self._lock:
            try:
                return self._read()
            except KafkaError as exc:
                raise KafkaUnavailable(f"reading {self.topic}: {type(exc).__name__}: {exc}") from exc

    def _read(self) -> CycleRead:
        consumer = self._ensure_consumer()
        deadline = time.monotonic() + self.limits.join_timeout_s
        consumer.poll(timeout_ms=0, max_records=1)  # lets a pending rebalance start
        while consumer.group_metadata().state != MemberState.STABLE:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(
                    f"group {self.group_id}: not joined after {self.limits.join_timeout_s:.0f}s "
                    f"(state {consumer.group_metadata().state})"
                )
            consumer.poll(timeout_ms=200, max_records=1)
        read = CycleRead(generation=consumer.group_metadata().generation_id)
        assigned = set(consumer.assignment())
        if not assigned:
            return read
        consumer.resume(*assigned)
        # Bounded: without a timeout, kafka-python waits for a lost group coordinator forever.
        timeout_ms = int(self.limits.join_timeout_s * 1000)
        for tp in sorted(assigned):
            committed = consumer.committed(tp, timeout_ms=timeout_ms)
            read.start[tp] = committed if committed is not None else -1
        read.end = {tp: int(o) for tp, o in consumer.end_offsets(sorted(assigned), timeout_ms=timeout_ms).items()}
        missing = [tp for tp, o in read.start.items() if o < 0]
        if missing:
            reset = (
                consumer.beginning_offsets(missing, timeout_ms=timeout_ms)
                if self.auto_offset_reset == "earliest"
                else {tp: read.end[tp] for tp in missing}
            )
            read.start.update({tp: int(o) for tp, o in reset.items()})
        for tp in sorted(assigned):
            read.start[tp] = min(read.start[tp], read.end[tp])
            consumer.seek(tp, read.start[tp])
        read.next = dict(read.start)
        pending = {tp for tp in assigned if read.start[tp] < read.end[tp]}
        self._read_until_end(consumer, read, pending)
        return read

    def _read_until_end(self, consumer: KafkaConsumer, read: CycleRead, pending: set[TopicPartition]) -> None:
        limits = self.limits
        deadline = time.monotonic() + limits.read_timeout_s
        if read.start.keys() - pending:
            consumer.pause(*(read.start.keys() - pending))
        while pending and len(read.messages) < limits.max_records:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning(
                    "kafka: stopped reading after %.0fs with %d partition(s) short of their end offsets",
                    limits.read_timeout_s,
                    len(pending),
                )
                break
            want = min(limits.poll_records, limits.max_records - len(read.messages))
            batch = consumer.poll(timeout_ms=int(min(remaining, 1.0) * 1000), max_records=want)
            for tp, records in batch.items():
                if tp not in pending:
                    continue
                for record in records:
                    if record.offset < read.next[tp]:
                        continue  # read again after a rebalance reset the position
                    if record.offset >= read.end[tp] or len(read.messages) >= limits.max_records:
                        break
                    read.messages.append(KafkaMessage.from_record(record))
                    read.next[tp] = record.offset + 1
            owned = set(consumer.assignment())
            for tp in list(pending):
                if tp not in owned:  # rebalanced away mid-cycle: its messages are still processed
                    pending.discard(tp)
                    read.lost.add(tp)
                elif read.next[tp] >= read.end[tp] or (
                    len(read.messages) < limits.max_records and (consumer.position(tp) or 0) >= read.end[tp]
                ):
                    read.next[tp] = read.end[tp]  # also skips offsets with no record (transaction markers)
                    pending.discard(tp)
                    consumer.pause(tp)

    def commit(self, read: CycleRead) -> CommitResult:
        """Commit the offsets after this cycle's messages. Partitions the group gave to another member
        meanwhile are skipped (their new owner reads them again from the last commit)."""
        with self._lock:
            consumer = self._ensure_consumer()
            owned = set(consumer.assignment())
            offsets = {tp: n for tp, n in read.next.items() if tp in owned and tp not in read.lost}
            skipped = set(read.next) - set(offsets)
            try:
                if offsets:
                    consumer.commit(
                        {tp: OffsetAndMetadata(n, "", -1) for tp, n in offsets.items()},
                        timeout_ms=int(min(30.0, self.limits.join_timeout_s) * 1000),
                    )
                ends = consumer.end_offsets(sorted(offsets)) if offsets else {}
            except KafkaError as exc:
                raise KafkaUnavailable(f"commit for group {self.group_id}: {type(exc).__name__}: {exc}") from exc
            return CommitResult(offsets, {tp: max(0, int(ends[tp]) - n) for tp, n in offsets.items()}, skipped)

    def _keep_alive(self) -> None:
        while not self._closed.wait(self.limits.keepalive_s):
            if not self._lock.acquire(timeout=0.1):
                continue  # a cycle is reading or committing: it polls itself
            try:
                consumer = self._consumer
                if consumer is None or self._closed.is_set():
                    continue
                assigned = consumer.assignment()
                if assigned:
                    consumer.pause(*assigned)
                consumer.poll(timeout_ms=100, max_records=1)  # heartbeats, rebalances; records are dropped
            except Exception as exc:  # the next cycle reports the broker's state; keep the thread alive
                log.debug("kafka keepalive poll failed: %s", exc)
            finally:
                self._lock.release()

    def close(self) -> None:
        self._closed.set()
        if self._keepalive is not None:
            self._keepalive.join(timeout=5)
        with self._lock:
            if self._consumer is None:
                return
            try:
                self._consumer.close(autocommit=False, timeout_ms=10_000)
            except KafkaError as exc:
                log.warning("closing the kafka consumer: %s", exc)
            self._consumer = None
            if self.group_instance_id and self.leave_on_close:
                self._leave_static()

    def _leave_static(self) -> None:
        """A static member does not leave the group when it closes (its partitions wait for it until the
        session times out); on a deliberate stop we remove it, so the others take its partitions now."""
        try:
            admin = self.clients.admin()
            try:
                admin.remove_group_members(self.group_id, [MemberToRemove(group_instance_id=self.group_instance_id)])
            finally:
                admin.close()
        except (KafkaError, KafkaUnavailable) as exc:
            log.warning("kafka: could not leave group %s as %s: %s", self.group_id, self.group_instance_id, exc)


def partition_label(tp: TopicPartition, single_topic: bool = True) -> str:
    return f"p{tp.partition}" if single_topic else f"{tp.topic}:p{tp.partition}"


def format_offsets(values: dict[TopicPartition, int]) -> str:
    """`p0:3,p1:0` (topic-qualified when several topics are involved)."""
    single = len({tp.topic for tp in values}) <= 1
    return ",".join(f"{partition_label(tp, single)}:{n}" for tp, n in sorted(values.items())) or "-"


# --- Writing ---


@dataclass(frozen=True)
class OutgoingMessage:
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def _b64(value: Any) -> bytes | None:
    return base64.b64decode(value) if isinstance(value, str) and value else None


def _header(value: Any) -> bytes:
    return str(value)[:MAX_HEADER_CHARS].encode("utf-8")


def dead_letter_message(letter: DeadLetter) -> OutgoingMessage | None:
    """The dead-letter topic's copy of a Kafka message the job could not use: the original key, bytes and
    headers, plus headers saying why and where it came from. None for letters not from Kafka."""
    details = letter.details
    if details.get("origin") != "kafka":
        return None
    if "value_b64" in details:  # the exact bytes; None for a null value (tombstone)
        value = None if details["value_b64"] is None else base64.b64decode(details["value_b64"])
    else:
        value = letter.payload.encode("utf-8")
    headers = [(k, base64.b64decode(v)) for k, v in details.get("headers") or () if k not in DEAD_LETTER_HEADERS]
    headers += [
        (H_REASON, _header(letter.reason)),
        (H_STAGE, _header(letter.stage)),
        (H_DEAD_LETTER_ID, _header(letter.id)),
        (H_TOPIC, _header(details.get("topic", ""))),
        (H_PARTITION, _header(details.get("partition", ""))),
        (H_OFFSET, _header(details.get("offset", ""))),
    ]
    if details.get("timestamp") is not None:
        headers.append((H_TIMESTAMP, _header(details["timestamp"])))
    return OutgoingMessage(key=_b64(details.get("key_b64")), value=value, headers=tuple(headers))


class KafkaPublisher:
    """Sends messages to one topic and, on flush, waits for every acknowledgement. With `fallback_bytes`, a
    message the broker finds too large is sent again cut to that size, with a header giving the original size
    (for the dead-letter topic, where a copy that fits beats none)."""

    def __init__(
        self,
        target: TopicTarget,
        *,
        max_request_bytes: int = 64 * 1024 * 1024,
        fallback_bytes: int | None = 512 * 1024,
        flush_timeout_s: float = 60.0,
    ) -> None:
        self.target = target
        self.max_request_bytes, self.fallback_bytes, self.flush_timeout_s = (
            max_request_bytes,
            fallback_bytes,
            flush_timeout_s,
        )
        self._producer: KafkaProducer | None = None
        self._pending: list[tuple[OutgoingMessage, Any]] = []
        self.sent = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = self.target.clients.producer(max_request_size=self.max_request_bytes)
        return self._producer

    def send(self, message: OutgoingMessage) -> None:
        self._pending.append((message, self._send(message)))

    def _send(self, message: OutgoingMessage) -> Any:
        try:
            return self.producer.send(
                self.target.topic, key=message.key, value=message.value, headers=list(message.headers)
            )
        except KafkaError as exc:  # refused before sending (too large for the client, metadata timeout)
            return exc

    def flush(self) -> int:
        """Wait for everything sent so far; returns how many were acknowledged. Raises KafkaPublishError."""
        acknowledged = 0
        for attempt in range(3):
            if not self._pending:
                break
            try:
                self.producer.flush(timeout=self.flush_timeout_s)
            except KafkaError as exc:
                self._pending = []
                raise KafkaPublishError(f"topic {self.target.topic}: flush failed: {exc}") from exc
            failed = [(m, e) for m, e in ((m, _outcome_error(o)) for m, o in self._pending) if e is not None]
            acknowledged += len(self._pending) - len(failed)
            self._pending = []
            if not failed:
                break
            too_large = any(isinstance(e, MessageSizeTooLargeError) for _, e in failed)
            if not too_large or self.fallback_bytes is None or attempt == 2:
                _, error = failed[0]
                raise KafkaPublishError(
                    f"topic {self.target.topic}: {len(failed)} message(s) not published, "
                    f"e.g. {type(error).__name__}: {error}"
                )
            # An idempotent producer treats a refused size as fatal and aborts every batch in flight, so the
            # offender cannot be told apart: start a new producer, cut what is over the fallback size, resend.
            self.close()
            for message, _ in failed:
                self.send(self._cut(message))
        self.sent += acknowledged
        return acknowledged

    def _cut(self, message: OutgoingMessage) -> OutgoingMessage:
        size = len(message.value or b"")
        if self.fallback_bytes is None or size <= self.fallback_bytes:
            return message
        return OutgoingMessage(
            message.key,
            (message.value or b"")[: self.fallback_bytes],
            (*message.headers, (H_TRUNCATED, str(size).encode())),
        )

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=10)
            except KafkaError as exc:
                log.warning("closing the producer for %s: %s", self.target.topic, exc)
            self._producer = None


def _outcome_error(outcome: Any) -> BaseException | None:
    """The error of a send: raised at once, failed in flight, or still unacknowledged after the flush."""
    if isinstance(outcome, BaseException):
        return outcome
    if not outcome.is_done:
        return KafkaPublishError("not acknowledged before the flush timeout")
    return outcome.exception


class KafkaAlertChannel:
    """Publishes Alert JSON to a topic, keyed by subscription id (so one subscription's alerts stay in order
    on one partition). Synchronous per alert: delivery is confirmed before the alert counts as delivered."""

    name = "kafka"

    def __init__(self, target: TopicTarget, timeout_s: float = 30.0) -> None:
        self.target, self.timeout_s = target, timeout_s
        self._producer: KafkaProducer | None = None
        self._unreachable: str | None = None

    def deliver(self, alert: Alert) -> None:
        if self._unreachable is not None:  # each alert would wait for the brokers again: fail fast until closed
            raise DeliveryError(f"topic {self.target.topic}: {self._unreachable} (not retried until the next cycle)")
        try:
            if self._producer is None:
                try:
                    # No linger: each send is waited for at once, so batching would only delay every alert.
                    self._producer = self.target.clients.producer(linger_ms=0)
                except KafkaUnavailable as exc:
                    self._unreachable = f"{type(exc).__name__}: {exc}"
                    raise
            future = self._producer.send(
                self.target.topic,
                key=alert.subscription_id.encode("utf-8"),
                value=alert.model_dump_json().encode("utf-8"),
                headers=[("content-type", b"application/json"), ("newswatch.alert.id", alert.id.encode())],
            )
            future.get(timeout=self.timeout_s)
        except (KafkaError, KafkaUnavailable) as exc:
            raise DeliveryError(f"topic {self.target.topic}: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._unreachable = None
        if self._producer is not None:
            try:
                self._producer.close(timeout=10)
            except KafkaError as exc:
                log.warning("closing the alert producer: %s", exc)
            self._producer = None


# --- Administration ---


def ensure_topic(clients: KafkaClientFactory, topic: str, partitions: int, replication_factor: int = 1) -> bool:
    """Create `topic` unless it exists; True when created."""
    admin = clients.admin()
    try:
        admin.create_topics([NewTopic(topic, partitions, replication_factor)])
        return True
    except TopicAlreadyExistsError:
        return False
    finally:
        admin.close()


def committed_offsets(clients: KafkaClientFactory, group_id: str, topic: str) -> dict[int, int | None]:
    """The group's committed offset per partition of `topic` (None: never committed). For tools and tests."""
    consumer = clients.consumer(group_id=group_id, enable_auto_commit=False)
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        return {p: consumer.committed(TopicPartition(topic, p), timeout_ms=30_000) for p in partitions}
    finally:
        consumer.close(autocommit=False)


def end_offsets(clients: KafkaClientFactory, topic: str) -> dict[int, int]:
    consumer = clients.consumer()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return {tp.partition: int(o) for tp, o in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def read_all(clients: KafkaClientFactory, topic: str, timeout_s: float = 10.0) -> list[KafkaMessage]:
    """Every message of `topic` from the beginning to the current end offsets (no group). For tools/tests."""
    consumer = clients.consumer(enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        ends = {tp: int(o) for tp, o in consumer.end_offsets(partitions).items()}
        consumer.seek_to_beginning(*partitions)
        messages: list[KafkaMessage] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp] for tp in partitions):
            for tp, records in consumer.poll(timeout_ms=200).items():
                messages += [KafkaMessage.from_record(r) for r in records if r.offset < ends[tp]]
        return sorted(messages, key=lambda m: (m.partition, m.offset))
    finally:
        consumer.close()


def headers_dict(headers: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    """Headers as text (last one wins), for display and assertions."""
    return {k: v.decode("utf-8", errors="replace") for k, v in headers}


__all__: Sequence[str] = (
    "CommitResult",
    "CycleRead",
    "KafkaAlertChannel",
    "KafkaClientFactory",
    "KafkaClients",
    "KafkaConnection",
    "KafkaMessage",
    "KafkaPublishError",
    "KafkaPublisher",
    "KafkaReader",
    "KafkaUnavailable",
    "OutgoingMessage",
    "ReadLimits",
    "TopicTarget",
    "committed_offsets",
    "dead_letter_message",
    "end_offsets",
    "ensure_topic",
    "format_offsets",
    "headers_dict",
    "read_all",
)
