"""The daemon and sim venues as real processes, the sim OMS in the test.

The market is made deterministic so outcomes can be worked out by hand:
the mid never moves (190.00), displayed sizes are exact, no background
takers, the dark pool has no contra. LIT1 shows one level of 100 a side,
LIT2 five levels of 100; both requote every 50 ms, which is what fills a
resting router order at the touch. Each scenario uses its own symbol so
scenarios never share liquidity.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from router.config import SymbolConfig
from sim.config import SimClusterConfig
from sim.harness import Cluster, localize
from sim.invariants import check_all
from sim.oms import SimOms

SYMBOLS = ["S1", "S2", "S3", "S4", "S5", "S6", "S7"]


def e2e_config(base: SimClusterConfig, driver: str = "threaded") -> SimClusterConfig:
    r = msgspec.structs.replace
    venues = []
    for v in base.venues:
        levels = 1 if v.name == "LIT1" else 5
        sim = r(v.sim, levels=levels, level_size_mean=100, level_size_jitter=0.0, taker_rate_hz=0.0,
                contra_prob=0.0, requote_ms=50)
        venues.append(r(v, sim=sim))
    symbols = [SymbolConfig(symbol=s, tick_size="0.01", lot_size=1, max_order_qty=100_000, ref_price="190.00")
               for s in SYMBOLS]
    # These tests work routes out by hand: the static waterfall, not the model.
    waterfall = r(base.waterfall, venues=["LIT1", "LIT2"], final_action="rest", rest_venue="LIT1", planner="static")
    return r(base, venues=venues, symbols=symbols, waterfall=waterfall, sim=r(base.sim, mid_vol_ticks=0.0),
             router=r(base.router, driver=driver))


@pytest.fixture(scope="module", params=["threaded", "poll"])
def cluster(request: pytest.FixtureRequest, default_config: SimClusterConfig,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Every scenario runs against both drivers: they must route alike."""
    work = tmp_path_factory.mktemp("e2e")
    cfg = localize(e2e_config(default_config, request.param), work)
    c = Cluster(cfg, work, log_level="INFO")
    try:
        c.start(timeout_s=60)
    except Exception:
        print(c.log("daemon"))
        c.stop()
        raise
    yield c
    codes = c.stop()
    assert codes == {"daemon": 0, "LIT1": 0, "LIT2": 0, "DARK1": 0}, (codes, c.log("daemon")[-3000:])


@pytest.fixture(scope="module")
def oms(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimOms]:
    cfg = cluster.cfg
    o = SimOms("127.0.0.1", cfg.oms.port, sender_comp_id=cfg.oms.target_comp_id,
               target_comp_id=cfg.oms.sender_comp_id, state_dir=tmp_path_factory.mktemp("oms"))
    o.start()
    yield o
    # Every ER the OMS saw in the whole module obeys the invariants.
    check_all({cl: o.reports(cl) for cl in list(o.sent_ns)})
    o.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
