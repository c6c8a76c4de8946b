"""The gradient-boosted venue model: three LightGBM models behind the same
contract as the MLP (``[batch, N_FEATURES]`` in, ``[batch, 3]`` out:
cost_bps, fill_prob, markout_bps), exported to one ONNX graph.

- cost and markout: L2 regression on the rows that filled (a cost or a
  markout exists only for a filled share), like the MLP's masked heads;
- fill probability: the fill fraction's cross-entropy. LightGBM's own
  ``cross_entropy`` objective has no ONNX converter, so each row enters a
  binary classifier twice, labelled 1 with weight ``fill_frac`` and 0 with
  weight ``1 - fill_frac``: the weighted binary log loss is exactly the
  fractional cross-entropy, and classifiers convert.

Each model stops early on a validation split of the training decisions
(by group, never by row). ``onnxmltools`` converts each one (its
``TreeEnsemble*`` operators of the ai.onnx.ml domain, which onnxruntime's
CPU provider runs); ``build_graph`` joins the three under one input and a
``Concat`` into ``scores``. LightGBM sums trees in double precision and
onnxruntime in float32, so parity is checked with the MLP's tolerance on
the held-out rows like any export.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper

from models.dataset import Dataset, split_by_group
from models.export import write_model
from router.features.catalogue import N_FEATURES
from router.scoring.manifest import INPUT_NAME, OUTPUT_NAME

F32 = npt.NDArray[np.float32]
IR_VERSION = 8
OPSET = 15
"""The default domain's opset of the joined graph (what onnxmltools targets at most)."""
ML_OPSET = 1


class GBM:
    def __init__(self, *, n_estimators: int = 400, learning_rate: float = 0.05, num_leaves: int = 31,
                 min_child_samples: int = 20, subsample: float = 0.8, colsample: float = 0.8, seed: int = 0,
                 patience: int = 30, threads: int = 1) -> None:
        self.params: dict[str, Any] = {
            "n_estimators": n_estimators, "learning_rate": learning_rate, "num_leaves": num_leaves,
            "min_child_samples": min_child_samples, "subsample": subsample, "subsample_freq": 1,
            "colsample_bytree": colsample, "random_state": seed, "n_jobs": threads, "verbose": -1,
        }
        self.patience = patience
        self.seed = seed
        self.cost: Any = None
        self.fill: Any = None
        self.markout: Any = None
        self.report: dict[str, Any] = {}

    @property
    def fitted(self) -> bool:
        return self.fill is not None

    def fit(self, ds: Dataset, valid_fraction: float = 0.1) -> dict[str, Any]:
        import lightgbm as lgb

        fit_ds, val_ds = split_by_group(ds, valid_fraction, seed=self.seed + 1)
        stop: list[Any] = [lgb.early_stopping(self.patience, verbose=False)]

        def regressor(target: F32, fmask: npt.NDArray[np.bool_], vmask: npt.NDArray[np.bool_],
                      vtarget: F32) -> Any:
            m = lgb.LGBMRegressor(objective="regression", **self.params)
            if not fmask.any():
                # No filled row: a constant model (0), still a valid tree ensemble.
                return m.fit(fit_ds.X[:2], np.zeros(2, np.float32))
            if not vmask.any():
                return m.fit(fit_ds.X[fmask], target[fmask])
            return m.fit(fit_ds.X[fmask], target[fmask], eval_X=(val_ds.X[vmask],), eval_y=(vtarget[vmask],),
                         callbacks=stop)

        self.cost = regressor(fit_ds.cost_bps, fit_ds.cost_mask, val_ds.cost_mask, val_ds.cost_bps)
        self.markout = regressor(fit_ds.markout_bps, fit_ds.markout_mask, val_ds.markout_mask, val_ds.markout_bps)

        def doubled(d: Dataset) -> tuple[F32, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
            y = d.fill_frac.astype(np.float64)
            return (np.concatenate([d.X, d.X]), np.r_[np.ones(len(d)), np.zeros(len(d))], np.r_[y, 1.0 - y])

        x, y, w = doubled(fit_ds)
        vx, vy, vw = doubled(val_ds)
        self.fill = lgb.LGBMClassifier(objective="binary", **self.params).fit(
            x, y, sample_weight=w, eval_X=(vx,), eval_y=(vy,), eval_sample_weight=[vw], callbacks=stop)
        self.report = {"trees": {h: int(getattr(m, "best_iteration_", 0) or m.n_estimators_)
                                 for h, m in (("cost_bps", self.cost), ("fill_prob", self.fill),
                                              ("markout_bps", self.markout))},
                       "fit_rows": len(fit_ds), "early_stopping_rows": len(val_ds)}
        return self.report

    def predict(self, features: npt.ArrayLike) -> F32:
        x = np.ascontiguousarray(features, dtype=np.float32).reshape(-1, N_FEATURES)
        out = np.empty((x.shape[0], 3), np.float32)
        if not x.shape[0]:
            return out
        out[:, 0] = self.cost.predict(x)
        out[:, 1] = self.fill.predict_proba(x)[:, 1]
        out[:, 2] = self.markout.predict(x)
        return out

    @property
    def n_params(self) -> int:
        """Tree nodes over the three models (the size a reader compares)."""
        n = 0
        for m in (self.cost, self.fill, self.markout):
            for t in m.booster_.dump_model()["tree_info"]:
                n += int(t.get("num_leaves", 0)) * 2 - 1
        return n


def _exact_thresholds(sub: onnx.ModelProto, booster: Any) -> int:
    """Make the converted trees split float32 inputs as LightGBM splits them.

    LightGBM compares ``x <= t`` in double; the converter stores ``t``
    rounded to the nearest float32, so a float32 ``x`` equal to that rounded
    value goes left in LightGBM when it is below ``t`` and right in
    onnxruntime when it is above: rare, and a whole tree's worth off when it
    happens (seen: 2 held-out rows in 2,287, 0.02 bps). Storing the largest
    float32 not above ``t`` makes the two agree for every float32 input.
    Returns how many thresholds moved."""
    exact: dict[tuple[int, int, float], float] = {}
    for k, tree in enumerate(booster.dump_model()["tree_info"]):
        stack = [tree["tree_structure"]]
        while stack:
            n = stack.pop()
            if "split_feature" in n:
                t = float(n["threshold"])
                exact[(k, int(n["split_feature"]), float(np.float32(t)))] = t
                stack += [n["left_child"], n["right_child"]]
    moved = 0
    for node in sub.graph.node:
        if not node.op_type.startswith("TreeEnsemble"):
            continue
        attrs = {a.name: a for a in node.attribute}
        trees, feats = attrs["nodes_treeids"].ints, attrs["nodes_featureids"].ints
        modes, values = attrs["nodes_modes"].strings, attrs["nodes_values"].floats
        for i, mode in enumerate(modes):
            if mode != b"BRANCH_LEQ":
                continue
            want = exact.get((trees[i], feats[i], float(np.float32(values[i]))))
            if want is not None and float(np.float32(values[i])) > want:
                values[i] = float(np.nextafter(np.float32(values[i]), np.float32(-np.inf)))
                moved += 1
    return moved


def build_graph(model: GBM, *, exact_thresholds: bool = True) -> onnx.ModelProto:
    """One ``ModelProto``: the three converted models under ``features``,
    their outputs concatenated into ``scores`` (``exact_thresholds=False``
    only to show what ``_exact_thresholds`` mends)."""
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    types = [(INPUT_NAME, FloatTensorType([None, N_FEATURES]))]
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    heads: list[str] = []
    for head, m, zipmap in (("cost", model.cost, None), ("fill", model.fill, False), ("markout", model.markout, None)):
        kw = {"zipmap": zipmap} if zipmap is not None else {}
        sub = convert_lightgbm(m, initial_types=types, target_opset=OPSET, **kw)
        if exact_thresholds:
            _exact_thresholds(sub, m.booster_)
        sub = onnx.compose.add_prefix(sub, f"{head}_")
        nodes.append(helper.make_node("Identity", [INPUT_NAME], [f"{head}_{INPUT_NAME}"], name=f"{head}_in"))
        nodes.extend(sub.graph.node)
        inits.extend(sub.graph.initializer)
        if head == "fill":
            # probabilities [batch, 2]: the column of class 1.
            probs = f"{head}_probabilities"
            nodes.append(helper.make_node("Slice", [probs, "one", "two", "one"], ["fill_p"], name="fill_p1"))
            heads.append("fill_p")
        else:
            heads.append(sub.graph.output[0].name)
    inits.append(onnx.numpy_helper.from_array(np.array([1], np.int64), "one"))
    inits.append(onnx.numpy_helper.from_array(np.array([2], np.int64), "two"))
    nodes.append(helper.make_node("Concat", heads, [OUTPUT_NAME], axis=1, name="scores_concat"))
    graph = helper.make_graph(
        nodes, "sor_venue_gbm",
        [helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT, ["batch", N_FEATURES])],
        [helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, ["batch", 3])],
        initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
                              producer_name="sor-models-gbm")
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto)
    return proto


def export_onnx(model: GBM, path: str | os.PathLike[str]) -> None:
    if not model.fitted:
        raise ValueError("export_onnx: the model has not been fitted")
    write_model(build_graph(model), path)
