"""The fused int8 rebuild of a BERT encoder (rag.providers.local.fuse).

A tiny BERT is written here with the ``onnx`` helper API in the shape the
packaged MiniLM has: int8 weights rebuilt as ``Cast(Q) * scale``, attention
spelt out in reshapes, transposes, products and a softmax, GELU through ``Erf``.
numpy computes the same network independently; the rebuilt graph must agree
with it, run on onnxruntime's fused kernels, and honour right padding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

VOCAB, HIDDEN, HEADS, INNER, LAYERS, POSITIONS = 40, 16, 4, 32, 2, 24
P = "inner."


def _int8(rng: np.random.Generator, shape: tuple[int, int], per_row: bool = False) -> tuple[np.ndarray, np.ndarray]:
    q = rng.integers(-127, 128, size=shape).astype(np.int8)
    scale = rng.uniform(0.002, 0.02, size=(shape[0], 1) if per_row else (shape[1],)).astype(np.float32)
    return q, scale


def tiny_bert(seed: int = 0) -> tuple[Any, dict[str, np.ndarray]]:
    """An exported-style BERT graph and its weights (dequantized, for numpy)."""
    rng = np.random.default_rng(seed)
    inits: list[Any] = []
    nodes: list[Any] = []
    w: dict[str, np.ndarray] = {}

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    def scaled(name: str, shape: tuple[int, int], per_row: bool = False) -> str:
        q, s = _int8(rng, shape, per_row)
        w[name] = q.astype(np.float32) * s
        nodes.append(helper.make_node("Cast", [const(f"{name}_q", q)], [f"{name}_f"], to=TensorProto.FLOAT))
        nodes.append(helper.make_node("Mul", [f"{name}_f", const(f"{name}_scale", s)], [name]))
        return name

    def vector(name: str, size: int, around: float = 0.0) -> str:
        w[name] = (around + rng.normal(size=size) * 0.1).astype(np.float32)
        return const(name, w[name])

    e = f"{P}embeddings."
    scaled(f"{e}word_embeddings.weight", (VOCAB, HIDDEN), per_row=True)
    scaled(f"{e}position_embeddings.weight", (POSITIONS, HIDDEN), per_row=True)
    w[f"{e}token_type_embeddings.weight"] = rng.normal(size=(2, HIDDEN)).astype(np.float32) * 0.1
    const(f"{e}token_type_embeddings.weight", w[f"{e}token_type_embeddings.weight"])
    const("position_ids", np.arange(POSITIONS, dtype=np.int64).reshape(1, POSITIONS))
    const("zero1", np.array([0], np.int64))
    const("one1", np.array([1], np.int64))
    nodes += [
        helper.make_node("Shape", ["input_ids"], ["seq"], start=1, end=2),
        helper.make_node("Slice", ["position_ids", "zero1", "seq", "one1"], ["pos_ids"]),
        helper.make_node("Gather", [f"{e}word_embeddings.weight", "input_ids"], ["we"]),
        helper.make_node("Gather", [f"{e}token_type_embeddings.weight", "token_type_ids"], ["te"]),
        helper.make_node("Gather", [f"{e}position_embeddings.weight", "pos_ids"], ["pe"]),
        helper.make_node("Add", ["we", "te"], ["wt"]),
        helper.make_node("Add", ["wt", "pe"], ["emb"]),
        helper.make_node(
            "LayerNormalization",
            ["emb", vector(f"{e}LayerNorm.weight", HIDDEN, 1.0), vector(f"{e}LayerNorm.bias", HIDDEN)],
            ["x0"],
            epsilon=1e-12,
        ),
        # mask bias: (1 - mask) * -10000, shaped [batch, 1, 1, tokens]
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Sub", [const("onef", np.array(1.0, np.float32)), "maskf"], ["masked"]),
        helper.make_node("Mul", ["masked", const("neg", np.array(-10000.0, np.float32))], ["mbias2"]),
        helper.make_node("Unsqueeze", ["mbias2", const("axes12", np.array([1, 2], np.int64))], ["mbias"]),
    ]
    const("heads_shape", np.array([0, 0, HEADS, HIDDEN // HEADS], np.int64))
    const("merge_shape", np.array([0, 0, HIDDEN], np.int64))
    const("score_scale", np.array(1 / np.sqrt(HIDDEN // HEADS), np.float32))

    def linear(name: str, src: str, shape: tuple[int, int], out: str) -> None:
        weight = scaled(f"{name}.weight_rebuilt", shape)
        w[f"{name}.weight"] = w.pop(weight)
        nodes.append(helper.make_node("MatMul", [src, weight], [f"{out}_mm"]))
        nodes.append(helper.make_node("Add", [f"{out}_mm", vector(f"{name}.bias", shape[1])], [out]))

    x = "x0"
    for n in range(LAYERS):
        a = f"{P}encoder.layer.{n}."

        for part in ("query", "key", "value"):
            linear(f"{a}attention.self.{part}", x, (HIDDEN, HIDDEN), f"{part}{n}")
            nodes.append(helper.make_node("Reshape", [f"{part}{n}", "heads_shape"], [f"{part}{n}_h"]))
        nodes += [
            helper.make_node("Transpose", [f"query{n}_h"], [f"q{n}"], perm=[0, 2, 1, 3]),
            helper.make_node("Transpose", [f"key{n}_h"], [f"k{n}"], perm=[0, 2, 3, 1]),
            helper.make_node("Transpose", [f"value{n}_h"], [f"v{n}"], perm=[0, 2, 1, 3]),
            helper.make_node("MatMul", [f"q{n}", f"k{n}"], [f"qk{n}"]),
            helper.make_node("Mul", [f"qk{n}", "score_scale"], [f"qks{n}"]),
            helper.make_node("Add", [f"qks{n}", "mbias"], [f"scores{n}"]),
            helper.make_node("Softmax", [f"scores{n}"], [f"probs{n}"], axis=-1),
            helper.make_node("MatMul", [f"probs{n}", f"v{n}"], [f"ctx{n}"]),
            helper.make_node("Transpose", [f"ctx{n}"], [f"ctxt{n}"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [f"ctxt{n}", "merge_shape"], [f"att{n}"]),
        ]
        linear(f"{a}attention.output.dense", f"att{n}", (HIDDEN, HIDDEN), f"ao{n}")
        nodes.append(helper.make_node("Add", [f"ao{n}", x], [f"res{n}"]))
        g, b = vector(f"{a}attention.output.LayerNorm.weight", HIDDEN, 1.0), vector(f"{a}attention.output.LayerNorm.bias", HIDDEN)
        nodes.append(helper.make_node("LayerNormalization", [f"res{n}", g, b], [f"h{n}"], epsilon=1e-12))
        linear(f"{a}intermediate.dense", f"h{n}", (HIDDEN, INNER), f"up{n}")
        nodes += [  # gelu(x) = x * 0.5 * (1 + erf(x / sqrt(2)))
            helper.make_node("Div", [f"up{n}", const(f"sqrt2_{n}", np.array(np.sqrt(2), np.float32))], [f"upd{n}"]),
            helper.make_node("Erf", [f"upd{n}"], [f"erf{n}"]),
            helper.make_node("Add", [f"erf{n}", const(f"one_{n}", np.array(1.0, np.float32))], [f"erf1{n}"]),
            helper.make_node("Mul", [f"up{n}", f"erf1{n}"], [f"gx{n}"]),
            helper.make_node("Mul", [f"gx{n}", const(f"half_{n}", np.array(0.5, np.float32))], [f"gelu{n}"]),
        ]
        linear(f"{a}output.dense", f"gelu{n}", (INNER, HIDDEN), f"down{n}")
        nodes.append(helper.make_node("Add", [f"down{n}", f"h{n}"], [f"res2{n}"]))
        out = "last_hidden_state" if n == LAYERS - 1 else f"x{n + 1}"
        g, b = vector(f"{a}output.LayerNorm.weight", HIDDEN, 1.0), vector(f"{a}output.LayerNorm.bias", HIDDEN)
        nodes.append(helper.make_node("LayerNormalization", [f"res2{n}", g, b], [out], epsilon=1e-12))
        x = out
    ints = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "tokens"]) for n in ("input_ids", "attention_mask", "token_type_ids")
    ]
    out_info = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "tokens", HIDDEN])
    model = helper.make_model(helper.make_graph(nodes, "tiny-bert", ints, [out_info], inits), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model, w


def numpy_bert(w: dict[str, np.ndarray], ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The same network in numpy, independently of either graph."""
    from math import erf

    def norm(v: np.ndarray, name: str) -> np.ndarray:
        mean, var = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
        return (v - mean) / np.sqrt(var + 1e-12) * w[f"{name}.weight"] + w[f"{name}.bias"]

    def dense(v: np.ndarray, name: str) -> np.ndarray:
        return v @ w[f"{name}.weight"] + w[f"{name}.bias"]

    e = f"{P}embeddings."
    tokens = ids.shape[1]
    x = w[f"{e}word_embeddings.weight"][ids] + w[f"{e}token_type_embeddings.weight"][np.zeros_like(ids)]
    x = norm(x + w[f"{e}position_embeddings.weight"][:tokens], f"{e}LayerNorm")
    d = HIDDEN // HEADS
    bias = ((1 - mask) * -10000.0)[:, None, None, :]
    gelu = np.vectorize(lambda v: v * 0.5 * (1 + erf(v / np.sqrt(2))))
    for n in range(LAYERS):
        a = f"{P}encoder.layer.{n}."
        q, k, v = (
            dense(x, f"{a}attention.self.{p}").reshape(*ids.shape, HEADS, d).transpose(0, 2, 1, 3) for p in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d) + bias
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        att = (probs @ v).transpose(0, 2, 1, 3).reshape(*ids.shape, HIDDEN)
        h = norm(dense(att, f"{a}attention.output.dense") + x, f"{a}attention.output.LayerNorm")
        x = norm(dense(gelu(dense(h, f"{a}intermediate.dense")), f"{a}output.dense") + h, f"{a}output.LayerNorm")
    return np.asarray(x, dtype=np.float32)


def _run(model_bytes: bytes, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return np.asarray(session.run(["last_hidden_state"], feed)[0])


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)))


def test_the_rebuilt_encoder_runs_fused_int8_kernels_and_computes_the_same_network() -> None:
    from rag.providers.local.fuse import fused_bert

    model, w = tiny_bert()
    fused = fused_bert(model.SerializeToString())
    rebuilt = onnx.load_from_string(fused)
    onnx.checker.check_model(rebuilt)
    ops = [n.op_type for n in rebuilt.graph.node]
    assert ops.count("QAttention") == LAYERS and ops.count("DynamicQuantizeMatMul") == 3 * LAYERS
    assert ops.count("BiasGelu") == LAYERS and ops.count("LayerNormalization") == 2 * LAYERS + 1
    assert not {"Softmax", "Erf", "Transpose", "MatMul", "SkipLayerNormalization"} & set(ops)
    stored = {t.name: numpy_helper.to_array(t) for t in rebuilt.graph.initializer}
    packaged = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    layer0 = [packaged[f"{P}encoder.layer.0.attention.self.{p}.weight_rebuilt_q"] for p in ("query", "key", "value")]
    qkv = stored["qkv0_w"]  # the packaged int8 values side by side, shifted to uint8: nothing re-rounded
    assert qkv.dtype == np.uint8 and (stored["qkv0_zero"] == 128).all()
    np.testing.assert_array_equal(qkv.astype(np.int16) - 128, np.concatenate(layer0, axis=1))
    assert not any(v.dtype == np.float32 and v.ndim == 2 and v.shape[0] in (HIDDEN, INNER) for v in stored.values())

    rng = np.random.default_rng(7)
    ids = rng.integers(0, VOCAB, size=(3, 11)).astype(np.int64)
    mask = np.ones_like(ids)
    want = numpy_bert(w, ids, mask)
    np.testing.assert_allclose(_run(model.SerializeToString(), ids, mask), want, rtol=1e-3, atol=1e-3)  # the test's own graph is right
    got = _run(fused, ids, mask)
    assert got.shape == want.shape
    # activations quantized per call: close, not equal (16 numbers a token: the noise shows)
    assert _cosines(got, want).mean() > 0.99 and _cosines(got, want).min() > 0.9


def test_right_padding_does_not_change_a_text_s_states() -> None:
    from rag.providers.local.fuse import fused_bert

    model, w = tiny_bert(seed=3)
    fused = fused_bert(model.SerializeToString())
    rng = np.random.default_rng(1)
    short = rng.integers(1, VOCAB, size=(1, 6)).astype(np.int64)
    long = rng.integers(1, VOCAB, size=(1, 10)).astype(np.int64)
    padded = np.concatenate([np.pad(short, ((0, 0), (0, 4))), long])
    mask = np.concatenate([np.pad(np.ones_like(short), ((0, 0), (0, 4))), np.ones_like(long)])
    together = _run(fused, padded, mask)
    alone = _run(fused, short, np.ones_like(short))
    want = numpy_bert(w, padded, mask)
    assert _cosines(together[0, :6], want[0, :6]).mean() > 0.99
    assert _cosines(together[0, :6], alone[0]).mean() > 0.99  # the padding is not attended to
    assert _cosines(together[1], want[1]).mean() > 0.99
    attended = numpy_bert(w, padded, np.ones_like(mask))  # what the short text's states would be with its padding seen
    assert _cosines(together[0, :6], attended[0, :6]).mean() < _cosines(together[0, :6], want[0, :6]).mean() - 0.01


def test_a_graph_that_is_not_a_bert_encoder_is_refused() -> None:
    from tests.test_local_models import tiny_graph, tiny_weights

    from rag.providers.local.fuse import fused_bert
    from rag.providers.local.quantize import NotQuantizable

    with pytest.raises(NotQuantizable):
        fused_bert(tiny_graph(tiny_weights(1)).SerializeToString())
    model, _ = tiny_bert()
    for t in model.graph.initializer:
        if t.name.endswith("layer.1.attention.self.query.bias"):
            t.name = "renamed"  # layer 1's weights can no longer be found: refused, not half-built
    with pytest.raises(NotQuantizable):
        fused_bert(model.SerializeToString())


def test_the_embedded_model_uses_the_fused_graph_and_agrees_with_the_packaged_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    from rag.providers.local.encoder import pool
    from rag.providers.local.minilm import MiniLM, cached_graph_path, packaged_graph

    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    model = MiniLM()
    assert model.version.endswith("+fused1")
    ops = {n.op_type for n in onnx.load(str(cached_graph_path(packaged_graph()[0]))).graph.node}
    assert {"QAttention", "DynamicQuantizeMatMul", "BiasGelu"} <= ops
    texts = ["cats eat fish", "The attention mask keeps padding out of the mean."]
    got = model.encode(texts)[0]
    packaged = ort.InferenceSession(str(packaged_graph()[0]), providers=["CPUExecutionProvider"])
    for text, vector in zip(texts, got, strict=True):
        ids = np.array([model.tokenizer.encode(text).ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        want = pool(packaged.run(["last_hidden_state"], feed)[0], feed["attention_mask"], "mean")[0]
        assert float(vector @ want / np.linalg.norm(want)) > 0.98


def test_a_derived_graph_that_computes_something_else_is_refused_before_it_is_cached() -> None:
    import onnxruntime as ort

    from rag.providers.local.fuse import fused_bert
    from rag.providers.local.minilm import DerivedGraphError, checked_against, packaged_graph

    source = packaged_graph()[0].read_bytes()
    right = fused_bert(source)
    checked_against(ort.InferenceSession(right, providers=["CPUExecutionProvider"]), source)  # the rebuild passes
    wrong = onnx.load_from_string(right)
    for node in wrong.graph.node:
        if node.op_type == "QAttention":
            next(a for a in node.attribute if a.name == "num_heads").i = 6  # a misread head count
    with pytest.raises(DerivedGraphError, match="differ from the packaged graph's"):
        checked_against(ort.InferenceSession(wrong.SerializeToString(), providers=["CPUExecutionProvider"]), source)
