"""Retrieve chunks: dense (cosine), full-text (LanceDB native BM25), or hybrid (RRF of both).

A :class:`Retriever` opens the table and loads the model once, so batch
queries (``rag query -``, ``rag eval``) pay for them once.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from rag.documents import Hit
from rag.errors import ModelMismatchError, StoreError, UsageError
from rag.fusion import rrf
from rag.indexer import embedding_info, open_store
from rag.profile import RETRIEVAL_MODES, Profile
from rag.providers import make_embedder
from rag.providers.base import Embedder, Usage
from rag.store import FTS_COLUMN, Store, damaged, fts_indexed
from rag.text import clean_text

COLUMNS = ["id", "source", "title", "heading", "text", "start", "end", "ordinal"]
MAX_QUERY_CHARS = 8000  # embedders truncate long before this; BM25 gains nothing from more

log = logging.getLogger("rag.retrieve")


class Retriever:
    def __init__(self, profile: Profile, table: str | None = None, store: Store | None = None) -> None:
        self.profile = profile
        self.store = store or open_store(profile, table)
        self.dataset = self.store.published()  # raises StoreError with 'run: rag index' if missing
        self._embedder: Embedder | None = None
        self._last_vector: list[float] | None = None
        self._has_fts: bool | None = None
        self.usage = Usage()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            embedder = make_embedder(self.profile)
            self.store.check_embedding(
                embedding_info(embedder, self.profile) | {"dimensions": self.store.meta()["embedding"]["dimensions"]}
            )
            self._embedder = embedder
        return self._embedder

    def search(self, query: str, *, mode: str | None = None, top_k: int | None = None, where: str | None = None) -> list[Hit]:
        mode = mode or self.profile.retrieval.mode
        top_k = self.profile.retrieval.top_k if top_k is None else top_k
        validate_options(mode, top_k)
        query = validate_query(query)
        if mode == "dense":
            return self._dense(query, top_k, where)
        if mode == "fts":
            return self._fts(query, top_k, where)
        depth = max(top_k, self.profile.retrieval.candidates)
        dense = self._dense(query, depth, where)
        if self.has_fts:
            fts = self._fts(query, depth, where)
        else:
            fts = []
            log.warning(
                "%s has no full-text index yet (rag index stopped before building it): dense results only; run rag index", self.store.root
            )
        by_id = {h.id: h for h in fts}
        for h in dense:
            if h.id in by_id:
                by_id[h.id].ranks.update(h.ranks)
                by_id[h.id].scores.update(h.scores)
            else:
                by_id[h.id] = h
        fused = rrf({"dense": [h.id for h in dense], "fts": [h.id for h in fts]}, k=self.profile.retrieval.rrf_k)
        hits = []
        for rank, (chunk_id, score) in enumerate(fused[:top_k], start=1):
            hit = by_id[chunk_id]
            hit.score = score
            hit.ranks["hybrid"] = rank
            hit.scores["hybrid"] = score
            hits.append(hit)
        self._fill_cosine([h for h in hits if "dense" not in h.scores])
        return hits

    def _fill_cosine(self, hits: list[Hit]) -> None:
        """Give hits found only by full text their cosine too, so one threshold applies to every hybrid hit.

        They get ``scores["dense"]`` but no dense rank: the dense retriever did not rank them.
        """
        if not hits or self._last_vector is None:
            return
        import numpy as np

        from rag.store import sql_in

        rows = self.dataset.to_table(columns=["id", "vector"], filter=sql_in("id", [h.id for h in hits])).to_pylist()
        vectors = {r["id"]: np.asarray(r["vector"], dtype=np.float32) for r in rows}
        q = np.asarray(self._last_vector, dtype=np.float32)
        q /= max(float(np.linalg.norm(q)), 1e-12)
        for hit in hits:
            v = vectors.get(hit.id)
            if v is not None:
                hit.scores["dense"] = float(v @ q / max(float(np.linalg.norm(v)), 1e-12))

    def embed_query(self, query: str) -> list[float]:
        result = self.embedder.embed_batch([self.profile.embedding.query_prefix + query])
        self.usage.add(result.usage)
        self._last_vector = [float(x) for x in result.vectors[0]]
        return self._last_vector

    def _dense(self, query: str, k: int, where: str | None) -> list[Hit]:
        vector = self.embed_query(query)
        size = self.dataset.schema.field("vector").type.list_size
        if len(vector) != size:
            raise ModelMismatchError(
                f"{self.embedder.ref} returns {len(vector)}-dimensional vectors, but the index at {self.store.root} holds {size}; "
                "did the model behind it change? Re-index with: rag index --rebuild PATH"
            )
        nearest = {"column": "vector", "q": vector, "k": k, "metric": "cosine"}
        rows = self._scan(where, nearest=nearest)
        return [_hit(row, "dense", rank, 1.0 - float(row["_distance"])) for rank, row in enumerate(rows, start=1)]

    @property
    def has_fts(self) -> bool:
        """Whether the table has its full-text index (rows added since it was built are searched too, without it)."""
        if self._has_fts is None:
            self._has_fts = fts_indexed(self.dataset)  # of the published version this retriever reads
        return self._has_fts

    def _fts(self, query: str, k: int, where: str | None) -> list[Hit]:
        if not self.has_fts:
            # Without the index Lance finds nothing at all: an empty answer would look like "no match".
            raise StoreError(
                f"{self.store.root} has no full-text index yet (rag index stopped before building it); "
                "run rag index again to build it, or use --mode dense"
            )
        rows = self._scan(where, full_text_query={"query": query, "columns": [FTS_COLUMN]}, limit=k)
        return [_hit(row, "fts", rank, float(row["_score"])) for rank, row in enumerate(rows, start=1)]

    def _scan(self, where: str | None, **search: Any) -> list[dict[str, Any]]:
        try:
            table = self.dataset.to_table(columns=COLUMNS, filter=where or None, prefilter=bool(where), **search)
        except Exception as exc:  # lance raises ValueError/OSError/LanceError for bad filters
            if where:
                msg = re.sub(r",? /\S+\.rs:\d+:\d+", "", str(exc).splitlines()[0])[:200]
                raise UsageError(
                    f"--where '{where}' is not a valid filter ({msg}); use SQL such as: source LIKE '%guide%' AND kind = 'markdown'"
                ) from exc
            if isinstance(exc, OSError | ValueError):  # a data file gone or torn
                raise damaged(self.store.root, exc) from exc
            raise
        return list(table.to_pylist())


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


def _hit(row: dict[str, Any], name: str, rank: int, score: float) -> Hit:
    return Hit(
        id=row["id"],
        source=row["source"],
        title=row["title"],
        heading=row["heading"],
        text=row["text"],
        score=score,
        start=int(row["start"]),
        end=int(row["end"]),
        ordinal=int(row["ordinal"]),
        ranks={name: rank},
        scores={name: score},
    )
