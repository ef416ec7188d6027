"""Deterministic identity for articles: a replay must overwrite, never duplicate."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Query parameters that only track the click, never select the content.
_TRACKING_PARAMS = re.compile(
    r"^(utm_[a-z_]+|fbclid|gclid|dclid|msclkid|mc_cid|mc_eid|igshid|ref|ref_src|cmpid|ocid|smid|"
    r"_ga|_gl|yclid|spm|share|s_cid|at_medium|at_campaign|rss)$",
    re.IGNORECASE,
)


def canonical_url(url: str) -> str:
    """Canonical form of an article URL: lower-case scheme and host, no default port, no fragment,
    no tracking parameters, sorted query, no trailing slash on the path."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if host.startswith("www."):
        host = host[4:]
    port = parts.port
    netloc = host if port is None or (scheme, port) in {("http", 80), ("https", 443)} else f"{host}:{port}"
    path = re.sub(r"/{2,}", "/", parts.path or "/")
    if len(path) > 1:
        path = path.rstrip("/")
    query = urlencode(
        sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING_PARAMS.match(k))
    )
    return urlunsplit((scheme, netloc, path, query, ""))


def stable_hash(*parts: str, length: int = 32) -> str:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return digest[:length]


def article_id(*, url: str | None = None, guid: str | None = None, title: str = "", text: str = "") -> str:
    """The id of an article: from its canonical URL, else its feed GUID, else its content."""
    if url:
        return stable_hash("url", canonical_url(url))
    if guid:
        return stable_hash("guid", guid.strip())
    return stable_hash("content", " ".join(title.split()).lower(), " ".join(text.split()).lower())


def content_hash(title: str, text: str) -> str:
    """Changes when an article's words change: the store skips re-enriching unchanged articles."""
    return stable_hash(title, text, length=16)
