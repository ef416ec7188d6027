"""Kibana's saved-objects import API: load the newswatch data views, visualizations and dashboard."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
from pydantic import SecretStr

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "newswatch"


class KibanaError(Exception):
    """Kibana refused the import or could not be reached in time."""


@dataclass
class ImportResult:
    success: bool
    success_count: int
    errors: list[dict[str, Any]] = field(default_factory=list)

    def describe_errors(self) -> list[str]:
        lines = []
        for error in self.errors:
            kind = (error.get("error") or {}).get("type", "error")
            lines.append(f"{error.get('type', '?')} {error.get('id', '?')} ({error.get('title', '')}): {kind}")
        return lines


def parse_ndjson(text: str) -> list[dict[str, Any]]:
    objects = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise KibanaError(f"line {number}: not JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise KibanaError(f"line {number}: expected a JSON object")
        objects.append(obj)
    return objects


def with_index_prefix(text: str, prefix: str) -> str:
    """The saved objects with their data views pointed at another index prefix's aliases."""
    if prefix == DEFAULT_PREFIX:
        return text
    out = []
    for obj in parse_ndjson(text):
        if obj.get("type") == "index-pattern":
            title = obj["attributes"]["title"]
            if title.startswith(f"{DEFAULT_PREFIX}-"):
                obj["attributes"]["title"] = prefix + title[len(DEFAULT_PREFIX) :]
        out.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class KibanaAuth:
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None


def import_saved_objects(
    kibana_url: str,
    ndjson: str,
    *,
    auth: KibanaAuth | None = None,
    space: str | None = None,
    ca_file: str | None = None,
    overwrite: bool = True,
    wait: float = 0.0,
    session: requests.Session | None = None,
    timeout: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> ImportResult:
    """POST the NDJSON to /api/saved_objects/_import (multipart, `kbn-xsrf` header). While Kibana is
    starting (connection refused, 503 "not ready") it is retried with capped backoff for up to `wait` s."""
    parts = urlsplit(kibana_url)
    basic: tuple[str, str] | None = None
    if parts.username is not None:  # user:password@ in the URL: use it, but never print it
        basic = (unquote(parts.username), unquote(parts.password or ""))
        parts = parts._replace(netloc=parts.hostname or "" if not parts.port else f"{parts.hostname}:{parts.port}")
    base = urlunsplit(parts).rstrip("/") + (f"/s/{space}" if space else "")
    url = f"{base}/api/saved_objects/_import"
    headers = {"kbn-xsrf": "newswatch"}
    if auth and auth.api_key is not None:
        headers["Authorization"] = f"ApiKey {auth.api_key.get_secret_value()}"
    elif auth and auth.username:
        basic = (auth.username, auth.password.get_secret_value() if auth.password else "")
    http = session or requests.Session()
    deadline = time.monotonic() + wait
    delay = 1.0
    while True:
        try:
            response = http.post(
                url,
                params={"overwrite": "true"} if overwrite else None,
                headers=headers,
                files={"file": ("newswatch.ndjson", ndjson.encode("utf-8"), "application/ndjson")},
                auth=basic,
                timeout=timeout,
                verify=ca_file or True,
            )
        except requests.ConnectionError as exc:
            problem = f"cannot connect: {exc.__class__.__name__}"
        else:
            if response.status_code == 200:
                data = response.json()
                return ImportResult(
                    bool(data.get("success")), int(data.get("successCount", 0)), list(data.get("errors") or [])
                )
            if response.status_code not in (502, 503, 504):
                raise KibanaError(f"import refused: HTTP {response.status_code}: {response.text[:500]}")
            problem = f"HTTP {response.status_code} (Kibana not ready)"
        if time.monotonic() + delay > deadline:
            raise KibanaError(f"{url}: {problem}")
        log.warning("kibana not reachable yet (%s); retrying in %.0fs", problem, delay)
        sleep(delay)
        delay = min(delay * 2, 15.0)
