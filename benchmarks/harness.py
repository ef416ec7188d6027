"""The continuous job under load, for the end-to-end benchmarks: a real broker (noida-db, started here), the job
as a user runs it (`newswatch run --source kafka`, a subprocess), a producer at a steady rate, and listeners
for what comes out (the alerts topic, the store's write times, the group's lag, the job's memory)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kafka import TopicPartition

from connectors.kafka import KafkaClients, KafkaConnection, ensure_topic
from connectors.sqlite_store import SqliteStore
from pipelines.subscriptions import load_subscriptions_file, subscription_from_options
from schemas import RawArticle
from seeds import seed_path
from tests.servers import NoidaServer

REPO = Path(__file__).resolve().parent.parent
PRODUCED_AT = "newswatch.bench.produced_at"
CYCLE = re.compile(r"cycle=(\d+) seconds=([\d.]+).*? read=(\d+)")


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0-100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float | None]:
    return {
        "p50": _r(percentile(values, 50)),
        "p95": _r(percentile(values, 95)),
        "p99": _r(percentile(values, 99)),
        "max": _r(max(values) if values else None),
    }


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0 for fewer than two points)."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


@dataclass
class Bench:
    """noida-db, the topics, a data dir with subscriptions, and the job process."""

    workdir: Path
    fast: bool = False
    interval: float = 0.5
    alert_every_article: bool = False
    partitions: int = 3
    extra_env: dict[str, str] = field(default_factory=dict)
    server: NoidaServer | None = None
    job: subprocess.Popen[bytes] | None = None
    run_id: str = field(default_factory=lambda: f"{int(time.time())}")
    _lag_consumer: Any = None
    _lag_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def topic(self) -> str:
        return "bench.articles"

    @property
    def alerts_topic(self) -> str:
        return "bench.alerts"

    @property
    def group(self) -> str:
        return "bench-job"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def job_log(self) -> Path:
        return self.workdir / "job.log"

    @property
    def clients(self) -> KafkaClients:
        assert self.server is not None
        return KafkaClients(KafkaConnection((self.server.kafka_bootstrap,)))

    def start_broker(self) -> None:
        self.server = NoidaServer(self.workdir / "noida", ("kafka",)).start()
        ensure_topic(self.clients, self.topic, self.partitions)
        ensure_topic(self.clients, self.alerts_topic, 1)
        ensure_topic(self.clients, "bench.deadletters", 1)

    def prepare_store(self) -> None:
        """The default subscriptions (troop withdrawal, and in Iraq: they fire on about half the corpus), and
        with alert_every_article one more that fires for every article (then alert volume = article volume)."""
        with SqliteStore(self.data_dir / "newswatch.db") as store:
            store.seed_subscriptions(load_subscriptions_file(seed_path("subscriptions.yaml")))
            if self.alert_every_article:
                every = subscription_from_options("Every benchmark article", query=f'source:"{self.topic}"')
                store.put_subscription(every)

    def start_job(self) -> None:
        assert self.server is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSWATCH_")}
        env.update(
            PYTHONPATH=str(REPO),
            NEWSWATCH_DATA_DIR=str(self.data_dir),
            NEWSWATCH_SOURCES="kafka",
            NEWSWATCH_KAFKA_BOOTSTRAP_SERVERS=self.server.kafka_bootstrap,
            NEWSWATCH_KAFKA_TOPIC=self.topic,
            NEWSWATCH_KAFKA_GROUP_ID=self.group,
            NEWSWATCH_KAFKA_DLQ_TOPIC="bench.deadletters",
            NEWSWATCH_ALERTS_TOPIC=self.alerts_topic,
            NEWSWATCH_CONSOLE_ALERTS="false",
        )
        env.update(self.extra_env)
        log = self.job_log.open("ab")
        self.job = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", *self.command], cwd=REPO, env=env, stdout=log, stderr=log
        )
        log.close()

    @property
    def command(self) -> list[str]:
        """The job's command line (after `newswatch`); connection settings come from NEWSWATCH_* variables."""
        return ["run", "--source", "kafka", "--interval", f"{self.interval:g}", *(["--fast"] if self.fast else [])]

    def stop(self) -> None:
        if self._lag_consumer is not None:
            self._lag_consumer.close(autocommit=False)
        if self.job is not None and self.job.poll() is None:
            self.job.send_signal(signal.SIGTERM)
            try:
                self.job.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.job.kill()
                self.job.wait()
        if self.server is not None:
            self.server.stop()

    def cycles(self) -> list[tuple[int, float, int]]:
        """(cycle number, seconds, records read) of every cycle the job logged."""
        text = self.job_log.read_text(encoding="utf-8", errors="replace") if self.job_log.exists() else ""
        return [(int(n), float(s), int(r)) for n, s, r in CYCLE.findall(text)]

    def indexed_times(self) -> dict[str, float]:
        """Article id -> when the store wrote it (epoch seconds)."""
        db = sqlite3.connect(self.data_dir / "newswatch.db", timeout=30)
        try:
            rows = db.execute("SELECT id, updated_at FROM articles").fetchall()
        finally:
            db.close()
        return {i: datetime.fromisoformat(t).timestamp() for i, t in rows}

    def lag(self) -> int:
        """Messages between the job's committed offsets and the log end, all partitions (the group's lag as
        `kafka-consumer-groups --describe` shows it). One consumer, kept, so sampling stays cheap."""
        with self._lag_lock:
            if self._lag_consumer is None:
                self._lag_consumer = self.clients.consumer(group_id=self.group, enable_auto_commit=False)
            consumer = self._lag_consumer
            tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            ends = consumer.end_offsets(tps)
            return sum(int(ends[tp]) - int(consumer.committed(tp) or 0) for tp in tps)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def bench(
    fast: bool, interval: float, *, alert_every_article: bool = False, extra_env: dict[str, str] | None = None
) -> Iterator[Bench]:
    # SIGTERM (timeout, kill) unwinds like Ctrl-C, so the job and the broker are stopped, not orphaned.
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="newswatch-bench-") as tmp:
        b = Bench(
            Path(tmp), fast=fast, interval=interval, alert_every_article=alert_every_article, extra_env=extra_env or {}
        )
        try:
            b.start_broker()
            b.prepare_store()
            b.start_job()
            yield b
        finally:
            b.stop()


class Corpus:
    """The benchmark corpus as message bodies, each with a URL of its own (a fresh article id per message)."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        self.run_id = run_id

    def message(self, n: int, label: str) -> tuple[str, bytes]:
        item = dict(self.items[n % len(self.items)])
        item["url"] = f"https://bench.example.com/e2e/{self.run_id}/{label}/{n}"
        raw = RawArticle.model_validate(item)
        return raw.id, json.dumps(item, ensure_ascii=False).encode("utf-8")


class Producer:
    """Publishes at a steady rate (a schedule, not sleep-per-message, so the rate does not drift), with the
    publish time in a header; remembers when each article id was produced."""

    def __init__(self, bench_: Bench, corpus: Corpus) -> None:
        self.bench, self.corpus = bench_, corpus
        self.producer = bench_.clients.producer(linger_ms=0)
        self.produced: dict[str, float] = {}
        self.count = 0

    def run(self, rate: float, seconds: float, label: str, stop: threading.Event | None = None) -> int:
        started = time.time()
        total = int(rate * seconds)
        for i in range(total):
            due = started + i / rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            if stop is not None and stop.is_set():
                break
            article_id, value = self.corpus.message(self.count, label)
            now = time.time()
            self.producer.send(self.bench.topic, value=value, headers=[(PRODUCED_AT, str(int(now * 1000)).encode())])
            self.produced[article_id] = now
            self.count += 1
        self.producer.flush(timeout=60)
        return total

    def close(self) -> None:
        self.producer.close(timeout=10)


class AlertListener(threading.Thread):
    """Reads the alerts topic from the start; article id -> when its first alert was delivered (the alert
    message's timestamp, set by the job's producer when it sent it)."""

    def __init__(self, bench_: Bench) -> None:
        super().__init__(daemon=True, name="alerts")
        self.bench = bench_
        self.delivered: dict[str, float] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        consumer = self.bench.clients.consumer(enable_auto_commit=False)
        try:
            tp = TopicPartition(self.bench.alerts_topic, 0)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            while not self.stopping.is_set():
                batch = consumer.poll(timeout_ms=0)
                if not batch:
                    # An idle poll spins against noida-db (~40 % of a core): pause instead. Delivery times come
                    # from the messages' timestamps, so reading them a little later changes nothing.
                    self.stopping.wait(0.1)
                for records in batch.values():
                    for record in records:
                        alert = json.loads(record.value)
                        at = record.timestamp / 1000
                        self.delivered[alert["article_id"]] = min(self.delivered.get(alert["article_id"], at), at)
        finally:
            consumer.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process in MB: psutil when installed, else /proc/PID/status."""
    try:
        import psutil  # type: ignore[import-not-found]

        return float(psutil.Process(pid).memory_info().rss) / 2**20
    except ImportError:
        pass
    except Exception:
        return None
    return proc_mb(Path(f"/proc/{pid}/status"), "VmRSS:")


def proc_mb(path: Path, field: str) -> float | None:
    """A kB figure of a /proc file ("VmRSS:" of status, "Pss:" of smaps_rollup) in MB."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass(frozen=True)
class JobMemory:
    """The job's memory: its own RSS, and with its enrichment workers (forked children) the summed RSS
    (counts the pages they share with the job once per process: an upper bound) and the summed PSS (shared
    pages split between the processes that map them: what the job really costs the machine)."""

    job_rss_mb: float
    total_rss_mb: float
    total_pss_mb: float | None
    processes: int


def children(pid: int) -> list[int]:
    """Direct child processes of `pid` (the enrichment workers of a job), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def job_memory(pid: int) -> JobMemory | None:
    """Memory of a job and its worker processes; None once the job is gone."""
    own = rss_mb(pid)
    if own is None:
        return None
    pids = [pid, *children(pid)]
    rss = [r for r in (rss_mb(p) for p in pids) if r is not None]
    pss = [proc_mb(Path(f"/proc/{p}/smaps_rollup"), "Pss:") for p in pids]
    total_pss = sum(x for x in pss if x is not None) if all(x is not None for x in pss) else None
    return JobMemory(own, sum(rss), total_pss, len(rss))


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used (/proc/PID/stat), to express cost per article independently of
    how busy the rest of the machine is."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def wait_for(condition: Any, timeout: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return bool(condition())
