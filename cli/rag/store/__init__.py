"""The store owns the chunk table: its row format, its reads and writes, its upkeep.

- :mod:`rag.store.schema`       the row format (schema, row builder, hit columns). Pure.
- :mod:`rag.store.snapshot`     reads of one version: nearest, full text, by id, file states; Lance errors translated once
- :mod:`rag.store.table`        opening, the meta file, writes and publishing (under the writer lock)
- :mod:`rag.store.maintenance`  compaction, the full-text index and version retention after a run
- :mod:`rag.store.generations`  generations of a table: the live one, shadows built beside it, the atomic switch

The indexer writes through :class:`Store`; the retriever reads a :class:`Snapshot`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag.store.snapshot import FileState, Snapshot, damaged
from rag.store.table import PUBLISHED, Store

if TYPE_CHECKING:
    from rag.profile import Profile

__all__ = ["PUBLISHED", "FileState", "Snapshot", "Store", "damaged", "open_store"]


def open_store(profile: Profile, table: str | None = None, generation: int | None = None) -> Store:
    """The store the profile names (``store.uri``, table ``store.table`` unless ``table`` is given), at its live
    generation unless ``generation`` is given."""
    return Store(profile.store_path, table or profile.store.table, generation)
