"""Faults in the store, injected into real processes: the Elasticsearch-API server stopped in the middle of a
big bulk write of `newswatch run` (Kafka and RSS sources), and a SQLite store another process holds locked.
Neither may commit anything (Kafka offsets, feed state); once the store is back, every article is there once.

Per-item 429s in a bulk response (only those items retried) and a cluster that is not there at all:
tests/test_es_faults.py. The server stopped between reading the sources and writing: tests/test_es_cli.py."""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from connectors.kafka import committed_offsets, end_offsets, ensure_topic
from connectors.sqlite_store import SqliteStore
from connectors.store import SearchQuery
from pipelines.job import CycleFailed, CycleRunner, build_sources
from schemas import Article, RawArticle
from tests.alert_helpers import job_settings, write_feed
from tests.es_support import apply_setup, unique_prefix
from tests.fault_support import feed_states, publish, stop_job, summaries, wait_until
from tests.servers import NoidaServer
from tests.test_kafka_job import Job, LogWatcher, articles, unique

pytestmark = pytest.mark.slow


def feed_items(count: int, batch: str) -> list[dict[str, object]]:
    return [
        {
            "title": f"Troops leave the northern base, report {batch} {i}",
            "link": f"https://desk.example/{batch}/{i}",
            "text": f"Soldiers withdrew from the base near Kirkuk on Monday, officials said ({batch} {i}).",
            "published": datetime(2024, 5, 2, 8, tzinfo=UTC),
        }
        for i in range(count)
    ]


def es_count(client: Elasticsearch, prefix: str) -> int:
    client.indices.refresh(index=f"{prefix}-articles")
    return int(client.count(index=f"{prefix}-articles")["count"])


def es_ids(client: Elasticsearch, prefix: str) -> list[str]:
    client.indices.refresh(index=f"{prefix}-articles")
    hits = client.search(index=f"{prefix}-articles", size=2000, source=False, query={"match_all": {}})["hits"]["hits"]
    return [h["_id"] for h in hits]


def test_elasticsearch_stopped_mid_bulk_commits_nothing_then_indexes_everything_once(
    noida_kafka: NoidaServer, tmp_path: Path
) -> None:
    """500 Kafka messages and a 100-entry feed; bulk requests of 20 documents. The server is stopped once 150
    of the 600 documents are in, with the cycle's other bulk requests to come or in flight: the cycle fails with
    one error line naming the cause, nothing is committed, the job backs off (2 s, then 4 s); after the restart
    it indexes the rest, each article once."""
    es = NoidaServer(tmp_path / "noida-es", ("elasticsearch",)).start()
    prefix = unique_prefix()
    client = Elasticsearch(es.es_url)
    job = Job(noida_kafka, tmp_path, unique("es-fault"), unique("group"))
    feed = write_feed(tmp_path, "desk.xml", feed_items(100, "desk"))
    (tmp_path / "no-subscriptions.yaml").write_text("subscriptions: []\n")
    job.env.update(
        NEWSWATCH_SOURCES="rss,kafka",
        NEWSWATCH_FEEDS=str(feed),
        NEWSWATCH_FEED_DIRS=str(tmp_path),
        NEWSWATCH_SUBSCRIPTIONS_FILE=str(tmp_path / "no-subscriptions.yaml"),
        NEWSWATCH_SINK="elasticsearch",
        NEWSWATCH_ES_URL=es.es_url,
        NEWSWATCH_ES_INDEX_PREFIX=prefix,
        NEWSWATCH_ES_MAX_RETRIES="2",
        NEWSWATCH_ES_MAX_BACKOFF="0.5",
        NEWSWATCH_ES_BULK_MAX_DOCS="20",
    )
    ensure_topic(job.clients, job.topic, 2)
    wanted = articles(500, "es")
    publish(job, wanted)
    expected = {RawArticle.model_validate_json(line).id for line in wanted}
    expected |= {RawArticle(title=str(i["title"]), url=str(i["link"])).id for i in feed_items(100, "desk")}
    process = None
    try:
        apply_setup(es.es_url, prefix)
        process = job.popen_run("--interval", "1")
        watcher = LogWatcher(process)
        watcher.wait_for(r"processing 600 record\(s\)")
        deadline = time.monotonic() + 120
        while (written := es_count(client, prefix)) < 150:  # a good part of the bulk requests are in
            assert time.monotonic() < deadline, "the bulk writes never got going"
            time.sleep(0.05)
        es.stop()
        assert written < 600
        print(f"Elasticsearch stopped with {written} of 600 documents indexed")
        first = watcher.wait_for(r"ERROR +pipelines\.job: cycle 1 failed \((.+)\); nothing committed; retrying in 2s$")
        # (the bulk write, or the lookup of stored hashes that runs fused with it, is the first to find out)
        assert re.search(r"^store unavailable: .*Elasticsearch still failing .*ConnectionError", first.group(1))
        watcher.wait_for(r"cycle 2 failed \(store unavailable: .*\); nothing committed; retrying in 4s$")
        # Nothing committed: no Kafka offset, no feed marked as read.
        assert committed_offsets(job.clients, job.group, job.topic) == {0: None, 1: None}
        assert feed_states(job.data_dir / "state.db") == {}

        es.start()  # same port, same data
        wait_until(
            lambda: committed_offsets(job.clients, job.group, job.topic) == end_offsets(job.clients, job.topic),
            timeout=120,
            what="the offsets to be committed after the restart",
        )
        wait_until(lambda: feed_states(job.data_dir / "state.db"), timeout=30, what="the feed state")
        assert stop_job(process) == 0, watcher.text()[-3000:]
        process = None
        # What the failed cycles wrote was skipped as unchanged when read again, never written twice.
        assert all(c["updated"] == "0" for c in summaries(watcher))
        ids = es_ids(client, prefix)
        assert len(ids) == len(set(ids)) == 600 and set(ids) == expected
    finally:
        if process is not None:
            process.kill()
            process.wait()
        client.close()
        es.stop()


def test_a_locked_sqlite_store_fails_the_cycle_and_commits_nothing(tmp_path: Path) -> None:
    """Another process (a backup, a `sqlite3` shell) holds the store's write lock for longer than the job's
    busy timeout: the cycle fails naming the cause, the feed is not marked as read; once the lock is gone,
    the next cycle stores every article."""
    feed = write_feed(tmp_path, "desk.xml", feed_items(5, "locked"))
    settings = job_settings(tmp_path, [feed])
    runner = CycleRunner(settings, build_sources(settings))
    runner.config = replace(runner.config, store=replace(runner.config.store, sqlite_busy_timeout=0.5))
    runner.prepare()
    holder = sqlite3.connect(settings.store_path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the write lock, held by another connection
        started = time.monotonic()
        with pytest.raises(CycleFailed, match=r"store unavailable: SQLite store busy or unwritable: database is lock"):
            runner.run_cycle(force=True)
        assert time.monotonic() - started < 60
        assert feed_states(settings.state_path) == {}
        holder.execute("ROLLBACK")
        summary = runner.run_cycle(force=True)
        assert summary.counts["new"] == 5
        assert len(feed_states(settings.state_path)) == 1
        with SqliteStore(settings.store_path) as store:
            assert store.counts()["articles"] == 5
    finally:
        holder.close()
        runner.close()


def test_replacing_articles_stays_cheap_as_the_store_grows_and_old_stores_are_migrated(tmp_path: Path) -> None:
    """Found by benchmarks/soak.py: replacing an article deleted its full-text row by id, which FTS5 can only
    do by scanning the whole index (and its tags by a scan of every tag), so writes slowed down linearly with
    the store's size. Articles now know their full-text row; a store made before that is linked on open."""
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE articles (id TEXT PRIMARY KEY, content_hash TEXT NOT NULL, enrichment_version TEXT NOT NULL"
        " DEFAULT '', published TEXT, source TEXT, updated_at TEXT NOT NULL, doc TEXT NOT NULL);"
        "CREATE VIRTUAL TABLE articles_fts USING fts5(id UNINDEXED, title, text,"
        " tokenize = 'porter unicode61 remove_diacritics 2');"
    )
    first = RawArticle(title="Troops leave Kirkuk", text="Soldiers withdrew from the base.", url="https://e.com/1")
    old.execute(
        "INSERT INTO articles (id, content_hash, updated_at, doc) VALUES (?, 'h', 'now', ?)",
        (first.id, first.model_dump_json()),
    )
    old.execute(
        "INSERT INTO articles_fts (rowid, id, title, text) VALUES (7, ?, ?, ?)", (first.id, first.title, first.text)
    )
    old.commit()
    old.close()

    with SqliteStore(path) as store:
        db = sqlite3.connect(path)
        assert db.execute("SELECT fts_rowid FROM articles WHERE id = ?", (first.id,)).fetchone() == (7,)
        updated = Article(**{**first.model_dump(), "text": "Soldiers returned to the base in Mosul."})
        assert [outcome for _, outcome in store.write_articles([updated])] == ["updated"]
        assert db.execute("SELECT COUNT(*) FROM articles_fts").fetchone() == (1,)  # the old row is gone
        assert [h.article.id for h in store.search(SearchQuery(text="Mosul"))] == [first.id]
        assert store.search(SearchQuery(text="withdrew")) == []
        # Replacing an article's tags looks them up through an index, not a scan of every tag.
        (plan,) = db.execute("EXPLAIN QUERY PLAN DELETE FROM article_tags WHERE article_id = ?", ("x",))
        assert plan[-1].startswith("SEARCH article_tags USING COVERING INDEX"), plan
        db.close()
