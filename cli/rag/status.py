"""What is indexed: sources, chunks, model, the live generation and published version, and its upkeep."""

from __future__ import annotations

from typing import Any

from rag.budget import spend_status
from rag.calibrate import threshold_info
from rag.profile import Profile
from rag.store import Snapshot, open_store


def status(profile: Profile, table: str | None = None) -> dict[str, Any]:
    store = open_store(profile, table)
    snapshot = store.published()  # raises StoreError when there is no index
    meta = store.meta()
    states = snapshot.file_states()
    maintenance = meta.get("maintenance") or {}
    return {
        "store": store.where,
        "table": store.table_name,
        "generation": store.generation,
        "chunks": snapshot.count(),
        "sources": len(states),
        "version": snapshot.version,
        "latest_version": store.latest().version,
        "embedding": meta.get("embedding", {}),
        "embedding_now": model_now(profile, meta.get("embedding") or {}),
        "chunking": meta.get("chunking", {}),
        "fts_index": snapshot.has_fts,
        "fts_current": snapshot.has_fts and snapshot.fts_unindexed_rows() == 0,
        "ann": ann_status(snapshot, meta),
        "maintenance_owed": maintenance.get("owed", []),
        "runs": meta.get("runs", []),
        "threshold": threshold_info(profile.ask.threshold, meta),
        "spend": spend_status(profile),  # None until a priced call was made here
        "files": sorted(({"source": s, "chunks": st.chunks} for s, st in states.items()), key=lambda f: str(f["source"])),
    }


def model_now(profile: Profile, built: dict[str, Any]) -> str | None:
    """The version the index's model has now, when the index was built with another one (else None)."""
    from rag.errors import RagError
    from rag.lifecycle import model_version_now

    try:
        return model_version_now(profile, built)
    except RagError:  # a profile whose model cannot be made here (a missing key): status still answers
        return None


def ann_status(snapshot: Snapshot, meta: dict[str, Any]) -> dict[str, Any]:
    """How dense search runs on this version: exact, or through which vector index, trained when, on how many rows."""
    from rag.store.ann import vector_index

    index = vector_index(snapshot.dataset) if snapshot.vector_index else None
    if index is None:
        return {"type": "exact", "min_rows": snapshot.ann.min_rows if snapshot.ann.mode != "off" else None}
    trained = meta.get("ann") or {}
    return {
        **index,
        "trained_at": trained.get("trained_at"),
        "trained_rows": trained.get("trained_rows"),
        "tuned": {"nprobes": trained["nprobes"], "recall": trained.get("recall")} if trained.get("nprobes") else None,
        "query": snapshot.ann_knobs(),
    }


def ann_recall(profile: Profile, k: int = 10, samples: int = 100) -> dict[str, Any]:
    """``rag eval --ann-recall``: how much of exact search's top ``k`` the index's dense search finds."""
    from rag.store.ann import recall_at_k

    snapshot = open_store(profile).published()
    index = snapshot.vector_index
    return {"type": index["type"] if index else "exact", **recall_at_k(snapshot, k, samples)}
