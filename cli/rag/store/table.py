"""The chunk table on disk: opening, the meta file beside it, and the writes (under the writer lock).

Each commit is one Lance version, so readers see either the old or the new
state of a file. Readers follow the ``published`` tag, which an index run moves
only when it has finished (:meth:`Store.publish`): queries see the old index or
the new one, never a run half done. Writes go through pylance directly:
importing lancedb costs seconds of start-up, pylance a fraction, and both
write the same format.

``<table>.meta.json`` beside the data records which embedding model and
chunker built the table (opening it with another model is refused), the runs
that published it, and maintenance still owed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from rag.errors import ModelMismatchError, StoreError
from rag.store.generations import live_generation, physical_name
from rag.store.schema import schema, sql_in
from rag.store.snapshot import Snapshot, _parts, damaged

# Lance logs deprecation chatter at WARN on stderr; our users act on our messages, not its.
os.environ.setdefault("LANCE_LOG", "error")
os.environ.setdefault("LANCEDB_LOG", "error")

PUBLISHED = "published"  # the lance tag readers follow


class Store:
    """One generation of a table (the live one unless ``generation`` is given; see :mod:`rag.store.generations`)."""

    def __init__(self, root: Path, table: str, generation: int | None = None) -> None:
        self.root = root
        self.table_name = table
        self.generation = live_generation(root, table) if generation is None else generation
        name = physical_name(table, self.generation)
        self.uri = root / f"{name}.lance"
        self.meta_path = root / f"{name}.meta.json"
        self.lock_path = root / f"{table}.lock"  # one writer per table, whichever generation it writes

    def exists(self) -> bool:
        return self.meta_path.is_file() and self.uri.is_dir()

    def _missing(self) -> StoreError:
        return StoreError(f"no index at {self.root} (table '{self.table_name}'); run: rag index PATH")

    # ------------------------------------------------------------------ reading

    def latest(self) -> Snapshot:
        """The latest committed version: what a writer builds on."""
        if not self.exists():
            raise self._missing()
        import lance

        try:
            return Snapshot(lance.dataset(str(self.uri)), self.root)
        except Exception as exc:  # lance raises ValueError/OSError on a damaged folder
            raise StoreError(f"cannot open index table '{self.table_name}' at {self.root}: {exc}; run: rag index --rebuild PATH") from exc

    def published(self) -> Snapshot:
        """The version of the last *completed* ``rag index`` run, for queries.

        An index whose first run never finished has no tag; it is read as it is.
        """
        latest = self.latest()
        try:
            if PUBLISHED in latest.dataset.tags.list():
                return Snapshot(latest.dataset.checkout_version(PUBLISHED), self.root)
        except Exception as exc:  # a tag pointing at a version that is gone
            raise damaged(self.root, exc) from exc
        return latest

    def published_version(self) -> int | None:
        if not self.exists():
            return None
        tags = self.latest().dataset.tags.list()
        return int(tags[PUBLISHED]["version"]) if PUBLISHED in tags else None

    def meta(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.meta_path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreError(f"index metadata {self.meta_path} is unreadable ({exc}); delete {self.root} and run rag index again") from exc

    def check_embedding(self, embedding: dict[str, Any]) -> None:
        """Refuse an index built with another embedding model."""
        built = self.meta().get("embedding")
        if not built:
            return
        # An HTTP model's size is known only after its first answer: None matches what the index recorded.
        dims = embedding["dimensions"]
        same = built.get("model") == embedding["model"] and dims in (None, built.get("dimensions"))
        if not same:
            wanted = f" ({dims} dims)" if dims else ""
            raise ModelMismatchError(
                f"the index at {self.root} was built with {built.get('model')} ({built.get('dimensions')} dims) but the profile "
                f"uses {embedding['model']}{wanted}; re-index with: rag index --rebuild PATH "
                f"(or point store.uri at another folder)"
            )
        # The same model name with other vectors: a new graph of the embedded model, a changed model folder.
        if built.get("version") and embedding.get("version") and built["version"] != embedding["version"]:
            raise ModelMismatchError(
                f"the index at {self.root} was built with {built.get('model')} version {built['version']}, but that model is now "
                f"version {embedding['version']} and gives other vectors; re-index with: rag index --rebuild PATH"
            )

    # ------------------------------------------------------------------ writing (hold the writer lock)

    def write_meta(self, meta: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.meta_path)

    def create(self, dim: int, meta: dict[str, Any]) -> None:
        """An empty table for ``dim``-sized vectors; a table without meta is a leftover of a killed creation."""
        import lance
        import pyarrow as pa

        if self.exists():
            self.check_embedding(meta["embedding"])
            return
        self.root.mkdir(parents=True, exist_ok=True)
        lance.write_dataset(pa.Table.from_pylist([], schema=schema(dim)), str(self.uri), mode="overwrite")
        self.write_meta({**meta, "created": time.time()})

    def drop(self) -> None:
        self.meta_path.unlink(missing_ok=True)
        shutil.rmtree(self.uri, ignore_errors=True)

    def replace_sources(self, rows: list[dict[str, Any]], sources: list[str], dim: int) -> None:
        """Make ``sources`` hold exactly ``rows``, in one atomic commit."""
        import pyarrow as pa

        if not rows:
            self.delete_sources(sources)
            return
        data = pa.Table.from_pylist(rows, schema=schema(dim))
        (
            self.latest()
            .dataset.merge_insert("id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete(sql_in("source", sources))
            .execute(data)
        )

    def delete_sources(self, sources: list[str]) -> None:
        """Delete every chunk of ``sources`` (a commit per 500 sources; callers pass only indexed ones)."""
        for part in _parts(sources):
            self.latest().dataset.delete(sql_in("source", part))

    def publish(self) -> int:
        """Point readers at the latest version; returns it."""
        ds = self.latest().dataset
        tags = ds.tags.list()
        if PUBLISHED not in tags:
            ds.tags.create(PUBLISHED, ds.version)
        elif tags[PUBLISHED]["version"] != ds.version:
            ds.tags.update(PUBLISHED, ds.version)
        return int(ds.version)
