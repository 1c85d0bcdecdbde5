"""A model folder on disk, in the Hugging Face layout, read into settings. No model is loaded here.

A profile names a folder through a provider of kind ``local`` with a ``path``::

    providers:
      models: {kind: local, path: ~/models}
    embedding: {model: models/bge-small-en-v1.5}
    rerank: {model: models/ms-marco-MiniLM-L-6-v2}

``models/bge-small-en-v1.5`` is the folder ``~/models/bge-small-en-v1.5``; a
name ending in ``.onnx`` picks one graph in it (``models/bge-small-en-v1.5/onnx/model_quantized.onnx``).
The folder holds ``tokenizer.json`` and a graph: ``model.onnx``, else
``onnx/model.onnx``, else the only ``*.onnx``. Settings come from the folder's
own files where present, else from the provider entry, else the defaults:

- pooling: ``modules.json`` -> ``1_Pooling/config.json`` (mean, CLS, last token, max); else ``pooling``; else mean
- normalisation: a ``Normalize`` module in ``modules.json``; without modules.json, ``normalize``; else true
- max length: ``sentence_bert_config.json`` ``max_seq_length``, else ``tokenizer_config.json``
  ``model_max_length``, else ``config.json`` ``max_position_embeddings``; ``max_tokens`` lowers it
- query / document prefixes: ``config_sentence_transformers.json`` ``prompts``, unless the profile sets
  ``embedding.query_prefix`` / ``document_prefix``

The model's version is a hash of the graph, the tokenizer and these settings,
so an index notices a changed folder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import ConfigError
from rag.providers.local.encoder import POOLINGS

_POOLING_KEYS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_lasttoken": "last",
    "pooling_mode_max_tokens": "max",
}
_UNSUPPORTED_POOLING = ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens")
_DOCUMENT_PROMPTS = ("document", "passage", "corpus", "doc")
_LONGEST = 100_000  # tokenizer_config.json says 1e30 when it does not know


@dataclass(frozen=True)
class Defaults:
    """What the provider entry says, for folders that do not say it themselves."""

    pooling: str | None = None
    normalize: bool | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class ModelFolder:
    ref: str  # provider/model as the profile names it
    folder: Path
    graph: Path
    pooling: str
    normalize: bool
    max_tokens: int
    query_prompt: str | None
    document_prompt: str | None

    @property
    def tokenizer(self) -> Path:
        return self.folder / "tokenizer.json"

    def version(self) -> str:
        """``onnx-`` and a hash of the graph, its external weights, the tokenizer and the settings."""
        from rag.providers.local.cache import file_sha256

        external = sorted(p for p in self.graph.parent.glob(f"{self.graph.name}*") if p != self.graph and p.is_file())
        parts = {
            "graph": file_sha256(self.graph),
            "external": [file_sha256(p) for p in external],
            "tokenizer": file_sha256(self.tokenizer),
            "settings": [self.pooling, self.normalize, self.max_tokens],
        }
        return "onnx-" + hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def locate(root: Path, ref: str, model: str, defaults: Defaults) -> ModelFolder:
    """The folder ``model`` names under ``root``, with its settings; one-line ConfigErrors for what is missing."""
    if not root.is_dir():
        raise ConfigError(
            f"{ref}: the models folder {root} does not exist; point the provider's path at the folder holding your model folders"
        )
    target = root / model
    if target.suffix == ".onnx" and target.is_file():
        folder = _owner(target, root)
        graph = target
    elif target.is_dir():
        folder, graph = target, pick_graph(target, ref)
    else:
        found = ", ".join(sorted(p.parent.relative_to(root).as_posix() for p in root.glob("*/tokenizer.json"))[:8]) or "none"
        raise ConfigError(f"{ref}: no model folder {target} (model folders under {root}: {found})")
    if not (folder / "tokenizer.json").is_file():
        raise ConfigError(
            f"{ref}: {folder} has no tokenizer.json; save it beside the model (tokenizer.save_pretrained(folder), or optimum-cli export onnx)"
        )
    st = _SentenceTransformers(folder)
    prompts = st.prompts()
    normalize = st.normalize()
    if normalize is None:
        normalize = defaults.normalize if defaults.normalize is not None else True
    return ModelFolder(
        ref=ref,
        folder=folder,
        graph=graph,
        pooling=st.pooling() or defaults.pooling or "mean",
        normalize=normalize,
        max_tokens=_max_tokens(folder, defaults.max_tokens),
        query_prompt=prompts.get("query"),
        document_prompt=next((prompts[k] for k in _DOCUMENT_PROMPTS if k in prompts), None),
    )


def pick_graph(folder: Path, ref: str) -> Path:
    for name in ("model.onnx", "onnx/model.onnx"):
        if (folder / name).is_file():
            return folder / name
    graphs = sorted([*folder.glob("*.onnx"), *folder.glob("onnx/*.onnx")])
    if len(graphs) == 1:
        return graphs[0]
    if not graphs:
        raise ConfigError(
            f"{ref}: no .onnx file in {folder} or {folder / 'onnx'}; export one, e.g. optimum-cli export onnx --model ID {folder}"
        )
    names = ", ".join(g.relative_to(folder).as_posix() for g in graphs)
    raise ConfigError(f"{ref}: several graphs in {folder} ({names}); name one, e.g. {ref}/{graphs[0].relative_to(folder).as_posix()}")


def _owner(graph: Path, root: Path) -> Path:
    """The model folder of a graph named directly: the nearest folder up from it that holds tokenizer.json."""
    for folder in graph.parents:
        if (folder / "tokenizer.json").is_file() or folder == root:
            return folder
    return graph.parent


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not readable JSON ({exc}); fix or delete it") from exc


class _SentenceTransformers:
    """The sentence-transformers files of a folder: modules.json and what it points at."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        modules = read_json(folder / "modules.json")
        self.modules: list[dict[str, Any]] | None = modules if isinstance(modules, list) else None

    def _module_path(self, kind: str) -> str | None:
        for module in self.modules or []:
            if str(module.get("type", "")).endswith(kind):
                return str(module.get("path", ""))
        return None

    def pooling(self) -> str | None:
        path = self._module_path("Pooling")
        where = self.folder / (path if path is not None else "1_Pooling") / "config.json"
        config = read_json(where)
        if not isinstance(config, dict):
            return None
        for key in _UNSUPPORTED_POOLING:
            if config.get(key):
                raise ConfigError(f"{where}: {key} is not supported here; pooling can be {', '.join(POOLINGS)}")
        modes = [mode for key, mode in _POOLING_KEYS.items() if config.get(key)]
        if len(modes) > 1:
            raise ConfigError(f"{where}: several pooling modes at once ({', '.join(modes)}); rag pools one way: keep one")
        return modes[0] if modes else None

    def normalize(self) -> bool | None:
        if self.modules is None:
            return None
        return self._module_path("Normalize") is not None

    def prompts(self) -> dict[str, str]:
        config = read_json(self.folder / "config_sentence_transformers.json")
        prompts = config.get("prompts") if isinstance(config, dict) else None
        return {str(k): str(v) for k, v in prompts.items() if isinstance(v, str)} if isinstance(prompts, dict) else {}


def _max_tokens(folder: Path, ceiling: int | None) -> int:
    own = _own_max_tokens(folder)
    if ceiling is None:
        return own
    return min(own, ceiling)


def _own_max_tokens(folder: Path) -> int:
    st = read_json(folder / "sentence_bert_config.json")
    if isinstance(st, dict) and isinstance(st.get("max_seq_length"), int) and st["max_seq_length"] > 0:
        return int(st["max_seq_length"])
    tok = read_json(folder / "tokenizer_config.json")
    length = tok.get("model_max_length") if isinstance(tok, dict) else None
    if isinstance(length, (int, float)) and 0 < length < _LONGEST:
        return int(length)
    config = read_json(folder / "config.json")
    positions = config.get("max_position_embeddings") if isinstance(config, dict) else None
    if isinstance(positions, int) and positions > 0:
        # RoBERTa-family models reserve two positions for the padding offset
        return positions - 2 if config.get("model_type") in ("roberta", "xlm-roberta", "camembert") else positions
    return 512
