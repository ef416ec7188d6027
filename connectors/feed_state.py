"""Feed state (ETag, Last-Modified, schedule, failures) kept between cycles in a local SQLite file."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from connectors.rss import FeedState

_DATES = ("last_checked", "next_due")


class FeedStateStore:
    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS feed_state (url TEXT PRIMARY KEY, doc TEXT NOT NULL)")

    def get_all(self) -> dict[str, FeedState]:
        rows = self._db.execute("SELECT url, doc FROM feed_state").fetchall()
        return {url: _decode(doc) for url, doc in rows}

    def save(self, states: Iterable[FeedState]) -> None:
        rows = [(s.url, _encode(s)) for s in states]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT INTO feed_state (url, doc) VALUES (?, ?) ON CONFLICT(url) DO UPDATE SET doc = excluded.doc",
                rows,
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()


def _encode(state: FeedState) -> str:
    data = asdict(state)
    for key in _DATES:
        data[key] = data[key].isoformat() if data[key] else None
    return json.dumps(data)


def _decode(doc: str) -> FeedState:
    data = json.loads(doc)
    for key in _DATES:
        data[key] = datetime.fromisoformat(data[key]) if data.get(key) else None
    return FeedState(**data)


def state_to_json(state: FeedState) -> str:
    """One feed's state as JSON (the streaming source keeps it in Beam state rather than this file)."""
    return _encode(state)


def state_from_json(doc: str) -> FeedState:
    return _decode(doc)
