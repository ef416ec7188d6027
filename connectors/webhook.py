"""Webhook delivery: the Alert JSON POSTed with an HMAC-SHA256 signature, retried with capped backoff.

Webhook URLs are chosen by subscribers, so they are a server-side request forgery risk: any URL whose host
resolves to a loopback, private, link-local, shared or reserved address is refused unless the operator allows
it. The check runs when a subscription is created, again before every request (DNS may have changed), and
once more on the connected socket's peer address, which also covers DNS rebinding and redirects.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from pydantic import SecretStr
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

from connectors.alert_channels import DeliveryError
from schemas import MASKED, Alert, AlertDigest

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Newswatch-Signature"
ALLOW_PRIVATE_SETTING = "NEWSWATCH_WEBHOOK_ALLOW_PRIVATE"
Resolver = Callable[[str, int], list[str]]


class UnsafeWebhook(ValueError):
    """A webhook URL that must not be called: bad scheme, or a non-public address."""


def default_resolver(host: str, port: int) -> list[str]:
    return list(dict.fromkeys(str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))


def address_problem(ip: str) -> str | None:
    """Why `ip` is not a public unicast address, or None when it is."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    for label, flag in (
        ("loopback", addr.is_loopback),
        ("link-local", addr.is_link_local),
        ("unspecified", addr.is_unspecified),
        ("multicast", addr.is_multicast),
        ("reserved", addr.is_reserved),
        ("private", addr.is_private),
    ):
        if flag:
            return label
    return None if addr.is_global else "non-global"


def sign(body: bytes, secret: str) -> str:
    """The X-Newswatch-Signature value: HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def redact_url(url: str) -> str:
    """For messages and logs: no credentials, query or fragment (they often carry tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check_webhook_url(url: str, *, allow_private: bool = False, resolver: Resolver = default_resolver) -> None:
    """Raise UnsafeWebhook unless `url` is http(s) and (unless allowed) every address of its host is public."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeWebhook(f"webhook URL {redact_url(url)!r} must be http:// or https:// with a host")
    if allow_private:
        return
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeWebhook(f"webhook URL {redact_url(url)!r}: {exc}") from None
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise UnsafeWebhook(f"webhook host {host!r} does not resolve: {exc}") from None
    for address in addresses:
        problem = address_problem(address)
        if problem:
            raise UnsafeWebhook(
                f"webhook host {host!r} resolves to {address}, a {problem} address; webhooks to loopback, "
                f"private, link-local or reserved addresses are refused (the operator can allow them with "
                f"{ALLOW_PRIVATE_SETTING}=true)"
            )


# --- the connection-level guard ---


class _RefusedPeer(NewConnectionError):
    pass


def _guarded(sock: socket.socket, conn: HTTPConnection) -> socket.socket:
    peer = str(sock.getpeername()[0])
    problem = address_problem(peer)
    if problem:
        sock.close()
        raise _RefusedPeer(conn, f"connected to {peer}, a {problem} address: refused")
    return sock


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _guarded(super()._new_conn(), self)


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _guarded(super()._new_conn(), self)


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class PublicOnlyAdapter(HTTPAdapter):
    """A requests adapter whose sockets refuse to talk to non-public peers."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


def webhook_session(allow_private: bool = False) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment: the guard must see the real peer
    if not allow_private:
        adapter = PublicOnlyAdapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    return session


def _refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):  # requests wraps urllib3's MaxRetryError, whose reason is our error
        if seen is None:
            break
        if isinstance(seen, _RefusedPeer):
            return True
        reason = getattr(seen, "reason", None)
        nested = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = reason if isinstance(reason, BaseException) else nested or seen.__cause__ or seen.__context__
    return False


# --- the channel ---


@dataclass(frozen=True)
class WebhookPolicy:
    timeout: float = 10.0  # seconds, for connecting and for each read
    attempts: int = 4
    backoff: float = 0.5  # first wait; doubles per attempt
    backoff_max: float = 10.0
    allow_private: bool = False
    max_redirects: int = 3  # only 307/308, which keep the method and body; each hop is checked again
    user_agent: str = "newswatch-webhook/0.1"


class _Permanent(Exception):
    """A failure that another attempt will not fix (4xx, refused address, redirect not followed)."""


class WebhookChannel:
    """POSTs one subscription's alerts to its URL. Sleep and resolver are injectable for tests."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: SecretStr | None,
        policy: WebhookPolicy | None = None,
        session: requests.Session | None = None,
        resolver: Resolver = default_resolver,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url, self._secret = url, secret
        self.policy = policy or WebhookPolicy()
        self._own_session = session is None
        self.session = session or webhook_session(self.policy.allow_private)
        self.resolver, self.sleep = resolver, sleep

    def __repr__(self) -> str:
        return f"WebhookChannel({redact_url(self.url)!r})"

    def deliver(self, alert: Alert) -> None:
        self._post(alert.model_dump_json().encode("utf-8"), "alert", alert.id)

    def deliver_digest(self, digest: AlertDigest) -> None:
        self._post(digest.model_dump_json().encode("utf-8"), "digest", digest.id)

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    def _post(self, body: bytes, event: str, delivery_id: str) -> None:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self.policy.user_agent,
            "X-Newswatch-Event": event,
            "X-Newswatch-Delivery": delivery_id,
        }
        if self._secret is not None:
            secret = self._secret.get_secret_value()
            if secret == MASKED:
                raise DeliveryError(f"{redact_url(self.url)}: the stored secret is masked; add the subscription again")
            headers[SIGNATURE_HEADER] = sign(body, secret)
        last = ""
        attempts = max(1, self.policy.attempts)
        for attempt in range(1, attempts + 1):
            wait = min(self.policy.backoff_max, self.policy.backoff * 2 ** (attempt - 1))
            try:
                response = self._send(body, headers)
            except _Permanent as exc:
                raise DeliveryError(f"{redact_url(self.url)}: {exc}") from None
            except requests.RequestException as exc:
                if _refused(exc):
                    raise DeliveryError(f"{redact_url(self.url)}: refused a non-public address") from None
                last = type(exc).__name__ + (" (timed out)" if isinstance(exc, requests.Timeout) else "")
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return
                if status not in (408, 425, 429) and status < 500:
                    raise DeliveryError(f"{redact_url(self.url)} answered HTTP {status}; not retried")
                last = f"HTTP {status}"
                wait = max(wait, min(self.policy.backoff_max, _retry_after(response)))
            if attempt < attempts:
                log.info("webhook %s attempt %d/%d failed (%s)", redact_url(self.url), attempt, attempts, last)
                self.sleep(wait)
        raise DeliveryError(f"{redact_url(self.url)}: gave up after {attempts} attempt(s); last: {last}")

    def _send(self, body: bytes, headers: dict[str, str]) -> requests.Response:
        url = self.url
        for _ in range(self.policy.max_redirects + 1):
            try:
                check_webhook_url(url, allow_private=self.policy.allow_private, resolver=self.resolver)
            except UnsafeWebhook as exc:
                raise _Permanent(str(exc)) from None
            timeout = (self.policy.timeout, self.policy.timeout)
            response = self.session.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
            response.close()
            location = response.headers.get("Location")
            if response.status_code in (307, 308) and location:
                url = urljoin(url, location)
                continue
            if 300 <= response.status_code < 400:
                raise _Permanent(f"answered a redirect (HTTP {response.status_code}); only 307/308 are followed")
            return response
        raise _Permanent(f"more than {self.policy.max_redirects} redirects")


def _retry_after(response: requests.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "0")))
    except ValueError:
        return 0.0
