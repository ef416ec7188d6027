"""What every article store offers the pipeline and the CLI, whatever its backend."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from pydantic import SecretStr

from schemas import Alert, Article, DeadLetter, Subscription

WriteOutcome = Literal["new", "updated"]


@dataclass(frozen=True)
class SearchQuery:
    text: str = ""
    topics: Sequence[str] = ()
    countries: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 20


@dataclass
class SearchHit:
    article: Article
    snippet: str = ""
    score: float | None = None
    highlights: list[str] = field(default_factory=list)


class StoreUnavailable(Exception):
    """The store could not be reached after retries: the cycle must fail and commit nothing."""


class RejectedDocument(Exception):
    """The store refused one document (e.g. a mapping error); it becomes a dead letter."""


class ArticleStore(Protocol):
    """Articles, alerts, dead letters and subscriptions. Writes are idempotent by id."""

    def write_articles(self, articles: Sequence[Article]) -> list[tuple[Article, WriteOutcome | RejectedDocument]]: ...

    def stored_hashes(self, ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """id -> (content_hash, enrichment_version) for the ids already stored."""
        ...

    def record_alert(self, alert: Alert) -> bool:
        """Store the alert; False when this (subscription, article) pair already alerted."""
        ...

    def record_alerts(self, alerts: Sequence[Alert]) -> list[bool]:
        """`record_alert` for many, in one transaction or bulk request; one answer per alert, in order."""
        ...

    def alerted(self, alert_ids: Sequence[str]) -> set[str]:
        """The ids among `alert_ids` already stored (an alert's id is its subscription and article)."""
        ...

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None: ...

    def search(self, query: SearchQuery) -> list[SearchHit]: ...

    def get_article(self, article_id: str) -> Article | None: ...

    def iter_articles(self, batch_size: int = 500) -> Iterable[Article]: ...

    def list_alerts(
        self,
        limit: int = 50,
        subscription_id: str | None = None,
        *,
        status: str | Sequence[str] | None = None,
        since: datetime | None = None,
    ) -> list[Alert]:
        """Newest first; `status` one or several Alert statuses (None: all); `since` on created_at."""
        ...

    def update_alerts(self, alerts: Sequence[Alert]) -> None:
        """Overwrite stored alerts by id (a pending alert becoming digested or cancelled)."""
        ...

    def list_dead_letters(self, limit: int = 50, stage: str | None = None) -> list[DeadLetter]: ...

    def counts(self) -> dict[str, int]: ...

    def list_subscriptions(self, include_disabled: bool = True) -> list[Subscription]: ...

    def put_subscription(self, subscription: Subscription) -> None: ...

    def remove_subscription(self, subscription_id: str) -> bool: ...

    def seed_subscriptions(self, defaults: Sequence[Subscription]) -> int:
        """Add the defaults once, on first use; a user who removed them does not get them back."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ElasticsearchConfig:
    """Where and how to reach Elasticsearch. Secrets stay SecretStr (masked in repr and logs)."""

    url: str = "http://localhost:9200"
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    ca_file: str | None = None
    index_prefix: str = "newswatch"
    timeout: float = 30.0
    max_retries: int = 8
    max_backoff: float = 30.0
    bulk_max_docs: int = 500
    bulk_max_bytes: int = 5 * 1024 * 1024


@dataclass(frozen=True)
class StoreConfig:
    """Picklable description of a store, so each Beam worker opens its own client in setup()."""

    kind: Literal["sqlite", "elasticsearch"] = "sqlite"
    sqlite_path: str = ".newswatch/newswatch.db"
    sqlite_busy_timeout: float = 30.0  # seconds a write waits for another process's lock before failing the cycle
    elasticsearch: ElasticsearchConfig = field(default_factory=ElasticsearchConfig)


def open_store(config: StoreConfig) -> ArticleStore:
    if config.kind == "sqlite":
        from connectors.sqlite_store import SqliteStore

        return SqliteStore(config.sqlite_path, busy_timeout=config.sqlite_busy_timeout)
    if config.kind == "elasticsearch":
        from connectors.elasticsearch import ElasticsearchStore

        return ElasticsearchStore(config.elasticsearch)
    raise StoreUnavailable(f"store kind {config.kind!r} is not available in this build")
