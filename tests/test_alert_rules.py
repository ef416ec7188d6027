"""The rule language: parsing, checking at creation with pointed messages, semantics, and the index."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest

from connectors.sqlite_store import SqliteStore
from pipelines.matching import (
    SubscriptionMatcher,
    describe,
    evaluate,
    match_naive,
    parse_query,
    required_groups,
)
from pipelines.subscriptions import SubscriptionError, load_subscriptions_file, subscription_from_options
from pipelines.vocabulary import vocabulary
from schemas import (
    AllOf,
    Article,
    Entity,
    LanguageCondition,
    NotRule,
    Subscription,
    TextCondition,
    TopicCondition,
    TopicTag,
)


def article(**fields: object) -> Article:
    base: dict[str, object] = {"title": "Troops leave", "text": "Soldiers pulled out of the base on Monday."}
    base.update(fields)
    return Article.model_validate(base)


# --- the query syntax ---


def test_query_fields_and_operators_parse_into_a_rule_tree() -> None:
    rule = parse_query(
        'topic:troop_withdrawal>=0.7 AND (country:iq OR region:"Western Asia") '
        'NOT "cash withdrawal" language:en-GB /drone(s)? strikes?/ entity:Q22686',
        vocabulary(),
    )
    assert isinstance(rule, AllOf)
    kinds = [child.kind for child in rule.all]
    assert kinds == ["topic", "any", "not", "language", "text", "entity"]
    topic = rule.all[0]
    assert isinstance(topic, TopicCondition) and topic.min_score == 0.7
    assert rule.all[1].any[0].country == "IQ"  # type: ignore[union-attr]
    assert isinstance(rule.all[2], NotRule)
    assert isinstance(rule.all[3], LanguageCondition) and rule.all[3].language == "en-gb"
    regex = rule.all[4]
    assert isinstance(regex, TextCondition) and regex.regex and regex.text == "drone(s)? strikes?"
    assert rule.all[5].entity == "trump-donald"  # type: ignore[union-attr]  # Wikidata id -> actor id
    # describe() writes the same query back: parsing it again gives the same tree.
    assert parse_query(describe(rule)) == rule


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("topic:troop_withdrawl", "unknown topic 'troop_withdrawl'; did you mean 'troop_withdrawal'?"),
        ("topic:airstrike AND country:XX", "'country:XX' at column 21: 'XX' is not an ISO 3166-1 alpha-2"),
        ("country:IRQ", "the alpha-2 code of Iraq is IQ"),
        ('region:"Westren Asia"', "unknown region 'Westren Asia'; did you mean 'Western Asia'?"),
        ("topic:airstrike AND /troops? (with/", "invalid regular expression 'troops? (with' at position 9"),
        ("topic:airstrike>=1.5", "minimum score 1.5 is not between 0 and 1"),
        ("topic:airstrike>=high", "minimum score 'high' is not a number"),
        ("topic:airstrike (country:IQ", "the parenthesis at column 17 is never closed"),
        ("colour:red", "unknown field 'colour' at column 1"),
        ("topic:airstrike AND", "the query ends where a condition was expected"),
        ("entity:Q999999999", "Wikidata id 'Q999999999' is not a known actor"),
    ],
)
def test_invalid_queries_are_refused_with_a_pointed_message(query: str, expected: str) -> None:
    with pytest.raises(SubscriptionError) as refused:
        subscription_from_options("x", query=query)
    assert expected in str(refused.value)
    assert str(refused.value).startswith("--query:")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"topics": ["airstrikes"]}, "--topic 'airstrikes': unknown topic 'airstrikes'; did you mean 'airstrike'?"),
        (
            {"countries": ["Iraq"]},
            "--country 'Iraq': 'Iraq' is not an ISO 3166-1 alpha-2 country code; did you mean IQ?",
        ),
        ({"regions": ["Middle Earth"]}, "--region 'Middle Earth': unknown region"),
        ({"topics": ["coup"], "digest": "5x"}, "--digest: '5x' is not a duration"),
        ({"topics": ["coup"], "active_hours": "8-18"}, "--hours: '8-18': expected HH:MM-HH:MM"),
        ({"topics": ["coup"], "timezone": "Mars/Olympus"}, "--timezone: unknown time zone 'Mars/Olympus'"),
        ({"topics": ["coup"], "emails": ["nobody"]}, "--email: 'nobody' is not an email address"),
        ({"topics": ["coup"], "webhook": "ftp://example.org/x"}, "--webhook: URL scheme should be 'http' or 'https'"),
        ({"topics": ["coup"], "secret": "s"}, "--secret signs webhook requests: give --webhook URL too"),
        ({"query": 'NOT "football"'}, "a rule made only of NOT conditions"),
        ({}, "a subscription needs at least one condition"),
    ],
)
def test_invalid_options_are_refused_naming_the_option(options: dict[str, object], expected: str) -> None:
    with pytest.raises(SubscriptionError) as refused:
        subscription_from_options("x", **options)  # type: ignore[arg-type]
    assert expected in str(refused.value)


def test_a_subscriptions_file_is_checked_with_the_path_of_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "subs.yaml"
    path.write_text(
        "subscriptions:\n"
        "  - {id: ok, name: ok, rule: {topic: coup}}\n"
        "  - id: bad\n"
        "    name: bad\n"
        "    rule: {all: [{topic: coup}, {any: [{country: IQ}, {country: QQ}]}]}\n",
        encoding="utf-8",
    )
    with pytest.raises(SubscriptionError) as refused:
        load_subscriptions_file(path)
    assert "subscriptions[1].rule.all[1].any[1].country: 'QQ' is not an ISO 3166-1 alpha-2" in str(refused.value)


def test_names_are_canonicalised_at_creation() -> None:
    sub = subscription_from_options(
        "Gulf", countries=["iq"], regions=["the gulf"], entities=["Q22686"], realert="1h30m", digest="15m"
    )
    assert describe(sub.rule) == 'country:IQ AND region:"Persian Gulf" AND entity:"trump-donald"'
    assert sub.realert == timedelta(hours=1, minutes=30)
    assert sub.digest == timedelta(minutes=15)


# --- semantics ---


def test_region_matches_named_regions_and_the_m49_regions_of_the_countries() -> None:
    angola = article(countries=["AO"], regions=["Africa", "Sub-Saharan Africa"])
    # Middle Africa is Angola's intermediate M49 region: enrichment does not emit it, membership does.
    result = evaluate(parse_query('region:"Middle Africa"'), angola)
    assert result.matched and result.reasons == ["region Middle Africa (country AO)"]
    assert evaluate(parse_query('region:"sub-saharan africa"'), angola).matched
    assert not evaluate(parse_query('region:"Western Asia"'), angola).matched


def test_language_entity_label_source_and_phrase_conditions() -> None:
    a = article(
        language="en-GB",
        source="https://feeds.example.org/world.rss",
        source_name="Example World",
        title="Bank limits",
        text="Banks cap cash-withdrawal amounts. Hezbollah said nothing.",
        entities=[Entity(text="Hezbollah", label="ORG", start=40, end=49, kb_id="hezbollah")],
    )
    assert evaluate(LanguageCondition(language="en"), a).matched
    assert evaluate(LanguageCondition(language="en-gb"), a).matched
    assert not evaluate(LanguageCondition(language="fr"), a).matched
    assert not evaluate(LanguageCondition(language="en"), article()).matched  # unknown language: no match
    assert evaluate(parse_query('entity:"hezbollah"'), a).reasons == ["entity Hezbollah (ORG)"]
    assert not evaluate(parse_query("source:reuters"), a).matched
    assert evaluate(parse_query("source:example"), a).matched
    # Phrases match across hyphens, on word boundaries, whatever the case.
    assert evaluate(parse_query('"cash withdrawal"'), a).reasons == ['text "cash-withdrawal"']
    assert not evaluate(parse_query('"ash withdrawal"'), a).matched
    assert evaluate(parse_query("/cap+ed|caps?/"), a).matched


def test_topic_reasons_carry_the_score_and_evidence() -> None:
    a = article(topics=[TopicTag(id="troop_withdrawal", score=0.91, evidence=["Soldiers pulled out of the base."])])
    result = evaluate(parse_query("topic:troop_withdrawal>=0.9"), a)
    assert result.reasons == ['topic troop_withdrawal (score 0.91): "Soldiers pulled out of the base."']
    assert not evaluate(parse_query("topic:troop_withdrawal>=0.95"), a).matched


def test_required_keys_of_a_rule() -> None:
    rule = parse_query('topic:coup AND (country:ML OR country:NE) AND NOT "football" AND "junta leader"')
    groups = required_groups(rule)
    assert frozenset({("topic", "coup")}) in groups
    assert frozenset({("country", "ML"), ("country", "NE")}) in groups
    assert frozenset({("term", "junta")}) in groups and frozenset({("term", "leader")}) in groups
    assert required_groups(parse_query("source:reuters")) == []  # nothing to index: always evaluated


def test_the_index_finds_exactly_what_evaluating_every_subscription_finds() -> None:
    """Random rules over random articles: the candidate index must neither miss nor add a match."""
    rng = random.Random(5)
    vocab = vocabulary()
    topics = sorted(vocab.topics)[:6]
    countries = ["IQ", "SY", "US", "ML", "AO", "VE"]
    words = ["troops", "withdrawal", "ceasefire", "junta", "parliament", "airport"]
    actors = [("Qassem Soleimani", "soleimani-qassem", "PERSON"), ("Hezbollah", "hezbollah", "ORG")]

    def leaf() -> dict[str, object]:
        kind = rng.choice(["topic", "country", "region", "entity", "text", "language", "source", "regex"])
        if kind == "topic":
            return {"topic": rng.choice(topics), "min_score": rng.choice([0.0, 0.5, 0.8])}
        if kind == "country":
            return {"country": rng.choice(countries)}
        if kind == "region":
            return {"region": rng.choice(["Western Asia", "Middle Africa", "Middle East", "Americas"])}
        if kind == "entity":
            name, kb, label = rng.choice(actors)
            return {"entity": rng.choice([name, kb]), "label": rng.choice([None, label, "GPE"])}
        if kind == "text":
            return {"text": " ".join(rng.sample(words, rng.choice([1, 2])))}
        if kind == "regex":
            return {"text": r"troops?\b", "regex": True}
        if kind == "language":
            return {"language": rng.choice(["en", "fr"])}
        return {"source": rng.choice(["wire", "desk"])}

    def rule(depth: int = 0) -> dict[str, object]:
        roll = rng.random()
        if depth < 2 and roll < 0.35:
            return {"all": [rule(depth + 1) for _ in range(rng.randint(2, 3))]}
        if depth < 2 and roll < 0.55:
            return {"any": [rule(depth + 1) for _ in range(2)]}
        if depth > 0 and roll < 0.65:
            return {"not": leaf()}
        return leaf()

    subs = [Subscription(id=f"s{i}", name=f"s{i}", rule=rule()) for i in range(400)]
    articles = []
    for i in range(120):
        chosen = rng.sample(words, 3)
        name, kb, label = rng.choice(actors)
        articles.append(
            article(
                id=f"a{i}",
                title=f"{chosen[0].title()} news",
                text=f"The {chosen[1]} and {chosen[2]} story. {name} spoke.",
                countries=rng.sample(countries, rng.randint(0, 2)),
                regions=rng.sample(["Middle East", "Asia", "Western Asia"], rng.randint(0, 2)),
                topics=[TopicTag(id=t, score=rng.random()) for t in rng.sample(topics, rng.randint(0, 3))],
                entities=[Entity(text=name, label=label, start=0, end=len(name), kb_id=kb)],
                language=rng.choice([None, "en", "en-us", "fr"]),
                source=rng.choice(["https://wire.example/rss", "https://desk.example/rss"]),
            )
        )
    matcher = SubscriptionMatcher(subs)
    assert matcher.stats["unindexed"] < len(subs)
    total = 0
    for a in articles:
        fast = [(s.id, m.reasons) for s, m in matcher.match_with_reasons(a)]
        slow = [(s.id, m.reasons) for s, m in match_naive(subs, a)]
        assert fast == slow
        assert len(matcher.candidates(a)) <= len(subs)
        total += len(slow)
    assert total > 100  # the rules do fire: the comparison is not between two empty lists


# --- secrets ---


def test_webhook_secrets_are_masked_everywhere_but_in_the_store(tmp_path: Path) -> None:
    sub = subscription_from_options(
        "Hooked",
        topics=["coup"],
        webhook="http://127.0.0.1:9/hook",
        secret="s3cret-value",
        allow_private_webhooks=True,
    )
    assert "s3cret-value" not in sub.model_dump_json()
    assert "s3cret-value" not in repr(sub) and "s3cret-value" not in str(sub.model_dump())
    assert "s3cret-value" in sub.storage_json()
    with SqliteStore(tmp_path / "store.db") as store:
        store.put_subscription(sub)
        (loaded,) = store.list_subscriptions()
    assert loaded.targets[0].secret is not None  # type: ignore[union-attr]
    assert loaded.targets[0].secret.get_secret_value() == "s3cret-value"  # type: ignore[union-attr]
