"""Exact-match cache of provider answers: chat completions and reranked orders.

The key is a hash of everything that decides the answer — the kind of call,
the model, the messages (or query and documents) and the parameters — so a
hit is exactly what the provider would have been asked again. Values are
JSON in a small SQLite file beside the index (``cache.path`` or
``<store>/answer-cache.sqlite``). The file opens on first use: an extractive
answer never creates it. A cache that cannot be read or written is switched
off for the run and reported, never allowed to fail an answer.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from rag.profile import Profile

FILE_NAME = "answer-cache.sqlite"


def cache_path(profile: Profile) -> Path:
    return profile.resolve_path(profile.cache.path) if profile.cache.path else profile.store_path / FILE_NAME


def cache_key(**parts: Any) -> str:
    """A stable hash of the request: key order and JSON spacing do not matter."""
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", errors="surrogatepass")).hexdigest()


class AnswerCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.error: str | None = None  # set when the cache failed and was switched off
        self._db: sqlite3.Connection | None = None

    def get(self, key: str) -> dict[str, Any] | None:
        db = self._open()
        if db is None:
            return None
        try:
            row = db.execute("SELECT value FROM answers WHERE key = ?", (key,)).fetchone()
            return dict(json.loads(row[0])) if row else None
        except (sqlite3.Error, ValueError) as exc:
            self._fail("read", exc)
            return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        db = self._open()
        if db is None:
            return
        try:
            with db:
                db.execute(
                    "INSERT OR REPLACE INTO answers (key, value, created) VALUES (?, ?, ?)",
                    (key, json.dumps(value, ensure_ascii=False), time.time()),
                )
        except sqlite3.Error as exc:
            self._fail("write", exc)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _open(self) -> sqlite3.Connection | None:
        if self._db is None and self.error is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(str(self.path), timeout=10, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL)")
                db.commit()
                self._db = db
            except (OSError, sqlite3.Error) as exc:
                self._fail("open", exc)
        return self._db

    def _fail(self, what: str, exc: Exception) -> None:
        self.error = f"answer cache {self.path}: cannot {what} it ({exc}); answering without it (set cache.path or use --no-cache)"
        self.close()
