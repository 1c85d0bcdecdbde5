"""Build the providers a profile names as ``provider/model``.

The provider's ``kind`` picks the wire format: local models are built
directly, HTTP kinds through one :class:`rag.http.Endpoint` per provider and a
dialect table per capability. A stage with ``fallbacks`` gets a chain that
tries each model in order behind a circuit breaker (``http.breaker_*``).

Embedding fallbacks must be the same model served elsewhere (another vLLM
replica, a gateway in front of it): an index refuses to mix models.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from rag.errors import ConfigError
from rag.profile import Profile, provider_config, split_model
from rag.providers.base import ChatModel, Embedder, Reranker

if TYPE_CHECKING:
    from rag.http import CircuitBreaker, Endpoint

Sleep = Callable[[float], None]
T = TypeVar("T")

__all__ = ["make_chat", "make_embedder", "make_reranker"]


def make_embedder(profile: Profile, ref: str | None = None, *, sleep: Sleep = time.sleep) -> Embedder:
    """The embedder for ``ref`` (default ``embedding.model`` with ``embedding.fallbacks``). Thread-safe."""
    members = _members(profile, _chain(ref, profile.embedding.model, profile.embedding.fallbacks), _embedder, sleep)
    if len(members) == 1:
        return members[0]
    from rag.providers.fallback import FallbackEmbedder

    return FallbackEmbedder(members, _breaker(profile))


def make_reranker(profile: Profile, ref: str | None = None, *, sleep: Sleep = time.sleep) -> Reranker | None:
    """The reranker for ``ref`` (default ``rerank.model`` with ``rerank.fallbacks``); None when neither is set."""
    primary = ref or profile.rerank.model
    if not primary:
        return None
    members = _members(profile, _chain(ref, primary, profile.rerank.fallbacks), _reranker, sleep)
    if len(members) == 1:
        return members[0]
    from rag.providers.fallback import FallbackReranker

    return FallbackReranker(members, _breaker(profile))


def make_chat(profile: Profile, ref: str | None = None, *, sleep: Sleep = time.sleep) -> ChatModel | None:
    """The chat model for ``ref`` (default ``chat.model`` with ``chat.fallbacks``); None when neither is set."""
    primary = ref or profile.chat.model
    if not primary:
        return None
    members = _members(profile, _chain(ref, primary, profile.chat.fallbacks), _chat, sleep)
    if len(members) == 1:
        return members[0]
    from rag.providers.fallback import FallbackChat

    return FallbackChat(members, _breaker(profile))


# --------------------------------------------------------------------------- one model each


def _embedder(profile: Profile, ref: str, endpoints: _Endpoints) -> Embedder:
    name, model = split_model(ref)
    kind = provider_config(profile, name).kind
    wanted = profile.embedding.dimensions
    if kind == "local":
        from rag.providers.local import LOCAL_BATCH, LocalEmbedder

        local = LocalEmbedder(model, batch_size=min(profile.embedding.batch_size, LOCAL_BATCH))
        if wanted and wanted != local.dimensions:
            where = profile.where("embedding.dimensions")
            raise ConfigError(f"{where}: embedding.dimensions is {wanted}, but {ref} gives {local.dimensions}")
        return local
    from rag.providers.embed_http import EMBED_PATHS, HttpEmbedder

    path = _path(EMBED_PATHS, kind, ref, "embeddings")
    return HttpEmbedder(f"{name}/{model}", endpoints.get(name), model, path=path, dimensions=wanted)


def _reranker(profile: Profile, ref: str, endpoints: _Endpoints) -> Reranker:
    name, model = split_model(ref)
    kind = provider_config(profile, name).kind
    max_tokens = profile.rerank.max_tokens_per_doc
    if kind == "local":
        from rag.providers.local import LocalCosineReranker

        return LocalCosineReranker(model, max_tokens_per_doc=max_tokens)
    from rag.providers.rerank_http import DIALECTS, HttpReranker

    dialect = DIALECTS[kind]
    return HttpReranker(f"{name}/{model}", endpoints.get(name), model, dialect, max_tokens_per_doc=max_tokens)


def _chat(profile: Profile, ref: str, endpoints: _Endpoints) -> ChatModel:
    name, model = split_model(ref)
    kind = provider_config(profile, name).kind
    if kind == "local":
        raise ConfigError(
            f"no local chat model ships with rag ({ref}); point chat.model at an OpenAI-compatible server, "
            "e.g. ollama/llama3.2 or openrouter/openai/gpt-4o-mini"
        )
    from rag.providers.chat_http import CHAT_PATHS, HttpChat

    path = _path(CHAT_PATHS, kind, ref, "chat completions")
    return HttpChat(f"{name}/{model}", endpoints.get(name), model, path=path)


# --------------------------------------------------------------------------- helpers


def _members(profile: Profile, refs: list[str], build: Callable[[Profile, str, _Endpoints], T], sleep: Sleep) -> list[T]:
    endpoints = _Endpoints(profile, sleep)  # members on one provider share its connection pool
    return [build(profile, ref, endpoints) for ref in refs]


def _chain(ref: str | None, primary: str, fallbacks: list[str]) -> list[str]:
    """An explicit ``ref`` other than the profile's model runs alone: fallbacks belong to the profile's model."""
    if ref and ref != primary:
        return [ref]
    return list(dict.fromkeys([primary, *fallbacks]))


def _path(table: dict[str, str], kind: str, ref: str, what: str) -> str:
    if kind not in table:
        kinds = ", ".join(sorted(table))
        raise ConfigError(f"{ref}: providers of kind '{kind}' have no {what} API here; use one of kind {kinds}")
    return table[kind]


def _breaker(profile: Profile) -> CircuitBreaker:
    from rag.http import CircuitBreaker

    return CircuitBreaker(profile.http.breaker_failures, profile.http.breaker_cooldown)


class _Endpoints:
    """One endpoint (and connection pool) per provider name within a chain."""

    def __init__(self, profile: Profile, sleep: Sleep) -> None:
        self._profile = profile
        self._sleep = sleep
        self._made: dict[str, Endpoint] = {}

    def get(self, name: str) -> Endpoint:
        if name not in self._made:
            from rag.http import Endpoint

            self._made[name] = Endpoint(name, provider_config(self._profile, name), self._profile.http, sleep=self._sleep)
        return self._made[name]
