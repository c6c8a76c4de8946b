"""Steps the fault and lifecycle tests share: a cluster with a connected sim
OMS, a parent that rests, and the check that a parent ended canceled with
nothing filled."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

from fix.codec import CUM_QTY, EXEC_TYPE, LEAVES_QTY, ORD_STATUS
from router.domain.commands import SendChildOrder
from router.domain.events import VenueReport
from router.domain.types import ExecType, OrdStatus, TimeInForce, VenueKind
from router.journal import records
from router.journal.store import SqliteStore
from sim.backtest import limit_ticks, parent_stream
from sim.config import SimClusterConfig
from sim.exchange import SharedMarket
from sim.harness import Cluster, poll_until
from sim.invariants import check_order
from sim.oms import Received, SimOms
from sim.pacing import sleep_until

TIMEOUT_S = 20.0


def start_with_oms(cfg: SimClusterConfig, work: Path) -> tuple[Cluster, SimOms]:
    cluster = Cluster(cfg, work, log_level="INFO")
    try:
        cluster.start(timeout_s=60)
        oms = SimOms("127.0.0.1", cfg.oms.port, sender_comp_id=cfg.oms.target_comp_id,
                     target_comp_id=cfg.oms.sender_comp_id, state_dir=work / "oms")
        oms.start()
    except BaseException:
        # Nothing may outlive a test that could not start.
        cluster.stop()
        raise
    return cluster, oms


def resting(oms: SimOms, symbol: str, qty: int = 300) -> str:
    """A buy below every offer (the e2e market): nothing fills, it rests on LIT1."""
    cl = oms.send_order(symbol, "1", qty, price="189.50", tif="0")
    assert oms.wait_for(lambda: any(r.get(EXEC_TYPE) == "0" for r in oms.answers(cl)), TIMEOUT_S)
    return cl


def canceled_unfilled(oms: SimOms, cl: str) -> Received:
    """Wait for ``cl`` to end; it must end canceled with nothing filled. Returns its last report."""
    assert oms.wait_done(cl, TIMEOUT_S), oms.answers(cl)
    reps = oms.reports(cl)
    check_order(cl, reps)
    final = reps[-1]
    assert (final.get(EXEC_TYPE), final.get(ORD_STATUS), final.get(CUM_QTY), final.get(LEAVES_QTY)) == \
        ("4", "4", "0", "0")
    return final


def journaled_resting_ack(path: str) -> bool:
    """A child the venue acked and has not ended is in the journal (committed):
    the resting one, not the IOC waves before it."""
    store = SqliteStore(path, readonly=True)
    try:
        resting: set[str] = set()
        acked: set[str] = set()
        ended: set[str] = set()
        for s in store.sessions():
            for st in records.steps(store.records(s.session_id)):
                ev = records.decode_event(st.event)
                if isinstance(ev, VenueReport):
                    if ev.exec_type is ExecType.NEW:
                        acked.add(ev.child_id)
                    elif ev.ord_status in (OrdStatus.CANCELED, OrdStatus.FILLED, OrdStatus.REJECTED,
                                           OrdStatus.EXPIRED):
                        ended.add(ev.child_id)
                if st.commands is not None:
                    resting.update(c.child_id for c in records.decode_commands(st.commands)
                                   if isinstance(c, SendChildOrder) and c.tif is TimeInForce.DAY)
        return bool((acked & resting) - ended)
    finally:
        store.close()


class ScenarioFlow:
    """A scenario's parents (``sim.backtest.parent_stream``) sent by the sim
    OMS on a fixed schedule, priced as the scenario run prices them."""

    def __init__(self, cfg: SimClusterConfig, oms: SimOms, parents: int, pace_s: float) -> None:
        self.cfg, self.oms, self.pace_s = cfg, oms, pace_s
        self.market = SharedMarket(cfg, cfg.sim.epoch_ns)
        self.tick = {s.symbol: Decimal(s.tick_size) for s in cfg.symbols}
        self.specs = parent_stream(cfg, parents)
        self.sent: list[str] = []

    def send(self, n: int) -> list[str]:
        out = []
        t0 = time.monotonic()
        for k, spec in enumerate(self.specs[len(self.sent):len(self.sent) + n]):
            sleep_until(t0 + k * self.pace_s)
            fair = self.market.fair_mid_at(spec.symbol, time.time_ns())
            px = limit_ticks(self.cfg, fair, spec.side) * self.tick[spec.symbol]
            self.oms.send_order(spec.symbol, spec.side.value, spec.qty, price=format(px, "f"), tif=spec.tif.value,
                                cl_ord_id=spec.cl_ord_id, urgency=spec.urgency.value)
            self.sent.append(spec.cl_ord_id)
            out.append(spec.cl_ord_id)
        return out


def wait_books(cluster: Cluster, cfg: SimClusterConfig) -> None:
    """Until the daemon has applied market data from every lit venue: the
    books and features the model reads are there before the first parent."""
    lit = [v.name for v in cfg.venues if v.kind is VenueKind.LIT]
    assert poll_until(lambda: all(cluster.metrics().get(f'sor_md_updates_total{{venue="{v}"}}', 0) > 0
                                  for v in lit), TIMEOUT_S), "no market data from every lit venue"
