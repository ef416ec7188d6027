"""Email delivery through the operator's SMTP server: one message per alert, or per digest."""

from __future__ import annotations

import logging
import smtplib
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from pydantic import SecretStr

from connectors.alert_channels import DeliveryError
from schemas import Alert, AlertDigest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 25
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "newswatch@localhost"
    starttls: bool = False  # upgrade a plain connection (port 587)
    ssl: bool = False  # TLS from the first byte (port 465)
    timeout: float = 10.0
    attempts: int = 3
    backoff: float = 0.5
    backoff_max: float = 10.0

    def __repr__(self) -> str:  # the password stays out of logs and tracebacks
        return f"SmtpConfig(host={self.host!r}, port={self.port}, username={self.username!r})"


def alert_text(alert: Alert) -> str:
    topics = ", ".join(f"{t.id} ({t.score:.2f})" for t in alert.topics) or "-"
    lines = [
        alert.title,
        "",
        f"Link:       {alert.url or '-'}",
        f"Published:  {alert.published.isoformat() if alert.published else '-'}",
        f"Source:     {alert.source or '-'}",
        f"Countries:  {', '.join(alert.countries) or '-'}",
        f"Topics:     {topics}",
        f"People/orgs: {', '.join(alert.entities[:10]) or '-'}",
        "",
        "Why it matched:",
        *(f"  - {reason}" for reason in alert.reasons),
    ]
    if alert.summary:
        lines += ["", alert.summary]
    return "\n".join(lines)


class EmailChannel:
    name = "email"

    def __init__(
        self, recipients: Sequence[str], config: SmtpConfig, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.recipients, self.config, self.sleep = list(recipients), config, sleep

    def deliver(self, alert: Alert) -> None:
        subject = f"[newswatch] {alert.subscription_name or alert.subscription_id}: {alert.title}"
        self._send(self._message(subject, alert_text(alert) + _footer(alert.subscription_id), alert.id))

    def deliver_digest(self, digest: AlertDigest) -> None:
        name = digest.subscription_name or digest.subscription_id
        parts = [f"{len(digest.alerts)} alert(s) for {name}", ""]
        for number, alert in enumerate(digest.alerts, 1):
            parts += [f"{number}. " + alert_text(alert).replace("\n", "\n   "), ""]
        subject = f"[newswatch] {name}: digest of {len(digest.alerts)} alert(s)"
        self._send(self._message(subject, "\n".join(parts) + _footer(digest.subscription_id), digest.id))

    def close(self) -> None:
        return None

    def _message(self, subject: str, body: str, ref: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.config.sender
        message["To"] = ", ".join(self.recipients)
        message["Subject"] = " ".join(subject.split())[:200]
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(idstring=ref[:16], domain="newswatch")
        message["X-Newswatch-Ref"] = ref
        message.set_content(body)
        return message

    def _send(self, message: EmailMessage) -> None:
        cfg = self.config
        last = ""
        for attempt in range(1, max(1, cfg.attempts) + 1):
            try:
                self._send_once(message)
                return
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPAuthenticationError) as exc:
                raise DeliveryError(f"smtp {cfg.host}:{cfg.port} refused the message: {_smtp_reason(exc)}") from None
            except smtplib.SMTPResponseException as exc:
                if exc.smtp_code >= 500:
                    raise DeliveryError(f"smtp {cfg.host}:{cfg.port} answered {exc.smtp_code}; not retried") from None
                last = f"SMTP {exc.smtp_code}"
            except (OSError, smtplib.SMTPException) as exc:
                last = type(exc).__name__
            if attempt < cfg.attempts:
                log.info("smtp %s:%d attempt %d/%d failed (%s)", cfg.host, cfg.port, attempt, cfg.attempts, last)
                self.sleep(min(cfg.backoff_max, cfg.backoff * 2 ** (attempt - 1)))
        raise DeliveryError(f"smtp {cfg.host}:{cfg.port}: gave up after {cfg.attempts} attempt(s); last: {last}")

    def _send_once(self, message: EmailMessage) -> None:
        cfg = self.config
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if cfg.ssl:
            client = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=context)
        else:
            client = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
        with client:
            if cfg.starttls and not cfg.ssl:
                client.starttls(context=context)
            if cfg.username and cfg.password is not None:
                client.login(cfg.username, cfg.password.get_secret_value())
            client.send_message(message, from_addr=cfg.sender, to_addrs=self.recipients)


def _footer(subscription_id: str) -> str:
    return f"\n\n--\nnewswatch subscription {subscription_id}; `newswatch subscriptions show {subscription_id}`\n"


def _smtp_reason(exc: smtplib.SMTPException) -> str:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "recipient(s) " + ", ".join(sorted(exc.recipients))
    code = getattr(exc, "smtp_code", "")
    return f"{type(exc).__name__} {code}".strip()
