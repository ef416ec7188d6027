"""Where alerts go once matched: each channel is a small class behind one interface."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Protocol, TextIO

from schemas import Alert, AlertDigest


class DeliveryError(Exception):
    """Delivery failed after the channel's own retries; the alert becomes a dead letter."""


class AlertChannel(Protocol):
    name: str

    def deliver(self, alert: Alert) -> None: ...

    def close(self) -> None: ...


class DigestChannel(AlertChannel, Protocol):
    """A channel that can send a batch of alerts as one message (an email, a POST, a block on the console)."""

    def deliver_digest(self, digest: AlertDigest) -> None: ...


def deliver_digest(channel: AlertChannel, digest: AlertDigest) -> None:
    """One message where the channel supports it, else each alert on its own."""
    send = getattr(channel, "deliver_digest", None)
    if callable(send):
        send(digest)
        return
    for alert in digest.alerts:
        channel.deliver(alert)


class ConsoleChannel:
    """One readable block per alert on stdout (the job's progress goes to stderr)."""

    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def deliver(self, alert: Alert) -> None:
        stream = self._stream or sys.stdout
        topics = ", ".join(f"{t.id} ({t.score:.2f})" for t in alert.topics) or "-"
        lines = [
            f"ALERT [{alert.subscription_name or alert.subscription_id}] {alert.title}",
            f"  url: {alert.url or '-'}   published: {alert.published.isoformat() if alert.published else '-'}",
            f"  topics: {topics}   countries: {', '.join(alert.countries) or '-'}",
            f"  why: {'; '.join(alert.reasons)}",
        ]
        with self._lock:
            stream.write("\n".join(lines) + "\n")
            stream.flush()

    def deliver_digest(self, digest: AlertDigest) -> None:
        stream = self._stream or sys.stdout
        name = digest.subscription_name or digest.subscription_id
        lines = [f"DIGEST [{name}] {len(digest.alerts)} alert(s)"]
        for alert in digest.alerts:
            lines.append(f"  - {alert.title}  {alert.url or ''}".rstrip())
            lines.append(f"    why: {'; '.join(alert.reasons)}")
        with self._lock:
            stream.write("\n".join(lines) + "\n")
            stream.flush()

    def close(self) -> None:
        return None


class JsonlFileChannel:
    """Appends Alert JSON, one per line, for tailing or shipping elsewhere."""

    name = "jsonl"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def deliver(self, alert: Alert) -> None:
        line = json.dumps(alert.model_dump(mode="json"), ensure_ascii=False)
        try:
            with self._lock, self.path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
        except OSError as exc:
            raise DeliveryError(f"cannot append to {self.path}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        return None
