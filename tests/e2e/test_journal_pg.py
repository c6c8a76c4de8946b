"""The daemon journaling into PostgreSQL (``journal.url``), and its replay.

The daemon (ML planner, shipped model) routes parents to the sim venues
with its journal in a real PostgreSQL server (``sim/pgserver.py``); after
a clean stop the session is read back from the database, ``sor journal``
lists it, and its replay through a fresh engine reproduces every command
and every decision.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec

from fix.codec import TEXT
from router.journal import records
from router.journal.store import open_store
from router.replay import replay
from sim.config import SimClusterConfig
from sim.harness import Cluster, localize
from sim.oms import SimOms

ROOT = Path(__file__).resolve().parents[2]


def test_a_session_journaled_in_postgresql_replays_to_the_same_commands(
        default_config: SimClusterConfig, tmp_path: Path, pg_url: str) -> None:
    r = msgspec.structs.replace
    cfg = localize(default_config, tmp_path)
    # No scoring budget: on a loaded box the replay's own first (cold) run
    # can go over it where the live one did not, and decide otherwise; this
    # test is about the journal, not the budget.
    cfg = r(cfg, journal=r(cfg.journal, url=pg_url), model=r(cfg.model, budget_us=0))
    assert cfg.waterfall.planner == "ml"
    cluster = Cluster(cfg, tmp_path, log_level="INFO")
    cluster.start(timeout_s=60)
    oms = SimOms("127.0.0.1", cfg.oms.port, sender_comp_id=cfg.oms.target_comp_id,
                 target_comp_id=cfg.oms.sender_comp_id, state_dir=tmp_path / "oms")
    sent: dict[str, tuple[str, str, int]] = {}
    try:
        oms.start()
        for i in range(12):
            sym = cfg.symbols[i % len(cfg.symbols)].symbol
            side = "1" if i % 2 else "2"
            ref = 190 if sym == "AAPL" else 420
            px = ref + (1 if side == "1" else -1) * (0.05 if i % 3 else -0.02)
            cl = oms.send_order(sym, side, 100 + 100 * (i % 5), price=f"{px:.2f}", tif="3" if i % 4 else "0")
            sent[cl] = (sym, side, 100 + 100 * (i % 5))
        oms.wait_all_done(sent, timeout_s=5.0)
        for cl, (sym, side, qty) in sent.items():
            if not oms.is_done(cl):
                oms.send_cancel(cl, sym, side, qty)
        assert oms.wait_all_done(sent, timeout_s=30.0)
        # A burst: the back-pressure gate may refuse its tail (no decision).
        routed = len(sent) - sum(oms.reports(cl)[0].get(TEXT).startswith("router overloaded") for cl in sent)
    finally:
        oms.stop()
        codes = cluster.stop()
    assert codes["daemon"] == 0, cluster.log("daemon")[-3000:]
    assert f"journal {pg_url}, session 1" in cluster.log("daemon")
    assert not Path(cfg.journal.path).exists(), "with journal.url set, nothing goes to journal.path"

    store = open_store(pg_url, readonly=True)
    (session,) = store.sessions()
    counts = store.count(session.session_id)
    kinds = [k for _, k, _, _ in store.records(session.session_id)]
    store.close()
    assert routed > 0 and counts[records.DECISION] == routed, "one decision per parent routed"
    assert counts[records.EVENT] > len(sent) and counts[records.COMMANDS] >= len(sent)
    assert kinds[0] == records.EVENT

    rep = replay(pg_url)
    assert rep.decisions == routed and rep.decisions_differ == 0, rep
    assert rep.commands_differ == 0 and rep.commands_same == rep.steps_with_commands, rep

    listing = subprocess.run([sys.executable, "-m", "router.cli", "journal", pg_url],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert listing.returncode == 0 and "session 1:" in listing.stdout, listing.stdout + listing.stderr
