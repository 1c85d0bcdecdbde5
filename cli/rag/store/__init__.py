"""The store owns the chunk table: its row format, its reads and writes, its upkeep.

- :mod:`rag.store.schema`       the row format (schema, row builder, hit columns). Pure.
- :mod:`rag.store.snapshot`     reads of one version: nearest, full text, by id, file states; Lance errors translated once
- :mod:`rag.store.table`        opening, the meta file, writes and publishing (under the writer lock)
- :mod:`rag.store.maintenance`  compaction, the full-text index and version retention after a run
- :mod:`rag.store.generations`  generations of a table: the live one, shadows built beside it, the atomic switch
- :mod:`rag.store.ann`          the ANN vector index of big tables: when to build, keep and retrain it, how to query it
- :mod:`rag.store.location`     a local folder or an object-store prefix, and the small files beside the table

The indexer writes through :class:`Store`; the retriever reads a :class:`Snapshot`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag.store.ann import AnnSettings
from rag.store.location import Location, is_remote
from rag.store.snapshot import FileState, Snapshot, damaged
from rag.store.table import PUBLISHED, Store, newer_version

if TYPE_CHECKING:
    from rag.profile import Profile

__all__ = ["PUBLISHED", "FileState", "Snapshot", "Store", "damaged", "newer_version", "open_store"]


def open_store(profile: Profile, table: str | None = None, generation: int | None = None) -> Store:
    """The store the profile names (``store.uri``, table ``store.table`` unless ``table`` is given): a local folder, or
    an object-store prefix (``s3://bucket/prefix`` with ``store.storage_options``); at its live generation unless
    ``generation`` is given."""
    return Store(store_location(profile), table or profile.store.table, generation, ann_settings(profile), profile.store.remote_grace)


def store_location(profile: Profile) -> Location:
    if profile.store_override is None and is_remote(profile.store.uri):
        return Location.of(profile.store.uri, profile.store.storage_options)
    return Location.of(profile.store_path)


def ann_settings(profile: Profile) -> AnnSettings:
    a = profile.index.ann
    return AnnSettings(a.mode, a.kind, a.min_rows, a.nprobes, a.refine_factor, a.ef, a.target_recall)
