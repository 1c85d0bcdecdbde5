"""Hybrid search for a batch of queries, reading rows only for the hits that survive fusion.

Fusion needs no more than chunk ids and scores: full text reads the id and BM25 score of its candidates,
dense search ranks the vectors held in memory, and the text, title and place of the ``top_k`` fused hits
of the whole batch are read in one take afterwards. Reading every column of every candidate (50 per
retriever per query) used to cost more than the searches themselves. The hits are the ones
:func:`rag.fusion.fuse_hits` builds from full rows: same ids, scores, ranks and key order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from rag import threads
from rag.fusion import fuse_hits, fuse_ranked, group_key
from rag.store.schema import hit

if TYPE_CHECKING:
    from concurrent.futures import Future

    from rag.documents import Hit
    from rag.profile import Profile
    from rag.providers.base import Vectors
    from rag.store import Snapshot


class Retriever(Protocol):
    """What a batch needs of :class:`rag.retrieve.Retriever` (which calls in here, so this names, not imports, it)."""

    snapshot: Snapshot
    profile: Profile

    def embed_queries(self, queries: list[str]) -> Vectors: ...

    def fill_cosine(self, hits: list[Hit], vector: Vectors) -> None: ...


SLICE = 8  # queries per model call: the model embeds the next slice while this thread searches and fuses one


@dataclass
class _Fused:
    """One query's fused ranking, before its rows are read."""

    ranked: list[tuple[str, float]]
    dense: dict[str, float]
    fts: dict[str, float]
    vector: Vectors


def hybrid_many(retriever: Retriever, queries: list[str], top_k: int, depth: int, where: str | None) -> list[list[Hit]]:
    """The ``top_k`` fused hits of each query, from ``depth`` candidates per retriever.

    The queries go to the model in slices, all queued at once on one thread: while it embeds a slice, this
    thread runs full text for the next and fuses the last, so both cores stay busy (BM25, fusion and the
    model all release the GIL or are short). The rows of every query's hits are read together at the end:
    a read's cost is mostly per read, not per row.
    """
    snapshot = retriever.snapshot
    lean = snapshot.in_memory(where)  # otherwise a Lance search reads every candidate's row anyway
    slices = [queries[i : i + SLICE] for i in range(0, len(queries), SLICE)]
    rows: dict[str, dict[str, Any]] = {}
    fused: list[_Fused] = []
    results: list[list[Hit]] = []
    embedder = threads.pool(1, "rag-query-embed")
    try:
        embedded = [embedder.submit(retriever.embed_queries, part) for part in slices]
        for part, vectors in zip(slices, embedded, strict=True):
            if lean:
                fused.extend(_fuse_slice(retriever, part, vectors, top_k, depth, rows))
            else:
                results.extend(_from_hits(retriever, part, vectors, top_k, depth, where))
    finally:
        embedder.shutdown(cancel_futures=True)
    if not lean:
        return results
    rows.update(snapshot.rows([i for f in fused for i, _ in f.ranked if i not in rows]))
    for f in fused:
        hits = _hits(f.ranked, f.dense, f.fts, rows)
        retriever.fill_cosine([h for h in hits if "dense" not in h.scores], f.vector)
        results.append(hits)
    return results


def _fuse_slice(
    retriever: Retriever, queries: list[str], embedding: Future[Vectors], top_k: int, depth: int, rows: dict[str, dict[str, Any]]
) -> list[_Fused]:
    """Fused (chunk id, score) per query; ``rows`` gains every candidate's row when fusion groups by place."""
    snapshot = retriever.snapshot
    fts = [snapshot.full_text_ids(q, depth) if snapshot.has_fts else [] for q in queries]
    vectors = threads.result(embedding)
    dense = snapshot.nearest_ids(vectors, depth)
    config = retriever.profile.retrieval
    groups: dict[str, str] = {}
    if config.aggregate != "chunk":  # fusion groups chunks by place: every candidate's row is needed
        rows.update(snapshot.rows([i for ranked in (*dense, *fts) for i, _ in ranked if i not in rows]))
        groups = {i: group_key(rows[i]["source"], rows[i]["heading"], config.aggregate) for ranked in (*dense, *fts) for i, _ in ranked}
    return [_Fused(fuse_ranked(d, f, config, groups)[:top_k], dict(d), dict(f), v) for d, f, v in zip(dense, fts, vectors, strict=True)]


def _hits(fused: list[tuple[str, float]], dense: dict[str, float], fts: dict[str, float], rows: dict[str, dict[str, Any]]) -> list[Hit]:
    """Hits as :func:`rag.fusion.fuse_hits` leaves them: full text's rank and score first, then dense's, then hybrid's."""
    dense_rank = {i: rank for rank, i in enumerate(dense, start=1)}
    fts_rank = {i: rank for rank, i in enumerate(fts, start=1)}
    hits = []
    for rank, (chunk_id, score) in enumerate(fused, start=1):
        if chunk_id in fts:
            h = hit(rows[chunk_id], "fts", fts_rank[chunk_id], fts[chunk_id])
            if chunk_id in dense:
                h.ranks["dense"], h.scores["dense"] = dense_rank[chunk_id], dense[chunk_id]
        else:
            h = hit(rows[chunk_id], "dense", dense_rank[chunk_id], dense[chunk_id])
        h.score = h.scores["hybrid"] = score
        h.ranks["hybrid"] = rank
        hits.append(h)
    return hits


def _from_hits(
    retriever: Retriever, queries: list[str], embedding: Future[Vectors], top_k: int, depth: int, where: str | None
) -> list[list[Hit]]:
    """Hybrid over whole hits, for a dense search that runs in Lance and reads every candidate's row anyway."""
    snapshot = retriever.snapshot
    fts = [snapshot.full_text(q, depth, where) if snapshot.has_fts else [] for q in queries]
    vectors = threads.result(embedding)
    results = []
    for d, f, vector in zip(snapshot.nearest_many(vectors, depth, where), fts, vectors, strict=True):
        hits = fuse_hits(d, f, retriever.profile.retrieval)[:top_k]
        retriever.fill_cosine([h for h in hits if "dense" not in h.scores], vector)
        results.append(hits)
    return results
