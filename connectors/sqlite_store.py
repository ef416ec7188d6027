"""The embedded default store: one SQLite file with FTS5 full-text search."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from connectors.store import RejectedDocument, SearchHit, SearchQuery, StoreUnavailable, WriteOutcome
from schemas import Alert, Article, DeadLetter, Subscription

_SCHEMA = """
CREATE TABLE IF NOT EXISTS articles (
    id TEXT PRIMARY KEY,
    content_hash TEXT NOT NULL,
    enrichment_version TEXT NOT NULL DEFAULT '',
    published TEXT,
    source TEXT,
    updated_at TEXT NOT NULL,
    doc TEXT NOT NULL,
    fts_rowid INTEGER
);
CREATE INDEX IF NOT EXISTS articles_published ON articles(published);
CREATE VIRTUAL TABLE IF NOT EXISTS articles_fts USING fts5(
    id UNINDEXED, title, text, tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TABLE IF NOT EXISTS article_tags (
    article_id TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (kind, value, article_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    article_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    doc TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'delivered',
    UNIQUE (subscription_id, article_id)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id TEXT PRIMARY KEY,
    stage TEXT NOT NULL,
    reason TEXT NOT NULL,
    source TEXT,
    created_at TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subscriptions (
    id TEXT PRIMARY KEY,
    enabled INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    doc TEXT NOT NULL
);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _migrate(db: sqlite3.Connection) -> None:
    """Stores created before alerts had a status get the column (existing alerts were delivered)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(alerts)")}
    if "status" not in columns:
        db.execute("ALTER TABLE alerts ADD COLUMN status TEXT NOT NULL DEFAULT 'delivered'")
    db.execute("CREATE INDEX IF NOT EXISTS alerts_by_status ON alerts(status, subscription_id, created_at)")
    _link_full_text_rows(db)
    # Replacing an article's tags looks them up by article: without this index, a scan of every tag.
    db.execute("CREATE INDEX IF NOT EXISTS article_tags_by_article ON article_tags(article_id)")


def _link_full_text_rows(db: sqlite3.Connection) -> None:
    """Stores created before articles knew their full-text row get `fts_rowid`, filled in one pass. (FTS5 finds
    rows only by rowid or MATCH: deleting an article's old row by its id scanned the whole index, so every
    write slowed down as the store grew.)"""
    if "fts_rowid" in {row[1] for row in db.execute("PRAGMA table_info(articles)")}:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if "fts_rowid" not in {row[1] for row in db.execute("PRAGMA table_info(articles)")}:  # another process?
            db.execute("ALTER TABLE articles ADD COLUMN fts_rowid INTEGER")
            db.execute("CREATE TEMP TABLE fts_rows AS SELECT id, rowid AS fts_rowid FROM articles_fts")
            db.execute("CREATE INDEX temp.fts_rows_by_id ON fts_rows(id)")
            db.execute(
                "UPDATE articles SET fts_rowid = (SELECT f.fts_rowid FROM temp.fts_rows f WHERE f.id = articles.id)"
            )
            db.execute("DROP TABLE temp.fts_rows")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


class SqliteStore:
    """ArticleStore on SQLite. Safe to open from several threads or processes (WAL, busy timeout)."""

    def __init__(self, path: str | Path, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            _migrate(self._db)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self) -> _Tx:
        return _Tx(self._db, self._lock)

    # --- articles ---

    def write_articles(self, articles: Sequence[Article]) -> list[tuple[Article, WriteOutcome | RejectedDocument]]:
        results: list[tuple[Article, WriteOutcome | RejectedDocument]] = []
        with self._transaction() as db:
            for article in articles:
                existed = db.execute("SELECT fts_rowid FROM articles WHERE id = ?", (article.id,)).fetchone()
                db.execute(
                    "INSERT INTO articles (id, content_hash, enrichment_version, published, source, updated_at, doc)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET content_hash=excluded.content_hash,"
                    " enrichment_version=excluded.enrichment_version, published=excluded.published,"
                    " source=excluded.source, updated_at=excluded.updated_at, doc=excluded.doc",
                    (
                        article.id,
                        article.content_hash,
                        article.enrichment_version,
                        article.published.isoformat() if article.published else None,
                        article.source,
                        _now(),
                        article.model_dump_json(),
                    ),
                )
                if existed and existed[0] is not None:
                    db.execute("DELETE FROM articles_fts WHERE rowid = ?", (existed[0],))
                row = db.execute(
                    "INSERT INTO articles_fts (id, title, text) VALUES (?, ?, ?)",
                    (article.id, article.title, article.text),
                ).lastrowid
                db.execute("UPDATE articles SET fts_rowid = ? WHERE id = ?", (row, article.id))
                db.execute("DELETE FROM article_tags WHERE article_id = ?", (article.id,))
                tags = {("topic", t.id) for t in article.topics} | {("country", c) for c in article.countries}
                db.executemany(
                    "INSERT INTO article_tags (article_id, kind, value) VALUES (?, ?, ?)",
                    [(article.id, kind, value) for kind, value in tags],
                )
                results.append((article, "updated" if existed else "new"))
        return results

    def stored_hashes(self, ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        wanted = list(ids)
        found: dict[str, tuple[str, str]] = {}
        with self._lock:
            for i in range(0, len(wanted), 500):
                chunk = wanted[i : i + 500]
                rows = self._db.execute(
                    "SELECT id, content_hash, enrichment_version FROM articles"
                    f" WHERE id IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                found.update({r[0]: (r[1], r[2]) for r in rows})
        return found

    def get_article(self, article_id: str) -> Article | None:
        with self._lock:
            row = self._db.execute("SELECT doc FROM articles WHERE id = ?", (article_id,)).fetchone()
        return Article.model_validate_json(row[0]) if row else None

    def iter_articles(self, batch_size: int = 500) -> Iterator[Article]:
        last = ""
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT id, doc FROM articles WHERE id > ? ORDER BY id LIMIT ?", (last, batch_size)
                ).fetchall()
            if not rows:
                return
            for _, doc in rows:
                yield Article.model_validate_json(doc)
            last = rows[-1][0]

    def search(self, query: SearchQuery) -> list[SearchHit]:
        where: list[str] = []
        params: list[object] = []
        for kind, values in (("topic", query.topics), ("country", query.countries)):
            for value in values:
                where.append("a.id IN (SELECT article_id FROM article_tags WHERE kind = ? AND value = ?)")
                params += [kind, value.upper() if kind == "country" else value]
        if query.since:
            where.append("a.published >= ?")
            params.append(query.since.astimezone(UTC).isoformat())
        if query.until:
            where.append("a.published < ?")
            params.append(query.until.astimezone(UTC).isoformat())
        if not query.text.strip():
            sql = "SELECT a.doc, '', NULL FROM articles a"
            sql += (" WHERE " + " AND ".join(where)) if where else ""
            sql += " ORDER BY a.published DESC LIMIT ?"
            return self._hits(sql, [*params, query.limit])
        sql = (
            "SELECT a.doc, snippet(articles_fts, -1, '[', ']', '…', 16), bm25(articles_fts, 0, 4.0, 1.0)"
            " FROM articles_fts JOIN articles a ON a.id = articles_fts.id WHERE articles_fts MATCH ?"
        )
        sql += "".join(" AND " + w for w in where) + " ORDER BY bm25(articles_fts, 0, 4.0, 1.0) LIMIT ?"
        try:
            return self._hits(sql, [query.text, *params, query.limit])
        except sqlite3.OperationalError:
            # Not valid FTS5 syntax (stray quotes, colons...): search the words as plain terms.
            terms = " ".join('"' + w.replace('"', "") + '"' for w in query.text.split() if w.replace('"', ""))
            return self._hits(sql, [terms, *params, query.limit]) if terms else []

    def _hits(self, sql: str, params: list[object]) -> list[SearchHit]:
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [
            SearchHit(
                Article.model_validate_json(doc),
                snippet=snippet or "",
                score=-rank if rank is not None else None,
                highlights=[snippet] if snippet else [],
            )
            for doc, snippet, rank in rows
        ]

    # --- alerts and dead letters ---

    def record_alert(self, alert: Alert) -> bool:
        return self.record_alerts([alert])[0]

    def record_alerts(self, alerts: Sequence[Alert]) -> list[bool]:
        if not alerts:
            return []
        with self._transaction() as db:
            return [
                db.execute(
                    "INSERT OR IGNORE INTO alerts (id, subscription_id, article_id, created_at, doc, status)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        alert.id,
                        alert.subscription_id,
                        alert.article_id,
                        alert.created_at.isoformat(),
                        alert.model_dump_json(),
                        alert.status,
                    ),
                ).rowcount
                == 1
                for alert in alerts
            ]

    def alerted(self, alert_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        with self._lock:
            for i in range(0, len(alert_ids), 500):
                chunk = list(alert_ids[i : i + 500])
                rows = self._db.execute(
                    f"SELECT id FROM alerts WHERE id IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
                found.update(r[0] for r in rows)
        return found

    def list_alerts(
        self,
        limit: int = 50,
        subscription_id: str | None = None,
        *,
        status: str | Sequence[str] | None = None,
        since: datetime | None = None,
    ) -> list[Alert]:
        where: list[str] = []
        params: list[object] = []
        if subscription_id:
            where.append("subscription_id = ?")
            params.append(subscription_id)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            params += statuses
        if since is not None:
            where.append("created_at >= ?")
            params.append(since.astimezone(UTC).isoformat())
        sql = "SELECT doc FROM alerts" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created_at DESC LIMIT ?", [*params, limit]).fetchall()
        return [Alert.model_validate_json(r[0]) for r in rows]

    def update_alerts(self, alerts: Sequence[Alert]) -> None:
        with self._transaction() as db:
            db.executemany(
                "UPDATE alerts SET doc = ?, status = ? WHERE id = ?",
                [(a.model_dump_json(), a.status, a.id) for a in alerts],
            )

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO dead_letters (id, stage, reason, source, created_at, doc)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(d.id, d.stage, d.reason, d.source, d.created_at.isoformat(), d.model_dump_json()) for d in letters],
            )

    def list_dead_letters(self, limit: int = 50, stage: str | None = None) -> list[DeadLetter]:
        sql, params = "SELECT doc FROM dead_letters", []
        if stage:
            sql, params = sql + " WHERE stage = ?", [stage]
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created_at DESC LIMIT ?", [*params, limit]).fetchall()
        return [DeadLetter.model_validate_json(r[0]) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                name: self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for name, table in (
                    ("articles", "articles"),
                    ("alerts", "alerts WHERE status NOT IN ('suppressed', 'cancelled')"),
                    ("alerts_suppressed", "alerts WHERE status = 'suppressed'"),
                    ("alerts_pending", "alerts WHERE status = 'pending'"),
                    ("deadletters", "dead_letters"),
                    ("subscriptions", "subscriptions"),
                )
            }

    # --- subscriptions ---

    def list_subscriptions(self, include_disabled: bool = True) -> list[Subscription]:
        sql = "SELECT doc FROM subscriptions" + ("" if include_disabled else " WHERE enabled = 1") + " ORDER BY id"
        with self._lock:
            rows = self._db.execute(sql).fetchall()
        return [Subscription.model_validate_json(r[0]) for r in rows]

    def put_subscription(self, subscription: Subscription) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO subscriptions (id, enabled, updated_at, doc) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE"
                " SET enabled=excluded.enabled, updated_at=excluded.updated_at, doc=excluded.doc",
                (subscription.id, int(subscription.enabled), _now(), subscription.storage_json()),
            )

    def remove_subscription(self, subscription_id: str) -> bool:
        with self._transaction() as db:
            return db.execute("DELETE FROM subscriptions WHERE id = ?", (subscription_id,)).rowcount == 1

    def seed_subscriptions(self, defaults: Sequence[Subscription]) -> int:
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM meta WHERE key = 'subscriptions_seeded'").fetchone():
                return 0
            db.execute("INSERT INTO meta (key, value) VALUES ('subscriptions_seeded', ?)", (_now(),))
            db.executemany(
                "INSERT OR IGNORE INTO subscriptions (id, enabled, updated_at, doc) VALUES (?, ?, ?, ?)",
                [(s.id, int(s.enabled), _now(), s.storage_json()) for s in defaults],
            )
            return len(defaults)


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT under the store's lock; rolls back on any error."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self._db, self._lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._lock.release()
            raise StoreUnavailable(f"SQLite store busy or unwritable: {exc}") from exc
        return self._db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._lock.release()
