"""The local models ``rag serve`` serves: the embedded pair, and the profile's model folders.

Always: ``local/all-MiniLM-L6-v2`` (embed) and ``local/minilm-cosine`` (rerank).
Also every model folder the profile names as ``embedding.model`` (or an
embedding fallback) and as ``rerank.model`` (or a rerank fallback). A request
without ``model`` gets the profile's own model for that task when it is served
here, else the embedded one.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rag import threads
from rag.providers.local.minilm import MODEL_ALIASES, MODEL_NAME, LocalCosineReranker

if TYPE_CHECKING:
    from rag.profile import Profile
    from rag.providers.local.onnx_folder import ModelFolder

EMBED_ID = f"local/{MODEL_NAME}"
RERANK_ID = f"local/{LocalCosineReranker.NAME}"


@dataclass
class ServedModel:
    id: str
    task: str  # "embed" or "rerank"
    names: frozenset[str]  # what a request's "model" may say
    folder: ModelFolder | None = None  # None: the embedded MiniLM
    loaded: Any = None  # TextEncoder (embed) or PairScorer (a cross-encoder); None for the cosine reranker
    dimensions: int | None = None
    executor: ThreadPoolExecutor | None = field(default=None, repr=False)

    def entry(self) -> dict[str, Any]:
        """The model's line in /v1/models."""
        item: dict[str, Any] = {"id": self.id, "object": "model", "owned_by": "rag", "task": self.task}
        if self.dimensions:
            item["dimensions"] = self.dimensions
        if self.folder is not None:
            item["path"] = str(self.folder.graph)
        return item

    async def score(self, query: str, documents: list[str]) -> tuple[Any, int]:
        """A cross-encoder's scores, computed off the event loop, one request at a time per model."""
        if self.executor is None:
            self.executor = threads.pool(1, "rag-rerank")
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.loaded.score, query, documents)


@dataclass
class ServedModels:
    models: list[ServedModel]
    default_embed: str
    default_rerank: str

    def pick(self, task: str, name: Any) -> ServedModel | None:
        """The model a request names (None: the default for the task); None when none matches."""
        wanted = name or (self.default_embed if task == "embed" else self.default_rerank)
        return next((m for m in self.models if m.task == task and wanted in m.names), None)

    def ids(self, task: str | None = None) -> list[str]:
        return [m.id for m in self.models if task in (None, m.task)]

    def close(self) -> None:
        for m in self.models:
            if m.executor is not None:
                m.executor.shutdown(wait=False, cancel_futures=True)


def served_models(profile: Profile | None) -> ServedModels:
    """What to serve for ``profile``; folders are resolved (ConfigError for a bad one) but not loaded."""
    from rag.providers import model_folder

    embedded = [
        ServedModel(EMBED_ID, "embed", frozenset({EMBED_ID, *MODEL_ALIASES, *(f"local/{a}" for a in MODEL_ALIASES)})),
        ServedModel(
            RERANK_ID, "rerank", frozenset({RERANK_ID, *LocalCosineReranker.ALIASES, *(f"local/{a}" for a in LocalCosineReranker.ALIASES)})
        ),
    ]
    if profile is None:
        return ServedModels(embedded, EMBED_ID, RERANK_ID)
    folders: list[ServedModel] = []
    stages = [("embed", [profile.embedding.model, *profile.embedding.fallbacks])]
    stages.append(("rerank", [m for m in [profile.rerank.model, *profile.rerank.fallbacks] if m]))
    for task, refs in stages:
        for ref in dict.fromkeys(refs):
            folder = model_folder(profile, ref)
            if folder is not None:
                folders.append(ServedModel(ref, task, frozenset({ref, ref.partition("/")[2]}), folder))
    ids = {m.id for m in folders}
    embed = profile.embedding.model if profile.embedding.model in ids else EMBED_ID
    rerank = profile.rerank.model if profile.rerank.model in ids else RERANK_ID
    return ServedModels([*embedded, *folders], embed, rerank)


def load(served: ServedModels) -> None:
    """Load every served model now: the first request is not slow, and a bad folder fails at start."""
    from rag.providers.local.folder_models import load_encoder, load_scorer
    from rag.providers.local.minilm import shared_model

    for m in served.models:
        if m.folder is None:
            m.loaded = shared_model() if m.task == "embed" else None
        else:
            version = m.folder.version()
            m.loaded = load_encoder(m.folder, version) if m.task == "embed" else load_scorer(m.folder, version)
        if m.task == "embed":
            m.dimensions = m.loaded.dimensions
