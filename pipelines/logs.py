"""Logging: readable lines on stderr, or one JSON object per line for log shippers."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

MASK = "**********"
_SECRETS: set[str] = set()
# kafka-python logs every request at DEBUG, the SASL PLAIN handshake (user and password in clear) included.
_AUTH_BYTES = re.compile(r"(auth_bytes=)b(['\"]).*?(?<!\\)\2")


def add_secrets(*values: str | None) -> None:
    """Values no log line may show, whichever library logs them: settings' secrets, webhook secrets."""
    _SECRETS.update(v for v in values if v and len(v) >= 4)


def redact(text: str) -> str:
    text = _AUTH_BYTES.sub(rf"\1{MASK}", text)
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        if record.exc_info:
            data["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False)


class _DropImportNoise(logging.Filter):
    """Beam warns at import about optional Google Cloud libraries we do not use."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "root" and "apitools not found" in record.getMessage())


def configure(level: str = "INFO", json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_DropImportNoise())
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else RedactingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Beam and friends are chatty at INFO; keep their warnings, unless debugging.
    noisy_level = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in ("apache_beam", "kafka", "elastic_transport", "urllib3", "spacy"):
        logging.getLogger(name).setLevel(noisy_level)
