"""Venue reconciliation, with real processes killed: after every venue logon
the daemon asks the status (35=H) of each child it believes open there, and
the venue's own record wins.

- A venue killed with SIGKILL and restarted with an empty book no longer
  knows the child resting there: the child ends, the parent's residual goes
  on (here the plan is over, so it is reported canceled, with a Text that
  says why), and the OMS can close it.
- The daemon killed with SIGKILL while a child rests; the venue fills that
  child while the daemon is down; the restarted daemon reports those fills
  to the OMS exactly once, and what the OMS received matches the venue's
  own fill records share for share.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from fix.codec import CUM_QTY, EXEC_ID, EXEC_TYPE, LAST_QTY, ORD_STATUS, TEXT
from router.domain.commands import ReportToOms, SendChildOrder
from router.domain.events import NewOrderReceived
from router.journal import records
from router.journal.store import SqliteStore
from sim.config import SimClusterConfig
from sim.harness import Cluster, localize, poll_until
from sim.invariants import check_order
from sim.oms import SimOms
from tests.e2e.conftest import e2e_config
from tests.e2e.flows import TIMEOUT_S, journaled_resting_ack, resting, start_with_oms

DRIVERS = ["threaded", "poll"]


def _children_of(cluster: Cluster) -> set[str]:
    """Every child the journal says was sent (the test's one parent has them all)."""
    store = SqliteStore(cluster.cfg.journal.path, readonly=True)
    try:
        return {c.child_id for s in store.sessions() for st in records.steps(store.records(s.session_id))
                if st.commands is not None
                for c in records.decode_commands(st.commands) if isinstance(c, SendChildOrder)}
    finally:
        store.close()


def _oms_filled(oms: SimOms, cl: str) -> int:
    return sum(int(Decimal(r.get(LAST_QTY) or "0")) for r in oms.reports(cl) if r.get(EXEC_TYPE) == "F")


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_venue_restarted_with_an_empty_book_ends_the_child_it_lost(default_config: SimClusterConfig,
                                                                     tmp_path: Path, driver: str) -> None:
    cfg = localize(e2e_config(default_config, driver), tmp_path)
    cluster, oms = start_with_oms(cfg, tmp_path)
    try:
        cl = resting(oms, "S5")  # rests on LIT1, the plan's last step
        # Acked by the venue: it is in the venue's book, and dies with it.
        assert poll_until(lambda: journaled_resting_ack(cfg.journal.path), TIMEOUT_S)
        cluster.kill_venue("LIT1")
        cluster.wait_sessions({"LIT1": 0.0}, TIMEOUT_S)
        cluster.start_venue("LIT1")  # same FIX store, empty book
        assert oms.wait_done(cl, TIMEOUT_S), oms.answers(cl)
        reps = oms.reports(cl)
        check_order(cl, reps)
        final = reps[-1]
        assert (final.get(EXEC_TYPE), final.get(ORD_STATUS), final.get(CUM_QTY)) == ("4", "4", "0")
        assert "no longer knows child" in (final.get(TEXT) or ""), final
        m = cluster.metrics()
        assert m.get('sor_venue_anomalies_total{kind="lost_child"}') == 1.0
        assert m.get("sor_open_children") == 0.0
        # The daemon keeps routing on the restarted venue.
        cl2 = resting(oms, "S6")
        oms.send_cancel(cl2, "S6", "1", 300)
        assert oms.wait_done(cl2, TIMEOUT_S)
        check_order(cl2, oms.reports(cl2))
    finally:
        oms.stop()
        cluster.stop()


@pytest.mark.parametrize("driver", DRIVERS)
def test_fills_while_the_daemon_is_down_reach_the_oms_once(default_config: SimClusterConfig, tmp_path: Path,
                                                           driver: str) -> None:
    base = e2e_config(default_config, driver)
    r = msgspec.structs.replace
    # Sellers arrive at LIT1 about twice a second and take the best bid:
    # the router's resting buy at the mid.
    venues = [r(v, sim=r(v.sim, taker_rate_hz=4.0, taker_size_mean=40)) if v.name == "LIT1" else v
              for v in base.venues]
    cfg = localize(r(base, venues=venues), tmp_path)
    cluster, oms = start_with_oms(cfg, tmp_path)
    try:
        cl = oms.send_order("S5", "1", 400, price="190.00", tif="0")
        assert poll_until(lambda: journaled_resting_ack(cfg.journal.path), TIMEOUT_S)
        assert cluster.kill_daemon() != 0
        children = _children_of(cluster)
        before = sum(f["qty"] for f in cluster.venue_fills() if f["cl"] in children)
        # The venue goes on filling the resting child with nobody listening.
        assert poll_until(lambda: sum(f["qty"] for f in cluster.venue_fills() if f["cl"] in children) > before,
                          TIMEOUT_S)
        cluster.start_daemon()
        cluster.wait_sessions({v.name: 1.0 for v in cfg.venues}, 60)
        assert oms.wait_for(lambda: oms.up, TIMEOUT_S)
        log = cluster.log("daemon")
        assert "open children: the OMS acceptor opens once their venues confirm them" in log, log[-3000:]

        def venue_total() -> int:
            return sum(f["qty"] for f in cluster.venue_fills() if f["cl"] in children)

        # Every share the venue filled reaches the OMS (the child may still fill).
        assert poll_until(lambda: _oms_filled(oms, cl) >= venue_total() > before, TIMEOUT_S), \
            (_oms_filled(oms, cl), venue_total())
        if _oms_filled(oms, cl) < 400:
            oms.send_cancel(cl, "S5", "1", 400)
        assert oms.wait_done(cl, TIMEOUT_S), oms.answers(cl)
        reps = oms.reports(cl)
        check_order(cl, reps)
        # Share for share: the OMS got exactly what the venue filled, no more.
        fills = [f for f in cluster.venue_fills() if f["cl"] in children]
        assert _oms_filled(oms, cl) == sum(f["qty"] for f in fills) == int(Decimal(reps[-1].get(CUM_QTY) or "0"))
        assert len({f["exec_id"] for f in fills}) == len(fills)
        m = cluster.metrics()
        assert m.get("sor_open_children") == 0.0
    finally:
        oms.stop()
        cluster.stop()


@pytest.mark.parametrize("driver", DRIVERS)
def test_oms_disconnect_cancels_its_orders_when_configured(default_config: SimClusterConfig, tmp_path: Path,
                                                           driver: str) -> None:
    """``oms.cancel_on_disconnect``: the OMS drops mid-order; its children are
    pulled from the venues at once, and the OMS reads the cancel when it is
    back (resent by sequence number)."""
    base = e2e_config(default_config, driver)
    r = msgspec.structs.replace
    cfg = localize(r(base, oms=r(base.oms, cancel_on_disconnect=True)), tmp_path)
    cluster, oms = start_with_oms(cfg, tmp_path)
    oms2: SimOms | None = None
    try:
        cl = resting(oms, "S5")
        assert poll_until(lambda: journaled_resting_ack(cfg.journal.path), TIMEOUT_S)
        oms.stop()
        assert poll_until(lambda: cluster.metrics().get("sor_open_children") == 0.0, TIMEOUT_S)
        assert cluster.metrics().get("sor_open_parents") == 0.0
        oms2 = SimOms("127.0.0.1", cfg.oms.port, sender_comp_id=cfg.oms.target_comp_id,
                      target_comp_id=cfg.oms.sender_comp_id, state_dir=tmp_path / "oms")
        oms2.start()
        assert oms2.wait_done(cl, TIMEOUT_S), oms2.answers(cl)
        final = oms2.reports(cl)[-1]
        assert (final.get(EXEC_TYPE), final.get(ORD_STATUS), final.get(CUM_QTY)) == ("4", "4", "0")
        assert "cancel_on_disconnect" in (final.get(TEXT) or "")
    finally:
        if oms2 is not None:
            oms2.stop()
        cluster.stop()


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_child_the_journal_lost_is_found_at_the_venue_and_canceled(default_config: SimClusterConfig,
                                                                    tmp_path: Path, driver: str) -> None:
    """The crash window of ``sync = "batch"``: the daemon dies after sending a
    child but before its records were committed (made here by deleting the
    last records of the killed session). The restarted daemon does not know
    the child; the venue does. Its sweep after the restart (35=AF) finds it
    and cancels it, and new IDs never collide with the lost ones."""
    cfg = localize(e2e_config(default_config, driver), tmp_path)
    cluster, oms = start_with_oms(cfg, tmp_path)
    try:
        cl = resting(oms, "S5")
        assert poll_until(lambda: journaled_resting_ack(cfg.journal.path), TIMEOUT_S)
        assert cluster.kill_daemon() != 0
        store = SqliteStore(cfg.journal.path, readonly=True)
        first = next(seq for seq, kind, _, body in store.records(1)
                     if kind == records.EVENT and isinstance(records.decode_event(body), NewOrderReceived))
        store.close()
        db = sqlite3.connect(cfg.journal.path)
        with db:
            db.execute("DELETE FROM records WHERE session_id = 1 AND seq >= ?", (first,))
        db.close()
        cluster.start_daemon()
        cluster.wait_sessions({v.name: 1.0 for v in cfg.venues}, 60)
        assert poll_until(lambda: cluster.metrics().get('sor_venue_anomalies_total{kind="orphan_child"}') == 1.0,
                          TIMEOUT_S), cluster.log("daemon")[-3000:]
        assert poll_until(lambda: "CANCELED" in "".join(line for line in cluster.log("daemon").splitlines()
                                                        if "orphan" in line), TIMEOUT_S)
        assert oms.wait_for(lambda: oms.up, TIMEOUT_S)
        # What the window costs: the OMS's order is unknown to the router.
        oms.send_cancel(cl, "S5", "1", 300)
        assert oms.wait_for(lambda: any(r.msg_type == "9" for r in oms.answers(cl)), TIMEOUT_S)
        # New orders route, with IDs the lost child never had.
        cl2 = resting(oms, "S6")
        oms.send_cancel(cl2, "S6", "1", 300)
        assert oms.wait_done(cl2, TIMEOUT_S)
        check_order(cl2, oms.reports(cl2))
        assert cluster.metrics().get("sor_open_children") == 0.0
    finally:
        oms.stop()
        cluster.stop()


@pytest.mark.parametrize("driver", DRIVERS)
def test_with_sync_every_the_oms_never_has_a_report_the_journal_lost(default_config: SimClusterConfig,
                                                                      tmp_path: Path, driver: str) -> None:
    """``journal.sync = "every"``: killed with SIGKILL right after the OMS got
    its fills, the journal holds every report the OMS received."""
    base = e2e_config(default_config, driver)
    r = msgspec.structs.replace
    cfg = localize(r(base, journal=r(base.journal, sync="every")), tmp_path)
    cluster, oms = start_with_oms(cfg, tmp_path)
    try:
        sent = [oms.send_order(f"S{1 + i % 7}", "1", 150, price="190.05", tif="3") for i in range(20)]
        assert oms.wait_all_done(sent, TIMEOUT_S)
        assert cluster.kill_daemon() != 0
        got = {rep.get(EXEC_ID) for cl in sent for rep in oms.reports(cl)}
    finally:
        oms.stop()
        cluster.stop()
    store = SqliteStore(cfg.journal.path, readonly=True)
    journaled = {c.exec_id for st in records.steps(store.records(1)) if st.commands is not None
                 for c in records.decode_commands(st.commands) if isinstance(c, ReportToOms)}
    store.close()
    assert got and got <= journaled, got - journaled
