"""Elasticsearch as the article store: bulk upserts with bounded retries, searches, alerts, dead letters.

Indices are versioned (`<prefix>-articles-v1`) behind a read alias (`<prefix>-articles`) and a write
alias (`<prefix>-articles-write`); `newswatch es setup` (connectors/es_setup.py) creates them from
deploy/elasticsearch. Writes go through the write alias with `require_alias`, so a job started before
setup fails loudly instead of auto-creating an index with guessed mappings.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from elastic_transport import BaseNode
from elasticsearch import (
    ApiError,
    ConflictError,
    ConnectionError,
    ConnectionTimeout,
    Elasticsearch,
    NotFoundError,
    SSLError,
)

from connectors.es_documents import (
    SUBSCRIPTION_KIND,
    alert_document,
    alert_from_source,
    article_document,
    article_from_source,
    dead_letter_document,
    dead_letter_from_source,
    subscription_document,
    subscription_from_source,
)
from connectors.store import (
    ElasticsearchConfig,
    RejectedDocument,
    SearchHit,
    SearchQuery,
    StoreUnavailable,
    WriteOutcome,
)
from schemas import Alert, Article, DeadLetter, Subscription

log = logging.getLogger(__name__)

T = TypeVar("T")
Kind = Literal["articles", "alerts", "deadletters", "subscriptions"]
KINDS: tuple[Kind, ...] = ("articles", "alerts", "deadletters", "subscriptions")
SEEDED_MARKER_ID = "~seeded"  # not a valid subscription id, so it cannot collide with one


class IndexLayout:
    """Names of the aliases and versioned indices for one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def read_alias(self, kind: Kind) -> str:
        return f"{self.prefix}-{kind}"

    def write_alias(self, kind: Kind) -> str:
        return f"{self.prefix}-{kind}-write"

    def index_name(self, kind: Kind, version: int, rollover: bool = False) -> str:
        """`<prefix>-<kind>-v<N>`, with `-000001` where ILM rolls the index over."""
        name = f"{self.prefix}-{kind}-v{version}"
        return f"{name}-000001" if rollover else name

    def index_pattern(self, kind: Kind) -> str:
        return f"{self.prefix}-{kind}-v*"


# --- client and retries ---


def split_url_credentials(url: str) -> tuple[list[str], tuple[str, str] | None]:
    """Comma-separated node URLs, with any user:password@ moved out of the URL (so it is never logged)."""
    hosts: list[str] = []
    auth: tuple[str, str] | None = None
    for raw in (u.strip() for u in url.split(",")):
        if not raw:
            continue
        parts = urlsplit(raw if "://" in raw else f"http://{raw}")
        if parts.username is not None:
            auth = (unquote(parts.username), unquote(parts.password or ""))
            netloc = parts.hostname or ""
            if parts.port:
                netloc += f":{parts.port}"
            parts = parts._replace(netloc=netloc)
        hosts.append(urlunsplit(parts))
    if not hosts:
        raise StoreUnavailable("es_url is empty")
    return hosts, auth


def redact_url(url: str) -> str:
    """The URL(s) as safe to print: credentials removed."""
    try:
        return ",".join(split_url_credentials(url)[0])
    except StoreUnavailable:
        return ""


def make_client(config: ElasticsearchConfig, node_class: type[BaseNode] | None = None) -> Elasticsearch:
    """An 8.x client with its own retries off: RetryPolicy below decides what is retried and how long."""
    hosts, url_auth = split_url_credentials(config.url)
    kwargs: dict[str, Any] = {"request_timeout": config.timeout, "max_retries": 0, "retry_on_timeout": False}
    if config.api_key is not None:
        kwargs["api_key"] = config.api_key.get_secret_value()
    elif config.username:
        kwargs["basic_auth"] = (config.username, config.password.get_secret_value() if config.password else "")
    elif url_auth:
        kwargs["basic_auth"] = url_auth
    if config.ca_file:
        if not Path(config.ca_file).is_file():
            raise StoreUnavailable(f"es_ca_file {config.ca_file}: no such file")
        kwargs["ca_certs"] = config.ca_file
    if node_class is not None:
        kwargs["node_class"] = node_class
    return Elasticsearch(hosts, **kwargs)


def retryable_status(status: int) -> bool:
    """Throttling (429) and server-side failures (5xx) are worth another try; other 4xx are not."""
    return status == 429 or status >= 500


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff: initial, 2x, 4x ... up to max_backoff, with a little jitter."""

    max_retries: int = 8
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    jitter: float = 0.2

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Wait before retry number `attempt` (1-based); never above max_backoff."""
        base = min(self.max_backoff, self.initial_backoff * (2 ** (attempt - 1)))
        return base * (1 - self.jitter * (rng or random).random())


def _error_type(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("type", ""))
        if isinstance(error, str):
            return error
    return ""


def describe_error(error: Any) -> str:
    """One line from an Elasticsearch error object: type, reason and the innermost cause."""
    if not isinstance(error, dict):
        return str(error)
    text = f"{error.get('type', 'error')}: {error.get('reason', '')}".strip()
    cause = error.get("caused_by")
    while isinstance(cause, dict):
        text += f" (caused by {cause.get('type', '')}: {cause.get('reason', '')})"
        cause = cause.get("caused_by")
    return text


class Retrier:
    """Runs one Elasticsearch call, retrying connection errors, 429 and 5xx with capped backoff;
    raises StoreUnavailable when the cluster stays unreachable or refuses us outright."""

    def __init__(self, policy: RetryPolicy, sleep: Callable[[float], None] = time.sleep) -> None:
        self.policy = policy
        self.sleep = sleep
        self.rng = random.Random()

    def wait(self, what: str, attempt: int, error: str) -> None:
        if attempt > self.policy.max_retries:
            raise StoreUnavailable(f"{what}: Elasticsearch still failing after {attempt} attempt(s): {error}")
        delay = self.policy.delay(attempt, self.rng)
        log.warning("es retry op=%s attempt=%d wait=%.2fs error=%s", what, attempt, delay, error)
        self.sleep(delay)

    def call(self, what: str, fn: Callable[[], T]) -> T:
        attempt = 0
        while True:
            try:
                return fn()
            except ApiError as exc:
                error = classify_api_error(what, exc)
            except SSLError as exc:
                raise StoreUnavailable(f"{what}: TLS failure talking to Elasticsearch: {exc}") from None
            except (ConnectionError, ConnectionTimeout) as exc:
                error = f"{type(exc).__name__}: {exc}"
            attempt += 1
            self.wait(what, attempt, error)


def classify_api_error(what: str, exc: ApiError) -> str:
    """Describe a retryable error; raise StoreUnavailable for what no retry fixes (credentials, no
    index: the cycle must fail), and re-raise any other client error to the caller."""
    status = exc.meta.status
    if status in (401, 403):
        raise StoreUnavailable(
            f"{what}: Elasticsearch refused the credentials ({status} {describe_error(_body_error(exc))})"
        ) from None
    if _error_type(exc.body) == "index_not_found_exception":
        raise StoreUnavailable(f"{what}: {describe_error(_body_error(exc))}; run `newswatch es setup` first") from None
    if not retryable_status(status):
        raise exc
    return f"{status} {describe_error(_body_error(exc))}"


def _body_error(exc: ApiError) -> Any:
    body = exc.body
    return body.get("error", body) if isinstance(body, dict) else body


# --- bulk ---


@dataclass
class BulkItem:
    """One document of a bulk request, serialized once: its size decides the batch it goes in."""

    position: int
    doc_id: str
    action: bytes
    source: bytes

    @property
    def size(self) -> int:
        return len(self.action) + len(self.source) + 2


@dataclass
class BulkResult:
    status: int
    result: str = ""
    error: str | None = None
    error_type: str = ""
    retried: bool = False  # sent more than once: an earlier attempt may have been applied


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def bulk_items(
    index: str, op: Literal["index", "create", "update"], docs: Sequence[tuple[str, dict[str, Any]]]
) -> list[BulkItem]:
    """`update` replaces the fields of an existing document and fails (404) where there is none."""
    return [
        BulkItem(
            position,
            doc_id,
            _dumps({op: {"_index": index, "_id": doc_id}}),
            _dumps({"doc": doc} if op == "update" else doc),
        )
        for position, (doc_id, doc) in enumerate(docs)
    ]


def batches(items: Sequence[BulkItem], max_docs: int, max_bytes: int) -> Iterator[list[BulkItem]]:
    """Consecutive batches of at most max_docs items and max_bytes bytes (a larger item goes alone)."""
    batch: list[BulkItem] = []
    size = 0
    for item in items:
        if batch and (len(batch) >= max_docs or size + item.size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item.size
    if batch:
        yield batch


class BulkWriter:
    """Sends bulk requests bounded by count and bytes; like elasticsearch-py's streaming_bulk it
    retries only the items that failed with 429/5xx (and whole requests on connection errors),
    with capped exponential backoff, and returns per-document results for everything else."""

    def __init__(self, client: Elasticsearch, retrier: Retrier, max_docs: int, max_bytes: int) -> None:
        self.client, self.retrier = client, retrier
        self.max_docs, self.max_bytes = max_docs, max_bytes

    def write(self, items: Sequence[BulkItem], index: str) -> list[BulkResult]:
        results: list[BulkResult | None] = [None] * len(items)
        for batch in batches(items, self.max_docs, self.max_bytes):
            self._send(batch, results, index)
        return [r if r is not None else BulkResult(500, error="no result") for r in results]

    def _send(self, batch: list[BulkItem], results: list[BulkResult | None], index: str) -> None:
        started = time.monotonic()
        pending, attempt, retried = batch, 0, 0
        counts = {"created": 0, "updated": 0, "rejected": 0}
        while pending:
            error = ""
            try:
                # Pre-serialized NDJSON lines (bytes): the client's serializer passes them through as they are.
                lines: Any = [line for item in pending for line in (item.action, item.source)]
                response = self.client.bulk(operations=lines, require_alias=True)
            except ApiError as exc:
                if exc.meta.status == 413 and len(pending) > 1:
                    half = len(pending) // 2  # too large for the cluster's http.max_content_length: split
                    self._send(pending[:half], results, index)
                    self._send(pending[half:], results, index)
                    return
                if exc.meta.status == 413:
                    item = pending[0]
                    results[item.position] = BulkResult(413, error="document larger than the cluster accepts (413)")
                    return
                error = classify_api_error(f"bulk {index}", exc)
            except SSLError as exc:
                raise StoreUnavailable(f"bulk {index}: TLS failure talking to Elasticsearch: {exc}") from None
            except (ConnectionError, ConnectionTimeout) as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                retry: list[BulkItem] = []
                for item, entry in zip(pending, response["items"], strict=True):
                    info = next(iter(entry.values()))
                    status = int(info.get("status", 500))
                    if "error" not in info:
                        outcome = str(info.get("result", ""))
                        results[item.position] = BulkResult(status, result=outcome, retried=attempt > 0)
                        counts[outcome] = counts.get(outcome, 0) + 1
                        continue
                    etype = _error_type({"error": info["error"]})
                    if etype == "index_not_found_exception":
                        raise StoreUnavailable(
                            f"bulk {index}: {describe_error(info['error'])}; run `newswatch es setup` first"
                        )
                    if retryable_status(status):
                        retry.append(item)
                        error = f"{status} {describe_error(info['error'])}"
                        continue
                    counts["rejected"] += 1
                    results[item.position] = BulkResult(
                        status, error=describe_error(info["error"]), error_type=etype, retried=attempt > 0
                    )
                pending = retry
                if not pending:
                    break
            attempt += 1
            retried += len(pending)
            self.retrier.wait(f"bulk {index} ({len(pending)} doc(s))", attempt, error)
        log.info(
            "es bulk index=%s docs=%d bytes=%d created=%d updated=%d rejected=%d retried=%d seconds=%.2f",
            index,
            len(batch),
            sum(i.size for i in batch),
            counts.get("created", 0),
            counts.get("updated", 0),
            counts["rejected"],
            retried,
            time.monotonic() - started,
        )


# --- search ---


def build_search(query: SearchQuery) -> dict[str, Any]:
    """The search body for a SearchQuery: Lucene query syntax on title/summary/text, tag and date filters."""
    filters: list[dict[str, Any]] = [{"term": {"topics.id": t}} for t in query.topics]
    filters += [{"term": {"countries": c.upper()}} for c in query.countries]
    if query.since or query.until:
        bounds: dict[str, str] = {}
        if query.since:
            bounds["gte"] = query.since.astimezone(UTC).isoformat()
        if query.until:
            bounds["lt"] = query.until.astimezone(UTC).isoformat()
        filters.append({"range": {"published": bounds}})
    body: dict[str, Any] = {"size": query.limit, "track_total_hits": False}
    text = query.text.strip()
    if text:
        body["query"] = {
            "bool": {
                "must": [
                    {
                        "query_string": {
                            "query": text,
                            "fields": ["title^4", "summary^2", "text"],
                            "default_operator": "AND",
                        }
                    }
                ],
                "filter": filters,
            }
        }
        body["highlight"] = {
            "pre_tags": ["["],
            "post_tags": ["]"],
            "fields": {
                "text": {"fragment_size": 160, "number_of_fragments": 2},
                "summary": {"fragment_size": 160, "number_of_fragments": 1},
                "title": {"number_of_fragments": 0},
            },
        }
    else:
        body["query"] = {"bool": {"filter": filters}} if filters else {"match_all": {}}
        body["sort"] = [{"published": {"order": "desc", "missing": "_last"}}, {"id": "asc"}]
    return body


def lenient_search(body: dict[str, Any]) -> dict[str, Any]:
    """The same search with `simple_query_string`, which never fails on syntax (stray quotes, colons)."""
    relaxed = json.loads(json.dumps(body))
    must = relaxed["query"]["bool"]["must"][0]
    qs = must.pop("query_string")
    must["simple_query_string"] = {
        "query": qs["query"],
        "fields": qs["fields"],
        "default_operator": "and",
        "lenient": True,
    }
    return relaxed


def hit_to_search_hit(hit: dict[str, Any]) -> SearchHit:
    highlight = hit.get("highlight") or {}
    fragments = [*highlight.get("text", []), *highlight.get("summary", []), *highlight.get("title", [])]
    return SearchHit(
        article_from_source(hit["_source"]),
        snippet=" … ".join(fragments[:2]),
        score=hit.get("_score"),
        highlights=fragments,
    )


# --- alerts ---

SILENT_STATUSES = ("suppressed", "cancelled")  # recorded, but nobody was or will be told: not in counts["alerts"]


def alerts_query(
    subscription_id: str | None, status: str | Sequence[str] | None, since: datetime | None
) -> dict[str, Any]:
    """The filter of list_alerts. Alerts stored before alerts had a status have no `status` field and
    count as delivered (as SQLite's migration makes them)."""
    filters: list[dict[str, Any]] = []
    if subscription_id:
        filters.append({"term": {"subscription_id": subscription_id}})
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        wanted: list[dict[str, Any]] = [{"terms": {"status": statuses}}]
        if "delivered" in statuses:
            wanted.append({"bool": {"must_not": [{"exists": {"field": "status"}}]}})
        filters.append({"bool": {"should": wanted, "minimum_should_match": 1}})
    if since is not None:
        filters.append({"range": {"created_at": {"gte": since.astimezone(UTC).isoformat()}}})
    return {"bool": {"filter": filters}} if filters else {"match_all": {}}


# --- the store ---


class ElasticsearchStore:
    """ArticleStore on Elasticsearch. Open one per worker (DoFn.setup); not shared across processes."""

    def __init__(
        self,
        config: ElasticsearchConfig,
        client: Elasticsearch | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.layout = IndexLayout(config.index_prefix)
        self.client = client if client is not None else make_client(config)
        self.retrier = Retrier(RetryPolicy(max_retries=config.max_retries, max_backoff=config.max_backoff), sleep)
        self.bulk = BulkWriter(self.client, self.retrier, config.bulk_max_docs, config.bulk_max_bytes)
        self._written: set[Kind] = set()
        # Subscriptions whose alerts this store wrote since its last refresh of the alerts index: reading
        # them back (the realert window) must see those writes, as it does on SQLite.
        self._unrefreshed_alerts: set[str] = set()

    def __enter__(self) -> ElasticsearchStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Refresh what this store wrote (so readers in other processes see it now), then disconnect."""
        if self._written:
            names = ",".join(self.layout.read_alias(k) for k in sorted(self._written))
            try:  # one attempt, short timeout: after a failed cycle the cluster may well be gone
                self.client.options(request_timeout=5.0).indices.refresh(index=names)
            except Exception as exc:  # closing must not mask the error that ended the cycle
                log.debug("refresh on close failed: %s", exc)
            self._written.clear()
        self.client.close()

    def refresh(self, *kinds: Kind) -> None:
        """Make what was written searchable now (Elasticsearch does it by itself about every second)."""
        names = ",".join(self.layout.read_alias(k) for k in (kinds or KINDS))
        self.retrier.call("refresh", partial(self.client.indices.refresh, index=names))
        if not kinds or "alerts" in kinds:
            self._unrefreshed_alerts.clear()

    # --- articles ---

    def write_articles(self, articles: Sequence[Article]) -> list[tuple[Article, WriteOutcome | RejectedDocument]]:
        if not articles:
            return []
        now = datetime.now(UTC)
        index = self.layout.write_alias("articles")
        items = bulk_items(index, "index", [(a.id, article_document(a, now)) for a in articles])
        results = self.bulk.write(items, index)
        self._written.add("articles")
        out: list[tuple[Article, WriteOutcome | RejectedDocument]] = []
        for article, result in zip(articles, results, strict=True):
            if result.error is not None:
                out.append((article, RejectedDocument(f"Elasticsearch {result.status} {result.error}")))
            else:
                out.append((article, "new" if result.result == "created" else "updated"))
        return out

    def stored_hashes(self, ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        wanted = list(dict.fromkeys(ids))
        found: dict[str, tuple[str, str]] = {}
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start : start + 1000]
            for doc in self._mget("articles", chunk, ["content_hash", "enrichment_version"]):
                source = doc.get("_source") or {}
                found[doc["_id"]] = (source.get("content_hash", ""), source.get("enrichment_version", ""))
        return found

    def _mget(self, kind: Kind, ids: list[str], includes: list[str] | None = None) -> list[dict[str, Any]]:
        """Real-time reads by id (no refresh needed): the documents found."""
        index = self.layout.read_alias(kind)
        kwargs: dict[str, Any] = {"index": index, "ids": ids}
        if includes is not None:
            kwargs["source_includes"] = includes
        response = self.retrier.call(f"mget {kind}", partial(self.client.mget, **kwargs))
        docs = []
        for doc in response["docs"]:
            if "error" in doc:
                raise StoreUnavailable(f"mget {index}: {describe_error(doc['error'])}")
            if doc.get("found"):
                docs.append(doc)
        return docs

    def get_article(self, article_id: str) -> Article | None:
        docs = self._mget("articles", [article_id])
        return article_from_source(docs[0]["_source"]) if docs else None

    def iter_articles(self, batch_size: int = 500) -> Iterator[Article]:
        """Every article once, through a point in time (a consistent view while the job keeps writing)."""
        index = self.layout.read_alias("articles")
        pit = self.retrier.call(
            "open_point_in_time", lambda: self.client.open_point_in_time(index=index, keep_alive="2m")
        )["id"]
        search_after: list[Any] | None = None
        try:
            while True:
                kwargs: dict[str, Any] = {
                    "pit": {"id": pit, "keep_alive": "2m"},
                    "sort": [{"_shard_doc": "asc"}],
                    "size": batch_size,
                }
                if search_after is not None:
                    kwargs["search_after"] = search_after
                response = self.retrier.call("iter_articles", partial(self.client.search, **kwargs))
                pit = response.get("pit_id", pit)
                hits = response["hits"]["hits"]
                if not hits:
                    return
                for hit in hits:
                    yield article_from_source(hit["_source"])
                search_after = hits[-1]["sort"]
        finally:
            try:
                self.client.close_point_in_time(id=pit)
            except Exception as exc:  # it expires by itself after keep_alive
                log.debug("close_point_in_time failed: %s", exc)

    def search(self, query: SearchQuery) -> list[SearchHit]:
        body = build_search(query)
        index = self.layout.read_alias("articles")
        try:
            response = self.retrier.call("search", lambda: self.client.search(index=index, **body))
        except ApiError as exc:
            if exc.meta.status != 400 or "query" not in body or "bool" not in body["query"]:
                raise
            # Not valid Lucene syntax: search the words leniently instead of failing.
            relaxed = lenient_search(body)
            response = self.retrier.call("search", lambda: self.client.search(index=index, **relaxed))
        return [hit_to_search_hit(hit) for hit in response["hits"]["hits"]]

    def _search(self, kind: Kind, body: dict[str, Any]) -> list[dict[str, Any]]:
        index = self.layout.read_alias(kind)
        response = self.retrier.call(f"search {kind}", lambda: self.client.search(index=index, **body))
        return list(response["hits"]["hits"])

    # --- alerts and dead letters ---

    def record_alert(self, alert: Alert) -> bool:
        """Create the alert document (with its status); 409 means this (subscription, article) pair already
        alerted. A 409 on a retried attempt may be our own first attempt: then the stored copy is ours."""
        index = self.layout.write_alias("alerts")
        doc = alert_document(alert)
        attempts = 0

        def create() -> bool:
            nonlocal attempts
            attempts += 1
            try:
                self.client.index(index=index, id=alert.id, document=doc, op_type="create", require_alias=True)
            except ConflictError:
                if attempts == 1:
                    return False
                stored = self._mget("alerts", [alert.id], ["created_at"])
                return bool(stored) and stored[0]["_source"].get("created_at") == doc["created_at"]
            return True

        created = self.retrier.call("record_alert", create)
        self._written.add("alerts")
        if created:
            self._unrefreshed_alerts.add(alert.subscription_id)
        return created

    def record_alerts(self, alerts: Sequence[Alert]) -> list[bool]:
        """`record_alert` for a batch, in bulk requests of `create`s. A 409 means the pair already alerted,
        unless the create was sent again and the stored copy is this very alert (same created_at): an
        earlier attempt reached the cluster and its answer was lost."""
        if not alerts:
            return []
        first: dict[str, int] = {}  # an id twice in one batch: the first is recorded, the others are repeats
        for n, alert in enumerate(alerts):
            first.setdefault(alert.id, n)
        unique = [alerts[n] for n in sorted(first.values())]
        index = self.layout.write_alias("alerts")
        docs = [alert_document(a) for a in unique]
        results = self.bulk.write(
            bulk_items(index, "create", [(a.id, d) for a, d in zip(unique, docs, strict=True)]), index
        )
        self._written.add("alerts")
        refused = [
            f"{a.id}: {r.status} {r.error}" for a, r in zip(unique, results, strict=True) if r.error and r.status != 409
        ]
        if refused:
            raise StoreUnavailable(
                f"Elasticsearch refused {len(refused)} alert(s) ({refused[0]}); "
                "is the alerts mapping older than this version? run `newswatch es setup`"
            )
        created = {a.id: r.error is None for a, r in zip(unique, results, strict=True)}
        conflicts = [n for n, r in enumerate(results) if r.status == 409 and r.retried]
        if conflicts:
            stored = {
                hit["_id"]: hit["_source"].get("created_at")
                for hit in self._mget("alerts", [unique[n].id for n in conflicts], ["created_at"])
            }
            for n in conflicts:
                created[unique[n].id] = stored.get(unique[n].id) == docs[n]["created_at"]
        self._unrefreshed_alerts.update(a.subscription_id for a in unique if created[a.id])
        return [created[a.id] and first[a.id] == n for n, a in enumerate(alerts)]

    def alerted(self, alert_ids: Sequence[str]) -> set[str]:
        if not alert_ids:
            return set()
        return {hit["_id"] for hit in self._mget("alerts", list(alert_ids), ["created_at"])}

    def update_alerts(self, alerts: Sequence[Alert]) -> None:
        """Overwrite stored alerts by id; like SQLite's UPDATE, an id that is not stored is left out."""
        if not alerts:
            return
        index = self.layout.write_alias("alerts")
        items = bulk_items(index, "update", [(a.id, alert_document(a)) for a in alerts])
        results = self.bulk.write(items, index)
        self._written.add("alerts")
        self._unrefreshed_alerts.update(a.subscription_id for a in alerts)
        refused = []
        for alert, result in zip(alerts, results, strict=True):
            if result.error_type == "document_missing_exception":
                log.warning("alert %s not updated: it is not stored (deleted meanwhile?)", alert.id)
            elif result.error is not None:
                refused.append(f"{alert.id}: {result.status} {result.error}")
        if refused:
            raise StoreUnavailable(
                f"Elasticsearch refused {len(refused)} alert update(s) ({refused[0]}); "
                "is the alerts mapping older than this version? run `newswatch es setup`"
            )

    def list_alerts(
        self,
        limit: int = 50,
        subscription_id: str | None = None,
        *,
        status: str | Sequence[str] | None = None,
        since: datetime | None = None,
    ) -> list[Alert]:
        if self._unrefreshed_alerts and (subscription_id is None or subscription_id in self._unrefreshed_alerts):
            self.refresh("alerts")
        hits = self._search(
            "alerts",
            {
                "query": alerts_query(subscription_id, status, since),
                "size": limit,
                "sort": [{"created_at": "desc"}, {"id": "asc"}],
            },
        )
        return [alert_from_source(h["_source"]) for h in hits]

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        index = self.layout.write_alias("deadletters")
        docs = [(d.id, dead_letter_document(d)) for d in letters]
        results = self.bulk.write(bulk_items(index, "index", docs), index)
        self._written.add("deadletters")
        rejected = [(letters[i], r) for i, r in enumerate(results) if r.error is not None]
        if not rejected:
            return
        # A dead letter the mapping refuses (odd `details`): keep it, with details as plain text.
        retry_docs = [
            (letter.id, {**dead_letter_document(letter), "details": {"unindexable": json.dumps(letter.details)[:4000]}})
            for letter, _ in rejected
        ]
        for (letter, first), second in zip(
            rejected, self.bulk.write(bulk_items(index, "index", retry_docs), index), strict=True
        ):
            if second.error is not None:
                log.error(
                    "dead letter not storable id=%s error=%s letter=%s",
                    letter.id,
                    first.error,
                    letter.model_dump_json(),
                )

    def list_dead_letters(self, limit: int = 50, stage: str | None = None) -> list[DeadLetter]:
        query: dict[str, Any] = {"term": {"stage": stage}} if stage else {"match_all": {}}
        hits = self._search(
            "deadletters", {"query": query, "size": limit, "sort": [{"created_at": "desc"}, {"id": "asc"}]}
        )
        return [dead_letter_from_source(h["_source"]) for h in hits]

    def counts(self) -> dict[str, int]:
        queries: dict[str, tuple[Kind, dict[str, Any]]] = {
            "articles": ("articles", {"match_all": {}}),
            "alerts": ("alerts", {"bool": {"must_not": [{"terms": {"status": list(SILENT_STATUSES)}}]}}),
            "alerts_suppressed": ("alerts", {"term": {"status": "suppressed"}}),
            "alerts_pending": ("alerts", {"term": {"status": "pending"}}),
            "deadletters": ("deadletters", {"match_all": {}}),
            "subscriptions": ("subscriptions", {"term": {"kind": SUBSCRIPTION_KIND}}),
        }
        out: dict[str, int] = {}
        for name, (kind, query) in queries.items():
            index = self.layout.read_alias(kind)
            response = self.retrier.call(f"count {kind}", partial(self.client.count, index=index, query=query))
            out[name] = int(response["count"])
        return out

    # --- subscriptions ---

    def list_subscriptions(self, include_disabled: bool = True) -> list[Subscription]:
        filters: list[dict[str, Any]] = [{"term": {"kind": SUBSCRIPTION_KIND}}]
        if not include_disabled:
            filters.append({"term": {"enabled": True}})
        found: list[Subscription] = []
        search_after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {"query": {"bool": {"filter": filters}}, "size": 500, "sort": [{"id": "asc"}]}
            if search_after is not None:
                body["search_after"] = search_after
            hits = self._search("subscriptions", body)
            found += [subscription_from_source(h["_source"]) for h in hits]
            if len(hits) < 500:
                return found
            search_after = hits[-1]["sort"]

    def put_subscription(self, subscription: Subscription) -> None:
        index = self.layout.write_alias("subscriptions")
        doc = subscription_document(subscription)  # with its secrets: delivery signs with them
        self.retrier.call(
            "put_subscription",
            lambda: self.client.index(
                index=index, id=subscription.id, document=doc, require_alias=True, refresh="wait_for"
            ),
        )

    def remove_subscription(self, subscription_id: str) -> bool:
        index = self.layout.write_alias("subscriptions")

        def delete() -> bool:
            try:
                self.client.delete(index=index, id=subscription_id, refresh="wait_for")
            except NotFoundError as exc:
                if _error_type(exc.body) == "index_not_found_exception":
                    raise
                return False
            return True

        return self.retrier.call("remove_subscription", delete)

    def seed_subscriptions(self, defaults: Sequence[Subscription]) -> int:
        """A marker document created with op_type=create decides, once and atomically, who seeds."""
        index = self.layout.write_alias("subscriptions")
        marker = {"kind": "marker", "created_at": datetime.now(UTC).isoformat()}

        def claim() -> bool:
            try:
                self.client.index(
                    index=index, id=SEEDED_MARKER_ID, document=marker, op_type="create", require_alias=True
                )
            except ConflictError:
                return False
            return True

        if not self.retrier.call("seed_subscriptions", claim):
            return 0
        if defaults:
            items = bulk_items(index, "create", [(s.id, subscription_document(s)) for s in defaults])
            for sub, result in zip(defaults, self.bulk.write(items, index), strict=True):
                if result.error is not None and result.status != 409:
                    log.error("default subscription %s not stored: %s", sub.id, result.error)
            self.refresh("subscriptions")
        return len(defaults)
