from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from schemas import MODELS, Alert, Article, DeadLetter, RawArticle, Subscription, canonical_url, json_schema


def test_rejects_article_without_title_and_text() -> None:
    with pytest.raises(ValidationError, match="neither title nor text"):
        RawArticle(title="  ", text="")


@pytest.mark.parametrize("url", ["ftp://example.com/a", "javascript:alert(1)", "not a url", "http://"])
def test_rejects_non_http_urls(url: str) -> None:
    with pytest.raises(ValidationError):
        RawArticle(title="t", url=url)


def test_naive_datetimes_are_utc_and_aware_ones_converted() -> None:
    naive = RawArticle(title="t", published=datetime(2020, 1, 5, 18, 30))
    assert naive.published == datetime(2020, 1, 5, 18, 30, tzinfo=UTC)
    aware = RawArticle(title="t", published=datetime(2020, 1, 5, 21, 30, tzinfo=timezone(timedelta(hours=3))))
    assert aware.published == datetime(2020, 1, 5, 18, 30, tzinfo=UTC)
    assert aware.published.utcoffset() == timedelta(0)


def test_text_falls_back_to_summary_and_title_to_first_sentence() -> None:
    article = RawArticle(summary="Troops left the base. More later.")
    assert article.text == "Troops left the base. More later."
    assert article.title == "Troops left the base."


def test_canonical_url_drops_tracking_fragment_and_trailing_slash() -> None:
    a = canonical_url("https://WWW.News.example.com/world/story/?utm_source=rss&b=2&a=1#top")
    assert a == "https://news.example.com/world/story?a=1&b=2"
    assert canonical_url("http://example.com:80/x/") == "http://example.com/x"


def test_article_id_is_deterministic_and_url_based() -> None:
    one = RawArticle(title="A", url="https://example.com/story?utm_campaign=x")
    two = RawArticle(title="A different title", url="https://www.example.com/story/")
    assert one.id == two.id
    assert RawArticle(title="A", guid="tag:example,1").id == RawArticle(title="B", guid="tag:example,1").id
    assert RawArticle(title="Same words").id == RawArticle(title="same  WORDS").id  # content hash, normalised
    assert RawArticle(title="A").id != RawArticle(title="B").id


def test_rule_short_form_and_round_trip() -> None:
    sub = Subscription(
        id="tw-iq",
        name="x",
        rule={"all": [{"topic": "troop_withdrawal", "min_score": 0.5}, {"country": "iq"}, {"not": {"text": "cash"}}]},
    )
    assert sub.rule.kind == "all"
    assert sub.rule.all[1].country == "IQ"  # type: ignore[union-attr]
    assert Subscription.model_validate_json(sub.model_dump_json()) == sub


@pytest.mark.parametrize(
    "rule, problem",
    [
        ({"bogus": 1}, "names no condition"),
        ({"country": "IRQ"}, "pattern"),
        ({"topic": "Bad Id"}, "pattern"),
        ({"all": []}, "at least 1"),
    ],
)
def test_invalid_rules_are_rejected(rule: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Subscription(id="s", name="s", rule=rule)


def test_alert_and_dead_letter_ids() -> None:
    alert = Alert(subscription_id="s", article_id="a", title="t")
    assert alert.id == Alert(subscription_id="s", article_id="a", title="other").id
    letter = DeadLetter(stage="parse", reason="invalid JSON", payload=b"\xff{")
    assert letter.payload == "\\xff{"


def test_json_schema_export_for_every_model() -> None:
    assert set(MODELS) == {
        "RawArticle",
        "Article",
        "Entity",
        "Place",
        "TopicTag",
        "Subscription",
        "Alert",
        "AlertDigest",
        "DeadLetter",
    }
    article = json_schema("Article")
    assert {"entities", "countries", "places", "topics"} <= set(article["properties"])  # type: ignore[arg-type]
    assert json_schema("Subscription")["properties"]["rule"]  # type: ignore[index]
    assert {"subscription_id", "alerts"} <= set(json_schema("AlertDigest")["properties"])  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="unknown model"):
        json_schema("Nope")


def test_article_content_hash_tracks_words() -> None:
    a = Article(title="t", text="x")
    assert a.content_hash == Article(title="t", text="x").content_hash != Article(title="t", text="y").content_hash
