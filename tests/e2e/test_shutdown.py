"""A clean stop (SIGTERM) of the daemon with parents still working: by
default every child is canceled at its venue and the OMS hears that each
parent ended, before the daemon logs out; with ``router.shutdown = "leave"``
they stay at the venues and the log says which."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from fix.codec import CUM_QTY, EXEC_TYPE, LEAVES_QTY, ORD_STATUS, TEXT
from sim.config import SimClusterConfig
from sim.harness import Cluster, localize
from sim.invariants import check_order
from sim.oms import SimOms
from tests.e2e.conftest import e2e_config

TIMEOUT_S = 15.0


def _start(cfg: SimClusterConfig, work: Path) -> tuple[Cluster, SimOms]:
    cluster = Cluster(cfg, work, log_level="INFO")
    cluster.start(timeout_s=60)
    oms = SimOms("127.0.0.1", cfg.oms.port, sender_comp_id=cfg.oms.target_comp_id,
                 target_comp_id=cfg.oms.sender_comp_id, state_dir=work / "oms")
    oms.start()
    return cluster, oms


def _resting(oms: SimOms, symbol: str) -> str:
    # Below every offer: nothing fills, the parent rests on LIT1.
    cl = oms.send_order(symbol, "1", 300, price="189.50", tif="0")
    assert oms.wait_for(lambda: any(r.get(EXEC_TYPE) == "0" for r in oms.answers(cl)), TIMEOUT_S)
    return cl


@pytest.mark.parametrize("driver", ["threaded", "poll"])
def test_sigterm_cancels_every_child_and_reports_to_the_oms(default_config: SimClusterConfig, tmp_path: Path,
                                                             driver: str) -> None:
    cfg = localize(e2e_config(default_config, driver), tmp_path)
    cluster, oms = _start(cfg, tmp_path)
    try:
        orders = [_resting(oms, s) for s in ("S1", "S2", "S3")]
        assert cluster.stop_daemon() == 0
        for cl in orders:
            assert oms.wait_done(cl, TIMEOUT_S), oms.answers(cl)
            reps = oms.reports(cl)
            check_order(cl, reps)
            final = reps[-1]
            assert (final.get(EXEC_TYPE), final.get(ORD_STATUS), final.get(CUM_QTY), final.get(LEAVES_QTY)) == \
                ("4", "4", "0", "0")
            assert final.get(TEXT) == "router shutting down"
    finally:
        oms.stop()
        cluster.stop()
    log = cluster.log("daemon")
    assert "shutdown: 3 working parents canceled, no child left at a venue" in log, log[-3000:]


def test_shutdown_leave_leaves_them_and_says_so(default_config: SimClusterConfig, tmp_path: Path) -> None:
    base = e2e_config(default_config, "poll")
    cfg = localize(msgspec.structs.replace(base, router=msgspec.structs.replace(base.router, shutdown="leave")),
                   tmp_path)
    cluster, oms = _start(cfg, tmp_path)
    try:
        cl = _resting(oms, "S4")
        assert cluster.stop_daemon() == 0
        assert not oms.is_done(cl)
    finally:
        oms.stop()
        cluster.stop()
    log = cluster.log("daemon")
    assert "(router.shutdown = leave): parent" in log and f"({cl})" in log, log[-3000:]
