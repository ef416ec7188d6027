from pathlib import Path

import pytest

from connectors.sqlite_store import SqliteStore
from pipelines.alerting import MatcherCache
from pipelines.matching import QueryError, SubscriptionMatcher, describe, evaluate, parse_query
from pipelines.subscriptions import subscription_from_options
from schemas import Article, Entity, Subscription, TopicTag

ARTICLE = Article(
    title="Iraq votes to expel U.S. troops",
    text="Lawmakers in Baghdad voted. Soleimani was killed.",
    countries=["IQ", "US"],
    regions=["Asia", "Western Asia"],
    source="https://wire.example/rss",
    source_name="Wire",
    topics=[TopicTag(id="troop_withdrawal", score=0.9, evidence=["Iraq votes to expel U.S. troops"])],
    entities=[Entity(text="Soleimani", label="PERSON", start=0, end=9, canonical="Qassem Soleimani")],
)


@pytest.mark.parametrize(
    "query, expected",
    [
        ("topic:troop_withdrawal AND country:IQ", True),
        ("topic:troop_withdrawal AND country:VE", False),
        ("topic:troop_withdrawal>=0.95", False),
        ('entity:"Qassem Soleimani" region:"western asia"', True),
        ('"voted" NOT "cash withdrawal"', True),
        ("(country:VE OR country:US) AND source:wire", True),
        ("NOT topic:troop_withdrawal", False),
        ("expel", True),
        ("expelled", False),
    ],
)
def test_queries(query: str, expected: bool) -> None:
    assert evaluate(parse_query(query), ARTICLE).matched is expected


def test_reasons_say_why() -> None:
    result = evaluate(parse_query("topic:troop_withdrawal country:IQ"), ARTICLE)
    assert result.reasons[0].startswith("topic troop_withdrawal (score 0.90)")
    assert "Iraq votes to expel" in result.reasons[0]
    assert result.reasons[1] == "country IQ"


def test_describe_round_trips_through_the_parser() -> None:
    rule = parse_query('topic:airstrike>=0.5 AND (country:SY OR country:IQ) AND NOT "drone show"')
    assert parse_query(describe(rule)) == rule


@pytest.mark.parametrize(
    "query, message",
    [
        ("country:", "no value"),
        ("(country:IQ", "never closed"),
        ("colour:red", "unknown field"),
        ("country:IRQ", "pattern"),
        ("AND", "expected a condition"),
    ],
)
def test_bad_queries_point_at_the_problem(query: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_query(query)


def test_matcher_only_evaluates_candidate_subscriptions() -> None:
    subs = [Subscription(id=f"s{i}", name="s", rule=parse_query("topic:airstrike AND country:SY")) for i in range(50)]
    subs.append(Subscription(id="tw", name="tw", rule=parse_query("topic:troop_withdrawal country:IQ")))
    subs.append(Subscription(id="text", name="text", rule=parse_query('"Baghdad"')))
    matcher = SubscriptionMatcher(subs)
    assert {s.id for s in matcher.candidates(ARTICLE)} == {"tw", "text"}
    assert sorted(a.subscription_id for a in matcher.match(ARTICLE)) == ["text", "tw"]


def test_matcher_cache_rebuilds_only_when_subscriptions_change(tmp_path: Path) -> None:
    """The job's cycles reuse one matcher; adding or changing a subscription shows in the next one."""
    store = SqliteStore(str(tmp_path / "store.db"))
    try:
        store.put_subscription(
            subscription_from_options("Iraq withdrawal", topics=["troop_withdrawal"], countries=["IQ"])
        )
        cache = MatcherCache()
        first = cache.get("store", store)
        assert cache.get("store", store) is first
        store.put_subscription(subscription_from_options("Strikes in Syria", topics=["airstrike"], countries=["SY"]))
        second = cache.get("store", store)
        assert second is not first
        assert sorted(s.name for s in second.subscriptions) == ["Iraq withdrawal", "Strikes in Syria"]
        assert MatcherCache(max_age_s=0).get("store", store) is not second  # statistics refreshed when stale
    finally:
        store.close()
