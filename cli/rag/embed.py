"""The one embed service: cache, dedupe, length-sorted batches and usage, over ``Embedder.embed_batch``.

Providers implement a single method, ``embed_batch(texts)``. Everything a
caller wants on top lives here, once: texts already in the cache (keyed by
model and text hash) are not sent; a text that occurs twice is embedded once;
the rest go out sorted by length (a batch pads to its longest text) in batches
of ``batch_size``, ``concurrency`` batches in flight; tokens and calls are
summed in :attr:`EmbedService.usage`. The indexer, the retriever, ``rag ask``,
``rag serve`` and ``rag eval`` all embed through it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from rag import threads
from rag.chunking import sha256
from rag.providers.base import Embedder, Usage, Vectors

if TYPE_CHECKING:
    from rag.embed_cache import EmbeddingCache
    from rag.profile import Profile


def embedding_record(embedder: Embedder, profile: Profile) -> dict[str, Any]:
    """What an index records about the model that built it, and what a reader checks against."""
    return {
        "model": embedder.ref,
        "version": embedder.version,
        "dimensions": embedder.dimensions,
        "document_prefix": profile.embedding.document_prefix,
        "query_prefix": profile.embedding.query_prefix,
    }


def cache_key(embedder: Embedder, profile: Profile) -> str:
    """The embedding cache's model key: a vector is reusable only under the same model, size and document prefix."""
    return f"{embedder.ref}@{embedder.version}#{profile.embedding.dimensions}#{profile.embedding.document_prefix}"


class EmbedService:
    """Embeds lists of texts through one embedder. Not thread-safe: one per caller."""

    def __init__(self, embedder: Embedder, *, batch_size: int, concurrency: int = 1, cache: EmbeddingCache | None = None) -> None:
        self.embedder = embedder
        self.batch_size = max(1, batch_size)
        self.cache = cache
        self.usage = Usage()
        self.cache_hits = 0
        self.embedded = 0  # texts sent to the model
        workers = max(1, min(concurrency, getattr(embedder, "max_concurrency", None) or concurrency))
        self._pool = threads.pool(workers, "rag-embed") if workers > 1 else None

    @classmethod
    def for_queries(cls, embedder: Embedder, profile: Profile) -> EmbedService:
        return cls(embedder, batch_size=profile.embedding.batch_size, concurrency=profile.embedding.concurrency)

    def embed(self, texts: list[str], on_batch: Callable[[int], None] | None = None) -> Vectors:
        """Vectors for ``texts`` in order. ``on_batch(n)`` is told after each batch the model answered."""
        shas = [sha256(t) for t in texts]
        found: dict[str, Vectors] = self.cache.get_many(shas) if self.cache is not None else {}
        text_of = dict(zip(shas, texts, strict=True))
        todo = sorted((s for s in text_of if s not in found), key=lambda s: len(text_of[s]))
        self.cache_hits += sum(1 for s in shas if s in found)
        batches = [todo[i : i + self.batch_size] for i in range(0, len(todo), self.batch_size)]

        def run(batch: list[str]) -> Any:
            return self.embedder.embed_batch([text_of[s] for s in batch])

        if self._pool is not None:
            futures = [self._pool.submit(run, b) for b in batches]
            results: Iterator[Any] = (threads.result(f) for f in futures)
        else:
            results = map(run, batches)
        for batch, result in zip(batches, results, strict=True):
            fresh = dict(zip(batch, np.asarray(result.vectors, dtype=np.float32), strict=True))
            if self.cache is not None:
                self.cache.put_many(fresh)
            found.update(fresh)
            self.usage.add(result.usage)
            self.embedded += len(batch)
            if on_batch is not None:
                on_batch(len(batch))
        if not shas:
            return np.zeros((0, self.embedder.dimensions or 0), dtype=np.float32)
        return np.stack([found[s] for s in shas])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self.cache is not None:
            self.cache.close()
