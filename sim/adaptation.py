"""``sor backtest --adaptation``: how fast each policy adapts after a
scenario's regime changes, and how it starts with no venue history.

Every scenario's first ``COLD_START`` parents are read as a cold start
(each policy's mean shortfall there against the displayed baseline's).

Per change (a time at which any venue's sim parameters change), each
policy's parents are lined up by their index after the change, shortfalls
averaged across seeds (the same parents in every policy: the flow has its
own seed), and read three ways:

- **bins**: the mean shortfall per ``BIN``-parent bin from ``BINS_BEFORE``
  bins before the change to the end (the adaptation plot);
- **recovered within**: the first offset k (a multiple of ``BIN``) from which
  the policy's next ``WINDOW`` parents average within ``RECOVERY_TOL`` of its
  post-change steady level, which is the policy's shortfall on the
  scenario's ``:after`` market (the changes in force from the start, so its
  learners had all run long to learn them), same seeds;
- **worst window**: the largest excess, over every ``WINDOW``-parent window
  after the change, of the policy's mean shortfall over the best fixed
  baseline's (the baseline with the lowest post-change mean) in the same
  window.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sim.backtest import EPOCH_NS, POLICIES, Backtest, RunResult, mean_ci
from sim.config import SimClusterConfig
from sim.oracle import ORACLE

BIN = 25
BINS_BEFORE = 4
WINDOW = 50
RECOVERY_TOL = 0.10
COLD_START = 50
BASELINES = ("static", "equal", "displayed")
DEFAULT_SCENARIOS = ("swap_pools", "regime", "cold_start")


def change_times_ns(cfg: SimClusterConfig) -> list[int]:
    """The scenario's regime changes after its start, in time order (on the
    simulated clock, as the parents' ``arrival_ns``)."""
    if cfg.scenario is None:
        return []
    return sorted({EPOCH_NS + int(r.at_s * 1e9) for r in cfg.scenario.regimes if r.at_s > 0})


def per_parent(run: RunResult) -> list[dict[str, Any]]:
    """Every parent's own result, in arrival order: what the backtest's JSON
    carries beside the summary."""
    return [{
        "cl_ord_id": p.cl_ord_id, "t_s": round((p.arrival_ns - EPOCH_NS) / 1e9, 4), "qty": p.qty,
        "shortfall_bps": round(p.shortfall_bps(), 4), "fill_rate": round(p.fill_rate, 4),
        "completion_ms": round((p.done_ns - p.arrival_ns) / 1e6, 3) if p.done_ns is not None else None,
        "plan": p.plan,
    } for p in run.parents]


def _first_after(run: RunResult, t_ns: int) -> int:
    return next((i for i, p in enumerate(run.parents) if p.arrival_ns >= t_ns), len(run.parents))


def _seed_mean(runs: list[RunResult]) -> np.ndarray:
    """Per-parent shortfall averaged across seeds (runs of one policy; the
    parents' count is the same in each, the flow being the scenario's)."""
    n = min(len(r.parents) for r in runs)
    return np.mean([[p.shortfall_bps() for p in r.parents[:n]] for r in runs], axis=0)


def _windows(x: np.ndarray, w: int) -> np.ndarray:
    if len(x) < w:
        return np.array([x.mean()]) if len(x) else np.array([])
    c = np.concatenate([[0.0], np.cumsum(x)])
    return (c[w:] - c[:-w]) / w


def analyse(cfg: SimClusterConfig, runs: dict[str, list[RunResult]],
            steady: dict[str, list[RunResult]]) -> list[dict[str, Any]]:
    """``runs[policy]`` on the scenario and ``steady[policy]`` on its
    ``:after`` market, one run per seed in the same seed order."""
    out = []
    pols = list(runs)
    curves = {pol: _seed_mean(rs) for pol, rs in runs.items()}
    for t in change_times_ns(cfg):
        c = _first_after(next(iter(runs.values()))[0], t)
        after = {pol: curves[pol][c:] for pol in pols}
        base = [pol for pol in pols if pol in BASELINES]
        best = min(base, key=lambda p: float(after[p].mean())) if base else None
        start = max(0, c - BINS_BEFORE * BIN)
        rows = {}
        for pol in pols:
            x = curves[pol]
            bins = [round(float(x[i:i + BIN].mean()), 3) for i in range(start, len(x) - BIN + 1, BIN)]
            level = float(np.mean([[p.shortfall_bps() for p in r.parents] for r in steady[pol]]))
            wins = _windows(after[pol], WINDOW)
            recovered = next((k for k in range(0, len(wins), BIN)
                              if wins[k] <= level + RECOVERY_TOL * abs(level)), None)
            row: dict[str, Any] = {
                "bins_bps": bins, "steady_bps": round(level, 3),
                "post_change_bps": round(float(after[pol].mean()), 3),
                "recovered_within_parents": recovered,
            }
            if best is not None and pol != best:
                excess = wins - _windows(after[best], WINDOW)
                k = int(np.argmax(excess))
                row["worst_window_vs_best_baseline_bps"] = round(float(excess[k]), 3)
                row["worst_window_at"] = k
            rows[pol] = row
        out.append({"change_s": (t - EPOCH_NS) / 1e9, "first_parent": c, "bin_start": start - c,
                    "best_baseline": best, "policies": rows})
    return out


def cold_start(runs: dict[str, list[RunResult]], first: int = COLD_START) -> dict[str, Any]:
    """Each policy's mean shortfall over the first ``first`` parents (every
    backtest starts with no venue history), seeds pooled, with its interval,
    and against the displayed baseline's over the same parents."""
    out: dict[str, Any] = {"parents": first}
    for pol, rs in runs.items():
        out[pol] = mean_ci([p.shortfall_bps() for r in rs for p in r.parents[:first]])
    if "displayed" in out:
        d = out["displayed"][0]
        out["vs_displayed_pct"] = {pol: round((out[pol][0] - d) / abs(d) * 100, 2) if d else 0.0
                                   for pol in runs if pol != "displayed"}
    return out


def run(scenarios: list[str], policies: list[str], seeds: list[int], parents: int | None,
        model_path: str | None) -> list[dict[str, Any]]:
    from sim.report import AFTER, make_scorer, scenario_config

    report = []
    for name in scenarios:
        cfg = scenario_config(name)
        markets = [(cfg, False)] + ([(scenario_config(name + AFTER), True)] if change_times_ns(cfg) else [])
        runs: dict[str, list[RunResult]] = {}
        steady: dict[str, list[RunResult]] = {}
        for pol in policies:
            for c, after in markets:
                (steady if after else runs)[pol] = [
                    Backtest(c, pol, make_scorer(c, model_path) if pol in ("ml", "rl") else None, parents=parents,
                             seed=s).run() for s in seeds]
        changes = analyse(cfg, runs, steady) if steady else []
        summary = {pol: mean_ci([float(v) for v in _seed_mean(rs)]) for pol, rs in runs.items()}
        report.append({"scenario": name, "seeds": seeds, "changes": changes, "shortfall_bps": summary,
                       "cold_start": cold_start(runs),
                       "per_parent": {pol: [per_parent(r) for r in rs] for pol, rs in runs.items()}})
    return report


def format_report(report: list[dict[str, Any]]) -> str:
    lines = []
    for sc in report:
        cs = sc["cold_start"]
        pct = cs.get("vs_displayed_pct", {})
        lines.append(f"{sc['scenario']}: first {cs['parents']} parents (no venue history), seeds {sc['seeds']}: "
                     + ", ".join(f"{pol} {cs[pol][0]:.2f}" + (f" ({pct[pol]:+.1f}% vs displayed)" if pol in pct else "")
                                 for pol in sc["shortfall_bps"]))
        for ch in sc["changes"]:
            lines.append(f"{sc['scenario']}: change at {ch['change_s']:.1f} s (parent {ch['first_parent']}), "
                         f"seeds {sc['seeds']}, best baseline after it: {ch['best_baseline']}")
            lines.append(f"  {'policy':<10} {'after bps':>9} {'steady bps':>10} {'recovered':>10} "
                         f"{'worst 50-window vs best baseline':>33}")
            for pol, r in ch["policies"].items():
                rec = r["recovered_within_parents"]
                worst = r.get("worst_window_vs_best_baseline_bps")
                wtxt = f"{worst:+.2f} bps (from parent +{r['worst_window_at']})" if worst is not None else "-"
                lines.append(f"  {pol:<10} {r['post_change_bps']:9.2f} {r['steady_bps']:10.2f} "
                             f"{('never' if rec is None else f'{rec} parents'):>10} {wtxt:>33}")
    return "\n".join(lines)


def plot(report: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(sc, ch) for sc in report for ch in sc["changes"]]
    if not panels:
        return
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.4 * len(panels)), squeeze=False)
    for ax, (sc, ch) in zip(axes[:, 0], panels):
        for pol, r in ch["policies"].items():
            xs = [ch["bin_start"] + i * BIN + BIN / 2 for i in range(len(r["bins_bps"]))]
            ax.plot(xs, r["bins_bps"], marker="o", markersize=3, label=pol)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(f"{sc['scenario']}: regime change at {ch['change_s']:.0f} s, seeds {sc['seeds']}")
        ax.set_xlabel(f"parents after the change ({BIN}-parent bins)")
        ax.set_ylabel("shortfall bps")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(scenarios: list[str] | None, policies: list[str] | None, seeds: list[int] | None, parents: int | None,
         model_path: str | None, json_path: str, png_path: str) -> int:
    report = run(scenarios or list(DEFAULT_SCENARIOS), policies or [*POLICIES, ORACLE], seeds or [1, 2, 3],
                 parents, model_path)
    print(format_report(report))
    Path(json_path).write_text(json.dumps(report) + "\n")
    plot(report, Path(png_path))
    print(f"\nwrote {json_path} and {png_path}")
    return 0
