"""Embeddings over the OpenAI-compatible ``/v1/embeddings`` API (OpenAI, vLLM, TEI, Infinity, Jina, Ollama, rag serve).

``input`` is always an array; ``encoding_format`` is float, but a base64
answer (little-endian float32) is decoded too. When a provider rejects a batch
for its size we halve it, remember the size that worked, and say so once.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from typing import Any

import numpy as np

from rag.errors import ProviderError
from rag.http import Endpoint
from rag.providers.base import EmbedResult, Usage, Vectors
from rag.usage import counted, reported_usage

log = logging.getLogger("rag.providers")

# Where each kind serves embeddings. Cohere speaks OpenAI on its compatibility API.
EMBED_PATHS = {
    "openai": "/v1/embeddings",
    "vllm": "/v1/embeddings",
    "infinity": "/v1/embeddings",
    "jina": "/v1/embeddings",
    "tei": "/v1/embeddings",
    "cohere": "/compatibility/v1/embeddings",
}

# How providers word a 400 for a batch that is too big (TEI, vLLM, OpenAI, gateways).
_TOO_BIG = re.compile(
    r"(?i)batch|too many|too large|payload|maximum (number|allowed)|at most \d+|must have less than|exceeds? the (max|limit)"
)


def too_big(err: ProviderError) -> bool:
    return err.status == 413 or (err.status == 400 and bool(_TOO_BIG.search(err.message)))


class HttpEmbedder:
    """:class:`rag.providers.base.Embedder` over HTTP. Thread-safe: one shared client, no per-call state."""

    version = "api"

    def __init__(self, ref: str, endpoint: Endpoint, model: str, *, path: str, dimensions: int | None = None) -> None:
        self.ref = ref
        self.dimensions = dimensions
        self._endpoint = endpoint
        self._model = model
        self._path = path
        self._requested_dimensions = dimensions
        self._max_batch: int | None = None
        self._lock = threading.Lock()

    def embed_batch(self, texts: list[str]) -> EmbedResult:
        if not texts:
            return EmbedResult(np.zeros((0, self.dimensions or 0), dtype=np.float32), Usage())
        limit = self._max_batch
        if limit is not None and len(texts) > limit:
            return _concat([self.embed_batch(texts[i : i + limit]) for i in range(0, len(texts), limit)])
        try:
            return self._request(texts)
        except ProviderError as err:
            if len(texts) < 2 or not too_big(err):
                raise
        half = (len(texts) + 1) // 2
        self._lower_limit(half, len(texts))
        return _concat([self.embed_batch(texts[:half]), self.embed_batch(texts[half:])])

    def _lower_limit(self, half: int, rejected: int) -> None:
        with self._lock:
            first = self._max_batch is None
            self._max_batch = half if first else min(half, self._max_batch or half)
        if first:
            log.warning(
                "%s rejected a batch of %d texts as too large; sending at most %d per request from now on", self.ref, rejected, half
            )

    def _request(self, texts: list[str]) -> EmbedResult:
        body: dict[str, Any] = {"model": self._model, "input": texts, "encoding_format": "float"}
        if self._requested_dimensions:
            body["dimensions"] = self._requested_dimensions
        data = self._endpoint.post_json(self._path, body, stage="embed", model=self.ref)
        vectors = self._vectors(data, len(texts))
        if self.dimensions is None:
            self.dimensions = int(vectors.shape[1])
        elif vectors.shape[1] != self.dimensions:
            raise self._bad(f"returned {vectors.shape[1]}-dimensional vectors, expected {self.dimensions} (embedding.dimensions)")
        return EmbedResult(vectors, reported_usage(data) or counted(texts))

    def _vectors(self, data: Any, expected: int) -> Vectors:
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise self._bad("has no 'data' list")
        if len(items) != expected:
            raise self._bad(f"returned {len(items)} vectors for {expected} texts")
        items = sorted(items, key=lambda item: item.get("index", 0) if isinstance(item, dict) else 0)
        try:
            rows = [decode_embedding(item["embedding"]) for item in items]
            vectors = np.vstack(rows).astype(np.float32, copy=False)
        except (KeyError, TypeError, ValueError) as exc:
            raise self._bad(f"has a malformed embedding ({type(exc).__name__}: {exc})") from exc
        if not np.isfinite(vectors).all():  # JSON parsers accept NaN and Infinity; stored, they poison every distance
            raise self._bad("has NaN or infinite numbers in an embedding")
        return vectors

    def _bad(self, what: str) -> ProviderError:
        return ProviderError(f"embed {self.ref}: POST {self._path}: the response {what}", provider=self._endpoint.name, path=self._path)


def decode_embedding(value: Any) -> Vectors:
    """A list of floats, or base64 of little-endian float32."""
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value, validate=True), dtype="<f4").astype(np.float32)
    if not isinstance(value, list) or not value:
        raise ValueError("expected a list of numbers or a base64 string")
    return np.asarray(value, dtype=np.float32)


def _concat(parts: list[EmbedResult]) -> EmbedResult:
    usage = Usage()
    for part in parts:
        usage.add(part.usage)
    return EmbedResult(np.vstack([p.vectors for p in parts]).astype(np.float32, copy=False), usage)
