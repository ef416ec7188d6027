from datetime import UTC, datetime
from pathlib import Path

from connectors.sqlite_store import SqliteStore
from connectors.store import SearchQuery
from schemas import Alert, Article, DeadLetter, Subscription, TopicTag


def _article(n: int, **extra: object) -> Article:
    base: dict[str, object] = dict(
        title=f"Troop withdrawal number {n}",
        text=f"Soldiers left base {n}.",
        url=f"https://example.com/{n}",
        published=datetime(2024, 1, n, tzinfo=UTC),
        countries=["IQ"],
        topics=[TopicTag(id="troop_withdrawal", score=0.9)],
    )
    base.update(extra)
    return Article(**base)  # type: ignore[arg-type]


def test_upsert_by_id_never_duplicates(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "s.db") as store:
        assert [o for _, o in store.write_articles([_article(1), _article(2)])] == ["new", "new"]
        assert [o for _, o in store.write_articles([_article(1, text="Changed.")])] == ["updated"]
        assert store.counts()["articles"] == 2
        stored = store.get_article(_article(1).id)
        assert stored is not None and stored.text == "Changed."
        assert store.stored_hashes([_article(2).id, "nope"]) == {_article(2).id: (_article(2).content_hash, "")}


def test_full_text_search_with_filters(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "s.db") as store:
        store.write_articles(
            [
                _article(1),
                _article(
                    2, countries=["SY"], text="Airstrike near Idlib.", topics=[TopicTag(id="airstrike", score=0.8)]
                ),
            ]
        )
        assert [h.article.id for h in store.search(SearchQuery(text="idlib"))] == [_article(2).id]
        hits = store.search(SearchQuery(text="troop", countries=["IQ"]))
        assert {h.article.id for h in hits} == {_article(1).id}
        assert "[" in hits[0].snippet  # the match is marked
        assert store.search(SearchQuery(topics=["airstrike"]))[0].article.countries == ["SY"]
        assert store.search(SearchQuery(since=datetime(2024, 1, 2, tzinfo=UTC)))[0].article.id == _article(2).id
        assert store.search(SearchQuery(text='unbalanced "quote')) == []  # bad FTS syntax falls back to words


def test_alert_recorded_once_per_subscription_and_article(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "s.db") as store:
        alert = Alert(subscription_id="s1", article_id="a1", title="t")
        assert store.record_alert(alert) is True
        assert store.record_alert(Alert(subscription_id="s1", article_id="a1", title="t again")) is False
        assert store.record_alert(Alert(subscription_id="s2", article_id="a1", title="t")) is True
        assert [a.subscription_id for a in store.list_alerts(subscription_id="s1")] == ["s1"]


def test_dead_letters_and_subscription_seeding(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "s.db") as store:
        store.write_dead_letters([DeadLetter(stage="parse", reason="invalid JSON", payload="{x")])
        assert store.list_dead_letters(stage="parse")[0].payload == "{x"
        default = Subscription(id="d", name="d", rule={"topic": "troop_withdrawal"})
        assert store.seed_subscriptions([default]) == 1
        assert store.remove_subscription("d")
        assert store.seed_subscriptions([default]) == 0  # removed defaults stay removed
        assert store.counts() == {
            "articles": 0,
            "alerts": 0,
            "alerts_suppressed": 0,
            "alerts_pending": 0,
            "deadletters": 1,
            "subscriptions": 0,
        }
