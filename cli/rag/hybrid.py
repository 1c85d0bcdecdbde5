"""Hybrid search for a batch of queries, reading rows only for the hits that survive fusion.

Fusion needs no more than chunk ids and scores: full text reads the id and BM25 score of its candidates,
dense search ranks the vectors held in memory, and the text, title and place of the ``top_k`` fused hits
of the whole batch are read in one take afterwards. Reading every column of every candidate (50 per
retriever per query) used to cost more than the searches themselves. The hits are the ones
:func:`rag.retrieve.fuse_hits` builds from full rows: same ids, scores, ranks and key order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rag import threads
from rag.retrieve import fuse_hits, fuse_ranked, group_key
from rag.store.schema import hit

if TYPE_CHECKING:
    from concurrent.futures import Future

    from rag.documents import Hit
    from rag.providers.base import Vectors
    from rag.retrieve import Retriever


SLICE = 8  # queries per model call: the model embeds the next slice while this thread searches and fuses one


def hybrid_many(retriever: Retriever, queries: list[str], top_k: int, depth: int, where: str | None) -> list[list[Hit]]:
    """The ``top_k`` fused hits of each query, from ``depth`` candidates per retriever.

    The queries go to the model in slices, all queued at once on one thread: while it embeds a slice, this
    thread runs full text for the next and fuses the last, so both cores stay busy (BM25, fusion and the
    model all release the GIL or are short).
    """
    slices = [queries[i : i + SLICE] for i in range(0, len(queries), SLICE)]
    embedder = threads.pool(1, "rag-query-embed")
    try:
        embedded = [embedder.submit(retriever.embed_queries, part) for part in slices]
        results: list[list[Hit]] = []
        for part, vectors in zip(slices, embedded, strict=True):
            results.extend(_search_slice(retriever, part, vectors, top_k, depth, where))
        return results
    finally:
        embedder.shutdown(cancel_futures=True)


def _search_slice(
    retriever: Retriever, queries: list[str], embedding: Future[Vectors], top_k: int, depth: int, where: str | None
) -> list[list[Hit]]:
    snapshot = retriever.snapshot
    lean = snapshot.in_memory(where)  # otherwise a Lance search reads every candidate's row anyway
    search_fts = (snapshot.full_text_ids if lean else snapshot.full_text) if snapshot.has_fts else None
    fts: list[Any] = [search_fts(q, depth, where) if search_fts else [] for q in queries]
    vectors = threads.result(embedding)
    if not lean:
        return _from_hits(retriever, fts, snapshot.nearest_many(vectors, depth, where), vectors, top_k)
    dense = snapshot.nearest_ids(vectors, depth)
    config = retriever.profile.retrieval
    groups: dict[str, str] = {}
    rows: dict[str, dict[str, Any]] = {}
    if config.aggregate != "chunk":  # fusion groups chunks by place: every candidate's row is needed
        rows = snapshot.rows([i for ranked in (*dense, *fts) for i, _ in ranked])
        groups = {i: group_key(r["source"], r["heading"], config.aggregate) for i, r in rows.items()}
    fused = [fuse_ranked(d, f, config, groups)[:top_k] for d, f in zip(dense, fts, strict=True)]
    if config.aggregate == "chunk":
        rows = snapshot.rows([i for ranked in fused for i, _ in ranked])  # one read for the slice
    results = []
    for d, f, ranked, vector in zip(dense, fts, fused, vectors, strict=True):
        hits = _hits(ranked, dict(d), dict(f), rows)
        retriever._fill_cosine([h for h in hits if "dense" not in h.scores], vector)
        results.append(hits)
    return results


def _hits(fused: list[tuple[str, float]], dense: dict[str, float], fts: dict[str, float], rows: dict[str, dict[str, Any]]) -> list[Hit]:
    """Hits as :func:`rag.retrieve.fuse_hits` leaves them: full text's rank and score first, then dense's, then hybrid's."""
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


def _from_hits(retriever: Retriever, fts: list[list[Hit]], dense: list[list[Hit]], vectors: Vectors, top_k: int) -> list[list[Hit]]:
    results = []
    for d, f, vector in zip(dense, fts, vectors, strict=True):
        hits = fuse_hits(d, f, retriever.profile.retrieval)[:top_k]
        retriever._fill_cosine([h for h in hits if "dense" not in h.scores], vector)
        results.append(hits)
    return results
