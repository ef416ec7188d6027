"""Subscription rules evaluated against enriched articles, with the reasons each one fired."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from schemas import (
    Alert,
    AllOf,
    AnyOf,
    Article,
    CountryCondition,
    EntityCondition,
    NotRule,
    RegionCondition,
    Rule,
    SourceCondition,
    Subscription,
    TextCondition,
    TopicCondition,
)


@dataclass
class Match:
    matched: bool
    reasons: list[str] = field(default_factory=list)


@lru_cache(maxsize=4096)
def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in phrase.split()]
    return re.compile(r"(?<!\w)" + r"[\s\-]+".join(words) + r"(?!\w)", re.IGNORECASE)


def evaluate(rule: Rule, article: Article) -> Match:
    """Whether `rule` holds for `article`, and which conditions made it so."""
    if isinstance(rule, AllOf):
        reasons: list[str] = []
        for child in rule.all:
            result = evaluate(child, article)
            if not result.matched:
                return Match(False)
            reasons += result.reasons
        return Match(True, reasons)
    if isinstance(rule, AnyOf):
        hits = [r for r in (evaluate(child, article) for child in rule.any) if r.matched]
        return Match(bool(hits), [reason for hit in hits for reason in hit.reasons])
    if isinstance(rule, NotRule):
        inner = evaluate(rule.not_, article)
        return Match(not inner.matched, [] if inner.matched else [f"not ({describe(rule.not_)})"])
    if isinstance(rule, TopicCondition):
        tag = article.topic(rule.topic)
        if tag is None or tag.score < rule.min_score:
            return Match(False)
        evidence = f': "{_clip(tag.evidence[0])}"' if tag.evidence else ""
        return Match(True, [f"topic {tag.id} (score {tag.score:.2f}){evidence}"])
    if isinstance(rule, CountryCondition):
        ok = rule.country in article.countries
        return Match(ok, [f"country {rule.country}"] if ok else [])
    if isinstance(rule, RegionCondition):
        wanted = rule.region.casefold()
        ok = any(r.casefold() == wanted for r in article.regions)
        return Match(ok, [f"region {rule.region}"] if ok else [])
    if isinstance(rule, EntityCondition):
        wanted = rule.entity.casefold()
        for entity in article.entities:
            if rule.label and entity.label != rule.label:
                continue
            if wanted in (entity.text.casefold(), entity.canonical.casefold(), (entity.kb_id or "").casefold()):
                return Match(True, [f"entity {entity.canonical} ({entity.label})"])
        return Match(False)
    if isinstance(rule, TextCondition):
        found = _phrase_pattern(rule.text).search(article.full_text)
        return Match(bool(found), [f'text "{found.group()}"'] if found else [])
    if isinstance(rule, SourceCondition):
        wanted = rule.source.casefold()
        ok = wanted in article.source.casefold() or wanted in article.source_name.casefold()
        return Match(ok, [f"source {rule.source}"] if ok else [])
    raise TypeError(f"unknown rule type {type(rule).__name__}")


def describe(rule: Rule) -> str:
    """The rule in the query syntax of `newswatch subscriptions add --query`."""
    if isinstance(rule, AllOf):
        return " AND ".join(_group(r) for r in rule.all)
    if isinstance(rule, AnyOf):
        return " OR ".join(_group(r) for r in rule.any)
    if isinstance(rule, NotRule):
        return f"NOT {_group(rule.not_)}"
    if isinstance(rule, TopicCondition):
        return f"topic:{rule.topic}" + (f">={rule.min_score:g}" if rule.min_score else "")
    if isinstance(rule, CountryCondition):
        return f"country:{rule.country}"
    if isinstance(rule, RegionCondition):
        return f'region:"{rule.region}"'
    if isinstance(rule, EntityCondition):
        return f'entity:"{rule.entity}"'
    if isinstance(rule, TextCondition):
        return f'"{rule.text}"'
    if isinstance(rule, SourceCondition):
        return f'source:"{rule.source}"'
    raise TypeError(type(rule).__name__)


def _group(rule: Rule) -> str:
    return f"({describe(rule)})" if isinstance(rule, AllOf | AnyOf) else describe(rule)


def _clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _required_keys(rule: Rule) -> frozenset[str] | None:
    """Keys one of which an article must carry for the rule to hold (None: no such guarantee).
    This is the candidate index of Lucene's Monitor in miniature: most rules name a topic or country."""
    if isinstance(rule, TopicCondition):
        return frozenset({f"topic:{rule.topic}"})
    if isinstance(rule, CountryCondition):
        return frozenset({f"country:{rule.country}"})
    if isinstance(rule, AllOf):
        options = [k for k in (_required_keys(r) for r in rule.all) if k is not None]
        return min(options, key=len) if options else None
    if isinstance(rule, AnyOf):
        keys = [_required_keys(r) for r in rule.any]
        if any(k is None for k in keys):
            return None
        return frozenset().union(*keys)  # type: ignore[arg-type]
    return None


def article_keys(article: Article) -> set[str]:
    return {f"topic:{t.id}" for t in article.topics} | {f"country:{c}" for c in article.countries}


class SubscriptionMatcher:
    """Evaluates only the subscriptions an article could satisfy, found through an index of required keys."""

    def __init__(self, subscriptions: Iterable[Subscription]) -> None:
        self.subscriptions = [s for s in subscriptions if s.enabled]
        self._by_key: dict[str, list[Subscription]] = defaultdict(list)
        self._unindexed: list[Subscription] = []
        for sub in self.subscriptions:
            keys = _required_keys(sub.rule)
            if keys is None:
                self._unindexed.append(sub)
            else:
                for key in keys:
                    self._by_key[key].append(sub)

    def candidates(self, article: Article) -> list[Subscription]:
        seen: dict[str, Subscription] = {s.id: s for s in self._unindexed}
        for key in article_keys(article):
            for sub in self._by_key.get(key, ()):
                seen.setdefault(sub.id, sub)
        return list(seen.values())

    def match(self, article: Article) -> list[Alert]:
        alerts = []
        for sub in self.candidates(article):
            result = evaluate(sub.rule, article)
            if result.matched:
                alerts.append(make_alert(sub, article, result.reasons))
        return alerts


def make_alert(subscription: Subscription, article: Article, reasons: Sequence[str]) -> Alert:
    people_and_groups = list(dict.fromkeys(e.canonical for e in article.entities if e.label in ("PERSON", "ORG")))
    return Alert(
        subscription_id=subscription.id,
        subscription_name=subscription.name,
        article_id=article.id,
        title=article.title,
        url=article.url,
        published=article.published,
        source=article.source_name or article.source,
        reasons=list(reasons),
        topics=article.topics,
        countries=article.countries,
        entities=people_and_groups[:20],
    )


# --- Query syntax ------------------------------------------------------------------------------
#   topic:troop_withdrawal AND (country:IQ OR country:SY) AND NOT "cash withdrawal"
#   topic:airstrike>=0.7 region:"Western Asia" entity:"Hezbollah" source:reuters  (juxtaposition = AND)

_TOKEN = re.compile(r'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|([^\s()"]+(?:"[^"]*")?))')


class QueryError(ValueError):
    """A query that does not parse; the message points at the offending position."""


def parse_query(query: str) -> Rule:
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    query = query.strip()
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if not m or m.end() == pos:
            raise QueryError(f"cannot read the query at column {pos + 1}: {query[pos : pos + 20]!r}")
        start = m.start() + (len(m.group()) - len(m.group().lstrip()))
        if m.group(1):
            tokens.append(("(", "(", start))
        elif m.group(2):
            tokens.append((")", ")", start))
        elif m.group(3) is not None:
            tokens.append(("phrase", m.group(3), start))
        else:
            word = m.group(4)
            tokens.append(("op", word, start) if word in ("AND", "OR", "NOT") else ("term", word, start))
        pos = m.end()
    if not tokens:
        raise QueryError("the query is empty")
    parser = _Parser(tokens, query)
    rule = parser.parse_or()
    if parser.i < len(tokens):
        raise QueryError(f"unexpected {tokens[parser.i][1]!r} at column {tokens[parser.i][2] + 1}")
    return rule


class _Parser:
    def __init__(self, tokens: list[tuple[str, str, int]], query: str) -> None:
        self.tokens, self.i, self.query = tokens, 0, query

    def _peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def parse_or(self) -> Rule:
        parts = [self.parse_and()]
        while (t := self._peek()) and t[:2] == ("op", "OR"):
            self.i += 1
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else AnyOf(any=parts)

    def parse_and(self) -> Rule:
        parts = [self.parse_not()]
        while (t := self._peek()) and t[0] != ")" and t[:2] != ("op", "OR"):
            if t[:2] == ("op", "AND"):
                self.i += 1
            parts.append(self.parse_not())
        return parts[0] if len(parts) == 1 else AllOf(all=parts)

    def parse_not(self) -> Rule:
        t = self._peek()
        if t and t[:2] == ("op", "NOT"):
            self.i += 1
            return NotRule.model_validate({"not": self.parse_not()})
        return self.parse_atom()

    def parse_atom(self) -> Rule:
        t = self._peek()
        if t is None:
            raise QueryError("the query ends where a condition was expected")
        kind, value, column = t
        self.i += 1
        if kind == "(":
            rule = self.parse_or()
            if not (end := self._peek()) or end[0] != ")":
                raise QueryError(f"the parenthesis at column {column + 1} is never closed")
            self.i += 1
            return rule
        if kind == "phrase":
            return TextCondition(text=value)
        if kind != "term":
            raise QueryError(f"expected a condition at column {column + 1}, found {value!r}")
        return _condition(value, column)


def _condition(term: str, column: int) -> Rule:
    field_name, sep, value = term.partition(":")
    if not sep:
        return TextCondition(text=term)
    value = value.strip('"')
    if not value:
        raise QueryError(f"{field_name}: at column {column + 1} has no value")
    try:
        if field_name == "topic":
            topic, _, minimum = value.partition(">=")
            return TopicCondition(topic=topic, min_score=float(minimum) if minimum else 0.0)
        if field_name == "country":
            return CountryCondition(country=value.upper())
        if field_name == "region":
            return RegionCondition(region=value)
        if field_name == "entity":
            return EntityCondition(entity=value)
        if field_name == "source":
            return SourceCondition(source=value)
        if field_name == "text":
            return TextCondition(text=value)
    except ValueError as exc:
        raise QueryError(f"{term!r} at column {column + 1}: {exc}") from None
    raise QueryError(
        f"unknown field {field_name!r} at column {column + 1}; use topic:, country:, region:, entity:, source: or text:"
    )
