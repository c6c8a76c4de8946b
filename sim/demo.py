"""``sor demo``: sim venues, the daemon and the sim OMS on loopback.

Sends a stream of parent orders (marketable and passive limits, IOC and DAY,
a few market orders), cancels what is still resting at the end, checks every
execution report against the invariants, and prints a summary: orders by
outcome, fills per venue, average price against the arrival mid in bps, and
latency percentiles measured by the OMS. Exits 0 only if all of that worked.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import numpy as np

from fix.codec import AVG_PX, CUM_QTY, EXEC_TYPE, LAST_MKT, LAST_QTY, ORD_STATUS
from sim.config import SimClusterConfig
from sim.exchange import mid_path
from sim.harness import Cluster, localize
from sim.invariants import InvariantError, check_all
from sim.oms import SimOms
from sim.pacing import sleep_until

STATUS_NAMES = {"2": "filled", "4": "canceled", "8": "rejected", "C": "expired"}


def _pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p)) if values else float("nan")


def run_demo(config_path: str, cfg: SimClusterConfig, orders: int = 200, rate: float = 200.0, seed: int = 1,
             keep_ports: bool = False) -> int:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="sor-demo-") as tmp:
        work = Path(tmp)
        local = localize(cfg, work, keep_ports=keep_ports)
        cluster = Cluster(local, work)
        print(f"sor demo: {len(local.venues)} sim venues, daemon ({local.router.driver} driver), sim OMS on loopback "
              f"(config {config_path})")
        t0 = time.monotonic()
        try:
            cluster.start(timeout_s=60)
        except Exception as e:
            print(f"sor demo: start-up failed: {e}")
            for name in ["daemon", *[f"venue-{v.name}" for v in local.venues]]:
                print(f"--- {name} log ---\n{cluster.log(name)[-3000:]}")
            cluster.stop()
            return 1
        print(f"  venues connected in {time.monotonic() - t0:.1f}s")
        oms = SimOms("127.0.0.1", local.oms.port, sender_comp_id=local.oms.target_comp_id,
                     target_comp_id=local.oms.sender_comp_id, state_dir=work / "oms-fix")
        paths = {s.symbol: mid_path(local, s, local.sim.epoch_ns) for s in local.symbols}
        ticks = {s.symbol: Decimal(s.tick_size) for s in local.symbols}
        try:
            oms.start()
            rc = _drive(oms, local, paths, ticks, rng, orders, rate)
        finally:
            oms.stop()
            codes = cluster.stop()
        bad = {k: v for k, v in codes.items() if v != 0}
        if bad:
            print(f"sor demo: processes did not stop cleanly: {bad}")
            print(cluster.log("daemon")[-3000:])
            return 1
        print("  daemon and venues stopped cleanly (exit 0)")
        if rc == 0:
            rc = _keep_journal(Path(local.journal.path))
        return rc


DEMO_JOURNAL = Path("var/demo-journal.sqlite")


def _keep_journal(path: Path) -> int:
    """Keep the session's journal and show that it replays to the very same
    commands and decisions."""
    from router.replay import replay

    DEMO_JOURNAL.parent.mkdir(parents=True, exist_ok=True)
    DEMO_JOURNAL.unlink(missing_ok=True)
    shutil.copyfile(path, DEMO_JOURNAL)
    rep = replay(DEMO_JOURNAL)
    same = rep.commands_differ == 0 and rep.decisions_differ == 0
    print(f"  journal: {DEMO_JOURNAL} ({rep.events} inputs, {rep.decisions} decisions); replayed through a fresh "
          f"engine: {rep.commands_same}/{rep.steps_with_commands} steps' commands and "
          f"{rep.decisions - rep.decisions_differ}/{rep.decisions} decisions identical "
          f"(sor replay {DEMO_JOURNAL})")
    if not same:
        print(f"sor demo: REPLAY DIFFERS: {rep.first_differences}")
        return 1
    return 0


def _drive(oms: SimOms, cfg: SimClusterConfig, paths: dict, ticks: dict[str, Decimal], rng: np.random.Generator,
           n: int, rate: float) -> int:
    symbols = [s.symbol for s in cfg.symbols]
    sent: dict[str, tuple[str, str, int, float]] = {}  # cl -> (symbol, side, qty, arrival mid)
    period = 1.0 / rate if rate > 0 else 0.0
    start = time.monotonic()
    for i in range(n):
        # Pace against the schedule, not with sleeps of fixed length.
        due = start + i * period
        sleep_until(due)
        sym = symbols[int(rng.integers(len(symbols)))]
        side = "1" if rng.random() < 0.5 else "2"
        qty = int(rng.choice([100, 200, 300, 500, 800, 1200]))
        mid = paths[sym].mid_at(time.time_ns())
        u = rng.random()
        sign = 1 if side == "1" else -1
        if u < 0.1:
            cl = oms.send_order(sym, side, qty)  # market
        else:
            # Mostly marketable limits a few ticks through the mid; some
            # passive DAY limits that will rest and be canceled at the end.
            offset = int(rng.integers(2, 6)) if u < 0.75 else -int(rng.integers(1, 3))
            px = (mid + sign * offset) * ticks[sym]
            tif = "3" if u < 0.3 else "0"
            cl = oms.send_order(sym, side, qty, price=format(px, "f"), tif=tif)
        sent[cl] = (sym, side, qty, float(mid * ticks[sym]))
    send_s = time.monotonic() - start

    oms.wait_all_done(sent, timeout_s=5.0)
    open_orders = [c for c in sent if not oms.is_done(c)]
    for c in open_orders:
        sym, side, qty, _ = sent[c]
        oms.send_cancel(c, sym, side, qty)
    if not oms.wait_all_done(sent, timeout_s=30.0):
        stuck = [c for c in sent if not oms.is_done(c)]
        print(f"sor demo: {len(stuck)} orders never reached a terminal state, e.g. {stuck[:3]}")
        return 1

    by_order = {c: oms.reports(c) for c in sent}
    try:
        n_checked = check_all(by_order)
    except InvariantError as e:
        print(f"sor demo: INVARIANT BROKEN: {e}")
        return 1

    outcomes: dict[str, int] = defaultdict(int)
    venue_fills: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    ack_us: list[float] = []
    fill_us: list[float] = []
    slip_bps: list[tuple[float, int]] = []
    for c, reps in by_order.items():
        final = reps[-1]
        st = final.get(ORD_STATUS)
        cum = int(Decimal(final.get(CUM_QTY, "0")))
        name = STATUS_NAMES.get(st, st)
        if st == "4" and cum:
            name = "partially filled, rest canceled"
        outcomes[name] += 1
        t_sent = oms.sent_ns[c]
        if reps:
            ack_us.append((reps[0].recv_ns - t_sent) / 1e3)
        fills = [r for r in reps if r.get(EXEC_TYPE) == "F"]
        if fills:
            fill_us.append((fills[0].recv_ns - t_sent) / 1e3)
        for r in fills:
            v = venue_fills[r.get(LAST_MKT, "?")]
            v[0] += 1
            v[1] += int(Decimal(r.get(LAST_QTY)))
        if cum:
            _, side, _, mid = sent[c]
            avg = float(final.get(AVG_PX))
            sign = 1 if side == "1" else -1
            slip_bps.append((sign * (avg - mid) / mid * 1e4, cum))

    print(f"\n  parent orders: {len(sent)} sent in {send_s:.2f}s ({len(sent) / max(send_s, 1e-9):.0f}/s); "
          f"{len(open_orders)} still resting at the end were canceled")
    for name, k in sorted(outcomes.items(), key=lambda kv: -kv[1]):
        print(f"    {name:<32} {k:>6}")
    print("  fills by venue (LastMkt):")
    total_qty = sum(v[1] for v in venue_fills.values()) or 1
    for mkt, (k, q) in sorted(venue_fills.items()):
        print(f"    {mkt:<8} fills {k:>6}  shares {q:>9}  ({100 * q / total_qty:.1f}% of filled)")
    if slip_bps:
        w = sum(q for _, q in slip_bps)
        wavg = sum(s * q for s, q in slip_bps) / w
        print(f"  average price vs arrival mid: {wavg:+.2f} bps (share-weighted, positive = paid away), "
              f"median order {statistics.median(s for s, _ in slip_bps):+.2f} bps")
    print("  OMS-measured latency (us)       p50      p90      p99      max")
    for label, vals in (("NewOrderSingle -> first ER", ack_us), ("NewOrderSingle -> first fill", fill_us)):
        if vals:
            print(f"    {label:<28} {_pct(vals, 50):8.0f} {_pct(vals, 90):8.0f} {_pct(vals, 99):8.0f} "
                  f"{max(vals):8.0f}")
    print(f"  invariants: OK ({n_checked} execution reports checked: CumQty+LeavesQty=OrderQty, "
          "CumQty monotonic, AvgPx = weighted fills, unique ExecIDs)")
    return 0
