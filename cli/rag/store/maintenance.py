"""Upkeep after an index run has committed its data: compaction, the full-text index, old versions.

None of it can lose or change data, so none of it may fail a run whose data
is committed: a step that fails is reported as one line and recorded in the
meta. What is needed is read from the table itself (:func:`needed`), so the
next ``rag index``, even one with nothing else to do, finishes what a failed or
killed run left undone.

Version retention is ours, not Lance's age-based cleanup, and never fights the
``published`` tag: we keep the published version, the versions the last
``store.keep_runs`` runs published (for rollback, and for readers still on the
previous one) and the latest; every other version is removed. In an object store,
where writers on other machines share the table and no lock of ours reaches
them, versions younger than ``store.remote_grace`` are kept too: another
machine may be reading them or committing on top of them, and Lance reads the
versions in between to resolve a commit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rag.faults import checkpoint, passed
from rag.store import ann
from rag.store.snapshot import lance_message
from rag.store.table import Store

COMPACT_FRAGMENTS = 16  # more fragments than this (one per commit group) and they are merged
COMPACT_DELETED = 0.1  # or more than this share of rows deleted (merge_insert leaves deletion files)
FTS_PARAMS = {
    "with_position": False,
    "base_tokenizer": "simple",
    "language": "English",
    "stem": True,
    "remove_stop_words": True,
    "lower_case": True,
    "ascii_folding": True,
}
STEPS = ("compact", "fts", "ann", "cleanup")
ATTEMPTS = 3  # a step preempted by another machine's commit ("Retryable commit conflict") is run again


@dataclass
class Upkeep:
    """What maintenance did, and what it owes."""

    compacted: bool = False
    fts: str | None = None  # "built" | "updated"
    versions_removed: int = 0
    ann: str | None = None  # "build" | "retrain" | "update" | "drop"
    ann_trained: dict[str, Any] | None = None  # what a build recorded (type, rows, when)
    failed: dict[str, str] = field(default_factory=dict)  # step -> one-line reason

    def as_dict(self) -> dict[str, Any]:
        return {
            "compacted": self.compacted,
            "fts": self.fts,
            "ann": self.ann,
            "versions_removed": self.versions_removed,
            "failed": self.failed,
        }


def needed(store: Store, keep: set[int]) -> list[str]:
    """The steps the table needs now, read from the table itself (so a run killed mid-upkeep is finished by the next)."""
    ds = store.latest().dataset
    steps = []
    if _compact_worth(ds):
        steps.append("compact")
    snapshot = store.latest()
    if snapshot.count() and (not snapshot.has_fts or snapshot.fts_unindexed_rows()):
        steps.append("fts")
    if ann.needed(ds, store.ann, store.meta().get("ann")):
        steps.append("ann")
    try:
        cleanup = bool(_doomed(store, keep))
    except Exception:  # another machine removed a version while we listed them: the step itself runs guarded
        cleanup = True
    if cleanup:
        steps.append("cleanup")
    return steps


def maintain(store: Store, upkeep: Upkeep, warn: Callable[[str], None], steps: list[str], keep: set[int] | None = None) -> Upkeep:
    """Run ``steps`` of: compact, bring the full-text index up to date, remove versions not in ``keep`` (nor the
    published or the latest). Adds to ``upkeep``."""
    for step, run in (("compact", _compact), ("fts", _fts), ("ann", _ann), ("cleanup", _cleanup)):
        if step not in steps:
            continue
        try:
            checkpoint(step)
            for attempt in range(ATTEMPTS):
                try:
                    run(store, upkeep, keep or set())
                    break
                except Exception as exc:
                    if attempt + 1 == ATTEMPTS or not _retryable(exc):
                        raise
            passed(step)
        except Exception as exc:  # maintenance of committed data must never fail the run
            upkeep.failed[step] = lance_message(exc)
            warn(
                f"index maintenance ({step}) failed: {upkeep.failed[step]}; the indexed data is safe and searchable, "
                "and the next rag index tries again"
            )
    return upkeep


def record(meta: dict[str, Any], upkeep: Upkeep) -> None:
    if upkeep.ann_trained is not None:
        meta["ann"] = upkeep.ann_trained
    elif upkeep.ann == "drop":
        meta.pop("ann", None)
    meta["maintenance"] = {"owed": sorted(upkeep.failed), "at": time.time(), **({"errors": upkeep.failed} if upkeep.failed else {})}


def _retryable(exc: Exception) -> bool:
    """Lance's word for a commit another writer got in first; a fresh look at the table and a retry settles it."""
    return "retryable commit conflict" in str(exc).lower()


def _compact_worth(ds: Any) -> bool:
    fragments = ds.get_fragments()
    physical = sum(f.physical_rows for f in fragments) or 1
    deleted = sum(f.num_deletions for f in fragments)
    return len(fragments) > COMPACT_FRAGMENTS or deleted / physical > COMPACT_DELETED


def _compact(store: Store, upkeep: Upkeep, keep: set[int]) -> None:
    ds = store.latest().dataset
    if _compact_worth(ds):
        metrics = ds.optimize.compact_files(materialize_deletions_threshold=COMPACT_DELETED)
        upkeep.compacted = bool(metrics.fragments_removed)


def _fts(store: Store, upkeep: Upkeep, keep: set[int]) -> None:
    snapshot = store.latest()
    if snapshot.count() == 0:
        return
    if not snapshot.has_fts:
        snapshot.dataset.create_scalar_index("body", index_type="INVERTED", replace=True, **FTS_PARAMS)
        upkeep.fts = "built"
    elif snapshot.fts_unindexed_rows():
        snapshot.dataset.optimize.optimize_indices()
        upkeep.fts = "updated"


def _ann(store: Store, upkeep: Upkeep, keep: set[int]) -> None:
    """Build, retrain, update or drop the vector index as the table's size asks (:func:`rag.store.ann.needed`)."""
    ds = store.latest().dataset
    action = ann.needed(ds, store.ann, store.meta().get("ann"))
    if action in ("build", "retrain"):
        upkeep.ann_trained = ann.build(ds, store.ann)
        if store.ann.nprobes is None:  # a profile that fixes nprobes has nothing to tune (20-30 s at 1M rows)
            upkeep.ann_trained.update(ann.tune(store.latest().dataset, store.ann))
    elif action == "update":
        ann.update(ds)
    elif action == "drop":
        ann.drop(ds)
    upkeep.ann = action


def _doomed(store: Store, keep: set[int]) -> list[int]:
    """Versions to remove: all but ``keep``, the published, the latest and those within the store's grace."""
    ds = store.latest().dataset
    published = store.published_version()
    retained = {*keep, ds.version, *([published] if published is not None else [])}
    cutoff = time.time() - store.grace
    return [
        int(v["version"])
        for v in ds.versions()
        if int(v["version"]) not in retained and (not store.grace or _seconds(v["timestamp"]) < cutoff)
    ]


def _seconds(stamp: Any) -> float:
    """A version's commit time (Lance gives a naive datetime in local time, or a number) as epoch seconds."""
    return float(stamp.timestamp()) if hasattr(stamp, "timestamp") else float(stamp)


def _cleanup(store: Store, upkeep: Upkeep, keep: set[int]) -> None:
    doomed = _doomed(store, keep)
    if doomed:
        # delete_unverified: files a killed commit left behind; safe because we hold the writer lock. Not on an
        # object store: a writer on another machine may have files in flight there (Lance drops them after 7 days).
        unverified = not store.location.remote
        stats = store.latest().dataset.cleanup_old_versions(
            versions=doomed, error_if_tagged_old_versions=False, delete_unverified=unverified
        )
        upkeep.versions_removed = int(stats.old_versions)
