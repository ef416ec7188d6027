"""Alerts through the real job: feeds on disk -> Beam cycles -> store -> webhook on loopback, and the CLI."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.sqlite_store import SqliteStore
from pipelines.enrich import Enricher
from pipelines.job import CycleRunner, build_sources
from pipelines.matching import SubscriptionMatcher, evaluate, parse_query
from pipelines.subscriptions import subscription_from_options
from schemas import RawArticle
from tests.alert_helpers import (
    MALI,
    PUBLISHED,
    SEED_TEXT,
    SEED_TITLE,
    WebhookReceiver,
    job_settings,
    seed_story_feeds,
    write_feed,
)
from tests.conftest import run_cli

SECRET = "pipeline-secret"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(secret=SECRET)
    yield server
    server.close()


def test_seed_article_fires_the_iraq_subscription_and_not_the_venezuela_one(fast_enricher: Enricher) -> None:
    article = fast_enricher.enrich(RawArticle(title=SEED_TITLE, text=SEED_TEXT, url="https://example.org/seed"))
    iraq = subscription_from_options("Iraq", topics=["troop_withdrawal"], countries=["IQ"])
    venezuela = subscription_from_options("Venezuela", topics=["troop_withdrawal"], countries=["VE"])
    fired = SubscriptionMatcher([iraq, venezuela]).match(article)
    assert [a.subscription_id for a in fired] == ["iraq"]
    alert = fired[0]
    assert alert.url == "https://example.org/seed"
    assert alert.reasons[0].startswith("topic troop_withdrawal (score ")
    assert alert.reasons[1] == "country IQ"
    assert "Qassem Soleimani" in alert.entities and "IQ" in alert.countries
    assert any(t.id == "troop_withdrawal" and t.evidence for t in alert.topics)  # topic evidence travels along
    assert not evaluate(venezuela.rule, article).matched


@pytest.mark.slow
def test_alerts_flow_through_the_job(tmp_path: Path, receiver: WebhookReceiver) -> None:
    feeds = seed_story_feeds(tmp_path)
    settings = job_settings(tmp_path, feeds, webhook_allow_private=True)
    runner = CycleRunner(settings, build_sources(settings))
    runner.prepare()
    store = SqliteStore(settings.store_path)
    store.put_subscription(
        subscription_from_options(
            "Iraq withdrawal",
            topics=["troop_withdrawal"],
            countries=["IQ"],
            webhook=receiver.url("/iraq"),
            secret=SECRET,
            allow_private_webhooks=True,
        )
    )
    store.put_subscription(subscription_from_options("Venezuela", topics=["troop_withdrawal"], countries=["VE"]))
    try:
        # Cycle 1: the same story from three feeds alerts once; the two copies are suppressed, visibly.
        first = runner.run_cycle(force=True)
        assert first.counts["new"] == 3
        assert (first.counts["alerts"], first.counts["alerts_suppressed"]) == (1, 2)
        assert "alerts_suppressed=2" in first.line()
        posts = receiver.wait_for(1)
        assert len(posts) == 1 and posts[0].path == "/iraq" and posts[0].signature_ok is True
        body = posts[0].json()
        assert body["subscription_id"] == "iraq-withdrawal" and body["url"].startswith("https://")
        assert any(r.startswith("topic troop_withdrawal") for r in body["reasons"]) and "country IQ" in body["reasons"]
        assert store.list_alerts(subscription_id="venezuela") == []
        suppressed = store.list_alerts(subscription_id="iraq-withdrawal", status="suppressed")
        assert len(suppressed) == 2 and all(a.duplicate_of == body["id"] for a in suppressed)

        # Between cycles, without a restart: a new subscription (digest mode) and an updated article.
        store.put_subscription(
            subscription_from_options(
                "Troops digest",
                topics=["troop_withdrawal"],
                digest="2s",
                realert="0",
                webhook=receiver.url("/digest"),
                secret=SECRET,
                allow_private_webhooks=True,
            )
        )
        write_feed(
            tmp_path,
            "world.xml",
            [
                {
                    "title": SEED_TITLE,
                    "link": "https://wire.example/2020/01/05/iraq",
                    "text": SEED_TEXT + "\n\nThis story has been updated.",
                    "published": PUBLISHED,
                },
                {
                    "title": "France to pull out its soldiers from Mali",
                    "link": "https://wire.example/mali",
                    "text": MALI,
                    "published": PUBLISHED,
                },
            ],
        )
        second = runner.run_cycle(force=True)
        assert second.counts["updated"] == 1 and second.counts["new"] == 1
        # The updated seed article matched again, but (subscription, article) already alerted: once only.
        assert second.counts["alerts_repeated"] == 1 and second.counts["alerts"] == 0
        assert second.counts["alerts_pending"] == 2  # the new digest subscription holds both articles
        assert len(receiver.received) == 1

        # A later cycle boundary releases the digest: one signed POST with both alerts.
        time.sleep(2.1)
        third = runner.run_cycle(force=True)
        assert (third.released.digests, third.released.alerts) == (1, 2)
        digest = receiver.wait_for(2)[1]
        assert digest.path == "/digest" and digest.signature_ok and digest.headers["X-Newswatch-Event"] == "digest"
        assert {a["title"] for a in digest.json()["alerts"]} == {
            SEED_TITLE,
            "France to pull out its soldiers from Mali",
        }
        assert {a.status for a in store.list_alerts(subscription_id="troops-digest")} == {"digested"}
    finally:
        store.close()
        runner.close()

    # What the CLI shows of it: suppressed alerts only with --all, each with its status and reason.
    env = {
        "NEWSWATCH_DATA_DIR": str(settings.data_dir),
        "NEWSWATCH_SUBSCRIPTIONS_FILE": str(settings.subscriptions_file),
    }
    shown = run_cli("alerts", "list", "--subscription", "iraq-withdrawal", env=env)
    assert shown.returncode == 0 and shown.stdout.count("[iraq-withdrawal]") == 1
    everything = run_cli("alerts", "list", "--all", "--subscription", "iraq-withdrawal", env=env)
    assert everything.stdout.count("[iraq-withdrawal]") == 3
    assert everything.stdout.count("suppressed: near-duplicate") == 2


def test_subscriptions_cli_add_list_show_test_remove(tmp_path: Path, fast_enricher: Enricher) -> None:
    data = tmp_path / "data"
    empty = tmp_path / "none.yaml"
    empty.write_text("subscriptions: []\n", encoding="utf-8")
    env = {"NEWSWATCH_DATA_DIR": str(data), "NEWSWATCH_SUBSCRIPTIONS_FILE": str(empty)}
    raws = [
        RawArticle(title=SEED_TITLE, text=SEED_TEXT, url="https://wire.example/iraq", published=PUBLISHED),
        RawArticle(
            title="Iraqi parliament calls for expulsion of US troops after Soleimani killing",
            text=SEED_TEXT,
            url="https://desk.example/iraq",
            published=PUBLISHED,
        ),
        RawArticle(title="France to pull out its soldiers from Mali", text=MALI, url="https://wire.example/mali"),
    ]
    with SqliteStore(data / "newswatch.db") as store:
        store.write_articles(fast_enricher.enrich_batch(raws))

    added = run_cli(
        "subscriptions",
        "add",
        "Iraq withdrawal",
        "--topic",
        "troop_withdrawal",
        "--country",
        "IQ",
        "--webhook",
        "http://127.0.0.1:9/hook",
        "--secret",
        "cli-secret-value",
        "--realert",
        "12h",
        env={**env, "NEWSWATCH_WEBHOOK_ALLOW_PRIVATE": "true"},
    )
    assert added.returncode == 0, added.stderr
    assert "added iraq-withdrawal: topic:troop_withdrawal AND country:IQ" in added.stdout
    refused = run_cli("subscriptions", "add", "Bad", "--topic", "troop_withdrawl", "--country", "IQ", env=env)
    assert refused.returncode == 2
    assert "unknown topic 'troop_withdrawl'; did you mean 'troop_withdrawal'?" in refused.stderr
    ssrf = run_cli("subscriptions", "add", "Hook", "--topic", "coup", "--webhook", "http://127.0.0.1:9/h", env=env)
    assert ssrf.returncode == 2 and "127.0.0.1, a loopback address" in ssrf.stderr

    listed = run_cli("subscriptions", "list", env=env)
    assert "iraq-withdrawal" in listed.stdout and "webhook http://127.0.0.1:9/hook (signed)" in listed.stdout
    shown = run_cli("subscriptions", "show", "iraq-withdrawal", env=env)
    as_json = run_cli("subscriptions", "list", "--json", env=env)
    for output in (listed.stdout, shown.stdout, as_json.stdout, listed.stderr, shown.stderr):
        assert "cli-secret-value" not in output
    assert '"secret": "**********"' in shown.stdout

    tested = run_cli("subscriptions", "test", "iraq-withdrawal", env=env)
    assert tested.returncode == 0, tested.stderr
    assert tested.stdout.count("FIRE ") == 1 and tested.stdout.count("DUP  ") == 1
    assert "why: topic troop_withdrawal (score" in tested.stdout and "country IQ" in tested.stdout
    assert "Mali" not in tested.stdout
    assert "1 stored article(s) would fire iraq-withdrawal; 1 more suppressed as near-duplicates" in tested.stderr
    adhoc = run_cli("subscriptions", "test", "--query", "topic:troop_withdrawal AND country:ML", "--json", env=env)
    assert adhoc.returncode == 0 and '"title": "France to pull out its soldiers from Mali"' in adhoc.stdout

    removed = run_cli("subscriptions", "remove", "iraq-withdrawal", env=env)
    assert removed.returncode == 0 and "removed iraq-withdrawal" in removed.stdout
    assert "iraq-withdrawal" not in run_cli("subscriptions", "list", env=env).stdout


def test_query_validation_points_at_the_column(tmp_path: Path) -> None:
    env = {"NEWSWATCH_DATA_DIR": str(tmp_path)}
    result = run_cli("subscriptions", "add", "x", "--query", 'topic:coup AND region:"Westren Asia"', env=env)
    assert result.returncode == 2
    assert "--query: 'region:\"Westren Asia\"' at column 16: unknown region 'Westren Asia'" in result.stderr
    assert "did you mean 'Western Asia'?" in result.stderr
    assert parse_query('region:"Western Asia"') is not None
