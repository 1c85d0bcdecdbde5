"""Fallback chains: try each model of a stage in order, skipping those whose circuit is open.

Embedding fallbacks must be the same model served elsewhere: an index refuses
vectors from another model, and a fallback that returns vectors of another
size is an error, not a silent mix.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from rag.errors import ProviderError
from rag.http import CircuitBreaker, StreamInterrupted
from rag.providers.base import ChatModel, ChatResult, Embedder, EmbedResult, Reranker, RerankResult

log = logging.getLogger("rag.providers")


class _Named(Protocol):
    ref: str


M = TypeVar("M", bound=_Named)
R = TypeVar("R")


class Chain(Generic[M]):
    """Members in order of preference, sharing one circuit breaker."""

    def __init__(self, stage: str, members: Sequence[M], breaker: CircuitBreaker) -> None:
        self.stage = stage
        self.members = list(members)
        self.breaker = breaker

    def call(self, fn: Callable[[M], R]) -> R:
        errors: list[ProviderError] = []
        for position, member in enumerate(self.members):
            wait = self.breaker.blocked_for(member.ref)
            if wait > 0:
                log.debug("%s: skipping %s, its circuit is open for %.0fs more", self.stage, member.ref, wait)
                errors.append(
                    ProviderError(
                        f"{self.stage} {member.ref}: skipped after {_failures(self.breaker.failures)} in a row; "
                        f"tried again in {wait:.0f}s (http.breaker_cooldown)",
                        retryable=True,
                    )
                )
                continue
            try:
                result = fn(member)
            except StreamInterrupted:
                self.breaker.record_failure(member.ref)
                raise
            except ProviderError as err:
                errors.append(err)
                self._failed(member, err, self.members[position + 1 :])
                continue
            self.breaker.record_success(member.ref)
            return result
        raise self._exhausted(errors)

    def _failed(self, member: M, err: ProviderError, rest: list[M]) -> None:
        if self.breaker.record_failure(member.ref):
            log.warning(
                "%s: %s failed %d times in a row; skipping it for %gs",
                self.stage,
                member.ref,
                self.breaker.failures,
                self.breaker.cooldown,
            )
        if rest:
            log.warning("%s: %s failed, falling back to %s: %s", self.stage, member.ref, rest[0].ref, err)

    def _exhausted(self, errors: list[ProviderError]) -> ProviderError:
        if len(errors) == 1:
            return errors[0]
        last = errors[-1]
        return ProviderError(
            f"{self.stage}: every model failed: " + " | ".join(str(e) for e in errors),
            provider=last.provider,
            path=last.path,
            status=last.status,
            retryable=any(e.retryable for e in errors),
        )


def _failures(n: int) -> str:
    return f"{n} failure" if n == 1 else f"{n} failures"


class FallbackEmbedder:
    """An :class:`Embedder` that presents the primary's identity (ref, version, dimensions)."""

    def __init__(self, members: Sequence[Embedder], breaker: CircuitBreaker) -> None:
        primary = members[0]
        self.ref = primary.ref
        self.version = primary.version
        self.dimensions = next((m.dimensions for m in members if m.dimensions), None)
        self._chain = Chain("embed", members, breaker)
        self._lock = threading.Lock()

    def embed_batch(self, texts: list[str]) -> EmbedResult:
        return self._chain.call(lambda member: self._checked(member, member.embed_batch(texts)))

    def _checked(self, member: Embedder, result: EmbedResult) -> EmbedResult:
        if not len(result.vectors):
            return result
        size = int(result.vectors.shape[1])
        with self._lock:
            if self.dimensions is None:
                self.dimensions = size
        if size != self.dimensions:
            raise ProviderError(
                f"embed {member.ref} returned {size}-dimensional vectors where {self.ref} gives {self.dimensions}; "
                "embedding fallbacks must be the same model served elsewhere (embedding.fallbacks)"
            )
        return result


class FallbackReranker:
    def __init__(self, members: Sequence[Reranker], breaker: CircuitBreaker) -> None:
        self.ref = members[0].ref
        self.version = members[0].version
        self._chain = Chain("rerank", members, breaker)

    def rerank(self, query: str, documents: list[str], top_n: int | None = None) -> RerankResult:
        return self._chain.call(lambda member: member.rerank(query, documents, top_n))


class FallbackChat:
    def __init__(self, members: Sequence[ChatModel], breaker: CircuitBreaker) -> None:
        self.ref = members[0].ref
        self._chain = Chain("chat", members, breaker)

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float = 0.0,
        max_tokens: int = 512,
        on_delta: Callable[[str], None] | None = None,
    ) -> ChatResult:
        return self._chain.call(lambda m: m.complete(messages, temperature=temperature, max_tokens=max_tokens, on_delta=on_delta))
