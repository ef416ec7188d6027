"""pydantic models for everything that crosses a boundary, and their JSON Schema."""

from schemas.ids import article_id, canonical_url, content_hash, stable_hash
from schemas.models import (
    Alert,
    AllOf,
    AnyOf,
    Article,
    CountryCondition,
    DeadLetter,
    Entity,
    EntityCondition,
    Mention,
    NotRule,
    Place,
    RawArticle,
    RegionCondition,
    Rule,
    SourceCondition,
    Stage,
    Subscription,
    TextCondition,
    TopicCondition,
    TopicTag,
    utcnow,
)

MODELS = {m.__name__: m for m in (RawArticle, Article, Entity, Place, TopicTag, Subscription, Alert, DeadLetter)}


def json_schema(name: str) -> dict[str, object]:
    """JSON Schema of one of the boundary models, by class name."""
    try:
        model = MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None
    return model.model_json_schema()


__all__ = [
    "MODELS",
    "Alert",
    "AllOf",
    "AnyOf",
    "Article",
    "CountryCondition",
    "DeadLetter",
    "Entity",
    "EntityCondition",
    "Mention",
    "NotRule",
    "Place",
    "RawArticle",
    "RegionCondition",
    "Rule",
    "SourceCondition",
    "Stage",
    "Subscription",
    "TextCondition",
    "TopicCondition",
    "TopicTag",
    "article_id",
    "canonical_url",
    "content_hash",
    "json_schema",
    "stable_hash",
    "utcnow",
]
