"""`newswatch subscriptions add|list|show|remove|enable|disable|test`: the subscription commands.

Kept apart from cli.py so that the command line's other parts can change without touching this one.
Secrets (webhook secrets) are never printed: `list` shows targets by host, `show` and `--json` mask them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from connectors.store import ArticleStore
from connectors.webhook import redact_url
from pipelines.matching import describe, evaluate, make_alert
from pipelines.neardup import Fingerprint, fingerprint, is_near_duplicate
from pipelines.settings import Settings
from pipelines.subscriptions import SubscriptionError, load_subscriptions_file, subscription_from_options
from schemas import EmailTarget, KafkaTarget, Subscription, WebhookTarget, format_duration

EXIT_OK, EXIT_USAGE = 0, 2

QUERY_HELP = (
    'Query syntax: topic:ID[>=SCORE] country:CC region:"NAME" entity:"NAME or ID" source:S language:en '
    '"a phrase" word /regex/, combined with AND, OR, NOT and parentheses (juxtaposition means AND).'
)


def _rule_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topic", action="append", default=[], help="topic id from seeds/topics.yaml (repeatable)")
    parser.add_argument("--min-score", type=float, default=0.0, help="minimum score for --topic (0-1)")
    parser.add_argument("--country", action="append", default=[], help="ISO 3166-1 alpha-2 code (repeatable)")
    parser.add_argument("--region", action="append", default=[], help="UN M49 or named region (repeatable)")
    parser.add_argument("--entity", action="append", default=[], help="entity name or linked id (repeatable)")
    parser.add_argument("--source", action="append", default=[], help="part of the feed URL or name (repeatable)")
    parser.add_argument("--language", action="append", default=[], help="language tag, e.g. en (repeatable)")
    parser.add_argument("--query", help="boolean query, e.g. 'topic:airstrike AND NOT \"drone show\"'")


def add_subscriptions_parser(
    commands: Any, common: argparse.ArgumentParser, formatter: type[argparse.HelpFormatter]
) -> argparse.ArgumentParser:
    """The `subscriptions` command and its actions; the caller sets its `func`."""
    subs: argparse.ArgumentParser = commands.add_parser(
        "subscriptions",
        parents=[common],
        help="manage alert subscriptions",
        description="Subscriptions say which articles raise an alert and where it goes. See docs/alerts.md.",
    )
    actions = subs.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add",
        parents=[common],
        formatter_class=formatter,
        help="add a subscription",
        description="Conditions of one kind are ORed; kinds and --query are ANDed. " + QUERY_HELP,
        epilog="examples:\n"
        "  newswatch subscriptions add 'Iraq withdrawal' --topic troop_withdrawal --country IQ\n"
        "  newswatch subscriptions add 'Sahel' --query 'region:\"Western Africa\" AND (topic:coup OR "
        "topic:abduction)' --webhook https://hooks.example.org/nw --secret-file secret.txt --digest 1h\n",
    )
    add.add_argument("name")
    add.add_argument("--id", help="subscription id (default: from the name)")
    _rule_options(add)
    add.add_argument("--webhook", metavar="URL", help="POST each alert here (HMAC-signed with --secret)")
    add.add_argument("--secret", help="webhook signing secret (visible in `ps`; prefer --secret-file)")
    add.add_argument("--secret-file", type=Path, help="file holding the webhook signing secret")
    add.add_argument("--kafka-topic", metavar="TOPIC", help="publish each alert to this Kafka topic")
    add.add_argument("--email", action="append", default=[], metavar="ADDR", help="email each alert (repeatable)")
    add.add_argument(
        "--realert", metavar="DURATION", help="suppress near-duplicate stories within (default 24h; 0 off)"
    )
    add.add_argument("--digest", metavar="DURATION", help="batch alerts and send them once per interval, e.g. 1h")
    add.add_argument("--hours", metavar="HH:MM-HH:MM", help="only deliver within these hours; hold the rest")
    add.add_argument("--timezone", metavar="TZ", help="IANA time zone of --hours (default UTC)")
    add.add_argument("--description", default="")
    add.add_argument("--disabled", action="store_true", help="store it switched off")
    add.add_argument("--replace", action="store_true", help="replace a subscription with the same id")
    lst = actions.add_parser("list", parents=[common], help="list subscriptions (secrets are never shown)")
    lst.add_argument("--json", action="store_true", help="one JSON object per line, secrets masked")
    for name, text in (
        ("show", "show one subscription"),
        ("remove", "remove a subscription"),
        ("enable", "switch a subscription on"),
        ("disable", "switch a subscription off (its pending alerts are cancelled)"),
    ):
        action = actions.add_parser(name, parents=[common], help=text)
        action.add_argument("id")
    test = actions.add_parser(
        "test",
        parents=[common],
        help="replay stored articles through a subscription: what would fire, and why",
        description="Replays the stored articles, oldest first, through one stored subscription (by ID) or "
        "through the conditions given as options, and prints each article that would fire with the reasons; "
        "near-duplicates that the realert window would suppress are marked. " + QUERY_HELP,
    )
    test.add_argument("id", nargs="?", help="a stored subscription (or give conditions as options)")
    _rule_options(test)
    test.add_argument("--realert", metavar="DURATION", help="realert window for the replay")
    test.add_argument("--limit", type=int, default=0, help="show at most N matches (0: all)")
    test.add_argument("--json", action="store_true", help="one JSON object per matching article")
    return subs


def run(args: argparse.Namespace, settings: Settings, store: ArticleStore) -> int:
    if store.seed_subscriptions(load_subscriptions_file(settings.subscriptions_file)):
        print(f"loaded the default subscriptions from {settings.subscriptions_file}", file=sys.stderr)
    action = args.action
    if action == "add":
        return _add(args, settings, store)
    if action == "list":
        subs = store.list_subscriptions()
        for sub in subs:
            if args.json:
                print(json.dumps(sub.model_dump(mode="json"), ensure_ascii=False))
            else:
                print(f"{sub.id:<28} {'on ' if sub.enabled else 'off'} {sub.name}: {describe(sub.rule)}")
                extras = _delivery_line(sub)
                if extras:
                    print(f"{'':<32} {extras}")
        if not subs:
            print("no subscriptions", file=sys.stderr)
        return EXIT_OK
    if action == "test":
        return _test(args, settings, store)
    found = {s.id: s for s in store.list_subscriptions()}
    chosen = found.get(args.id)
    if chosen is None:
        print(f"newswatch: no subscription {args.id!r} (have: {', '.join(found) or 'none'})", file=sys.stderr)
        return EXIT_USAGE
    if action == "show":
        print(json.dumps(chosen.model_dump(mode="json"), indent=2, ensure_ascii=False))
        print(f"query: {describe(chosen.rule)}")
        print(f"delivery: {_delivery_line(chosen) or 'operator channels only'}")
        return EXIT_OK
    if action == "remove":
        store.remove_subscription(chosen.id)
        print(f"removed {chosen.id}")
        return EXIT_OK
    store.put_subscription(chosen.model_copy(update={"enabled": action == "enable"}))
    print(f"{action}d {chosen.id}")
    return EXIT_OK


def _delivery_line(sub: Subscription) -> str:
    parts = []
    for target in sub.targets:
        if isinstance(target, WebhookTarget):
            parts.append(f"webhook {redact_url(target.url)}" + (" (signed)" if target.secret else ""))
        elif isinstance(target, KafkaTarget):
            parts.append(f"kafka {target.topic}")
        elif isinstance(target, EmailTarget):
            parts.append(f"email {', '.join(target.to)}")
    timing = [f"realert {format_duration(sub.realert)}"]
    if sub.digest:
        timing.append(f"digest {format_duration(sub.digest)}")
    if sub.active_hours:
        timing.append(f"hours {sub.active_hours} {sub.timezone}")
    return "; ".join(parts + timing)


def _secret(args: argparse.Namespace) -> str | None:
    if args.secret_file:
        try:
            return args.secret_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SubscriptionError(f"--secret-file {args.secret_file}: {exc.strerror or exc}") from None
    return str(args.secret) if args.secret else None


def _from_options(args: argparse.Namespace, settings: Settings, name: str, **extra: Any) -> Subscription:
    return subscription_from_options(
        name,
        topics=args.topic,
        countries=args.country,
        regions=args.region,
        entities=args.entity,
        sources=args.source,
        languages=args.language,
        query=args.query,
        min_score=args.min_score,
        allow_private_webhooks=settings.webhook_allow_private,
        **extra,
    )


def _add(args: argparse.Namespace, settings: Settings, store: ArticleStore) -> int:
    try:
        sub = _from_options(
            args,
            settings,
            args.name,
            subscription_id=args.id,
            webhook=args.webhook,
            secret=_secret(args),
            kafka_topic=args.kafka_topic,
            emails=args.email,
            realert=args.realert,
            digest=args.digest,
            active_hours=args.hours,
            timezone=args.timezone,
            description=args.description,
            enabled=not args.disabled,
        )
    except SubscriptionError as exc:
        print(f"newswatch: cannot add subscription: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if sub.id in {s.id for s in store.list_subscriptions()} and not args.replace:
        print(f"newswatch: subscription {sub.id!r} exists; use --replace or --id", file=sys.stderr)
        return EXIT_USAGE
    if any(isinstance(t, EmailTarget) for t in sub.targets) and not settings.smtp_host:
        print("newswatch: warning: no SMTP server configured (NEWSWATCH_SMTP_HOST); email will fail", file=sys.stderr)
    store.put_subscription(sub)
    print(f"added {sub.id}: {describe(sub.rule)}")
    extras = _delivery_line(sub)
    if extras:
        print(f"  {extras}")
    return EXIT_OK


def _test(args: argparse.Namespace, settings: Settings, store: ArticleStore) -> int:
    has_options = any((args.topic, args.country, args.region, args.entity, args.source, args.language, args.query))
    try:
        if args.id and has_options:
            raise SubscriptionError("give either a subscription id or conditions, not both")
        if args.id:
            found = {s.id: s for s in store.list_subscriptions()}
            if args.id not in found:
                print(f"newswatch: no subscription {args.id!r} (have: {', '.join(found) or 'none'})", file=sys.stderr)
                return EXIT_USAGE
            sub = found[args.id]
            if args.realert is not None:
                sub = Subscription.model_validate({**sub.model_dump(), "realert": args.realert})
        else:
            extra = {"realert": args.realert} if args.realert is not None else {}
            sub = _from_options(args, settings, "test", subscription_id="test", **extra)
    except (SubscriptionError, ValueError) as exc:
        print(f"newswatch: cannot test: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"testing {sub.id}: {describe(sub.rule)}", file=sys.stderr)
    matches = []
    for article in store.iter_articles():
        result = evaluate(sub.rule, article)
        if result.matched:
            matches.append((article, result.reasons))
    matches.sort(key=lambda m: (m[0].published or m[0].fetched_at, m[0].id))
    fired = suppressed = 0
    kept: list[tuple[Any, Fingerprint]] = []  # (alert, fingerprint) of what would have been delivered
    shown = 0
    for article, reasons in matches:
        alert = make_alert(sub, article, reasons)
        mark = fingerprint(alert.title, alert.summary)
        when = article.published or article.fetched_at
        duplicate = next(
            (
                a
                for a, other in reversed(kept)
                if sub.realert > timedelta(0)
                and when - (a.published or when) <= sub.realert
                and is_near_duplicate(mark, other)
            ),
            None,
        )
        if duplicate is None:
            fired += 1
            kept.append((alert, mark))
        else:
            suppressed += 1
        if args.limit and shown >= args.limit:
            continue
        shown += 1
        if args.json:
            record = {
                "article_id": article.id,
                "title": article.title,
                "url": article.url,
                "published": article.published.isoformat() if article.published else None,
                "would": "fire" if duplicate is None else "be suppressed",
                "duplicate_of": duplicate.article_id if duplicate else None,
                "reasons": reasons,
            }
            print(json.dumps(record, ensure_ascii=False))
        else:
            mark_text = "FIRE " if duplicate is None else "DUP  "
            print(f"{mark_text}{_short(article.title, 90)}")
            print(
                f"     {article.url or article.id}   {article.published:%Y-%m-%d}"
                if article.published
                else f"     {article.url or article.id}"
            )
            print(f"     why: {'; '.join(reasons)}")
            if duplicate is not None:
                print(
                    f"     near-duplicate of {_short(duplicate.title, 70)!r}: suppressed within realert "
                    f"{format_duration(sub.realert)}"
                )
    print(
        f"{fired} stored article(s) would fire {sub.id}"
        + (f"; {suppressed} more suppressed as near-duplicates" if suppressed else ""),
        file=sys.stderr,
    )
    return EXIT_OK


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def status_filter(show_all: bool, statuses: Sequence[str] | None) -> Sequence[str] | None:
    """`alerts list`: what the subscriber was told about by default; --all adds suppressed and cancelled."""
    if statuses:
        return statuses
    return None if show_all else ("delivered", "digested", "pending")
