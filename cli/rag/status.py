"""What is indexed: sources, chunks, model, table version."""

from __future__ import annotations

from typing import Any

from rag.indexer import open_store
from rag.profile import Profile


def status(profile: Profile, table: str | None = None) -> dict[str, Any]:
    store = open_store(profile, table)
    meta = store.meta()
    states = store.file_states()  # raises StoreError when there is no index
    if not store.exists():
        from rag.errors import StoreError

        raise StoreError(f"no index at {store.root} (table '{store.table_name}'); run: rag index PATH")
    return {
        "store": str(store.root),
        "table": store.table_name,
        "chunks": store.count(),
        "sources": len(states),
        "version": store.version,
        "embedding": meta.get("embedding", {}),
        "chunking": meta.get("chunking", {}),
        "fts_index": store.has_fts(),
        "fts_current": meta.get("fts_version") == store.version,
        "files": sorted(({"source": s, "chunks": st.chunks} for s, st in states.items()), key=lambda f: str(f["source"])),
    }
