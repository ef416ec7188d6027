"""Hostile and broken feeds from a real local HTTP server: nothing crashes, nothing hangs, nothing leaks."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from connectors.rss import FeedBatch, FeedFetcher, FetchLimits, PollPolicy, poll_feed
from pipelines.records import normalize
from schemas import RawArticle
from tests.conftest import run_cli
from tests.servers import FeedServer


def _items(n: int, body: str = "<description>Body {i}.</description>") -> bytes:
    items = "".join(
        f"<item><title>Item {i}</title><link>https://example.com/{i}</link>{body.format(i=i)}</item>" for i in range(n)
    )
    head = '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>T</title>'
    return f"{head}{items}</channel></rss>".encode()


def _poll(server: FeedServer, path: str, **limits: object) -> FeedBatch:
    fetcher = FeedFetcher(FetchLimits(**{"read_timeout_s": 1.0, "total_timeout_s": 3.0, **limits}))  # type: ignore[arg-type]
    return poll_feed(server.url(path), None, fetcher, PollPolicy())


def _route(server: FeedServer, path: str, handler: Callable[[BaseHTTPRequestHandler], None]) -> None:
    server.routes[path] = handler


def test_server_errors_are_dead_letters(feed_server: FeedServer) -> None:
    feed_server.serve_bytes("/500.xml", b"oops", status=500)
    assert _poll(feed_server, "/500.xml").dead_letters[0].reason.startswith("HTTP 500")
    assert _poll(feed_server, "/404.xml").dead_letters[0].reason.startswith("HTTP 404")


def test_a_server_that_trickles_forever_is_cut_off(feed_server: FeedServer) -> None:
    def trickle(request: BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "application/rss+xml")
        request.end_headers()
        try:
            for _ in range(100):
                request.wfile.write(b" " * 10)
                request.wfile.flush()
                time.sleep(0.2)
        except OSError:
            return

    _route(feed_server, "/trickle.xml", trickle)
    started = time.monotonic()
    batch = _poll(feed_server, "/trickle.xml", total_timeout_s=1.5)
    assert time.monotonic() - started < 5
    assert "timed out" in batch.dead_letters[0].reason


def test_declared_oversize_is_refused_before_reading(feed_server: FeedServer) -> None:
    feed_server.serve_bytes("/big.xml", b"x" * 200_000)
    batch = _poll(feed_server, "/big.xml", max_bytes=100_000)
    assert "too large" in batch.dead_letters[0].reason


def test_gzip_bomb_is_stopped_at_the_inflated_cap(feed_server: FeedServer) -> None:
    bomb = gzip.compress(b"<" * 50_000_000, compresslevel=9)
    assert len(bomb) < 100_000

    def handle(request: BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Encoding", "gzip")
        request.send_header("Content-Length", str(len(bomb)))
        request.end_headers()
        request.wfile.write(bomb)

    _route(feed_server, "/bomb.xml", handle)
    batch = _poll(feed_server, "/bomb.xml", max_bytes=2_000_000)
    assert "too large" in batch.dead_letters[0].reason


def test_billion_laughs_and_xxe_are_refused(feed_server: FeedServer, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY lol "lol">'
        + b"".join(f'<!ENTITY lol{i} "{"&lol{};".format(i - 1 if i else "") * 10}">'.encode() for i in range(1, 9))
        + b']><rss version="2.0"><channel><item><title>&lol8;</title></item></channel></rss>'
    )
    xxe = (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM "file://{secret}">]>'
        '<rss version="2.0"><channel><item><title>&xxe;</title><link>https://e.com/1</link></item></channel></rss>'
    ).encode()
    feed_server.serve_bytes("/laughs.xml", laughs)
    feed_server.serve_bytes("/xxe.xml", xxe)
    for path in ("/laughs.xml", "/xxe.xml"):
        batch = _poll(feed_server, path)
        assert batch.articles == []
        assert "entities" in batch.dead_letters[0].reason
    assert "TOP-SECRET" not in json.dumps([d.model_dump(mode="json") for d in batch.dead_letters]).replace(
        str(secret), ""
    )


def test_invalid_encoding_still_yields_articles(feed_server: FeedServer) -> None:
    body = _items(2).replace(b"Body 0.", "Café déjà".encode("latin-1"))
    feed_server.serve_bytes("/latin1.xml", body, content_type="application/rss+xml; charset=utf-8")
    batch = _poll(feed_server, "/latin1.xml")
    assert len(batch.articles) == 2 or batch.dead_letters  # decoded somehow, or refused with a reason
    for article in batch.articles:
        article.model_dump_json()  # whatever came through is valid text


def test_ten_thousand_entries_are_capped_not_fatal(feed_server: FeedServer) -> None:
    feed_server.serve_bytes("/huge.xml", _items(10_000))
    batch = _poll(feed_server, "/huge.xml", max_entries=5000, total_timeout_s=30.0)
    assert len(batch.articles) == 5000
    assert any("10000 entries" in w for w in batch.warnings)


def test_entries_without_link_title_or_date(feed_server: FeedServer) -> None:
    body = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        b"<item><description>Only a body. Second sentence.</description></item>"
        b"<item><title>Only a title</title></item>"
        b"<item><guid>tag:example.com,2024:42</guid><title>Guid only</title></item>"
        b"<item><pubDate>not a date</pubDate></item>"
        b"</channel></rss>"
    )
    feed_server.serve_bytes("/sparse.xml", body)
    batch = _poll(feed_server, "/sparse.xml")
    assert [a.title for a in batch.articles] == ["Only a body.", "Only a title", "Guid only"]
    assert all(a.url is None and a.published is None for a in batch.articles)
    assert len({a.id for a in batch.articles}) == 3
    assert len(batch.dead_letters) == 1 and "neither title nor text" in batch.dead_letters[0].reason


def test_scripts_and_markup_never_reach_stored_text(feed_server: FeedServer) -> None:
    body = _items(
        1,
        body="<description><![CDATA[<p>Hi</p><script>document.cookie</script>"
        "<img src=x onerror=alert(1)><iframe src=//evil></iframe><style>p{{}}</style>]]></description>",
    )
    feed_server.serve_bytes("/xss.xml", body)
    article = _poll(feed_server, "/xss.xml").articles[0]
    assert article.text == "Hi"


def test_future_dates_are_clamped_and_old_dates_kept() -> None:
    now = datetime(2024, 6, 1, tzinfo=UTC)
    future = RawArticle(title="t", published=datetime(2031, 1, 1, tzinfo=UTC), fetched_at=now)
    assert normalize(future, now=now).published == now
    old = RawArticle(title="t", published=datetime(1901, 1, 1, tzinfo=UTC), fetched_at=now)
    assert normalize(old, now=now).published == datetime(1901, 1, 1, tzinfo=UTC)
    soon = RawArticle(title="t", published=now + timedelta(hours=2), fetched_at=now)
    assert normalize(soon, now=now).published == now + timedelta(hours=2)  # clock skew is tolerated


@pytest.mark.slow
def test_a_cycle_over_every_hostile_feed_finishes_with_reasons(feed_server: FeedServer, tmp_path: Path) -> None:
    def hang(request: BaseHTTPRequestHandler) -> None:
        time.sleep(20)

    def loop(request: BaseHTTPRequestHandler) -> None:
        request.send_response(301)
        request.send_header("Location", "/loop.xml")
        request.send_header("Content-Length", "0")
        request.end_headers()

    feed_server.serve_bytes("/good.xml", _items(3))
    feed_server.serve_bytes("/500.xml", b"", status=500)
    feed_server.serve_bytes("/html.xml", b"<html><body>Not a feed</body></html>", content_type="text/html")
    feed_server.serve_bytes("/entities.xml", b'<!DOCTYPE r [<!ENTITY a "b">]><rss/>')
    _route(feed_server, "/hang.xml", hang)
    _route(feed_server, "/loop.xml", loop)
    paths = ["/good.xml", "/500.xml", "/html.xml", "/entities.xml", "/hang.xml", "/loop.xml", "/missing.xml"]
    feeds = ",".join(feed_server.url(p) for p in paths)
    started = time.monotonic()
    result = run_cli(
        "run",
        "--once",
        "--fast",
        "--feeds",
        feeds,
        "--data-dir",
        str(tmp_path),
        env={"NEWSWATCH_FETCH_TIMEOUT": "1"},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 60
    assert "new=3" in result.stderr and "rss.failed=6" in result.stderr
    letters = [
        json.loads(line)
        for line in run_cli("deadletters", "list", "--json", "--data-dir", str(tmp_path)).stdout.splitlines()
    ]
    reasons = {d["source"].rsplit("/", 1)[1]: d["reason"] for d in letters}
    assert set(reasons) == {p.lstrip("/") for p in paths[1:]}
    assert all(reasons.values())
