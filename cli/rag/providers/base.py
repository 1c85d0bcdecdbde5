"""One small protocol per capability. Everything else builds on these.

- :class:`Embedder`   embed a batch of texts -> vectors
- :class:`Reranker`   score documents against a query
- :class:`ChatModel`  complete a list of messages (optionally streamed)

Local models and HTTP dialects implement them; batching, caching, fallback
chains and accounting are layered on top without knowing which is which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from rag.usage import Usage

Vectors = npt.NDArray[np.float32]

__all__ = ["ChatModel", "ChatResult", "EmbedResult", "Embedder", "RerankHit", "RerankResult", "Reranker", "Usage", "Vectors"]


@dataclass
class EmbedResult:
    vectors: Vectors
    usage: Usage = field(default_factory=Usage)


@dataclass
class RerankHit:
    index: int
    score: float


@dataclass
class RerankResult:
    hits: list[RerankHit]  # sorted by score, best first
    model: str
    usage: Usage = field(default_factory=Usage)


@dataclass
class ChatResult:
    text: str
    model: str
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None


@runtime_checkable
class Embedder(Protocol):
    ref: str  # provider/model as named in the profile
    version: str
    dimensions: int | None

    def embed_batch(self, texts: list[str]) -> EmbedResult: ...


@runtime_checkable
class Reranker(Protocol):
    ref: str
    version: str

    def rerank(self, query: str, documents: list[str], top_n: int | None = None) -> RerankResult: ...


@runtime_checkable
class ChatModel(Protocol):
    ref: str

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float = 0.0,
        max_tokens: int = 512,
        on_delta: Callable[[str], None] | None = None,
    ) -> ChatResult: ...
