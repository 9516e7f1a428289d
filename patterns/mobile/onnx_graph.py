"""The same model as an ONNX graph, written node by node from the trained parameters.

tf2onnx is not in the lock file (it pins an older protobuf/numpy than the project), and the model is
small: the graph below mirrors ``MobileModel.encode``/``logits`` op for op (slices, packed character
codes compared with constant vocabularies, one-hots, two dense layers). The parity report against the
TensorFlow graph is what proves the two are the same function.
"""

from __future__ import annotations

import numpy as np

from patterns.mobile.inputs import CODE_WIDTHS, INPUT_NAME, N_RAW, OUTPUT_NAME, vocabulary_codes
from patterns.mobile.model import CODE_OFFSETS

__all__ = ["build_onnx"]


def build_onnx(params: dict[str, np.ndarray], version: str, fingerprint: str) -> bytes:
    """Serialized ONNX model (opset 17): int32 ``raw [N, 13]`` -> float32 ``delay_probability [N, 1]``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from patterns.mobile.model import folded_w1

    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    counter = iter(range(10_000))

    def const(value: np.ndarray, name: str = "c") -> str:
        full = f"{name}_{next(counter)}"
        inits.append(numpy_helper.from_array(np.asarray(value), full))
        return full

    def op(kind: str, inputs: list[str], **attrs: object) -> str:
        out = f"{kind.lower()}_{next(counter)}"
        nodes.append(helper.make_node(kind, inputs, [out], **attrs))  # type: ignore[arg-type]
        return out

    def column(i: int) -> str:  # raw[:, i:i+1], int32 [N, 1]
        starts, ends, axes = (const(np.array([v], np.int64)) for v in (i, i + 1, 1))
        return op("Slice", [INPUT_NAME, starts, ends, axes])

    def onehot(col: str, values: np.ndarray) -> str:
        eq = op("Equal", [col, const(values.reshape(1, -1).astype(np.int32), "vocab")])
        return op("Cast", [eq], to=TensorProto.FLOAT)

    def to_float(col: str) -> str:
        return op("Cast", [col], to=TensorProto.FLOAT)

    def packed(field: str) -> str:
        start = CODE_OFFSETS[field]
        total = column(start)
        for i in range(1, CODE_WIDTHS[field]):
            total = op("Add", [op("Mul", [total, const(np.array(256, np.int32))]), column(start + i)])
        return total

    minute = op("Div", [to_float(column(1)), const(np.array(60.0, np.float32))])
    edges = const(params["dist_edges"].astype(np.int32).reshape(1, -1), "dist_edges")
    dist = op("Cast", [op("GreaterOrEqual", [column(4), edges])], to=TensorProto.FLOAT)
    parts = [onehot(column(0), np.arange(24)), minute, onehot(column(2), np.arange(7)), dist]
    parts += [onehot(packed(f), vocabulary_codes(f).astype(np.int32)) for f in CODE_WIDTHS]
    parts.append(onehot(column(3), np.arange(1, 13)))
    x = op("Concat", parts, axis=1)
    w1 = const(folded_w1(params), "w1")
    hidden = op("Relu", [op("Add", [op("MatMul", [x, w1]), const(params["b1"], "b1")])])
    logit = op("Add", [op("MatMul", [hidden, const(params["w2"], "w2")]), const(params["b2"], "b2")])
    nodes.append(helper.make_node("Sigmoid", [logit], [OUTPUT_NAME]))

    graph = helper.make_graph(
        nodes,
        "flight_delay_mobile",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.INT32, ["N", N_RAW])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="mlpatterns")
    model.ir_version = 8
    model.model_version = int(version.lstrip("v") or 0) if version.lstrip("v").isdigit() else 0
    helper.set_model_props(model, {"version": version, "feature_fingerprint": fingerprint})
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())
