"""Delivery channels against real servers on loopback: webhooks (signatures, retries, timeouts, dead
letters, SSRF refusal), SMTP through aiosmtpd, and the gate (repeats, near-duplicates, digests, quiet hours)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from aiosmtpd.controller import Controller
from pydantic import SecretStr

from connectors.alert_channels import DeliveryError, JsonlFileChannel
from connectors.email_channel import SmtpConfig
from connectors.sqlite_store import SqliteStore
from connectors.webhook import UnsafeWebhook, WebhookChannel, WebhookPolicy, check_webhook_url
from pipelines.alerting import AlertGate, in_active_hours, release_pending
from pipelines.delivery import DeliveryConfig, Dispatcher
from pipelines.matching import make_alert
from schemas import Alert, Article, Subscription, TopicTag
from tests.alert_helpers import SEED_TEXT, SEED_TITLE, WebhookReceiver
from tests.servers import free_port

SECRET = "topsecret-hmac-key"
FAST = WebhookPolicy(timeout=0.5, attempts=3, backoff=0.01, backoff_max=0.05, allow_private=True)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(secret=SECRET)
    yield server
    server.close()


def seed_article(url: str = "https://news.example.com/world/iraq-parliament", title: str = SEED_TITLE) -> Article:
    return Article(
        title=title,
        text=SEED_TEXT,
        url=url,
        countries=["IQ", "US", "IR"],
        topics=[TopicTag(id="troop_withdrawal", score=0.99, evidence=["Iraq's parliament calls for expulsion"])],
    )


def subscription(**fields: Any) -> Subscription:
    values: dict[str, Any] = {"id": "iraq", "name": "Iraq withdrawal", "rule": {"topic": "troop_withdrawal"}}
    values.update(fields)
    return Subscription.model_validate(values)


def alert_for(sub: Subscription, art: Article) -> Alert:
    return make_alert(sub, art, ["topic troop_withdrawal (score 0.99)"])


# --- webhooks ---


def test_webhook_posts_the_alert_json_with_a_valid_hmac_signature(receiver: WebhookReceiver) -> None:
    sub = subscription()
    alert = alert_for(sub, seed_article())
    channel = WebhookChannel(receiver.url(), SecretStr(SECRET), FAST)
    channel.deliver(alert)
    (got,) = receiver.received
    assert got.signature_ok is True
    assert got.headers["X-Newswatch-Signature"].startswith("sha256=")
    assert got.headers["X-Newswatch-Event"] == "alert"
    body = got.json()
    assert body["subscription_id"] == "iraq" and body["title"] == SEED_TITLE
    assert body["url"] == "https://news.example.com/world/iraq-parliament"
    assert body["reasons"] == ["topic troop_withdrawal (score 0.99)"]
    assert Alert.model_validate(body).id == alert.id
    # A receiver with another secret rejects the same delivery.
    other = WebhookReceiver(secret="another-secret")
    try:
        WebhookChannel(other.url(), SecretStr(SECRET), FAST).deliver(alert)
        assert other.received[0].signature_ok is False
    finally:
        other.close()


def test_webhook_retries_server_errors_then_succeeds(receiver: WebhookReceiver) -> None:
    receiver.script = [500, 503]
    waits: list[float] = []
    channel = WebhookChannel(receiver.url(), SecretStr(SECRET), FAST, sleep=waits.append)
    channel.deliver(alert_for(subscription(), seed_article()))
    assert len(receiver.received) == 3 and all(r.signature_ok for r in receiver.received)
    assert waits == [0.01, 0.02]  # capped exponential backoff between attempts


def test_webhook_that_keeps_failing_becomes_a_dead_letter(receiver: WebhookReceiver, caplog: Any) -> None:
    receiver.default_status = 500
    sub = subscription(targets=[{"kind": "webhook", "url": receiver.url(), "secret": SECRET}])
    dispatcher = Dispatcher([], DeliveryConfig(webhook=FAST), sleep=lambda s: None)
    with caplog.at_level(logging.INFO):
        letters = dispatcher.deliver(sub, alert_for(sub, seed_article()))
    dispatcher.close()
    assert len(receiver.received) == FAST.attempts
    (letter,) = letters
    assert letter.stage == "deliver" and letter.source == "iraq"
    assert "gave up after 3 attempt(s); last: HTTP 500" in letter.reason
    assert Alert.model_validate_json(letter.payload).subscription_id == "iraq"
    assert SECRET not in caplog.text and SECRET not in letter.model_dump_json()


def test_webhook_hanging_past_the_timeout_is_retried_then_dead_lettered(receiver: WebhookReceiver) -> None:
    receiver.default_status = "hang"  # type: ignore[assignment]
    receiver.hang_seconds = 5.0
    sub = subscription(targets=[{"kind": "webhook", "url": receiver.url(), "secret": SECRET}])
    policy = WebhookPolicy(timeout=0.3, attempts=2, backoff=0.01, backoff_max=0.01, allow_private=True)
    dispatcher = Dispatcher([], DeliveryConfig(webhook=policy))
    started = time.monotonic()
    letters = dispatcher.deliver(sub, alert_for(sub, seed_article()))
    elapsed = time.monotonic() - started
    dispatcher.close()
    assert len(receiver.received) == 2
    assert "timed out" in letters[0].reason
    assert elapsed < 4.0  # bounded by the timeouts (2 x 0.3 s), not by the server hanging 5 s per request


def test_webhook_client_errors_are_not_retried(receiver: WebhookReceiver) -> None:
    receiver.default_status = 410
    with pytest.raises(DeliveryError, match="answered HTTP 410; not retried"):
        WebhookChannel(receiver.url(), SecretStr(SECRET), FAST).deliver(alert_for(subscription(), seed_article()))
    assert len(receiver.received) == 1


# --- SSRF ---


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://localhost/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.0.10/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::1]/hook", "loopback"),
        ("http://[::ffff:10.0.0.1]/hook", "private"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://240.0.0.1/hook", "reserved"),
    ],
)
def test_webhooks_to_non_public_addresses_are_refused(url: str, kind: str) -> None:
    with pytest.raises(UnsafeWebhook, match=f"a {kind} address"):
        check_webhook_url(url)
    check_webhook_url(url, allow_private=True)  # the operator may allow them


def test_ssrf_is_refused_at_creation_and_again_at_delivery(receiver: WebhookReceiver) -> None:
    from pipelines.subscriptions import SubscriptionError, subscription_from_options

    with pytest.raises(SubscriptionError, match=r"--webhook: webhook host .localhost. resolves to 127\.0\.0\.1"):
        subscription_from_options("x", topics=["coup"], webhook=receiver.url(host="localhost"), secret="s")
    # A subscription stored while private addresses were allowed is refused when the setting is off again,
    # before any request is made.
    strict = WebhookPolicy(timeout=0.5, attempts=3, backoff=0.0, allow_private=False)
    with pytest.raises(DeliveryError, match="NEWSWATCH_WEBHOOK_ALLOW_PRIVATE"):
        WebhookChannel(receiver.url(), SecretStr(SECRET), strict).deliver(alert_for(subscription(), seed_article()))
    assert receiver.received == []


def test_dns_rebinding_is_caught_on_the_connected_socket(receiver: WebhookReceiver) -> None:
    """The name resolved to a public address when checked, but the connection lands on loopback."""
    strict = WebhookPolicy(timeout=0.5, attempts=3, backoff=0.0, allow_private=False)
    rebinding = WebhookChannel(
        receiver.url(host="localhost"), SecretStr(SECRET), strict, resolver=lambda host, port: ["93.184.216.34"]
    )
    with pytest.raises(DeliveryError, match="refused a non-public address"):
        rebinding.deliver(alert_for(subscription(), seed_article()))
    assert receiver.received == []


def test_redirects_to_private_addresses_are_not_followed(receiver: WebhookReceiver) -> None:
    receiver.script = [307]
    receiver.redirect_to = "http://10.0.0.7/internal"
    strict = WebhookPolicy(timeout=0.5, attempts=3, backoff=0.0, allow_private=False)
    # The first hop is let through (its name checked as public, the session unguarded): the check of the
    # redirect target must then refuse 10.0.0.7 without connecting to it.
    channel = WebhookChannel(
        receiver.url(host="localhost"),
        SecretStr(SECRET),
        strict,
        session=requests.Session(),
        resolver=lambda host, port: ["93.184.216.34"],
    )
    with pytest.raises(DeliveryError, match=r"10\.0\.0\.7, a private address"):
        channel.deliver(alert_for(subscription(), seed_article()))
    assert len(receiver.received) == 1


# --- email ---


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[_Inbox, int]]:
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def test_email_alert_and_digest_reach_the_smtp_server(smtp_server: tuple[_Inbox, int], tmp_path: Path) -> None:
    inbox, port = smtp_server
    config = SmtpConfig(host="127.0.0.1", port=port, sender="alerts@newswatch.test")
    sub = subscription(targets=[{"kind": "email", "to": ["analyst@example.org", "desk@example.org"]}])
    dispatcher = Dispatcher([], DeliveryConfig(smtp=config))
    alert = alert_for(sub, seed_article())
    assert dispatcher.deliver(sub, alert) == []
    (envelope,) = inbox.messages
    assert envelope.mail_from == "alerts@newswatch.test"
    assert sorted(envelope.rcpt_tos) == ["analyst@example.org", "desk@example.org"]
    text = envelope.content.decode("utf-8", "replace")
    assert "Subject: [newswatch] Iraq withdrawal: Iraq's parliament calls for expulsion" in text
    assert "https://news.example.com/world/iraq-parliament" in text
    assert "topic troop_withdrawal (score 0.99)" in text

    from schemas import AlertDigest

    second = alert_for(sub, seed_article(url="https://other.example.org/b", title="Second story"))
    assert dispatcher.deliver_digest(sub, AlertDigest(subscription_id=sub.id, alerts=[alert, second])) == []
    assert len(inbox.messages) == 2
    digest_text = inbox.messages[1].content.decode("utf-8", "replace")
    assert "digest of 2 alert(s)" in digest_text and "Second story" in digest_text
    dispatcher.close()


def test_email_to_an_unreachable_server_is_retried_then_dead_lettered() -> None:
    config = SmtpConfig(
        host="127.0.0.1",
        port=free_port(),
        timeout=1.0,
        attempts=2,
        backoff=0.01,
        password=SecretStr("smtp-pass"),
        username="u",
    )
    sub = subscription(targets=[{"kind": "email", "to": ["analyst@example.org"]}])
    letters = Dispatcher([], DeliveryConfig(smtp=config)).deliver(sub, alert_for(sub, seed_article()))
    assert "gave up after 2 attempt(s)" in letters[0].reason
    assert "smtp-pass" not in letters[0].model_dump_json() and "smtp-pass" not in repr(config)
    # Without an SMTP server configured, email targets fail visibly instead of vanishing.
    letters = Dispatcher([], DeliveryConfig(smtp=None)).deliver(sub, alert_for(sub, seed_article()))
    assert "no SMTP server configured" in letters[0].reason


# --- the gate: repeats, near-duplicates, digests, quiet hours ---


def _store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "store.db")


def test_the_same_article_alerts_once_and_near_duplicates_are_suppressed_visibly(tmp_path: Path) -> None:
    sub = subscription(realert="6h")
    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    first = seed_article("https://wire.example/iraq")
    copies = [
        seed_article("https://desk.example/iraq-story", "Iraqi parliament calls for expulsion of US troops"),
        Article(
            title="Iraq parliament votes to expel U.S. troops after Soleimani strike",
            text=SEED_TEXT.replace("Iraq’s Parliament", "Iraq's lawmakers")[:900],
            url="https://monitor.example/2020/iraq",
            countries=["IQ"],
        ),
    ]
    other_story = seed_article("https://wire.example/mali", "France to pull out its soldiers from Mali")
    other_story.text = "France will withdraw its troops from Mali after nine years, President Macron said."
    with _store(tmp_path) as store:
        gate = AlertGate(store)
        result = gate.admit(sub, [alert_for(sub, a) for a in [first, *copies, other_story]], now=now)
        assert result.counts == {"delivered": 2, "suppressed": 2}
        suppressed = [a for a in result.recorded if a.status == "suppressed"]
        first_id = next(a.id for a in result.recorded if a.url == "https://wire.example/iraq")
        assert {a.duplicate_of for a in suppressed} == {first_id}
        assert "within realert 6h" in suppressed[0].status_reason
        # The same article again: a repeat, not recorded twice.
        again = gate.admit(sub, [alert_for(sub, first)], now=now + timedelta(minutes=5))
        assert again.counts == {"repeated": 1} and again.recorded == []
        # After the window the same story may alert again (a new URL, e.g. a follow-up copy).
        later = gate.admit(
            sub, [alert_for(sub, seed_article("https://late.example/iraq"))], now=now + timedelta(hours=7)
        )
        assert later.counts == {"delivered": 1}
        # Suppressed alerts are stored and listable, not dropped; counts separate them.
        assert len(store.list_alerts(status="suppressed")) == 2
        assert store.counts()["alerts"] == 3 and store.counts()["alerts_suppressed"] == 2
        # realert 0 turns near-duplicate suppression off.
        loose = subscription(id="loose", realert=0)
        assert gate.admit(loose, [alert_for(loose, a) for a in [first, *copies]], now=now).counts == {"delivered": 3}


def test_digest_batches_alerts_and_releases_them_when_the_interval_elapses(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    sub = subscription(digest="1h", realert=0, targets=[{"kind": "webhook", "url": receiver.url(), "secret": SECRET}])
    start = datetime(2024, 5, 1, 9, tzinfo=UTC)
    jsonl = JsonlFileChannel(tmp_path / "alerts.jsonl")
    dispatcher = Dispatcher([jsonl], DeliveryConfig(webhook=FAST))
    with _store(tmp_path) as store:
        store.put_subscription(sub)
        gate = AlertGate(store)
        arts = [seed_article(f"https://x.example/{n}", f"Story number {n} about troops") for n in range(3)]
        assert gate.admit(sub, [alert_for(sub, arts[0])], now=start).counts == {"pending": 1}
        assert gate.admit(sub, [alert_for(sub, a) for a in arts[1:]], now=start + timedelta(minutes=20)).counts == {
            "pending": 2
        }
        subs = {sub.id: sub}
        early = release_pending(store, dispatcher, subs, now=start + timedelta(minutes=59))
        assert early.digests == 0 and receiver.received == []
        report = release_pending(store, dispatcher, subs, now=start + timedelta(hours=1))
        assert (report.digests, report.alerts, report.dead_letters) == (1, 3, [])
        (post,) = receiver.received
        assert post.signature_ok and post.headers["X-Newswatch-Event"] == "digest"
        assert [a["title"] for a in post.json()["alerts"]] == [a.title for a in arts]
        assert {a.status for a in store.list_alerts(subscription_id=sub.id)} == {"digested"}
        assert len((tmp_path / "alerts.jsonl").read_text().splitlines()) == 3  # one line per alert
        assert release_pending(store, dispatcher, subs, now=start + timedelta(hours=3)).digests == 0  # sent once
    dispatcher.close()


def test_quiet_hours_hold_alerts_until_the_window_opens(tmp_path: Path) -> None:
    sub = subscription(active_hours="08:00-18:00", timezone="Europe/Berlin", realert=0)
    night = datetime(2024, 5, 1, 1, tzinfo=UTC)  # 03:00 in Berlin
    morning = datetime(2024, 5, 1, 6, 30, tzinfo=UTC)  # 08:30 in Berlin
    assert not in_active_hours(sub, night) and in_active_hours(sub, morning)
    assert in_active_hours(subscription(active_hours="22:00-06:00"), datetime(2024, 5, 1, 23, tzinfo=UTC))
    jsonl = JsonlFileChannel(tmp_path / "out.jsonl")
    with _store(tmp_path) as store:
        store.put_subscription(sub)
        result = AlertGate(store).admit(sub, [alert_for(sub, seed_article())], now=night)
        assert result.counts == {"pending": 1}
        assert "outside active hours 08:00-18:00 Europe/Berlin" in result.recorded[0].status_reason
        dispatcher = Dispatcher([jsonl])
        assert release_pending(store, dispatcher, {sub.id: sub}, now=night + timedelta(hours=1)).alerts == 0
        assert release_pending(store, dispatcher, {sub.id: sub}, now=morning).alerts == 1
        # A removed subscription's pending alerts are cancelled, visibly.
        gone = subscription(id="gone", digest="1h")
        AlertGate(store).admit(gone, [alert_for(gone, seed_article())], now=morning)
        assert release_pending(store, dispatcher, {sub.id: sub}, now=morning).cancelled == 1
        (cancelled,) = store.list_alerts(status="cancelled")
        assert cancelled.status_reason == "subscription removed"
