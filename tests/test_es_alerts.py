"""The alert service on Elasticsearch (noida-db over HTTP): alert statuses and update_alerts, list_alerts
filters and counts (checked against SQLite on the same alerts), subscriptions with their secrets, an index
set up before alerts had a status, and the job suppressing a near-duplicate with `--sink elasticsearch`."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import BadRequestError, Elasticsearch

from connectors.elasticsearch import ElasticsearchStore
from connectors.es_documents import alert_document
from connectors.es_setup import SetupError
from connectors.sqlite_store import SqliteStore
from pipelines.job import CycleRunner, build_sources
from pipelines.subscriptions import subscription_from_options
from schemas import Alert, AlertStatus, WebhookTarget
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
from tests.es_support import apply_setup, edited_templates, es_config, es_env, update_json
from tests.servers import NoidaServer

BASE = datetime(2024, 3, 1, 12, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))
LIVE = ("delivered", "pending", "digested")
SECRET = "es-pipeline-secret"
NEW_ALERT_FIELDS = ["duplicate_of", "status", "status_reason", "summary"]
NEW_SUBSCRIPTION_FIELDS = ["active_hours", "digest", "realert", "targets", "timezone"]


def history() -> list[Alert]:
    """Two subscriptions' alerts, an hour apart, in every status."""
    spec: list[tuple[str, str, AlertStatus]] = [
        ("iraq", "a1", "delivered"),
        ("iraq", "a2", "suppressed"),
        ("iraq", "a3", "pending"),
        ("iraq", "a4", "digested"),
        ("sahel", "a1", "pending"),
        ("sahel", "a5", "cancelled"),
        ("sahel", "a6", "delivered"),
    ]
    alerts = []
    for hour, (subscription, article, status) in enumerate(spec):
        alerts.append(
            Alert(
                subscription_id=subscription,
                subscription_name=subscription.title(),
                article_id=article,
                title=f"{subscription} story {article}",
                url=f"https://news.example/{article}",
                summary=f"The lead of {article}.",
                status=status,
                status_reason={"pending": "digest every 1h", "cancelled": "subscription removed"}.get(status, ""),
                created_at=BASE + timedelta(hours=hour),
            )
        )
    suppressed = alerts[1]
    alerts[1] = suppressed.model_copy(
        update={"duplicate_of": alerts[0].id, "status_reason": "near-duplicate (0.91) of 'iraq story a1'"}
    )
    return alerts


def keys(alerts: list[Alert]) -> list[str]:
    return [f"{a.subscription_id}/{a.article_id}" for a in alerts]


def test_alerts_keep_their_status_and_are_updated_by_id(es_store: ElasticsearchStore) -> None:
    alerts = history()
    assert all(es_store.record_alert(a) for a in alerts)
    assert es_store.list_alerts(100) == alerts[::-1]  # every field back as written, newest first

    pending = es_store.list_alerts(100, status="pending")
    assert keys(pending) == ["sahel/a1", "iraq/a3"]
    released = [a.model_copy(update={"status": "digested", "status_reason": ""}) for a in pending]
    ghost = Alert(subscription_id="iraq", article_id="never-stored", title="ghost", status="digested")
    es_store.update_alerts([*released, ghost])
    assert es_store.list_alerts(100, status="pending") == []  # read back at once: no refresh by the caller
    assert keys(es_store.list_alerts(100, status="digested")) == ["sahel/a1", "iraq/a4", "iraq/a3"]
    stored = {a.id: a for a in es_store.list_alerts(100)}
    assert len(stored) == len(alerts) and ghost.id not in stored  # an update never creates an alert
    assert stored[released[0].id] == released[0]
    assert stored[alerts[1].id].duplicate_of == alerts[0].id  # untouched alerts keep every field

    # Still one alert per (subscription, article), whatever its status.
    assert es_store.record_alert(alerts[2].model_copy(update={"status": "delivered"})) is False
    assert {a.status for a in es_store.list_alerts(100, subscription_id="iraq") if a.article_id == "a3"} == {"digested"}


def test_list_alerts_filters_and_counts_match_sqlite(es_store: ElasticsearchStore, tmp_path: Path) -> None:
    alerts = history()
    with SqliteStore(tmp_path / "mirror.db") as sqlite:
        for alert in alerts:
            assert es_store.record_alert(alert) and sqlite.record_alert(alert)
        cases: list[tuple[dict[str, Any], list[str]]] = [
            ({}, keys(alerts[::-1])),
            ({"subscription_id": "sahel"}, ["sahel/a6", "sahel/a5", "sahel/a1"]),
            ({"status": "suppressed"}, ["iraq/a2"]),
            ({"status": ["delivered", "digested"]}, ["sahel/a6", "iraq/a4", "iraq/a1"]),
            ({"status": LIVE, "subscription_id": "iraq"}, ["iraq/a4", "iraq/a3", "iraq/a1"]),
            ({"since": BASE + timedelta(hours=4)}, ["sahel/a6", "sahel/a5", "sahel/a1"]),
            # `since` in another zone is the same instant; the bound is inclusive.
            ({"since": datetime(2024, 3, 1, 18, tzinfo=PLUS_TWO), "status": "pending"}, ["sahel/a1"]),
            ({"status": [], "subscription_id": "iraq"}, []),
            ({"limit": 2, "status": ["pending", "cancelled"]}, ["sahel/a5", "sahel/a1"]),
        ]
        for filters, expected in cases:
            limit = filters.pop("limit", 100)
            assert keys(es_store.list_alerts(limit, **filters)) == expected, filters
            assert keys(sqlite.list_alerts(limit, **filters)) == expected, filters

        es_store.refresh()
        counts = es_store.counts()
        expected_counts = {"alerts": 5, "alerts_suppressed": 1, "alerts_pending": 2}
        assert {k: counts[k] for k in expected_counts} == expected_counts
        assert counts == sqlite.counts()  # same keys, same numbers (no articles, letters or subscriptions here)


def test_subscription_secret_is_stored_unmasked_and_shown_masked(
    noida_es: NoidaServer, es_prefix: str, es_client: Elasticsearch, tmp_path: Path
) -> None:
    apply_setup(noida_es.es_url, es_prefix)
    empty = tmp_path / "none.yaml"
    empty.write_text("subscriptions: []\n", encoding="utf-8")
    env = {**es_env(noida_es.es_url, es_prefix, tmp_path / "data"), "NEWSWATCH_SUBSCRIPTIONS_FILE": str(empty)}
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
        "--digest",
        "1h",
        "--hours",
        "08:00-18:00",
        "--timezone",
        "Europe/Berlin",
        env={**env, "NEWSWATCH_WEBHOOK_ALLOW_PRIVATE": "true"},
    )
    assert added.returncode == 0, added.stderr

    with ElasticsearchStore(es_config(noida_es.es_url, es_prefix)) as store:
        (stored,) = store.list_subscriptions()
    (target,) = stored.targets
    assert isinstance(target, WebhookTarget) and target.secret is not None
    assert target.secret.get_secret_value() == "cli-secret-value"
    assert (stored.realert, stored.digest) == (timedelta(hours=12), timedelta(hours=1))
    assert (stored.active_hours, stored.timezone) == ("08:00-18:00", "Europe/Berlin")
    # Kept in _source for delivery, but not indexed: no query finds a subscription by its secret.
    source = es_client.get(index=f"{es_prefix}-subscriptions", id=stored.id)["_source"]
    assert source["targets"][0]["secret"] == "cli-secret-value"
    found = es_client.search(index=f"{es_prefix}-subscriptions", query={"query_string": {"query": "cli-secret-value"}})
    assert found["hits"]["hits"] == []

    listed = run_cli("subscriptions", "list", env=env)
    shown = run_cli("subscriptions", "show", stored.id, env=env)
    as_json = run_cli("subscriptions", "list", "--json", env=env)
    assert listed.returncode == shown.returncode == as_json.returncode == 0, listed.stderr + shown.stderr
    assert "webhook http://127.0.0.1:9/hook (signed)" in listed.stdout
    assert '"secret": "**********"' in shown.stdout
    assert json.loads(as_json.stdout.splitlines()[0])["targets"][0]["secret"] == "**********"
    for output in (listed, shown, as_json):
        assert "cli-secret-value" not in output.stdout + output.stderr


def _before_alert_status(files: dict[str, Path]) -> None:
    """The templates as they were before the alert service: no status fields, no subscription targets."""

    def drop(fields: list[str]) -> Any:
        def change(template: dict[str, Any]) -> None:
            for field in fields:
                template["template"]["mappings"]["properties"].pop(field)
            template["version"] = 1

        return change

    update_json(files["component_templates/alerts-mappings"], drop(NEW_ALERT_FIELDS))
    update_json(files["component_templates/subscriptions-mappings"], drop(NEW_SUBSCRIPTION_FIELDS))


def test_setup_adds_the_alert_fields_to_an_index_created_before_them(
    noida_es: NoidaServer, es_prefix: str, es_client: Elasticsearch, tmp_path: Path
) -> None:
    apply_setup(noida_es.es_url, es_prefix, edited_templates(tmp_path / "old", _before_alert_status))
    legacy = Alert(subscription_id="iraq", article_id="old", title="Alerted by the previous version")
    old_doc = {k: v for k, v in alert_document(legacy).items() if k not in NEW_ALERT_FIELDS}
    es_client.index(index=f"{es_prefix}-alerts-write", id=legacy.id, document=old_doc, refresh=True)
    held = Alert(subscription_id="iraq", article_id="new", title="Held for a digest", status="pending")
    with (
        ElasticsearchStore(es_config(noida_es.es_url, es_prefix)) as store,
        pytest.raises(BadRequestError, match="strict_dynamic_mapping_exception"),
    ):
        store.record_alert(held)  # what the job would hit without the setup below

    report = apply_setup(noida_es.es_url, es_prefix)
    assert report.ok and report.indices["alerts"] == f"{es_prefix}-alerts-v1"  # same index, no migration
    assert f"index {es_prefix}-alerts-v1: mapping updated in place, added {', '.join(NEW_ALERT_FIELDS)}" in (
        report.actions
    )
    assert f"added {', '.join(NEW_SUBSCRIPTION_FIELDS)}" in " ".join(report.actions)
    assert not any("mapping updated" in a for a in apply_setup(noida_es.es_url, es_prefix).actions)

    with ElasticsearchStore(es_config(noida_es.es_url, es_prefix)) as store:
        assert store.record_alert(held) is True
        # The alert written before alerts had a status was delivered, as SQLite's migration says.
        assert keys(store.list_alerts(status="delivered")) == ["iraq/old"]
        assert store.list_alerts(status="delivered")[0].status == "delivered"
        assert keys(store.list_alerts(status=["pending"])) == ["iraq/new"]
        store.refresh()
        assert (store.counts()["alerts"], store.counts()["alerts_pending"]) == (2, 1)

    def retype(files: dict[str, Path]) -> None:
        def change(template: dict[str, Any]) -> None:
            properties = template["template"]["mappings"]["properties"]
            properties["status"] = {"type": "integer"}
            properties["priority"] = {"type": "integer"}

        update_json(files["component_templates/alerts-mappings"], change)

    with pytest.raises(SetupError, match=r"cannot add priority to .*index_version.*--migrate"):
        apply_setup(noida_es.es_url, es_prefix, edited_templates(tmp_path / "retyped", retype))


@pytest.mark.slow
def test_the_job_on_elasticsearch_suppresses_near_duplicates_and_releases_digests(
    noida_es: NoidaServer, es_prefix: str, tmp_path: Path
) -> None:
    apply_setup(noida_es.es_url, es_prefix)
    receiver = WebhookReceiver(secret=SECRET)
    settings = job_settings(
        tmp_path,
        seed_story_feeds(tmp_path),
        webhook_allow_private=True,
        sink="elasticsearch",
        es_url=noida_es.es_url,
        es_index_prefix=es_prefix,
        es_max_retries=2,
        es_max_backoff=0.5,
    )
    runner = CycleRunner(settings, build_sources(settings))
    runner.prepare()
    store = ElasticsearchStore(es_config(noida_es.es_url, es_prefix))
    try:
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
        # The same story from three feeds: one signed POST (the secret came back from Elasticsearch
        # unmasked), two suppressed near-duplicates pointing at it.
        first = runner.run_cycle(force=True)
        assert first.counts["new"] == 3
        assert (first.counts["alerts"], first.counts["alerts_suppressed"]) == (1, 2)
        posts = receiver.wait_for(1)
        assert len(posts) == 1 and posts[0].signature_ok is True
        delivered = posts[0].json()
        suppressed = store.list_alerts(subscription_id="iraq-withdrawal", status="suppressed")
        assert len(suppressed) == 2 and all(a.duplicate_of == delivered["id"] for a in suppressed)
        assert all(a.status_reason.startswith("near-duplicate (") for a in suppressed)

        # A digest subscription holds the next cycle's new article; a later cycle releases it.
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
                    "text": SEED_TEXT,
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
        assert second.counts["new"] == 1 and second.counts["alerts_pending"] == 1
        assert [a.title for a in store.list_alerts(status="pending")] == ["France to pull out its soldiers from Mali"]
        time.sleep(2.1)
        third = runner.run_cycle(force=True)
        assert (third.released.digests, third.released.alerts) == (1, 1)
        digest = receiver.wait_for(2)[1]
        assert digest.path == "/digest" and digest.signature_ok is True
        assert [a.status for a in store.list_alerts(subscription_id="troops-digest")] == ["digested"]
    finally:
        store.close()
        runner.close()
        receiver.close()

    # The CLI against the same indices, the store chosen by flags.
    flags = ["--sink", "elasticsearch", "--es-url", noida_es.es_url, "--es-index-prefix", es_prefix]
    env = {
        "NEWSWATCH_DATA_DIR": str(settings.data_dir),
        "NEWSWATCH_SUBSCRIPTIONS_FILE": str(settings.subscriptions_file),
    }
    shown = run_cli("alerts", "list", "--subscription", "iraq-withdrawal", *flags, env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("[iraq-withdrawal]") == 1
    everything = run_cli("alerts", "list", "--all", *flags, env=env)
    assert everything.returncode == 0, everything.stderr
    assert everything.stdout.count("[iraq-withdrawal]") == 3 and everything.stdout.count("[troops-digest]") == 1
    assert everything.stdout.count("suppressed: near-duplicate") == 2
    stats = json.loads(run_cli("stats", "--json", *flags, env=env).stdout)
    assert (stats["alerts"], stats["alerts_suppressed"], stats["alerts_pending"]) == (2, 2, 0)


def test_a_batch_of_alerts_is_recorded_in_one_request_like_sqlite(es_store: ElasticsearchStore, tmp_path: Path) -> None:
    """record_alerts answers per alert, as record_alert would: True when stored now, False for a pair that
    already alerted (in an earlier batch or earlier in this one); `alerted` names the stored ids."""
    alerts = history()
    with SqliteStore(tmp_path / "mirror.db") as sqlite:
        for store in (es_store, sqlite):
            assert store.record_alerts(alerts[:2]) == [True, True]
            again = alerts[1].model_copy(update={"status": "delivered", "created_at": BASE + timedelta(days=1)})
            assert store.record_alerts([*alerts[2:], again, alerts[2]]) == [True] * (len(alerts) - 2) + [False, False]
            assert store.alerted([a.id for a in alerts] + ["no-such-alert"]) == {a.id for a in alerts}
            assert store.record_alerts([]) == []
        assert keys(es_store.list_alerts(100)) == keys(sqlite.list_alerts(100)) == keys(alerts[::-1])
        assert es_store.list_alerts(100) == sqlite.list_alerts(100)
