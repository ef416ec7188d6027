"""Real servers and inputs for the alert tests: a webhook receiver that checks signatures, RSS files."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pipelines.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
SEED_TITLE = "Iraq's parliament calls for expulsion of U.S. troops after Soleimani killing"
SEED_TEXT = (REPO / "seeds" / "seed-article.txt").read_text(encoding="utf-8")
PUBLISHED = datetime(2020, 1, 5, 18, 30, tzinfo=UTC)
PARAGRAPHS = [p for p in SEED_TEXT.split("\n\n") if p.strip()]
MALI = (
    "France will pull out its soldiers from Mali after nine years of fighting jihadists, President Emmanuel "
    "Macron said on Thursday, as relations with the ruling junta in Bamako collapsed. The withdrawal of troops "
    "will take four to six months, and bases in northern Mali will close."
)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool | None  # None: no secret configured on the receiver

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """An HTTP server on loopback that verifies X-Newswatch-Signature with `secret`.

    `script` lists what to do with successive requests: an HTTP status, or "hang" (answer nothing for
    `hang_seconds`); once the script runs out every request gets `default_status`."""

    secret: str | None = None
    script: list[int | str] = field(default_factory=list)
    default_status: int = 200
    hang_seconds: float = 5.0
    received: list[Received] = field(default_factory=list)
    redirect_to: str | None = None

    def __post_init__(self) -> None:
        receiver = self
        self._stop = threading.Event()
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                signature_ok = None
                if receiver.secret is not None:
                    expected = "sha256=" + hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                    signature_ok = hmac.compare_digest(expected, self.headers.get("X-Newswatch-Signature", ""))
                with receiver._lock:
                    receiver.received.append(Received(self.path, dict(self.headers), body, signature_ok))
                    action = receiver.script.pop(0) if receiver.script else receiver.default_status
                if action == "hang":
                    receiver._stop.wait(receiver.hang_seconds)
                    return
                status = int(action)
                self.send_response(status)
                if status in (307, 308) and receiver.redirect_to:
                    self.send_header("Location", receiver.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.received) < count:
            time.sleep(0.05)
        return list(self.received)

    def close(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def rss(title: str, items: list[dict[str, Any]]) -> str:
    """A small RSS 2.0 document; each item: title, link, text, published (datetime)."""
    entries = []
    for item in items:
        entries.append(
            "<item>"
            f"<title>{escape(item['title'])}</title>"
            f"<link>{escape(item['link'])}</link>"
            f"<guid>{escape(item['link'])}</guid>"
            f"<pubDate>{format_datetime(item['published'])}</pubDate>"
            f"<description>{escape(item['text'])}</description>"
            "</item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>https://example.org/</link><description>test</description>"
        + "".join(entries)
        + "</channel></rss>"
    )


def write_feed(directory: Path, name: str, items: list[dict[str, Any]]) -> Path:
    path = directory / name
    path.write_text(rss(name, items), encoding="utf-8")
    return path


def job_settings(tmp: Path, feeds: list[Path], **overrides: Any) -> Settings:
    """Settings for a test job: its own data dir, no default subscriptions, fast enrichment, no console."""
    empty = tmp / "no-subscriptions.yaml"
    if not empty.exists():
        empty.write_text("subscriptions: []\n", encoding="utf-8")
    values: dict[str, Any] = {
        "data_dir": tmp / "data",
        "feeds": [str(f) for f in feeds],
        "feed_dirs": [str(tmp)],
        "fast": True,
        "console_alerts": False,
        "subscriptions_file": empty,
        "webhook_backoff_max": 0.2,
        "webhook_timeout": 2.0,
    }
    values.update(overrides)
    return load_settings(**values)


def seed_story_feeds(tmp_path: Path) -> list[Path]:
    """The seed story in three feeds: different URLs and titles, near-identical text."""
    world = write_feed(
        tmp_path,
        "world.xml",
        [
            {
                "title": SEED_TITLE,
                "link": "https://wire.example/2020/01/05/iraq",
                "text": SEED_TEXT,
                "published": PUBLISHED,
            }
        ],
    )
    desk = write_feed(
        tmp_path,
        "desk.xml",
        [
            {
                "title": "Iraqi parliament calls for expulsion of US troops after Soleimani killing",
                "link": "https://desk.example/middle-east/iraq-us-troops",
                "text": SEED_TEXT.replace("’", "'"),
                "published": PUBLISHED,
            }
        ],
    )
    monitor = write_feed(
        tmp_path,
        "monitor.xml",
        [
            {
                "title": "Iraq parliament votes to expel U.S. troops after Soleimani strike",
                "link": "https://monitor.example/iraq/parliament-vote",
                "text": "\n\n".join(PARAGRAPHS[:4]),
                "published": PUBLISHED,
            }
        ],
    )
    return [world, desk, monitor]
