"""Venue initiators reconnect: a venue that dies is skipped while it is down
and used again once it is back, and the daemon never stops serving."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fix.codec import EXEC_TYPE, LAST_MKT, ORD_STATUS
from sim.config import SimClusterConfig
from sim.harness import Cluster, localize, poll_until
from sim.invariants import check_order
from sim.oms import SimOms
from tests.e2e.conftest import e2e_config

ROOT = Path(__file__).resolve().parents[2]
T = 20.0


@pytest.fixture
def own_cluster(default_config: SimClusterConfig, tmp_path: Path) -> Iterator[tuple[Cluster, SimOms]]:
    cfg = localize(e2e_config(default_config), tmp_path)
    c = Cluster(cfg, tmp_path)
    c.start(timeout_s=60)
    oms = SimOms("127.0.0.1", cfg.oms.port, sender_comp_id=cfg.oms.target_comp_id,
                 target_comp_id=cfg.oms.sender_comp_id, state_dir=tmp_path / "oms")
    oms.start()
    yield c, oms
    oms.stop()
    assert c.stop()["daemon"] == 0


def _wait_metric(cluster: Cluster, key: str, ok: Callable[[float], bool], timeout_s: float = T) -> bool:
    return poll_until(lambda: ok(cluster.metrics().get(key, float("nan"))), timeout_s)


def _venues_used(oms: SimOms, cl: str) -> list[str]:
    return [r.get(LAST_MKT) for r in oms.reports(cl) if r.get(EXEC_TYPE) == "F"]


def test_venue_down_is_skipped_then_reconnects(own_cluster: tuple[Cluster, SimOms]) -> None:
    cluster, oms = own_cluster
    mid_key = 'sor_md_mid{symbol="S1",venue="LIT1"}'
    assert _wait_metric(cluster, mid_key, lambda x: x == 190.0)
    cluster.kill_venue("LIT1")
    cluster.wait_sessions({"LIT1": 0.0, "LIT2": 1.0}, T)
    # A dead venue's book is cleared rather than left looking live.
    assert _wait_metric(cluster, mid_key, lambda x: x == 0.0)

    cl = oms.send_order("S1", "1", 150, price="190.05", tif="3")
    assert oms.wait_done(cl, T)
    check_order(cl, oms.reports(cl))
    assert oms.reports(cl)[-1].get(ORD_STATUS) == "2"
    assert set(_venues_used(oms, cl)) == {"XLT2"}

    cluster.start_venue("LIT1")
    cluster.wait_sessions({"LIT1": 1.0}, T)
    # Re-subscribed on the new logon: the book is back.
    assert _wait_metric(cluster, mid_key, lambda x: x == 190.0)
    cl2 = oms.send_order("S2", "1", 150, price="190.05", tif="3")
    assert oms.wait_done(cl2, T)
    check_order(cl2, oms.reports(cl2))
    assert _venues_used(oms, cl2)[0] == "XLT1"


def test_bad_config_exits_2_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    text = (ROOT / "config" / "sor.toml").read_text().replace("heartbeat_s = 30", "heartbeat_s = \"thirty\"")
    bad.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "router.cli", "run", "--config", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "fix.heartbeat_s" in proc.stderr and "Expected `int`" in proc.stderr
