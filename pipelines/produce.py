"""`newswatch produce`: publish articles to a Kafka topic (demos, backfills, tests).

JSON Lines are sent as they are, one message per non-blank line (keyed by the article id when the line is a
valid article, so copies of one story land on one partition); a feed's entries are sent as RawArticle JSON.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from connectors.rss import FeedError, FeedFetcher, FetchLimits, is_url, parse_feed
from pipelines import logs
from pipelines.records import decode_message
from pipelines.settings import load_settings
from schemas import DeadLetter, RawArticle

log = logging.getLogger("newswatch.produce")

FEED_SNIFF_BYTES = 512


def looks_like_feed(spec: str) -> bool:
    """URLs are feeds; a file is a feed when its first non-blank byte is '<' (XML), else JSON Lines."""
    if is_url(spec):
        return True
    if spec == "-":
        return False
    with open(spec, "rb") as handle:
        head = handle.read(FEED_SNIFF_BYTES).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<")


def article_key(value: bytes) -> bytes | None:
    parsed = decode_message(value, source="produce")
    return None if isinstance(parsed, DeadLetter) else parsed.id.encode("ascii")


def jsonl_messages(lines: Iterable[bytes]) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) per non-blank line, the line's bytes unchanged (invalid lines too: they test the DLQ)."""
    for line in lines:
        value = line.rstrip(b"\r\n")
        if value.strip():
            yield article_key(value), value


def feed_messages(spec: str, fetcher: FeedFetcher) -> tuple[list[tuple[bytes | None, bytes]], list[DeadLetter]]:
    try:
        fetched = fetcher.fetch(spec)
    except FeedError as exc:
        return [], [DeadLetter(stage="fetch", reason=str(exc), source=spec)]
    batch = parse_feed(fetched.body, url=spec, content_type=fetched.content_type)
    messages: list[tuple[bytes | None, bytes]] = [(a.id.encode("ascii"), _article_json(a)) for a in batch.articles]
    return messages, batch.dead_letters


def _article_json(article: RawArticle) -> bytes:
    return article.model_dump_json(exclude_defaults=True).encode("utf-8")


def cmd_produce(args: argparse.Namespace, _: list[str]) -> int:
    from connectors.kafka import (
        KafkaPublisher,
        KafkaPublishError,
        KafkaUnavailable,
        OutgoingMessage,
        TopicTarget,
        ensure_topic,
    )
    from pipelines.kafka_source import kafka_clients

    settings = load_settings(
        config_file=args.config,
        data_dir=args.data_dir,
        log_level=args.log_level,
        log_json=True if args.log_json else None,
        kafka_bootstrap_servers=args.bootstrap_servers,
        kafka_topic=args.topic,
    )
    logs.configure(settings.log_level, settings.log_json)
    topic = settings.kafka_topic
    clients = kafka_clients(settings)
    started = time.monotonic()
    try:
        if args.partitions:
            created = ensure_topic(clients, topic, args.partitions, args.replication_factor)
            log.info("topic %s %s", topic, f"created with {args.partitions} partition(s)" if created else "exists")
        if looks_like_feed(args.input):
            messages, problems = feed_messages(args.input, FeedFetcher(FetchLimits(user_agent=settings.user_agent)))
            for letter in problems:
                log.warning("feed %s: %s", args.input, letter.reason)
            source: Iterable[tuple[bytes | None, bytes]] = messages
            stream: BinaryIO | None = None
        else:
            stream = sys.stdin.buffer if args.input == "-" else Path(args.input).open("rb")  # noqa: SIM115
            source, problems = jsonl_messages(stream), []
        publisher = KafkaPublisher(TopicTarget(clients, topic), fallback_bytes=None)
        sent = 0
        try:
            for key, value in source:
                publisher.send(OutgoingMessage(key, value))
                if publisher.pending >= args.progress_every:
                    sent += publisher.flush()
                    log.info("produced %d message(s) to %s (%.0f/s)", sent, topic, sent / _since(started))
            sent += publisher.flush()
        finally:
            publisher.close()
            if stream is not None and stream is not sys.stdin.buffer:
                stream.close()
    except (KafkaUnavailable, KafkaPublishError) as exc:
        print(f"newswatch: produce failed: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"newswatch: cannot read {args.input}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"produced {sent} message(s) to {topic} in {_since(started):.1f}s")
    return 1 if problems and not sent else 0


def _since(started: float) -> float:
    return max(time.monotonic() - started, 1e-6)


def add_produce_command(sub: Any, common: argparse.ArgumentParser) -> None:
    produce = sub.add_parser(
        "produce",
        parents=[common],
        help="publish articles to a Kafka topic (JSON Lines or a feed)",
        description="Publish articles to a Kafka topic: JSON Lines are sent line by line as they are (keyed by "
        "article id when valid; invalid lines too, which exercises the dead-letter topic), a feed URL or file's "
        "entries as RawArticle JSON. Security settings come from NEWSWATCH_KAFKA_* as for `run`.",
    )
    produce.add_argument("input", nargs="?", default="-", help="JSON Lines file, feed URL or feed file; - for stdin")
    produce.add_argument("--topic", help="topic to publish to (default NEWSWATCH_KAFKA_TOPIC)")
    produce.add_argument("--bootstrap-servers", help="host:port,... (default NEWSWATCH_KAFKA_BOOTSTRAP_SERVERS)")
    produce.add_argument("--partitions", type=int, help="create the topic with this many partitions if missing")
    produce.add_argument("--replication-factor", type=int, default=1, help="for a topic created here (default 1)")
    produce.add_argument("--progress-every", type=int, default=1000, help="log progress every N messages")
    produce.set_defaults(func=cmd_produce)
