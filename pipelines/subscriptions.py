"""Subscriptions from YAML/JSON files and from CLI options."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import ValidationError

from pipelines.matching import QueryError, parse_query
from schemas import AllOf, AnyOf, CountryCondition, EntityCondition, Rule, Subscription, TopicCondition


class SubscriptionError(ValueError):
    """A subscription that cannot be accepted; the message says where the problem is."""


def describe_validation(exc: ValidationError, where: str) -> str:
    problems = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error["loc"] if not str(p).startswith("function-"))
        problems.append(f"{where}{'.' + loc if loc else ''}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)


def load_subscriptions_file(path: Path) -> list[Subscription]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SubscriptionError(f"{path}: {exc}") from exc
    items = data.get("subscriptions", []) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise SubscriptionError(f"{path}: expected a list under 'subscriptions'")
    subscriptions = []
    for index, item in enumerate(items):
        try:
            subscriptions.append(Subscription.model_validate(item))
        except ValidationError as exc:
            raise SubscriptionError(describe_validation(exc, f"{path}: subscriptions[{index}]")) from None
    return subscriptions


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:64] or "subscription"


def _one_of(conditions: list[Rule]) -> Rule:
    return conditions[0] if len(conditions) == 1 else AnyOf(any=conditions)


def subscription_from_options(
    name: str,
    *,
    topics: Sequence[str] = (),
    countries: Sequence[str] = (),
    entities: Sequence[str] = (),
    query: str | None = None,
    subscription_id: str | None = None,
    channels: Sequence[str] = ("console",),
    min_score: float = 0.0,
) -> Subscription:
    """--topic/--country/--entity: any of each kind; kinds and --query combine with AND."""
    parts: list[Rule] = []
    try:
        if topics:
            parts.append(_one_of([TopicCondition(topic=t, min_score=min_score) for t in topics]))
        if countries:
            parts.append(_one_of([CountryCondition(country=c.upper()) for c in countries]))
        if entities:
            parts.append(_one_of([EntityCondition(entity=e) for e in entities]))
        if query:
            parts.append(parse_query(query))
    except QueryError as exc:
        raise SubscriptionError(f"--query: {exc}") from None
    except ValidationError as exc:
        raise SubscriptionError(describe_validation(exc, "condition")) from None
    if not parts:
        raise SubscriptionError("a subscription needs at least one condition: --topic, --country, --entity or --query")
    rule = parts[0] if len(parts) == 1 else AllOf(all=parts)
    try:
        return Subscription(id=subscription_id or slugify(name), name=name, rule=rule, channels=list(channels))
    except ValidationError as exc:
        raise SubscriptionError(describe_validation(exc, "subscription")) from None
