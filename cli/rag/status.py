"""What is indexed: sources, chunks, model, the live generation and published version, and its upkeep."""

from __future__ import annotations

from typing import Any

from rag.budget import spend_status
from rag.calibrate import threshold_info
from rag.profile import Profile
from rag.store import open_store


def status(profile: Profile, table: str | None = None) -> dict[str, Any]:
    store = open_store(profile, table)
    snapshot = store.published()  # raises StoreError when there is no index
    meta = store.meta()
    states = snapshot.file_states()
    maintenance = meta.get("maintenance") or {}
    return {
        "store": str(store.root),
        "table": store.table_name,
        "generation": store.generation,
        "chunks": snapshot.count(),
        "sources": len(states),
        "version": snapshot.version,
        "latest_version": store.latest().version,
        "embedding": meta.get("embedding", {}),
        "chunking": meta.get("chunking", {}),
        "fts_index": snapshot.has_fts,
        "fts_current": snapshot.has_fts and snapshot.fts_unindexed_rows() == 0,
        "maintenance_owed": maintenance.get("owed", []),
        "runs": meta.get("runs", []),
        "threshold": threshold_info(profile.ask.threshold, meta),
        "spend": spend_status(profile),  # None until a priced call was made here
        "files": sorted(({"source": s, "chunks": st.chunks} for s, st in states.items()), key=lambda f: str(f["source"])),
    }
