"""Text in, numbers out: onnxruntime sessions under a tokenizer, for embedding models and cross-encoders.

By default each text is its own model call, and as many calls run at once as
there are cores, each on one thread. An int8 graph quantizes its activations
per call, so a text batched with others would get a vector that depends on
them (cosine as low as 0.97 to the same text alone); one text per call gives
every text one vector, needs no padding, and on this 2-core machine ran
int8 abstracts as fast as batches of 8 (bench/model_bench.py), one thread per
call beating two threads per call on a loaded machine. Short texts pay ~30 %
CPU for it. :class:`Batching` can still group texts (by tokens, see
:func:`plan_batches`) for graphs that compute in fp32. Both classes are
thread-safe: onnxruntime sessions may be run from several threads.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag import threads
from rag.errors import ConfigError
from rag.profile import LOCAL_POOLINGS
from rag.providers.base import Vectors
from rag.text import clean_text

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

POOLINGS = LOCAL_POOLINGS
_FEEDS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class Batching:
    """At most ``max_batch`` texts and ``token_budget`` padded tokens (rows x longest) per model call,
    ``workers`` calls in flight at once (0: one per core)."""

    max_batch: int = 1
    token_budget: int = 4096
    workers: int = 0


def plan_batches(lengths: list[int], batching: Batching) -> list[list[int]]:
    """Indices of ``lengths`` grouped into model calls, shortest first. Pure."""
    batches: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        longest = max(lengths[i], 1)  # sorted ascending: this text is the longest so far
        if current and (len(current) >= batching.max_batch or (len(current) + 1) * longest > batching.token_budget):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def new_session(source: str | bytes, *, threads: int = 1, level: str = "all", save_to: Path | None = None) -> Any:
    """An onnxruntime CPU session on ``threads`` intra-op threads (parallelism comes from calls in flight);
    ``save_to`` writes the optimised graph there (raises if it cannot)."""
    import onnxruntime as ort

    levels = {
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = levels[level]
    opts.log_severity_level = 3  # onnxruntime's own warnings are not actionable for our users
    if save_to is not None:
        opts.optimized_model_filepath = str(save_to)
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


def configure_tokenizer(tokenizer: Tokenizer, max_tokens: int) -> Tokenizer:
    """Truncate at ``max_tokens``; no padding (batches are padded here, to their own longest)."""
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_tokens)
    return tokenizer


def pad_id(tokenizer: Tokenizer) -> int:
    padding = tokenizer.padding
    if padding and isinstance(padding.get("pad_id"), int):
        return int(padding["pad_id"])
    for token in ("[PAD]", "<pad>", "<|endoftext|>"):
        found = tokenizer.token_to_id(token)
        if found is not None:
            return int(found)
    return 0


class _Runner:
    """Feeds padded token batches to a session and returns one named output."""

    def __init__(self, session: Any, tokenizer: Tokenizer, output: str, *, batching: Batching, source: str) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.output = output
        self.batching = batching
        self._pad = pad_id(tokenizer)
        self._feeds: dict[str, Any] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0
        self._pool_lock = threading.Lock()
        for spec in session.get_inputs():
            if spec.name not in _FEEDS:
                raise ConfigError(
                    f"{source}: the graph wants an input '{spec.name}'; a text model here gets only {', '.join(_FEEDS)} "
                    "(export it for feature extraction or sequence classification, without past key values)"
                )
            self._feeds[spec.name] = np.int32 if spec.type == "tensor(int32)" else np.int64
        if "input_ids" not in self._feeds:
            raise ConfigError(f"{source}: the graph has no input_ids input; is it a text model?")

    def run_all(self, encodings: list[Encoding], batches: list[list[int]]) -> Iterator[tuple[list[int], Any, np.ndarray]]:
        """``(rows, output, mask)`` per batch, ``batching.workers`` batches at once, the longest first.

        :func:`plan_batches` orders them shortest first (for padding); run in that order, the longest text
        of a call came last and ran alone while the other workers idled. Longest first, the last ones are
        short and the workers finish together.
        """

        def one(rows: list[int]) -> tuple[list[int], Any, np.ndarray]:
            return (rows, *self.run(encodings, rows))

        workers = self.batching.workers or available_cores()
        if workers <= 1 or len(batches) <= 1:
            return map(one, batches)
        with self._pool_lock:
            if self._pool is None or self._pool_size != workers:
                self._pool = threads.pool(workers, "rag-onnx")
                self._pool_size = workers
            pool = self._pool
        return (threads.result(f) for f in [pool.submit(one, b) for b in reversed(batches)])

    def run(self, encodings: list[Encoding], rows: list[int]) -> tuple[Any, np.ndarray]:
        """The output for ``encodings[rows]`` and their attention mask."""
        width = max(1, *(len(encodings[i].ids) for i in rows))
        ids = np.full((len(rows), width), self._pad, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        types = np.zeros((len(rows), width), dtype=np.int64)
        for r, i in enumerate(rows):
            enc = encodings[i]
            n = len(enc.ids)
            ids[r, :n] = enc.ids
            mask[r, :n] = 1
            types[r, :n] = enc.type_ids
        given = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        feed = {name: given[name].astype(dtype, copy=False) for name, dtype in self._feeds.items()}
        (out,) = self.session.run([self.output], feed)
        return out, mask


class TextEncoder:
    """Texts -> vectors: token states pooled (mean, CLS, last token or max) or a graph that pools itself."""

    def __init__(
        self,
        session: Any,
        tokenizer: Tokenizer,
        *,
        output: str,
        pooled: bool,
        pooling: str = "mean",
        normalize: bool = True,
        batching: Batching | None = None,
        source: str = "model",
    ) -> None:
        self._runner = _Runner(session, tokenizer, output, batching=batching or Batching(), source=source)
        self._tok = tokenizer
        self.pooled = pooled  # the output is one vector per text already
        self.pooling = pooling
        self.normalize = normalize
        self.dimensions = 0
        self.dimensions = int(self.encode(["dimensions"])[0].shape[1])

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer texts go through (truncating at the model's length)."""
        return self._tok

    @property
    def batching(self) -> Batching:
        return self._runner.batching

    @batching.setter
    def batching(self, value: Batching) -> None:
        self._runner.batching = value

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self._tok.encode_batch([clean_text(t) for t in texts])] if texts else []

    def encode(self, texts: list[str], batch_size: int | None = None) -> tuple[Vectors, int]:
        """Vectors in input order and the number of model tokens consumed."""
        vectors, counts = self.encode_counted(texts, batch_size)
        return vectors, sum(counts)

    def encode_counted(self, texts: list[str], batch_size: int | None = None) -> tuple[Vectors, list[int]]:
        """Vectors in input order and the model tokens of each text (``rag serve`` reports them per request).

        ``batch_size`` caps texts per model call below the encoder's own cap.
        """
        encodings = self._tok.encode_batch([clean_text(t) for t in texts]) if texts else []
        counts = [len(e.ids) for e in encodings]
        batching = self.batching
        if batch_size:
            batching = dataclasses.replace(batching, max_batch=min(batch_size, batching.max_batch))
        out: Vectors | None = None
        for rows, states, mask in self._runner.run_all(encodings, plan_batches(counts, batching)):
            vectors = self._pool(states, mask)
            if out is None:
                out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
        return (out if out is not None else np.zeros((0, self.dimensions), dtype=np.float32)), counts

    def _pool(self, states: Any, mask: np.ndarray) -> Vectors:
        states = np.asarray(states, dtype=np.float32)
        vectors = states if self.pooled else pool(states, mask, self.pooling)
        if self.normalize:
            vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        return vectors.astype(np.float32, copy=False)


def pool(states: np.ndarray, mask: np.ndarray, how: str) -> np.ndarray:
    """[batch, tokens, dim] -> [batch, dim] over the tokens the mask keeps (padding is on the right)."""
    if how == "cls":
        return states[:, 0]
    if how == "last":
        last = np.clip(mask.sum(axis=1) - 1, 0, None)
        return states[np.arange(len(states)), last]
    keep = mask[:, :, None].astype(np.float32)
    if how == "max":
        return np.where(keep > 0, states, -np.inf).max(axis=1)
    return (states * keep).sum(axis=1) / np.clip(keep.sum(axis=1), 1e-9, None)


class PairScorer:
    """(query, document) pairs -> relevance in [0, 1]: the sigmoid of a cross-encoder's logit.

    Logits of shape [n, 1] give ``sigmoid(logit)``; [n, 2] (not relevant, relevant)
    give the softmax of the second, which is ``sigmoid(l1 - l0)``.
    """

    def __init__(self, session: Any, tokenizer: Tokenizer, *, output: str, batching: Batching | None = None, source: str = "model") -> None:
        self._runner = _Runner(session, tokenizer, output, batching=batching or Batching(), source=source)
        self._tok = tokenizer

    def score(self, query: str, documents: list[str]) -> tuple[np.ndarray, int]:
        """One relevance per document, in order, and the model tokens consumed."""
        logits, tokens = self.logits(query, documents)
        return relevance(logits), tokens

    def logits(self, query: str, documents: list[str]) -> tuple[np.ndarray, int]:
        """The graph's raw output per document: [n, 1] or [n, 2] for a cross-encoder."""
        q = clean_text(query)
        encodings = self._tok.encode_batch([(q, clean_text(d)) for d in documents]) if documents else []
        counts = [len(e.ids) for e in encodings]
        parts: list[tuple[list[int], np.ndarray]] = []
        for rows, out, _ in self._runner.run_all(encodings, plan_batches(counts, self._runner.batching)):
            parts.append((rows, np.asarray(out, dtype=np.float32)))
        if not parts:
            return np.zeros((0, 1), dtype=np.float32), 0
        logits = np.zeros((len(documents), *parts[0][1].shape[1:]), dtype=np.float32)
        for rows, out in parts:
            logits[rows] = out
        return logits, sum(counts)


def relevance(logits: np.ndarray) -> np.ndarray:
    """Logits [n, 1] or [n, 2] (or [n]) -> one score in [0, 1] per row."""
    two_way = logits.ndim == 2 and logits.shape[1] == 2  # (not relevant, relevant)
    margin = logits[:, 1] - logits[:, 0] if two_way else logits.reshape(len(logits))
    return 1.0 / (1.0 + np.exp(-margin))
