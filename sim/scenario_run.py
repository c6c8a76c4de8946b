"""A scenario through the real daemon and FIX sim venues, in wall-clock time.

The same parents as the backtest (``sim.backtest.parent_stream``), sent by the
sim OMS at their scheduled offsets to a daemon that routes them to sim venues
hosted in one process (one shared market, so leaks move the lit books). The
result has the backtest's shape, so the two can be compared
(``tests/e2e/test_backtest_agreement.py``). Markouts need the venues' mid,
which lives in the venue process, so they are left out here.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import msgspec

from sim.backtest import ParentResult, RunResult, limit_ticks, parent_stream
from sim.config import SimClusterConfig
from sim.exchange import SharedMarket
from sim.harness import Cluster, localize
from sim.oms import SimOms
from sim.pacing import sleep_until

WARM_S = 2.0
"""Books, market data and features settle before the first parent."""


def run_live(cfg: SimClusterConfig, policy: str, parents: int, workdir: Path, model_path: str | None = None,
             timeout_s: float = 60.0) -> RunResult:
    if cfg.scenario is None:
        raise ValueError("config has no [scenario]")
    wf = msgspec.structs.replace(cfg.waterfall, planner=policy)
    model = cfg.model if model_path is None else msgspec.structs.replace(cfg.model, path=model_path)
    local = localize(msgspec.structs.replace(cfg, waterfall=wf, model=model), workdir)
    cluster = Cluster(local, workdir, venues_in_one=True)
    wall0 = time.perf_counter()
    cluster.start(timeout_s=60)
    oms = SimOms("127.0.0.1", local.oms.port, sender_comp_id=local.oms.target_comp_id,
                 target_comp_id=local.oms.sender_comp_id, state_dir=workdir / "oms-fix")
    market = SharedMarket(local, local.sim.epoch_ns)
    fee = {v.last_mkt: v.take_fee_bps for v in local.venues}
    tick = {s.symbol: Decimal(s.tick_size) for s in local.symbols}
    specs = parent_stream(local, parents)
    results: dict[str, ParentResult] = {}
    try:
        oms.start()
        t0 = time.monotonic() + WARM_S
        for spec in specs:
            due = t0 + spec.at_ns / 1e9
            sleep_until(due)
            now = time.time_ns()
            fair = market.fair_mid_at(spec.symbol, now)
            px = limit_ticks(local, fair, spec.side) * tick[spec.symbol]
            oms.send_order(spec.symbol, spec.side.value, spec.qty, price=format(px, "f"),
                           tif=spec.tif.value, cl_ord_id=spec.cl_ord_id, urgency=spec.urgency.value)
            results[spec.cl_ord_id] = ParentResult(cl_ord_id=spec.cl_ord_id, symbol=spec.symbol,
                                                   side=spec.side.sign, qty=spec.qty, arrival_ns=now,
                                                   arrival_mid=fair)
        if not oms.wait_all_done(list(results), timeout_s=timeout_s):
            stuck = [c for c in results if not oms.is_done(c)]
            raise RuntimeError(f"{len(stuck)} parents never finished, e.g. {stuck[:3]}")
        done_ns = time.time_ns()
        for cl, res in results.items():
            for r in oms.reports(cl):
                if r.get(150) == "F":
                    q = int(Decimal(r.get(32)))
                    p = int(Decimal(r.get(31)) / tick[res.symbol])
                    res.filled += q
                    res.notional_ticks += q * p
                    res.fees_ticks += q * p * fee.get(r.get(30), 0.0) / 1e4
                    res.fills.append((0, r.get(30), q, p))
            res.done_ns = done_ns
            res.end_mid = market.fair_mid_at(res.symbol, done_ns)
    finally:
        oms.stop()
        cluster.stop()
    return RunResult(scenario=local.scenario.name if local.scenario else "", policy=policy,
                     parents=[results[s.cl_ord_id] for s in specs], wall_seconds=time.perf_counter() - wall0)
