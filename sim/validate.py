"""``sor model validate CANDIDATE [--against champion]``: the gate a model
passes before it may become challenger or champion.

Three parts, each with its verdict, and the gate passes when none fails:

* **Simulation**: every scenario, several fixed seeds, the candidate and
  the champion routing the very same parent streams with the ML planner
  (exploration off, so both are their greedy selves). The difference is
  taken parent by parent (same ClOrdID, same seed), pooled over the seeds,
  with its 95% interval. Fails when the candidate is worse beyond the
  interval on any scenario, or better beyond it on none (a model that
  changes nothing is not worth a promotion).
* **Journal** (``--journal``): off-policy estimates of the candidate's
  cost per parent on the logged traffic (``models.ope``: IPS,
  self-normalised IPS, doubly robust, each with its interval), beside the
  champion's estimated the same way and the logged policy's own mean.
  Fails when the candidate's DR interval lies wholly above the champion's;
  says "inconclusive" (not a failure) when the candidate's choices rest on
  fewer than ``MIN_EFFECTIVE_N`` decisions; "skipped" without a journal.
* **Latency**: one scoring run per order across all venues, on feature
  rows the simulation recorded, p50/p99 against ``model.budget_us``.

It writes ``report.txt``, ``report.json`` and ``report.png`` into
``--out``, records the verdict in the candidate's manifest when the
candidate is a registry version, and exits 1 when the gate fails.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from models.ope import Estimate, estimate_all
from router.config import Config, LearningConfig
from router.routing.ml import expected_costs, rank
from router.scoring.onnx import Scorer
from sim.backtest import Backtest, mean_ci
from sim.config import SimClusterConfig
from sim.journal_run import Logged, read_journal
from sim.report import SCENARIOS, make_scorer, scenario_config

GATE_SEEDS = (1, 2, 3)
"""Evaluation seeds: apart from training's (101..)."""
MIN_EFFECTIVE_N = 30.0
LATENCY_RUNS = 3000


def greedy(cfg: SimClusterConfig) -> SimClusterConfig:
    """The scenario with exploration off: the gate compares models, not draws."""
    return msgspec.structs.replace(cfg, learning=LearningConfig(explore_budget_bps=0.0))


# ------------------------------------------------------------ simulation


def paired(a: dict[str, float], b: dict[str, float]) -> tuple[float, float, float]:
    """Mean of ``a - b`` over the keys both have, with its 95% interval."""
    return mean_ci([a[k] - b[k] for k in a if k in b])


def sim_part(candidate: str, champion: str, scenarios: Sequence[str], seeds: Sequence[int],
             parents: int | None) -> tuple[list[dict[str, Any]], npt.NDArray[np.float32]]:
    """Per scenario the two models' shortfall and their paired difference;
    and feature rows the runs saw (for the latency part)."""
    rows: list[dict[str, Any]] = []
    feats: list[npt.NDArray[np.float32]] = []
    for name in scenarios:
        cfg = greedy(scenario_config(name))
        cand_all: list[float] = []
        champ_all: list[float] = []
        diffs: list[float] = []
        for seed in seeds:
            out: list[dict[str, float]] = []
            for path in (candidate, champion):
                bt = Backtest(cfg, "ml", make_scorer(cfg, path), parents=parents, seed=seed, record=not feats)
                run = bt.run()
                out.append({f"{seed}:{p.cl_ord_id}": p.shortfall_bps() for p in run.parents})
                if bt.record:
                    feats += [r.features for r in bt.rows.values()]
            cand_all += out[0].values()
            champ_all += out[1].values()
            diffs += [out[0][k] - out[1][k] for k in out[0] if k in out[1]]
        diff = mean_ci(diffs)
        verdict = "worse" if diff[1] > 0 else ("better" if diff[2] < 0 else "no different")
        rows.append({"scenario": cfg.scenario.name if cfg.scenario else name, "seeds": list(seeds),
                     "parents": len(diffs),
                     "candidate_bps": mean_ci(cand_all), "champion_bps": mean_ci(champ_all),
                     "difference_bps": diff, "verdict": verdict})
    x = np.stack(feats) if feats else np.zeros((0, 0, 0), np.float32)
    return rows, x


def sim_verdict(rows: list[dict[str, Any]]) -> tuple[bool, str]:
    worse = [r["scenario"] for r in rows if r["verdict"] == "worse"]
    better = [r["scenario"] for r in rows if r["verdict"] == "better"]
    if worse:
        return False, f"worse than the champion beyond the 95% interval on {', '.join(worse)}"
    if not better:
        return False, "better than the champion beyond the 95% interval on no scenario"
    return True, f"better on {', '.join(better)}, no worse elsewhere"


# ---------------------------------------------------------------- journal


def ope_part(journal: str, models: dict[str, str]) -> dict[str, Any]:
    """OPE of each model (name -> ONNX path) on the journal's decisions that
    were scored, not fallen back, and whose parent finished."""
    run = read_journal(journal)
    cfg: Config = run.cfg
    logged: list[Logged] = [lg for lg in run.finished() if lg.decision.features is not None
                            and lg.decision.scores is not None and lg.decision.fallback is None
                            and lg.decision.ranking]
    out: dict[str, Any] = {"journal": journal, "decisions": len(logged),
                           "explored": sum(1 for lg in logged if lg.decision.explored)}
    if not logged:
        out["models"] = {}
        return out
    reward = np.array([lg.result.shortfall_bps() for lg in logged])
    prop = np.array([lg.decision.propensity for lg in logged])
    venues = logged[0].decision.venues
    act = np.array([venues.index(lg.decision.ranking[0]) for lg in logged], dtype=np.int64)
    dark = [v.kind.value == "dark" for v in cfg.venues]
    fees = [v.take_fee_bps for v in cfg.venues]
    wf = cfg.waterfall
    out["logged_bps"] = mean_ci(reward.tolist())
    out["min_propensity"] = float(prop.min())
    res: dict[str, Any] = {}
    for name, path in models.items():
        mc = msgspec.structs.replace(cfg.model, path=path, budget_us=0)
        scorer = Scorer(mc.path, len(venues), provider=mc.provider, threads=mc.threads, budget_us=0)
        costs = np.zeros((len(logged), len(venues)))
        target = np.zeros(len(logged), dtype=np.int64)
        for i, lg in enumerate(logged):
            s = scorer.score(lg.decision.features)  # type: ignore[arg-type]
            if s is None:
                raise RuntimeError(f"{name} could not score decision {lg.decision.order_id}: {scorer.last_failure}")
            costs[i] = expected_costs(s, wf.leak_weight, wf.unfilled_cost_bps, dark, fees)
            target[i] = rank(costs[i].tolist(), venues, lg.venues_up)[0]
        est = estimate_all(reward, prop, act, target, costs)
        res[name] = {"version": scorer.version, "agrees_with_logged": float((target == act).mean()),
                     **{k: e.as_dict() for k, e in est.items()}}
    out["models"] = res
    return out


def ope_verdict(ope: dict[str, Any] | None) -> tuple[bool | None, str]:
    if ope is None:
        return None, "skipped: no --journal"
    models = ope.get("models") or {}
    if "candidate" not in models:
        return None, "skipped: the journal holds no scored decision with an outcome"
    cand, champ = models["candidate"]["dr"], models.get("champion", {}).get("dr")
    if cand["effective_n"] < MIN_EFFECTIVE_N:
        return None, (f"inconclusive: the candidate's choices rest on {cand['effective_n']:.0f} decisions "
                      f"(< {MIN_EFFECTIVE_N:.0f}); more exploration or more traffic")
    if champ is not None and cand["lo"] > champ["hi"]:
        return False, (f"DR estimate {cand['mean']:.2f} [{cand['lo']:.2f}, {cand['hi']:.2f}] bps is above the "
                       f"champion's {champ['mean']:.2f} [{champ['lo']:.2f}, {champ['hi']:.2f}]")
    return True, f"DR estimate {cand['mean']:.2f} [{cand['lo']:.2f}, {cand['hi']:.2f}] bps"


# ---------------------------------------------------------------- latency


def latency_part(path: str, feats: npt.NDArray[np.float32], budget_us: int, runs: int = LATENCY_RUNS
                 ) -> dict[str, Any]:
    """p50/p99 of one scoring run (one order, all venues) over recorded rows."""
    n_venues = feats.shape[1]
    scorer = Scorer(path, n_venues, budget_us=0)
    for i in range(min(200, len(feats))):
        scorer.score(feats[i])
    ns = np.empty(runs, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(runs):
        x = feats[i % len(feats)]
        t0 = clock()
        scorer.score(x)
        ns[i] = clock() - t0
    p50, p99 = (float(np.percentile(ns, q)) / 1e3 for q in (50, 99))
    return {"version": scorer.version, "runs": runs, "venues": n_venues, "p50_us": p50, "p99_us": p99,
            "budget_us": budget_us, "passed": budget_us == 0 or p99 <= budget_us}


# ----------------------------------------------------------------- report


def _ci(t: Sequence[float], d: int = 2) -> str:
    return f"{t[0]:.{d}f} [{t[1]:.{d}f}, {t[2]:.{d}f}]"


def format_report(rep: dict[str, Any]) -> str:
    lines = [f"validation of {rep['candidate']['version']} against {rep['champion']['version']}: "
             f"{'PASSED' if rep['passed'] else 'FAILED'}", ""]
    s = rep["simulation"]
    lines.append(f"simulation ({'passed' if s['passed'] else 'FAILED'}: {s['why']}); seeds {s['seeds']}, "
                 "exploration off; shortfall bps, 95% CI, lower is better")
    lines.append(f"  {'scenario':<11} {'candidate':<22} {'champion':<22} {'difference':<22} verdict")
    for r in s["rows"]:
        lines.append(f"  {r['scenario']:<11} {_ci(r['candidate_bps']):<22} {_ci(r['champion_bps']):<22} "
                     f"{_ci(r['difference_bps']):<22} {r['verdict']}")
    o = rep["journal"]
    lines += ["", f"journal ({o['verdict']})"]
    ope = o.get("ope")
    if ope and ope.get("models"):
        lines.append(f"  {ope['decisions']} decisions ({ope['explored']} explored, smallest propensity "
                     f"{ope['min_propensity']:.3g}); the logged policy's own cost {_ci(ope['logged_bps'])} bps")
        for name, m in ope["models"].items():
            ests = ", ".join(f"{k.upper()} {m[k]['mean']:.2f} [{m[k]['lo']:.2f}, {m[k]['hi']:.2f}]"
                             for k in ("ips", "snips", "dr"))
            lines.append(f"  {name:<10} {m['version']:<20} leads as logged on {100 * m['agrees_with_logged']:.0f}%, "
                         f"effective n {m['dr']['effective_n']:.0f}: {ests}")
    lat = rep["latency"]
    lines += ["", f"latency ({'passed' if lat['candidate']['passed'] else 'FAILED'}): one order across "
              f"{lat['candidate']['venues']} venues, {lat['candidate']['runs']} runs, budget "
              f"{lat['candidate']['budget_us']} us"]
    for name in ("candidate", "champion"):
        x = lat[name]
        lines.append(f"  {name:<10} {x['version']:<20} p50 {x['p50_us']:.1f} us, p99 {x['p99_us']:.1f} us")
    return "\n".join(lines)


def plot(rep: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = rep["simulation"]["rows"]
    ope = (rep["journal"].get("ope") or {}).get("models") or {}
    fig, axes = plt.subplots(1, 2 if ope else 1, figsize=(11 if ope else 6, 4.2), squeeze=False)
    ax = axes[0][0]
    for i, r in enumerate(rows):
        m, lo, hi = r["difference_bps"]
        color = {"better": "tab:green", "worse": "tab:red"}.get(r["verdict"], "tab:gray")
        ax.errorbar([i], [m], yerr=[[m - lo], [hi - m]], fmt="o", color=color, capsize=4)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["scenario"] for r in rows])
    ax.set_ylabel("candidate - champion, shortfall bps (95% CI)")
    ax.set_title("Simulation: paired difference per scenario")
    if ope:
        ax2 = axes[0][1]
        names = list(ope)
        for j, name in enumerate(names):
            for k, est in enumerate(("ips", "snips", "dr")):
                e = ope[name][est]
                x = k + (j - (len(names) - 1) / 2) * 0.25
                ax2.errorbar([x], [e["mean"]], yerr=[[e["mean"] - e["lo"]], [e["hi"] - e["mean"]]], fmt="o",
                             capsize=4, color=f"C{j}", label=name if k == 0 else None)
        lm = rep["journal"]["ope"]["logged_bps"][0]
        ax2.axhline(lm, color="black", linewidth=0.8, linestyle="--", label="logged policy")
        ax2.set_xticks(range(3))
        ax2.set_xticklabels(["IPS", "SNIPS", "DR"])
        ax2.set_ylabel("estimated cost per parent, bps (95% CI)")
        ax2.set_title("Journal: off-policy estimates")
        ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def validate(candidate: str, champion: str, *, scenarios: Sequence[str] | None = None,
             seeds: Sequence[int] = GATE_SEEDS, parents: int | None = None, journal: str | None = None,
             budget_us: int | None = None, out_dir: Path | None = None) -> dict[str, Any]:
    """The gate's report (``passed`` and each part's findings); ``candidate``
    and ``champion`` are ONNX paths."""
    t0 = time.monotonic()
    scs = list(scenarios or SCENARIOS)
    rows, feats = sim_part(candidate, champion, scs, seeds, parents)
    sim_ok, sim_why = sim_verdict(rows)
    ope = ope_part(journal, {"candidate": candidate, "champion": champion}) if journal else None
    ope_ok, ope_why = ope_verdict(ope)
    budget = budget_us if budget_us is not None else scenario_config(scs[0]).model.budget_us
    lat = {"candidate": latency_part(candidate, feats, budget), "champion": latency_part(champion, feats, budget)}
    rep: dict[str, Any] = {
        "candidate": {"path": candidate, "version": lat["candidate"]["version"]},
        "champion": {"path": champion, "version": lat["champion"]["version"]},
        "simulation": {"passed": sim_ok, "why": sim_why, "seeds": list(seeds), "rows": rows},
        "journal": {"passed": ope_ok, "verdict": ope_why, "ope": ope},
        "latency": lat,
    }
    rep["passed"] = bool(sim_ok and ope_ok is not False and lat["candidate"]["passed"])
    rep["seconds"] = round(time.monotonic() - t0, 1)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.txt").write_text(format_report(rep) + "\n")
        (out_dir / "report.json").write_text(json.dumps(rep, indent=2, default=_json_default) + "\n")
        plot(rep, out_dir / "report.png")
    return rep


def _json_default(o: object) -> object:
    if isinstance(o, Estimate):
        return o.as_dict()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o).__name__)


# ------------------------------------------------------- exploration's cost


def explore_cost(scenarios: Sequence[str] | None = None, seeds: Sequence[int] = GATE_SEEDS,
                 parents: int | None = None, model: str | None = None) -> list[dict[str, Any]]:
    """What exploring at each scenario's ``[learning]`` settings costs: the
    ML planner with them and without (budget 0), the same parents, the
    paired difference in shortfall per parent, and the share explored."""
    rows: list[dict[str, Any]] = []
    for name in scenarios or SCENARIOS:
        cfg = scenario_config(name)
        on: dict[str, float] = {}
        off: dict[str, float] = {}
        explored = decided = 0
        for seed in seeds:
            bt = Backtest(cfg, "ml", make_scorer(cfg, model), parents=parents, seed=seed)
            handle = bt.engine.handle

            def count(ev: Any, handle: Any = handle) -> Any:
                nonlocal explored, decided
                step = handle(ev)
                if step.decision is not None and step.decision.lead_probs is not None:
                    decided += 1
                    explored += step.decision.explored
                return step

            bt.engine.handle = count  # type: ignore[method-assign]
            on.update({f"{seed}:{p.cl_ord_id}": p.shortfall_bps() for p in bt.run().parents})
            g = greedy(cfg)
            off.update({f"{seed}:{p.cl_ord_id}": p.shortfall_bps()
                        for p in Backtest(g, "ml", make_scorer(g, model), parents=parents, seed=seed).run().parents})
        lc = cfg.learning
        rows.append({"scenario": name, "budget_bps": lc.explore_budget_bps, "max_prob": lc.explore_max_prob,
                     "explored_share": explored / decided if decided else 0.0, "parents": len(on),
                     "explore_bps": mean_ci(list(on.values())), "greedy_bps": mean_ci(list(off.values())),
                     "cost_bps": paired(on, off)})
    return rows


def format_explore_cost(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'scenario':<11} {'explored':>8}  {'exploring bps':<22} {'greedy bps':<22} cost of exploring bps"]
    for r in rows:
        lines.append(f"{r['scenario']:<11} {100 * r['explored_share']:7.1f}%  {_ci(r['explore_bps']):<22} "
                     f"{_ci(r['greedy_bps']):<22} {_ci(r['cost_bps'])}")
    return "\n".join(lines)
