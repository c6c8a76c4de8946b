"""Model quality monitoring (``router.runtime.quality``) on the router's
own engine in the backtest: what each model predicted for a first-wave
child against what the venue did, summed so calibration and error can be
read over any window, beside the model's validation figures; and the live
markout of every parent a model routed."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from router.runtime.quality import QualityMonitor
from sim.backtest import Backtest
from sim.report import default_model_path, make_scorer, scenario_config


def test_predicted_against_realised_per_venue() -> None:
    logging.getLogger("sor.risk").setLevel(logging.ERROR)
    cfg = scenario_config("calm")
    bt = Backtest(cfg, "ml", make_scorer(cfg, None), parents=200, seed=2)
    q = QualityMonitor(bt.cfg, bt.metrics, bt.engine, bt.md)
    handle = bt.engine.handle
    predicted: dict[str, float] = {}
    decisions: dict[str, Any] = {}

    def observed(ev: Any) -> Any:
        step = handle(ev)
        if step.decision is not None and step.decision.scores is not None and step.decision.fallback is None:
            decisions[bt.engine.parents[step.decision.order_id].cl_ord_id] = step.decision
        q.observe(ev, step)
        return step

    bt.engine.handle = observed  # type: ignore[method-assign]
    bt.run()
    reg = bt.metrics.registry
    version = bt.scorer.version
    first = [lab for lab in bt.children.values() if lab.first_wave]
    for lab in first:
        d = decisions[lab.parent]
        predicted[lab.venue] = predicted.get(lab.venue, 0.0) + min(max(
            float(d.scores[d.venues.index(lab.venue)][1]), 0.0), 1.0)
    for venue in {lab.venue for lab in first}:
        labs = [lab for lab in first if lab.venue == venue]
        lbl = {"model": version, "venue": venue}
        assert reg.get_sample_value("sor_model_quality_children_total", lbl) == len(labs)
        assert math.isclose(reg.get_sample_value("sor_model_fill_predicted_total", lbl) or 0, predicted[venue],
                            rel_tol=1e-9)
        realised = sum(min(sum(f[1] for f in lab.fills) / lab.qty, 1.0) for lab in labs)
        assert math.isclose(reg.get_sample_value("sor_model_fill_realised_total", lbl) or 0, realised, rel_tol=1e-9)
        filled = sum(1 for lab in labs if lab.fills)
        assert reg.get_sample_value("sor_model_cost_error_bps_count", lbl) == filled
        # Every filled child's 1 s horizon passed before the run ended.
        assert reg.get_sample_value("sor_model_markout_error_bps_count", lbl) == filled
        if filled:
            mean = (reg.get_sample_value("sor_model_markout_error_bps_sum", lbl) or 0) / filled
            assert 0.0 < mean < 50.0
    manifest = json.loads(default_model_path().with_suffix(".json").read_text())
    got = reg.get_sample_value("sor_model_validation", {"model": version, "metric": "cost_mae_bps"})
    assert got == manifest["validation"]["cost_bps"]["mae"]
    # Each routed parent that traded: one markout over all its fills, every wave.
    traded = {lab.parent for lab in bt.children.values() if lab.fills and lab.parent in decisions}
    assert traded and reg.get_sample_value("sor_model_markout_bps_count", {"model": version}) == len(traded)
    mean = (reg.get_sample_value("sor_model_markout_bps_sum", {"model": version}) or 0) / len(traded)
    assert -50.0 < mean < 50.0
    assert not q._children and not q._due and not q._parents, \
        "nothing left behind once every child ended and was marked"
