"""router.scoring: the model contract checks, scoring, and every fallback path.

Every model here is a real ONNX graph built with onnx.helper in tmp_path and
run by the real onnxruntime: nothing is mocked.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import msgspec
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from router.config import ModelConfig
from router.features.catalogue import FEATURE_NAMES, N_FEATURES, FeatureMismatchError
from router.scoring.manifest import (
    OUTPUTS,
    ModelLoadError,
    ModelManifest,
    manifest_path,
    read_manifest,
    sha256_file,
    write_manifest,
)
from router.scoring.onnx import Scorer, cuda_available, load_scorer

V = 4
RNG = np.random.default_rng(20240501)
W = RNG.normal(size=(N_FEATURES, 3)).astype(np.float32)
B = RNG.normal(size=3).astype(np.float32)


def _graph_model(nodes: list, inits: list, *, in_name: str = "features",
                 in_dims: Sequence[str | int | None] = ("batch", N_FEATURES), out_name: str = "scores",
                 out_dims: Sequence[str | int | None] | None = ("batch", 3)) -> bytes:
    g = helper.make_graph(
        nodes, "venue_model",
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, list(in_dims))],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None if out_dims is None else list(out_dims))],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    return m.SerializeToString()


def linear_model(*, in_name: str = "features", out_name: str = "scores", w: np.ndarray = W, b: np.ndarray = B,
                 out_dims: Sequence[str | int | None] | None = ("batch", 3)) -> bytes:
    """scores = features @ w + b."""
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    return _graph_model([helper.make_node("Gemm", [in_name, "w", "b"], [out_name])], inits,
                        in_name=in_name, out_name=out_name, out_dims=out_dims)


def nan_model() -> bytes:
    """Linear, plus a NaN in the fill_prob column."""
    inits = [numpy_helper.from_array(W, "w"), numpy_helper.from_array(B, "b"),
             numpy_helper.from_array(np.array([0.0, np.nan, 0.0], np.float32), "nan")]
    return _graph_model([helper.make_node("Gemm", ["features", "w", "b"], ["lin"]),
                         helper.make_node("Add", ["lin", "nan"], ["scores"])], inits)


def gather_model(offset: int = 0) -> bytes:
    """Linear plus table[int(feature 0) + offset]: an index outside -8..7 makes onnxruntime raise at run time."""
    inits = [numpy_helper.from_array(W, "w"), numpy_helper.from_array(B, "b"),
             numpy_helper.from_array(np.zeros((8, 3), np.float32), "table"),
             numpy_helper.from_array(np.array(offset, np.int64), "offset"),
             numpy_helper.from_array(np.array([0], np.int64), "start"),
             numpy_helper.from_array(np.array([1], np.int64), "end"),
             numpy_helper.from_array(np.array([1], np.int64), "axis")]
    nodes = [helper.make_node("Gemm", ["features", "w", "b"], ["lin"]),
             helper.make_node("Slice", ["features", "start", "end", "axis"], ["f0"]),
             helper.make_node("Cast", ["f0"], ["i0"], to=TensorProto.INT64),
             helper.make_node("Add", ["i0", "offset"], ["idx"]),
             helper.make_node("Gather", ["table", "idx"], ["g"], axis=0),
             helper.make_node("Squeeze", ["g", "axis"], ["gs"]),
             helper.make_node("Add", ["lin", "gs"], ["scores"])]
    return _graph_model(nodes, inits)


def install(tmp_path: Path, onnx_bytes: bytes, *, name: str = "model.onnx", features: Sequence[str] = FEATURE_NAMES,
            **manifest_fields: object) -> Path:
    """Writes the model and a manifest (correct unless told otherwise); returns the model path."""
    path = tmp_path / name
    path.write_bytes(onnx_bytes)
    fields: dict[str, object] = {"version": "test-1", "model_file": name, "sha256": sha256_file(path),
                                 "features": list(features)}
    fields.update(manifest_fields)
    write_manifest(manifest_path(path), ModelManifest(**fields))  # type: ignore[arg-type]
    return path


def features(seed: int = 0, n: int = V) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, N_FEATURES)).astype(np.float32)


def reference(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float64) @ W.astype(np.float64) + B).astype(np.float32)


# --- manifest ---------------------------------------------------------------------------------------------------


def test_manifest_round_trip_and_defaults(tmp_path: Path) -> None:
    m = ModelManifest(version="v7", model_file="model.onnx", sha256="ab" * 32, features=list(FEATURE_NAMES),
                      training={"seed": 3, "rows": 1000}, validation={"mae_cost_bps": 0.4})
    assert m.format == 1 and m.input == "features" and m.output == "scores"
    assert m.outputs == list(OUTPUTS) == ["cost_bps", "fill_prob", "markout_bps"]
    p = tmp_path / "model.json"
    write_manifest(p, m)
    assert read_manifest(p) == m
    assert [f.name for f in tmp_path.iterdir()] == ["model.json"]  # no temp file left behind
    assert msgspec.json.decode(p.read_bytes())["features"] == list(FEATURE_NAMES)


def test_manifest_path_is_the_model_path_with_json() -> None:
    assert manifest_path("models/default/model.onnx") == Path("models/default/model.json")


def test_read_manifest_missing_and_garbage(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as ei:
        read_manifest(tmp_path / "nope.json")
    assert ei.value.reason == "missing"
    (tmp_path / "bad.json").write_text('{"version": "x"}')
    with pytest.raises(ModelLoadError) as ei:
        read_manifest(tmp_path / "bad.json")
    assert ei.value.reason == "invalid"
    assert "model_file" in str(ei.value) or "sha256" in str(ei.value) or "features" in str(ei.value)


# --- scoring ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("io_binding", [True, False])
def test_scores_match_numpy_reference(tmp_path: Path, io_binding: bool) -> None:
    sc = Scorer(install(tmp_path, linear_model()), V, io_binding=io_binding)
    assert sc.provider == "cpu" and sc.version == "test-1" and sc.manifest.features == list(FEATURE_NAMES)
    assert sc.failures == {"error": 0, "non_finite": 0, "over_budget": 0}  # the warm-up counts nothing
    for seed in range(5):
        x = features(seed)
        out = sc.score(x)
        assert out is not None
        assert out.shape == (V, 3) and out.dtype == np.float32
        np.testing.assert_allclose(out, reference(x), rtol=1e-5, atol=1e-5)
    assert sc.last_failure is None
    assert sc.last_run_ns > 0


def test_output_buffer_is_reused_and_input_copied(tmp_path: Path) -> None:
    sc = Scorer(install(tmp_path, linear_model()), V)
    x1, x2 = features(1), features(2)
    out1 = sc.score(x1)
    assert out1 is not None
    kept = out1.copy()
    x1[:] = 0.0  # the scorer copied the input: changing the caller's array afterwards changes nothing
    np.testing.assert_allclose(kept, reference(features(1)), rtol=1e-5, atol=1e-5)
    out2 = sc.score(x2)
    assert out2 is out1  # the same preallocated buffer, overwritten
    np.testing.assert_allclose(out2, reference(x2), rtol=1e-5, atol=1e-5)


def test_warm_records_nothing_and_changes_no_score(tmp_path: Path) -> None:
    sc = Scorer(install(tmp_path, linear_model()), V, budget_us=1)  # every real run is over budget
    out = sc.score(features(3))
    assert out is None and sc.last_failure == "over_budget"
    failures, last_ns = dict(sc.failures), sc.last_run_ns
    sc.last_failure = None
    for _ in range(5):
        sc.warm()
    assert sc.failures == failures and sc.last_run_ns == last_ns and sc.last_failure is None
    ok = Scorer(install(tmp_path, linear_model(), name="b.onnx"), V)
    ok.warm()
    out = ok.score(features(4))
    assert out is not None
    np.testing.assert_allclose(out, reference(features(4)), rtol=1e-5, atol=1e-5)


def test_float64_features_are_cast(tmp_path: Path) -> None:
    sc = Scorer(install(tmp_path, linear_model()), V)
    x = features(3)
    out = sc.score(x.astype(np.float64))  # type: ignore[arg-type]
    assert out is not None
    np.testing.assert_allclose(out, reference(x), rtol=1e-5, atol=1e-5)


def test_one_venue_and_many_threads(tmp_path: Path) -> None:
    p = install(tmp_path, linear_model())
    x = features(4, 1)
    one = Scorer(p, 1).score(x)
    assert one is not None
    np.testing.assert_allclose(one, reference(x), rtol=1e-5, atol=1e-5)
    x8 = features(5, 8)
    out = Scorer(p, 8, threads=2).score(x8)
    assert out is not None
    np.testing.assert_allclose(out, reference(x8), rtol=1e-5, atol=1e-5)


def test_load_scorer_from_config(tmp_path: Path) -> None:
    p = install(tmp_path, linear_model(), version="2024-05-01.1")
    calls: list[str] = []
    sc = load_scorer(ModelConfig(path=str(p), provider="cpu", budget_us=0, threads=1), 3, calls.append)
    assert sc.version == "2024-05-01.1" and sc.n_venues == 3 and sc.budget_us == 0 and sc.on_fallback is not None
    out = sc.score(features(6, 3))
    assert out is not None
    np.testing.assert_allclose(out, reference(features(6, 3)), rtol=1e-5, atol=1e-5)
    assert calls == []


# --- load failures ----------------------------------------------------------------------------------------------


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as ei:
        Scorer(tmp_path / "model.onnx", V)
    assert ei.value.reason == "missing"
    assert "model.onnx" in str(ei.value)


def test_missing_manifest(tmp_path: Path) -> None:
    p = install(tmp_path, linear_model())
    manifest_path(p).unlink()
    with pytest.raises(ModelLoadError) as ei:
        Scorer(p, V)
    assert ei.value.reason == "missing"
    assert "model.json" in str(ei.value)


def test_flipped_byte_is_corrupt(tmp_path: Path) -> None:
    p = install(tmp_path, linear_model())
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError) as ei:
        Scorer(p, V)
    assert ei.value.reason == "corrupt"
    assert "sha256" in str(ei.value)


def test_bytes_that_are_not_onnx_are_invalid(tmp_path: Path) -> None:
    p = install(tmp_path, b"this is not an onnx model")  # the sha256 matches: the content is what is wrong
    with pytest.raises(ModelLoadError) as ei:
        Scorer(p, V)
    assert ei.value.reason == "invalid"
    assert "does not load" in str(ei.value)


def test_garbage_manifest_is_invalid(tmp_path: Path) -> None:
    p = install(tmp_path, linear_model())
    manifest_path(p).write_text("{not json")
    with pytest.raises(ModelLoadError) as ei:
        Scorer(p, V)
    assert ei.value.reason == "invalid"


@pytest.mark.parametrize("kind", ["reordered", "extra", "missing_last", "renamed"])
def test_feature_mismatch(tmp_path: Path, kind: str) -> None:
    names = list(FEATURE_NAMES)
    if kind == "reordered":
        names[5], names[6] = names[6], names[5]
    elif kind == "extra":
        names.append("queue_position")
    elif kind == "missing_last":
        names.pop()
    else:
        names[0] = "spread_bps_v0"
    p = install(tmp_path, linear_model(), features=names)
    with pytest.raises(FeatureMismatchError) as ei:
        Scorer(p, V)
    e = ei.value
    assert not isinstance(e, ModelLoadError)  # a different class: the daemon refuses to start on this one
    msg = str(e)
    n = len(FEATURE_NAMES)
    if kind == "reordered":
        assert e.position == 5 and e.model_name == FEATURE_NAMES[6] and e.router_name == FEATURE_NAMES[5]
        assert "position 5" in msg and repr(FEATURE_NAMES[5]) in msg and repr(FEATURE_NAMES[6]) in msg
        assert f"both have {n} features" in msg
    elif kind == "extra":
        assert e.position == n and e.model_name == "queue_position" and e.router_name is None
        assert f"position {n}" in msg and "'queue_position'" in msg
        assert f"model has {n + 1} features, the router {n}" in msg and "1 more in the model" in msg
    elif kind == "missing_last":
        assert e.position == n - 1 and e.model_name is None and e.router_name == FEATURE_NAMES[-1]
        assert f"position {n - 1}" in msg and "1 fewer in the model" in msg
    else:
        assert e.position == 0 and "'spread_bps_v0'" in msg and repr(FEATURE_NAMES[0]) in msg
    assert (e.n_model, e.n_router) == (len(names), n)


def test_feature_mismatch_wins_over_a_corrupt_file(tmp_path: Path) -> None:
    p = install(tmp_path, linear_model(), features=list(reversed(FEATURE_NAMES)), sha256="00" * 32)
    with pytest.raises(FeatureMismatchError):
        Scorer(p, V)


@pytest.mark.parametrize(
    ("model", "words"),
    [
        (lambda: linear_model(out_name="score"), "outputs ['score']"),
        (lambda: linear_model(in_name="x"), "inputs ['x']"),
        (lambda: linear_model(w=W[:, :2].copy(), b=B[:2].copy(), out_dims=("batch", 2)), "[batch, 3]"),
        (lambda: linear_model(w=np.zeros((N_FEATURES, 4), np.float32), b=np.zeros(4, np.float32),
                              out_dims=("batch", 4)), "[batch, 3]"),
        (lambda: _graph_model([helper.make_node("Gemm", ["features", "w", "b"], ["scores"])],
                              [numpy_helper.from_array(W[:10].copy(), "w"), numpy_helper.from_array(B, "b")],
                              in_dims=("batch", 10)), f"[batch, {N_FEATURES}]"),
        (lambda: _graph_model([helper.make_node("Gemm", ["features", "w", "b"], ["scores"])],
                              [numpy_helper.from_array(W, "w"), numpy_helper.from_array(B, "b")],
                              in_dims=(V, N_FEATURES), out_dims=(V, 3)), "batch dynamic"),
    ],
    ids=["output_name", "input_name", "output_cols_2", "output_cols_4", "input_cols", "fixed_batch"],
)
def test_wrong_io_is_invalid(tmp_path: Path, model: object, words: str) -> None:
    p = install(tmp_path, model())  # type: ignore[operator]
    with pytest.raises(ModelLoadError) as ei:
        Scorer(p, V)
    assert ei.value.reason == "invalid"
    assert words in str(ei.value)


def test_declared_shape_contradicted_by_the_graph_is_invalid(tmp_path: Path) -> None:
    # Declares [batch, 3] but computes [batch, 4]: onnxruntime's shape inference leaves [batch, None].
    p = install(tmp_path, linear_model(w=np.zeros((N_FEATURES, 4), np.float32), b=np.zeros(4, np.float32)))
    with pytest.raises(ModelLoadError) as ei:
        Scorer(p, V)
    assert ei.value.reason == "invalid"


def test_a_model_that_cannot_run_fails_its_warm_up(tmp_path: Path) -> None:
    p = install(tmp_path, gather_model(offset=100))  # every run, zeros included, indexes out of the table
    with pytest.raises(ModelLoadError) as ei:
        Scorer(p, V)
    assert ei.value.reason == "invalid"
    assert "warm-up" in str(ei.value) and "Gather" in str(ei.value)


def test_manifest_names_another_file_or_contract(tmp_path: Path) -> None:
    p = install(tmp_path, linear_model(), model_file="other.onnx")
    with pytest.raises(ModelLoadError) as ei:
        Scorer(p, V)
    assert ei.value.reason == "invalid" and "other.onnx" in str(ei.value)
    p = install(tmp_path, linear_model(), outputs=["fill_prob", "cost_bps", "markout_bps"])
    with pytest.raises(ModelLoadError) as ei:
        Scorer(p, V)
    assert ei.value.reason == "invalid" and "contract" in str(ei.value)
    p = install(tmp_path, linear_model(), format=2)
    with pytest.raises(ModelLoadError) as ei:
        Scorer(p, V)
    assert ei.value.reason == "invalid" and "format 2" in str(ei.value)


# --- score failures ---------------------------------------------------------------------------------------------


def test_non_finite_scores_fall_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    with caplog.at_level(logging.WARNING, logger="sor.scoring"):
        sc = Scorer(install(tmp_path, nan_model()), V, on_fallback=calls.append)
    assert "non-finite scores on all-zero features" in caplog.text  # loads, with a warning
    assert sc.failures["non_finite"] == 0
    assert sc.score(features(1)) is None
    assert sc.failures == {"error": 0, "non_finite": 1, "over_budget": 0}
    assert sc.last_failure == "non_finite"
    assert calls == ["non_finite"]


def test_onnxruntime_error_falls_back_and_recovers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    sc = Scorer(install(tmp_path, gather_model()), V, on_fallback=calls.append)  # zeros are fine
    x = features(2)
    x[:, 0] = 3.0
    out = sc.score(x)
    assert out is not None
    np.testing.assert_allclose(out, reference(x), rtol=1e-5, atol=1e-5)
    bad = x.copy()
    bad[1, 0] = 1e6  # index out of the table: onnxruntime raises inside the run
    with caplog.at_level(logging.WARNING, logger="sor.scoring"):
        assert sc.score(bad) is None
    assert sc.failures["error"] == 1 and sc.last_failure == "error" and calls == ["error"]
    assert "could not score" in caplog.text
    out = sc.score(x)  # the next order scores again
    assert out is not None
    np.testing.assert_allclose(out, reference(x), rtol=1e-5, atol=1e-5)
    assert sc.last_failure == "error"  # the last failure is remembered, not cleared


@pytest.mark.parametrize("shape", [(V - 1, N_FEATURES), (V, N_FEATURES - 1), (1, N_FEATURES), (V * N_FEATURES,)])
def test_wrong_feature_shape_is_an_error_not_a_broadcast(tmp_path: Path, shape: tuple[int, ...]) -> None:
    sc = Scorer(install(tmp_path, linear_model()), V)
    assert sc.score(np.zeros(shape, np.float32)) is None
    assert sc.failures["error"] == 1


def test_not_an_array_is_an_error(tmp_path: Path) -> None:
    sc = Scorer(install(tmp_path, linear_model()), V)
    assert sc.score([[0.0] * N_FEATURES] * V) is None  # type: ignore[arg-type]
    assert sc.last_failure == "error"


def test_over_budget_falls_back(tmp_path: Path) -> None:
    calls: list[str] = []
    sc = Scorer(install(tmp_path, linear_model()), V, budget_us=1, on_fallback=calls.append)
    for _ in range(3):
        assert sc.score(features(1)) is None  # no onnxruntime run takes under a microsecond
    assert sc.failures == {"error": 0, "non_finite": 0, "over_budget": 3}
    assert sc.last_failure == "over_budget" and calls == ["over_budget"] * 3


def test_failure_warnings_are_rate_limited(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sc = Scorer(install(tmp_path, nan_model()), V)
    x = features(1)
    with caplog.at_level(logging.WARNING, logger="sor.scoring"):
        caplog.clear()
        for _ in range(2_500):
            sc.score(x)
    assert sc.failures["non_finite"] == 2_500
    assert len([r for r in caplog.records if r.name == "sor.scoring"]) == 3  # 1st, 1001st, 2001st


def test_a_raising_callback_does_not_escape(tmp_path: Path) -> None:
    def boom(reason: str) -> None:
        raise RuntimeError("metrics down")

    sc = Scorer(install(tmp_path, nan_model()), V, on_fallback=boom)
    assert sc.score(features(1)) is None
    assert sc.failures["non_finite"] == 1


# --- providers --------------------------------------------------------------------------------------------------


@pytest.mark.skipif(cuda_available(), reason="CUDA is available here")
def test_cuda_requested_without_cuda(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as ei:
        Scorer(install(tmp_path, linear_model()), V, provider="cuda")
    assert "CUDAExecutionProvider" in str(ei.value)


@pytest.mark.skipif(cuda_available(), reason="CUDA is available here")
def test_auto_without_cuda_is_cpu(tmp_path: Path) -> None:
    assert Scorer(install(tmp_path, linear_model()), V, provider="auto").provider == "cpu"


@pytest.mark.skipif(not cuda_available(), reason="no CUDA execution provider in this onnxruntime")
@pytest.mark.parametrize("provider", ["cuda", "auto"])
def test_cuda_scores_match(tmp_path: Path, provider: str) -> None:
    sc = Scorer(install(tmp_path, linear_model()), V, provider=provider)  # type: ignore[arg-type]
    assert sc.provider == "cuda"
    x = features(7)
    out = sc.score(x)
    assert out is not None
    np.testing.assert_allclose(out, reference(x), rtol=1e-4, atol=1e-4)
