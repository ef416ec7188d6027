"""The shapes that cross a boundary: feeds and Kafka in, the store and alert channels out."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    SerializationInfo,
    TypeAdapter,
    field_serializer,
    field_validator,
    model_validator,
)

from schemas.ids import article_id, canonical_url, content_hash, stable_hash


def _to_utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC; aware ones are converted to it."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_to_utc)]
_HTTP_URL: TypeAdapter[HttpUrl] = TypeAdapter(HttpUrl)


def _check_url(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    _HTTP_URL.validate_python(value.strip())  # raises on anything that is not http(s) with a host
    return value.strip()


def utcnow() -> datetime:
    return datetime.now(UTC)


CountryCode = Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2, upper case")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, frozen=False)


class RawArticle(_Model):
    """An article as a source delivered it, before enrichment."""

    id: str = Field("", description="Deterministic id: hash of the canonical URL, else GUID, else content")
    title: str = ""
    text: str = ""
    summary: str = ""
    url: Annotated[str | None, AfterValidator(_check_url)] = None
    guid: str | None = None
    published: UtcDatetime | None = None
    source: str = Field("", description="Feed URL, Kafka topic or other origin")
    source_name: str = ""
    language: str | None = None
    fetched_at: UtcDatetime = Field(default_factory=utcnow)

    @model_validator(mode="after")
    def _complete(self) -> RawArticle:
        if not self.text and self.summary:
            self.text = self.summary
        if not self.title and not self.text:
            raise ValueError("article has neither title nor text")
        if not self.title:
            first = re.split(r"(?<=[.!?])\s", self.text, maxsplit=1)[0]
            self.title = first if len(first) <= 160 else first[:157].rsplit(" ", 1)[0] + "..."
        if self.url:
            self.url = canonical_url(self.url)
        if not self.id:
            self.id = article_id(url=self.url, guid=self.guid, title=self.title, text=self.text)
        return self

    @property
    def full_text(self) -> str:
        """What enrichment reads; entity offsets index into this string."""
        return f"{self.title}\n\n{self.text}" if self.text else self.title


class Mention(_Model):
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    text: str


class Entity(_Model):
    """One mention of a named entity; mentions of the same thing share `canonical` (and `kb_id`)."""

    text: str
    label: str = Field(description="PERSON, ORG, GPE, LOC, NORP, ...")
    start: int = Field(ge=0, description="Offset into title + '\\n\\n' + text")
    end: int = Field(ge=0)
    canonical: str = Field("", description="The fullest name this entity has in the article")
    kb_id: str | None = Field(
        None,
        description="Stable id where known: ISO alpha-2 (countries, demonyms), 'geonames:<id>' (cities, US states), "
        "ISO 3166-2 (other subdivisions), Wikidata QID or the actor KB id (people, organisations)",
    )
    role: str | None = Field(None, description="Title that precedes a person, e.g. 'Secretary of State'")
    source: str = Field("model", description="model, gazetteer or rule: who found it")

    @model_validator(mode="after")
    def _fill(self) -> Entity:
        if self.end < self.start:
            raise ValueError("entity end before start")
        if not self.canonical:
            self.canonical = self.text
        return self


class Place(_Model):
    name: str
    country: CountryCode
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    kind: Literal["city", "admin1", "country", "region"] = "city"
    geonames_id: int | None = None
    mentions: int = Field(1, ge=1)


class TopicTag(_Model):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    score: float = Field(ge=0, le=1)
    evidence: list[str] = Field(default_factory=list, description="Sentences that triggered the topic")
    label: str = ""


class Article(RawArticle):
    """An enriched article: what the store indexes and subscriptions match against."""

    entities: list[Entity] = Field(default_factory=list)
    countries: list[CountryCode] = Field(default_factory=list, description="Most salient first")
    places: list[Place] = Field(default_factory=list)
    regions: list[str] = Field(default_factory=list, description="UN M49 regions of the countries")
    topics: list[TopicTag] = Field(default_factory=list)
    actors: list[str] = Field(
        default_factory=list,
        description="CAMEO-style actor codes, most mentioned first: country alpha-3 + type ('IRQ GOV', 'USA MIL'), "
        "or the type alone for international actors ('IGO')",
    )
    content_hash: str = ""
    enriched_at: UtcDatetime = Field(default_factory=utcnow)
    enrichment_version: str = ""

    @model_validator(mode="after")
    def _hash(self) -> Article:
        if not self.content_hash:
            self.content_hash = content_hash(self.title, self.text)
        return self

    def topic(self, topic_id: str) -> TopicTag | None:
        return next((t for t in self.topics if t.id == topic_id), None)


# --- Subscription rules -------------------------------------------------------------------------
# A rule is a tree of conditions. In YAML/JSON the short form names the condition by its key:
#   {all: [{topic: troop_withdrawal}, {country: IQ}, {not: {text: "cash withdrawal"}}]}


class TopicCondition(_Model):
    kind: Literal["topic"] = "topic"
    topic: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    min_score: float = Field(0.0, ge=0, le=1)


class CountryCondition(_Model):
    kind: Literal["country"] = "country"
    country: CountryCode

    @field_validator("country", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class RegionCondition(_Model):
    kind: Literal["region"] = "region"
    region: str = Field(min_length=2)


class EntityCondition(_Model):
    kind: Literal["entity"] = "entity"
    entity: str = Field(min_length=1, description="Name (any mention or canonical name) or kb id")
    label: str | None = None


class TextCondition(_Model):
    kind: Literal["text"] = "text"
    text: str = Field(min_length=1, description="Word or phrase, case-insensitive, on word boundaries")
    regex: bool = Field(False, description="`text` is a regular expression (case-insensitive), not a phrase")

    @model_validator(mode="after")
    def _compiles(self) -> TextCondition:
        if self.regex:
            try:
                re.compile(self.text)
            except re.error as exc:
                where = f" at position {exc.pos + 1}" if exc.pos is not None else ""
                raise ValueError(f"invalid regular expression {self.text!r}{where}: {exc.msg}") from None
        return self


class LanguageCondition(_Model):
    kind: Literal["language"] = "language"
    language: str = Field(
        pattern=r"^[a-z]{2,3}(-[a-z0-9]{2,8})*$", description="BCP 47 tag: 'en' matches en, en-gb, en-us..."
    )

    @field_validator("language", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower().replace("_", "-") if isinstance(value, str) else value


class SourceCondition(_Model):
    kind: Literal["source"] = "source"
    source: str = Field(min_length=1, description="Substring of the source URL/topic or source name")


class AllOf(_Model):
    kind: Literal["all"] = "all"
    all: list[Rule] = Field(min_length=1)


class AnyOf(_Model):
    kind: Literal["any"] = "any"
    any: list[Rule] = Field(min_length=1)


class NotRule(_Model):
    kind: Literal["not"] = "not"
    not_: Rule = Field(alias="not")

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


_RULE_KINDS = ("all", "any", "not", "topic", "country", "region", "entity", "text", "source", "language")


def _infer_kind(value: Any) -> Any:
    """Accept the short form ``{topic: x}`` by naming the condition after its key."""
    if isinstance(value, dict) and "kind" not in value:
        for key in _RULE_KINDS:
            if key in value:
                return {"kind": key, **value}
        raise ValueError(f"rule {value!r} names no condition; expected one of {', '.join(_RULE_KINDS)}")
    return value


def _rule_discriminator(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("kind")
    return getattr(value, "kind", None)


Rule = Annotated[
    Annotated[AllOf, "all"]
    | Annotated[AnyOf, "any"]
    | Annotated[NotRule, "not"]
    | TopicCondition
    | CountryCondition
    | RegionCondition
    | EntityCondition
    | TextCondition
    | SourceCondition
    | LanguageCondition,
    Field(discriminator="kind"),
]
AllOf.model_rebuild()
AnyOf.model_rebuild()
NotRule.model_rebuild()


# --- Delivery targets and timing of a subscription ----------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|m|s)", re.IGNORECASE)
_DURATION_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
MASKED = "**********"
# Pass as `context` to model_dump/model_dump_json where secrets must survive (the store), nowhere else.
REVEAL_SECRETS = {"reveal_secrets": True}


def _parse_duration(value: Any) -> Any:
    """'90s', '15m', '6h', '1d', '1h30m' or plain seconds; anything else goes on to pydantic (ISO 8601)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return timedelta(seconds=float(text))
        if text and _DURATION_PART.sub("", text).strip() == "" and _DURATION_PART.search(text):
            return timedelta(
                seconds=sum(float(n) * _DURATION_UNITS[u.lower()] for n, u in _DURATION_PART.findall(text))
            )
        if not text.upper().startswith(("P", "-P")):  # ISO 8601 durations go on to pydantic
            raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 15m, 6h, 1d or 1h30m")
    return value


def _non_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("must not be negative")
    return value


Duration = Annotated[timedelta, BeforeValidator(_parse_duration), AfterValidator(_non_negative)]


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        count, seconds = divmod(seconds, _DURATION_UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _reveal(secret: SecretStr | None, info: SerializationInfo) -> str | None:
    if secret is None:
        return None
    context = info.context if isinstance(info.context, dict) else {}
    return secret.get_secret_value() if context.get("reveal_secrets") else MASKED


class WebhookTarget(_Model):
    """HTTP POST of the Alert JSON, signed with HMAC-SHA256 of the body under `secret`."""

    kind: Literal["webhook"] = "webhook"
    url: str = Field(description="http(s) URL; private addresses are refused unless the operator allows them")
    secret: SecretStr | None = Field(None, description="Shared secret for X-Newswatch-Signature; never shown")

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        _HTTP_URL.validate_python(value)
        return value

    @field_serializer("secret")
    def _secret(self, secret: SecretStr | None, info: SerializationInfo) -> str | None:
        return _reveal(secret, info)


class KafkaTarget(_Model):
    """Publish Alert JSON to this topic, keyed by the subscription id."""

    kind: Literal["kafka"] = "kafka"
    topic: str = Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")


class EmailTarget(_Model):
    """One email per alert (or per digest) through the operator's SMTP server."""

    kind: Literal["email"] = "email"
    to: list[str] = Field(min_length=1)

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if not re.fullmatch(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+", address):
                raise ValueError(f"{address!r} is not an email address")
        return value


Target = Annotated[WebhookTarget | KafkaTarget | EmailTarget, Field(discriminator="kind")]


class Subscription(_Model):
    """Who wants to hear about what, and where to tell them."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    name: str = Field(min_length=1)
    description: str = ""
    rule: Rule
    channels: list[str] = Field(default_factory=lambda: ["console"], description="Delivery channel names")
    enabled: bool = True
    created_at: UtcDatetime = Field(default_factory=utcnow)
    targets: list[Target] = Field(default_factory=list, description="The subscriber's own webhook/kafka/email")
    realert: Duration = Field(
        timedelta(hours=24),
        description="Within this window a near-duplicate of an article already alerted on is suppressed (0: off)",
    )
    digest: Duration | None = Field(None, description="Batch alerts and deliver them once per this interval")
    active_hours: str | None = Field(
        None, description="HH:MM-HH:MM in `timezone`; alerts outside are held and delivered when the window opens"
    )
    timezone: str = Field("UTC", description="IANA time zone of active_hours")

    @field_validator("rule", mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        return _normalise_rule(value)

    @field_validator("active_hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError(f"{value!r}: expected HH:MM-HH:MM on a 24-hour clock, e.g. 08:00-18:00 or 22:00-06:00")
        if value[:5] == value[6:]:
            raise ValueError(f"{value!r}: the window is empty (start equals end)")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)") from None
        return value

    @field_validator("digest")
    @classmethod
    def _positive_digest(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("a digest interval must be positive (leave it out for immediate alerts)")
        return value

    def storage_json(self) -> str:
        """JSON with secrets in clear: only for the store, which keeps what delivery needs."""
        return self.model_dump_json(context=REVEAL_SECRETS)


def _normalise_rule(value: Any) -> Any:
    value = _infer_kind(value)
    if isinstance(value, dict):
        kind = value.get("kind")
        if kind in ("all", "any") and isinstance(value.get(kind), list):
            value = {**value, kind: [_normalise_rule(v) for v in value[kind]]}
        elif kind == "not" and "not" in value:
            value = {**value, "not": _normalise_rule(value["not"])}
    return value


AlertStatus = Literal["delivered", "pending", "digested", "suppressed", "cancelled"]


class Alert(_Model):
    """A subscription fired for an article; `id` makes delivery idempotent per pair."""

    id: str = ""
    subscription_id: str
    subscription_name: str = ""
    article_id: str
    title: str
    url: str | None = None
    published: UtcDatetime | None = None
    source: str = ""
    reasons: list[str] = Field(default_factory=list, description="Which conditions matched and why")
    topics: list[TopicTag] = Field(default_factory=list)
    countries: list[str] = Field(default_factory=list)
    entities: list[str] = Field(default_factory=list, description="Canonical names of people and groups")
    created_at: UtcDatetime = Field(default_factory=utcnow)
    summary: str = Field("", description="The article's lead, for the reader and for near-duplicate checks")
    status: AlertStatus = Field(
        "delivered",
        description="delivered; pending (held for a digest or quiet hours); digested; suppressed (a near-duplicate "
        "within the realert window); cancelled (its subscription went away while it was pending)",
    )
    status_reason: str = ""
    duplicate_of: str | None = Field(None, description="The alert this one repeats, when suppressed")

    @model_validator(mode="after")
    def _id(self) -> Alert:
        if not self.id:
            self.id = stable_hash("alert", self.subscription_id, self.article_id)
        return self


class AlertDigest(_Model):
    """Alerts of one subscription batched over an interval (digest mode or quiet hours)."""

    id: str = ""
    subscription_id: str
    subscription_name: str = ""
    alerts: list[Alert] = Field(min_length=1)
    created_at: UtcDatetime = Field(default_factory=utcnow)

    @model_validator(mode="after")
    def _id(self) -> AlertDigest:
        if not self.id:
            self.id = stable_hash("digest", self.subscription_id, *sorted(a.id for a in self.alerts))
        return self


Stage = Literal["fetch", "parse", "validate", "normalize", "enrich", "index", "match", "deliver"]


class DeadLetter(_Model):
    """A record the job could not process, kept with its reason and raw payload."""

    id: str = ""
    stage: Stage
    reason: str
    payload: str = Field("", description="The raw input, as received (truncated to 1 MB)")
    source: str = ""
    details: dict[str, Any] = Field(default_factory=dict)
    created_at: UtcDatetime = Field(default_factory=utcnow)

    @field_validator("payload", mode="before")
    @classmethod
    def _truncate(cls, value: Any) -> Any:
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="backslashreplace")
        if isinstance(value, str) and len(value) > 1_000_000:
            return value[:1_000_000]
        return value

    @model_validator(mode="after")
    def _id(self) -> DeadLetter:
        if not self.id:
            # A record with a position in a log (a Kafka message's topic/partition/offset) is the same letter
            # each time a failed cycle reads it again, so the replay overwrites it; other letters are events.
            d = self.details
            position = f"{d.get('origin')}/{d.get('topic')}/{d.get('partition')}/{d['offset']}" if "offset" in d else ""
            self.id = stable_hash(
                "dl", self.stage, self.source, self.reason, self.payload, position or self.created_at.isoformat()
            )
        return self
