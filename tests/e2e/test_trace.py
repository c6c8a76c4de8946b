"""The wire-level timing path: an OMS stamp (tag 7002, CLOCK_MONOTONIC)
rides on the parent and is copied onto its child, and the venue records when
that child arrived, on the same clock."""

from __future__ import annotations

import json
import time
from pathlib import Path

from sim.config import SimClusterConfig
from sim.harness import Cluster, localize
from sim.oms import SimOms
from tests.e2e.conftest import e2e_config

TRACE = 7002


def test_oms_stamp_reaches_the_venue_with_the_child(default_config: SimClusterConfig, tmp_path: Path) -> None:
    cfg = localize(e2e_config(default_config), tmp_path)
    cluster = Cluster(cfg, tmp_path, record_traces=True)
    cluster.start(timeout_s=60)
    oms = SimOms("127.0.0.1", cfg.oms.port, sender_comp_id=cfg.oms.target_comp_id,
                 target_comp_id=cfg.oms.sender_comp_id, state_dir=tmp_path / "oms")
    stamps = []
    try:
        oms.start()
        for i in range(5):
            stamp = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            stamps.append(stamp)
            cl = oms.send_order(f"S{i + 1}", "1", 50, price="190.05", tif="3", extra=[(TRACE, str(stamp))])
            assert oms.wait_done(cl, 15)
    finally:
        oms.stop()
        codes = cluster.stop()
    assert codes["LIT1"] == 0
    arrivals = dict(json.loads(cluster.trace_path("LIT1").read_text()))
    # Each parent's first child goes to LIT1 (first in the waterfall) with
    # the parent's stamp; it arrived after it was stamped, on one clock.
    assert set(stamps) <= set(arrivals)
    for s in stamps:
        assert 0 < arrivals[s] - s < 5_000_000_000
