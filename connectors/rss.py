"""RSS/Atom feeds from http(s) URLs and local files: polite fetching and entry -> RawArticle."""

from __future__ import annotations

import calendar
import hashlib
import html
import logging
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import feedparser
import nh3
import requests
from pydantic import ValidationError

from schemas import DeadLetter, RawArticle

log = logging.getLogger(__name__)

USER_AGENT = "newswatch/0.1 (+https://github.com/newswatch/newswatch; feed monitor)"


@dataclass(frozen=True)
class FetchLimits:
    """Bounds on one feed fetch, so a hostile or broken server cannot stall a cycle."""

    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    total_timeout_s: float = 30.0
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5
    max_entries: int = 5000
    user_agent: str = USER_AGENT


@dataclass(frozen=True)
class FeedState:
    """What we remember about a feed between cycles (conditional GET and backoff)."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    last_checked: datetime | None = None
    next_due: datetime | None = None
    failures: int = 0
    last_error: str | None = None
    last_entries: int = 0

    def is_due(self, now: datetime) -> bool:
        return self.next_due is None or now >= self.next_due


class FeedError(Exception):
    """A feed could not be fetched or parsed; the message is the dead-letter reason."""


@dataclass(frozen=True)
class FetchResult:
    url: str
    status: int  # HTTP status, or 200/304 for files
    body: bytes = b""
    etag: str | None = None
    last_modified: str | None = None
    content_type: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304


@dataclass
class FeedBatch:
    """The outcome of polling one feed: articles, dead letters and the state to commit afterwards."""

    url: str
    articles: list[RawArticle] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    state: FeedState | None = None
    not_modified: bool = False
    warnings: list[str] = field(default_factory=list)



def is_url(spec: str) -> bool:
    return urlsplit(spec).scheme in ("http", "https")


class FeedFetcher:
    """Fetches feed bytes with conditional GET, size and time limits; files are confined to roots."""

    def __init__(
        self,
        limits: FetchLimits | None = None,
        session: requests.Session | None = None,
        allowed_dirs: Sequence[Path] = (),
    ) -> None:
        self.limits = limits or FetchLimits()
        self._session = session
        self.allowed_dirs = [Path(d).resolve() for d in allowed_dirs]

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            session = requests.Session()
            session.max_redirects = self.limits.max_redirects
            self._session = session
            return session
        return self._session

    def fetch(self, url: str, state: FeedState | None = None) -> FetchResult:
        if is_url(url):
            return self._fetch_http(url, state)
        if urlsplit(url).scheme in ("", "file"):
            return self._fetch_file(url, state)
        raise FeedError(f"unsupported feed location {url!r}: use http(s) URLs or file paths")

    def _fetch_http(self, url: str, state: FeedState | None) -> FetchResult:
        headers = {
            "User-Agent": self.limits.user_agent,
            "Accept-Encoding": "gzip, deflate",
            "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5",
        }
        if state and state.etag:
            headers["If-None-Match"] = state.etag
        if state and state.last_modified:
            headers["If-Modified-Since"] = state.last_modified
        deadline = time.monotonic() + self.limits.total_timeout_s
        try:
            response = self.session.get(
                url,
                headers=headers,
                stream=True,
                allow_redirects=True,
                timeout=(self.limits.connect_timeout_s, self.limits.read_timeout_s),
            )
        except requests.TooManyRedirects as exc:
            raise FeedError(f"too many redirects (>{self.limits.max_redirects})") from exc
        except requests.Timeout as exc:
            raise FeedError(f"timed out: {type(exc).__name__}") from exc
        except requests.RequestException as exc:
            raise FeedError(f"request failed: {type(exc).__name__}: {_short(exc)}") from exc
        with response:
            if response.status_code == 304:
                return FetchResult(
                    url, 304, etag=state.etag if state else None, last_modified=state.last_modified if state else None
                )
            if response.status_code >= 400:
                raise FeedError(f"HTTP {response.status_code} {response.reason or ''}".strip())
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > self.limits.max_bytes:
                raise FeedError(f"response too large: {declared} bytes > limit {self.limits.max_bytes}")
            chunks: list[bytes] = []
            size = 0
            try:
                # iter_content decodes gzip/deflate, so the cap applies to the inflated size (gzip bombs).
                for chunk in response.iter_content(chunk_size=64 * 1024):
                    size += len(chunk)
                    if size > self.limits.max_bytes:
                        raise FeedError(f"response too large: over the limit of {self.limits.max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise FeedError(f"timed out: body not read within {self.limits.total_timeout_s:g}s")
                    chunks.append(chunk)
            except requests.RequestException as exc:
                raise FeedError(f"reading body failed: {type(exc).__name__}: {_short(exc)}") from exc
            return FetchResult(
                url,
                response.status_code,
                b"".join(chunks),
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
                content_type=response.headers.get("Content-Type"),
            )

    def _fetch_file(self, spec: str, state: FeedState | None) -> FetchResult:
        path = Path(urlsplit(spec).path if spec.startswith("file:") else spec).expanduser().resolve()
        if self.allowed_dirs and not any(path.is_relative_to(root) for root in self.allowed_dirs):
            raise FeedError(
                f"file {path} is outside the allowed feed directories "
                f"({', '.join(map(str, self.allowed_dirs))}); see NEWSWATCH_FEED_DIRS"
            )
        try:
            stat = path.stat()
        except OSError as exc:
            raise FeedError(f"cannot read feed file: {exc.strerror or exc}") from exc
        if stat.st_size > self.limits.max_bytes:
            raise FeedError(f"feed file too large: {stat.st_size} bytes > limit {self.limits.max_bytes}")
        etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
        if state and state.etag == etag:
            return FetchResult(spec, 304, etag=etag)
        content_type = _FILE_TYPES.get(path.suffix.lower(), "application/xml")
        return FetchResult(spec, 200, path.read_bytes(), etag=etag, content_type=content_type)


_FILE_TYPES = {".rss": "application/rss+xml", ".atom": "application/atom+xml", ".xml": "application/xml"}

# --- Parsing -----------------------------------------------------------------------------------

_ENTITY_DECL = re.compile(rb"<!ENTITY", re.IGNORECASE)
_BLOCK_END = re.compile(r"(?i)<\s*(?:br\s*/?|/p|/div|/li|/h[1-6]|/blockquote|/tr)\s*>")


def html_to_text(markup: str) -> str:
    """Plain text from feed HTML: block ends become paragraph breaks, scripts and tags go."""
    if not markup:
        return ""
    marked = _BLOCK_END.sub("\n\n", markup)
    cleaned = nh3.clean(marked, tags=set(), attributes={}, strip_comments=True)
    text = html.unescape(cleaned).replace("\xa0", " ")
    paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", text))
    return "\n\n".join(p for p in paragraphs if p)


def _entry_datetime(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if parsed:
            try:
                return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
            except (OverflowError, ValueError, OSError):
                continue
    return None


def _entry_body(entry: Any) -> str:
    contents = [c.get("value", "") for c in entry.get("content", []) or []]
    best = max(contents, key=len, default="")
    return best or entry.get("summary", "") or entry.get("description", "")


def entry_to_raw(entry: Any, *, feed_url: str, feed_title: str, fetched_at: datetime) -> RawArticle:
    """One feedparser entry as a RawArticle; raises ValidationError for entries that are nonsense."""
    link = entry.get("link") or None
    guid = entry.get("id") or None
    if link is None and guid and is_url(guid):
        link = guid
    return RawArticle(
        title=html_to_text(entry.get("title", "")),
        text=html_to_text(_entry_body(entry)),
        summary=html_to_text(entry.get("summary", "")),
        url=link,
        guid=guid,
        published=_entry_datetime(entry),
        source=feed_url,
        source_name=feed_title,
        language=(entry.get("language") or None),
        fetched_at=fetched_at,
    )


def parse_feed(
    body: bytes,
    *,
    url: str,
    content_type: str | None = None,
    max_entries: int = 5000,
    fetched_at: datetime | None = None,
) -> FeedBatch:
    """Feed bytes -> articles and dead letters. A feed that yields nothing is one dead letter."""
    fetched_at = fetched_at or datetime.now(UTC)
    batch = FeedBatch(url=url)
    if _ENTITY_DECL.search(body):
        batch.dead_letters.append(
            _feed_dead_letter(
                url, "feed declares XML entities (refused: entity expansion / external entity risk)", body
            )
        )
        return batch
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    parsed = feedparser.parse(body, response_headers=headers, sanitize_html=False, resolve_relative_uris=False)
    feed_title = html_to_text(parsed.feed.get("title", "")) if parsed.get("feed") else ""
    if not parsed.entries:
        problem = parsed.get("bozo_exception")
        reason = "feed yielded no entries" + (f": {type(problem).__name__}: {_short(problem)}" if problem else "")
        batch.dead_letters.append(_feed_dead_letter(url, reason, body))
        return batch
    if parsed.get("bozo"):
        problem = parsed.get("bozo_exception")
        batch.warnings.append(
            f"feed is not well-formed ({type(problem).__name__}: {_short(problem)}); "
            f"using the {len(parsed.entries)} entries it still yields"
        )
    entries: Iterable[Any] = parsed.entries
    if len(parsed.entries) > max_entries:
        batch.warnings.append(f"feed has {len(parsed.entries)} entries; reading the first {max_entries}")
        entries = parsed.entries[:max_entries]
    for entry in entries:
        try:
            batch.articles.append(entry_to_raw(entry, feed_url=url, feed_title=feed_title, fetched_at=fetched_at))
        except ValidationError as exc:
            batch.dead_letters.append(
                DeadLetter(
                    stage="validate",
                    reason=f"feed entry rejected: {_validation_reason(exc)}",
                    payload=_entry_payload(entry),
                    source=url,
                )
            )
    return batch


def _entry_payload(entry: Any) -> str:
    import json

    return json.dumps(
        {k: v for k, v in entry.items() if isinstance(v, str | int | float | list | dict)},
        default=str,
        ensure_ascii=False,
    )[:100_000]


def _validation_reason(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'article'}: {e['msg']}" for e in exc.errors())


def _feed_dead_letter(url: str, reason: str, body: bytes) -> DeadLetter:
    return DeadLetter(
        stage="fetch",
        reason=reason,
        payload=body[:1_000_000],
        source=url,
        details={"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()},
    )


def _short(exc: object, limit: int = 300) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- Polling -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PollPolicy:
    interval: timedelta = timedelta(minutes=5)
    max_backoff: timedelta = timedelta(hours=6)

    def after_success(self, state: FeedState, now: datetime) -> datetime:
        return now + self.interval

    def after_failure(self, failures: int, now: datetime) -> datetime:
        return now + min(self.interval * (2 ** min(failures, 16)), self.max_backoff)


def poll_feed(
    url: str,
    state: FeedState | None,
    fetcher: FeedFetcher,
    policy: PollPolicy,
    now: datetime | None = None,
) -> FeedBatch:
    """Fetch and parse one feed; never raises for feed problems, which become dead letters."""
    now = now or datetime.now(UTC)
    state = state or FeedState(url=url)
    try:
        result = fetcher.fetch(url, state)
    except FeedError as exc:
        failures = state.failures + 1
        log.warning("feed=%s fetch failed (%s); failures=%d, retry after backoff", url, exc, failures)
        return FeedBatch(
            url=url,
            dead_letters=[DeadLetter(stage="fetch", reason=str(exc), source=url, details={"failures": failures})],
            state=replace(
                state,
                last_checked=now,
                failures=failures,
                last_error=str(exc),
                next_due=policy.after_failure(failures, now),
            ),
        )
    if result.not_modified:
        return FeedBatch(
            url=url,
            not_modified=True,
            state=replace(
                state, last_checked=now, failures=0, last_error=None, next_due=policy.after_success(state, now)
            ),
        )
    batch = parse_feed(
        result.body, url=url, content_type=result.content_type, max_entries=fetcher.limits.max_entries, fetched_at=now
    )
    for warning in batch.warnings:
        log.warning("feed=%s %s", url, warning)
    failed = not batch.articles and bool(batch.dead_letters)
    failures = state.failures + 1 if failed else 0
    batch.state = replace(
        # Kept even when the content failed: an unchanged broken feed is not dead-lettered again.
        state,
        etag=result.etag,
        last_modified=result.last_modified,
        last_checked=now,
        failures=failures,
        last_error=batch.dead_letters[0].reason if failed else None,
        next_due=policy.after_failure(failures, now) if failed else policy.after_success(state, now),
        last_entries=len(batch.articles),
    )
    return batch


def read_feed_list(specs: str | Sequence[str]) -> list[str]:
    """Feeds from a comma-separated string, a list, or a file of them (one per line, # comments)."""
    items = [s.strip() for s in specs.split(",")] if isinstance(specs, str) else [s.strip() for s in specs]
    feeds: list[str] = []
    for item in filter(None, items):
        path = Path(item).expanduser()
        if not is_url(item) and path.is_file() and path.suffix in (".txt", ".list", ""):
            feeds.extend(_lines(path.read_text(encoding="utf-8").splitlines()))
        elif not is_url(item) and path.is_dir():
            feeds.extend(str(p) for p in sorted(path.iterdir()) if p.suffix in (".xml", ".rss", ".atom"))
        else:
            feeds.append(item)
    return feeds


def _lines(lines: Iterable[str]) -> Iterator[str]:
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            yield line
