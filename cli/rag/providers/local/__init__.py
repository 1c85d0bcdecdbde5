"""Local models on onnxruntime: the embedded default and model folders on disk.

- :mod:`.minilm`        the embedded all-MiniLM-L6-v2 (int8 kernels) and the cosine reranker over it
- :mod:`.quantize`      the rewrite that gives the packaged graph int8 kernels (no ``onnx`` package needed)
- :mod:`.onnx_folder`   a Hugging Face / sentence-transformers folder read into settings
- :mod:`.folder_models` embedders and cross-encoder rerankers over such folders
- :mod:`.encoder`       tokenize, batch by tokens, run, pool: what all of them share
- :mod:`.cache`         the user cache (derived graphs, content hashes)

Importing this package imports neither onnxruntime nor tokenizers: models load on first use.
"""

from rag.providers.local.minilm import (
    DIMENSIONS,
    LOCAL_BATCH,
    MODEL_ALIASES,
    MODEL_NAME,
    LocalCosineReranker,
    LocalEmbedder,
    MiniLM,
    check_model_name,
    cosine_hits,
    shared_model,
)

__all__ = [
    "DIMENSIONS",
    "LOCAL_BATCH",
    "MODEL_ALIASES",
    "MODEL_NAME",
    "LocalCosineReranker",
    "LocalEmbedder",
    "MiniLM",
    "check_model_name",
    "cosine_hits",
    "shared_model",
]
