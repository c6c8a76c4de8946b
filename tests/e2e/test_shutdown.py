"""A clean stop (SIGTERM) of the daemon with parents still working: by
default every child is canceled at its venue and the OMS hears that each
parent ended, before the daemon logs out; with ``router.shutdown = "leave"``
they stay at the venues and the log says which."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from fix.codec import TEXT
from sim.config import SimClusterConfig
from sim.harness import localize
from tests.e2e.conftest import e2e_config
from tests.e2e.flows import canceled_unfilled, resting, start_with_oms


@pytest.mark.parametrize("driver", ["threaded", "poll"])
def test_sigterm_cancels_every_child_and_reports_to_the_oms(default_config: SimClusterConfig, tmp_path: Path,
                                                             driver: str) -> None:
    cfg = localize(e2e_config(default_config, driver), tmp_path)
    cluster, oms = start_with_oms(cfg, tmp_path)
    try:
        orders = [resting(oms, s) for s in ("S1", "S2", "S3")]
        assert cluster.stop_daemon() == 0
        for cl in orders:
            assert canceled_unfilled(oms, cl).get(TEXT) == "router shutting down"
    finally:
        oms.stop()
        cluster.stop()
    log = cluster.log("daemon")
    assert "shutdown: 3 working parents canceled, no child left at a venue" in log, log[-3000:]


def test_shutdown_leave_leaves_them_and_says_so(default_config: SimClusterConfig, tmp_path: Path) -> None:
    base = e2e_config(default_config, "poll")
    cfg = localize(msgspec.structs.replace(base, router=msgspec.structs.replace(base.router, shutdown="leave")),
                   tmp_path)
    cluster, oms = start_with_oms(cfg, tmp_path)
    try:
        cl = resting(oms, "S4")
        assert cluster.stop_daemon() == 0
        assert not oms.is_done(cl)
    finally:
        oms.stop()
        cluster.stop()
    log = cluster.log("daemon")
    assert "(router.shutdown = leave): parent" in log and f"({cl})" in log, log[-3000:]
