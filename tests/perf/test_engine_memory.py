"""A trading day's worth of parents through one in-process engine: resident
memory must level off once finished orders are released.

100,000 parents, 10 ms apart on the engine's clock (1,000 s), each routed,
acked and filled at its venue, every event through ``Engine.handle``.
Prints resident memory and the engine's map sizes every 10,000 parents;
asserts only what is not about time or bytes: every parent filled, and the
engine holding no more finished orders than its retention window covers.
"""

from __future__ import annotations

import gc
import os

from prometheus_client import CollectorRegistry

from router.config import Config
from router.domain.commands import SendChildOrder
from router.domain.events import NewOrderReceived, TimerFired, VenueReport, VenueSessionChanged
from router.domain.types import ExecType, OrdStatus, OrdType, Side, TimeInForce
from router.engine import Engine
from router.engine.core import RETAIN_DONE_NS, RETIRE_EVERY_NS
from router.features.engine import market_state
from router.metrics.registry import Metrics
from router.routing.baselines import StaticWaterfall

PARENTS = 100_000
GAP_NS = 10_000_000
EVERY = 10_000


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_resident_memory_is_flat_over_100k_parents(default_config: Config) -> None:
    cfg = default_config
    md, stats, _ = market_state(cfg)
    eng = Engine(cfg, StaticWaterfall(cfg), Metrics([v.name for v in cfg.venues], CollectorRegistry()), "M-",
                 market=md, stats=stats)
    for v in cfg.venues:
        eng.handle(VenueSessionChanged(venue=v.name, up=True, ts_ns=0))
    sym = cfg.symbols[0]
    px = round(float(sym.ref_price) / float(sym.tick_size))
    exec_ids = 0
    filled = 0
    rows: list[tuple[int, float, int, int]] = []
    gc.collect()
    for i in range(PARENTS):
        now = (i + 1) * GAP_NS
        due = eng.next_timer_ns()
        if due is not None and due <= now:
            eng.handle(TimerFired(ts_ns=now))
        step = eng.handle(NewOrderReceived(
            session="OMS", cl_ord_id=f"c{i}", symbol=sym.symbol, side=Side.BUY if i % 2 else Side.SELL, qty=100,
            ord_type=OrdType.LIMIT, price_ticks=px, tif=TimeInForce.IOC, recv_ns=now))
        for c in step.commands:
            if not isinstance(c, SendChildOrder):
                continue
            exec_ids += 2
            eng.handle(VenueReport(venue=c.venue, child_id=c.child_id, exec_id=f"x{exec_ids}", exec_type=ExecType.NEW,
                                   ord_status=OrdStatus.NEW, last_qty=0, last_px_ticks=0, cum_qty=0,
                                   leaves_qty=c.qty, text="", recv_ns=now + 1000))
            done = eng.handle(VenueReport(venue=c.venue, child_id=c.child_id, exec_id=f"x{exec_ids + 1}",
                                          exec_type=ExecType.TRADE, ord_status=OrdStatus.FILLED, last_qty=c.qty,
                                          last_px_ticks=px, cum_qty=c.qty, leaves_qty=0, text="",
                                          recv_ns=now + 2000))
            filled += sum(1 for r in done.commands if getattr(r, "ord_status", None) is OrdStatus.FILLED)
        if (i + 1) % EVERY == 0:
            rows.append((i + 1, _rss_mib(), len(eng.parents), len(eng.children)))
    print(f"\n  {PARENTS:,} parents, {GAP_NS / 1e6:.0f} ms apart; finished orders kept "
          f"{RETAIN_DONE_NS / 1e9:.0f} s, released every {RETIRE_EVERY_NS / 1e9:.0f} s")
    print("  parents   RSS MiB   in engine: parents  children")
    for n, rss, np_, nc in rows:
        print(f"  {n:>7,}   {rss:7.1f}   {np_:>17,}  {nc:>8,}")
    growth = rows[-1][1] - rows[1][1]
    print(f"  RSS growth from {rows[1][0]:,} to {rows[-1][0]:,} parents: {growth:+.1f} MiB")
    assert filled == PARENTS
    window = (RETAIN_DONE_NS + 2 * RETIRE_EVERY_NS) // GAP_NS
    assert all(np_ <= window for _, _, np_, _ in rows), "finished parents are released after the retention window"
