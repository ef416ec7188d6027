"""Settings: flags override NEWSWATCH_* env vars, which override the config file (TOML or YAML)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from pipelines import logs
from seeds import FEEDS_DIR, SEEDS_DIR

ENV_PREFIX = "NEWSWATCH_"
# Env vars with our prefix that are not settings: the test suite's and the config file pointer.
_NOT_SETTINGS = ("NEWSWATCH_TEST_", "NEWSWATCH_CONFIG")
_SECRET_FIELDS = ("es_api_key", "es_password", "kafka_sasl_password", "smtp_password")

CommaList = Annotated[list[str], NoDecode]


class SettingsError(Exception):
    """Invalid configuration; the message names the setting (flag, env var or file key)."""


class Settings(BaseSettings):
    """Every knob of the job. Each field `x` is the env var NEWSWATCH_X and the config file key `x`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    data_dir: Path = Field(Path(".newswatch"), description="Embedded store and job state")
    feeds: CommaList = Field(
        default_factory=lambda: [str(FEEDS_DIR)],
        description="Feed URLs or paths, comma-separated, or a file listing them",
    )
    feed_dirs: CommaList = Field(
        default_factory=list, description="Directories local feed files may be read from (besides seeds/ and cwd)"
    )
    sources: CommaList = Field(default_factory=lambda: ["rss"], description="rss, kafka, or both")
    sink: Literal["sqlite", "elasticsearch"] = "sqlite"
    interval: float = Field(300.0, gt=0, description="Seconds between cycles of the continuous job")
    feed_interval: float = Field(300.0, gt=0, description="Minimum seconds between polls of one feed")
    feed_max_backoff: float = Field(6 * 3600.0, gt=0, description="Cap on a failing feed's backoff, seconds")
    fetch_timeout: float = Field(15.0, gt=0, description="Read timeout per feed request, seconds")
    fetch_max_bytes: int = Field(10 * 1024 * 1024, gt=0, description="Largest feed body accepted (after gunzip)")
    fetch_workers: int = Field(8, ge=1, le=64, description="Feeds fetched in parallel")
    user_agent: str = "newswatch/0.1 (+https://github.com/newswatch/newswatch; feed monitor)"

    fast: bool = Field(False, description="Gazetteer and rules only, no statistical NER")
    spacy_model: str | None = Field(None, description="spaCy model package or path (default en_core_web_sm)")
    ner_max_chars: int = Field(
        600, ge=0, description="Run NER on the title + the sentences of the first N chars of the body (0: all)"
    )
    enrich_workers: int | None = Field(
        None, ge=0, description="Enrichment worker processes (default: one per CPU; 0 or 1: in the job's process)"
    )
    reenrich: bool = Field(False, description="Enrich articles again even when already stored unchanged")

    subscriptions_file: Path = Field(
        SEEDS_DIR / "subscriptions.yaml", description="Default subscriptions, loaded into an empty store"
    )
    alerts_file: Path | None = Field(None, description="Also append alerts as JSON Lines to this file")
    console_alerts: bool = Field(True, description="Print alerts on stdout")

    es_url: str | None = None
    es_api_key: SecretStr | None = None
    es_username: str | None = None
    es_password: SecretStr | None = None
    es_ca_file: Path | None = Field(None, description="CA certificate (PEM) that signed the cluster's TLS certificate")
    es_index_prefix: str = Field(
        "newswatch", pattern=r"^[a-z0-9][a-z0-9_.-]{0,99}$", description="Prefix of every index, alias and template"
    )
    es_timeout: float = Field(30.0, gt=0, description="Seconds per Elasticsearch request")
    es_max_retries: int = Field(
        8,
        ge=0,
        le=30,
        description="Retries of an Elasticsearch request (429, 5xx, no connection) before the cycle fails",
    )
    es_max_backoff: float = Field(30.0, gt=0, description="Cap on the wait between Elasticsearch retries, seconds")
    es_bulk_max_docs: int = Field(500, ge=1, description="Documents per bulk request at most")
    es_bulk_max_bytes: int = Field(5 * 1024 * 1024, ge=1024, description="Bytes per bulk request at most")
    es_flush_interval: float | None = Field(
        None, gt=0, description="Streaming runners: longest wait, seconds, before a partial batch is indexed"
    )
    kibana_url: str | None = Field(None, description="Kibana base URL for `newswatch kibana import`")

    kafka_bootstrap_servers: CommaList = Field(default_factory=lambda: ["localhost:9092"])
    kafka_topic: str = "newswatch.articles"
    kafka_group_id: str = "newswatch"
    kafka_dlq_topic: str = "newswatch.deadletters"
    alerts_topic: str | None = None
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_max_records: int = Field(10_000, ge=1, description="Most Kafka messages read in one cycle (all partitions)")
    kafka_max_message_bytes: int = Field(
        1024 * 1024, ge=1, description="Larger Kafka messages go to the dead-letter topic unread"
    )
    kafka_auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="Where a group with no committed offset starts reading"
    )
    kafka_read_timeout: float = Field(
        60.0, gt=0, description="Seconds a cycle waits to join the group, and to read up to the end offsets"
    )
    kafka_group_instance_id: str | None = Field(
        None,
        description="Static group membership id (default: from host, data dir and a free slot; 'dynamic': none)",
    )

    # Alert delivery to subscribers' own targets (see docs/alerts.md).
    webhook_allow_private: bool = Field(
        False, description="Allow webhooks to loopback, private, link-local or reserved addresses"
    )
    webhook_timeout: float = Field(10.0, gt=0, description="Seconds to connect and per read, per attempt")
    webhook_attempts: int = Field(4, ge=1, le=20, description="Attempts per webhook delivery before a dead letter")
    webhook_backoff_max: float = Field(10.0, ge=0, description="Cap on the wait between webhook attempts, seconds")
    smtp_host: str | None = Field(None, description="SMTP server for email alerts")
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "newswatch@localhost"
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_timeout: float = Field(10.0, gt=0)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False

    @field_validator("feeds", "feed_dirs", "sources", "kafka_bootstrap_servers", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - {"rss", "kafka"})
        if unknown or not value:
            raise ValueError(f"unknown source(s) {', '.join(unknown) or '(none)'}; use rss, kafka or rss,kafka")
        return list(dict.fromkeys(value))

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        """`<secret>_file` (or NEWSWATCH_<SECRET>_FILE) names a file holding the secret."""
        if not isinstance(data, dict):
            return data
        for name in _SECRET_FIELDS:
            path = data.pop(f"{name}_file", None) or os.environ.get(f"{ENV_PREFIX}{name.upper()}_FILE")
            if path and not data.get(name):
                try:
                    data[name] = Path(path).read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise ValueError(f"{name}_file: cannot read {path}: {exc.strerror}") from exc
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.sink == "elasticsearch" and not self.es_url:
            raise ValueError("sink=elasticsearch needs es_url (NEWSWATCH_ES_URL or --es-url)")
        return self

    @property
    def store_path(self) -> Path:
        return self.data_dir / "newswatch.db"

    @property
    def state_path(self) -> Path:
        return self.data_dir / "state.db"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _ConfigFileSource(settings_cls)


class _ConfigFileSource(PydanticBaseSettingsSource):
    """The file named by NEWSWATCH_CONFIG (or --config): TOML, or YAML by extension."""

    path: Path | None = None

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _ConfigFileSource.path or (
            Path(os.environ["NEWSWATCH_CONFIG"]) if os.environ.get("NEWSWATCH_CONFIG") else None
        )
        if path is None:
            return {}
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SettingsError(f"config file {path}: {exc.strerror or exc}") from exc
        try:
            data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
        except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
            raise SettingsError(
                f"config file {path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {exc}"
            ) from exc
        if not isinstance(data, dict):
            raise SettingsError(f"config file {path}: expected a table of settings")
        section = data.get("newswatch", data)
        return {str(k).replace("-", "_"): v for k, v in section.items()}


def unknown_env_vars(environ: dict[str, str] | None = None) -> list[str]:
    environ = dict(os.environ) if environ is None else environ
    known = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    known |= {f"{ENV_PREFIX}{name.upper()}_FILE" for name in _SECRET_FIELDS}
    return sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in known and not k.startswith(_NOT_SETTINGS))


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from flags (`overrides`, None meaning 'not given'), env and config file."""
    unknown = unknown_env_vars()
    if unknown:
        raise SettingsError(
            f"unknown setting(s) in the environment: {', '.join(unknown)} "
            f"(see `newswatch run --help` for the NEWSWATCH_* variables)"
        )
    _ConfigFileSource.path = config_file
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
        logs.add_secrets(*(s.get_secret_value() for name in _SECRET_FIELDS if (s := getattr(settings, name))))
        return settings
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
    finally:
        _ConfigFileSource.path = None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        name = ".".join(str(p) for p in error["loc"]) or "settings"
        hint = f"NEWSWATCH_{name.upper()}" if name in Settings.model_fields else name
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        problems.append(f"{name} ({hint}): {message}")
    return "invalid settings: " + "; ".join(problems)
