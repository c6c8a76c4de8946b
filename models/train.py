"""Train, validate and export the venue model: ``train(dataset, out_dir)``.

1. Split the decisions (groups) 80/20 into training and held-out rows; the
   MLP splits a further 10% of the training groups off for early stopping,
   so the held-out metrics come from rows that chose nothing.
2. Fit the MLP (``models.mlp``).
3. Validate on the held-out rows against a baseline that predicts the
   training means: MAE/RMSE for cost and markout on filled rows; log loss,
   Brier score, calibration in the large and a reliability table for the
   fill probability.
4. Export ``model.onnx`` and check onnxruntime (CPU) against numpy on the
   held-out rows: ``ParityError`` (and no model file) unless every score is
   within 1e-5 + 1e-6 * |score| (``models.export.PARITY_ATOL``/``PARITY_RTOL``;
   max abs and max relative differences go into the manifest).
5. Write ``model.json`` (``router.scoring.ModelManifest``) with the sha256 of
   the ONNX bytes, the feature list, dataset summary, hyper-parameters and
   metrics.

``python -m models.train DATA.npz OUT_DIR`` does the same from a saved dataset.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.dataset import Dataset, split_by_group
from models.export import (
    INPUT_NAME,
    OPSET,
    OUTPUT_NAME,
    PARITY_ATOL,
    PARITY_RTOL,
    Predictor,
    compare,
    export_onnx,
    parity_ok,
)
from models.mlp import HEADS, MLP
from router.features.catalogue import FEATURE_NAMES, N_FEATURES
from router.scoring.manifest import ModelManifest, write_manifest

__all__ = ["MANIFEST_FILE", "MODEL_FILE", "ParityError", "baseline_means", "evaluate", "main", "train"]

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "model.json"  # router.scoring.manifest_path(MODEL_FILE)
_P_EPS = 1e-7


class ParityError(RuntimeError):
    """The exported ONNX graph does not compute what the numpy model computes."""


def _f(x: float | np.floating[Any]) -> float | None:
    """A JSON-safe float: rounded, and None when not finite."""
    v = float(x)
    return round(v, 6) if math.isfinite(v) else None


def _regression(pred: npt.NDArray[np.float32], obs: npt.NDArray[np.float32], base: float) -> dict[str, Any]:
    n = int(obs.size)
    if n == 0:
        return {"n": 0, "mae": None, "rmse": None, "baseline_mae": None, "baseline_rmse": None, "mae_skill": None}
    e = pred.astype(np.float64) - obs
    b = base - obs.astype(np.float64)
    mae, bmae = float(np.abs(e).mean()), float(np.abs(b).mean())
    return {
        "n": n,
        "mae": _f(mae),
        "rmse": _f(math.sqrt(float((e * e).mean()))),
        "bias": _f(float(e.mean())),
        "baseline_mae": _f(bmae),
        "baseline_rmse": _f(math.sqrt(float((b * b).mean()))),
        # 1 - MAE / baseline MAE: 0 = no better than the mean, 1 = perfect.
        "mae_skill": _f(1.0 - mae / bmae) if bmae > 0 else None,
    }


def _log_loss(p: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> float:
    q = np.clip(p, _P_EPS, 1 - _P_EPS)
    return float(-(y * np.log(q) + (1 - y) * np.log1p(-q)).mean())


def _classification(pred: npt.NDArray[np.float32], obs: npt.NDArray[np.float32], base: float) -> dict[str, Any]:
    n = int(obs.size)
    if n == 0:
        return {"n": 0}
    p = pred.astype(np.float64)
    y = obs.astype(np.float64)
    bp = np.full_like(y, base)
    bins: list[dict[str, Any]] = []
    edges = np.linspace(0.0, 1.0, 11)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, 9)
    for k in range(10):
        sel = which == k
        if sel.any():
            bins.append({
                "lo": _f(edges[k]), "hi": _f(edges[k + 1]), "n": int(sel.sum()),
                "mean_pred": _f(p[sel].mean()), "mean_obs": _f(y[sel].mean()),
            })
    ll, bll = _log_loss(p, y), _log_loss(bp, y)
    brier, bbrier = float(((p - y) ** 2).mean()), float(((bp - y) ** 2).mean())
    return {
        "n": n,
        "log_loss": _f(ll),
        "brier": _f(brier),
        "mean_pred": _f(p.mean()),
        "mean_obs": _f(y.mean()),
        # mean predicted - mean observed: > 0 means the model promises more fill than it gets.
        "calibration_in_the_large": _f(p.mean() - y.mean()),
        "baseline_log_loss": _f(bll),
        "baseline_brier": _f(bbrier),
        "brier_skill": _f(1.0 - brier / bbrier) if bbrier > 0 else None,
        "reliability": bins,
    }


def baseline_means(train_ds: Dataset) -> dict[str, float]:
    """Training-set means, the constant predictor the metrics compare against."""

    def mean(a: npt.NDArray[np.float32]) -> float:
        return float(a.astype(np.float64).mean()) if a.size else 0.0

    return {
        "cost_bps": mean(train_ds.cost_bps[train_ds.cost_mask]),
        "fill_prob": mean(train_ds.fill_frac),
        "markout_bps": mean(train_ds.markout_bps[train_ds.markout_mask]),
    }


def evaluate(model: Predictor, ds: Dataset, baseline: dict[str, float]) -> dict[str, Any]:
    """Per-head metrics of ``model`` on ``ds`` next to the constant ``baseline``."""
    pred = model.predict(ds.X) if len(ds) else np.zeros((0, 3), np.float32)
    cm, mm = ds.cost_mask, ds.markout_mask
    return {
        "rows": len(ds),
        "decisions": ds.n_groups,
        "filled_rows": int(np.count_nonzero(ds.has_fill)),
        "cost_bps": _regression(pred[cm, 0], ds.cost_bps[cm], baseline["cost_bps"]),
        "fill_prob": _classification(pred[:, 1], ds.fill_frac, baseline["fill_prob"]),
        "markout_bps": _regression(pred[mm, 2], ds.markout_bps[mm], baseline["markout_bps"]),
        "baseline": {k: _f(v) for k, v in baseline.items()},
    }


def train(
    dataset: Dataset,
    out_dir: str | Path,
    *,
    seed: int = 0,
    hidden: int = 64,
    epochs: int = 60,
    batch_size: int = 512,
    lr: float = 2e-3,
    patience: int = 6,
    holdout_fraction: float = 0.2,
    early_stopping_fraction: float = 0.1,
    head_weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    huber_delta: float | None = 1.5,
    clip: float | None = 10.0,
    version: str | None = None,
    created_utc: str | None = None,
    progress: bool = True,
    threads: int | None = 1,
    source: dict[str, Any] | None = None,
    family: str = "mlp",
) -> ModelManifest:
    """Fit, validate and export; writes ``model.onnx`` and ``model.json`` into ``out_dir``.
    ``source``: where the rows came from (simulated scenarios, a journal and
    its time span), kept in the manifest's ``training["source"]``.
    ``family``: "mlp" (``models.mlp``) or "gbm" (LightGBM, ``models.gbm``):
    the same split, validation, parity check and manifest for both."""
    if dataset.n_groups < 3:
        raise ValueError(f"need at least 3 decisions (groups) to split, got {dataset.n_groups}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    fit_ds, held_ds = split_by_group(dataset, holdout_fraction, seed=seed)
    model: Predictor
    training: dict[str, Any] = dataset.summary()
    if family == "gbm":
        from models import gbm

        g = gbm.GBM(seed=seed, threads=threads or 1)
        report_dict = g.fit(fit_ds, valid_fraction=early_stopping_fraction)
        model, export = g, lambda path: gbm.export_onnx(g, path)
        opset = gbm.OPSET
    else:
        mlp = MLP(hidden, seed=seed, clip=clip, head_weights=head_weights, huber_delta=huber_delta)
        report = mlp.fit(
            fit_ds,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            patience=patience,
            valid_fraction=early_stopping_fraction,
            progress=progress,
            threads=threads,
        )
        report_dict = report.as_dict()
        model, export = mlp, lambda path: export_onnx(mlp, path)
        opset = OPSET

    validation = evaluate(model, held_ds, baseline_means(fit_ds))
    onnx_path = out / MODEL_FILE
    export(onnx_path)
    # The held-out rows, plus all-zero features (the scorer's warm-up input)
    # and rows far outside the training range (exercising the clip).
    extremes = np.zeros((3, N_FEATURES), np.float32)
    extremes[1] = 1e6
    extremes[2] = -1e6
    check_x = np.concatenate([held_ds.X, extremes])
    want, got = compare(model, onnx_path, check_x)
    err = np.abs(got.astype(np.float64) - want)
    max_abs = float(err.max()) if err.size else 0.0
    max_rel = float((err / np.maximum(np.abs(want), 1.0)).max()) if err.size else 0.0
    scale = getattr(model, "y_scale", None)
    validation["onnx_parity"] = {
        "rows": int(check_x.shape[0]),
        "max_abs": max_abs,
        "max_rel": max_rel,
        "atol": PARITY_ATOL,
        "atol_scale": None if scale is None else [float(x) for x in np.maximum(1.0, scale)],
        "rtol": PARITY_RTOL,
        "provider": "CPUExecutionProvider",
    }
    if not parity_ok(want, got, scale):
        onnx_path.unlink(missing_ok=True)
        raise ParityError(
            f"ONNX parity failed on {check_x.shape[0]} rows: max abs diff {max_abs:.3g}, "
            f"max rel {max_rel:.3g} (tolerance {PARITY_ATOL:g} x the head's scale + {PARITY_RTOL:g} * |score|)"
        )

    data = onnx_path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    split = {"by": "group", "holdout_fraction": holdout_fraction, "early_stopping_fraction": early_stopping_fraction,
             "fit_rows": len(fit_ds), "holdout_rows": len(held_ds)}
    onnx_info = {"opset": opset, "bytes": len(data), "input": INPUT_NAME, "output": OUTPUT_NAME}
    if isinstance(model, MLP):
        training.update({
            "model": "mlp",
            "layers": [N_FEATURES, hidden, hidden, 3],
            "parameters": model.n_params,
            "activation": "relu",
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "optimizer": "adam",
            "blas_threads": threads,
            "patience": patience,
            "head_weights": list(head_weights),
            "loss": {"cost_bps": "huber" if huber_delta is not None else "mse", "fill_prob": "bce",
                     "markout_bps": "huber" if huber_delta is not None else "mse", "huber_delta": huber_delta},
            "input_clip": clip,
            "constant_features": list(model.constant_features),
        })
    else:
        g_params = getattr(model, "params", {})
        training.update({
            "model": "lightgbm",
            "tree_nodes": getattr(model, "n_params", None),
            "params": {k: v for k, v in g_params.items() if k not in ("verbose", "n_jobs")},
            "loss": {"cost_bps": "l2 on filled rows", "fill_prob": "cross-entropy of the fill fraction "
                     "(weighted binary)", "markout_bps": "l2 on filled rows"},
            "early_stopping_patience": getattr(model, "patience", None),
        })
    training.update({"seed": seed, "split": split, "onnx": onnx_info, **report_dict})
    if source is not None:
        training["source"] = source
    manifest = ModelManifest(
        version=version if version is not None else f"{'gbm' if family == 'gbm' else 'mlp'}-{sha[:12]}",
        model_file=MODEL_FILE,
        sha256=sha,
        features=list(FEATURE_NAMES),
        input=INPUT_NAME,
        output=OUTPUT_NAME,
        outputs=list(HEADS),
        created_utc=created_utc if created_utc is not None else datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        training=training,
        validation=validation,
    )
    write_manifest(out / MANIFEST_FILE, manifest)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.train", description="Train and export the venue model.")
    ap.add_argument("data", nargs="+", type=Path, help="dataset .npz file(s) written by Dataset.save")
    ap.add_argument("out_dir", type=Path, help="directory for model.onnx and model.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--version", default=None)
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    ds = Dataset.concat([Dataset.load(p) for p in args.data])
    m = train(ds, args.out_dir, seed=args.seed, hidden=args.hidden, epochs=args.epochs, batch_size=args.batch_size,
              lr=args.lr, version=args.version, progress=not args.quiet)
    v = m.validation
    print(f"{m.version}: {v['rows']} held-out rows; cost MAE {v['cost_bps'].get('mae')} "
          f"(baseline {v['cost_bps'].get('baseline_mae')}), fill log loss {v['fill_prob'].get('log_loss')} "
          f"(baseline {v['fill_prob'].get('baseline_log_loss')}), markout MAE {v['markout_bps'].get('mae')} "
          f"(baseline {v['markout_bps'].get('baseline_mae')}); parity {v['onnx_parity']['max_abs']:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
