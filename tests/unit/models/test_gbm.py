"""The LightGBM family through the training pipeline: the same split,
validation, parity check and manifest as the MLP; the exported graph
serves through the router's scorer; a float32 input sitting on a split
threshold goes the way LightGBM sends it."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from models.dataset import Dataset
from models.explore import explore_run
from models.gbm import GBM, _exact_thresholds, build_graph
from models.train import train
from router.features.catalogue import FEATURE_NAMES, N_FEATURES
from router.scoring.onnx import Scorer
from sim.report import scenario_config


@pytest.fixture(scope="module")
def small() -> Dataset:
    logging.getLogger("sor.risk").setLevel(logging.ERROR)
    return explore_run(scenario_config("toxic_dark"), 101, parents=250)


def test_trains_validates_exports_and_serves(small: Dataset, tmp_path: Path) -> None:
    m = train(small, tmp_path, family="gbm", progress=False, source={"simulated": {"test": True}})
    assert m.version.startswith("gbm-") and m.features == list(FEATURE_NAMES)
    assert m.training["model"] == "lightgbm" and m.training["source"] == {"simulated": {"test": True}}
    assert set(m.training["trees"]) == {"cost_bps", "fill_prob", "markout_bps"}
    par = m.validation["onnx_parity"]
    assert par["max_abs"] <= par["atol"] + par["rtol"] * 100
    v = m.validation
    assert v["fill_prob"]["log_loss"] < v["fill_prob"]["baseline_log_loss"], "it learned something"
    sc = Scorer(str(tmp_path / m.model_file), 3, budget_us=0)
    out = sc.score(np.zeros((3, N_FEATURES), np.float32))
    assert out is not None and out.shape == (3, 3) and 0.0 <= float(out[:, 1].min()) <= 1.0
    assert sc.version == m.version


def test_a_value_on_a_split_threshold_goes_where_lightgbm_sends_it() -> None:
    rng = np.random.default_rng(5)
    a = np.float32(0.1)
    for b in (0.1000004, 0.1000002, 0.1000005, 0.1000009, 0.1000011):
        # Two clusters; the split between them must round up to float32
        # (the case the converter gets wrong).
        x = np.zeros((400, N_FEATURES), np.float32)
        x[:200, 0], x[200:, 0] = a, np.float32(b)
        y = np.r_[np.zeros(200), np.ones(200) * 10.0].astype(np.float32) + rng.normal(0, 0.01, 400).astype(np.float32)
        ds = Dataset(X=x, cost_bps=y, fill_frac=np.ones(400, np.float32), markout_bps=y, has_fill=np.ones(400, bool),
                     group=np.arange(400), venue=np.full(400, "V"), scenario=np.full(400, "t"))
        g = GBM(n_estimators=5, min_child_samples=5, subsample=1.0, colsample=1.0, patience=5)
        g.fit(ds)
        t = float(g.cost.booster_.dump_model()["tree_info"][0]["tree_structure"]["threshold"])
        if float(np.float32(t)) > t:
            break
    else:
        pytest.fail("no threshold that rounds up")
    probe = np.zeros((4, N_FEATURES), np.float32)
    t32 = np.float32(t)
    probe[:, 0] = [t32, np.nextafter(t32, np.float32(-1)), np.nextafter(t32, np.float32(1)), a]
    want = g.predict(probe)

    def onnx_scores(exact: bool) -> np.ndarray:
        sess = ort.InferenceSession(build_graph(g, exact_thresholds=exact).SerializeToString(),
                                    providers=["CPUExecutionProvider"])
        return np.asarray(sess.run(None, {"features": probe})[0])

    np.testing.assert_allclose(onnx_scores(True), want, atol=1e-4)
    assert abs(float(onnx_scores(False)[0, 0] - want[0, 0])) > 1.0, "the converter alone sends it the other way"


def test_thresholds_already_exact_are_left_alone(small: Dataset) -> None:
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    g = GBM(n_estimators=20)
    g.fit(small)
    sub = convert_lightgbm(g.cost, initial_types=[("features", FloatTensorType([None, N_FEATURES]))], target_opset=15)
    first = _exact_thresholds(sub, g.cost.booster_)
    assert first >= 0 and _exact_thresholds(sub, g.cost.booster_) == 0
