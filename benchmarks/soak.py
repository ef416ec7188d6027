"""Soak test: 100,000 articles (and a known number of poison messages) through Kafka into the store with the
continuous job, checking exact counts, dead-letter counts and that the job's memory stays flat. Not in CI.

    python benchmarks/soak.py                     # 100,000 short articles, 1 poison message per 1,000
    python benchmarks/soak.py --count 10000       # scaled down
    python benchmarks/soak.py --kafka host:port   # an existing broker (default: its own noida-db)

The job runs as an operator runs it (`newswatch run --source kafka --fast --interval 1`, its own data dir,
topic and group), reading at most --max-records messages per cycle. Memory: the job's RSS is sampled every
second; the baseline is its RSS after the first cycle (same run), "flat" means the last cycles are within
--max-growth of it. Exit status 1 when a check fails. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import finish, print_machine
from benchmarks.harness import rss_mb
from connectors.kafka import (
    H_REASON,
    KafkaClients,
    KafkaConnection,
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
from tests.servers import NoidaServer

REPO = Path(__file__).resolve().parent.parent
MAX_MESSAGE_BYTES = 64 * 1024
SENTENCES = [
    "Protesters gathered in central {place} demanding the release of detained activists.",
    "An airstrike hit a depot outside {place}, the ministry of defence said.",
    "Election officials in {place} said turnout was higher than in the previous vote.",
    "Flooding forced thousands of residents of {place} to leave their homes.",
    "Talks between the two delegations resumed in {place} on {day}, diplomats said.",
]
ALERTING = (
    "Soldiers began to withdraw from the base near {place} on {day}, officials said."  # the default subscriptions'
)
ALERT_EVERY = 50  # about one article in 50 matches a subscription
PLACES = ["Baghdad", "Kirkuk", "Bamako", "Goma", "Kherson", "Kabul", "Aleppo", "Sanaa", "Niamey", "Tripoli"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]


def article(i: int, run: str) -> bytes:
    """A short, distinct article (own URL, so own id)."""
    place, day = PLACES[i % len(PLACES)], DAYS[i % len(DAYS)]
    sentences = SENTENCES[i % 3 : i % 3 + 3] + ([ALERTING] if i % ALERT_EVERY == 0 else [])
    text = " ".join(s.format(place=place, day=day) for s in sentences)
    return json.dumps(
        {
            "title": f"{SENTENCES[i % len(SENTENCES)].split(',')[0].format(place=place, day=day)} ({run} {i})",
            "text": text,
            "url": f"https://soak.example/{run}/{i}",
            "published": "2024-05-01T12:00:00Z",
        }
    ).encode()


def poison(i: int) -> tuple[bytes, str]:
    """The four kinds of bad message, in turn, with the reason the dead-letter topic must give."""
    kind = i % 4
    if kind == 0:
        return b'{"title": "cut off', "invalid JSON"
    if kind == 1:
        return json.dumps({"title": 42, "text": f"not a title {i}"}).encode(), "schema violation"
    if kind == 2:
        return f'{{"title": "caf\xe9 {i}", "text": "latin-1"}}'.encode("latin-1"), "not UTF-8"
    return b'{"title": "Huge", "text": "' + b"a" * (MAX_MESSAGE_BYTES + i) + b'"}', "oversized message"


def produce(clients: KafkaClients, topic: str, count: int, poison_every: int, run: str) -> tuple[int, float]:
    """Articles with a poison message after every `poison_every`; returns (poison sent, seconds)."""
    publisher = KafkaPublisher(TopicTarget(clients, topic), fallback_bytes=None)
    started = time.perf_counter()
    sent_poison = 0
    for i in range(count):
        publisher.send(OutgoingMessage(f"a{i}".encode(), article(i, run)))
        if poison_every and (i + 1) % poison_every == 0:
            publisher.send(OutgoingMessage(None, poison(sent_poison)[0]))
            sent_poison += 1
        if publisher.pending >= 5000:
            publisher.flush()
    publisher.flush()
    publisher.close()
    return sent_poison, time.perf_counter() - started


class JobWatch:
    """The job's stderr (cycle summaries, failures) and its RSS, sampled every second in the background."""

    def __init__(self, process: subprocess.Popen[str], log_path: Path) -> None:
        self.process, self.cycles, self.failures = process, [], []  # type: ignore[var-annotated]
        self.samples: list[tuple[float, float, int]] = []  # (seconds, rss MB, cycles done)
        self.started = time.monotonic()
        self._log = log_path.open("w", encoding="utf-8")
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._sample, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._log.write(line)
            if " cycle=" in line:
                self.cycles.append(dict(re.findall(r"(\S+)=(\S+)", line)))
                c = self.cycles[-1]
                print(
                    f"  cycle {c['cycle']:>3}: {c['seconds']:>6}s messages={c.get('kafka.messages')} "
                    f"new={c['new']} dead_letters={c['dead_letters']} lag={c.get('kafka.lag')} "
                    f"rss={self.samples[-1][1] if self.samples else 0:.0f}MB",
                    flush=True,
                )
            elif "failed" in line and "ERROR" in line:
                self.failures.append(line.strip())
                print("  " + line.strip()[:200], flush=True)
        self._log.close()

    def _sample(self) -> None:
        while self.process.poll() is None:
            value = rss_mb(self.process.pid)
            if value is not None:
                self.samples.append((time.monotonic() - self.started, value, len(self.cycles)))
            time.sleep(1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000, help="articles to push through (default 100,000)")
    parser.add_argument("--poison-every", type=int, default=1000, help="one poison message after every N articles")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--max-records", type=int, default=10_000, help="Kafka messages per cycle at most")
    parser.add_argument(
        "--fast", action=argparse.BooleanOptionalAction, default=True, help="no statistical NER (default: on)"
    )
    parser.add_argument("--kafka", help="host:port of a broker to use (default: start a noida-db of its own)")
    parser.add_argument("--data-dir", type=Path, help="where the broker and job keep data (default: a temp dir)")
    parser.add_argument("--max-growth", type=float, default=0.25, help="allowed RSS growth over the baseline")
    parser.add_argument("--timeout", type=float, default=6 * 3600, help="give up after this many seconds")
    args = parser.parse_args()

    print_machine()
    work = args.data_dir or Path(tempfile.mkdtemp(prefix="newswatch-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    server = None
    if args.kafka:
        bootstrap = args.kafka
    else:
        server = NoidaServer(work / "noida", ("kafka",)).start()
        bootstrap = server.kafka_bootstrap
    run = uuid.uuid4().hex[:8]
    topic, group, dlq = f"soak-{run}", f"soak-{run}", f"soak-{run}.dlq"
    clients = KafkaClients(KafkaConnection((bootstrap,)))
    process: subprocess.Popen[str] | None = None
    try:
        ensure_topic(clients, topic, args.partitions)
        ensure_topic(clients, dlq, 1)
        print(f"producing {args.count} articles to {topic} ({args.partitions} partitions) ...", flush=True)
        poisoned, produce_seconds = produce(clients, topic, args.count, args.poison_every, run)
        print(
            f"produced {args.count} articles + {poisoned} poison messages in {produce_seconds:.1f}s "
            f"({(args.count + poisoned) / produce_seconds:.0f} msg/s)",
            flush=True,
        )
        data_dir = work / f"job-{run}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSWATCH_")}
        env.update(
            PYTHONPATH=str(REPO),
            NEWSWATCH_DATA_DIR=str(data_dir),
            NEWSWATCH_SOURCES="kafka",
            NEWSWATCH_FAST="true" if args.fast else "false",
            NEWSWATCH_CONSOLE_ALERTS="false",
            NEWSWATCH_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            NEWSWATCH_KAFKA_TOPIC=topic,
            NEWSWATCH_KAFKA_GROUP_ID=group,
            NEWSWATCH_KAFKA_DLQ_TOPIC=dlq,
            NEWSWATCH_KAFKA_MAX_RECORDS=str(args.max_records),
            NEWSWATCH_KAFKA_MAX_MESSAGE_BYTES=str(MAX_MESSAGE_BYTES),
        )
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "run", "--interval", "1"],
            env=env,
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        watch = JobWatch(process, work / f"job-{run}.log")
        ends = end_offsets(clients, topic)
        while committed_offsets(clients, group, topic) != ends:
            if process.poll() is not None:
                raise SystemExit(f"the job exited with status {process.returncode}; see {work}/job-{run}.log")
            if time.monotonic() - started > args.timeout:
                raise SystemExit("timed out")
            time.sleep(2)
        seconds = time.monotonic() - started
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=300)
        process = None
    finally:
        if process is not None:
            process.kill()
            process.wait()

    try:
        with SqliteStore(data_dir / "newswatch.db") as store:
            counts = store.counts()
            stored_poison = sum(len(store.list_dead_letters(limit=10**6, stage=s)) for s in ("parse", "validate"))
        dead = read_all(clients, dlq, timeout_s=120)
    finally:
        if server is not None:
            server.stop()
    reasons: dict[str, int] = {}
    for message in dead:
        reason = headers_dict(message.headers).get(H_REASON, "")
        key = next(
            (r for r in ("invalid JSON", "schema violation", "not UTF-8", "oversized") if reason.startswith(r)), "?"
        )
        reasons[key] = reasons.get(key, 0) + 1

    cycles = watch.cycles
    new_total = sum(int(c["new"]) for c in cycles)
    rss = [mb for _, mb, done in watch.samples if done >= 1]
    baseline = rss[0] if rss else 0.0
    tail = rss[-max(3, len(rss) // 10) :] if rss else [0.0]
    growth = (statistics.median(tail) - baseline) / baseline if baseline else 0.0
    figures: dict[str, Any] = {
        "benchmark": "soak",
        "articles": args.count,
        "poison": poisoned,
        "fast": args.fast,
        "produce_msg_per_s": round((args.count + poisoned) / produce_seconds, 1),
        "seconds": round(seconds, 1),
        "articles_per_s": round(args.count / seconds, 1),
        "cycles": len(cycles),
        "failed_cycles": len(watch.failures),
        "cycle_seconds_median": statistics.median(float(c["seconds"]) for c in cycles) if cycles else None,
        "stored_articles": counts["articles"],
        "new_total": new_total,
        "stored_dead_letters": stored_poison,
        "dlq_messages": len(dead),
        "dlq_reasons": reasons,
        "rss_mb_baseline": round(baseline, 1),
        "rss_mb_end": round(statistics.median(tail), 1),
        "rss_mb_max": round(max(rss), 1) if rss else None,
        "rss_growth": round(growth, 3),
    }
    checks = {
        "counts_exact": counts["articles"] == args.count == new_total,
        "dead_letters_exact": stored_poison == poisoned == len(dead),
        "memory_flat": growth <= args.max_growth,
    }
    figures.update(checks)
    print(
        f"\n{args.count} articles in {seconds:.0f}s = {args.count / seconds:.0f} articles/s over {len(cycles)} cycles "
        f"(median cycle {figures['cycle_seconds_median']}s)\n"
        f"store: {counts['articles']} articles (new over all cycles: {new_total}), {stored_poison} poison dead letters;"
        f" dead-letter topic: {len(dead)} {reasons}\n"
        f"job RSS: {baseline:.0f} MB after the first cycle (baseline), {statistics.median(tail):.0f} MB at the end, "
        f"max {figures['rss_mb_max']} MB: growth {growth:+.1%} (allowed {args.max_growth:.0%})\n"
        + "  ".join(f"{k}={'OK' if v else 'FAILED'}" for k, v in checks.items())
    )
    finish(figures)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
