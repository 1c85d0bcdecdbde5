"""Real int8 kernels for a graph that stores int8 weights but computes in fp32.

The packaged MiniLM keeps each weight matrix as int8 ``Q`` with one fp32 scale
per output column ``S``, and rebuilds it at run time: ``MatMul(A, Cast(Q) * S)``.
onnxruntime folds that into an fp32 constant, so every product runs in fp32.
:func:`int8_matmuls` rewrites each such product into onnxruntime's
``DynamicQuantizeMatMul(A, Q, S)``: the activations are quantized per call to
uint8 and the product runs in integer kernels, over the very same weights and
scales (nothing is re-quantized, so no second rounding). This is the graph
``onnxruntime.quantization.quantize_dynamic(per_channel=True)`` produces once
onnxruntime has fused it, without the ``onnx`` package at run time.

By default the weights are stored shifted to uint8 with a zero point of 128
(``Q + 128``, exactly the same values). uint8 x int8 products on AVX2 go
through an instruction that saturates 16-bit pair sums (onnxruntime documents
this), so the result would depend on the CPU; uint8 x uint8 products are exact
integer arithmetic everywhere, for ~15 % of the speed (bench/model_bench.py).

Embedding tables (``Gather(Cast(Q) * S, ids)``, one scale per row) become
``Cast(Gather(Q, ids)) * Gather(S, ids)``: the same numbers, computed for the
looked-up rows only, so the 47 MB fp32 copy of the vocabulary is never made.

The ``onnx`` package is not a dependency of rag; ``protobuf`` is (through
onnxruntime). :func:`_messages` declares the few fields of ``onnx.proto`` the
rewrite reads or writes; every other field passes through untouched as an
unknown field, so the rest of the model is preserved byte for byte.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Any

REWRITE_VERSION = "1"  # bump when the rewrite changes the graph it produces
_INT8 = 3  # onnx.TensorProto.INT8
_UINT8 = 2  # onnx.TensorProto.UINT8
_FLOAT = 1  # onnx.TensorProto.FLOAT
_INT32 = 6  # onnx.TensorProto.INT32
_INT64 = 7  # onnx.TensorProto.INT64
_FLOAT16 = 10  # onnx.TensorProto.FLOAT16
_MS_DOMAIN = "com.microsoft"


class NotQuantizable(ValueError):
    """The graph has no ``MatMul(A, Cast(int8) * scale)`` to rewrite."""


def int8_matmuls(model_bytes: bytes, weights: str = "uint8") -> tuple[bytes, int]:
    """The rewritten model and how many products now run in integer kernels; ``weights`` "uint8" or "int8"."""
    model = _messages()["ModelProto"]()
    model.ParseFromString(model_bytes)
    rewrite = _Rewrite(model.graph, unsigned=weights == "uint8")
    products = rewrite.products()
    if not products:
        raise NotQuantizable("no MatMul over int8 weights (Cast(int8) * scale) in this graph")
    rewrite.lookups()
    rewrite.finish()
    import_ms_domain(model)
    return model.SerializeToString(), products


def import_ms_domain(model: Any) -> None:
    """Declare onnxruntime's operator domain (``com.microsoft``) in ``model``, once."""
    if not any(o.domain == _MS_DOMAIN for o in model.opset_import):
        opset = model.opset_import.add()
        opset.domain, opset.version = _MS_DOMAIN, 1


def shifted_uint8(q: Any) -> Any:
    """int8 weights as uint8 ``Q + 128`` (read with a zero point of 128: the very same values)."""
    import numpy as np

    return (np.asarray(q, dtype=np.int8).astype(np.int16) + 128).astype(np.uint8)


def tensor_values(t: Any) -> Any:
    """A ``TensorProto``'s values as a numpy array of its shape (raw bytes or the typed fields)."""
    import numpy as np

    kinds = {_FLOAT: np.float32, _INT8: np.int8, _UINT8: np.uint8, _INT32: np.int32, _INT64: np.int64}
    if t.data_type not in kinds:
        raise NotQuantizable(f"{t.name}: unexpected tensor type {t.data_type}")
    dtype = kinds[t.data_type]
    if t.raw_data:
        values = np.frombuffer(t.raw_data, dtype=dtype)
    else:  # int8, uint8 and int32 values are stored in int32_data
        values = np.array(list(t.int32_data) or list(t.float_data) or list(t.int64_data), dtype=dtype)
    if values.size != _numel(t):
        raise NotQuantizable(f"{t.name}: stored values do not fill its shape")
    return values.reshape([int(d) for d in t.dims])


def has_fp16_weights(model_bytes: bytes) -> bool:
    """Whether a graph keeps float16 weights (onnxruntime's CPU kernels are fp32: such graphs fail or crawl)."""
    model = _messages()["ModelProto"]()
    try:
        model.ParseFromString(model_bytes)
    except Exception:  # not a model at all: onnxruntime's own message says so
        return False
    return any(t.data_type == _FLOAT16 for t in model.graph.initializer)


class _Rewrite:
    def __init__(self, graph: Any, *, unsigned: bool) -> None:
        self.graph = graph
        self.unsigned = unsigned
        self.inits = {t.name: t for t in graph.initializer}
        self.producer = {out: node for node in graph.node for out in node.output}
        self.uses = Counter(name for node in graph.node for name in node.input)
        self.dropped: set[int] = set()  # ids of nodes to remove
        self.after: dict[int, list[Any]] = {}  # nodes to place right after a rewritten lookup

    def products(self) -> int:
        """``MatMul(A, Cast(Q) * S)`` -> ``DynamicQuantizeMatMul(A, Q, S)``."""
        count = 0
        for node in self.graph.node:
            if node.op_type != "MatMul" or node.domain not in ("", "ai.onnx"):
                continue
            weight = self._int8_weight(node.input[1], per_row=False)
            if weight is None:
                continue
            q_name, scale, cast, mul = weight
            column_scale = self.graph.initializer.add()
            column_scale.CopyFrom(scale)
            column_scale.name = f"{scale.name}__columns"
            del column_scale.dims[:]
            if _numel(scale) > 1:  # one value per column is a 1-D [N]; a single value stays a scalar
                column_scale.dims.append(_numel(scale))
            a = node.input[0]
            node.op_type, node.domain = "DynamicQuantizeMatMul", _MS_DOMAIN
            del node.input[:]
            node.input.extend([a, q_name, column_scale.name])
            if self.unsigned:
                node.input[1], zero_point = self._shifted(self.inits[q_name], _numel(scale))
                node.input.append(zero_point)
            self.dropped.update((id(cast), id(mul)))
            count += 1
        return count

    def _shifted(self, q: Any, columns: int) -> tuple[str, str]:
        """``Q + 128`` as uint8 (shared by products over the same weights) and a zero point of 128 per column."""

        name = f"{q.name}__uint8"
        if name not in self.inits:
            shifted = self.graph.initializer.add(name=name, data_type=_UINT8, raw_data=shifted_uint8(tensor_values(q)).tobytes())
            shifted.dims.extend(q.dims)
            zero = self.graph.initializer.add(name=f"{name}__zero", data_type=_UINT8, raw_data=bytes([128]) * columns)
            if columns > 1:
                zero.dims.append(columns)
            self.inits[name] = shifted
        return name, f"{name}__zero"

    def lookups(self) -> None:
        """``Gather(Cast(Q) * S, ids)`` -> ``Cast(Gather(Q, ids)) * Gather(S, ids)``, placed where the lookup was."""
        for node in list(self.graph.node):
            if node.op_type != "Gather" or node.domain not in ("", "ai.onnx") or any(a.name == "axis" and a.i != 0 for a in node.attribute):
                continue
            weight = self._int8_weight(node.input[0], per_row=True)
            if weight is None:
                continue
            q_name, scale, cast, mul = weight
            looked_up = node.output[0]
            node.input[0] = q_name
            node.output[0] = f"{looked_up}__int8"
            cast.input[0] = node.output[0]
            placed = [cast, mul]
            if _numel(scale) > 1:
                rows = self.graph.node.add()
                rows.CopyFrom(node)  # the same axis and indices, over the scales
                rows.name = f"{node.name or looked_up}__scale_rows"
                rows.input[0] = scale.name
                rows.output[0] = f"{looked_up}__scale_rows"
                mul.input[1] = rows.output[0]
                placed.insert(0, rows)
            mul.output[0] = looked_up
            self.after[id(node)] = placed
            self.dropped.update(id(n) for n in placed)  # removed from where they were, placed after the lookup

    def finish(self) -> None:
        """Drop the rebuilt weights' nodes and initializers; keep the nodes in topological order."""
        order: list[Any] = []
        for node in self.graph.node:
            if id(node) not in self.dropped:
                order.append(node)
            order.extend(self.after.get(id(node), []))
        del self.graph.node[:]
        self.graph.node.extend(order)
        used = {name for n in self.graph.node for name in n.input}
        live = [t for t in self.graph.initializer if t.name in used]
        del self.graph.initializer[:]
        self.graph.initializer.extend(live)

    def _int8_weight(self, name: str, *, per_row: bool) -> tuple[str, Any, Any, Any] | None:
        """``(Q, S, cast, mul)`` when ``name`` is ``Cast(Q) * S`` used only here: Q an int8 matrix, S fp32
        per column (products) or per row (lookups), or one value."""
        mul = self.producer.get(name)
        if mul is None or mul.op_type != "Mul" or self.uses[name] != 1:
            return None
        cast = self.producer.get(mul.input[0])
        scale = self.inits.get(mul.input[1])
        if cast is None or cast.op_type != "Cast" or scale is None or self.uses[mul.input[0]] != 1:
            return None
        q = self.inits.get(cast.input[0])
        if q is None or q.data_type != _INT8 or len(q.dims) != 2 or scale.data_type != _FLOAT:
            return None
        n = _numel(scale)
        if n == 1:
            return q.name, scale, cast, mul
        dims = list(scale.dims)
        fits = dims == [q.dims[0], 1] if per_row else (n == q.dims[1] and all(d == 1 for d in dims[:-1]))
        return (q.name, scale, cast, mul) if fits else None


def _numel(tensor: Any) -> int:
    n = 1
    for d in tensor.dims:
        n *= int(d)
    return n


@lru_cache(maxsize=1)
def _messages() -> dict[str, Any]:
    """Message classes for the subset of ``onnx.proto`` (proto2, same field numbers) the rewrite touches."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FieldDescriptorProto
    rep, opt = f.LABEL_REPEATED, f.LABEL_OPTIONAL
    shapes: dict[str, list[tuple[str, int, int, int, str]]] = {
        "TensorProto": [
            ("dims", 1, rep, f.TYPE_INT64, ""),
            ("data_type", 2, opt, f.TYPE_INT32, ""),
            ("float_data", 4, rep, f.TYPE_FLOAT, ""),
            ("int32_data", 5, rep, f.TYPE_INT32, ""),
            ("int64_data", 7, rep, f.TYPE_INT64, ""),
            ("name", 8, opt, f.TYPE_STRING, ""),
            ("raw_data", 9, opt, f.TYPE_BYTES, ""),
        ],
        "AttributeProto": [
            ("name", 1, opt, f.TYPE_STRING, ""),
            ("f", 2, opt, f.TYPE_FLOAT, ""),
            ("i", 3, opt, f.TYPE_INT64, ""),
            ("type", 20, opt, f.TYPE_INT32, ""),  # an enum in onnx.proto: the same varint on the wire
        ],
        "ValueInfoProto": [("name", 1, opt, f.TYPE_STRING, "")],
        "NodeProto": [
            ("input", 1, rep, f.TYPE_STRING, ""),
            ("output", 2, rep, f.TYPE_STRING, ""),
            ("name", 3, opt, f.TYPE_STRING, ""),
            ("op_type", 4, opt, f.TYPE_STRING, ""),
            ("attribute", 5, rep, f.TYPE_MESSAGE, "AttributeProto"),
            ("domain", 7, opt, f.TYPE_STRING, ""),
        ],
        "GraphProto": [
            ("node", 1, rep, f.TYPE_MESSAGE, "NodeProto"),
            ("initializer", 5, rep, f.TYPE_MESSAGE, "TensorProto"),
            ("input", 11, rep, f.TYPE_MESSAGE, "ValueInfoProto"),
            ("output", 12, rep, f.TYPE_MESSAGE, "ValueInfoProto"),
            ("value_info", 13, rep, f.TYPE_MESSAGE, "ValueInfoProto"),
        ],
        "OperatorSetIdProto": [("domain", 1, opt, f.TYPE_STRING, ""), ("version", 2, opt, f.TYPE_INT64, "")],
        "ModelProto": [("graph", 7, opt, f.TYPE_MESSAGE, "GraphProto"), ("opset_import", 8, rep, f.TYPE_MESSAGE, "OperatorSetIdProto")],
    }
    file = descriptor_pb2.FileDescriptorProto(name="rag_onnx_subset.proto", package="rag_onnx_subset", syntax="proto2")
    for message, fields in shapes.items():
        m = file.message_type.add(name=message)
        for field_name, number, label, kind, type_name in fields:
            field = m.field.add(name=field_name, number=number, label=label, type=kind)
            if type_name:
                field.type_name = f".rag_onnx_subset.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"rag_onnx_subset.{name}")) for name in shapes}
