"""Embeddings keyed by (model, text hash), so identical text is never embedded twice.

A small SQLite file beside the index. SQLite handles concurrent readers and
one writer at a time, and a row is either written whole or not at all, so a
crash loses at most the batch in flight.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rag.providers.base import Vectors


class EmbeddingCache:
    def __init__(self, path: Path, model_key: str, dim: int | None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.model_key = model_key
        self.dim = dim
        self._db = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS embeddings (model TEXT, sha TEXT, vec BLOB, PRIMARY KEY (model, sha))")
            self._db.commit()
        except sqlite3.Error:
            self._db.close()
            raise

    def get_many(self, shas: list[str]) -> dict[str, Vectors]:
        found: dict[str, Vectors] = {}
        unique = list(dict.fromkeys(shas))
        for start in range(0, len(unique), 500):
            part = unique[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self._db.execute(f"SELECT sha, vec FROM embeddings WHERE model = ? AND sha IN ({marks})", [self.model_key, *part])
            for sha, blob in rows:
                vec = np.frombuffer(blob, dtype="<f4")
                if self.dim is None or vec.shape[0] == self.dim:
                    found[sha] = vec
        return found

    def put_many(self, items: dict[str, Vectors]) -> None:
        rows = [(self.model_key, sha, np.asarray(vec, dtype="<f4").tobytes()) for sha, vec in items.items()]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)", rows)

    def close(self) -> None:
        self._db.close()


def open_cache(path: Path, model_key: str, dim: int | None, warn: Callable[[str], None]) -> EmbeddingCache:
    """The cache at ``path``; a damaged file (not a database, a torn copy) is moved aside and a new one started."""
    try:
        return EmbeddingCache(path, model_key, dim)
    except sqlite3.DatabaseError as exc:
        aside = path.with_name(path.name + ".damaged")
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{path}{suffix}").exists():
                os.replace(f"{path}{suffix}", f"{aside}{suffix}")
        warn(
            f"the embedding cache {path} is damaged ({exc}); moved it to {aside.name} and started a new one (it is only a cache: what it held is embedded again when needed)"
        )
        return EmbeddingCache(path, model_key, dim)
