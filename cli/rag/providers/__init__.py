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
    from rag.providers.local.onnx_folder import ModelFolder

Sleep = Callable[[float], None]
T = TypeVar("T")

__all__ = ["make_chat", "make_embedder", "make_reranker", "make_single", "model_folder"]


def make_embedder(profile: Profile, ref: str | None = None, *, sleep: Sleep = time.sleep) -> Embedder:
    """The embedder for ``ref`` (default ``embedding.model`` with ``embedding.fallbacks``). Thread-safe."""
    members = _members(profile, _chain(ref, profile.embedding.model, profile.embedding.fallbacks), _embedder, sleep)
    if len(members) == 1:
        return guarded(profile, "embed", members[0])
    from rag.providers.fallback import FallbackEmbedder

    return guarded(profile, "embed", FallbackEmbedder(members, _breaker(profile)))


def make_reranker(profile: Profile, ref: str | None = None, *, sleep: Sleep = time.sleep) -> Reranker | None:
    """The reranker for ``ref`` (default ``rerank.model`` with ``rerank.fallbacks``); None when neither is set."""
    primary = ref or profile.rerank.model
    if not primary:
        return None
    members = _members(profile, _chain(ref, primary, profile.rerank.fallbacks), _reranker, sleep)
    if len(members) == 1:
        return guarded(profile, "rerank", members[0])
    from rag.providers.fallback import FallbackReranker

    return guarded(profile, "rerank", FallbackReranker(members, _breaker(profile)))


def make_chat(profile: Profile, ref: str | None = None, *, sleep: Sleep = time.sleep) -> ChatModel | None:
    """The chat model for ``ref`` (default ``chat.model`` with ``chat.fallbacks``); None when neither is set."""
    primary = ref or profile.chat.model
    if not primary:
        return None
    members = _members(profile, _chain(ref, primary, profile.chat.fallbacks), _chat, sleep)
    if len(members) == 1:
        return guarded(profile, "chat", members[0])
    from rag.providers.fallback import FallbackChat

    return guarded(profile, "chat", FallbackChat(members, _breaker(profile)))


def make_single(profile: Profile, stage: str, ref: str) -> Embedder | Reranker | ChatModel:
    """One model for ``stage`` (embed, rerank, chat), with neither chain nor budget: the gateway composes its own."""
    endpoints = _Endpoints(profile, time.sleep)
    if stage == "embed":
        return _embedder(profile, ref, endpoints)
    if stage == "rerank":
        return _reranker(profile, ref, endpoints)
    return _chat(profile, ref, endpoints)


def guarded(profile: Profile, stage: str, model: T) -> T:
    """``model`` behind ``budget:`` when its stage has a price (rag.providers.budgeted)."""
    from rag.providers.budgeted import guarded as wrap

    return wrap(profile, stage, model)


# --------------------------------------------------------------------------- one model each


def _embedder(profile: Profile, ref: str, endpoints: _Endpoints) -> Embedder:
    name, model = split_model(ref)
    kind = provider_config(profile, name).kind
    wanted = profile.embedding.dimensions
    if kind == "local":
        local = _local_embedder(profile, ref, name, model, sized=bool(wanted))
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
        folder = model_folder(profile, ref, name, model)
        if folder is not None:
            from rag.providers.local.folder_models import FolderReranker

            return FolderReranker(folder, max_tokens_per_doc=max_tokens)
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


# --------------------------------------------------------------------------- local models


def _local_embedder(profile: Profile, ref: str, name: str, model: str, *, sized: bool = False) -> Embedder:
    """The embedded MiniLM, or a model folder when the provider has a ``path``.

    A folder's prompts (config_sentence_transformers.json) become the profile's
    ``embedding.query_prefix`` / ``document_prefix`` unless the profile sets them
    itself, so queries and documents are embedded the way the model was trained
    and the index records the prefixes it was built with.
    """
    folder = model_folder(profile, ref, name, model)
    if folder is None:
        from rag.providers.local import LOCAL_BATCH, LocalEmbedder

        return LocalEmbedder(model, batch_size=min(profile.embedding.batch_size, LOCAL_BATCH))
    from rag.providers.local.folder_models import FolderEmbedder

    if ref == profile.embedding.model:
        e = profile.embedding
        if folder.query_prompt is not None and "embedding.query_prefix" not in profile.lines:
            e.query_prefix = folder.query_prompt
        if folder.document_prompt is not None and "embedding.document_prefix" not in profile.lines:
            e.document_prefix = folder.document_prompt
    embedder = FolderEmbedder(folder)
    if sized:
        embedder.load()  # a folder model's size is known once it is loaded
    return embedder


def model_folder(profile: Profile, ref: str, name: str | None = None, model: str | None = None) -> ModelFolder | None:
    """The folder ``ref`` names, or None for the embedded models and HTTP models (no local provider with a ``path``)."""
    if name is None or model is None:
        name, model = split_model(ref)
    cfg = provider_config(profile, name)
    if cfg.kind != "local" or not cfg.path:
        return None
    from rag.providers.local.onnx_folder import Defaults, locate

    defaults = Defaults(pooling=cfg.pooling, normalize=cfg.normalize, max_tokens=cfg.max_tokens)
    return locate(profile.resolve_path(cfg.path), ref, model, defaults)


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
