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
import time
from pathlib import Path
from typing import Any

from rag.errors import ModelMismatchError, StoreError
from rag.store.ann import AnnSettings
from rag.store.generations import live_generation, physical_name
from rag.store.location import Location
from rag.store.schema import schema, sql_in
from rag.store.snapshot import Snapshot, _parts, damaged

# Lance logs deprecation chatter at WARN on stderr; our users act on our messages, not its.
os.environ.setdefault("LANCE_LOG", "error")
os.environ.setdefault("LANCEDB_LOG", "error")

PUBLISHED = "published"  # the lance tag readers follow
# Declared on the id column of new tables: Lance then records the keys each merge_insert adds and fails (and
# retries) a commit that races another adding the same keys, instead of keeping both rows (lance#5633). This is
# what keeps writers on several machines apart on an object store, where a local lock cannot.
PRIMARY_KEY = {b"lance-schema:unenforced-primary-key": b"true"}


def newer_version(built: dict[str, Any], now: dict[str, Any]) -> str | None:
    """``now``'s version when it is the model ``built`` recorded giving other vectors (a new graph of the embedded
    model, a changed model folder); None when either records no version, or they are other models or the same."""
    if built.get("model") != now.get("model") or not built.get("version") or not now.get("version"):
        return None
    return str(now["version"]) if now["version"] != built["version"] else None


class Store:
    """One generation of a table (the live one unless ``generation`` is given; see :mod:`rag.store.generations`),
    in a local folder or under an object-store prefix (:mod:`rag.store.location`)."""

    def __init__(
        self, root: Path | Location, table: str, generation: int | None = None, ann: AnnSettings | None = None, remote_grace: float = 0.0
    ) -> None:
        self.location = root if isinstance(root, Location) else Location.of(root)
        # Versions younger than this are kept: on an object store a writer or reader on another machine, which no
        # lock of ours can see, may still be reading them or committing on top of them (store.remote_grace).
        self.grace = remote_grace if self.location.remote else 0.0
        self.root = self.location.local  # this machine's folder: the store itself, or a remote store's caches
        self.table_name = table
        self.ann = ann or AnnSettings()
        self.generation = live_generation(self.location, table) if generation is None else generation
        self.name = physical_name(table, self.generation)
        self.uri = self.location.join(f"{self.name}.lance")
        self.meta_path = self.root / f"{self.name}.meta.json"  # a local store's; a remote one keeps it beside its table
        self.lock_path = self.root / f"{table}.lock"  # one writer per table, whichever generation it writes

    @property
    def where(self) -> str:
        """The store as messages name it (a folder or an object-store URI, never credentials)."""
        return self.location.uri

    def exists(self) -> bool:
        return self.location.is_file(f"{self.name}.meta.json") and self.location.is_dir(f"{self.name}.lance")

    def _missing(self) -> StoreError:
        return StoreError(f"no index at {self.where} (table '{self.table_name}'); run: rag index PATH")

    def _open(self, **kwargs: Any) -> Any:
        import lance

        return lance.dataset(self.uri, storage_options=self.location.lance_options(), **kwargs)

    # ------------------------------------------------------------------ reading

    def latest(self) -> Snapshot:
        """The latest committed version: what a writer builds on."""
        if not self.exists():
            raise self._missing()
        try:
            return Snapshot(self._open(), self.root, self.ann)
        except Exception as exc:  # lance raises ValueError/OSError on a damaged folder
            if self.location.remote:
                raise self.location.failed("open", exc) from exc
            raise StoreError(f"cannot open index table '{self.table_name}' at {self.root}: {exc}; run: rag index --rebuild PATH") from exc

    def published(self) -> Snapshot:
        """The version of the last *completed* ``rag index`` run, for queries.

        An index whose first run never finished has no tag; it is read as it is.
        """
        latest = self.latest()
        try:
            if PUBLISHED in latest.dataset.tags.list():
                return Snapshot(latest.dataset.checkout_version(PUBLISHED), self.root, self.ann)
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
            data = self.location.read_json(f"{self.name}.meta.json")
        except (OSError, ValueError) as exc:
            raise self._unreadable(exc) from exc
        return dict(data) if isinstance(data, dict) else {}

    def _unreadable(self, exc: Exception) -> StoreError:
        if self.location.remote:  # without its meta the next run takes the table as it is and writes a new one
            meta = self.location.join(f"{self.name}.meta.json")
            return StoreError(f"index metadata {meta} is unreadable ({exc}); delete that file and run rag index again")
        return StoreError(f"index metadata {self.meta_path} is unreadable ({exc}); delete {self.root} and run rag index again")

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
        now = newer_version(built, embedding)
        if now:
            raise ModelMismatchError(
                f"the index at {self.root} was built with {built.get('model')} version {built['version']}, but that model is now "
                f"version {now} and gives other vectors; re-index with: rag index --rebuild PATH"
            )

    # ------------------------------------------------------------------ writing (hold the writer lock)

    def write_meta(self, meta: dict[str, Any]) -> None:
        self.location.write_text(f"{self.name}.meta.json", json.dumps(meta, indent=2, sort_keys=True))

    def create(self, dim: int, meta: dict[str, Any]) -> None:
        """An empty table for ``dim``-sized vectors; a table without meta is a leftover of a killed creation."""
        import lance
        import pyarrow as pa

        if self.exists():
            self.check_embedding(meta["embedding"])
            return
        self.root.mkdir(parents=True, exist_ok=True)
        keyed = schema(dim)
        keyed = keyed.set(keyed.get_field_index("id"), keyed.field("id").with_nullable(False).with_metadata(PRIMARY_KEY))
        # A local table without meta is a leftover of a killed creation: overwrite it. In an object store it may be
        # another machine's writer's, created a moment ago: keep it.
        mode = "create" if self.location.remote else "overwrite"
        try:
            lance.write_dataset(pa.Table.from_pylist([], schema=keyed), self.uri, mode=mode, storage_options=self.location.lance_options())
        except (OSError, ValueError) as exc:
            if not (self.location.remote and "already exists" in str(exc).lower()):
                raise self.location.failed("create", exc) from exc
        if not (self.location.remote and self.meta()):
            self.write_meta({**meta, "created": time.time()})

    def drop(self) -> None:
        self.location.remove(f"{self.name}.meta.json")
        self.location.remove(f"{self.name}.lance")

    def replace_sources(self, rows: list[dict[str, Any]], sources: list[str], dim: int) -> None:
        """Make ``sources`` hold exactly ``rows``, in one atomic commit."""
        import pyarrow as pa

        if not rows:
            self.delete_sources(sources)
            return
        dataset = self.latest().dataset
        data = pa.Table.from_pylist(rows, schema=dataset.schema)  # the table's own (keyed or not) schema
        (
            dataset.merge_insert("id")
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
            try:
                ds.tags.create(PUBLISHED, ds.version)
            except Exception:  # another machine's writer created it since we looked (an object store has no lock)
                ds.tags.update(PUBLISHED, ds.version)
        elif tags[PUBLISHED]["version"] != ds.version:
            ds.tags.update(PUBLISHED, ds.version)
        return int(ds.version)
