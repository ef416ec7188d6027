"""Faults around the Kafka source, injected into real processes: the broker stopped in the middle of a cycle
and restarted, a 10 MB message, SIGTERM (once, twice) during a cycle of `newswatch run --source kafka`.

The job killed with SIGKILL mid-cycle is part of the acceptance test
(tests/test_kafka_job.py::test_acceptance_kafka_in_and_out); the other poison messages (invalid JSON, schema
violations, wrong encoding, oversized under a lowered limit) are checked there too, headers included."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka.admin import NewTopic

from connectors.kafka import (
    H_DEAD_LETTER_ID,
    H_OFFSET,
    H_PARTITION,
    H_REASON,
    H_TOPIC,
    H_TRUNCATED,
    KafkaPublisher,
    OutgoingMessage,
    TopicTarget,
    committed_offsets,
    end_offsets,
    ensure_topic,
    headers_dict,
    read_all,
)
from connectors.sqlite_store import SqliteStore
from pipelines.cli import ABANDON_GRACE_S
from schemas import Alert, DeadLetter, RawArticle
from tests.fault_support import publish, stop_job, summaries, wait_until
from tests.servers import NoidaServer
from tests.test_kafka_job import POISON, Job, LogWatcher, articles, unique


def stored_ids(job: Job) -> list[str]:
    with SqliteStore(job.data_dir / "newswatch.db") as store:
        return [a.id for a in store.iter_articles()]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[NoidaServer]:
    """A broker of this test's own: it is stopped and restarted (never the session's shared one)."""
    server = NoidaServer(tmp_path / "noida", ("kafka",)).start()
    yield server
    server.stop()


@pytest.mark.slow
def test_broker_stopped_mid_cycle_and_restarted_loses_nothing_and_indexes_once(
    broker: NoidaServer, tmp_path: Path
) -> None:
    """300 articles and 3 poison messages, read 100 per cycle. The broker goes away while the first cycle's
    pipeline runs: that cycle stores its articles but cannot commit, the next ones cannot read and back off
    (one error line each, nothing committed). The broker comes back: the job catches up, every article is
    stored once, the committed offsets reach the end, and every alert is on the alerts topic or a dead letter."""
    job = Job(broker, tmp_path, unique("articles"), unique("group"))
    job.env["NEWSWATCH_KAFKA_MAX_RECORDS"] = "100"
    job.env["NEWSWATCH_KAFKA_READ_TIMEOUT"] = "5"  # also bounds the commit's wait for a lost broker
    ensure_topic(job.clients, job.topic, 2)
    wanted = articles(300, "broker")
    publish(job, [*wanted, *POISON[:3]])

    process = job.popen_run("--interval", "1")
    watcher = LogWatcher(process)
    try:
        watcher.wait_for(r"processing 100 record\(s\)")
        broker.stop()
        # Cycles while the broker is away fail, say so on one line, and commit nothing.
        failed = watcher.wait_for(r"ERROR +pipelines\.job: cycle (\d+) failed \((.+)\); nothing committed; retrying in")
        assert "kafka" in failed.group(2)
        time.sleep(3)
        broker.start()
        wait_until(
            lambda: committed_offsets(job.clients, job.group, job.topic) == end_offsets(job.clients, job.topic),
            timeout=180,
            what="the committed offsets to reach the end after the restart",
        )
        assert process.poll() is None, "the job died instead of waiting for the broker"
    finally:
        assert stop_job(process) == 0, watcher.text()[-3000:]

    ids = stored_ids(job)
    assert sorted(ids) == sorted({RawArticle.model_validate_json(line).id for line in wanted})  # none lost
    cycles = summaries(watcher)
    # Indexed once: the articles a failed or uncommitted cycle stored were skipped as unchanged when read again.
    assert sum(int(c["new"]) for c in cycles) == 300
    assert sum(int(c["updated"]) for c in cycles) == 0
    # The poison messages are in the dead-letter topic (at least once: a replayed cycle may publish a copy
    # again, with the same newswatch.error.id) and once in the store (the id comes from topic/partition/offset).
    dead = read_all(job.clients, job.dlq)
    assert {m.value for m in dead} == set(POISON[:3])
    assert len({headers_dict(m.headers)[H_DEAD_LETTER_ID] for m in dead}) == 3
    with SqliteStore(job.data_dir / "newswatch.db") as store:
        assert len(store.list_dead_letters(limit=100, stage="parse")) == 3
        delivered = store.list_alerts(limit=1000, status="delivered")
        undelivered = {d.details["ref"] for d in store.list_dead_letters(limit=1000, stage="deliver")}
    # Alerts raised while the broker was away could not reach the alerts topic: they are dead letters, not lost.
    published = {Alert.model_validate_json(m.value or b"").id for m in read_all(job.clients, job.alerts)}
    assert delivered and all(a.id in published | undelivered for a in delivered)


@pytest.mark.slow
def test_a_ten_megabyte_message_goes_to_the_dead_letter_topic_and_the_cycle_goes_on(
    noida_kafka: NoidaServer, tmp_path: Path
) -> None:
    """With the default limits (kafka_max_message_bytes 1 MiB). The topic allows 20 MB messages (Kafka's own
    default is 1 MB, which the producer would refuse before the job ever saw one)."""
    job = Job(noida_kafka, tmp_path, unique("big"), unique("group"))
    del job.env["NEWSWATCH_KAFKA_MAX_MESSAGE_BYTES"]
    admin = job.clients.admin()
    try:
        admin.create_topics([NewTopic(job.topic, 1, 1, topic_configs={"max.message.bytes": str(20 * 1024 * 1024)})])
    finally:
        admin.close()
    good = articles(3, "big")
    huge = b'{"title": "Huge", "text": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    publisher = KafkaPublisher(TopicTarget(job.clients, job.topic), fallback_bytes=None)
    for key, value in [(None, good[0].encode()), (b"huge-key", huge), *((None, g.encode()) for g in good[1:])]:
        publisher.send(OutgoingMessage(key, value))
    assert publisher.flush() == 4
    publisher.close()

    cycle = job.run_once()
    assert cycle["kafka.messages"] == "4" and cycle["kafka.rejected"] == "1"
    assert cycle["new"] == "3" and cycle["dead_letters"] == "1"
    assert committed_offsets(job.clients, job.group, job.topic) == {0: 4}
    (letter,) = read_all(job.clients, job.dlq)
    headers = headers_dict(letter.headers)
    assert headers[H_REASON].startswith(f"oversized message: {len(huge)} bytes, more than kafka_max_message_bytes=")
    assert (headers[H_TOPIC], headers[H_PARTITION], headers[H_OFFSET]) == (job.topic, "0", "1")
    assert letter.key == b"huge-key"
    # The dead-letter topic keeps Kafka's default limit: the copy is cut, and says from what size.
    assert headers[H_TRUNCATED] == str(len(huge)) and huge.startswith(letter.value or b"!")


SIGTERM_ARTICLES = 1500  # a cycle of 3 s or more even on a quick day (500 once took 1.1 s): both signals land inside it


def _sigterm_during_a_cycle(job: Job, signals: int) -> tuple[int, str]:
    ensure_topic(job.clients, job.topic, 2)
    publish(job, articles(SIGTERM_ARTICLES, job.topic))
    process = job.popen_run("--interval", "600")
    watcher = LogWatcher(process)
    try:
        watcher.wait_for(rf"processing {SIGTERM_ARTICLES} record\(s\)")
        for _ in range(signals):
            process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
        signalled = time.monotonic()
        code = process.wait(timeout=120)
        if signals > 1:  # abandoning is bounded: an orderly exit, else a forced one after the grace period
            assert time.monotonic() - signalled < ABANDON_GRACE_S + 10, watcher.text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return code, watcher.text()


@pytest.mark.slow
def test_sigterm_mid_cycle_finishes_the_cycle_and_commits_its_offsets(noida_kafka: NoidaServer, tmp_path: Path) -> None:
    job = Job(noida_kafka, tmp_path, unique("term"), unique("group"))
    code, log = _sigterm_during_a_cycle(job, signals=1)
    assert code == 0, log[-3000:]
    assert "stopping after the current cycle" in log and " cycle=1 " in log
    assert committed_offsets(job.clients, job.group, job.topic) == end_offsets(job.clients, job.topic)
    assert job.article_count() == SIGTERM_ARTICLES


@pytest.mark.slow
def test_second_sigterm_abandons_the_cycle_and_commits_no_offsets(noida_kafka: NoidaServer, tmp_path: Path) -> None:
    job = Job(noida_kafka, tmp_path, unique("term2"), unique("group"))
    code, log = _sigterm_during_a_cycle(job, signals=2)
    assert code == 130, log[-3000:]
    assert "abandoning the cycle" in log
    assert " cycle=1 " not in log and "retrying in" not in log
    assert committed_offsets(job.clients, job.group, job.topic) == {0: None, 1: None}
    # What the abandoned cycle may have stored is harmless: the next run reads it all again, once.
    assert job.run_once()["kafka.messages"] == str(SIGTERM_ARTICLES)
    assert job.article_count() == SIGTERM_ARTICLES
    assert committed_offsets(job.clients, job.group, job.topic) == end_offsets(job.clients, job.topic)


def test_a_replayed_kafka_message_keeps_its_dead_letter_id() -> None:
    """Read again after a failed cycle, a poison message overwrites its dead letter instead of adding one;
    a feed failing again is a new event."""
    where = {"origin": "kafka", "topic": "t", "partition": 1, "offset": 42}
    monday, tuesday = datetime(2024, 5, 6, tzinfo=UTC), datetime(2024, 5, 7, tzinfo=UTC)

    def letter(when: datetime, **details: object) -> DeadLetter:
        return DeadLetter(stage="parse", reason="bad", payload="{x", source="kafka:t", details=details, created_at=when)

    assert letter(monday, **where).id == letter(tuesday, **where).id
    assert letter(monday, **where).id != letter(monday, **{**where, "offset": 43}).id
    feed = [
        DeadLetter(stage="fetch", reason="HTTP 500", source="https://e.com/rss", created_at=d)
        for d in (monday, tuesday)
    ]
    assert feed[0].id != feed[1].id
