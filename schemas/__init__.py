"""pydantic models for everything that crosses a boundary, and their JSON Schema."""

from schemas.ids import article_id, canonical_url, content_hash, stable_hash
from schemas.models import (
    MASKED,
    REVEAL_SECRETS,
    Alert,
    AlertDigest,
    AlertStatus,
    AllOf,
    AnyOf,
    Article,
    CountryCondition,
    DeadLetter,
    Duration,
    EmailTarget,
    Entity,
    EntityCondition,
    KafkaTarget,
    LanguageCondition,
    Mention,
    NotRule,
    Place,
    RawArticle,
    RegionCondition,
    Rule,
    SourceCondition,
    Stage,
    Subscription,
    Target,
    TextCondition,
    TopicCondition,
    TopicTag,
    WebhookTarget,
    format_duration,
    utcnow,
)

MODELS = {
    m.__name__: m for m in (RawArticle, Article, Entity, Place, TopicTag, Subscription, Alert, AlertDigest, DeadLetter)
}


def json_schema(name: str) -> dict[str, object]:
    """JSON Schema of one of the boundary models, by class name."""
    try:
        model = MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None
    return model.model_json_schema()


__all__ = [
    "MASKED",
    "MODELS",
    "REVEAL_SECRETS",
    "Alert",
    "AlertDigest",
    "AlertStatus",
    "AllOf",
    "AnyOf",
    "Article",
    "CountryCondition",
    "DeadLetter",
    "Duration",
    "EmailTarget",
    "Entity",
    "EntityCondition",
    "KafkaTarget",
    "LanguageCondition",
    "Mention",
    "NotRule",
    "Place",
    "RawArticle",
    "RegionCondition",
    "Rule",
    "SourceCondition",
    "Stage",
    "Subscription",
    "Target",
    "TextCondition",
    "TopicCondition",
    "TopicTag",
    "WebhookTarget",
    "article_id",
    "canonical_url",
    "content_hash",
    "format_duration",
    "json_schema",
    "stable_hash",
    "utcnow",
]
