"""``sor bench --quick`` runs end to end and writes well-formed results.

Only the shape is checked: benchmarks print figures, they never assert on
time (DESIGN.md, Performance)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _positive(x: object) -> bool:
    return isinstance(x, int | float) and x > 0


def test_bench_quick_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "router.cli", "bench", "--quick", "--reload-parents", "200",
                           "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "tick-to-route" in proc.stdout
    res = json.loads(out.read_text())
    assert {"machine", "floor", "drivers", "parents", "ml"} <= set(res)
    assert res["ml"] == "on and off"
    assert _positive(res["parents"])
    assert _positive(res["machine"]["cpus"])
    for q in ("p50", "p99", "max"):
        assert _positive(res["floor"]["rtt_us"][q])
    assert set(res["drivers"]) == {"threaded", "poll", "threaded+ml", "poll+ml", "poll+ml+md"}
    for d in res["drivers"].values():
        assert {"tick_to_route_us", "ratio_to_floor", "stages_us", "throughput"} <= set(d)
        for q in ("p50", "p90", "p99", "p99.9", "max"):
            assert _positive(d["tick_to_route_us"][q])
        assert _positive(d["ratio_to_floor"]["p50"]) and _positive(d["ratio_to_floor"]["p99"])
        assert "decision" in d["stages_us"]["stages"], "daemon stage histograms were scraped"
        assert "by_generation" in d["gc_pauses_us"]
        # Every scrape (the bench's own and the 1 Hz scraper's) was formatted
        # by the engine's thread, none by the HTTP thread's fallback.
        assert d["metrics_scrape_fallbacks"] == 0
        # Every run journals (the default): all of it, nothing lost.
        assert _positive(d["journal"]["records"]) and d["journal"]["dropped"] == 0 and d["journal"]["failed"] == 0
        steps = d["throughput"]["steps"]
        assert steps and all(_positive(s["achieved_per_s"]) for s in steps)
        assert d["throughput"]["highest_rate_held_per_s"] >= 0
    for key in ("threaded+ml", "poll+ml", "poll+ml+md"):
        assert "scoring" in res["drivers"][key]["stages_us"]["stages"], "the ML rows really scored"
    md = res["drivers"]["poll+ml+md"]["market_data"]
    # The churn really reached the daemon's books (the rate is reported, not judged).
    assert _positive(md["applied_entries_per_s_latency_phase"])
    assert all(_positive(s["md_entries_per_s"]) for s in res["drivers"]["poll+ml+md"]["throughput"]["steps"])
    sc = res["drivers"]["poll+ml"]["scrape"]
    assert sc["scrapes"] > 0 and sc["scrape_errors"] == 0 and sc["body_bytes"] > 0
    for side in ("off_us", "on_us"):
        assert _positive(sc[side]["p99.9"]) and sc[side]["missing"] == 0
    assert "scrape" not in res["drivers"]["poll"]
    # Hot swaps of the champion beside the poll+ml run: each one answered,
    # none lost a parent, and some parents were sent while one was in flight.
    rl = res["drivers"]["poll+ml"]["reload"]
    assert rl["reloads"] > 0 and rl["missing_at_venue"] == 0 and _positive(rl["loop_us_median"])
    assert rl["off_us"]["n"] == rl["on_us"]["n"] == 200 and rl["during_us"]["n"] > 0
    assert "reload" not in res["drivers"]["poll"]
