"""Model <-> Elasticsearch document: what the index mappings in deploy/elasticsearch describe.

Documents are supersets of the models: derived fields (a geo_point per place, flat entity-name
arrays for Kibana, `@timestamp`) are added on the way in and ignored on the way out, so a
document read back validates to the model that was written.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from schemas import Alert, Article, DeadLetter, Subscription

# Entity labels -> the flat keyword array Kibana aggregates on (Lens cannot aggregate nested fields).
ENTITY_FIELDS: dict[str, str] = {
    "PERSON": "people",
    "ORG": "organizations",
    "GPE": "locations",
    "LOC": "locations",
    "NORP": "groups",
}
DERIVED_ARTICLE_FIELDS = ("@timestamp", "people", "organizations", "locations", "groups", "entity_ids", "indexed_at")
SUBSCRIPTION_KIND = "subscription"


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def article_document(article: Article, indexed_at: datetime | None = None) -> dict[str, Any]:
    """The article as indexed: every model field, plus places[].location and entity-name arrays."""
    doc = article.model_dump(mode="json")
    doc["@timestamp"] = doc["published"] or doc["fetched_at"]
    for place in doc["places"]:
        place["location"] = {"lat": place["lat"], "lon": place["lon"]}
    grouped: dict[str, list[str]] = {name: [] for name in dict.fromkeys(ENTITY_FIELDS.values())}
    for entity in article.entities:
        field = ENTITY_FIELDS.get(entity.label)
        if field:
            grouped[field].append(entity.canonical or entity.text)
    for field, names in grouped.items():
        doc[field] = _unique(names)
    doc["entity_ids"] = _unique([e.kb_id for e in article.entities if e.kb_id])
    doc["indexed_at"] = (indexed_at or datetime.now(UTC)).isoformat()
    return doc


def article_from_source(source: dict[str, Any]) -> Article:
    return Article.model_validate(source)


def alert_document(alert: Alert) -> dict[str, Any]:
    return alert.model_dump(mode="json")


def alert_from_source(source: dict[str, Any]) -> Alert:
    return Alert.model_validate(source)


def dead_letter_document(letter: DeadLetter) -> dict[str, Any]:
    return letter.model_dump(mode="json")


def dead_letter_from_source(source: dict[str, Any]) -> DeadLetter:
    return DeadLetter.model_validate(source)


def subscription_document(subscription: Subscription, updated_at: datetime | None = None) -> dict[str, Any]:
    """The subscription as stored: with its secrets in clear (webhook signing needs them), as on SQLite;
    `targets` is mapped `enabled: false`, so they are kept in _source but never indexed."""
    doc = json.loads(subscription.storage_json())
    doc["kind"] = SUBSCRIPTION_KIND
    doc["updated_at"] = (updated_at or datetime.now(UTC)).isoformat()
    return doc


def subscription_from_source(source: dict[str, Any]) -> Subscription:
    return Subscription.model_validate({k: v for k, v in source.items() if k not in ("kind", "updated_at")})


def mapping_fields(properties: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted field paths a mapping declares (sub-fields such as title.keyword are not fields of the document)."""
    found: set[str] = set()
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        found.add(path)
        if isinstance(spec, dict) and isinstance(spec.get("properties"), dict):
            found |= mapping_fields(spec["properties"], prefix=f"{path}.")
    return found


def document_fields(doc: Any, prefix: str = "", opaque: frozenset[str] = frozenset()) -> set[str]:
    """Dotted paths of a JSON document; `opaque` paths (rule trees, flattened) are not descended into."""
    found: set[str] = set()
    if isinstance(doc, list):
        for item in doc:
            found |= document_fields(item, prefix, opaque)
        return found
    if not isinstance(doc, dict):
        return found
    for key, value in doc.items():
        path = f"{prefix}{key}"
        found.add(path)
        if path not in opaque and isinstance(value, dict | list):
            found |= document_fields(value, f"{path}.", opaque)
    return found
