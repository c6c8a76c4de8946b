"""``sor train``: simulate the scenarios with an exploring policy, or read
what a router did from its journal (``--journal``), or both
(``--journal ... --with-sim``); train the venue model on what happened,
export it to ONNX with its manifest.

Training seeds are kept apart from the backtest's evaluation seed (``sor
backtest --seed``, default 1) so the model is judged on markets it has not
seen. A journal's rows are labelled by ``models.labels``, the definition
the simulated rows use, with the router's own NBBO mid for markouts.
"""

from __future__ import annotations

import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.dataset import Dataset
from models.explore import explore
from models.labels import label_rows
from models.train import train
from sim.report import SCENARIOS, scenario_config

TRAIN_SEEDS = (101, 102, 103, 104)


def journal_dataset(journal: str, since_ns: int | None = None, until_ns: int | None = None
                    ) -> tuple[Dataset, dict[str, Any]]:
    """A journal's first-wave children as training rows, and what the
    manifest says of them (source, sessions, time span, counts)."""
    from sim.journal_run import read_journal

    run = read_journal(journal, since_ns, until_ns)
    cfg = run.cfg
    ds = label_rows(run.children.values(), run.results, run.features, {v.name: i for i, v in enumerate(cfg.venues)},
                    {v.name: v.take_fee_bps for v in cfg.venues}, run.mid_at, "journal")
    decisions = list(run.logged.values())
    first, last = run.span_ns
    info = {"journal": redact_url(journal), "sessions": run.sessions, "decisions": len(decisions),
            "explored": sum(1 for lg in decisions if lg.decision.explored),
            "models": sorted({lg.decision.model_version or "-" for lg in decisions}),
            "span_ns": [first, last], "span_utc": [_utc(first), _utc(last)], "rows": len(ds)}
    return ds, info


def redact_url(url: str) -> str:
    """A journal URL without its password (it goes into a manifest)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _utc(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if ns else ""


def run_train(scenarios: list[str] | None, seeds: list[int] | None, parents: int | None, out_dir: Path,
              hidden: int, epochs: int, dataset_path: Path | None, progress: bool = True,
              journal: str | None = None, with_sim: bool = False, family: str = "mlp") -> int:
    t0 = time.monotonic()
    parts: list[Dataset] = []
    source: dict[str, Any] = {}
    if journal is not None:
        ds_j, source["journal"] = journal_dataset(journal)
        j = source["journal"]
        print(f"journal {j['journal']}: {j['decisions']} decisions ({j['explored']} explored), {len(ds_j)} rows, "
              f"sessions {j['sessions']}, {j['span_utc'][0]} .. {j['span_utc'][1]}")
        if not len(ds_j):
            print("sor train: the journal holds no routed decision with an outcome", file=sys.stderr)
            return 1
        parts.append(ds_j)
    if journal is None or with_sim:
        names = list(scenarios or SCENARIOS)
        cfgs = [scenario_config(s) for s in names]
        ds_s = explore(cfgs, seeds or list(TRAIN_SEEDS), parents, progress=progress)
        source["simulated"] = {"scenarios": names, "seeds": list(seeds or TRAIN_SEEDS), "decisions": ds_s.n_groups,
                               "rows": len(ds_s)}
        print(f"simulated {ds_s.n_groups} decisions, {len(ds_s)} rows in {time.monotonic() - t0:.1f}s")
        parts.append(ds_s)
    ds: Dataset = Dataset.concat(parts)
    if dataset_path is not None:
        ds.save(dataset_path)
        print(f"dataset written to {dataset_path}")
    m = train(ds, out_dir, hidden=hidden, epochs=epochs, progress=progress, source=source, family=family)
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
