"""The adaptation report's arithmetic on hand-built parents."""

from __future__ import annotations

import msgspec

from sim import adaptation
from sim.backtest import EPOCH_NS, ParentResult, RunResult
from sim.report import scenario_config

S = 1_000_000_000


def _run(policy: str, costs: list[float]) -> RunResult:
    # side +1, 100 @ mid 10000 + d ticks: a shortfall of d bps.
    ps = [ParentResult(cl_ord_id=f"P{i}", symbol="XYZ", side=1, qty=100, arrival_ns=EPOCH_NS + i * S // 5,
                       arrival_mid=10000.0, filled=100, notional_ticks=int(100 * (10000 + d)), done_ns=None)
          for i, d in enumerate(costs)]
    return RunResult(scenario="t", policy=policy, parents=ps)


def test_recovery_and_worst_window() -> None:
    cfg = scenario_config("swap_pools")  # one change at 50 s: parent 250 at 5 parents/s
    assert adaptation.change_times_ns(cfg) == [EPOCH_NS + 50 * S]
    n = 500
    base = [5.0] * n
    # The policy pays 9 bps for the 75 parents after the change, then 3.
    pol = [3.0] * 250 + [9.0] * 75 + [3.0] * 175
    runs = {"displayed": [_run("displayed", base)], "ml": [_run("ml", pol)]}
    steady = {"displayed": [_run("displayed", base)], "ml": [_run("ml", [3.0] * n)]}
    (ch,) = adaptation.analyse(cfg, runs, steady)
    assert ch["first_parent"] == 250 and ch["best_baseline"] == "displayed"
    ml = ch["policies"]["ml"]
    assert ml["steady_bps"] == 3.0
    assert ml["recovered_within_parents"] == 75, "the first 25-step offset whose next 50 are at the steady level"
    assert ml["worst_window_vs_best_baseline_bps"] == 4.0 and ml["worst_window_at"] == 0
    assert ml["bins_bps"][:4] == [3.0] * 4 and ml["bins_bps"][4] == 9.0


def test_per_parent_rows() -> None:
    rows = adaptation.per_parent(_run("ml", [1.0, 2.0]))
    assert [r["shortfall_bps"] for r in rows] == [1.0, 2.0]
    assert rows[1]["t_s"] == 0.2 and rows[0]["completion_ms"] is None
    assert msgspec.json.decode(msgspec.json.encode(rows)) == rows


def test_cold_start_reads_the_first_parents_against_displayed() -> None:
    runs = {"displayed": [_run("displayed", [4.0] * 60 + [9.0] * 40)],
            "ml": [_run("ml", [5.0] * 50 + [0.0] * 50)]}
    cs = adaptation.cold_start(runs)
    assert cs["parents"] == 50
    assert cs["displayed"][0] == 4.0 and cs["ml"][0] == 5.0
    assert cs["vs_displayed_pct"] == {"ml": 25.0}
