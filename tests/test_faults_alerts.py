"""Alert delivery faults over real sockets: a webhook receiver that resets every connection, and a webhook
that hangs while another subscription's alerts go out in the same cycle.

A receiver answering 500, or hanging past the timeout, for one channel: tests/test_alert_delivery.py
(retries, capped backoff, dead letter); SSRF refusals: tests/test_alert_delivery.py too."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.sqlite_store import SqliteStore
from connectors.webhook import WebhookPolicy
from pipelines.delivery import DeliveryConfig, Dispatcher
from pipelines.job import CycleRunner, build_sources
from pipelines.matching import make_alert
from pipelines.subscriptions import subscription_from_options
from schemas import Article, Subscription, TopicTag
from tests.alert_helpers import SEED_TEXT, SEED_TITLE, WebhookReceiver, job_settings, write_feed
from tests.fault_support import ResettingServer, feed_states

SECRET = "fault-test-secret"


@pytest.fixture
def resetting() -> Iterator[ResettingServer]:
    server = ResettingServer()
    yield server
    server.close()


def _subscription(target_url: str, name: str = "Iraq withdrawal") -> Subscription:
    return subscription_from_options(
        name, topics=["troop_withdrawal"], webhook=target_url, secret=SECRET, allow_private_webhooks=True
    )


def test_connection_resets_are_retried_with_capped_backoff_then_dead_lettered(resetting: ResettingServer) -> None:
    sub = _subscription(resetting.url())
    article = Article(
        title=SEED_TITLE,
        text=SEED_TEXT,
        url="https://news.example.com/iraq",
        topics=[TopicTag(id="troop_withdrawal", score=0.99)],
    )
    alert = make_alert(sub, article, ["topic troop_withdrawal (score 0.99)"])
    waits: list[float] = []
    policy = WebhookPolicy(timeout=2.0, attempts=4, backoff=0.05, backoff_max=0.1, allow_private=True)
    dispatcher = Dispatcher([], DeliveryConfig(webhook=policy), sleep=waits.append)
    try:
        (letter,) = dispatcher.deliver(sub, alert)
    finally:
        dispatcher.close()
    assert resetting.connections == 4  # every attempt reached the receiver and was reset
    assert waits == [0.05, 0.1, 0.1]  # exponential, capped at backoff_max
    assert letter.stage == "deliver" and letter.source == sub.id
    assert letter.reason.startswith("webhook: ")
    assert "gave up after 4 attempt(s); last: ConnectionError" in letter.reason
    assert json.loads(letter.payload)["id"] == alert.id  # the alert itself, to deliver again by hand
    assert SECRET not in letter.model_dump_json()


@pytest.mark.slow
def test_a_hanging_webhook_does_not_hold_back_other_subscriptions(tmp_path: Path, resetting: ResettingServer) -> None:
    """Three subscriptions match the same article: one webhook hangs, one resets, one works. In that same
    cycle the working one and the operator's JSON Lines file get their alerts, the failing ones become dead
    letters after their bounded retries, and the cycle commits."""
    hanging = WebhookReceiver(secret=SECRET, default_status="hang", hang_seconds=30)  # type: ignore[arg-type]
    healthy = WebhookReceiver(secret=SECRET)
    feed = write_feed(
        tmp_path,
        "wire.xml",
        [
            {
                "title": SEED_TITLE,
                "link": "https://wire.example/iraq",
                "text": SEED_TEXT,
                "published": datetime(2020, 1, 5, 18, tzinfo=UTC),
            }
        ],
    )
    settings = job_settings(
        tmp_path,
        [feed],
        webhook_allow_private=True,
        webhook_timeout=1.0,
        webhook_attempts=2,
        webhook_backoff_max=0.2,
        alerts_file=tmp_path / "alerts.jsonl",
    )
    runner = CycleRunner(settings, build_sources(settings))
    runner.prepare()
    store = SqliteStore(settings.store_path)
    subscriptions = {
        "hangs": _subscription(hanging.url("/a"), "A hangs"),
        "resets": _subscription(resetting.url("/b"), "B resets"),
        "works": _subscription(healthy.url("/c"), "C works"),
    }
    for sub in subscriptions.values():
        store.put_subscription(sub)
    try:
        started = time.monotonic()
        summary = runner.run_cycle(force=True)
        elapsed = time.monotonic() - started
        assert summary.counts["alerts"] == 3
        # The working webhook got its alert in this cycle, signed.
        (post,) = healthy.received
        assert post.signature_ok and post.json()["subscription_id"] == subscriptions["works"].id
        # The operator channel got all three.
        lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
        assert sorted(json.loads(line)["subscription_id"] for line in lines) == sorted(
            s.id for s in subscriptions.values()
        )
        # The failing ones: each attempt made, then a dead letter naming the channel and why.
        assert len(hanging.received) == 2 and resetting.connections == 2
        letters = {d.source: d.reason for d in store.list_dead_letters(stage="deliver")}
        assert set(letters) == {subscriptions["hangs"].id, subscriptions["resets"].id}
        assert "gave up after 2 attempt(s); last: ReadTimeout (timed out)" in letters[subscriptions["hangs"].id]
        assert "gave up after 2 attempt(s); last: ConnectionError" in letters[subscriptions["resets"].id]
        # Bounded by the retry policy (2 x 1 s timeouts), not by the receiver hanging 30 s; and committed.
        assert elapsed < 25
        assert len(feed_states(settings.state_path)) == 1
    finally:
        store.close()
        runner.close()
        hanging.close()
        healthy.close()
