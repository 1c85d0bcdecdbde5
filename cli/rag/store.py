"""The LanceDB store: one table of chunks, a meta file, and the FTS index.

The table is the single source of truth: every chunk row carries its file's
mtime, size and sha256, so incremental indexing and freshness checks read
them back from the same rows that queries see, and there is no second table
to fall out of step after a crash. Each commit is one ``merge_insert`` (one
LanceDB version), so readers see either the old or the new state of a file.

``<table>.meta.json`` beside the data records which embedding model and
chunker built the table; opening it with another model is refused.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import ModelMismatchError, StoreError

# Lance logs deprecation chatter at WARN on stderr; our users act on our messages, not its.
os.environ.setdefault("LANCE_LOG", "error")
os.environ.setdefault("LANCEDB_LOG", "error")

FTS_COLUMN = "body"
PUBLISHED = "published"  # the lance tag readers follow; see Store.published


@dataclass
class FileState:
    mtime: float
    size: int
    sha256: str
    chunks: int


def damaged(root: Path, exc: Exception) -> StoreError:
    """A read failed below us (a data file missing or torn): say so, and how to recover."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    reason = re.sub(r",? /\S+\.rs:\d+:\d+", "", first)[:200]
    return StoreError(f"the index at {root} is damaged and cannot be read ({reason}); rebuild it with: rag index --rebuild PATH")


def fts_indexed(dataset: Any) -> bool:
    """Whether a lance dataset (any version) carries the full-text index on the body column."""
    return any(FTS_COLUMN in index.field_names for index in dataset.describe_indices())


def sql_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_in(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(sql_quote(v) for v in values)})"


def schema(dim: int):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("source", pa.string()),
            pa.field("title", pa.string()),
            pa.field("heading", pa.string()),
            pa.field("text", pa.string()),
            pa.field(FTS_COLUMN, pa.string()),
            pa.field("start", pa.int64()),
            pa.field("end", pa.int64()),
            pa.field("tokens", pa.int32()),
            pa.field("ordinal", pa.int32()),
            pa.field("sha256", pa.string()),
            pa.field("kind", pa.string()),
            pa.field("file_mtime", pa.float64()),
            pa.field("file_size", pa.int64()),
            pa.field("file_sha256", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), dim)),
        ]
    )


class Store:
    def __init__(self, root: Path, table: str) -> None:
        self.root = root
        self.table_name = table
        self.meta_path = root / f"{table}.meta.json"
        self.lock_path = root / f"{table}.lock"
        self._db: Any = None
        self._table: Any = None
        self._dataset: Any = None

    # ------------------------------------------------------------------ opening

    @property
    def db(self) -> Any:
        if self._db is None:
            import lancedb

            self.root.mkdir(parents=True, exist_ok=True)
            self._db = lancedb.connect(str(self.root))
        return self._db

    def exists(self) -> bool:
        return self.meta_path.is_file() and (self.root / f"{self.table_name}.lance").is_dir()

    @property
    def table(self) -> Any:
        if self._table is None:
            if not self.exists():
                raise StoreError(f"no index at {self.root} (table '{self.table_name}'); run: rag index PATH")
            try:
                self._table = self.db.open_table(self.table_name)
            except Exception as exc:  # lancedb raises ValueError/FileNotFoundError/RuntimeError
                raise StoreError(f"cannot open index table '{self.table_name}' at {self.root}: {exc}; run: rag index PATH") from exc
        return self._table

    @property
    def dataset(self) -> Any:
        """The table as a ``lance.LanceDataset``, for reads.

        Reads go through pylance directly: importing lancedb costs ~1.5 s of
        start-up (pydantic models), pylance ~0.3 s, and both read the same
        files and indexes. Writers use :attr:`table` (lancedb).
        """
        if self._dataset is None:
            if not self.exists():
                raise StoreError(f"no index at {self.root} (table '{self.table_name}'); run: rag index PATH")
            import lance

            try:
                self._dataset = lance.dataset(str(self.root / f"{self.table_name}.lance"))
            except Exception as exc:  # lance raises ValueError/OSError on a damaged folder
                raise StoreError(
                    f"cannot open index table '{self.table_name}' at {self.root}: {exc}; run: rag index --rebuild PATH"
                ) from exc
        return self._dataset

    def refresh(self) -> None:
        """See the latest committed version on the next read."""
        self._dataset = None

    def published(self) -> Any:
        """The dataset as of the last *completed* ``rag index`` run, for queries.

        A run commits in groups of files, so the latest version may hold some
        files rewritten and others not yet. Readers check out the version tagged
        ``published`` instead, which each run moves only when it has finished:
        queries see the old index or the new one, never a run half done. An
        index whose first run never finished has no tag; it is read as it is.
        """
        latest = self.dataset
        try:
            if PUBLISHED in latest.tags.list():
                return latest.checkout_version(PUBLISHED)
        except Exception as exc:  # a tag pointing at a version that is gone
            raise damaged(self.root, exc) from exc
        return latest

    def publish(self) -> None:
        """Point readers at the latest version (holds the writer lock)."""
        self.refresh()
        ds = self.dataset
        tags = ds.tags.list()
        if PUBLISHED not in tags:
            ds.tags.create(PUBLISHED, ds.version)
        elif tags[PUBLISHED]["version"] != ds.version:
            ds.tags.update(PUBLISHED, ds.version)

    def meta(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.meta_path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreError(f"index metadata {self.meta_path} is unreadable ({exc}); delete {self.root} and run rag index again") from exc

    def write_meta(self, meta: dict[str, Any]) -> None:
        tmp = self.meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.meta_path)

    def check_embedding(self, embedding: dict[str, Any]) -> None:
        """Refuse an index built with another embedding model."""
        built = self.meta().get("embedding")
        if not built:
            return
        # An HTTP model's size is known only after its first answer: None matches what the index recorded.
        dims = embedding["dimensions"]
        same = built.get("model") == embedding["model"] and dims in (None, built.get("dimensions"))
        if not same:
            wanted = f" ({dims} dims)" if dims else ""  # an HTTP model's size is unknown until it answers
            raise ModelMismatchError(
                f"the index at {self.root} was built with {built.get('model')} ({built.get('dimensions')} dims) but the profile "
                f"uses {embedding['model']}{wanted}; re-index with: rag index --rebuild PATH "
                f"(or point store.uri at another folder)"
            )

    def ensure_table(self, dim: int, meta: dict[str, Any]) -> None:
        if self.exists():
            self.check_embedding(meta["embedding"])
            return
        # A table without meta is a half-created leftover (killed during creation); start it afresh.
        self.db.create_table(self.table_name, schema=schema(dim), mode="overwrite")
        self._table = None
        self.write_meta({**meta, "created": time.time()})

    def drop(self) -> None:
        if (self.root / f"{self.table_name}.lance").exists():
            self.db.drop_table(self.table_name)
        self.meta_path.unlink(missing_ok=True)
        self._table = None

    # ------------------------------------------------------------------ reading

    def count(self) -> int:
        self.refresh()
        return int(self.dataset.count_rows())

    @property
    def version(self) -> int:
        self.refresh()
        return int(self.dataset.version)

    def file_states(self) -> dict[str, FileState]:
        if not self.exists():
            return {}
        cols = ["source", "file_mtime", "file_size", "file_sha256"]
        self.refresh()
        try:
            data = self.dataset.to_table(columns=cols).to_pydict()
        except (OSError, ValueError) as exc:  # lance: a data file gone or torn
            raise damaged(self.root, exc) from exc
        states: dict[str, FileState] = {}
        for source, mtime, size, sha in zip(data["source"], data["file_mtime"], data["file_size"], data["file_sha256"], strict=True):
            state = states.get(source)
            if state is None:
                states[source] = FileState(mtime, size, sha, 1)
            else:
                state.chunks += 1
        return states

    # ------------------------------------------------------------------ writing (hold the writer lock)

    def replace_sources(self, rows: list[dict[str, Any]], sources: list[str], dim: int) -> None:
        """Make ``sources`` hold exactly ``rows``, in one atomic commit."""
        import pyarrow as pa

        if not sources:
            return
        if not rows:
            self.delete_sources(sources)
            return
        data = pa.Table.from_pylist(rows, schema=schema(dim))
        (
            self.table.merge_insert("id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete(sql_in("source", sources))
            .execute(data)
        )

    def delete_sources(self, sources: list[str]) -> None:
        for start in range(0, len(sources), 500):
            self.table.delete(sql_in("source", sources[start : start + 500]))

    def build_fts(self) -> None:
        import warnings

        with warnings.catch_warnings():
            # create_fts_index is "deprecated" for create_index(config=FTS()), which in 0.40 still
            # takes the column as vector_column_name; the old call builds the same native index.
            warnings.simplefilter("ignore")
            self.table.create_fts_index(
                FTS_COLUMN, replace=True, stem=True, language="English", remove_stop_words=True, with_position=False
            )

    def has_fts(self) -> bool:
        """Whether the latest version has its full-text index (what the writer asks)."""
        try:
            self.refresh()
            return fts_indexed(self.dataset)
        except Exception:
            return False

    def compact(self) -> None:
        from datetime import timedelta

        self.table.optimize(cleanup_older_than=timedelta(minutes=10))
