"""``sor train-rl``: the RL planner's Q-function, fitted offline in the
simulator and exported to ONNX (``router.routing.rl`` serves it).

One-step fitted-Q iteration: experience from backtests whose every parent
takes a uniformly random action (``sim.rl_collect``), then one regression
of the reward on (state, action): with one decision per parent the Bellman
target is the reward itself, so the iteration is a single fit. The
regressor is LightGBM (the family of ``models.gbm``: trees need no scaling
of the state's mixed units, and convert to ONNX with exact thresholds);
its target is the parent's shortfall in bps (lower is better), so the
policy takes the action of lowest predicted shortfall.

Validation: the experience is split by run (scenario and seed), early
stopping on the held-out runs; the report gives the held-out error, the
policy's predicted shortfall against the uniform policy's and each
action's share of the greedy choices on the held-out states, and the ONNX
parity on them.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from router.routing.rl import (
    ACTIONS,
    INPUT_NAME,
    N_ACTIONS,
    OUTPUT_NAME,
    STATE_DIM,
    manifest_path,
    state_names,
    with_actions,
)

TRAIN_SCENARIOS = ("calm", "regime", "toxic_dark", "thin")
TRAIN_SEEDS = (101, 102, 103, 104)
PARITY_TOL_BPS = 1e-3


def design(states: Sequence[npt.NDArray[np.float32]], actions: Sequence[int]) -> npt.NDArray[np.float32]:
    """Rows of (state, one-hot action): the Q-model's input."""
    x = np.zeros((len(states), STATE_DIM + N_ACTIONS), dtype=np.float32)
    if len(states):
        x[:, :STATE_DIM] = np.stack(states)
        x[np.arange(len(actions)), STATE_DIM + np.asarray(actions)] = 1.0
    return x


def fit(x: npt.NDArray[np.float32], y: npt.NDArray[np.float64], groups: Sequence[str], *, seed: int = 0,
        valid_fraction: float = 0.25) -> tuple[Any, dict[str, Any]]:
    """LightGBM on (state, action) -> shortfall, early-stopped on held-out runs."""
    import lightgbm as lgb

    runs = sorted(set(groups))
    rng = np.random.default_rng(seed)
    held = set(rng.choice(runs, size=max(1, round(len(runs) * valid_fraction)), replace=False).tolist())
    val = np.array([g in held for g in groups])
    m = lgb.LGBMRegressor(objective="regression", n_estimators=600, learning_rate=0.03, num_leaves=15,
                          min_child_samples=40, subsample=0.8, subsample_freq=1, colsample_bytree=0.8,
                          random_state=seed, n_jobs=1, verbose=-1)
    m.fit(x[~val], y[~val], eval_X=(x[val],), eval_y=(y[val],), callbacks=[lgb.early_stopping(40, verbose=False)])
    pred = m.predict(x[val])
    base = float(np.mean(np.abs(y[val] - y[~val].mean())))
    # The greedy policy on the held-out states, by the model's own values.
    states = x[val][:, :STATE_DIM]
    q = np.stack([m.predict(with_actions(s)) for s in states]) if len(states) else np.zeros((0, N_ACTIONS))
    greedy = q.argmin(axis=1) if len(q) else np.zeros(0, dtype=int)
    report = {
        "rows": len(y), "held_out_rows": int(val.sum()), "held_out_runs": sorted(held),
        "trees": int(getattr(m, "best_iteration_", 0) or m.n_estimators_),
        "held_out_mae_bps": round(float(np.mean(np.abs(pred - y[val]))), 4),
        "held_out_mae_of_the_mean_bps": round(base, 4),
        "predicted_greedy_bps": round(float(q.min(axis=1).mean()), 4) if len(q) else None,
        "predicted_uniform_bps": round(float(q.mean()), 4) if len(q) else None,
        "greedy_share": {f"{a[0]}{'' if a[1] is None else f'@{a[1]}ms'}": round(float((greedy == i).mean()), 4)
                         for i, a in enumerate(ACTIONS)} if len(q) else {},
    }
    return m, report


def export(model: Any, path: Path, version: str, report: dict[str, Any],
           check: npt.NDArray[np.float32] | None = None) -> float:
    """The regressor as ONNX (``state_action`` -> ``q``) and its manifest;
    returns the largest |ONNX - LightGBM| over ``check`` (bps)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    from models.gbm import OPSET, _exact_thresholds

    d = STATE_DIM + N_ACTIONS
    proto = convert_lightgbm(model, initial_types=[(INPUT_NAME, FloatTensorType([None, d]))], target_opset=OPSET)
    _exact_thresholds(proto, model.booster_)
    out = proto.graph.output[0].name
    if out != OUTPUT_NAME:
        proto.graph.node.append(helper.make_node("Identity", [out], [OUTPUT_NAME], name="q_out"))
        proto.graph.output[0].name = OUTPUT_NAME
    onnx.checker.check_model(proto)
    blob = proto.SerializeToString()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    parity = 0.0
    if check is not None and len(check):
        sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
        (got,) = sess.run([OUTPUT_NAME], {INPUT_NAME: check})
        parity = float(np.max(np.abs(np.asarray(got).reshape(-1) - model.predict(check))))
    manifest = {"version": version, "file": path.name, "sha256": hashlib.sha256(blob).hexdigest(),
                "state": state_names(), "actions": [list(a) for a in ACTIONS], "family": "lightgbm",
                "method": "one-step fitted-Q over the ML planner's strategies and dark rests",
                "parity_max_abs_bps": parity, **report}
    manifest_path(path).write_text(json.dumps(manifest, indent=2) + "\n")
    return parity


def run_train_rl(out: Path, scenarios: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
                 parents: int | None = None, model_path: str | None = None, quiet: bool = False) -> int:
    from sim.rl_collect import collect

    t0 = time.time()
    scs, sds = list(scenarios or TRAIN_SCENARIOS), list(seeds or TRAIN_SEEDS)

    def note(name: str, seed: int, n: int) -> None:
        if not quiet:
            print(f"  {name} seed {seed}: {n} parents so far", flush=True)

    exp = collect(scs, sds, parents, model_path, progress=note)
    x = design(exp.states, exp.actions)
    y = np.asarray(exp.shortfalls, dtype=np.float64)
    model, report = fit(x, y, exp.groups)
    version = f"rl-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    report.update({"scenarios": scs, "seeds": sds, "train_seconds": round(time.time() - t0, 1)})
    parity = export(model, out, version, report, check=x[:2000])
    print(json.dumps({k: v for k, v in report.items() if k != "held_out_runs"}, indent=2))
    print(f"wrote {out} and {manifest_path(out)} (ONNX parity {parity:.2e} bps)")
    if parity > PARITY_TOL_BPS:
        print(f"ONNX parity {parity:.2e} bps is over {PARITY_TOL_BPS}: not fit to serve")
        return 1
    return 0
