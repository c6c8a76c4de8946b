"""The chaos soak, short (``sor soak`` / ``make soak`` run the long one):
parents over the sim venues while a venue, the daemon and the OMS are each
killed or dropped at least once on a seeded schedule; at the end nothing
lost, duplicated or over-filled share for share against the venues' own
records, no orphan at the venues, every parent terminal, every invariant
held."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from sim.config import SimClusterConfig
from sim.harness import localize, poll_until
from sim.soak import KINDS, WORKING, SentOrder, audit_venues, format_report, run_soak, sent_orders
from tests.e2e.conftest import e2e_config
from tests.e2e.flows import TIMEOUT_S, resting, start_with_oms

PARENTS = 2000
RATE = 50.0
"""40 s of flow on a 2-core machine shared with other tests."""


@pytest.mark.e2e
def test_short_chaos_soak_loses_and_duplicates_nothing(default_config: SimClusterConfig, tmp_path: Path) -> None:
    rep = run_soak(PARENTS, 1, RATE, tmp_path / "soak", base=default_config, fault_every_s=10.0)
    text = format_report(rep)
    kinds = Counter(f.plan.kind for f in rep.faults)
    assert all(kinds[k] >= 1 for k in KINDS), (kinds, text)
    assert rep.parents_sent == PARENTS, text
    assert rep.venue_fills > 0 and rep.oms_shares == rep.venue_shares, text
    assert rep.passed, text


@pytest.mark.e2e
def test_the_orphan_audit_finds_a_child_left_working_at_a_venue(default_config: SimClusterConfig,
                                                               tmp_path: Path) -> None:
    """The soak's orphan check itself: with ``router.shutdown = "leave"`` a
    clean stop leaves the resting child at LIT1, and asking the venues (as
    the router, from a copy of its FIX store) finds exactly that one working."""
    base = e2e_config(default_config)
    cfg = localize(msgspec.structs.replace(base, router=msgspec.structs.replace(base.router, shutdown="leave")),
                   tmp_path)
    cluster, oms = start_with_oms(cfg, tmp_path)
    store = Path(cfg.fix.state_dir) / "venues" / "store"

    def sent_by_router() -> dict[str, dict[str, SentOrder]]:
        return {v.name: sent_orders(store / f"FIX.4.4-{v.sender_comp_id}-{v.target_comp_id}.body")
                for v in cfg.venues}

    try:
        resting(oms, "S5")
        # IOC on LIT1 and LIT2, then the rest goes to LIT1 as a DAY child.
        assert poll_until(lambda: any(o.tif == "0" for o in sent_by_router()["LIT1"].values()), TIMEOUT_S)
        assert poll_until(lambda: cluster.metrics().get("sor_open_children") == 1.0, TIMEOUT_S)
        assert cluster.stop_daemon() == 0
        sent = sent_by_router()
        copy = tmp_path / "audit-fix"
        shutil.copytree(cfg.fix.state_dir, copy)
        answers = audit_venues(cfg, copy, sent, timeout_s=30)
    finally:
        oms.stop()
        cluster.stop()
    assert {v: len(a) for v, a in answers.items()} == {v: len(o) for v, o in sent.items()}
    working = [(v, cl) for v, a in answers.items() for cl, (status, _) in a.items() if status in WORKING]
    day = [cl for cl, o in sent["LIT1"].items() if o.tif == "0"]
    assert working == [("LIT1", day[0])], answers
