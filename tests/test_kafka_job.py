"""`newswatch run --source kafka` and `newswatch produce` as a user runs them, against a real broker
(noida-db's Kafka protocol): the issue's acceptance check at full scale (1,000 articles, --fast enrichment),
a job killed mid-cycle, and two instances sharing a group's partitions."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.kafka import (
    H_OFFSET,
    H_PARTITION,
    H_REASON,
    H_STAGE,
    H_TOPIC,
    KafkaClients,
    KafkaConnection,
    committed_offsets,
    end_offsets,
    ensure_topic,
    headers_dict,
    read_all,
)
from connectors.sqlite_store import SqliteStore
from pipelines.settings import Settings, load_settings
from schemas import Alert, RawArticle
from tests.conftest import REPO, SEED_TITLE, run_cli
from tests.servers import FeedServer, NoidaServer, env_with

pytestmark = pytest.mark.slow

DEVSET = REPO / "tests" / "data" / "devset" / "devset.jsonl"
MAX_MESSAGE_BYTES = 64 * 1024


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def articles(count: int, batch: str) -> list[str]:
    """`count` distinct articles (own URL, so own id) with the development set's texts."""
    source = [json.loads(line) for line in DEVSET.read_text(encoding="utf-8").splitlines() if line.strip()]
    lines = []
    for i in range(count):
        base = source[i % len(source)]
        lines.append(
            json.dumps(
                {
                    "title": f"{base['title']} ({batch} {i})",
                    "text": base.get("text") or base.get("summary", ""),
                    "url": f"https://wire.example/{batch}/{i}",
                    "published": "2024-05-01T12:00:00Z",
                }
            )
        )
    return lines


def seed_article() -> str:
    text = (REPO / "seeds" / "seed-article.txt").read_text(encoding="utf-8")
    return json.dumps({"title": SEED_TITLE, "text": text, "url": "https://wire.example/seed/iraq-soleimani"})


POISON: list[bytes] = [
    b"not json at all",
    b'{"title": "cut off',
    b"[1, 2, 3]",
    b'"just a string"',
    b'{"title": 42, "text": "a number is not a title"}',
    b'{"title": "Bad link", "text": "ftp is not a web page", "url": "ftp://example.com/x"}',
    b'{"title": "", "text": ""}',
    b'{"title": "caf\xe9 au lait", "text": "latin-1, not UTF-8"}',
    b"\xff\xfe\x00\x01 binary",
    b'{"title": "Huge", "text": "' + b"a" * (MAX_MESSAGE_BYTES + 100) + b'"}',
]


def write_lines(path: Path, lines: list[str] | list[bytes]) -> Path:
    with path.open("wb") as out:
        for line in lines:
            out.write((line.encode("utf-8") if isinstance(line, str) else line) + b"\n")
    return path


class Job:
    """One job's settings (topic, group, data dir, dead-letter and alert topics) as env vars."""

    def __init__(self, noida: NoidaServer, tmp_path: Path, topic: str, group: str, name: str = "job") -> None:
        self.clients = KafkaClients(KafkaConnection((noida.kafka_bootstrap,)))
        self.topic, self.group = topic, group
        self.dlq, self.alerts = f"{topic}.dlq", f"{topic}.alerts"
        self.data_dir = tmp_path / name
        self.env = {
            "NEWSWATCH_DATA_DIR": str(self.data_dir),
            "NEWSWATCH_SOURCES": "kafka",
            "NEWSWATCH_FAST": "true",
            "NEWSWATCH_CONSOLE_ALERTS": "false",
            "NEWSWATCH_KAFKA_BOOTSTRAP_SERVERS": noida.kafka_bootstrap,
            "NEWSWATCH_KAFKA_TOPIC": topic,
            "NEWSWATCH_KAFKA_GROUP_ID": group,
            "NEWSWATCH_KAFKA_DLQ_TOPIC": self.dlq,
            "NEWSWATCH_ALERTS_TOPIC": self.alerts,
            "NEWSWATCH_KAFKA_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES),
        }

    def settings(self, **overrides: Any) -> Settings:
        """The job's settings for an in-process CycleRunner (fast enrichment, no console alerts)."""
        return load_settings(
            data_dir=self.data_dir,
            sources="kafka",
            fast=True,
            console_alerts=False,
            kafka_bootstrap_servers=self.env["NEWSWATCH_KAFKA_BOOTSTRAP_SERVERS"],
            kafka_topic=self.topic,
            kafka_group_id=self.group,
            **overrides,
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=self.env)

    def produce(self, path: Path, partitions: int | None = None) -> subprocess.CompletedProcess[str]:
        extra = ["--partitions", str(partitions)] if partitions else []
        done = self.cli("produce", "--topic", self.topic, *extra, str(path))
        assert done.returncode == 0, done.stderr
        return done

    def run_once(self) -> dict[str, str]:
        done = self.cli("run", "--once")
        assert done.returncode == 0, done.stderr[-3000:]
        return summary(done.stderr)

    def article_count(self) -> int:
        done = self.cli("stats", "--json")
        assert done.returncode == 0, done.stderr
        return int(json.loads(done.stdout)["articles"])

    def popen_run(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "run", *args],
            env=env_with(PYTHONPATH=str(REPO), **self.env),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )


def summary(stderr: str) -> dict[str, str]:
    """The last cycle summary line as key=value pairs."""
    lines = [line for line in stderr.splitlines() if " cycle=" in line]
    assert lines, stderr[-3000:]
    return dict(re.findall(r"(\S+)=(\S+)", lines[-1]))


def wait_for_stored(db: Path, more_than: int, timeout: float = 120.0) -> int:
    """Polls a running job's SQLite store (read-only: the job is writing) until it holds more than
    `more_than` articles; returns the count seen."""
    deadline = time.monotonic() + timeout
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as store:
        while True:
            count = int(store.execute("SELECT count(*) FROM articles").fetchone()[0])
            if count > more_than:
                return count
            if time.monotonic() > deadline:
                raise AssertionError(f"the store still holds {count} articles after {timeout:.0f}s")
            time.sleep(0.01)


class LogWatcher:
    """Collects a subprocess's stderr lines in the background, so a test can wait for one."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._pump, args=(process,), daemon=True)
        self._thread.start()

    def _pump(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = 120.0, after: int = 0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        with self._cond:
            while True:
                for line in self.lines[after:]:
                    found = regex.search(line)
                    if found:
                        return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no line matching {pattern!r}:\n{''.join(self.lines[-40:])}")
                self._cond.wait(remaining)

    def last_partitions(self, after: int = 0) -> set[str]:
        """The partitions the latest cycle summary (after line `after`) says this member read."""
        with self._cond:
            found = [re.search(r" kafka\.partitions=(\S+)", line) for line in self.lines[after:] if " cycle=" in line]
        found = [f for f in found if f]
        return set(found[-1].group(1).split(",")) - {"-"} if found else set()

    def text(self) -> str:
        with self._cond:
            return "".join(self.lines)


@pytest.fixture
def job(noida_kafka: NoidaServer, tmp_path: Path) -> Iterator[Job]:
    yield Job(noida_kafka, tmp_path, unique("articles"), unique("newswatch"))


def test_acceptance_kafka_in_and_out(job: Job, tmp_path: Path) -> None:
    """1,000 articles (the seed article among them) and 10 poison messages into 3 partitions; then 100 more;
    then 100 more with the job killed mid-cycle."""
    ensure_topic(job.clients, job.dlq, 1)
    ensure_topic(job.clients, job.alerts, 1)
    first = [*articles(999, "a"), seed_article()]
    produced = job.produce(write_lines(tmp_path / "first.jsonl", [*first, *POISON]), partitions=3)
    assert "produced 1010 message(s)" in produced.stdout
    assert len(end_offsets(job.clients, job.topic)) == 3

    # One cycle indexes the 1,000, sends exactly the 10 poison messages to the dead-letter topic, and
    # commits the end offsets.
    cycle = job.run_once()
    assert job.article_count() == 1000
    assert cycle["kafka.messages"] == "1010" and cycle["dead_letters"] == "10"
    assert cycle["kafka.lag"] == "p0:0,p1:0,p2:0"
    assert committed_offsets(job.clients, job.group, job.topic) == end_offsets(job.clients, job.topic)

    dead = read_all(job.clients, job.dlq)
    assert sorted(m.value for m in dead) == sorted(POISON)  # the original bytes, exactly
    reasons = [headers_dict(m.headers) for m in dead]
    assert all(h[H_TOPIC] == job.topic and h[H_STAGE] in ("parse", "validate") for h in reasons)
    assert {m.value: h[H_REASON] for m, h in zip(dead, reasons, strict=True)}[POISON[-1]].startswith(
        f"oversized message: {len(POISON[-1])} bytes"
    )
    assert sum(h[H_REASON].startswith("not UTF-8") for h in reasons) == 2
    assert sum(h[H_REASON].startswith("invalid JSON") for h in reasons) == 2
    assert sum(h[H_REASON].startswith("schema violation") for h in reasons) == 3
    # The coordinates point at the original message.
    originals = {(m.partition, m.offset): m.value for m in read_all(job.clients, job.topic)}
    for message, headers in zip(dead, reasons, strict=True):
        assert originals[(int(headers[H_PARTITION]), int(headers[H_OFFSET]))] == message.value

    # The seed article raised the troop-withdrawal alert on the alerts topic, keyed by subscription id.
    alerts = [(m.key, Alert.model_validate_json(m.value or b"")) for m in read_all(job.clients, job.alerts)]
    seed_id = RawArticle.model_validate_json(seed_article()).id
    assert (b"troop-withdrawal", seed_id) in {(key, alert.article_id) for key, alert in alerts}
    assert all(key == alert.subscription_id.encode() for key, alert in alerts)

    # A second run finds nothing new.
    again = job.run_once()
    assert again["kafka.messages"] == "0" and again["new"] == "0"
    assert job.article_count() == 1000
    assert len(read_all(job.clients, job.dlq)) == 10

    # 100 more articles are indexed by the next run.
    job.produce(write_lines(tmp_path / "more.jsonl", articles(100, "b")))
    more = job.run_once()
    assert more["kafka.messages"] == "100" and more["new"] == "100"
    assert job.article_count() == 1100

    # Killed in the middle of a cycle: nothing of it was committed, and the rerun leaves exactly the
    # articles produced (the store upserts by article id, so what was written before the kill is not doubled).
    # The kill lands as soon as the cycle's first articles are in the store: with 2,000 in the cycle, most of
    # it is still to come however fast the machine (a fixed sleep once saw a 500-article cycle end first).
    job.produce(write_lines(tmp_path / "last.jsonl", articles(2000, "c")))
    process = job.popen_run("--interval", "600")
    watcher = LogWatcher(process)
    try:
        watcher.wait_for(r"processing 2000 record\(s\)")
        written = wait_for_stored(job.data_dir / "newswatch.db", more_than=1100)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert " cycle=" not in watcher.text(), "the cycle finished before the kill"
    assert 1100 < written < 3100
    assert committed_offsets(job.clients, job.group, job.topic) != end_offsets(job.clients, job.topic)
    rerun = job.run_once()
    assert rerun["kafka.messages"] == "2000"
    assert job.article_count() == 3100
    assert committed_offsets(job.clients, job.group, job.topic) == end_offsets(job.clients, job.topic)
    assert len(read_all(job.clients, job.dlq)) == 10


def test_two_instances_in_one_group_split_the_partitions(noida_kafka: NoidaServer, tmp_path: Path) -> None:
    topic, group = unique("shared"), unique("newswatch")
    jobs = [Job(noida_kafka, tmp_path, topic, group, name) for name in ("one", "two")]
    ensure_topic(jobs[0].clients, topic, 4)
    wanted = articles(120, "shared")
    jobs[0].produce(write_lines(tmp_path / "wave1.jsonl", wanted[:40]))

    first = jobs[0].popen_run("--interval", "1")
    first_log = LogWatcher(first)
    second: subprocess.Popen[str] | None = None
    try:
        first_log.wait_for(r"cycle=\d+ .*kafka\.partitions=p0,p1,p2,p3 ")
        mark = len(first_log.lines)
        second = jobs[1].popen_run("--interval", "1")
        second_log = LogWatcher(second)
        # The group coordinator gives each member part of the partitions.
        deadline = time.monotonic() + 90
        while True:
            mine, theirs = second_log.last_partitions(), first_log.last_partitions(after=mark)
            if mine and theirs and not mine & theirs and mine | theirs == {"p0", "p1", "p2", "p3"}:
                break
            assert time.monotonic() < deadline, f"no split of the partitions: {mine} / {theirs}"
            time.sleep(0.5)

        jobs[0].produce(write_lines(tmp_path / "wave2.jsonl", wanted[40:]))
        deadline = time.monotonic() + 120
        while committed_offsets(jobs[0].clients, group, topic) != end_offsets(jobs[0].clients, topic):
            assert time.monotonic() < deadline, "the group never caught up"
            time.sleep(1)
    finally:
        for process in (first, second):
            if process is not None:
                process.send_signal(signal.SIGTERM)
        for process in (first, second):
            if process is not None:
                process.wait(timeout=60)

    # At least once: together they stored every article (a rebalance may have made both store some).
    stored: set[str] = set()
    for one in jobs:
        store = SqliteStore(one.data_dir / "newswatch.db")
        try:
            stored |= {a.id for a in store.iter_articles()}
        finally:
            store.close()
    assert stored == {RawArticle.model_validate_json(line).id for line in wanted}


def test_produce_a_feed_publishes_its_entries_as_raw_articles(
    noida_kafka: NoidaServer, tmp_path: Path, feed_server: FeedServer
) -> None:
    job = Job(noida_kafka, tmp_path, unique("feed"), unique("g"))
    feed = REPO / "seeds" / "feeds" / "world-wire.xml"
    feed_server.serve_bytes("/wire.xml", feed.read_bytes())
    done = job.cli("produce", "--topic", job.topic, "--partitions", "2", feed_server.url("/wire.xml"))
    assert done.returncode == 0, done.stderr
    count = int(re.search(r"produced (\d+) message", done.stdout).group(1))  # type: ignore[union-attr]
    messages = read_all(job.clients, job.topic)
    assert count == len(messages) > 0
    parsed = [RawArticle.model_validate_json(m.value or b"") for m in messages]
    assert all(m.key == a.id.encode() for m, a in zip(messages, parsed, strict=True))
    assert all(a.title and a.url for a in parsed)
    # The same feed from a file gives the same articles.
    again = job.cli("produce", "--topic", unique("feedfile"), str(feed))
    assert again.returncode == 0 and f"produced {count} message(s)" in again.stdout


def test_run_with_rss_and_kafka_reads_both(job: Job, tmp_path: Path) -> None:
    job.produce(write_lines(tmp_path / "few.jsonl", articles(5, "mixed")), partitions=2)
    job.env["NEWSWATCH_SOURCES"] = "rss,kafka"
    cycle = job.run_once()
    assert cycle["kafka.messages"] == "5" and cycle["kafka.lag"] == "p0:0,p1:0"
    assert int(cycle["rss.feeds"]) > 0
    assert job.article_count() > 5


def test_unreachable_broker_fails_the_cycle_and_commits_nothing(job: Job) -> None:
    from tests.servers import free_port

    job.env["NEWSWATCH_KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{free_port()}"
    done = job.cli("run", "--once")
    assert done.returncode == 1
    assert "cycle failed: kafka:" in done.stderr and "nothing was committed" in done.stderr


def test_incomplete_sasl_settings_stop_the_job_at_start_up(job: Job) -> None:
    job.env.update(NEWSWATCH_KAFKA_SECURITY_PROTOCOL="SASL_SSL", NEWSWATCH_KAFKA_SASL_PASSWORD="hunter2-secret")
    done = job.cli("run", "--once")
    assert done.returncode == 2
    assert "kafka_sasl_mechanism" in done.stderr and "hunter2-secret" not in done.stderr


def test_dead_letter_topic_failure_fails_the_cycle_before_any_commit(job: Job, tmp_path: Path) -> None:
    """The dead-letter topic is a sink like the store: if it cannot take the poison messages, the cycle fails
    and no offset moves, so the messages are read again (and nothing is lost)."""
    from dataclasses import replace

    from connectors.kafka import TopicTarget
    from pipelines.job import CycleFailed, CycleRunner, build_sources
    from tests.servers import free_port

    job.produce(write_lines(tmp_path / "mixed.jsonl", [*articles(3, "dlq"), *POISON[:2]]), partitions=1)
    settings = job.settings(kafka_dlq_topic=job.dlq)
    runner = CycleRunner(settings, build_sources(settings))
    unreachable = KafkaClients(KafkaConnection((f"127.0.0.1:{free_port()}",), connect_timeout_s=2))
    runner.config = replace(runner.config, dead_letter_topic=TopicTarget(unreachable, job.dlq))
    try:
        runner.prepare()
        with pytest.raises(CycleFailed):
            runner.run_cycle(force=True)
        assert committed_offsets(job.clients, job.group, job.topic) == {0: None}
    finally:
        runner.close()
    # With the dead-letter topic reachable again (a new job: the cycle pipeline is built once per job),
    # the same messages go through and are committed.
    runner = CycleRunner(settings, build_sources(settings))
    try:
        result = runner.run_cycle(force=True)
        assert result.source_stats["kafka"]["messages"] == 5 and result.counts["dead_letters"] == 2
        assert committed_offsets(job.clients, job.group, job.topic) == {0: 5}
        assert sorted(m.value for m in read_all(job.clients, job.dlq)) == sorted(POISON[:2])
    finally:
        runner.close()


def test_a_capped_read_reports_a_backlog_and_the_next_cycle_follows_at_once(job: Job, tmp_path: Path) -> None:
    """More messages than kafka_max_records: the cycle says so, and the job runs the next one without waiting."""
    from pipelines.job import CycleRunner, build_sources, next_wait

    job.produce(write_lines(tmp_path / "backlog.jsonl", articles(7, "backlog")), partitions=1)
    settings = job.settings(kafka_max_records=5)
    runner = CycleRunner(settings, build_sources(settings))
    try:
        runner.prepare()
        first = runner.run_cycle(force=True)
        assert first.source_stats["kafka"]["messages"] == 5 and first.backlog
        assert next_wait(first, 300.0) == 0.0
        second = runner.run_cycle(force=True)
        assert second.source_stats["kafka"]["messages"] == 2 and not second.backlog
        assert next_wait(second, 300.0) > 0
        assert committed_offsets(job.clients, job.group, job.topic) == {0: 7}
    finally:
        runner.close()
