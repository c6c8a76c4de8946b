"""The decision journal of a real daemon session, and its replay.

The daemon (ML planner, shipped model) routes a stream of parents to the
sim venues while the journal records every input, command and decision;
after a clean stop, ``sor replay`` feeds the recorded inputs through a fresh
engine and must reproduce every command and every decision.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from fix.codec import TEXT
from router.journal import records
from router.journal.store import SqliteStore
from router.replay import replay
from sim.config import SimClusterConfig
from sim.harness import Cluster, localize
from sim.oms import SimOms

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("driver", ["threaded", "poll"])
def test_a_session_is_journaled_and_replays_to_the_same_commands(
        default_config: SimClusterConfig, tmp_path: Path, driver: str) -> None:
    r = msgspec.structs.replace
    cfg = localize(r(default_config, router=r(default_config.router, driver=driver)), tmp_path)
    assert cfg.waterfall.planner == "ml"
    cluster = Cluster(cfg, tmp_path)
    cluster.start(timeout_s=60)
    oms = SimOms("127.0.0.1", cfg.oms.port, sender_comp_id=cfg.oms.target_comp_id,
                 target_comp_id=cfg.oms.sender_comp_id, state_dir=tmp_path / "oms")
    sent: dict[str, tuple[str, str, int]] = {}
    try:
        oms.start()
        for i in range(40):
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
        # The 40 arrive at once: the back-pressure gate may refuse the tail
        # of the burst (no decision for those); its OverloadChanged events
        # are then journaled inputs the replay must agree with too.
        overloaded = sum(oms.reports(cl)[0].get(TEXT).startswith("router overloaded") for cl in sent)
        routed = len(sent) - overloaded
    finally:
        oms.stop()
        codes = cluster.stop()
    assert codes["daemon"] == 0, cluster.log("daemon")[-3000:]

    store = SqliteStore(cfg.journal.path, readonly=True)
    (session,) = store.sessions()
    counts = store.count(session.session_id)
    kinds = [k for _, k, _, _ in store.records(session.session_id)]
    store.close()
    assert routed > 0 and counts[records.DECISION] == routed, "one decision per parent routed"
    assert counts[records.EVENT] > len(sent) and counts[records.COMMANDS] >= len(sent)
    assert kinds[0] == records.EVENT

    rep = replay(cfg.journal.path)
    assert rep.decisions == routed and rep.decisions_differ == 0, rep
    assert rep.commands_differ == 0 and rep.commands_same == rep.steps_with_commands, rep

    out = subprocess.run([sys.executable, "-m", "router.cli", "replay", cfg.journal.path], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"decisions: {routed} of {routed} the same" in out.stdout
    listing = subprocess.run([sys.executable, "-m", "router.cli", "journal", cfg.journal.path],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert listing.returncode == 0 and "session 1:" in listing.stdout, listing.stdout + listing.stderr
