"""Subscriptions from YAML/JSON files and from CLI options, checked before they are stored.

A rule that names an unknown topic, a wrong country code or a region articles never carry would silently
never fire; a webhook to a private address would be a server-side request forgery. Both are refused here, at
creation, with a message naming the place of the problem (`rule.all[1].country`, `--query ... column 14`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr, ValidationError

from connectors.webhook import Resolver, UnsafeWebhook, check_webhook_url, default_resolver
from pipelines.matching import QueryError, has_positive_condition, parse_query
from pipelines.vocabulary import Vocabulary, vocabulary
from schemas import (
    AllOf,
    AnyOf,
    CountryCondition,
    EmailTarget,
    EntityCondition,
    KafkaTarget,
    LanguageCondition,
    NotRule,
    RegionCondition,
    Rule,
    SourceCondition,
    Subscription,
    Target,
    TopicCondition,
    WebhookTarget,
)


class SubscriptionError(ValueError):
    """A subscription that cannot be accepted; the message says where the problem is."""


def describe_validation(exc: ValidationError, where: str) -> str:
    problems = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error["loc"] if not str(p).startswith("function-"))
        loc = re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", loc)
        # Discriminated unions repeat the kind in the path: rule.all[0].topic.topic -> rule.all[0].topic
        loc = re.sub(r"\.(all|any|not|topic|country|region|entity|text|source|language)\.\1\b", r".\1", loc)
        loc = re.sub(r"\.(webhook|kafka|email)(?=\.|$)", "", loc)
        problems.append(f"{where}{'.' + loc if loc else ''}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)


# --- checks against the vocabulary, with a path to the problem ---


def check_rule(rule: Rule, vocab: Vocabulary, path: str = "rule") -> Rule:
    """The rule with names canonicalised (country codes upper case, region aliases resolved); raises
    SubscriptionError naming the path of the first condition that can never match."""

    def fail(where: str, exc: ValueError) -> SubscriptionError:
        return SubscriptionError(f"{where}: {exc}")

    if isinstance(rule, AllOf):
        return AllOf(all=[check_rule(r, vocab, f"{path}.all[{i}]") for i, r in enumerate(rule.all)])
    if isinstance(rule, AnyOf):
        return AnyOf(any=[check_rule(r, vocab, f"{path}.any[{i}]") for i, r in enumerate(rule.any)])
    if isinstance(rule, NotRule):
        return NotRule.model_validate({"not": check_rule(rule.not_, vocab, f"{path}.not")})
    try:
        if isinstance(rule, TopicCondition):
            return rule.model_copy(update={"topic": vocab.topic(rule.topic)})
        if isinstance(rule, CountryCondition):
            return rule.model_copy(update={"country": vocab.country(rule.country)})
        if isinstance(rule, RegionCondition):
            return rule.model_copy(update={"region": vocab.region(rule.region)})
        if isinstance(rule, EntityCondition):
            return rule.model_copy(update={"entity": vocab.entity(rule.entity)})
    except ValueError as exc:
        raise fail(f"{path}.{rule.kind}", exc) from None
    return rule


def check_subscription(
    subscription: Subscription,
    *,
    vocab: Vocabulary | None = None,
    allow_private_webhooks: bool = False,
    resolver: Resolver = default_resolver,
    where: str = "subscription",
) -> Subscription:
    """Everything a subscription must satisfy before it is stored; returns it with canonical names."""
    vocab = vocab or vocabulary()
    rule = check_rule(subscription.rule, vocab, f"{where}.rule")
    if not has_positive_condition(rule):
        raise SubscriptionError(
            f"{where}.rule: a rule made only of NOT conditions would fire on nearly every article; "
            "add a topic, country, region, entity or text condition"
        )
    for index, target in enumerate(subscription.targets):
        if isinstance(target, WebhookTarget):
            try:
                check_webhook_url(target.url, allow_private=allow_private_webhooks, resolver=resolver)
            except UnsafeWebhook as exc:
                raise SubscriptionError(f"{where}.targets[{index}].url: {exc}") from None
    return subscription.model_copy(update={"rule": rule})


def load_subscriptions_file(path: Path, check: bool = True) -> list[Subscription]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SubscriptionError(f"{path}: {exc}") from exc
    items = data.get("subscriptions", []) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise SubscriptionError(f"{path}: expected a list under 'subscriptions'")
    subscriptions = []
    for index, item in enumerate(items):
        where = f"{path}: subscriptions[{index}]"
        try:
            subscription = Subscription.model_validate(item)
        except ValidationError as exc:
            raise SubscriptionError(describe_validation(exc, where)) from None
        # Webhook addresses are checked when delivering: files are read at start-up, maybe without DNS.
        subscriptions.append(
            check_subscription(subscription, where=where, allow_private_webhooks=True) if check else subscription
        )
    return subscriptions


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:64] or "subscription"


def _one_of(conditions: list[Rule]) -> Rule:
    return conditions[0] if len(conditions) == 1 else AnyOf(any=conditions)


def _conditions(option: str, values: Sequence[str], make: Callable[[str], Rule]) -> Rule:
    rules = []
    for value in values:
        try:
            rules.append(make(value))
        except ValidationError as exc:
            raise SubscriptionError(f"{option} {value!r}: {describe_validation(exc, '').lstrip(': ')}") from None
        except ValueError as exc:
            raise SubscriptionError(f"{option} {value!r}: {exc}") from None
    return _one_of(rules)


def subscription_from_options(
    name: str,
    *,
    topics: Sequence[str] = (),
    countries: Sequence[str] = (),
    regions: Sequence[str] = (),
    entities: Sequence[str] = (),
    sources: Sequence[str] = (),
    languages: Sequence[str] = (),
    query: str | None = None,
    subscription_id: str | None = None,
    channels: Sequence[str] = ("console",),
    min_score: float = 0.0,
    webhook: str | None = None,
    secret: str | None = None,
    kafka_topic: str | None = None,
    emails: Sequence[str] = (),
    realert: str | None = None,
    digest: str | None = None,
    active_hours: str | None = None,
    timezone: str | None = None,
    description: str = "",
    enabled: bool = True,
    allow_private_webhooks: bool = False,
    resolver: Resolver = default_resolver,
    vocab: Vocabulary | None = None,
) -> Subscription:
    """--topic/--country/--region/--entity/--source/--language: any of each kind; kinds and --query
    combine with AND. Names are checked against the taxonomy and gazetteer."""
    vocab = vocab or vocabulary()
    if not 0 <= min_score <= 1:
        raise SubscriptionError(f"--min-score {min_score:g}: must be between 0 and 1")
    parts: list[Rule] = []
    if topics:
        parts.append(
            _conditions("--topic", topics, lambda t: TopicCondition(topic=vocab.topic(t), min_score=min_score))
        )
    if countries:
        parts.append(_conditions("--country", countries, lambda c: CountryCondition(country=vocab.country(c))))
    if regions:
        parts.append(_conditions("--region", regions, lambda r: RegionCondition(region=vocab.region(r))))
    if entities:
        parts.append(_conditions("--entity", entities, lambda e: EntityCondition(entity=vocab.entity(e))))
    if sources:
        parts.append(_conditions("--source", sources, lambda s: SourceCondition(source=s)))
    if languages:
        parts.append(_conditions("--language", languages, lambda lang: LanguageCondition(language=lang)))
    if query:
        try:
            parts.append(parse_query(query, vocab))
        except QueryError as exc:
            raise SubscriptionError(f"--query: {exc}") from None
    if not parts:
        raise SubscriptionError(
            "a subscription needs at least one condition: --topic, --country, --region, --entity, --source, "
            "--language or --query"
        )
    if secret and not webhook:
        raise SubscriptionError("--secret signs webhook requests: give --webhook URL too")
    targets: list[Target] = []
    try:
        if webhook:
            targets.append(WebhookTarget(url=webhook, secret=SecretStr(secret) if secret else None))
        if kafka_topic:
            targets.append(KafkaTarget(topic=kafka_topic))
        if emails:
            targets.append(EmailTarget(to=list(emails)))
    except ValidationError as exc:
        option = {"url": "--webhook", "topic": "--kafka-topic", "to": "--email"}
        error = exc.errors()[0]
        loc = str(error["loc"][0]) if error["loc"] else ""
        raise SubscriptionError(f"{option.get(loc, loc)}: {error['msg'].removeprefix('Value error, ')}") from None
    rule = parts[0] if len(parts) == 1 else AllOf(all=parts)
    fields: dict[str, Any] = {
        "id": subscription_id or slugify(name),
        "name": name,
        "description": description,
        "rule": rule,
        "channels": list(channels),
        "targets": targets,
        "enabled": enabled,
    }
    optional = {"realert": realert, "digest": digest, "active_hours": active_hours, "timezone": timezone}
    fields.update({k: v for k, v in optional.items() if v is not None})
    try:
        subscription = Subscription.model_validate(fields)
    except ValidationError as exc:
        flags = {"realert": "--realert", "digest": "--digest", "active_hours": "--hours", "timezone": "--timezone"}
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else ""
            problems.append(f"{flags.get(name, name)}: {error['msg'].removeprefix('Value error, ')}")
        raise SubscriptionError("; ".join(problems)) from None
    if subscription.digest is not None and subscription.digest < timedelta(seconds=1):
        raise SubscriptionError("--digest: use an interval of at least one second")
    if not has_positive_condition(rule):
        raise SubscriptionError(
            "--query: a rule made only of NOT conditions would fire on nearly every article; "
            "add a topic, country, region, entity or text condition"
        )
    if webhook:
        try:
            check_webhook_url(webhook, allow_private=allow_private_webhooks, resolver=resolver)
        except UnsafeWebhook as exc:
            raise SubscriptionError(f"--webhook: {exc}") from None
    return subscription
