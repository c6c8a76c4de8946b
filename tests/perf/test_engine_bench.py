"""In-process hot-path benchmarks: engine decision and FIX codecs.

They print p50/p99 (us) and assert only that the work was done, never on
time: this machine is shared and noisy. Run with `make perf` (or pytest -s)
to see the figures. Wire-level figures are `sor bench` (later issue).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import msgspec
import numpy as np
import quickfix as fix
from prometheus_client import CollectorRegistry

from fix.codec import OmsCodec, VenueCodec
from router.app import instruments
from router.config import Config
from router.domain.commands import ReportToOms, SendChildOrder
from router.domain.events import NewOrderReceived, VenueReport, VenueSessionChanged
from router.domain.types import ExecType, OrdStatus, OrdType, Side, TimeInForce
from router.engine import Engine
from router.metrics.registry import Metrics
from router.routing.baselines import StaticWaterfall

N = 20_000
WARMUP = 2_000


def _report(name: str, samples_ns: list[int]) -> None:
    a = np.asarray(samples_ns[WARMUP:], dtype=np.float64) / 1e3
    print(f"\n  {name:<44} n={a.size:>6}  p50 {np.percentile(a, 50):7.2f} us  "
          f"p99 {np.percentile(a, 99):7.2f} us  max {a.max():8.1f} us")


def _timed(fn: Callable[[int], object], n: int) -> list[int]:
    out = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for i in range(n):
            t0 = clock()
            fn(i)
            out.append(clock() - t0)
    finally:
        gc.enable()
    return out


def test_engine_decision_and_fill(default_config: Config) -> None:
    # The orders arrive 1 ns apart in event time: the pre-trade throttles
    # are raised out of the way (their checks still run and are measured).
    cfg = msgspec.structs.replace(default_config, risk=msgspec.structs.replace(
        default_config.risk, max_msgs_per_s=1_000_000, max_executions=0))
    eng = Engine(cfg, StaticWaterfall(cfg), Metrics([v.name for v in cfg.venues], CollectorRegistry()), "B-")
    for v in cfg.venues:
        eng.on_venue_session(VenueSessionChanged(venue=v.name, up=True, ts_ns=0))
    children: list[SendChildOrder] = []

    def route(i: int) -> None:
        cmds = eng.on_new_order(NewOrderReceived(
            session="S", cl_ord_id=f"c{i}", symbol="AAPL", side=Side.BUY, qty=100, ord_type=OrdType.LIMIT,
            price_ticks=19005, tif=TimeInForce.IOC, recv_ns=i))
        children.append(next(c for c in cmds if isinstance(c, SendChildOrder)))

    def fill(i: int) -> None:
        c = children[i]
        eng.on_venue_report(VenueReport(
            venue=c.venue, child_id=c.child_id, exec_id=f"x{i}", exec_type=ExecType.TRADE,
            ord_status=OrdStatus.FILLED, last_qty=c.qty, last_px_ticks=19001, cum_qty=c.qty, leaves_qty=0,
            text="", recv_ns=i))

    _report("engine: parent in -> first child out", _timed(route, N))
    _report("engine: child fill -> parent ER out", _timed(fill, N))
    assert all(p.state is OrdStatus.FILLED for p in eng.parents.values())


def test_codecs(default_config: Config) -> None:
    inst = instruments(default_config)
    oms = OmsCodec(inst, clock_ns=time.monotonic_ns)
    venue = VenueCodec(inst, clock_ns=time.monotonic_ns)
    nos = fix.Message()
    nos.getHeader().setField(35, "D")
    for tag, value in ((11, "c1"), (55, "AAPL"), (54, "1"), (38, "100"), (40, "2"), (44, "190.05"), (59, "3")):
        nos.setField(tag, value)
    decoded: list[object] = []
    _report("decode NewOrderSingle (OMS -> struct)", _timed(lambda i: decoded.append(oms.decode(nos, "S")), N))
    child = SendChildOrder(venue="LIT1", child_id="C1", symbol="AAPL", side=Side.BUY, qty=100,
                           ord_type=OrdType.LIMIT, price_ticks=19005, tif=TimeInForce.IOC)
    _report("encode child NewOrderSingle (template)", _timed(lambda i: venue.encode_new(child), N))
    er = ReportToOms(session="S", order_id="P1", cl_ord_id="c1", orig_cl_ord_id=None, exec_id="E1",
                     exec_type=ExecType.TRADE, ord_status=OrdStatus.PARTIALLY_FILLED, symbol="AAPL", side=Side.BUY,
                     order_qty=100, ord_type=OrdType.LIMIT, price_ticks=19005, cum_qty=40, leaves_qty=60,
                     avg_px_ticks_num=40 * 19001, last_qty=40, last_px_ticks=19001, last_mkt="XLT1",
                     text="", transact_ns=0)
    _report("encode ExecutionReport to the OMS", _timed(lambda i: oms.encode_report(er), N))
    assert isinstance(decoded[-1], NewOrderReceived)
