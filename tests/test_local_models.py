"""Local models: model folders on disk (tiny ONNX graphs built here), and the embedded model's int8 graph.

Every tiny model is built with the ``onnx`` helper API from random weights, and
every number the code under test produces is checked against numpy computing
the same model independently (embedding lookup, one dense layer, tanh, pooling,
sigmoid).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from tests.clirun import rag, write

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "query", "passage", ":", "cats", "dogs", "eat", "fish", "bones"]
VOCAB += ["the", "sky", "is", "blue", "green", "grass", "what", "do", "rain", "falls", "from", "clouds", "docs", "animals", "weather"]
DIM = 8


# --------------------------------------------------------------------------- building tiny models


@lru_cache(maxsize=1)
def tokenizer() -> Any:
    """A WordLevel tokenizer over VOCAB with BERT's [CLS] a [SEP] b [SEP] template."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return tok


def write_tokenizer(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer().save(str(folder / "tokenizer.json"))


@dataclass
class Tiny:
    """The weights of a tiny model: states = tanh((E[ids] + T[types]) @ W + b); logits = states[:, 0] @ H + c."""

    E: np.ndarray
    T: np.ndarray
    W: np.ndarray
    b: np.ndarray
    H: np.ndarray | None = None
    c: np.ndarray | None = None

    def states(self, ids: list[int], types: list[int]) -> np.ndarray:
        return np.tanh((self.E[ids] + self.T[types]) @ self.W + self.b)


def tiny_weights(seed: int, labels: int | None = None) -> Tiny:
    rng = np.random.default_rng(seed)
    f = np.float32
    tiny = Tiny(
        rng.normal(size=(len(VOCAB), DIM)).astype(f),
        rng.normal(size=(2, DIM)).astype(f),
        rng.normal(size=(DIM, DIM)).astype(f) / 2,
        rng.normal(size=DIM).astype(f),
    )
    if labels:
        tiny.H, tiny.c = rng.normal(size=(DIM, labels)).astype(f), rng.normal(size=labels).astype(f)
    return tiny


def tiny_graph(tiny: Tiny, *, output: str = "last_hidden_state", fp16: bool = False) -> Any:
    """The ONNX graph of ``tiny``: token states (rank 3), or logits of the first token when ``tiny.H`` is set."""
    kind = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    cast = (lambda a: a.astype(np.float16)) if fp16 else (lambda a: a)
    inits = [numpy_helper.from_array(cast(getattr(tiny, k)), k) for k in ("E", "T", "W", "b")]
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["words"]),
        helper.make_node("Gather", ["T", "token_type_ids"], ["kinds"]),
        helper.make_node("Add", ["words", "kinds"], ["x"]),
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["pre"]),
        helper.make_node("Tanh", ["pre"], ["states"]),
    ]
    if tiny.H is not None:
        assert tiny.c is not None
        inits += [
            numpy_helper.from_array(cast(tiny.H), "H"),
            numpy_helper.from_array(cast(tiny.c), "c"),
            numpy_helper.from_array(np.array(0, np.int64), "zero"),
        ]
        nodes += [
            helper.make_node("Gather", ["states", "zero"], ["first"], axis=1),
            helper.make_node("MatMul", ["first", "H"], ["fh"]),
            helper.make_node("Add", ["fh", "c"], [output]),
        ]
        out = helper.make_tensor_value_info(output, kind, ["batch", tiny.H.shape[1]])
    else:
        nodes.append(helper.make_node("Identity", ["states"], [output]))
        out = helper.make_tensor_value_info(output, kind, ["batch", "tokens", DIM])
    ints = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "tokens"]) for n in ("input_ids", "attention_mask", "token_type_ids")
    ]
    graph = helper.make_graph(nodes, "tiny", ints, [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def embed_folder(
    root: Path, name: str = "tiny-embed", *, seed: int = 1, pooling: str | None = "mean", normalize: bool = True, **extra: Any
) -> Tiny:
    """A sentence-transformers style folder: model.onnx, tokenizer.json, modules.json, 1_Pooling/config.json."""
    folder = root / name
    tiny = tiny_weights(seed)
    write_tokenizer(folder)
    graph = folder / extra.pop("graph_name", "model.onnx")
    graph.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(tiny_graph(tiny), str(graph))
    if pooling is not None:
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
        modules.append({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"})
        if normalize:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        write(folder / "modules.json", json.dumps(modules))
        keys = {
            "mean": "pooling_mode_mean_tokens",
            "cls": "pooling_mode_cls_token",
            "last": "pooling_mode_lasttoken",
            "max": "pooling_mode_max_tokens",
        }
        write(folder / "1_Pooling" / "config.json", json.dumps({"word_embedding_dimension": DIM, keys[pooling]: True}))
    for file, content in extra.items():
        write(folder / file, json.dumps(content))
    return tiny


def cross_folder(root: Path, name: str = "tiny-cross", *, seed: int = 2, labels: int = 1) -> Tiny:
    folder = root / name
    tiny = tiny_weights(seed, labels)
    write_tokenizer(folder)
    onnx.save(tiny_graph(tiny, output="logits"), str(folder / "model.onnx"))
    write(folder / "config.json", json.dumps({"architectures": ["BertForSequenceClassification"], "max_position_embeddings": 64}))
    return tiny


def encode(text: str | tuple[str, str]) -> tuple[list[int], list[int]]:
    """Token ids and type ids, as the tokenizer gives them (the model math below is numpy's own)."""
    enc = tokenizer().encode(*text) if isinstance(text, tuple) else tokenizer().encode(text)
    return enc.ids, enc.type_ids


def np_embed(tiny: Tiny, text: str, pooling: str = "mean", normalize: bool = True) -> np.ndarray:
    ids, types = encode(text)
    states = tiny.states(ids, types)
    vec = {"mean": states.mean(axis=0), "cls": states[0], "last": states[-1], "max": states.max(axis=0)}[pooling]
    return vec / np.linalg.norm(vec) if normalize else vec


def np_relevance(tiny: Tiny, query: str, doc: str) -> float:
    assert tiny.H is not None and tiny.c is not None
    ids, types = encode((query, doc))
    logits = tiny.states(ids, types)[0] @ tiny.H + tiny.c
    margin = logits[1] - logits[0] if len(logits) == 2 else logits[0]
    return float(1 / (1 + np.exp(-margin)))


def profile_text(models: Path, *, embed: str | None = "tiny-embed", rerank: str | None = None, provider: str = "", extra: str = "") -> str:
    text = f"providers:\n  mine:\n    kind: local\n    path: {models}\n{provider}"
    if embed:
        text += f"embedding:\n  model: mine/{embed}\n"
    if rerank:
        text += f"rerank:\n  model: mine/{rerank}\n"
    return text + extra


def load(text: str) -> Any:
    from rag.profile import parse_profile

    return parse_profile(text)


# --------------------------------------------------------------------------- embedding folders


@pytest.mark.parametrize("pooling", ["mean", "cls", "last", "max"])
def test_folder_embeddings_match_numpy_for_each_pooling(tmp_path: Path, pooling: str) -> None:
    from rag.providers import make_embedder

    tiny = embed_folder(tmp_path / "models", pooling=pooling)
    embedder = make_embedder(load(profile_text(tmp_path / "models")))
    texts = ["cats eat fish", "the sky is blue", "dogs"]
    result = embedder.embed_batch(texts)
    assert result.vectors.shape == (3, DIM) and embedder.dimensions == DIM
    want = np.stack([np_embed(tiny, t, pooling) for t in texts])
    np.testing.assert_allclose(result.vectors, want, atol=1e-5)
    assert result.usage.input_tokens == sum(len(encode(t)[0]) for t in texts)


def test_mean_and_cls_pooling_differ_and_a_text_alone_equals_it_among_others(tmp_path: Path) -> None:
    from rag.providers import make_embedder

    embed_folder(tmp_path / "mean", pooling="mean")
    embed_folder(tmp_path / "cls", pooling="cls")
    mean = make_embedder(load(profile_text(tmp_path / "mean")))
    cls = make_embedder(load(profile_text(tmp_path / "cls")))
    texts = ["cats eat fish", "the sky is blue and the grass is green"]
    assert not np.allclose(mean.embed_batch(texts).vectors, cls.embed_batch(texts).vectors, atol=1e-3)
    np.testing.assert_allclose(mean.embed_batch(texts[:1]).vectors[0], mean.embed_batch(texts).vectors[0], atol=1e-6)


def test_profile_settings_apply_where_the_folder_is_silent(tmp_path: Path) -> None:
    from rag.providers import make_embedder

    tiny = embed_folder(tmp_path / "models", pooling=None)  # a plain Hugging Face folder: no sentence-transformers files
    provider = "    pooling: cls\n    normalize: false\n"
    got = make_embedder(load(profile_text(tmp_path / "models", provider=provider))).embed_batch(["cats eat fish"]).vectors[0]
    np.testing.assert_allclose(got, np_embed(tiny, "cats eat fish", "cls", normalize=False), atol=1e-5)
    plain = make_embedder(load(profile_text(tmp_path / "models"))).embed_batch(["cats eat fish"]).vectors[0]
    np.testing.assert_allclose(plain, np_embed(tiny, "cats eat fish", "mean"), atol=1e-5)  # the defaults: mean, normalised


def test_the_folder_wins_over_the_profile_and_max_tokens_only_lowers(tmp_path: Path) -> None:
    from rag.providers import make_embedder

    tiny = embed_folder(tmp_path / "models", pooling="mean", **{"sentence_bert_config.json": {"max_seq_length": 4}})
    provider = "    pooling: cls\n    max_tokens: 64\n"
    embedder = make_embedder(load(profile_text(tmp_path / "models", provider=provider)))
    result = embedder.embed_batch(["the sky is blue and the grass is green"])
    assert result.usage.input_tokens == 4  # [CLS] the sky [SEP]: the folder's 4, not the profile's 64
    ids = encode("the sky")[0]
    want = tiny.states(ids, [0] * len(ids)).mean(axis=0)
    np.testing.assert_allclose(result.vectors[0], want / np.linalg.norm(want), atol=1e-5)
    lowered = make_embedder(load(profile_text(tmp_path / "models", provider="    max_tokens: 3\n"))).embed_batch(["the sky is blue"])
    assert lowered.usage.input_tokens == 3


def test_folder_prompts_become_the_prefixes_unless_the_profile_sets_them(tmp_path: Path) -> None:
    from rag.providers import make_embedder

    prompts = {"prompts": {"query": "query: ", "document": "passage: "}, "default_prompt_name": None}
    embed_folder(tmp_path / "models", **{"config_sentence_transformers.json": prompts})
    profile = load(profile_text(tmp_path / "models"))
    make_embedder(profile)
    assert (profile.embedding.query_prefix, profile.embedding.document_prefix) == ("query: ", "passage: ")
    own = load(profile_text(tmp_path / "models", extra='  query_prefix: ""\n'))
    make_embedder(own)
    assert (own.embedding.query_prefix, own.embedding.document_prefix) == ("", "passage: ")


def test_a_graph_named_in_the_model_picks_one_of_several(tmp_path: Path) -> None:
    from rag.errors import ConfigError
    from rag.providers import make_embedder

    models = tmp_path / "models"
    embed_folder(models, graph_name="onnx/model_a.onnx", seed=1)
    tiny_b = tiny_weights(5)
    onnx.save(tiny_graph(tiny_b), str(models / "tiny-embed" / "onnx" / "model_b.onnx"))
    with pytest.raises(
        ConfigError,
        match=r"several graphs in .*tiny-embed \(onnx/model_a.onnx, onnx/model_b.onnx\); name one, e.g. mine/tiny-embed/onnx/model_a.onnx$",
    ):
        make_embedder(load(profile_text(models)))
    picked = make_embedder(load(profile_text(models, embed="tiny-embed/onnx/model_b.onnx")))
    np.testing.assert_allclose(picked.embed_batch(["dogs eat bones"]).vectors[0], np_embed(tiny_b, "dogs eat bones"), atol=1e-5)


# --------------------------------------------------------------------------- cross-encoder folders


@pytest.mark.parametrize("labels", [1, 2])
def test_cross_encoder_rerank_order_and_scores_match_numpy(tmp_path: Path, labels: int) -> None:
    from rag.providers import make_reranker

    tiny = cross_folder(tmp_path / "models", labels=labels)
    reranker = make_reranker(load(profile_text(tmp_path / "models", embed=None, rerank="tiny-cross")))
    assert reranker is not None
    docs = ["cats eat fish", "the sky is blue", "dogs eat bones", "rain falls from clouds", "green grass"]
    result = reranker.rerank("what do cats eat", docs, top_n=4)
    want = [np_relevance(tiny, "what do cats eat", d) for d in docs]
    order = sorted(range(len(docs)), key=lambda i: -want[i])[:4]
    assert [h.index for h in result.hits] == order
    np.testing.assert_allclose([h.score for h in result.hits], [want[i] for i in order], atol=1e-5)
    assert all(0 < h.score < 1 for h in result.hits) and result.model == "mine/tiny-cross"


def test_rag_rerank_with_a_cross_encoder_folder(tmp_path: Path) -> None:
    tiny = cross_folder(tmp_path / "models")
    write(tmp_path / "rag.yaml", profile_text(tmp_path / "models", embed=None, rerank="tiny-cross"))
    files = [write(tmp_path / f"{i}.txt", text) for i, text in enumerate(["the sky is blue", "cats eat fish", "rain falls from clouds"])]
    result = rag("rerank", "what do cats eat", *map(str, files), "--json", cwd=tmp_path)
    assert result.code == 0, result.err
    answer = result.json()
    want = [np_relevance(tiny, "what do cats eat", f.read_text()) for f in files]
    assert [r["index"] for r in answer["results"]] == sorted(range(3), key=lambda i: -want[i])
    assert answer["model"] == "mine/tiny-cross"


# --------------------------------------------------------------------------- index, query, the model record


def test_index_and_query_with_a_folder_model_and_the_record_it_leaves(tmp_path: Path) -> None:
    from rag.chunking import context_text

    models = tmp_path / "models"
    tiny = embed_folder(models, **{"config_sentence_transformers.json": {"prompts": {"query": "query: ", "passage": "passage: "}}})
    write(tmp_path / "rag.yaml", profile_text(models))
    docs = tmp_path / "docs"
    for name, text in {
        "a.txt": "cats eat fish",
        "b.txt": "the sky is blue",
        "c.txt": "rain falls from clouds",
        "d.txt": "dogs eat bones",
    }.items():
        write(docs / name, text + "\n")
    first = rag("index", str(docs), "--json", cwd=tmp_path)
    assert first.code == 0, first.err
    status = rag("status", "--json", cwd=tmp_path).json()["embedding"]
    assert status["model"] == "mine/tiny-embed" and status["dimensions"] == DIM
    assert re.fullmatch(r"onnx-[0-9a-f]{12}", status["version"]) and status["document_prefix"] == "passage: "

    hits = rag("query", "what do cats eat", "--mode", "dense", "--json", cwd=tmp_path).json()["hits"]
    q = np_embed(tiny, "query: what do cats eat")
    want = {h["source"]: float(q @ np_embed(tiny, "passage: " + context_text(h["title"], h["heading"], h["text"]))) for h in hits}
    assert [h["source"] for h in hits] == sorted(want, key=lambda s: -want[s])
    np.testing.assert_allclose([h["score"] for h in hits], [want[h["source"]] for h in hits], atol=1e-4)

    onnx.save(tiny_graph(tiny_weights(9)), str(models / "tiny-embed" / "model.onnx"))  # the folder changes
    refused = rag("query", "what do cats eat", "--json", cwd=tmp_path)
    assert refused.code == 4
    assert re.fullmatch(
        rf"error: the index at .+ was built with mine/tiny-embed version {status['version']}, but that model is now version "
        r"onnx-[0-9a-f]{12} and gives other vectors; re-index with: rag index --rebuild PATH\n",
        refused.err,
    )
    assert rag("index", str(docs), "--rebuild", "--json", cwd=tmp_path).code == 0
    assert rag("query", "what do cats eat", "--json", cwd=tmp_path).code == 0


def test_an_index_built_by_the_fp32_graph_is_refused_with_the_rebuild_command(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs / "a.md", "# Cats\n\nCats eat fish.\n")
    assert rag("index", str(docs), cwd=tmp_path).code == 0
    meta_path = next((tmp_path / ".rag").glob("*.meta.json"))
    meta = json.loads(meta_path.read_text())
    assert meta["embedding"]["version"].startswith("onnx-int8-") and "+fused" in meta["embedding"]["version"]
    meta["embedding"]["version"] = "onnx-int8-1.0.0"  # what every index built before int8 kernels records
    meta_path.write_text(json.dumps(meta))
    result = rag("query", "what do cats eat", cwd=tmp_path)
    assert result.code == 4 and "version onnx-int8-1.0.0" in result.err and result.err.endswith("re-index with: rag index --rebuild PATH\n")
    assert rag("query", "cats", "--mode", "fts", cwd=tmp_path).code == 0  # full-text needs no model


# --------------------------------------------------------------------------- bad folders: one line each


def _error(tmp_path: Path, text: str, stage: str = "embed") -> str:
    write(tmp_path / "rag.yaml", text)
    write(tmp_path / "a.txt", "cats eat fish")
    args = ("index", str(tmp_path / "a.txt")) if stage == "embed" else ("rerank", "cats", str(tmp_path / "a.txt"))
    result = rag(*args, cwd=tmp_path)
    assert result.code == 3, result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    return result.err


def test_missing_folder_tokenizer_and_graph_are_one_line_each(tmp_path: Path) -> None:
    models = tmp_path / "models"
    err = _error(tmp_path, profile_text(tmp_path / "nowhere"))
    assert (
        err
        == f"error: mine/tiny-embed: the models folder {tmp_path / 'nowhere'} does not exist; point the provider's path at the folder holding your model folders\n"
    )
    embed_folder(models)
    err = _error(tmp_path, profile_text(models, embed="bge-small"))
    assert err == f"error: mine/bge-small: no model folder {models / 'bge-small'} (model folders under {models}: tiny-embed)\n"
    (models / "tiny-embed" / "tokenizer.json").unlink()
    assert "has no tokenizer.json; save it beside the model" in _error(tmp_path, profile_text(models))
    write_tokenizer(models / "tiny-embed")
    (models / "tiny-embed" / "model.onnx").unlink()
    assert "no .onnx file in" in _error(tmp_path, profile_text(models)) and "optimum-cli export onnx" in _error(
        tmp_path, profile_text(models)
    )


def test_graphs_with_the_wrong_outputs_are_one_line_each(tmp_path: Path) -> None:
    models = tmp_path / "models"
    embed_folder(models)
    cross_folder(models, labels=1)
    cross_folder(models, "three-labels", labels=3)
    assert "outputs logits [batch, 1]: a cross-encoder; name it as rerank.model" in _error(
        tmp_path, profile_text(models, embed="tiny-cross")
    )
    err = _error(tmp_path, profile_text(models, embed=None, rerank="tiny-embed"), stage="rerank")
    assert "(an embedding model: name it as embedding.model); a cross-encoder reranker needs logits [n, 1] or [n, 2]" in err
    err = _error(tmp_path, profile_text(models, embed=None, rerank="three-labels"), stage="rerank")
    assert "outputs logits [batch, 3]; a cross-encoder reranker needs logits [n, 1] or [n, 2]" in err
    odd = models / "odd"
    write_tokenizer(odd)
    model = tiny_graph(tiny_weights(3, labels=3), output="scores")
    onnx.save(model, str(odd / "model.onnx"))
    err = _error(tmp_path, profile_text(models, embed="odd"))
    assert (
        "outputs scores [batch, 3]; an embedding model needs last_hidden_state [batch, tokens, dim] or sentence_embedding [batch, dim]"
        in err
    )


def test_an_fp16_graph_is_one_line(tmp_path: Path) -> None:
    models = tmp_path / "models"
    embed_folder(models)
    onnx.save(tiny_graph(tiny_weights(1), fp16=True), str(models / "tiny-embed" / "model.onnx"))
    err = _error(tmp_path, profile_text(models))
    assert (
        err
        == "error: mine/tiny-embed: model.onnx is an fp16 graph; onnxruntime on CPU computes in fp32: use the folder's fp32 or int8 graph\n"
    )


def test_local_provider_keys_are_checked_in_the_profile(tmp_path: Path) -> None:
    from rag.errors import ConfigError

    with pytest.raises(ConfigError, match=r"<string>:\d+: 'providers.mine.pooling' must be one of mean, cls, last, max$"):
        load(profile_text(tmp_path, provider="    pooling: weighted\n"))
    with pytest.raises(ConfigError, match=r"'providers.gw.path' applies to kind local only$"):
        load("providers:\n  gw:\n    kind: openai\n    base_url: http://127.0.0.1:1\n    path: /models\n")


# --------------------------------------------------------------------------- rag serve


def test_serve_lists_and_serves_folder_models(tmp_path: Path, serve: Any) -> None:
    from rag.server import create_app

    models = tmp_path / "models"
    embedder, cross = embed_folder(models), cross_folder(models)
    url = serve(create_app(profile=load(profile_text(models, rerank="tiny-cross"))))
    listed = httpx.get(url + "/v1/models").json()["data"]
    assert [(m["id"], m["task"]) for m in listed] == [
        ("local/all-MiniLM-L6-v2", "embed"),
        ("local/minilm-cosine", "rerank"),
        ("mine/tiny-embed", "embed"),
        ("mine/tiny-cross", "rerank"),
    ]
    assert listed[2]["dimensions"] == DIM and listed[0]["dimensions"] == 384

    texts = ["cats eat fish", "the sky is blue"]
    body = httpx.post(url + "/v1/embeddings", json={"input": texts}, timeout=30).json()  # no model: the profile's
    assert body["model"] == "mine/tiny-embed"
    np.testing.assert_allclose([d["embedding"] for d in body["data"]], [np_embed(embedder, t) for t in texts], atol=1e-5)
    minilm = httpx.post(url + "/v1/embeddings", json={"input": texts, "model": "local/all-MiniLM-L6-v2"}, timeout=30).json()
    assert len(minilm["data"][0]["embedding"]) == 384

    docs = ["the sky is blue", "cats eat fish", "dogs eat bones"]
    ranked = httpx.post(url + "/v1/rerank", json={"query": "what do cats eat", "documents": docs, "model": "tiny-cross"}, timeout=30).json()
    want = [np_relevance(cross, "what do cats eat", d) for d in docs]
    assert [r["index"] for r in ranked["results"]] == sorted(range(3), key=lambda i: -want[i]) and ranked["model"] == "mine/tiny-cross"
    wrong = httpx.post(url + "/v1/rerank", json={"query": "q", "documents": ["d"], "model": "mine/tiny-embed"}, timeout=30)
    assert wrong.status_code == 400
    assert (
        wrong.json()["error"]["message"]
        == "model 'mine/tiny-embed' is not served here; this server serves local/minilm-cosine, mine/tiny-cross (see /v1/models)"
    )


def test_serve_command_names_the_folder_models(tmp_path: Path) -> None:
    models = tmp_path / "models"
    embed_folder(models)
    write(tmp_path / "rag.yaml", profile_text(models))
    proc = subprocess.Popen([sys.executable, "-m", "rag", "serve", "--port", "0"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.match(
            r"rag serve: (http://127\.0\.0\.1:\d+) \(models: local/all-MiniLM-L6-v2, local/minilm-cosine, mine/tiny-embed\); Ctrl-C stops",
            line,
        )
        assert match, line
        assert (
            httpx.post(match.group(1) + "/v1/embeddings", json={"input": "cats", "model": "mine/tiny-embed"}, timeout=30).status_code == 200
        )
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# --------------------------------------------------------------------------- the pure parts


def test_plan_batches_groups_by_tokens_shortest_first() -> None:
    from rag.providers.local.encoder import Batching, plan_batches

    lengths = [50, 3, 200, 4, 5, 100]
    assert plan_batches(lengths, Batching(max_batch=1)) == [[1], [3], [4], [0], [5], [2]]
    assert plan_batches(lengths, Batching(max_batch=64, token_budget=200)) == [[1, 3, 4, 0], [5], [2]]
    assert plan_batches(lengths, Batching(max_batch=2, token_budget=10**6)) == [[1, 3], [4, 0], [5, 2]]
    assert plan_batches([], Batching()) == []


def test_relevance_is_the_sigmoid_of_the_logit_or_of_the_margin() -> None:
    from rag.providers.local.encoder import relevance

    np.testing.assert_allclose(relevance(np.array([[0.0], [2.0]])), [0.5, 1 / (1 + np.exp(-2.0))])
    np.testing.assert_allclose(relevance(np.array([[1.0, 3.0], [2.0, 2.0]])), [1 / (1 + np.exp(-2.0)), 0.5])


# --------------------------------------------------------------------------- the int8 rewrite


def int8_graph(seed: int = 0) -> tuple[Any, dict[str, np.ndarray]]:
    """A graph in the packaged model's style: int8 weights rebuilt as Cast(Q) * scale, for a lookup and two products."""
    rng = np.random.default_rng(seed)
    q_emb = rng.integers(-127, 128, size=(len(VOCAB), DIM), dtype=np.int8)
    s_emb = rng.uniform(0.001, 0.02, size=(len(VOCAB), 1)).astype(np.float32)
    q_w = [rng.integers(-127, 128, size=(DIM, DIM), dtype=np.int8) for _ in range(2)]
    s_w = [rng.uniform(0.001, 0.02, size=(1, DIM)).astype(np.float32) for _ in range(2)]
    weights = {"q_emb": q_emb, "s_emb": s_emb, "q_w0": q_w[0], "s_w0": s_w[0], "q_w1": q_w[1], "s_w1": s_w[1]}
    nodes = []
    for q, s, out in [("q_emb", "s_emb", "emb"), ("q_w0", "s_w0", "w0"), ("q_w1", "s_w1", "w1")]:
        nodes += [helper.make_node("Cast", [q], [f"{out}_f"], to=TensorProto.FLOAT), helper.make_node("Mul", [f"{out}_f", s], [out])]
    nodes += [
        helper.make_node("Gather", ["emb", "input_ids"], ["x"]),
        helper.make_node("MatMul", ["x", "w0"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w1"], ["last_hidden_state"]),
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    graph = helper.make_graph(
        nodes,
        "int8",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "t"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["b", "t", DIM])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, weights


def test_the_rewrite_runs_products_in_int8_and_keeps_lookups_exact() -> None:
    import onnxruntime as ort

    from rag.providers.local.quantize import int8_matmuls

    model, w = int8_graph()
    rewritten, products = int8_matmuls(model.SerializeToString())
    assert products == 2
    new = onnx.load_from_string(rewritten)
    onnx.checker.check_model(new, full_check=True)  # valid, and still in topological order
    ops = [n.op_type for n in new.graph.node]
    assert ops.count("DynamicQuantizeMatMul") == 2 and "MatMul" not in ops
    stored = {t.name: numpy_helper.to_array(t) for t in new.graph.initializer}
    assert set(stored) >= {"q_emb", "q_w0__uint8", "q_w1__uint8"}  # the weights themselves, no fp32 copy
    assert all(a.dtype != np.float32 or name.startswith("s_") for name, a in stored.items())
    np.testing.assert_array_equal(stored["q_w0__uint8"].astype(np.int16) - 128, w["q_w0"])  # the same values, shifted
    assert (stored["q_w0__uint8__zero"] == 128).all() and stored["q_w0__uint8__zero"].shape == (DIM,)

    ids = np.array([[4, 7, 9, 3], [2, 8, 1, 0]], dtype=np.int64)
    run = lambda b: ort.InferenceSession(b, providers=["CPUExecutionProvider"]).run(None, {"input_ids": ids})[0]  # noqa: E731
    x = (w["q_emb"].astype(np.float32) * w["s_emb"])[ids]
    r = np.maximum(x @ (w["q_w0"].astype(np.float32) * w["s_w0"]), 0)
    want = r @ (w["q_w1"].astype(np.float32) * w["s_w1"])
    np.testing.assert_allclose(run(model.SerializeToString()), want, rtol=1e-4, atol=1e-5)
    got = run(rewritten)
    assert np.abs(got - want).max() < 0.02 * np.abs(want).max()  # activations quantized per call: close, not equal
    signed = run(int8_matmuls(model.SerializeToString(), weights="int8")[0])
    assert np.abs(signed - want).max() < 0.2 * np.abs(want).max()  # int8 weights: AVX2 may saturate pair sums
    lookup_only = onnx.load_from_string(rewritten)
    assert [n.op_type for n in lookup_only.graph.node][:4] == ["Gather", "Gather", "Cast", "Mul"]


def test_a_graph_without_int8_weights_is_not_rewritten() -> None:
    from rag.providers.local.quantize import NotQuantizable, int8_matmuls

    with pytest.raises(NotQuantizable):
        int8_matmuls(tiny_graph(tiny_weights(1)).SerializeToString())


# --------------------------------------------------------------------------- the embedded model's cache


def _vectors_in_a_process(cache: Path) -> subprocess.Popen[str]:
    code = "import json; from rag.providers.local import shared_model as m; print(json.dumps(m().encode(['cats eat fish'])[0][0].tolist()))"
    env = {**os.environ, "RAG_CACHE_DIR": str(cache)}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_deriving_the_int8_graph_at_once_agree_and_leave_one_file(tmp_path: Path) -> None:
    procs = [_vectors_in_a_process(tmp_path / "cache") for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert outs[0][0] == outs[1][0] and outs[0][1] == outs[1][1] == ""
    files = sorted(p.name for p in (tmp_path / "cache" / "models").iterdir() if p.is_file())
    assert len(files) == 1 and re.fullmatch(r"minilm-fused1-[0-9a-f]{16}\.onnx", files[0])


def test_cache_hit_damaged_entry_and_unwritable_cache_give_the_same_vectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from rag.providers.local.minilm import MiniLM, cached_graph_path, packaged_graph

    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    stale = write(tmp_path / "cache" / "models" / ".minilm-int8-x.onnx.123.abcd.tmp", "left by a killed process")
    live = write(tmp_path / "cache" / "models" / ".minilm-int8-x.onnx.456.ef01.tmp", "another process writing now")
    os.utime(stale, (stale.stat().st_atime - 7200, stale.stat().st_mtime - 7200))
    first = MiniLM()
    assert not stale.exists() and live.exists()
    entry = cached_graph_path(packaged_graph()[0])
    stamp = entry.stat().st_mtime_ns
    texts = ["cats eat fish", "What happens if I press Ctrl-C while indexing?"]
    want = first.encode(texts)[0]
    np.testing.assert_array_equal(MiniLM().encode(texts)[0], want)  # loaded from the cache, not derived again
    assert entry.stat().st_mtime_ns == stamp and first.version == MiniLM().version

    entry.write_bytes(b"not a graph")
    np.testing.assert_array_equal(MiniLM().encode(texts)[0], want)  # derived again, and the entry repaired
    assert entry.stat().st_size > 1_000_000

    write(tmp_path / "file", "a file where the cache folder would be")
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "file" / "cache"))
    with caplog.at_level(logging.WARNING, logger="rag.providers"):
        unwritable = MiniLM()
    np.testing.assert_array_equal(unwritable.encode(texts)[0], want)
    assert unwritable.version == first.version
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot cache the int8 model graph in {tmp_path / 'file' / 'cache' / 'models'} (Not a directory); it is derived again at each start"
    ]
