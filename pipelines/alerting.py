"""What happens to a matched alert: repeated, suppressed as a near-duplicate, held for a digest, or sent.

Every outcome except a repeat is recorded in the store with its status, so suppressed and held alerts are
visible (`newswatch alerts list --all`) rather than silently dropped. Pending alerts are released at cycle
boundaries by `release_pending`, as one digest per subscription.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from itertools import islice
from time import monotonic
from zoneinfo import ZoneInfo

from connectors.store import ArticleStore
from pipelines.delivery import Dispatcher
from pipelines.matching import SubscriptionMatcher, key_frequencies
from pipelines.neardup import TEXT_THRESHOLD as NEAR_DUPLICATE
from pipelines.neardup import Fingerprint, NearDuplicateIndex, fingerprint, similarity
from schemas import Alert, AlertDigest, DeadLetter, Subscription, format_duration, utcnow

LIVE_STATUSES = ("delivered", "pending", "digested")  # alerts the subscriber was or will be told about
RECENT_LIMIT = 2000


def _build_matcher(subscriptions: list[Subscription], store: ArticleStore, sample: int) -> SubscriptionMatcher:
    """The subscriptions indexed under their rarest keys as seen in a sample of stored articles."""
    frequencies = key_frequencies(islice(store.iter_articles(batch_size=sample), sample)) if sample else None
    return SubscriptionMatcher(subscriptions, frequencies or None)


class MatcherCache:
    """The matcher of each store, kept between pipeline runs of one process (the job's cycles) while its
    subscriptions stay the same: building it reads and analyses a sample of stored articles, a fixed cost
    of a few hundred milliseconds that a cycle of a few articles should not pay. Subscriptions are read
    every time (a small query), so a change still takes effect from the next cycle; the key statistics
    are refreshed after `max_age_s` even without one."""

    def __init__(self, max_age_s: float = 3600.0) -> None:
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._built: dict[Hashable, tuple[str, float, SubscriptionMatcher]] = {}

    def get(self, key: Hashable, store: ArticleStore, sample: int = 300) -> SubscriptionMatcher:
        subscriptions = store.list_subscriptions(include_disabled=False)
        version = hashlib.sha256("\n".join(s.model_dump_json() for s in subscriptions).encode()).hexdigest()
        now = monotonic()
        with self._lock:
            cached = self._built.get(key)
        if cached is not None and cached[0] == version and now - cached[1] < self.max_age_s:
            return cached[2]
        matcher = _build_matcher(subscriptions, store, sample)
        with self._lock:
            self._built[key] = (version, now, matcher)
        return matcher


shared_matchers = MatcherCache()


def in_active_hours(subscription: Subscription, now: datetime) -> bool:
    if not subscription.active_hours:
        return True
    start_text, end_text = subscription.active_hours.split("-")
    start, end = time.fromisoformat(start_text), time.fromisoformat(end_text)
    local = now.astimezone(ZoneInfo(subscription.timezone)).time()
    if start <= end:
        return start <= local < end
    return local >= start or local < end  # a window across midnight, e.g. 22:00-06:00


def _order(alert: Alert) -> tuple[datetime, str]:
    return (alert.published or alert.created_at, alert.article_id)


@dataclass
class GateResult:
    """The recorded alerts of one batch (with their status) and how many of each outcome there were."""

    recorded: list[Alert] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def to_deliver(self) -> list[Alert]:
        return [a for a in self.recorded if a.status == "delivered"]


class AlertGate:
    """Decides, per subscription, the fate of its newly matched alerts against what it already said."""

    def __init__(self, store: ArticleStore) -> None:
        self.store = store

    def admit(self, subscription: Subscription, alerts: Iterable[Alert], now: datetime | None = None) -> GateResult:
        now = now or utcnow()
        result = GateResult()
        recent = _RecentAlerts()
        if subscription.realert > timedelta(0):
            earlier = self.store.list_alerts(
                RECENT_LIMIT, subscription.id, status=LIVE_STATUSES, since=now - subscription.realert
            )
            for earlier_alert in earlier:
                recent.add(earlier_alert, fingerprint(earlier_alert.title, earlier_alert.summary))
        held_reason = ""
        if subscription.digest is not None:
            held_reason = f"digest every {format_duration(subscription.digest)}"
        elif not in_active_hours(subscription, now):
            held_reason = f"outside active hours {subscription.active_hours} {subscription.timezone}"
        ordered = sorted(alerts, key=_order)
        already = self.store.alerted([a.id for a in ordered]) if ordered else set()
        decisions: list[Alert] = []
        for alert in ordered:
            if alert.id in already:
                result.counts["repeated"] += 1  # this subscription already alerted on this article
                continue
            mark = fingerprint(alert.title, alert.summary)
            duplicate, score = recent.closest(mark, alert.article_id)
            if duplicate is not None:
                decided = alert.model_copy(
                    update={
                        "status": "suppressed",
                        "duplicate_of": duplicate.id,
                        "status_reason": f"near-duplicate ({score:.2f}) of {duplicate.title!r}, alerted "
                        f"{duplicate.created_at:%Y-%m-%d %H:%M} UTC, within realert "
                        f"{format_duration(subscription.realert)}",
                        "created_at": now,
                    }
                )
            elif held_reason:
                decided = alert.model_copy(
                    update={"status": "pending", "status_reason": held_reason, "created_at": now}
                )
            else:
                decided = alert.model_copy(update={"status": "delivered", "created_at": now})
            decisions.append(decided)
            if decided.status != "suppressed" and subscription.realert > timedelta(0):
                recent.add(decided, mark)
        # One transaction (or bulk request) for the batch; an alert recorded meanwhile by another job
        # instance is a repeat after all.
        for decided, recorded in zip(decisions, self.store.record_alerts(decisions), strict=True):
            if not recorded:
                result.counts["repeated"] += 1
                continue
            result.counts[decided.status] += 1
            result.recorded.append(decided)
        return result


class _RecentAlerts:
    """A subscription's alerts within its realert window, indexed for the near-duplicate check."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.index = NearDuplicateIndex()

    def add(self, alert: Alert, mark: Fingerprint) -> None:
        self.alerts.append(alert)
        self.index.add(mark)

    def closest(self, mark: Fingerprint, article_id: str) -> tuple[Alert | None, float]:
        """The most similar earlier alert at or above the threshold (the earliest of equals)."""
        best: Alert | None = None
        best_score = 0.0
        for position in self.index.candidates(mark):
            alert = self.alerts[position]
            if alert.article_id == article_id:
                continue  # the same article again is a repeat, which record_alert decides
            score = similarity(mark, self.index.items[position])
            if score >= NEAR_DUPLICATE and score > best_score:
                best, best_score = alert, score
        return best, best_score


@dataclass
class ReleaseReport:
    digests: int = 0
    alerts: int = 0
    cancelled: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)


def release_pending(
    store: ArticleStore,
    dispatcher: Dispatcher,
    subscriptions: Mapping[str, Subscription],
    now: datetime | None = None,
    limit: int = 10_000,
) -> ReleaseReport:
    """Deliver, as one digest per subscription, the pending alerts whose interval elapsed (or whose quiet
    hours ended); alerts of removed or disabled subscriptions are cancelled, visibly."""
    now = now or utcnow()
    report = ReleaseReport()
    by_subscription: dict[str, list[Alert]] = defaultdict(list)
    for alert in store.list_alerts(limit, status="pending"):
        by_subscription[alert.subscription_id].append(alert)
    for subscription_id, alerts in sorted(by_subscription.items()):
        alerts.sort(key=lambda a: (a.created_at, a.article_id))
        subscription = subscriptions.get(subscription_id)
        if subscription is None or not subscription.enabled:
            why = "subscription removed" if subscription is None else "subscription disabled"
            store.update_alerts([a.model_copy(update={"status": "cancelled", "status_reason": why}) for a in alerts])
            report.cancelled += len(alerts)
            continue
        if not in_active_hours(subscription, now):
            continue
        if subscription.digest is not None and now < alerts[0].created_at + subscription.digest:
            continue
        released = [a.model_copy(update={"status": "digested"}) for a in alerts]
        digest = AlertDigest(subscription_id=subscription.id, subscription_name=subscription.name, alerts=released)
        report.dead_letters += dispatcher.deliver_digest(subscription, digest)
        store.update_alerts(released)
        report.digests += 1
        report.alerts += len(released)
    return report
