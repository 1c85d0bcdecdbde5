"""Embedders and cross-encoder rerankers over model folders on disk (see :mod:`.onnx_folder`).

Both resolve their folder when built (a missing folder, graph or tokenizer is
a ConfigError at once) and load the graph on first use, so an unchanged
re-index loads nothing. One loaded model per folder and process is shared by
every stage and by ``rag serve``.
"""

from __future__ import annotations

import threading
from typing import Any

from rag.errors import ConfigError
from rag.providers.base import EmbedResult, RerankHit, RerankResult, Usage
from rag.providers.local.encoder import Batching, PairScorer, TextEncoder, configure_tokenizer, new_session
from rag.providers.local.onnx_folder import ModelFolder

_EMBEDDING_OUTPUTS = ("last_hidden_state", "token_embeddings")
_loaded: dict[tuple[str, ModelFolder, str], Any] = {}
_loading = threading.Lock()


def load_encoder(spec: ModelFolder, version: str) -> TextEncoder:
    """The loaded embedding model of ``spec`` at ``version`` (a folder whose files changed loads again)."""
    model = _shared("embed", spec, version, _build_encoder)
    assert isinstance(model, TextEncoder)
    return model


def load_scorer(spec: ModelFolder, version: str) -> PairScorer:
    model = _shared("rerank", spec, version, _build_scorer)
    assert isinstance(model, PairScorer)
    return model


def _shared(task: str, spec: ModelFolder, version: str, build: Any) -> Any:
    with _loading:
        key = (task, spec, version)
        if key not in _loaded:
            for old in [k for k in _loaded if k[:2] == key[:2]]:
                del _loaded[old]
            _loaded[key] = build(spec)
        return _loaded[key]


def _session(spec: ModelFolder) -> tuple[Any, Any]:
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(spec.tokenizer))
    except Exception as exc:  # tokenizers raises a bare Exception on a file it cannot parse
        raise ConfigError(f"{spec.ref}: {spec.tokenizer} is not a tokenizers file ({_first_line(exc)})") from exc
    fp16 = f"{spec.ref}: {spec.graph.name} is an fp16 graph; onnxruntime on CPU computes in fp32: use the folder's fp32 or int8 graph"
    try:
        session = new_session(str(spec.graph))
    except Exception as exc:  # onnxruntime raises its own classes, not importable without it
        from rag.providers.local.quantize import has_fp16_weights

        if "float16" in str(exc) or has_fp16_weights(spec.graph.read_bytes()):
            raise ConfigError(fp16) from exc
        raise ConfigError(f"{spec.ref}: onnxruntime cannot load {spec.graph}: {_first_line(exc)}") from exc
    if any(o.type == "tensor(float16)" for o in [*session.get_inputs(), *session.get_outputs()]):
        raise ConfigError(fp16)
    return session, configure_tokenizer(tokenizer, spec.max_tokens)


def _build_encoder(spec: ModelFolder) -> TextEncoder:
    session, tokenizer = _session(spec)
    outputs = {o.name: o for o in session.get_outputs()}
    shapes = ", ".join(f"{o.name} {_shape(o)}" for o in outputs.values())
    name = next((n for n in _EMBEDDING_OUTPUTS if n in outputs and len(outputs[n].shape) == 3), None)
    pooled = False
    if name is None and "sentence_embedding" in outputs and len(outputs["sentence_embedding"].shape) == 2:
        name, pooled = "sentence_embedding", True
    if name is None and "logits" in outputs:
        raise ConfigError(
            f"{spec.ref}: {spec.graph.name} outputs logits {_shape(outputs['logits'])}: a cross-encoder; name it as rerank.model"
        )
    if name is None:
        ranked = [o for o in outputs.values() if len(o.shape) == 3]
        if len(ranked) != 1:
            raise ConfigError(
                f"{spec.ref}: {spec.graph.name} outputs {shapes}; an embedding model needs last_hidden_state "
                "[batch, tokens, dim] or sentence_embedding [batch, dim]"
            )
        name = ranked[0].name
    return TextEncoder(
        session,
        tokenizer,
        output=name,
        pooled=pooled,
        pooling=spec.pooling,
        normalize=spec.normalize,
        batching=_batching(spec),
        source=f"{spec.ref} ({spec.graph})",
    )


def _build_scorer(spec: ModelFolder) -> PairScorer:
    session, tokenizer = _session(spec)
    outputs = {o.name: o for o in session.get_outputs()}
    shapes = ", ".join(f"{o.name} {_shape(o)}" for o in outputs.values())
    name = "logits" if "logits" in outputs else (next(iter(outputs)) if len(outputs) == 1 else None)
    width = outputs[name].shape[-1] if name is not None else None
    if name is None or len(outputs[name].shape) != 2 or (isinstance(width, int) and width not in (1, 2)):
        embedder = any(n in outputs for n in (*_EMBEDDING_OUTPUTS, "sentence_embedding"))
        kind = " (an embedding model: name it as embedding.model)" if embedder else ""
        raise ConfigError(f"{spec.ref}: {spec.graph.name} outputs {shapes}{kind}; a cross-encoder reranker needs logits [n, 1] or [n, 2]")
    scorer = PairScorer(session, tokenizer, output=name, batching=_batching(spec), source=f"{spec.ref} ({spec.graph})")
    probe, _ = scorer.logits("query", ["document"])
    if probe.ndim != 2 or probe.shape[1] not in (1, 2):
        raise ConfigError(
            f"{spec.ref}: {spec.graph.name} gives {name} of shape {list(probe.shape)}; a cross-encoder gives [n, 1] or [n, 2]"
        )
    return scorer


def _batching(spec: ModelFolder) -> Batching:
    # one text per call, as for the embedded model: quantized folder graphs (model_quantized.onnx) would
    # otherwise give a text a vector that depends on its batch-mates
    return Batching(max_batch=1, token_budget=max(4096, spec.max_tokens))


def _shape(output: Any) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in output.shape) + "]"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


class FolderEmbedder:
    """:class:`rag.providers.base.Embedder` over a model folder."""

    max_concurrency = 1  # onnxruntime already uses every core for one batch

    def __init__(self, spec: ModelFolder) -> None:
        self.spec = spec
        self.ref = spec.ref
        self.version = spec.version()
        self.dimensions: int | None = None  # known once loaded; the index takes it from the first vectors

    def load(self) -> TextEncoder:
        encoder = load_encoder(self.spec, self.version)
        self.dimensions = encoder.dimensions
        return encoder

    def embed_batch(self, texts: list[str]) -> EmbedResult:
        vectors, tokens = self.load().encode(texts)
        return EmbedResult(vectors, Usage(input_tokens=tokens, calls=1, counted=True))


class FolderReranker:
    """:class:`rag.providers.base.Reranker` over a cross-encoder folder: the sigmoid of its logit, in [0, 1]."""

    def __init__(self, spec: ModelFolder, max_tokens_per_doc: int | None = None) -> None:
        self.spec = spec
        self.ref = spec.ref
        self.version = spec.version()
        self._max_tokens = max_tokens_per_doc

    def load(self) -> PairScorer:
        return load_scorer(self.spec, self.version)

    def rerank(self, query: str, documents: list[str], top_n: int | None = None) -> RerankResult:
        if self._max_tokens:
            from rag.tokens import truncate_tokens

            documents = [truncate_tokens(d, self._max_tokens) for d in documents]
        scores, tokens = self.load().score(query, documents)
        return RerankResult(ranked(scores, top_n), self.ref, Usage(input_tokens=tokens, calls=1, counted=True))


def ranked(scores: Any, top_n: int | None = None) -> list[RerankHit]:
    """Best first; ties keep input order."""
    import numpy as np

    order = np.argsort(-np.asarray(scores), kind="stable")
    return [RerankHit(int(i), float(scores[i])) for i in order[: top_n or len(order)]]
