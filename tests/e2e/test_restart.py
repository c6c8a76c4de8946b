"""Restart recovery: the daemon stops (cleanly, leaving its children at the
venues, or by SIGKILL) with a parent working, starts again on the same
journal, and knows that parent: the OMS can cancel it, and the child at the
venue is canceled, not orphaned."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from fix.codec import ORD_STATUS
from router.journal.store import SqliteStore
from router.replay import replay
from sim.config import SimClusterConfig
from sim.harness import localize, poll_until
from tests.e2e.conftest import e2e_config
from tests.e2e.flows import TIMEOUT_S, canceled_unfilled, journaled_resting_ack, resting, start_with_oms


@pytest.mark.parametrize(("driver", "how"), [("threaded", "sigterm"), ("poll", "sigterm"), ("threaded", "sigkill"),
                                             ("poll", "sigkill")])
def test_a_restarted_daemon_knows_its_working_parents(default_config: SimClusterConfig, tmp_path: Path,
                                                      driver: str, how: str) -> None:
    base = e2e_config(default_config, driver)
    cfg = localize(msgspec.structs.replace(base, router=msgspec.structs.replace(base.router, shutdown="leave")),
                   tmp_path)
    cluster, oms = start_with_oms(cfg, tmp_path)
    try:
        cl = resting(oms, "S5")
        assert poll_until(lambda: journaled_resting_ack(cfg.journal.path), TIMEOUT_S)
        if how == "sigkill":
            assert cluster.kill_daemon() != 0
        else:
            assert cluster.stop_daemon() == 0
        cluster.start_daemon()
        cluster.wait_sessions({v.name: 1.0 for v in cfg.venues}, 60)
        assert oms.wait_for(lambda: oms.up, TIMEOUT_S)
        log = cluster.log("daemon")
        assert "restored from journal session 1" in log and "1 working parents, 1 open children" in log, log[-3000:]
        oms.send_cancel(cl, "S5", "1", 300)
        canceled_unfilled(oms, cl)
        # Its ClOrdID is still taken after the restart.
        dup = oms.send_order("S5", "1", 100, price="189.50", tif="0", cl_ord_id=cl)
        assert oms.wait_for(lambda: any(r.get(ORD_STATUS) == "8" for r in oms.answers(dup)), TIMEOUT_S)
    finally:
        oms.stop()
        cluster.stop()
    store = SqliteStore(cfg.journal.path, readonly=True)
    sessions = store.sessions()
    store.close()
    assert [s.restored_from for s in sessions] == [0, 1]
    assert sessions[0].id_prefix == sessions[1].id_prefix, "the restored session continues the IDs"
    # The restored session replays on top of its predecessor's state.
    rep = replay(cfg.journal.path)
    assert rep.session == 2 and rep.commands_differ == 0 and rep.decisions_differ == 0, rep
