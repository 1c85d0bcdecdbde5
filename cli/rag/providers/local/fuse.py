"""The packaged BERT encoder rebuilt on onnxruntime's fused int8 kernels.

The packaged MiniLM is an exported graph: every attention block is some thirty
small nodes (reshapes, transposes, two products, a softmax, NaN guards), GELU is
spelt out with ``Erf``, and onnxruntime's optimiser matches none of it to its
fused kernels. :func:`fused_bert` reads the weights out of that graph and writes
the same network again with onnxruntime's own operators:

- ``QAttention``: the query, key and value products as one integer product over
  the three weight matrices side by side, then attention in one kernel;
- ``DynamicQuantizeMatMul`` for the other products;
- ``BiasGelu``. Residual, bias and layer norm stay three plain nodes:
  onnxruntime runs them faster than its fused ``SkipLayerNormalization``.

Weights are the packaged int8 values and scales, nothing re-rounded, stored
shifted to uint8 (``Q + 128``, zero point 128) as :mod:`.quantize` does: uint8
x uint8 products are exact integer arithmetic on every CPU. uint8 x int8 ones
would run faster on AVX2 but saturate there; int8 weights cut to 7 bits to
avoid that ran 1.23x faster but lost 0.0057 of SciFact train nDCG@10 against
the packaged graph (docs/local-models.md), beyond the 0.005 the quality gate
allows.

Embedding tables stay as packaged: int8 rows looked up, then scaled.

Anything in the graph that does not match this shape raises
:class:`~rag.providers.local.quantize.NotQuantizable`, and the caller falls back
to the plain rewrite of :mod:`.quantize`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag.providers.local.quantize import (
    _FLOAT,
    _INT8,
    _INT32,
    _INT64,
    _MS_DOMAIN,
    _UINT8,
    NotQuantizable,
    _messages,
    import_ms_domain,
    shifted_uint8,
    tensor_values,
)

FUSE_VERSION = "1"  # bump when the graph this writes changes
DERIVED_LEVEL = "basic"  # onnxruntime's optimisation for the graph: the fusions that help are made here
_ATTR_FLOAT, _ATTR_INT = 1, 2
_LAYER = re.compile(r"^(?P<prefix>.*)encoder\.layer\.(?P<n>\d+)\.")


@dataclass
class _Int8:
    """A weight as packaged: int8 values and fp32 scales (per column for products, per row for tables)."""

    q: np.ndarray
    scale: np.ndarray


def fused_bert(model_bytes: bytes) -> bytes:
    """The model rebuilt on fused int8 kernels; raises ``NotQuantizable`` when it is not a BERT encoder as expected."""
    model = _messages()["ModelProto"]()
    model.ParseFromString(model_bytes)
    source = _Source(model.graph)
    inputs = {"input_ids", "attention_mask", "token_type_ids"}
    if not inputs <= source.graph_inputs or len(source.graph_outputs) != 1:
        raise NotQuantizable("not a BERT encoder with input_ids, attention_mask and token_type_ids")
    layers = source.layers()
    build = _Builder(source.graph_outputs[0])
    x = build.embeddings(source, layers[0].split("encoder.layer.")[0] + "embeddings.")
    mask = build.lengths()
    heads = source.heads(layers[0])
    for i, prefix in enumerate(layers):
        x = build.layer(source, prefix, x, mask, heads, last=i == len(layers) - 1)
    graph = model.graph
    del graph.node[:]
    del graph.initializer[:]
    del graph.value_info[:]  # shapes of the exported graph's intermediate values, none of which remain
    graph.node.extend(build.nodes)
    graph.initializer.extend(build.inits)
    import_ms_domain(model)
    return bytes(model.SerializeToString())


class _Source:
    """Weights and settings read out of the exported graph."""

    def __init__(self, graph: Any) -> None:
        self.inits = {t.name: t for t in graph.initializer}
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list[Any]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.graph_inputs = {i.name for i in graph.input}
        self.graph_outputs = [o.name for o in graph.output]
        norms = [a.f for node in graph.node if node.op_type == "LayerNormalization" for a in node.attribute if a.name == "epsilon"]
        self.epsilon = float(norms[0]) if norms else 1e-12  # the exporter writes one epsilon for every layer norm

    def layers(self) -> list[str]:
        """``prefix + "encoder.layer.N."`` for each layer, in order."""
        found = {(int(m["n"]), m["prefix"]) for name in self.inits if (m := _LAYER.match(name))}
        if not found or len({prefix for _, prefix in found}) != 1 or sorted(n for n, _ in found) != list(range(len(found))):
            raise NotQuantizable("no encoder layers named *.encoder.layer.N.*, numbered from 0")
        return [f"{prefix}encoder.layer.{n}." for n, prefix in sorted(found)]  # each must have every weight (else refused)

    def array(self, name: str) -> np.ndarray:
        t = self.inits.get(name)
        if t is None:
            raise NotQuantizable(f"no initializer {name}")
        return tensor_values(t)

    def product(self, bias: str) -> tuple[_Int8, np.ndarray]:
        """The weight of the product whose result ``bias`` is added to, and the bias."""
        for node in self.consumers.get(bias, []):
            if node.op_type == "Add":
                other = node.input[0] if node.input[1] == bias else node.input[1]
                matmul = self.producer.get(other)
                if matmul is not None and matmul.op_type == "MatMul":
                    return self._scaled(matmul.input[1], per_row=False), self.array(bias)
        raise NotQuantizable(f"no MatMul + Add({bias})")

    def table(self, name: str) -> _Int8 | np.ndarray:
        """An embedding table: int8 rows and row scales, or a plain fp32 array."""
        if name in self.inits:
            return self.array(name)
        return self._scaled(name, per_row=True)

    def _scaled(self, name: str, *, per_row: bool) -> _Int8:
        mul = self.producer.get(name)
        cast = self.producer.get(mul.input[0]) if mul is not None and mul.op_type == "Mul" else None
        if cast is None or cast.op_type != "Cast" or cast.input[0] not in self.inits or mul is None:
            raise NotQuantizable(f"{name} is not Cast(int8) * scale")
        q, scale = self.inits[cast.input[0]], self.array(mul.input[1])
        if q.data_type != _INT8 or len(q.dims) != 2:
            raise NotQuantizable(f"{name} is not an int8 matrix")
        values = tensor_values(q)
        want = values.shape[0] if per_row else values.shape[1]
        if scale.size not in (1, want):
            raise NotQuantizable(f"{name}: scales fit neither rows nor columns")
        return _Int8(values, np.broadcast_to(scale.reshape(-1).astype(np.float32), (want,)).copy())

    def heads(self, layer: str) -> int:
        """Attention heads: the hidden size over the head size the query is reshaped to."""
        hidden = self.array(f"{layer}attention.self.query.bias").size
        add = next((n for n in self.consumers.get(f"{layer}attention.self.query.bias", []) if n.op_type == "Add"), None)
        reshape = next((n for n in self.consumers.get(add.output[0], []) if n.op_type == "Reshape"), None) if add else None
        if reshape is None:
            raise NotQuantizable("the query is not reshaped into heads")
        shape = reshape.input[1]
        parts: list[int] = []
        if shape in self.inits:
            parts = [int(v) for v in self.array(shape).reshape(-1)]
        elif (concat := self.producer.get(shape)) is not None and concat.op_type == "Concat":
            parts = [int(v) for name in concat.input if name in self.inits for v in self.array(name).reshape(-1)]
        head = parts[-1] if parts else 0
        if head <= 0 or hidden % head:
            raise NotQuantizable("cannot read the head size")
        return hidden // head


class _Builder:
    """Nodes and initializers of the new graph."""

    def __init__(self, output: str) -> None:
        m = _messages()
        self._node, self._tensor = m["NodeProto"], m["TensorProto"]
        self.output = output
        self.nodes: list[Any] = []
        self.inits: list[Any] = []

    def embeddings(self, source: _Source, prefix: str) -> str:
        words = self._lookup(source.table(f"{prefix}word_embeddings.weight"), "input_ids", "words")
        kinds = self._lookup(source.table(f"{prefix}token_type_embeddings.weight"), "token_type_ids", "kinds")
        positions_table = source.table(f"{prefix}position_embeddings.weight")
        rows = positions_table.q.shape[0] if isinstance(positions_table, _Int8) else positions_table.shape[0]
        self.node("Shape", ["input_ids"], ["tokens"], start=1, end=2)
        first = self.init("positions_all", np.arange(rows, dtype=np.int64).reshape(1, rows))
        self.node(
            "Slice",
            [first, self.init("zero_1d", np.zeros(1, np.int64)), "tokens", self.init("one_1d", np.ones(1, np.int64))],
            ["position_ids"],
        )
        positions = self._lookup(positions_table, "position_ids", "positions")
        self.node("Add", [words, kinds], ["words_kinds"])
        self.node("Add", ["words_kinds", positions], ["embedding_sum"])
        gamma = self.init("embed_gamma", source.array(f"{prefix}LayerNorm.weight"))
        beta = self.init("embed_beta", source.array(f"{prefix}LayerNorm.bias"))
        self.node("LayerNormalization", ["embedding_sum", gamma, beta], ["embedded"], axis=-1, epsilon=source.epsilon)
        return "embedded"

    def lengths(self) -> str:
        """Tokens per text (right padding), the mask form ``QAttention`` takes."""
        self.node("Cast", ["attention_mask"], ["mask32"], to=_INT32)
        self.node("ReduceSum", ["mask32", self.init("axis_1", np.ones(1, np.int64))], ["lengths"], keepdims=0)
        return "lengths"

    def layer(self, source: _Source, prefix: str, x: str, mask: str, heads: int, *, last: bool) -> str:
        n = prefix.rstrip(".").rsplit(".", 1)[-1]
        eps = source.epsilon
        qkv = [source.product(f"{prefix}attention.self.{p}.bias") for p in ("query", "key", "value")]
        together = _Int8(np.concatenate([w.q for w, _ in qkv], axis=1), np.concatenate([w.scale for w, _ in qkv]))
        weights = self._weights(together, f"qkv{n}")
        self.node("DynamicQuantizeLinear", [x], [f"{x}_u8", f"{x}_scale", f"{x}_zero"])
        bias = self.init(f"qkv{n}_bias", np.concatenate([b for _, b in qkv]))
        self.node(
            "QAttention",
            [f"{x}_u8", weights[0], bias, f"{x}_scale", weights[1], mask, f"{x}_zero", *weights[2:]],
            [f"attended{n}"],
            domain=_MS_DOMAIN,
            num_heads=heads,
        )
        out, out_bias = source.product(f"{prefix}attention.output.dense.bias")
        h = self._skip_norm(self._product(f"attended{n}", out, f"out{n}"), x, source, f"{prefix}attention.output.", out_bias, eps, f"h{n}")
        up, up_bias = source.product(f"{prefix}intermediate.dense.bias")
        self.node("BiasGelu", [self._product(h, up, f"up{n}"), self.init(f"up{n}_bias", up_bias)], [f"gelu{n}"], domain=_MS_DOMAIN)
        down, down_bias = source.product(f"{prefix}output.dense.bias")
        result = self.output if last else f"x{n}"
        return self._skip_norm(self._product(f"gelu{n}", down, f"down{n}"), h, source, f"{prefix}output.", down_bias, eps, result)

    def _skip_norm(self, value: str, skip: str, source: _Source, norm: str, bias: np.ndarray, eps: float, out: str) -> str:
        gamma = self.init(f"{out}_gamma", source.array(f"{norm}LayerNorm.weight"))
        beta = self.init(f"{out}_beta", source.array(f"{norm}LayerNorm.bias"))
        # Add, Add, LayerNormalization: onnxruntime's SkipLayerNormalization computes the same 3-5x slower on one
        # thread (0.56 against 0.12-0.16 ms at 232 x 384, onnxruntime 1.32), so the graph is optimised only at
        # DERIVED_LEVEL, below the extended level that would fuse them back
        self.node("Add", [value, self.init(f"{out}_bias", bias)], [f"{out}_biased"])
        self.node("Add", [f"{out}_biased", skip], [f"{out}_residual"])
        self.node("LayerNormalization", [f"{out}_residual", gamma, beta], [out], axis=-1, epsilon=eps)
        return out

    def _product(self, a: str, w: _Int8, name: str) -> str:
        self.node("DynamicQuantizeMatMul", [a, *self._weights(w, name)], [f"{name}_out"], domain=_MS_DOMAIN)
        return f"{name}_out"

    def _weights(self, w: _Int8, name: str) -> list[str]:
        """``[weights, scales, zero points]``: the packaged values shifted to uint8 (``Q + 128``), zero point 128."""
        zero = np.full(w.q.shape[1], 128, dtype=np.uint8)
        return [self.init(f"{name}_w", shifted_uint8(w.q)), self.init(f"{name}_scale", w.scale), self.init(f"{name}_zero", zero)]

    def _lookup(self, table: _Int8 | np.ndarray, ids: str, name: str) -> str:
        if not isinstance(table, _Int8):
            self.node("Gather", [self.init(f"{name}_table", table), ids], [name])
            return name
        self.node("Gather", [self.init(f"{name}_table", table.q), ids], [f"{name}_int8"])
        self.node("Cast", [f"{name}_int8"], [f"{name}_values"], to=_FLOAT)
        self.node("Gather", [self.init(f"{name}_rows", table.scale.reshape(-1, 1)), ids], [f"{name}_scales"])
        self.node("Mul", [f"{name}_values", f"{name}_scales"], [name])
        return name

    def init(self, name: str, value: np.ndarray) -> str:
        kinds = {np.dtype(np.float32): _FLOAT, np.dtype(np.int8): _INT8, np.dtype(np.int64): _INT64, np.dtype(np.uint8): _UINT8}
        array = np.ascontiguousarray(value)
        tensor = self._tensor(name=name, data_type=kinds[array.dtype], raw_data=array.tobytes())
        tensor.dims.extend(array.shape)
        self.inits.append(tensor)
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], domain: str = "", **attrs: float | int) -> None:
        node = self._node(op_type=op, domain=domain, name=f"{op}_{len(self.nodes)}")
        node.input.extend(inputs)
        node.output.extend(outputs)
        for key, value in attrs.items():
            a = node.attribute.add(name=key)
            if isinstance(value, float):
                a.f, a.type = value, _ATTR_FLOAT
            else:
                a.i, a.type = int(value), _ATTR_INT
        self.nodes.append(node)
