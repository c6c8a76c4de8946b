"""``sor train``: simulate the scenarios with an exploring policy, train the
venue model on what happened, export it to ONNX with its manifest.

Training seeds are kept apart from the backtest's evaluation seed (``sor
backtest --seed``, default 1) so the model is judged on markets it has not
seen.
"""

from __future__ import annotations

import time
from pathlib import Path

from models.dataset import Dataset
from models.explore import explore
from models.train import train
from sim.report import SCENARIOS, scenario_config

TRAIN_SEEDS = (101, 102, 103, 104)


def run_train(scenarios: list[str] | None, seeds: list[int] | None, parents: int | None, out_dir: Path,
              hidden: int, epochs: int, dataset_path: Path | None, progress: bool = True) -> int:
    t0 = time.monotonic()
    cfgs = [scenario_config(s) for s in (scenarios or SCENARIOS)]
    ds: Dataset = explore(cfgs, seeds or list(TRAIN_SEEDS), parents, progress=progress)
    print(f"simulated {ds.n_groups} decisions, {len(ds)} rows in {time.monotonic() - t0:.1f}s")
    if dataset_path is not None:
        ds.save(dataset_path)
        print(f"dataset written to {dataset_path}")
    m = train(ds, out_dir, hidden=hidden, epochs=epochs, progress=progress)
    v = m.validation
    size = (out_dir / m.model_file).stat().st_size
    print(f"model {m.version}: {out_dir / m.model_file} ({size / 1024:.1f} KiB), manifest {out_dir / 'model.json'}")
    print(f"  held-out rows {v['rows']}: cost MAE {v['cost_bps'].get('mae'):.3f} bps "
          f"(mean baseline {v['cost_bps'].get('baseline_mae'):.3f}); fill log loss "
          f"{v['fill_prob'].get('log_loss'):.4f} (baseline {v['fill_prob'].get('baseline_log_loss'):.4f}); "
          f"markout MAE {v['markout_bps'].get('mae'):.3f} (baseline {v['markout_bps'].get('baseline_mae'):.3f}); "
          f"ONNX parity max |diff| {v['onnx_parity']['max_abs']:.2g}")
    print(f"done in {time.monotonic() - t0:.1f}s")
    return 0
