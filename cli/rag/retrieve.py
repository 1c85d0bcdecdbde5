"""Retrieve chunks: dense (cosine), full-text (LanceDB native BM25), or hybrid (both fused, :mod:`rag.fusion`).

A :class:`Retriever` opens the published version of the table and loads the
model once, so batch queries (``rag query -``, ``rag eval``) pay for them
once. All reads go through the store's :class:`rag.store.Snapshot`.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from rag.documents import Hit
from rag.embed import EmbedService, embedding_record
from rag.errors import ModelMismatchError, UsageError
from rag.profile import RETRIEVAL_MODES, Profile
from rag.providers import make_embedder
from rag.providers.base import Embedder, Usage, Vectors
from rag.store import Snapshot, Store, open_store
from rag.text import clean_text

MAX_QUERY_CHARS = 8000  # embedders truncate long before this; BM25 gains nothing from more

log = logging.getLogger("rag.retrieve")


class Retriever:
    def __init__(self, profile: Profile, table: str | None = None, store: Store | None = None) -> None:
        from rag.lifecycle import reading_profile

        self.store = store or open_store(profile, table)
        self.snapshot: Snapshot = self.store.published()  # raises StoreError with 'run: rag index' if missing
        self.profile = reading_profile(profile, self.store)  # the generation's own embedding model reads it
        self._service: EmbedService | None = None
        self._warned_fts = False
        self.embed_ms = 0.0  # time spent embedding queries, for per-stage latency

    @property
    def embedder(self) -> Embedder:
        return self.service.embedder

    @property
    def service(self) -> EmbedService:
        """The query embedder, checked against the model that built the index when first used."""
        if self._service is None:
            embedder = make_embedder(self.profile)
            built = self.store.meta().get("embedding") or {}
            self.store.check_embedding(embedding_record(embedder, self.profile) | {"dimensions": built.get("dimensions")})
            self._service = EmbedService.for_queries(embedder, self.profile)
        return self._service

    @property
    def usage(self) -> Usage:
        return self._service.usage if self._service is not None else Usage()

    def search(self, query: str, *, mode: str | None = None, top_k: int | None = None, where: str | None = None) -> list[Hit]:
        return self.search_many([query], mode=mode, top_k=top_k, where=where)[0]

    def search_many(
        self, queries: list[str], *, mode: str | None = None, top_k: int | None = None, where: str | None = None
    ) -> list[list[Hit]]:
        """Hits for each query: queries embedded in batches, dense search over vectors held in memory."""
        mode = mode or self.profile.retrieval.mode
        top_k = self.profile.retrieval.top_k if top_k is None else top_k
        validate_options(mode, top_k)
        queries = [validate_query(q) for q in queries]
        if mode == "fts":
            return [self.snapshot.full_text(q, top_k, where) for q in queries]
        depth = top_k if mode == "dense" else max(top_k, self.profile.retrieval.candidates)
        if mode == "dense":
            return self.snapshot.nearest_many(self.embed_queries(queries), depth, where)
        if not self.snapshot.has_fts and not self._warned_fts:
            self._warned_fts = True  # once per opened index, not once per query of a batch
            log.warning(
                "%s has no full-text index yet (rag index stopped before building it): dense results only; run rag index", self.store.root
            )
        from rag.hybrid import hybrid_many

        return hybrid_many(self, queries, top_k, depth, where)

    def fill_cosine(self, hits: list[Hit], vector: Vectors) -> None:
        """Give hits found only by full text their cosine too, so one threshold applies to every hybrid hit.

        They get ``scores["dense"]`` but no dense rank: the dense retriever did not rank them.
        """
        if not hits:
            return
        vectors = self.snapshot.vectors([h.id for h in hits])
        q = vector / max(float(np.linalg.norm(vector)), 1e-12)
        for hit in hits:
            v = vectors.get(hit.id)
            if v is not None:
                hit.scores["dense"] = float(v @ q / max(float(np.linalg.norm(v)), 1e-12))

    def embed_queries(self, queries: list[str]) -> Vectors:
        """Query vectors, checked against the size the index holds."""
        began = time.perf_counter()
        vectors = self.service.embed([self.profile.embedding.query_prefix + q for q in queries])
        self.embed_ms += (time.perf_counter() - began) * 1000
        if vectors.shape[1] != self.snapshot.vector_size:
            raise ModelMismatchError(
                f"{self.embedder.ref} returns {vectors.shape[1]}-dimensional vectors, but the index at {self.store.root} holds "
                f"{self.snapshot.vector_size}; did the model behind it change? Re-index with: rag index --rebuild PATH"
            )
        return vectors


def validate_options(mode: str | None, top_k: int | None) -> None:
    """Bad ``--mode`` / ``--top-k`` values are usage errors; callers may check them before opening an index."""
    if mode is not None and mode not in RETRIEVAL_MODES:
        raise UsageError(f"--mode must be one of {', '.join(RETRIEVAL_MODES)}, not '{mode}'")
    if top_k is not None and top_k < 1:
        raise UsageError(f"--top-k must be at least 1, not {top_k}")


def validate_query(query: str) -> str:
    query = clean_text(query).strip()
    if not query:
        raise UsageError('the query is empty; pass the question as text in quotes, e.g. "how do I install it?"')
    return query[:MAX_QUERY_CHARS]
