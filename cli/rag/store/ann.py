"""Approximate nearest-neighbour search for big tables: when to build Lance's vector index, how to keep it, how to query it.

Below :attr:`AnnSettings.min_rows` dense search is exact (one matrix product in memory, or a Lance scan with a
filter). Past it, maintenance builds a Lance vector index on the ``vector`` column and every dense query uses it,
prefiltered by ``--where`` when there is one. ``bench/scale_bench.py`` measured where that pays and which query
settings hold recall@10 >= 0.95 against exact search (docs/scale.md has the numbers).

Keeping it current: rows added since training are folded into the index by ``optimize_indices`` (no retraining;
rows not yet folded in are still searched, exactly, by Lance). The centroids are trained once; when the table
has grown :data:`RETRAIN_GROWTH` times past the rows they were trained on, the index is trained again. When it
was trained is recorded in the meta (``ann``) and shown by ``rag status``.

Tuned, not guessed: how many partitions a query must probe to hold recall depends on the data and on the
table's size (4 of 25 for real text at 100k, 16 of 245 for synthetic clusters at 1M in docs/scale.md). So after each build :func:`tune` measures
recall@10 against exact search for growing ``nprobes`` and records the fewest that reach ``target_recall`` in
the table's config (it travels with the version). Queries use it unless the profile sets ``nprobes``.

The tuning queries are the table's own vectors turned away from themselves to a cosine of
:data:`QUERY_COSINE`, in a random direction. A stored vector itself is far too easy a query: its near copies
sit in its own partition (a real-text table tuned on them chose 2 probes and gave 0.934 to real-like queries),
while a real query is farther from every chunk: SciFact's train claims have a median best-chunk cosine of 0.65
with the default model, where a chunk's nearest other chunk has 0.83.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

VECTOR_COLUMN = "vector"
INDEX_TYPES = ("IVF_SQ", "IVF_HNSW_SQ", "IVF_PQ", "IVF_RQ")
RETRAIN_GROWTH = 2.0  # retrain once the table holds this many times the rows the index was trained on
# Rows per IVF partition. HNSW: few partitions, each graph searched whole. The scanned kinds (SQ, PQ, RQ): a
# query reads nprobes partitions code by code, so their size is what a probe costs (docs/scale.md measured it).
PARTITION_ROWS = {"IVF_HNSW_SQ": 100_000, "IVF_SQ": 4_096, "IVF_PQ": 4_096, "IVF_RQ": 4_096}
DEFAULT_NPROBES = 20  # an index built before tuning, or one that could not be tuned
TUNED = "rag.ann.nprobes"  # the table config key holding the tuned nprobes
QUERY_COSINE = 0.65  # a tuning query's cosine to the stored vector it is made from (see the module docstring)
PROBE_STEPS = (1, 2, 4, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


@dataclass(frozen=True)
class AnnSettings:
    """How big tables are searched (the profile's ``index.ann``)."""

    mode: str = "auto"  # auto: an index past min_rows; off: always exact
    kind: str = "IVF_SQ"
    min_rows: int = 100_000
    nprobes: int | None = None  # None: what :func:`tune` measured for the index
    refine_factor: int = 5  # re-rank refine_factor * k candidates by their exact cosine
    ef: int = 100  # HNSW candidate list per partition
    target_recall: float = 0.95  # what tune holds recall@10 to

    def wants_index(self, rows: int) -> bool:
        return self.mode != "off" and rows >= self.min_rows

    def query(self, k: int = 10, tuned: int | None = None) -> dict[str, Any]:
        """The knobs Lance's ``nearest`` takes for an indexed search of the top ``k`` (``tuned``: the index's own
        nprobes, used unless the profile sets one). HNSW is asked for ``refine_factor * k`` candidates and
        refuses an ``ef`` below that, so ``ef`` is raised to it."""
        return {
            "nprobes": self.nprobes or tuned or DEFAULT_NPROBES,
            "refine_factor": self.refine_factor,
            "ef": max(self.ef, k * max(1, self.refine_factor)),
        }


def find_index(dataset: Any) -> dict[str, Any] | None:
    """The vector index of this version (name, type) from its manifest alone: what every dense query asks, so it
    reads nothing else (a reader may hold a version whose index files' older manifests were cleaned up)."""
    import warnings

    with warnings.catch_warnings():  # deprecated in favour of describe_indices, which is what reads too much here
        warnings.simplefilter("ignore", DeprecationWarning)
        indices = dataset.list_indices()
    for index in indices:
        if VECTOR_COLUMN in index.get("fields", []) and str(index.get("type", "")).startswith("IVF"):
            return {"name": index["name"], "type": index["type"]}
    return None


def vector_index(dataset: Any) -> dict[str, Any] | None:
    """The vector index of this version: type, partitions, rows in and out of it, when it was last updated."""
    for index in dataset.describe_indices():
        if VECTOR_COLUMN in index.field_names:
            stats = dataset.stats.index_stats(index.name)
            segments = stats.get("segments") or [{}]
            kind = stats.get("index_type")
            return {
                "name": index.name,
                # N/A: trained on too few rows to hold any (PQ wants 256), every row still searched exactly
                "type": index.index_type if kind in (None, "N/A") else kind,
                "partitions": segments[0].get("num_partitions"),
                "indexed_rows": int(stats.get("num_indexed_rows", 0)),
                "unindexed_rows": int(stats.get("num_unindexed_rows", 0)),
                "updated_at": (stats.get("updated_at_timestamp_ms") or 0) / 1000 or None,
            }
    return None


def needed(dataset: Any, settings: AnnSettings, trained: dict[str, Any] | None) -> str | None:
    """What the vector index needs now: ``build``, ``retrain``, ``update``, ``drop`` or nothing."""
    rows = int(dataset.count_rows())
    index = vector_index(dataset)
    if not settings.wants_index(rows):
        return "drop" if index is not None and settings.mode == "off" else None
    if index is None or index["type"] != settings.kind:
        return "build"
    trained_rows = int((trained or {}).get("trained_rows") or index["indexed_rows"] or 1)
    if rows >= trained_rows * RETRAIN_GROWTH:
        return "retrain"
    return "update" if index["unindexed_rows"] else None


def partitions(kind: str, rows: int) -> int:
    return max(1, math.ceil(rows / PARTITION_ROWS.get(kind, 4_096)))


def build(dataset: Any, settings: AnnSettings, num_partitions: int | None = None) -> dict[str, Any]:
    """Train and write the vector index over every row; returns what the meta records (``num_partitions``: the
    bench's override of :func:`partitions`)."""
    rows = int(dataset.count_rows())
    extra: dict[str, Any] = {}
    if settings.kind == "IVF_PQ":
        dim = int(dataset.schema.field(VECTOR_COLUMN).type.list_size)
        extra["num_sub_vectors"] = next(s for s in (48, 32, 24, 16, 8, 4, 2, 1) if dim % s == 0)  # 8 dims per code or more
    started = time.perf_counter()
    dataset.create_index(
        VECTOR_COLUMN,
        settings.kind,
        metric="cosine",
        num_partitions=num_partitions or partitions(settings.kind, rows),
        replace=True,
        **extra,
    )
    return {
        "type": settings.kind,
        "trained_rows": rows,
        "trained_at": time.time(),
        "build_seconds": round(time.perf_counter() - started, 2),
    }


def tuned_nprobes(dataset: Any) -> int | None:
    """The nprobes :func:`tune` recorded for this version's index, if any."""
    value = (dataset.config() or {}).get(TUNED)
    return int(value) if value and str(value).isdigit() else None


def tune(dataset: Any, settings: AnnSettings, k: int = 10, samples: int = 100) -> dict[str, Any]:
    """The fewest ``nprobes`` whose recall@k against exact search, over ``samples`` queries made from the table's
    own vectors (:func:`tuning_queries`), reaches ``target_recall`` (all partitions if none does); recorded in the
    table's config."""
    started = time.perf_counter()
    index = vector_index(dataset)
    parts = int((index or {}).get("partitions") or 1)
    queries, ids = tuning_queries(dataset, samples)
    exact = _exact_top(dataset, queries, ids, k)
    aim = settings.target_recall
    recall, chosen = 0.0, parts
    for n in [p for p in PROBE_STEPS if p < parts] + [parts]:
        knobs = {**settings.query(k + 1, n), "nprobes": n}  # k + 1: the row a query was made from may be a hit
        found = [
            _ids(dataset.to_table(columns=["id"], nearest=_nearest(q, k + 1, knobs)), own, k) for q, own in zip(queries, ids, strict=True)
        ]
        recall = _recall(found, exact)
        if recall >= aim:
            chosen = n
            break
    dataset.update_config({TUNED: str(chosen)})
    return {"nprobes": chosen, "recall": round(recall, 4), "aim": round(aim, 4), "tune_seconds": round(time.perf_counter() - started, 2)}


def tuning_queries(dataset: Any, samples: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """``samples`` stored vectors, each turned to cosine :data:`QUERY_COSINE` from itself in a random direction;
    with the ids they were made from (left out of both searches' answers, as in :func:`recall_at_k`)."""
    vectors, ids = _sample(dataset, samples, seed)
    noise = np.random.default_rng(seed + 1).standard_normal(vectors.shape).astype(np.float32)
    noise -= (noise * vectors).sum(axis=1, keepdims=True) * vectors  # orthogonal to each vector
    noise /= np.clip(np.linalg.norm(noise, axis=1, keepdims=True), 1e-12, None)
    return QUERY_COSINE * vectors + np.sqrt(1 - QUERY_COSINE**2) * noise, ids


def _sample(dataset: Any, samples: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    count = int(dataset.count_rows())
    offsets = sorted(np.random.default_rng(seed).choice(count, size=min(samples, count), replace=False).tolist()) if count else []
    table = dataset.take(offsets, columns=["id", VECTOR_COLUMN])
    return _unit(table.column(VECTOR_COLUMN)), [str(i) for i in table.column("id").to_pylist()]


def _unit(column: Any) -> np.ndarray:
    column = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    matrix = flat.reshape(len(column), -1) if len(column) else np.zeros((0, 1), dtype=np.float32)
    return np.asarray(matrix / np.clip(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12, None))


def _exact_top(dataset: Any, queries: np.ndarray, own: list[str], k: int) -> list[set[str]]:
    """Each query's exact top ``k`` by cosine (its own row left out), in one streamed pass over the table."""
    best = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_ids = np.empty((len(queries), 0), dtype=object)
    for batch in dataset.to_batches(columns=["id", VECTOR_COLUMN], batch_size=65_536):
        scores = queries @ _unit(batch.column(VECTOR_COLUMN)).T
        ids = np.asarray(batch.column("id").to_pylist(), dtype=object)
        merged = np.concatenate([best, scores], axis=1)
        merged_ids = np.concatenate([best_ids, np.broadcast_to(ids, scores.shape)], axis=1)
        keep = np.argsort(-merged, axis=1)[:, : k + 1]
        best, best_ids = np.take_along_axis(merged, keep, axis=1), np.take_along_axis(merged_ids, keep, axis=1)
    return [set([str(i) for i in row if i != me][:k]) for row, me in zip(best_ids, own, strict=True)]


def _nearest(vector: np.ndarray, k: int, knobs: dict[str, Any]) -> dict[str, Any]:
    return {"column": VECTOR_COLUMN, "q": vector.tolist(), "k": k, "metric": "cosine", **knobs}


def _ids(table: Any, own: str, k: int) -> list[str]:
    return [str(i) for i in table.column("id").to_pylist() if i != own][:k]


def update(dataset: Any) -> None:
    """Fold rows added since the last build into the index (same centroids)."""
    dataset.optimize.optimize_indices()


def drop(dataset: Any) -> None:
    index = vector_index(dataset)
    if index is not None:
        dataset.drop_index(index["name"])


def recall_at_k(snapshot: Any, k: int = 10, samples: int = 100, seed: int = 0) -> dict[str, Any]:
    """Recall@k of the snapshot's dense search (through its index, at its knobs) against exact search, over the
    queries :func:`tune` measures with (:func:`tuning_queries`): what ``rag eval --ann-recall`` reports."""
    queries, ids = tuning_queries(snapshot.dataset, samples, seed)
    exact = _exact_top(snapshot.dataset, queries, ids, k)
    answers = snapshot.nearest_many(queries, k + 1) if len(queries) else []
    found = [[h.id for h in hits if h.id != own][:k] for hits, own in zip(answers, ids, strict=True)]
    return {"k": k, "queries": len(found), "recall": round(_recall(found, exact), 4) if found else None}


def _recall(found: list[list[str]], exact: list[set[str]]) -> float:
    pairs = [(f, e) for f, e in zip(found, exact, strict=True) if e]
    return float(np.mean([len(set(f) & e) / len(e) for f, e in pairs])) if pairs else 1.0


def describe_ann(info: dict[str, Any]) -> str:
    """``rag status``'s line for dense search (``info`` from :func:`rag.status.ann_status`)."""
    if info["type"] == "exact":
        limit = f"; an ANN index from {info['min_rows']:,} chunks" if info.get("min_rows") else "; ANN off (index.ann.mode)"
        return f"exact{limit}"
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info["trained_at"])) if info.get("trained_at") else "?"
    rows = f" on {info['trained_rows']:,} rows" if info.get("trained_rows") else ""
    pending = f"; {info['unindexed_rows']:,} new rows searched exactly until the next rag index" if info.get("unindexed_rows") else ""
    q = info.get("query") or {}
    parts = info.get("partitions")
    tuned = info.get("tuned") or {}
    probes = f"nprobes {q.get('nprobes')}"
    if tuned.get("nprobes") == q.get("nprobes") and tuned.get("recall") is not None:
        probes += f" (tuned: recall@10 {tuned['recall']:.2f})"
    return f"{info['type']} ({parts} partition{'' if parts == 1 else 's'}), trained {when}{rows}; {probes}, refine {q.get('refine_factor')}{pending}"
