"""Stopping the continuous job: SIGTERM finishes the cycle and commits; a second one abandons it."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.servers import FeedServer, env_with

pytestmark = pytest.mark.slow

FEED = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>Slow</title>'
    b"<item><title>Troops leave the base</title><link>https://example.com/1</link></item></channel></rss>"
)


def _slow_feed(server: FeedServer, seconds: float) -> str:
    def handle(request: BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)
        request.send_response(200)
        request.send_header("Content-Type", "application/rss+xml")
        request.send_header("Content-Length", str(len(FEED)))
        request.end_headers()
        request.wfile.write(FEED)

    server.routes["/slow.xml"] = handle
    return server.url("/slow.xml")


def _start(tmp_path: Path, feed: str) -> subprocess.Popen[str]:
    env = env_with(PYTHONPATH=str(REPO), NEWSWATCH_FETCH_TIMEOUT="10")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "run",
            "--fast",
            "--interval",
            "60",
            "--feeds",
            feed,
            "--data-dir",
            str(tmp_path),
            "--no-console-alerts",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )


def _wait_for_request(server: FeedServer, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.requests, "the job never polled the feed"


def _feed_states(tmp_path: Path) -> list[str]:
    with sqlite3.connect(tmp_path / "state.db") as db:
        return [row[0] for row in db.execute("SELECT url FROM feed_state")]


def test_sigterm_finishes_the_cycle_then_exits(feed_server: FeedServer, tmp_path: Path) -> None:
    job = _start(tmp_path, _slow_feed(feed_server, 2.0))
    _wait_for_request(feed_server)
    job.send_signal(signal.SIGTERM)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 0, stderr
    assert "stopping after the current cycle" in stderr
    assert "cycle=1" in stderr and "new=1" in stderr
    assert _feed_states(tmp_path) == [feed_server.url("/slow.xml")]  # committed after the sinks


def test_second_sigterm_abandons_the_cycle_without_committing(feed_server: FeedServer, tmp_path: Path) -> None:
    job = _start(tmp_path, _slow_feed(feed_server, 4.0))
    _wait_for_request(feed_server)
    job.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    job.send_signal(signal.SIGTERM)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 130, stderr
    assert "abandoning the cycle" in stderr
    assert "cycle=1" not in stderr
    assert _feed_states(tmp_path) == []  # nothing committed: the next run reads the feed again
