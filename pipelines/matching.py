"""Subscription rules evaluated against enriched articles, with the reasons each one fired.

`evaluate` is the reference semantics. `SubscriptionMatcher` gives the same answers without evaluating
every subscription for every article: like Lucene's Monitor (Luwak), it indexes each subscription under
keys an article must carry for the rule to hold (a topic, a country, a region, an entity, a language, a word
of a phrase), looks up the keys of each article, and evaluates only those candidates.
"""

from __future__ import annotations

import gc
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from pipelines.vocabulary import Vocabulary, vocabulary
from schemas import (
    Alert,
    AllOf,
    AnyOf,
    Article,
    CountryCondition,
    EntityCondition,
    LanguageCondition,
    NotRule,
    RegionCondition,
    Rule,
    SourceCondition,
    Subscription,
    TextCondition,
    TopicCondition,
)

SUMMARY_CHARS = 400


@dataclass
class Match:
    matched: bool
    reasons: list[str] = field(default_factory=list)


_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Casefolded word tokens; a phrase can only match an article that has every one of its words."""
    return _WORD.findall(text.casefold())


@lru_cache(maxsize=8192)
def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    """The phrase on word boundaries, words joined by spaces or hyphens, over casefolded text. The first
    word comes first (its boundary checked by a look-behind after it) so that re can scan for the literal."""
    parts = [re.escape(w) for w in phrase.casefold().split()]
    return re.compile(parts[0] + rf"(?<!\w{parts[0]})" + "".join(r"[\s\-]+" + p for p in parts[1:]) + r"(?!\w)")


@lru_cache(maxsize=4096)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _region_key(name: str, vocab: Vocabulary) -> str:
    return vocab.regions.get(name.casefold(), name).casefold()


def article_regions(article: Article, vocab: Vocabulary | None = None) -> set[str]:
    """Casefolded regions an article is in: those enrichment named, and the UN M49 regions of its countries."""
    vocab = vocab or vocabulary()
    return {_region_key(r, vocab) for r in article.regions} | vocab.regions_of(article.countries)


def _language_tags(language: str | None) -> set[str]:
    if not language:
        return set()
    tag = language.strip().lower().replace("_", "-")
    parts = tag.split("-")
    return {"-".join(parts[: i + 1]) for i in range(len(parts))}


class _Scratch:
    """Per-article work shared by all the rules evaluated on it: casefolded text, searches, regions."""

    __slots__ = ("_folded", "_found", "_regions", "article", "vocab")

    def __init__(self, article: Article, vocab: Vocabulary | None = None) -> None:
        self.article = article
        self.vocab = vocab or vocabulary()
        self._folded: str | None = None
        self._found: dict[tuple[bool, str], str | None] = {}
        self._regions: set[str] | None = None

    def text(self, condition: TextCondition) -> str | None:
        """The matching text of a phrase or regex condition, or None."""
        key = (condition.regex, condition.text)
        if key not in self._found:
            if condition.regex:
                found = _regex(condition.text).search(self.article.full_text)
            else:
                if self._folded is None:
                    self._folded = self.article.full_text.casefold()
                found = _phrase_pattern(condition.text).search(self._folded)
            self._found[key] = found.group() if found else None
        return self._found[key]

    def regions(self) -> set[str]:
        if self._regions is None:
            self._regions = article_regions(self.article, self.vocab)
        return self._regions


def evaluate(rule: Rule, article: Article) -> Match:
    """Whether `rule` holds for `article`, and which conditions made it so."""
    return _evaluate(rule, article, _Scratch(article))


def _evaluate(rule: Rule, article: Article, scratch: _Scratch) -> Match:
    if isinstance(rule, AllOf):
        reasons: list[str] = []
        for child in rule.all:
            result = _evaluate(child, article, scratch)
            if not result.matched:
                return Match(False)
            reasons += result.reasons
        return Match(True, reasons)
    if isinstance(rule, AnyOf):
        hits = [r for r in (_evaluate(child, article, scratch) for child in rule.any) if r.matched]
        return Match(bool(hits), [reason for hit in hits for reason in hit.reasons])
    if isinstance(rule, NotRule):
        inner = _evaluate(rule.not_, article, scratch)
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
        wanted = _region_key(rule.region, scratch.vocab)
        if wanted not in scratch.regions():
            return Match(False)
        if any(_region_key(r, scratch.vocab) == wanted for r in article.regions):
            return Match(True, [f"region {rule.region}"])
        members = scratch.vocab.m49.get(wanted, frozenset())
        via = next((c for c in article.countries if c in members), "?")
        return Match(True, [f"region {rule.region} (country {via})"])
    if isinstance(rule, EntityCondition):
        wanted = rule.entity.casefold()
        for entity in article.entities:
            if rule.label and entity.label != rule.label:
                continue
            if wanted in (entity.text.casefold(), entity.canonical.casefold(), (entity.kb_id or "").casefold()):
                return Match(True, [f"entity {entity.canonical} ({entity.label})"])
        return Match(False)
    if isinstance(rule, TextCondition):
        found = scratch.text(rule)
        return Match(found is not None, [f'text "{_clip(found, 80)}"'] if found is not None else [])
    if isinstance(rule, SourceCondition):
        wanted = rule.source.casefold()
        ok = wanted in article.source.casefold() or wanted in article.source_name.casefold()
        return Match(ok, [f"source {rule.source}"] if ok else [])
    if isinstance(rule, LanguageCondition):
        ok = rule.language in _language_tags(article.language)
        return Match(ok, [f"language {article.language}"] if ok else [])
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
        return "/" + rule.text.replace("/", "\\/") + "/" if rule.regex else f'"{rule.text}"'
    if isinstance(rule, SourceCondition):
        return f'source:"{rule.source}"'
    if isinstance(rule, LanguageCondition):
        return f"language:{rule.language}"
    raise TypeError(type(rule).__name__)


def _group(rule: Rule) -> str:
    return f"({describe(rule)})" if isinstance(rule, AllOf | AnyOf) else describe(rule)


def _clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def has_positive_condition(rule: Rule) -> bool:
    """False for rules that hold by the absence of things only (`NOT x`): they would fire on nearly everything."""
    if isinstance(rule, NotRule):
        return False
    if isinstance(rule, AllOf):
        return any(has_positive_condition(r) for r in rule.all)
    if isinstance(rule, AnyOf):
        return all(has_positive_condition(r) for r in rule.any)
    return True


# --- The candidate index -------------------------------------------------------------------------
# A key is (kind, value). A group is a set of keys at least one of which an article must carry; a rule's
# requirement is a conjunction of groups (empty: nothing required, the rule is evaluated for every article).

Key = tuple[str, str]
Group = frozenset[Key]

# Guessed share of articles carrying a key of each kind, to index a rule under its most selective group.
_PRIOR = {"topic": 0.08, "country": 0.04, "region": 0.25, "entity": 0.01, "lang": 0.9}
_COMMON_WORDS = frozenset(
    "the a an of to in on and or for is was are were at by with from as that this it its be has have had not "
    "said says after over about more than into will would new".split()
)


def _prior(key: Key, frequencies: Mapping[Key, float] | None) -> float:
    if frequencies is not None and key in frequencies:
        return frequencies[key]
    kind, value = key
    if kind == "term":
        if value in _COMMON_WORDS:
            return 0.9
        return 0.3 if len(value) <= 3 else 0.1 if len(value) <= 5 else 0.03
    return _PRIOR.get(kind, 0.5)


def required_groups(rule: Rule, vocab: Vocabulary | None = None) -> list[Group]:
    """Groups of keys the article must carry for `rule` to hold (a necessary, not sufficient, condition)."""
    vocab = vocab or vocabulary()
    if isinstance(rule, TopicCondition):
        return [frozenset({("topic", rule.topic)})]
    if isinstance(rule, CountryCondition):
        return [frozenset({("country", rule.country)})]
    if isinstance(rule, RegionCondition):
        return [frozenset({("region", _region_key(rule.region, vocab))})]
    if isinstance(rule, EntityCondition):
        return [frozenset({("entity", rule.entity.casefold())})]
    if isinstance(rule, LanguageCondition):
        return [frozenset({("lang", rule.language)})]
    if isinstance(rule, TextCondition):
        return [] if rule.regex else [frozenset({("term", w)}) for w in dict.fromkeys(words(rule.text))]
    if isinstance(rule, AllOf):
        return [g for child in rule.all for g in required_groups(child, vocab)]
    if isinstance(rule, AnyOf):
        merged: set[Key] = set()
        for child in rule.any:
            groups = required_groups(child, vocab)
            if not groups:
                return []
            merged |= _best(groups, None)
        return [frozenset(merged)]
    return []  # source substrings, NOT, regexes: no key guarantees them


def _best(groups: Sequence[Group], frequencies: Mapping[Key, float] | None) -> Group:
    return min(groups, key=lambda g: (sum(_prior(k, frequencies) for k in g), len(g), sorted(g)))


def text_words(rule: Rule) -> set[str]:
    """Every word a (non-regex) text condition of `rule` can ask an article for, wherever it sits."""
    if isinstance(rule, AllOf):
        return {w for child in rule.all for w in text_words(child)}
    if isinstance(rule, AnyOf):
        return {w for child in rule.any for w in text_words(child)}
    if isinstance(rule, NotRule):
        return text_words(rule.not_)
    if isinstance(rule, TextCondition) and not rule.regex:
        return set(words(rule.text))
    return set()


def article_keys(
    article: Article,
    vocab: Vocabulary | None = None,
    folded: str | None = None,
    terms: frozenset[str] | None = None,
) -> dict[str, set[str]]:
    """The keys of one article, by kind (`folded`: its full text casefolded, when already at hand).
    With `terms`, the words are only those among them (none to look for: the text is not scanned)."""
    vocab = vocab or vocabulary()
    entity_keys: set[str] = set()
    for e in article.entities:
        entity_keys.add(e.text.casefold())
        entity_keys.add(e.canonical.casefold())
        if e.kb_id:
            entity_keys.add(e.kb_id.casefold())
    return {
        "topic": {t.id for t in article.topics},
        "country": set(article.countries),
        "region": article_regions(article, vocab),
        "entity": entity_keys,
        "lang": _language_tags(article.language),
        "term": _words_of(article, folded, terms),
    }


def _words_of(article: Article, folded: str | None, terms: frozenset[str] | None) -> set[str]:
    if terms is not None and not terms:
        return set()
    found = set(_WORD.findall(article.full_text.casefold() if folded is None else folded))
    return found if terms is None else found & terms


def key_frequencies(articles: Iterable[Article]) -> dict[Key, float]:
    """Share of `articles` carrying each key: a better guide than the priors when a sample is at hand."""
    counts: dict[Key, int] = defaultdict(int)
    total = 0
    for article in articles:
        total += 1
        for kind, values in article_keys(article).items():
            for value in values:
                counts[(kind, value)] += 1
    return {key: n / total for key, n in counts.items()} if total else {}


# --- Compiled rules: the same answers and reasons as `evaluate`, from an article's precomputed keys ---------


class _Context:
    """One article prepared for many rules: key sets, and reasons memoised across the rules that share them."""

    def __init__(
        self,
        article: Article,
        vocab: Vocabulary,
        terms: frozenset[str] = frozenset(),
        asked: frozenset[str] = frozenset(),
    ) -> None:
        self.article = article
        self.scratch = _Scratch(article, vocab)
        self.scratch._folded = folded = article.full_text.casefold()
        # The words: only those some text condition asks about (`asked`); none asked, no scan of the text.
        self.keys = article_keys(article, vocab, folded, asked)
        self.scratch._regions = self.keys["region"]
        # All keys as (kind, value) pairs; of the words, only those some subscription requires.
        self.flat = {(kind, value) for kind, values in self.keys.items() if kind != "term" for value in values}
        self.flat.update(("term", word) for word in self.keys["term"] & terms)
        self.vocab = vocab
        self.sources = (article.source.casefold(), article.source_name.casefold())
        self._topics = {t.id: t for t in reversed(article.topics)}  # the first tag wins, as in evaluate
        self._memo: dict[tuple[str, str, str], list[str] | None] = {}

    def topic(self, topic: str, minimum: float) -> list[str] | None:
        tag = self._topics.get(topic)
        if tag is None or tag.score < minimum:
            return None
        key = ("topic", topic, "")
        if key not in self._memo:
            evidence = f': "{_clip(tag.evidence[0])}"' if tag.evidence else ""
            self._memo[key] = [f"topic {tag.id} (score {tag.score:.2f}){evidence}"]
        return self._memo[key]

    def region(self, key: str, display: str) -> list[str] | None:
        if key not in self.keys["region"]:
            return None
        memo = ("region", key, display)
        if memo not in self._memo:
            self._memo[memo] = _evaluate(RegionCondition(region=display), self.article, self.scratch).reasons
        return self._memo[memo]

    def entity(self, wanted: str, label: str | None) -> list[str] | None:
        if wanted not in self.keys["entity"]:
            return None
        memo = ("entity", wanted, label or "")
        if memo not in self._memo:
            result = _evaluate(EntityCondition(entity=wanted, label=label), self.article, self.scratch)
            self._memo[memo] = result.reasons if result.matched else None
        return self._memo[memo]

    def text(self, condition: TextCondition) -> list[str] | None:
        found = self.scratch.text(condition)
        return None if found is None else [f'text "{_clip(found, 80)}"']


Explain = Callable[[_Context], list[str] | None]


def compile_rule(rule: Rule, vocab: Vocabulary) -> Explain:
    """A function giving what `evaluate(rule, article)` gives (reasons, or None for no match), but over a
    prepared article, so that the conditions many subscriptions share are worked out once per article."""
    if isinstance(rule, AllOf):
        parts = [compile_rule(r, vocab) for r in rule.all]
        if len(parts) == 2:  # the common case, without the loop
            first, second = parts

            def both(c: _Context) -> list[str] | None:
                a = first(c)
                if a is None:
                    return None
                b = second(c)
                return None if b is None else a + b

            return both

        def all_of(c: _Context) -> list[str] | None:
            reasons: list[str] = []
            for part in parts:
                found = part(c)
                if found is None:
                    return None
                reasons += found
            return reasons

        return all_of
    if isinstance(rule, AnyOf):
        options = [compile_rule(r, vocab) for r in rule.any]

        def any_of(c: _Context) -> list[str] | None:
            reasons: list[str] | None = None
            for option in options:
                found = option(c)
                if found is not None:
                    reasons = found if reasons is None else reasons + found
            return reasons

        return any_of
    if isinstance(rule, NotRule):
        inner = compile_rule(rule.not_, vocab)
        negated = [f"not ({describe(rule.not_)})"]
        return lambda c: negated if inner(c) is None else None
    if isinstance(rule, TopicCondition):
        topic, minimum = rule.topic, rule.min_score
        return lambda c: c.topic(topic, minimum)
    if isinstance(rule, CountryCondition):
        country, said = rule.country, [f"country {rule.country}"]
        return lambda c: said if country in c.keys["country"] else None
    if isinstance(rule, RegionCondition):
        region, display = _region_key(rule.region, vocab), rule.region
        return lambda c: c.region(region, display)
    if isinstance(rule, EntityCondition):
        wanted, label = rule.entity.casefold(), rule.label
        return lambda c: c.entity(wanted, label)
    if isinstance(rule, TextCondition):
        condition = rule
        if rule.regex:
            return lambda c: c.text(condition)
        needed = frozenset(words(rule.text))
        return lambda c: c.text(condition) if needed <= c.keys["term"] else None
    if isinstance(rule, SourceCondition):
        source, said = rule.source.casefold(), [f"source {rule.source}"]
        return lambda c: said if source in c.sources[0] or source in c.sources[1] else None
    if isinstance(rule, LanguageCondition):
        language = rule.language
        return lambda c: [f"language {c.article.language}"] if language in c.keys["lang"] else None
    raise TypeError(f"unknown rule type {type(rule).__name__}")


_Posting = tuple[frozenset[Key], tuple[Group, ...], bool, "_Entry"]  # the entry's checks, unpacked for speed


@dataclass(frozen=True)
class _Entry:
    order: int
    subscription: Subscription
    required: frozenset[Key]  # keys the article must all carry (the single-key groups not indexed)
    checks: tuple[Group, ...]  # groups of several keys, one of which the article must carry
    explain: Explain
    posted_once: bool  # indexed under a single key, so an article cannot reach it twice


def _entry(order: int, subscription: Subscription, chosen: Group, groups: Sequence[Group], explain: Explain) -> _Entry:
    required = frozenset(key for g in groups if len(g) == 1 for key in g)
    checks = tuple(g for g in groups if len(g) > 1)
    return _Entry(order, subscription, required, checks, explain, len(chosen) <= 1)


class SubscriptionMatcher:
    """Evaluates only the subscriptions an article could satisfy, found through an index of required keys.

    `frequencies` (from `key_frequencies` over a sample of recent articles) lets each subscription be indexed
    under its rarest required key; without it, guessed priors are used."""

    def __init__(self, subscriptions: Iterable[Subscription], frequencies: Mapping[Key, float] | None = None) -> None:
        self.vocab = vocabulary()
        self.subscriptions = [s for s in subscriptions if s.enabled]
        index: dict[str, dict[str, list[_Posting]]] = defaultdict(lambda: defaultdict(list))
        self._unindexed: list[_Entry] = []
        self._terms: set[str] = set()
        collecting = gc.isenabled()
        gc.disable()  # building thousands of closures would otherwise trigger full collections over and over
        try:
            for order, sub in enumerate(self.subscriptions):
                groups = list(dict.fromkeys(required_groups(sub.rule, self.vocab)))
                explain = compile_rule(sub.rule, self.vocab)
                if not groups:
                    self._unindexed.append(_entry(order, sub, frozenset(), (), explain))
                    continue
                chosen = _best(groups, frequencies)
                entry = _entry(order, sub, chosen, [g for g in groups if g != chosen], explain)
                for kind, value in chosen:
                    index[kind][value].append((entry.required, entry.checks, entry.posted_once, entry))
                self._terms.update(value for g in groups for kind, value in g if kind == "term")
            self._index = {kind: dict(values) for kind, values in index.items()}
        finally:
            if collecting:
                gc.enable()
        self._required_terms = frozenset(self._terms)
        self._asked_words = frozenset(w for sub in self.subscriptions for w in text_words(sub.rule))

    @property
    def stats(self) -> dict[str, int]:
        return {
            "subscriptions": len(self.subscriptions),
            "unindexed": len(self._unindexed),
            "keys": sum(len(v) for v in self._index.values()),
        }

    def _candidates(self, context: _Context) -> list[_Entry]:
        """Entries whose every required key and group the article carries (in no particular order)."""
        keys, flat = context.keys, context.flat
        found = list(self._unindexed)
        seen: set[int] = set()
        for kind, postings in self._index.items():
            values = keys.get(kind)
            if not values:
                continue
            if len(postings) < len(values):
                hits = [postings[v] for v in postings if v in values]
            else:
                hits = [postings[v] for v in values if v in postings]
            for postings_of_value in hits:
                for required, checks, once, entry in postings_of_value:
                    if not required <= flat:
                        continue
                    if checks and not all(not group.isdisjoint(flat) for group in checks):
                        continue
                    if not once:
                        if entry.order in seen:
                            continue
                        seen.add(entry.order)
                    found.append(entry)
        return found

    def _context(self, article: Article) -> _Context:
        return _Context(article, self.vocab, self._required_terms, self._asked_words)

    def candidates(self, article: Article) -> list[Subscription]:
        """Subscriptions whose every required group the article satisfies, in subscription order."""
        return [e.subscription for e in sorted(self._candidates(self._context(article)), key=lambda e: e.order)]

    def match_with_reasons(self, article: Article) -> list[tuple[Subscription, Match]]:
        """The matching subscriptions, in subscription order, with the reasons `evaluate` would give."""
        context = self._context(article)
        hits = [
            (entry, reasons) for entry in self._candidates(context) if (reasons := entry.explain(context)) is not None
        ]
        hits.sort(key=lambda hit: hit[0].order)
        return [(entry.subscription, Match(True, list(reasons))) for entry, reasons in hits]

    def match(self, article: Article) -> list[Alert]:
        return [make_alert(sub, article, result.reasons) for sub, result in self.match_with_reasons(article)]


def match_naive(subscriptions: Sequence[Subscription], article: Article) -> list[tuple[Subscription, Match]]:
    """Every subscription evaluated: the baseline the index must agree with."""
    results = []
    for sub in subscriptions:
        if sub.enabled:
            result = evaluate(sub.rule, article)
            if result.matched:
                results.append((sub, result))
    return results


def summary_of(article: Article, limit: int = SUMMARY_CHARS) -> str:
    text = " ".join((article.text or article.summary).split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut + " …"


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
        summary=summary_of(article),
    )


# --- Query syntax ------------------------------------------------------------------------------
#   topic:troop_withdrawal AND (country:IQ OR country:SY) AND NOT "cash withdrawal"
#   topic:airstrike>=0.7 region:"Western Asia" entity:"Hezbollah" source:reuters language:en /drone(s)? strikes?/
#   (juxtaposition = AND)

_TOKEN = re.compile(r'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|/((?:[^/\\\n]|\\.)+)/(?=[\s()]|$)|([^\s()"]+(?:"[^"]*")?))')
_FIELDS = ("topic", "country", "region", "entity", "source", "language", "lang", "text")


class QueryError(ValueError):
    """A query that does not parse; the message points at the offending position."""


def parse_query(query: str, vocab: Vocabulary | None = None) -> Rule:
    """Parse the boolean query syntax; with `vocab`, names are checked and canonicalised as they are read."""
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
            tokens.append(("phrase", m.group(3).replace('\\"', '"'), start))
        elif m.group(4) is not None:
            tokens.append(("regex", m.group(4).replace("\\/", "/"), start))
        else:
            word = m.group(5)
            tokens.append(("op", word, start) if word in ("AND", "OR", "NOT") else ("term", word, start))
        pos = m.end()
    if not tokens:
        raise QueryError("the query is empty")
    parser = _Parser(tokens, query, vocab)
    rule = parser.parse_or()
    if parser.i < len(tokens):
        raise QueryError(f"unexpected {tokens[parser.i][1]!r} at column {tokens[parser.i][2] + 1}")
    return rule


class _Parser:
    def __init__(self, tokens: list[tuple[str, str, int]], query: str, vocab: Vocabulary | None) -> None:
        self.tokens, self.i, self.query, self.vocab = tokens, 0, query, vocab

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
        try:
            if kind == "phrase":
                if not value.strip():
                    raise ValueError("an empty phrase")
                return TextCondition(text=value)
            if kind == "regex":
                return TextCondition(text=value, regex=True)
        except ValueError as exc:
            raise QueryError(f"{_message(exc)} at column {column + 1}") from None
        if kind != "term":
            raise QueryError(f"expected a condition at column {column + 1}, found {value!r}")
        return _condition(value, column, self.vocab)


def _message(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return str(first["msg"]).removeprefix("Value error, ")
    return str(exc)


def _condition(term: str, column: int, vocab: Vocabulary | None) -> Rule:
    field_name, sep, value = term.partition(":")
    if not sep:
        return TextCondition(text=term)
    value = value.strip('"')
    if field_name not in _FIELDS:
        raise QueryError(
            f"unknown field {field_name!r} at column {column + 1}; use topic:, country:, region:, entity:, "
            'source:, language: or text: (or quote the words: "...")'
        )
    if not value:
        raise QueryError(f"{field_name}: at column {column + 1} has no value")
    try:
        if field_name == "topic":
            topic, op, minimum = value.partition(">=")
            if not op and any(c in topic for c in "<>="):
                raise ValueError(f"{value!r}: a minimum score is written topic:ID>=0.7")
            score = 0.0
            if op:
                try:
                    score = float(minimum)
                except ValueError:
                    raise ValueError(f"minimum score {minimum!r} is not a number between 0 and 1") from None
                if not 0 <= score <= 1:
                    raise ValueError(f"minimum score {score:g} is not between 0 and 1")
            return TopicCondition(topic=vocab.topic(topic) if vocab else topic, min_score=score)
        if field_name == "country":
            return CountryCondition(country=vocab.country(value) if vocab else value.upper())
        if field_name == "region":
            return RegionCondition(region=vocab.region(value) if vocab else value)
        if field_name == "entity":
            return EntityCondition(entity=vocab.entity(value) if vocab else value)
        if field_name == "source":
            return SourceCondition(source=value)
        if field_name in ("language", "lang"):
            return LanguageCondition(language=value)
        return TextCondition(text=value)
    except ValueError as exc:
        raise QueryError(f"{term!r} at column {column + 1}: {_message(exc)}") from None
