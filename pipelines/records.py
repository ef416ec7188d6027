"""The records a cycle hands to the pipeline, and the pure steps before enrichment."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from schemas import DeadLetter, RawArticle

MAX_FUTURE = timedelta(days=1)


def article_record(raw: RawArticle) -> str:
    return json.dumps({"kind": "article", "payload": raw.model_dump(mode="json")}, ensure_ascii=False)


def dead_letter_record(letter: DeadLetter) -> str:
    return json.dumps({"kind": "dead_letter", "payload": letter.model_dump(mode="json")}, ensure_ascii=False)


def message_record(value: bytes, *, source: str, meta: dict[str, Any] | None = None) -> str:
    """A message whose bytes still have to be decoded (Kafka): kept raw so a bad one is dead-lettered as is."""
    return json.dumps(
        {"kind": "message", "source": source, "meta": meta or {}, "value_b64": base64.b64encode(value).decode("ascii")}
    )


def parse_record(line: str) -> RawArticle | DeadLetter:
    """A record line -> RawArticle, or a DeadLetter saying why not. Never raises."""
    try:
        record = json.loads(line)
        kind = record["kind"]
    except (ValueError, KeyError, TypeError) as exc:
        return DeadLetter(stage="parse", reason=f"unreadable record: {exc}", payload=line)
    if kind == "dead_letter":
        return DeadLetter.model_validate(record["payload"])
    if kind == "article":
        return _validate(record["payload"], source=record["payload"].get("source", ""), payload=line)
    if kind == "message":
        parsed = decode_message(
            base64.b64decode(record["value_b64"]), source=record.get("source", ""), meta=record.get("meta") or {}
        )
        if isinstance(parsed, DeadLetter):  # the exact bytes (payload is text, stripped): for the dead-letter topic
            parsed.details.setdefault("value_b64", record["value_b64"])
        return parsed
    return DeadLetter(stage="parse", reason=f"unknown record kind {kind!r}", payload=line)


def decode_message(value: bytes, *, source: str, meta: dict[str, Any] | None = None) -> RawArticle | DeadLetter:
    """Message bytes -> RawArticle: UTF-8 JSON object with RawArticle's fields."""
    details = dict(meta or {})

    def reject(reason: str, payload: str | bytes) -> DeadLetter:
        return DeadLetter(stage="parse", reason=reason, payload=payload, source=source, details=details)

    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return reject(f"not UTF-8: {exc.reason} at byte {exc.start}", value)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return reject(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", text)
    if not isinstance(data, dict):
        return reject(f"expected a JSON object, got {type(data).__name__}", text)
    data.setdefault("source", source)
    return _validate(data, source=source, payload=text, details=details)


def _validate(
    data: dict[str, Any], *, source: str, payload: str, details: dict[str, Any] | None = None
) -> RawArticle | DeadLetter:
    try:
        return RawArticle.model_validate(data)
    except ValidationError as exc:
        reason = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'article'}: {e['msg']}" for e in exc.errors())
        return DeadLetter(
            stage="validate",
            reason=f"schema violation: {reason}",
            payload=payload,
            source=source,
            details=details or {},
        )


def normalize(raw: RawArticle, now: datetime | None = None) -> RawArticle:
    """Tidy what sources get wrong: whitespace in titles, publication dates in the future."""
    now = now or datetime.now(UTC)
    changes: dict[str, Any] = {}
    title = " ".join(raw.title.split())
    if title != raw.title:
        changes["title"] = title
    if raw.published and raw.published > now + MAX_FUTURE:
        changes["published"] = raw.fetched_at if raw.fetched_at <= now + MAX_FUTURE else now
    return raw.model_copy(update=changes) if changes else raw


def prefer(a: RawArticle, b: RawArticle) -> RawArticle:
    """Of two records with the same id, keep the newer, then the fuller one (deterministic)."""

    def key(r: RawArticle) -> tuple[datetime, int, str]:
        return (r.published or datetime.min.replace(tzinfo=UTC), len(r.text), r.source)

    return a if key(a) >= key(b) else b
