"""The RSS connector against real files and a real local HTTP server."""

from __future__ import annotations

import gzip
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import feedparser

from connectors.rss import (
    FeedFetcher,
    FeedState,
    FetchLimits,
    PollPolicy,
    html_to_text,
    parse_feed,
    poll_feed,
    read_feed_list,
)
from seeds import FEEDS_DIR
from tests.servers import FeedServer

RSS = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Test Wire</title>
<item><title>Troops leave &amp; return</title><link>https://example.com/a?utm_source=rss</link>
<description>&lt;p&gt;First &lt;b&gt;para&lt;/b&gt;.&lt;/p&gt;&lt;script&gt;alert(1)&lt;/script&gt;
&lt;p&gt;Second.&lt;/p&gt;</description>
<pubDate>Sun, 05 Jan 2020 18:30:00 +0300</pubDate><guid>https://example.com/a</guid></item>
<item><title>No date item</title><link>https://example.com/b</link><description>Body b.</description></item>
</channel></rss>"""


def test_seed_feeds_parse_into_articles() -> None:
    world = parse_feed(
        (FEEDS_DIR / "world-wire.xml").read_bytes(), url="world-wire.xml", content_type="application/rss+xml"
    )
    assert not world.dead_letters
    seed = world.articles[0]
    assert seed.title.startswith("Iraq's parliament")
    assert "Qassem Soleimani" in seed.text and "<p>" not in seed.text
    assert seed.text.count("\n\n") >= 20  # paragraphs survive as blank-line breaks
    assert seed.published == datetime(2020, 1, 5, 18, 30, tzinfo=UTC)
    assert seed.url == "https://news.example.com/world/2020/01/05/iraq-parliament-us-troops"  # tracking dropped
    assert seed.source_name == "World Wire"
    atom = parse_feed((FEEDS_DIR / "global-monitor.atom").read_bytes(), url="global-monitor.atom")
    assert len(atom.articles) == 9
    assert all("alert(1)" not in a.text and "<script" not in a.text for a in atom.articles)


def test_html_is_stripped_scripts_dropped_entities_decoded() -> None:
    batch = parse_feed(RSS, url="http://x/feed")
    first = batch.articles[0]
    assert first.title == "Troops leave & return"
    assert first.text == "First para.\n\nSecond."
    assert first.published == datetime(2020, 1, 5, 15, 30, tzinfo=UTC)
    assert batch.articles[1].published is None
    assert html_to_text("<p>a&nbsp;b</p><br/>c") == "a b\n\nc"


def test_malformed_feed_becomes_one_dead_letter_with_reason() -> None:
    batch = parse_feed((FEEDS_DIR / "broken.xml").read_bytes(), url="broken.xml")
    assert batch.articles == []
    assert len(batch.dead_letters) == 1
    letter = batch.dead_letters[0]
    assert letter.stage == "fetch" and letter.reason.startswith("feed yielded no entries")
    assert "502" in letter.payload  # the raw body is kept


def test_bozo_feed_with_entries_is_used_with_a_warning() -> None:
    broken_tail = RSS.replace(b"</channel></rss>", b"<item><title>cut")
    assert feedparser.parse(broken_tail).bozo
    batch = parse_feed(broken_tail, url="x", content_type="application/rss+xml")
    assert len(batch.articles) >= 2
    assert batch.warnings and "not well-formed" in batch.warnings[0]


def test_xml_entity_declarations_are_refused() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>' + RSS[21:]
    batch = parse_feed(bomb, url="x")
    assert batch.articles == [] and "entities" in batch.dead_letters[0].reason


def _fetcher(**limits: object) -> FeedFetcher:
    return FeedFetcher(FetchLimits(**limits))  # type: ignore[arg-type]


def test_conditional_get_uses_etag_and_user_agent(feed_server: FeedServer) -> None:
    feed_server.serve_bytes("/feed.xml", RSS, etag='"v1"', headers={"Last-Modified": "Sun, 05 Jan 2020 18:30:00 GMT"})
    policy = PollPolicy()
    first = poll_feed(feed_server.url("/feed.xml"), None, _fetcher(), policy)
    assert len(first.articles) == 2 and first.state is not None
    assert first.state.etag == '"v1"' and first.state.last_modified
    second = poll_feed(feed_server.url("/feed.xml"), first.state, _fetcher(), policy)
    assert second.not_modified and second.articles == []
    _, headers = feed_server.requests[-1]
    assert headers["If-None-Match"] == '"v1"'
    assert headers["If-Modified-Since"] == "Sun, 05 Jan 2020 18:30:00 GMT"
    assert headers["User-Agent"].startswith("newswatch/")


def test_http_errors_become_dead_letters_and_back_off(feed_server: FeedServer) -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    policy = PollPolicy(interval=timedelta(minutes=5), max_backoff=timedelta(minutes=30))
    batch = poll_feed(feed_server.url("/missing.xml"), None, _fetcher(), policy, now)
    assert batch.dead_letters[0].reason.startswith("HTTP 404")
    assert batch.state is not None and batch.state.failures == 1
    assert batch.state.next_due == now + timedelta(minutes=10)
    again = poll_feed(feed_server.url("/missing.xml"), batch.state, _fetcher(), policy, now)
    assert again.state is not None and again.state.failures == 2
    capped = poll_feed(feed_server.url("/missing.xml"), FeedState(url="u", failures=9), _fetcher(), policy, now)
    assert capped.state is not None and capped.state.next_due == now + timedelta(minutes=30)


def test_unreachable_host_is_a_dead_letter() -> None:
    batch = poll_feed("http://127.0.0.1:9/feed.xml", None, _fetcher(connect_timeout_s=1.0), PollPolicy())
    assert batch.dead_letters[0].stage == "fetch"
    assert "request failed" in batch.dead_letters[0].reason


def test_size_cap_applies_to_the_inflated_body(feed_server: FeedServer) -> None:
    bomb = gzip.compress(b" " * 5_000_000)

    def handle(request: BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "application/rss+xml")
        request.send_header("Content-Encoding", "gzip")
        request.send_header("Content-Length", str(len(bomb)))
        request.end_headers()
        request.wfile.write(bomb)

    feed_server.routes["/bomb.xml"] = handle
    batch = poll_feed(feed_server.url("/bomb.xml"), None, _fetcher(max_bytes=1_000_000), PollPolicy())
    assert "too large" in batch.dead_letters[0].reason


def test_slow_server_times_out(feed_server: FeedServer) -> None:
    def handle(request: BaseHTTPRequestHandler) -> None:
        time.sleep(3)
        request.send_response(200)
        request.end_headers()

    feed_server.routes["/slow.xml"] = handle
    started = time.monotonic()
    batch = poll_feed(feed_server.url("/slow.xml"), None, _fetcher(read_timeout_s=0.5), PollPolicy())
    assert time.monotonic() - started < 2.5
    assert "timed out" in batch.dead_letters[0].reason


def test_redirect_loop_is_cut(feed_server: FeedServer) -> None:
    def handle(request: BaseHTTPRequestHandler) -> None:
        request.send_response(302)
        request.send_header("Location", "/loop.xml")
        request.send_header("Content-Length", "0")
        request.end_headers()

    feed_server.routes["/loop.xml"] = handle
    batch = poll_feed(feed_server.url("/loop.xml"), None, _fetcher(max_redirects=3), PollPolicy())
    assert "redirects" in batch.dead_letters[0].reason


def test_file_feeds_use_mtime_etag_and_stay_in_allowed_dirs(tmp_path: Path) -> None:
    feed = tmp_path / "local.xml"
    feed.write_bytes(RSS)
    fetcher = FeedFetcher(allowed_dirs=[tmp_path])
    first = poll_feed(str(feed), None, fetcher, PollPolicy())
    assert len(first.articles) == 2
    assert poll_feed(str(feed), first.state, fetcher, PollPolicy()).not_modified
    outside = poll_feed("/etc/passwd", None, fetcher, PollPolicy())
    assert "outside the allowed feed directories" in outside.dead_letters[0].reason


def test_feed_list_from_string_file_and_directory(tmp_path: Path) -> None:
    listing = tmp_path / "feeds.txt"
    listing.write_text("# my feeds\nhttps://a.example/rss\n\nhttps://b.example/atom\n")
    assert read_feed_list(f"{listing}, https://c.example/x") == [
        "https://a.example/rss",
        "https://b.example/atom",
        "https://c.example/x",
    ]
    from_dir = read_feed_list(str(FEEDS_DIR))
    assert {Path(f).name for f in from_dir} == {
        "world-wire.xml",
        "regional-desk.xml",
        "global-monitor.atom",
        "broken.xml",
    }
