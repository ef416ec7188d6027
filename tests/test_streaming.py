"""The streaming job's sources, bounded so they run on the local FnApiRunner: the Kafka Splittable DoFn against
a real broker (noida-db), the PeriodicImpulse feed poller against a real HTTP server, and the same composite
transforms as the cycle job writing enriched articles to the store. Also: the graph builds for Flink and
Dataflow options (it cannot run here), and the wheel carries the data workers need."""

from __future__ import annotations

import glob
import json
import subprocess
import sys
import time
import uuid
import zipfile
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from apache_beam.io.restriction_trackers import OffsetRange
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.runners.sdf_utils import (
    RestrictionTrackerView,
    ThreadsafeRestrictionTracker,
    ThreadsafeWatermarkEstimator,
)
from apache_beam.transforms.core import DoFn
from apache_beam.utils.timestamp import Duration, Timestamp
from kafka import TopicPartition

from connectors.kafka import KafkaClients, KafkaConnection, committed_offsets, ensure_topic
from connectors.kafka_partitions import MAX_OFFSET, PartitionSpec
from connectors.rss import FetchLimits, PollPolicy
from connectors.sqlite_store import SqliteStore
from connectors.store import StoreConfig
from pipelines.enrich import EnrichConfig
from pipelines.pipeline import counts
from pipelines.streaming import (
    FeedPollConfig,
    KafkaReadConfig,
    PartitionOffsetTracker,
    ReadPartitionFn,
    StreamingConfig,
    commit_after_run,
    create_streaming_pipeline,
)
from pipelines.subscriptions import load_subscriptions_file
from pipelines.transforms import ChannelConfig, PipelineConfig
from seeds import seed_path
from tests.conftest import REPO, run_cli
from tests.servers import FeedServer, NoidaServer

pytestmark = pytest.mark.slow

WITHDRAWAL = "U.S. troops began withdrawing from the base near Kirkuk in Iraq on Monday, officials said."


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def article(n: int, batch: str) -> bytes:
    return json.dumps(
        {
            "title": f"Troops leave base {n} in Iraq ({batch})",
            "text": WITHDRAWAL,
            "url": f"https://w.example/{batch}/{n}",
        }
    ).encode()


def pipeline_config(tmp_path: Path) -> PipelineConfig:
    store = StoreConfig(sqlite_path=str(tmp_path / "newswatch.db"))
    with SqliteStore(store.sqlite_path) as db:
        db.seed_subscriptions(load_subscriptions_file(seed_path("subscriptions.yaml")))
    return PipelineConfig(store=store, enrich=EnrichConfig(use_model=False), channels=ChannelConfig(console=False))


def send(clients: KafkaClients, topic: str, per_partition: dict[int, list[bytes]]) -> None:
    producer = clients.producer()
    try:
        for partition, values in per_partition.items():
            for value in values:
                producer.send(topic, value=value, partition=partition)
        producer.flush(timeout=30)
    finally:
        producer.close()


@pytest.fixture
def kafka(noida_kafka: NoidaServer) -> tuple[KafkaClients, str]:
    clients = KafkaClients(KafkaConnection((noida_kafka.kafka_bootstrap,)))
    topic = unique("stream")
    ensure_topic(clients, topic, 2)
    return clients, topic


def test_kafka_streaming_run_enriches_into_the_store_commits_and_resumes(
    kafka: tuple[KafkaClients, str], tmp_path: Path
) -> None:
    """Two partitions, a poison message; a bounded run (3 s) reads all of it through the shared transforms,
    the offsets are committed after the run; the next run (bounded by records) starts from them."""
    clients, topic = kafka
    group = unique("g")
    send(clients, topic, {0: [article(i, "a") for i in range(4)], 1: [article(i, "b") for i in range(3)] + [b"{bad"]})
    config = pipeline_config(tmp_path)
    read = KafkaReadConfig(clients, topic, group, max_seconds=3.0, commit="after_run", poll_timeout_s=0.3)
    result = create_streaming_pipeline(StreamingConfig(kafka=read), config).run()
    result.wait_until_finish()
    figures = counts(result)
    assert figures["kafka_messages"] == 8 and figures["read"] == 7 and figures["dead_letters"] == 1
    committed = commit_after_run(result, read)
    assert committed == {TopicPartition(topic, 0): 4, TopicPartition(topic, 1): 4}
    assert committed_offsets(clients, group, topic) == {0: 4, 1: 4}
    with SqliteStore(config.store.sqlite_path) as store:
        stored = list(store.iter_articles())
        letters = store.list_dead_letters()
        alerts = store.list_alerts()
    assert len(stored) == 7
    assert all(a.countries[:1] == ["IQ"] and "troop_withdrawal" in {t.id for t in a.topics} for a in stored)
    assert all(a.source == f"kafka:{topic}" for a in stored)
    assert len(letters) == 1 and letters[0].reason.startswith("invalid JSON")
    assert letters[0].details["partition"] == 1 and letters[0].details["offset"] == 3
    assert alerts, "the default troop-withdrawal subscription should fire"

    # Resume: three new messages per partition; a run bounded by records ends as soon as it has them.
    send(clients, topic, {0: [article(i, "c") for i in range(3)], 1: [article(i, "d") for i in range(3)]})
    bounded = KafkaReadConfig(clients, topic, group, max_records=3, commit="after_run", poll_timeout_s=0.3)
    started = time.monotonic()
    result = create_streaming_pipeline(StreamingConfig(kafka=bounded), config).run()
    result.wait_until_finish()
    assert time.monotonic() - started < 30
    assert counts(result)["read"] == 6 and counts(result)["new"] == 6
    assert commit_after_run(result, bounded) == {TopicPartition(topic, 0): 7, TopicPartition(topic, 1): 7}


def _invoke(
    fn: ReadPartitionFn, spec: PartitionSpec, restriction: OffsetRange, watermark: Timestamp | None = None
) -> tuple[list[object], ThreadsafeRestrictionTracker, ThreadsafeWatermarkEstimator, object]:
    """process() as a runner calls it: a thread-safe tracker view, a watermark estimator, a finalizer."""
    tracker = ThreadsafeRestrictionTracker(fn.create_tracker(restriction))
    estimator = ThreadsafeWatermarkEstimator(ManualWatermarkEstimator(watermark))
    finalizer = DoFn.BundleFinalizerParam()
    out = list(fn.process(spec, finalizer, RestrictionTrackerView(tracker), estimator))
    return out, tracker, estimator, finalizer


def test_partition_reader_claims_offsets_checkpoints_and_commits_on_finalization(
    kafka: tuple[KafkaClients, str],
) -> None:
    """The Splittable DoFn on its own: a restriction resumed at offset 2 reads from there, stamps messages with
    their timestamps, checkpoints the rest; an idle partition defers and moves the watermark to about now;
    finalizing the bundle commits; a passed deadline gives the restriction up."""
    clients, topic = kafka
    group = unique("g")
    send(clients, topic, {0: [article(i, "p") for i in range(5)]})
    fn = ReadPartitionFn(KafkaReadConfig(clients, topic, group, commit="finalize", poll_timeout_s=1.0))
    fn.setup()
    spec = PartitionSpec(topic, 0)
    try:
        assert fn.initial_restriction(spec) == OffsetRange(0, MAX_OFFSET)  # no commit yet: earliest
        assert fn.restriction_size(spec, OffsetRange(2, MAX_OFFSET)) == 3 * fn.config.avg_message_bytes
        out, tracker, estimator, finalizer = _invoke(fn, spec, OffsetRange(2, MAX_OFFSET))
        offsets = [v.value.offset for v in out]  # type: ignore[attr-defined]
        assert offsets == [2, 3, 4]
        stamps = [v.timestamp for v in out]  # type: ignore[attr-defined]
        assert stamps == sorted(stamps) and abs(stamps[0].micros / 1e6 - time.time()) < 120
        residual, delay = tracker.deferred_status()
        assert residual == OffsetRange(5, MAX_OFFSET) and delay <= Duration(seconds=0)  # resume at once
        assert estimator.current_watermark() == stamps[-1]
        assert committed_offsets(clients, group, topic)[0] is None  # nothing before the runner finalizes
        finalizer.finalize_bundle()  # type: ignore[attr-defined]
        assert committed_offsets(clients, group, topic)[0] == 5
        assert fn.initial_restriction(spec) == OffsetRange(5, MAX_OFFSET)  # a new job starts there

        out, tracker, estimator, _ = _invoke(fn, spec, OffsetRange(5, MAX_OFFSET), watermark=stamps[-1])
        assert out == []
        residual, delay = tracker.deferred_status()
        assert residual == OffsetRange(5, MAX_OFFSET)
        assert Duration(seconds=0) < delay <= Duration(seconds=fn.config.idle_resume_s)  # idle: resume later
        assert abs(estimator.current_watermark().micros / 1e6 - time.time()) < 5  # idle: about now

        gone = PartitionSpec(topic, 0, stop_at=time.time() - 1)
        out, tracker, _, _ = _invoke(fn, gone, OffsetRange(5, MAX_OFFSET))
        assert out == [] and tracker.deferred_status() is None
        tracker.check_done()  # given up, not left unclaimed
    finally:
        fn.teardown()


def test_partition_restrictions_checkpoint_but_never_split_and_drop_on_drain() -> None:
    tracker = PartitionOffsetTracker(OffsetRange(10, MAX_OFFSET))
    assert tracker.try_claim(10)
    assert tracker.try_split(0.5) is None  # a dynamic split would cut at an offset that does not exist
    primary, residual = tracker.try_split(0)
    assert primary == OffsetRange(10, 11) and residual == OffsetRange(11, MAX_OFFSET)
    assert not PartitionOffsetTracker(OffsetRange(0, MAX_OFFSET)).is_bounded()
    fn = ReadPartitionFn(KafkaReadConfig(KafkaClients(), "t", "g"))
    spec = PartitionSpec("t", 0)
    assert fn.truncate(spec, OffsetRange(3, MAX_OFFSET)) is None  # drain stops an open-ended read at once
    assert fn.truncate(spec, OffsetRange(3, 9)) == OffsetRange(3, 9)


FEED_ITEM = "<item><title>{title}</title><link>https://feed.example/{n}</link><description>{text}</description></item>"


def rss(items: list[tuple[int, str]]) -> bytes:
    body = "".join(FEED_ITEM.format(n=n, title=title, text=WITHDRAWAL) for n, title in items)
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Desk</title>{body}</channel></rss>'.encode()


class ChangingFeed:
    """First a feed of three entries (ETag v1), then the same plus one (v2), then 304 Not Modified."""

    def __init__(self) -> None:
        first = [(1, "Troops leave Kirkuk"), (2, "Troops leave Mosul"), (3, "Troops leave Erbil")]
        self.versions = {'"v1"': rss(first), '"v2"': rss([*first, (4, "Troops leave Basra")])}
        self.seen: list[str | None] = []

    def __call__(self, request: BaseHTTPRequestHandler) -> None:
        sent = request.headers.get("If-None-Match")
        self.seen.append(sent)
        if sent == '"v2"':
            request.send_response(304)
            request.send_header("ETag", '"v2"')
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        etag = '"v1"' if sent is None else '"v2"'
        body = self.versions[etag]
        request.send_response(200)
        request.send_header("Content-Type", "application/rss+xml")
        request.send_header("ETag", etag)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)


def test_feeds_polled_by_periodic_impulse_use_conditional_get_and_emit_each_entry_once(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    feed = ChangingFeed()
    feed_server.routes["/desk.xml"] = feed
    config = pipeline_config(tmp_path)
    feeds = FeedPollConfig(
        feeds=(feed_server.url("/desk.xml"),),
        tick_s=0.3,
        limits=FetchLimits(read_timeout_s=5, total_timeout_s=10),
        policy=PollPolicy(interval=timedelta(seconds=0.01)),
        max_seconds=2.0,
    )
    result = create_streaming_pipeline(StreamingConfig(feeds=feeds), config).run()
    result.wait_until_finish()
    figures = counts(result)
    assert len(feed.seen) >= 3, "several impulses should have polled the feed"
    assert feed.seen[:3] == [None, '"v1"', '"v2"']  # the state carries the ETag from poll to poll
    assert figures["feeds_not_modified"] == len(feed.seen) - 2
    assert figures["read"] == 4  # 3, then only the new entry of v2, then nothing
    with SqliteStore(config.store.sqlite_path) as store:
        titles = sorted(a.title for a in store.iter_articles())
    assert titles == ["Troops leave Basra", "Troops leave Erbil", "Troops leave Kirkuk", "Troops leave Mosul"]


def test_cli_streaming_runs_bounded_locally_and_refuses_an_unbounded_local_run(
    noida_kafka: NoidaServer, kafka: tuple[KafkaClients, str], tmp_path: Path
) -> None:
    clients, topic = kafka
    send(clients, topic, {0: [article(1, "cli")], 1: [article(2, "cli")]})
    env = {
        "NEWSWATCH_DATA_DIR": str(tmp_path / "data"),
        "NEWSWATCH_KAFKA_BOOTSTRAP_SERVERS": noida_kafka.kafka_bootstrap,
        "NEWSWATCH_KAFKA_TOPIC": topic,
        "NEWSWATCH_KAFKA_GROUP_ID": unique("g"),
        "NEWSWATCH_KAFKA_DLQ_TOPIC": "",
    }
    refused = run_cli("run", "--streaming", "--source", "kafka", "--fast", env=env)
    assert refused.returncode == 2 and "--max-seconds" in refused.stderr
    done = run_cli("run", "--streaming", "--source", "kafka", "--fast", "--max-records", "1", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "read=2" in done.stderr and "kafka: committed p0:1,p1:1" in done.stderr
    stats = run_cli("stats", "--json", env=env)
    assert json.loads(stats.stdout)["articles"] == 2


def _graph(beam_args: list[str]) -> tuple[str, set[str], object]:
    from pipelines.job import pipeline_config as settings_pipeline_config
    from pipelines.settings import load_settings
    from pipelines.streaming import streaming_config

    settings = load_settings(
        sources=["rss", "kafka"],
        kafka_bootstrap_servers=["kafka:9092"],
        sink="elasticsearch",
        es_url="https://elasticsearch:9200",
    )
    pipeline = create_streaming_pipeline(streaming_config(settings), settings_pipeline_config(settings), beam_args)
    proto = pipeline.to_runner_api()
    names = {t.unique_name for t in proto.components.transforms.values()}
    return type(pipeline.runner).__name__, names, proto


SHARED_STEPS = {"Parse", "Dedupe", "SkipUnchanged", "Enrich", "Index", "MatchSubscriptions", "DeliverAlerts"}


@pytest.mark.parametrize(
    ("runner", "beam_args"),
    [
        (
            "PortableRunner",
            [
                "--runner=PortableRunner",
                "--job_endpoint=localhost:8099",
                "--environment_type=EXTERNAL",
                "--environment_config=localhost:50000",
                "--checkpointing_interval=10000",
            ],
        ),
        (
            "DataflowRunner",
            [
                "--runner=DataflowRunner",
                "--project=newswatch-prod",
                "--region=europe-west1",
                "--temp_location=gs://newswatch-prod-beam/tmp",
                f"--setup_file={REPO / 'setup.py'}",
                "--requirements_file=" + str(REPO / "deploy" / "dataflow" / "requirements.txt"),
            ],
        ),
    ],
    ids=["flink", "dataflow"],
)
def test_the_streaming_graph_builds_for_flink_and_dataflow(runner: str, beam_args: list[str]) -> None:
    from apache_beam.portability.api import beam_runner_api_pb2

    built_on, names, proto = _graph(beam_args)
    assert built_on == runner
    assert SHARED_STEPS | {"ReadKafka/ReadPartitions", "ReadFeeds/Ticks", "ReadFeeds/PollDueFeeds"} <= names
    assert {"DedupeWindows", "GlobalWindow", "DeadLetters", "DeadLetterTopic"} <= names
    transforms = proto.components.transforms  # type: ignore[attr-defined]
    read = next(t for t in transforms.values() if t.unique_name == "ReadKafka/ReadPartitions")
    payload = beam_runner_api_pb2.ParDoPayload.FromString(read.spec.payload)
    assert payload.restriction_coder_id, "the Kafka reader must be a Splittable DoFn"
    out = proto.components.pcollections[next(iter(read.outputs.values()))]  # type: ignore[attr-defined]
    assert out.is_bounded == beam_runner_api_pb2.IsBounded.UNBOUNDED


def test_the_wheel_carries_seed_data_and_deploy_templates(tmp_path: Path) -> None:
    """What workers install (Dataflow --setup_file, the SDK harness image) must hold the data enrichment
    reads at run time: topics, feeds, gazetteer, and the deploy templates `es setup` applies."""
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = glob.glob(str(tmp_path / "newswatch-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "seeds/topics.yaml",
        "seeds/subscriptions.yaml",
        "seeds/seed-article.txt",
        "seeds/geo/countries.jsonl",
        "seeds/actors/actors.jsonl",
        "deploy/elasticsearch/index_templates/articles.json",
        "deploy/kibana/newswatch.ndjson",
        "pipelines/streaming.py",
        "connectors/kafka_partitions.py",
    ):
        assert needed in names, f"{needed} missing from the wheel"
    assert {n for n in names if n.startswith("seeds/feeds/") and n.endswith(".xml")}
