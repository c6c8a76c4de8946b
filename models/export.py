"""ONNX export of ``models.mlp.MLP`` and the numpy/onnxruntime parity check.

The graph (opset 17, standard ops only, so the CPU and CUDA providers both
run it) mirrors ``MLP.predict`` op for op::

    features [batch, 28] float32
      Sub x_mean -> Mul x_inv_std -> Clip(-c, c)
      MatMul W1 -> Add b1 -> Relu -> MatMul W2 -> Add b2 -> Relu
      MatMul W3 -> Add b3 -> Mul y_scale -> Add y_shift
      Slice [0:1] | Slice [1:2] -> Sigmoid | Slice [2:3] -> Concat(axis 1)
    scores [batch, 3] float32: cost_bps, fill_prob, markout_bps

The de-standardisation of the cost and markout heads is a separate Mul/Add
after the last layer rather than folded into W3/b3: element-wise float32 ops
give bit-identical results in numpy and onnxruntime, so only the matmuls'
summation order differs and parity stays far below 1e-5 bps.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from models.mlp import HEADS, MLP
from router.features.catalogue import FEATURE_NAMES
from router.scoring.manifest import INPUT_NAME, OUTPUT_NAME, OUTPUTS

__all__ = [
    "INPUT_NAME", "IR_VERSION", "OPSET", "OUTPUT_NAME", "PARITY_ATOL", "PARITY_RTOL",
    "Predictor", "build_graph", "compare", "export_onnx", "parity", "parity_ok", "write_model",
]

assert HEADS == OUTPUTS, "models.mlp.HEADS must match the scoring contract"

OPSET = 17
# Parity tolerance: |onnx - numpy| <= ATOL + RTOL * |numpy|. The absolute
# 1e-5 alone cannot hold for large bps values: one float32 ulp is 7.6e-6 at
# 64 and 6.1e-5 at 512, and onnxruntime's matmul sums in another order than
# numpy's BLAS, so outputs differ by an ulp or two. RTOL 1e-6 is ~8 ulps; a
# real export bug (wrong op, constant or order) is orders of magnitude off.
PARITY_ATOL = 1e-5
PARITY_RTOL = 1e-6
# IR 8 is what opset 17 needs; pinning it keeps the file loadable by older
# onnxruntime builds than the one it was exported with.
IR_VERSION = 8


def build_graph(model: MLP) -> onnx.ModelProto:
    """The checked ``ModelProto`` for a fitted model."""
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def const(name: str, value: npt.ArrayLike, dtype: type = np.float32) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name=name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    x = node("Sub", [INPUT_NAME, const("x_mean", model.x_mean)], "centered")
    x = node("Mul", [x, const("x_inv_std", model.x_inv_std)], "standardized")
    if model.clip is not None:
        c = float(model.clip)
        x = node("Clip", [x, const("clip_min", np.float32(-c)), const("clip_max", np.float32(c))], "clipped")
    x = node("MatMul", [x, const("W1", model.W1)], "mm1")
    x = node("Add", [x, const("b1", model.b1)], "a1")
    x = node("Relu", [x], "h1")
    x = node("MatMul", [x, const("W2", model.W2)], "mm2")
    x = node("Add", [x, const("b2", model.b2)], "a2")
    x = node("Relu", [x], "h2")
    x = node("MatMul", [x, const("W3", model.W3)], "mm3")
    x = node("Add", [x, const("b3", model.b3)], "logits")
    x = node("Mul", [x, const("y_scale", model.y_scale)], "scaled")
    y = node("Add", [x, const("y_shift", model.y_shift)], "heads")
    axes = const("axis1", [1], np.int64)
    cols = []
    for j in range(3):
        cols.append(node("Slice", [y, const(f"start{j}", [j], np.int64), const(f"end{j}", [j + 1], np.int64), axes],
                         f"head{j}"))
    cols[1] = node("Sigmoid", [cols[1]], "fill_prob")
    node("Concat", cols, OUTPUT_NAME, axis=1)

    graph = helper.make_graph(
        nodes,
        "sor_venue_mlp",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", model.n_in])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 3])],
        initializer=inits,
    )
    proto = helper.make_model(
        graph,
        producer_name="sor.models",
        doc_string="SOR venue scores: columns " + ", ".join(HEADS),
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    proto.ir_version = IR_VERSION
    helper.set_model_props(
        proto,
        {"features": ",".join(FEATURE_NAMES), "outputs": ",".join(HEADS), "hidden": str(model.hidden)},
    )
    onnx.checker.check_model(proto, full_check=True)
    return proto


def write_model(proto: onnx.ModelProto, path: str | os.PathLike[str]) -> None:
    """Write an ONNX file atomically (temp file, then rename): a crash
    leaves the old file or the new one, never half of one."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_bytes(proto.SerializeToString())
    os.replace(tmp, p)


def export_onnx(model: MLP, path: str | os.PathLike[str]) -> None:
    """Write the model's ONNX file (``write_model``)."""
    if not model.fitted:
        raise ValueError("export_onnx: the model has not been fitted")
    write_model(build_graph(model), path)


class Predictor(Protocol):
    """What the parity check reads of a fitted model (the MLP, the GBM)."""

    def predict(self, features: npt.ArrayLike) -> npt.NDArray[np.float32]: ...


def compare(
    model: Predictor, onnx_path: str | os.PathLike[str], features: npt.ArrayLike
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """``(numpy, onnxruntime)`` scores of ``features``; onnxruntime on CPU, default (full) graph optimisation."""
    import onnxruntime as ort

    x = np.ascontiguousarray(features, dtype=np.float32)
    want = model.predict(x)
    if x.shape[0] == 0:
        return want, want.copy()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
    got = np.asarray(sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0], dtype=np.float32)
    if got.shape != want.shape:
        raise ValueError(f"parity: onnxruntime returned {got.shape}, numpy {want.shape}")
    return want, got


def parity(model: Predictor, onnx_path: str | os.PathLike[str], features: npt.ArrayLike) -> float:
    """Max abs difference between ``model.predict(features)`` and onnxruntime (CPU) on ``features``."""
    want, got = compare(model, onnx_path, features)
    if want.size == 0:
        return 0.0
    return float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))


def parity_ok(want: npt.NDArray[np.float32], got: npt.NDArray[np.float32],
              scale: npt.ArrayLike | None = None) -> bool:
    """Every score within ``PARITY_ATOL * max(1, scale) + PARITY_RTOL *
    |numpy score|`` (and both finite). ``scale``: per output column, what
    the graph multiplies its last float32 sums by (the MLP's ``y_scale``):
    the summation-order error lives in those standardised units, so a head
    with an 18 bps spread (markouts) carries 18 times the absolute error of
    a probability. Seen: 6.1e-5 bps on a markout of 3.7, 1.5e-6 in
    standardised units; an export bug is off by far more than either."""
    w = want.astype(np.float64)
    atol = PARITY_ATOL * (np.maximum(1.0, np.asarray(scale, dtype=np.float64)) if scale is not None else 1.0)
    return bool(np.all(np.abs(got.astype(np.float64) - w) <= atol + PARITY_RTOL * np.abs(w)))
