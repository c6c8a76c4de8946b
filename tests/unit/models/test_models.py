"""models/: dataset files, the numpy MLP, ONNX export and the training pipeline.

Synthetic datasets whose targets are known functions of a few features:
the fill probability is a sigmoid of venue_fill_rate and imbalance_l1, the
cost is linear in spread_bps and size_over_adv plus noise, the markout
depends on venue_is_dark and trade flow. Training must beat the constant
(training mean) baseline by a clear margin on held-out decisions, and the
exported graph must agree with numpy. Small data, few epochs: fast.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from threadpoolctl import threadpool_info

from models.dataset import Dataset, split_by_group
from models.export import build_graph, compare, export_onnx, parity, parity_ok
from models.mlp import HEADS, MLP, blas_threads
from models.progress import Progress
from models.train import MANIFEST_FILE, MODEL_FILE, ParityError, evaluate, main, train
from router.features.catalogue import FEATURE_INDEX, FEATURE_NAMES, N_FEATURES, FeatureMismatchError
from router.scoring.manifest import OUTPUTS, read_manifest
from router.scoring.onnx import Scorer

FI = FEATURE_INDEX
VENUES = np.array(["LIT_A", "LIT_B", "DARK"])
NOISE_COST = 1.0
NOISE_MARKOUT = 0.5


def synthetic(n_groups: int, seed: int = 0, *, group_offset: int = 0, scenario: str | None = None) -> Dataset:
    """Three venues per decision (two lit, one dark) with known target functions."""
    rng = np.random.default_rng(seed)
    nv = len(VENUES)
    n = n_groups * nv
    g = np.repeat(np.arange(n_groups), nv)
    x = rng.standard_normal((n_groups, N_FEATURES)).astype(np.float32)[g]
    x[:, FI["spread_bps"]] = np.abs(x[:, FI["spread_bps"]]) * 3 + 1
    x[:, FI["size_over_adv"]] = np.abs(x[:, FI["size_over_adv"]]) * 0.01
    x[:, FI["side"]] = np.where(x[:, FI["side"]] >= 0, 1.0, -1.0)
    x[:, FI["crossed"]] = 0.0  # never varies: the model must ignore it
    x[:, FI["nbbo_stale_ms"]] = np.where(rng.random(n_groups) < 0.02, 60_000.0, rng.exponential(20, n_groups))[g]
    vi = np.tile(np.arange(nv), n_groups)
    dark = (vi == nv - 1).astype(np.float32)
    x[:, FI["venue_is_dark"]] = dark
    x[:, FI["venue_fill_rate"]] = rng.uniform(0, 1, n)
    x[:, FI["venue_fee_bps"]] = np.where(dark > 0, -0.1, 0.3)
    x[:, FI["venue_markout_1s_bps"]] = rng.standard_normal(n)
    logit = 4 * (x[:, FI["venue_fill_rate"]] - 0.5) + x[:, FI["imbalance_l1"]] - dark
    p = 1 / (1 + np.exp(-logit))
    fill = (rng.binomial(4, p) / 4).astype(np.float32)
    has = fill > 0
    cost = (0.5 * x[:, FI["spread_bps"]] + 300 * x[:, FI["size_over_adv"]] + x[:, FI["venue_fee_bps"]]
            + NOISE_COST * rng.standard_normal(n))
    mk = (np.where(dark > 0, -3.0, 0.5) + 0.8 * x[:, FI["trade_flow_5s"]] * x[:, FI["side"]]
          + NOISE_MARKOUT * rng.standard_normal(n))
    if scenario is None:
        scen = np.where(g % 2 == 0, "calm", "volatile")
    else:
        scen = np.full(n, scenario)
    return Dataset(
        X=x,
        cost_bps=np.where(has, cost, np.nan).astype(np.float32),
        fill_frac=fill,
        markout_bps=np.where(has, mk, np.nan).astype(np.float32),
        has_fill=has,
        group=g + group_offset,
        venue=VENUES[vi],
        scenario=scen,
    )


@pytest.fixture(scope="module")
def data() -> Dataset:
    return synthetic(1500, seed=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data: Dataset) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("model")
    manifest = train(data, out, seed=3, hidden=32, epochs=25, progress=False, created_utc="2024-01-02T03:04:05Z")
    return out, manifest


def _assert_same(a: Dataset, b: Dataset) -> None:
    for name in ("X", "cost_bps", "fill_frac", "markout_bps", "has_fill", "group", "venue", "scenario"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


# ---------------------------------------------------------------- dataset
def test_dataset_save_load_round_trip(tmp_path: Path, data: Dataset) -> None:
    p = tmp_path / "d.npz"
    data.save(p)
    assert p.exists() and not (tmp_path / "d.npz.tmp").exists()
    back = Dataset.load(p)
    _assert_same(data, back)
    assert back.X.dtype == np.float32 and back.group.dtype == np.int64 and back.has_fill.dtype == np.bool_
    assert back.summary() == data.summary()


def _save_with_names(path: Path, data: Dataset, names: list[str]) -> None:
    arrays = {n: getattr(data, n) for n in ("X", "cost_bps", "fill_frac", "markout_bps", "has_fill", "group",
                                            "venue", "scenario")}
    np.savez(path, format_version=np.int64(1), feature_names=np.array(names), **arrays)


@pytest.mark.parametrize(
    ("names", "words"),
    [
        (list(FEATURE_NAMES[:-1]), "missing ['venue_stale_ms']"),
        ([*FEATURE_NAMES, "new_feature"], "unknown ['new_feature']"),
        ([FEATURE_NAMES[1], FEATURE_NAMES[0], *FEATURE_NAMES[2:]], "another order"),
    ],
)
def test_dataset_refuses_other_feature_names(tmp_path: Path, data: Dataset, names: list[str], words: str) -> None:
    p = tmp_path / "old.npz"
    _save_with_names(p, data, names)
    with pytest.raises(FeatureMismatchError, match="different feature list") as exc:
        Dataset.load(p)
    assert words in str(exc.value)
    assert "regenerate" in str(exc.value)


def test_dataset_without_feature_names_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "x.npz"
    np.savez(p, X=np.zeros((1, N_FEATURES), np.float32))
    with pytest.raises(FeatureMismatchError, match="no feature_names"):
        Dataset.load(p)


def test_dataset_validation() -> None:
    d = synthetic(5)
    with pytest.raises(ValueError, match="X: expected shape"):
        Dataset(**{**_fields(d), "X": d.X[:, :-1]})
    bad = d.X.copy()
    bad[0, FI["spread_bps"]] = np.nan
    with pytest.raises(ValueError, match=r"non-finite values in \['spread_bps'\]"):
        Dataset(**{**_fields(d), "X": bad})
    with pytest.raises(ValueError, match="has_fill must equal"):
        Dataset(**{**_fields(d), "has_fill": ~d.has_fill})
    with pytest.raises(ValueError, match="fill_frac"):
        Dataset(**{**_fields(d), "fill_frac": d.fill_frac + 2})
    cost = d.cost_bps.copy()
    cost[~d.has_fill] = 1.0
    if (~d.has_fill).any():
        with pytest.raises(ValueError, match="cost_bps must be NaN"):
            Dataset(**{**_fields(d), "cost_bps": cost})
    with pytest.raises(ValueError, match="group: expected shape"):
        Dataset(**{**_fields(d), "group": d.group[:-1]})


def _fields(d: Dataset) -> dict[str, np.ndarray]:
    return {n: getattr(d, n) for n in ("X", "cost_bps", "fill_frac", "markout_bps", "has_fill", "group",
                                       "venue", "scenario")}


def test_dataset_concat_and_summary() -> None:
    a = synthetic(10, seed=1, scenario="calm")
    b = synthetic(20, seed=2, scenario="news")
    c = Dataset.concat([a, b])
    assert len(c) == len(a) + len(b)
    assert c.n_groups == 30  # both number decisions from 0: shifted apart
    shared = Dataset.concat([a, b], disjoint_groups=False)
    assert shared.n_groups == 20
    s = c.summary()
    assert s["rows"] == 90 and s["decisions"] == 30
    assert s["scenarios"] == {"calm": 30, "news": 60}
    assert s["venues"] == {"DARK": 30, "LIT_A": 30, "LIT_B": 30}
    assert s["filled_rows"] == int(c.has_fill.sum())
    assert s["fill_rate"] == pytest.approx(c.has_fill.mean())
    assert s["mean_cost_bps"] == pytest.approx(np.nanmean(c.cost_bps.astype(np.float64)), rel=1e-6)
    assert isinstance(s["mean_cost_bps"], float)
    e = Dataset.empty().summary()
    assert e["rows"] == 0 and e["fill_rate"] is None and e["mean_cost_bps"] is None
    with pytest.raises(ValueError):
        Dataset.concat([])


def test_group_split_keeps_decisions_whole(data: Dataset) -> None:
    rest, held = split_by_group(data, 0.2, seed=7)
    assert len(rest) + len(held) == len(data)
    assert not set(rest.group.tolist()) & set(held.group.tolist())
    assert held.n_groups == 300
    again = split_by_group(data, 0.2, seed=7)[1]
    np.testing.assert_array_equal(held.group, again.group)
    other = split_by_group(data, 0.2, seed=8)[1]
    assert not np.array_equal(held.group, other.group)
    tiny = synthetic(2)
    r, h = split_by_group(tiny, 0.01)
    assert r.n_groups == 1 and h.n_groups == 1


# ---------------------------------------------------------------- model
def test_mlp_learns_and_matches_onnx(tmp_path: Path, data: Dataset) -> None:
    fit, held = split_by_group(data, 0.2, seed=0)
    m = MLP(32, seed=0)
    report = m.fit(fit, epochs=20)
    assert report.epochs_run >= 1 and 1 <= report.best_epoch <= report.epochs_run
    assert m.constant_features == ["crossed"]
    assert m.x_inv_std[FI["crossed"]] == 0.0
    pred = m.predict(held.X)
    assert pred.shape == (len(held), 3) and pred.dtype == np.float32
    assert ((pred[:, 1] > 0) & (pred[:, 1] < 1)).all()
    # dark rows: markout around -3, lit around +0.5
    dark = held.X[:, FI["venue_is_dark"]] == 1
    assert pred[dark, 2].mean() < -2 and pred[~dark, 2].mean() > 0

    path = tmp_path / "m.onnx"
    export_onnx(m, path)
    assert parity(m, path, held.X) <= 1e-5
    # an unseen value of the constant feature changes nothing; a huge stale value is clipped
    x = held.X[:50].copy()
    x[:, FI["crossed"]] = 1.0
    x[:, FI["nbbo_stale_ms"]] = 1e9
    assert np.isfinite(m.predict(x)).all()
    np.testing.assert_array_equal(m.predict(x)[:, 0], m.predict(np.where(
        np.arange(N_FEATURES) == FI["nbbo_stale_ms"], 1e12, x).astype(np.float32))[:, 0])
    assert parity(m, path, x) <= 1e-5


def test_onnx_graph_contract(tmp_path: Path, data: Dataset) -> None:
    m = MLP(16, seed=0)
    m.fit(data, epochs=2)
    proto = build_graph(m)
    assert proto.opset_import[0].version == 17
    ops = {n.op_type for n in proto.graph.node}
    assert ops <= {"Sub", "Mul", "Clip", "MatMul", "Add", "Relu", "Slice", "Sigmoid", "Concat"}
    path = tmp_path / "m.onnx"
    export_onnx(m, path)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    (out,) = sess.get_outputs()
    assert (inp.name, inp.type, inp.shape[1]) == ("features", "tensor(float)", N_FEATURES)
    assert (out.name, out.type, out.shape[1]) == ("scores", "tensor(float)", 3)
    assert isinstance(inp.shape[0], str)  # dynamic batch
    for rows in (1, 7):
        (res,) = sess.run(None, {"features": data.X[:rows]})
        assert res.shape == (rows, 3)
    assert HEADS == OUTPUTS
    assert path.stat().st_size < 20_000


def test_export_refuses_unfitted(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not been fitted"):
        export_onnx(MLP(8), tmp_path / "m.onnx")


def test_parity_tolerance_scales_with_the_score() -> None:
    want = np.array([[1000.0, 0.5, -3.0]], np.float32)
    assert parity_ok(want, want + np.array([[5e-4, 0, 0]], np.float32))  # ~8 ulp at 1000
    assert not parity_ok(want, want + np.array([[5e-3, 0, 0]], np.float32))
    assert not parity_ok(want, want + np.array([[0, 2e-5, 0]], np.float32))
    # A head the graph scales by 18 (a markout spread) carries 18x the error.
    scale = np.array([1.0, 1.0, 18.0])
    assert parity_ok(want, want + np.array([[0, 0, 6e-5]], np.float32), scale)
    assert not parity_ok(want, want + np.array([[0, 0, 6e-5]], np.float32))
    assert not parity_ok(want, want + np.array([[0, 0, 5e-3]], np.float32), scale)
    assert not parity_ok(want, want + np.array([[0, 2e-5, 0]], np.float32), scale)


def test_training_is_deterministic_for_a_seed(data: Dataset) -> None:
    small = data.take(np.arange(600))
    a, b, c = MLP(16, seed=5), MLP(16, seed=5), MLP(16, seed=6)
    ra = a.fit(small, epochs=3)
    rb = b.fit(small, epochs=3)
    c.fit(small, epochs=3)
    assert ra.history == rb.history
    for name, arr in a.state().items():
        np.testing.assert_array_equal(arr, b.state()[name], err_msg=name)
    assert not np.array_equal(a.W1, c.W1)
    assert build_graph(a).SerializeToString() == build_graph(b).SerializeToString()


# ---------------------------------------------------------------- train()
def test_train_beats_the_mean_baseline(trained: tuple[Path, object]) -> None:
    _, manifest = trained
    v = manifest.validation  # type: ignore[attr-defined]
    cost, fill, mk = v["cost_bps"], v["fill_prob"], v["markout_bps"]
    assert cost["mae"] < 0.7 * cost["baseline_mae"]
    assert cost["rmse"] < 0.7 * cost["baseline_rmse"]
    assert cost["mae"] < 1.3 * NOISE_COST * 0.8  # the noise floor of an MAE is 0.8 sigma
    assert mk["mae"] < 0.5 * mk["baseline_mae"]
    assert fill["log_loss"] < 0.85 * fill["baseline_log_loss"]
    assert fill["brier"] < 0.85 * fill["baseline_brier"]
    assert abs(fill["calibration_in_the_large"]) < 0.03
    assert sum(b["n"] for b in fill["reliability"]) == v["rows"]
    assert v["onnx_parity"]["max_abs"] <= 1e-5
    assert v["onnx_parity"]["rows"] == v["rows"] + 3 > 3


def test_train_manifest(trained: tuple[Path, object], data: Dataset) -> None:
    out, manifest = trained
    onnx_bytes = (out / MODEL_FILE).read_bytes()
    on_disk = read_manifest(out / MANIFEST_FILE)
    assert on_disk == manifest
    assert on_disk.features == list(FEATURE_NAMES)
    assert on_disk.sha256 == hashlib.sha256(onnx_bytes).hexdigest()
    assert on_disk.version == "mlp-" + on_disk.sha256[:12]
    assert on_disk.model_file == MODEL_FILE
    assert (on_disk.input, on_disk.output, on_disk.outputs) == ("features", "scores", list(OUTPUTS))
    assert on_disk.created_utc == "2024-01-02T03:04:05Z"
    t = on_disk.training
    assert t["rows"] == len(data) and t["decisions"] == data.n_groups
    assert t["scenarios"] == {"calm": 2250, "volatile": 2250}
    assert t["seed"] == 3 and t["layers"] == [N_FEATURES, 32, 32, 3]
    assert t["split"]["fit_rows"] + t["split"]["holdout_rows"] == len(data)
    assert t["constant_features"] == ["crossed"]
    assert len(onnx_bytes) < 20_000 and t["onnx"]["bytes"] == len(onnx_bytes)
    assert not list(out.glob("*.tmp*"))


def test_trained_model_loads_in_the_router_scorer(trained: tuple[Path, object], data: Dataset) -> None:
    out, _ = trained
    scorer = Scorer(out / MODEL_FILE, 3)
    rows = data.X[:3]
    got = scorer.score(rows)
    assert got is not None
    (ref,) = ort.InferenceSession(str(out / MODEL_FILE), providers=["CPUExecutionProvider"]).run(
        None, {"features": rows})
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


def test_train_refuses_an_export_that_disagrees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import models.train as mt

    def off_by_a_bit(model: MLP, path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        want, got = compare(model, path, x)
        return want, got + np.float32(1e-3)

    monkeypatch.setattr(mt, "compare", off_by_a_bit)
    with pytest.raises(ParityError, match="parity failed"):
        train(synthetic(40), tmp_path, hidden=8, epochs=1, progress=False)
    assert not (tmp_path / MODEL_FILE).exists() and not (tmp_path / MANIFEST_FILE).exists()


def test_train_version_and_small_data(tmp_path: Path) -> None:
    m = train(synthetic(40), tmp_path, hidden=8, epochs=2, version="v-test", progress=False)
    assert m.version == "v-test"
    with pytest.raises(ValueError, match="at least 3 decisions"):
        train(synthetic(2), tmp_path / "x", epochs=1, progress=False)


def test_evaluate_metrics_by_hand() -> None:
    d = synthetic(30)
    m = MLP(4)
    m.fitted = True
    m.W3[:] = 0  # predicts b3 everywhere: y_shift for bps, sigmoid(0) = 0.5 for fill
    m.b3[:] = 0
    m.y_shift = np.array([1.0, 0.0, -1.0], np.float32)
    v = evaluate(m, d, {"cost_bps": 1.0, "fill_prob": 0.5, "markout_bps": -1.0})
    cm = d.cost_mask
    assert v["cost_bps"]["mae"] == pytest.approx(np.abs(1.0 - d.cost_bps[cm]).mean(), rel=1e-5)
    assert v["cost_bps"]["mae"] == pytest.approx(v["cost_bps"]["baseline_mae"], rel=1e-5)
    assert v["fill_prob"]["log_loss"] == pytest.approx(np.log(2), rel=1e-5)
    assert v["fill_prob"]["brier"] == pytest.approx(((0.5 - d.fill_frac) ** 2).mean(), rel=1e-5)
    assert v["fill_prob"]["calibration_in_the_large"] == pytest.approx(0.5 - d.fill_frac.mean(), abs=1e-6)


def test_cli_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p1, p2 = tmp_path / "a.npz", tmp_path / "b.npz"
    synthetic(30, seed=1).save(p1)
    synthetic(30, seed=2).save(p2)
    assert main([str(p1), str(p2), str(tmp_path / "out"), "--hidden", "8", "--epochs", "2", "--quiet"]) == 0
    m = read_manifest(tmp_path / "out" / MANIFEST_FILE)
    assert m.training["decisions"] == 60
    assert m.version in capsys.readouterr().out


# ---------------------------------------------------------------- progress
class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_quiet_off_a_tty_except_one_summary_line() -> None:
    buf = io.StringIO()
    with Progress(200, "gen", stream=buf, unit="rows") as p:
        for _ in range(4):
            p.update(50)
        p.update(0, note="epoch 1 loss 0.5")
        assert buf.getvalue() == ""
    out = buf.getvalue()
    assert out.count("\n") == 1 and out.endswith("\n") and "\r" not in out
    assert out.startswith("gen: 200/200 (100.0%) in ")
    assert "rows/s" in out and out.rstrip("\n").endswith("epoch 1 loss 0.5")


def test_progress_summary_line_reports_what_was_done_not_the_total() -> None:
    buf = io.StringIO()
    p = Progress(40, stream=buf)
    p.update(10)
    p.close()
    p.close()
    p.update(5)  # after close: ignored, nothing more written
    assert buf.getvalue().startswith("10/40 (25.0%) in ")
    assert buf.getvalue().count("\n") == 1


def test_progress_draws_live_on_a_tty() -> None:
    buf = _Tty()
    p = Progress(100, "train", stream=buf)
    assert buf.getvalue().startswith("\rtrain:"), "a terminal sees the bar from the start"
    p.update(100, note="loss 0.5")
    p.close()
    p.close()
    out = buf.getvalue()
    assert out.endswith("\n") and out.count("\n") == 1
    assert "100/100" in out.rsplit("\r", 1)[-1] and "loss 0.5" in out


@pytest.mark.parametrize("stream", [io.StringIO, _Tty])
def test_progress_disabled_is_silent(stream: type[io.StringIO]) -> None:
    buf = stream()
    with Progress(10, "x", stream=buf, enabled=False) as p:
        p.update(10, note="n")
    assert buf.getvalue() == ""


def _blas_threads_now() -> list[int]:
    return [int(i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]


def test_blas_threads_is_restored() -> None:
    before = _blas_threads_now()
    assert before, "numpy's BLAS should be visible to threadpoolctl"
    with blas_threads(1):
        assert _blas_threads_now() == [1] * len(before)
    assert _blas_threads_now() == before
    with blas_threads(None):
        assert _blas_threads_now() == before
