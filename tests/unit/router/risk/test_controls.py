"""Pre-trade risk controls (router.risk), driven through the real engine.

For every control: the order that breaches it is rejected with the limit
named in Text(58) and counted by limit, and the order just inside it is
routed. Limits changed at run time (``RiskLimitChanged``) apply to the next
order; children a planner makes that breach are not sent; the throttle and
duplicate windows run on the events' own times.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from prometheus_client import CollectorRegistry

from router.config import Config, ConfigError, parse_config
from router.domain.commands import Command, RejectCancel, RejectOrder, ReportToOms, SendChildOrder
from router.domain.events import (
    CancelRequested,
    NewOrderReceived,
    ReplaceRequested,
    RiskLimitChanged,
    SymbolReenabled,
    VenueReport,
    VenueSessionChanged,
)
from router.domain.orders import ParentOrder
from router.domain.plan import Plan, Slice, Wave
from router.domain.types import ExecType, OrdRejReason, OrdStatus, OrdType, Side, TimeInForce
from router.engine import Engine
from router.journal import records
from router.market.rings import MarketData
from router.metrics.registry import RISK_LIMITS, RISK_ORDER_KINDS, Metrics
from router.risk import LIMITS
from router.risk.controls import ORDER_KINDS
from router.routing.baselines import StaticWaterfall
from router.routing.policy import Planner, RulePlanner

BUY, SELL = Side.BUY, Side.SELL
LMT, MKT = OrdType.LIMIT, OrdType.MARKET
IOC, DAY = TimeInForce.IOC, TimeInForce.DAY
T0 = 1_700_000_000_000_000_000
MS = 1_000_000
SESSION = "FIX.4.4:SOR->OMS"

BASE = """
[oms]
port = 9870

[router]
exec_id_prefix = "R-"

[[symbols]]
symbol = "AAPL"
ref_price = "190.00"

[[symbols]]
symbol = "MSFT"
ref_price = "400.00"

[[venues]]
name = "LIT1"
kind = "lit"
port = 9881
target_comp_id = "LIT1"

[[venues]]
name = "LIT2"
kind = "lit"
port = 9882
target_comp_id = "LIT2"

[waterfall]
venues = ["LIT1", "LIT2"]
final_action = "cancel"
"""


def config(risk: str = "", rest: bool = False) -> Config:
    base = BASE.replace('final_action = "cancel"', 'final_action = "rest"\nrest_venue = "LIT1"') if rest else BASE
    return parse_config(base + ("\n[risk]\n" + risk if risk else ""), "test.toml")


class Rig:
    """An engine with both venues up and a 189.99 / 190.01 book (mid 190.00)
    on LIT1 for AAPL, 399.99 / 400.01 for MSFT."""

    def __init__(self, risk: str = "", planner: Planner | None = None, market: bool = True,
                 rest: bool = False) -> None:
        self.cfg = cfg = config(risk, rest)
        self.registry = CollectorRegistry()
        self.md = MarketData(["LIT1", "LIT2"], [True, True], ["AAPL", "MSFT"]) if market else None
        if self.md is not None:
            self.md.apply_book(0, 0, T0, [18999], [500], [19001], [500])
            self.md.apply_book(0, 1, T0, [39999], [500], [40001], [500])
        self.eng = Engine(cfg, planner or StaticWaterfall(cfg), Metrics(["LIT1", "LIT2"], self.registry), "R-",
                          market=self.md)
        for v in ("LIT1", "LIT2"):
            self.eng.handle(VenueSessionChanged(venue=v, up=True, ts_ns=T0))
        self.n = 0
        self.now = T0

    def order(self, qty: int = 100, px: int | None = 19005, side: Side = BUY, symbol: str = "AAPL",
              session: str = SESSION, dt_ms: float = 1.0, tif: TimeInForce = IOC) -> list[Command]:
        self.n += 1
        self.now += int(dt_ms * MS)
        return self.eng.handle(NewOrderReceived(
            session=session, cl_ord_id=f"c{self.n}", symbol=symbol, side=side, qty=qty,
            ord_type=MKT if px is None else LMT, price_ticks=px, tif=tif, recv_ns=self.now)).commands

    def fill(self, child: SendChildOrder, qty: int | None = None, px: int = 19001) -> list[Command]:
        self.now += MS
        q = child.qty if qty is None else qty
        return self.eng.handle(VenueReport(
            venue=child.venue, child_id=child.child_id, exec_id=f"x{self.now}", exec_type=ExecType.TRADE,
            ord_status=OrdStatus.FILLED if q == child.qty else OrdStatus.PARTIALLY_FILLED, last_qty=q,
            last_px_ticks=px, cum_qty=q, leaves_qty=child.qty - q, text="", recv_ns=self.now)).commands

    def cancel(self, child: SendChildOrder) -> list[Command]:
        self.now += MS
        return self.eng.handle(VenueReport(
            venue=child.venue, child_id=child.child_id, exec_id=f"x{self.now}", exec_type=ExecType.CANCELED,
            ord_status=OrdStatus.CANCELED, last_qty=0, last_px_ticks=0, cum_qty=0, leaves_qty=0, text="",
            recv_ns=self.now)).commands

    def change(self, key: str, value: str) -> None:
        self.now += MS
        self.eng.handle(RiskLimitChanged(key=key, value=value, who="ops", ts_ns=self.now))

    def rejects(self, limit: str, order: str = "parent") -> float:
        v = self.registry.get_sample_value("sor_risk_rejects_total", {"limit": limit, "order": order})
        return v or 0.0


def rejected(cmds: Iterable[Command]) -> RejectOrder:
    found = [c for c in cmds if isinstance(c, RejectOrder)]
    assert len(found) == 1, cmds
    return found[0]


def routed(cmds: Iterable[Command]) -> list[SendChildOrder]:
    cmds = list(cmds)
    assert not any(isinstance(c, RejectOrder) for c in cmds), cmds
    children = [c for c in cmds if isinstance(c, SendChildOrder)]
    assert children, cmds
    return children


def test_limit_names_agree_with_the_metrics() -> None:
    assert RISK_LIMITS == LIMITS
    assert RISK_ORDER_KINDS == ORDER_KINDS


def test_defaults() -> None:
    r = config().risk
    assert (r.enabled, r.collar_bps, r.max_order_qty, r.max_order_notional, r.credit_limit, r.max_msgs_per_s,
            r.max_executions, r.execution_window_ms, r.dup_window_ms, r.dup_mode, r.restricted_symbols) == (
        True, 500, 100_000, 10_000_000, 50_000_000_000, 500, 1_000, 1_000, 1_000, "warn", [])


def test_config_overrides_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"risk.symbols\[0\].symbol: unknown symbol 'NOPE'"):
        config('[[risk.symbols]]\nsymbol = "NOPE"\n')
    with pytest.raises(ConfigError, match=r"risk\.collar_bps"):
        config("collar_bps = -1\n")
    with pytest.raises(ConfigError, match=r"risk\.dup_mode"):
        config('dup_mode = "maybe"\n')


# ------------------------------------------------------------- price collar


def test_collar_rejects_beyond_and_routes_at_the_edge() -> None:
    rig = Rig()
    r = rejected(rig.order(px=28500))
    assert r.text == "price collar: limit 285.00 is 50.0% above the NBBO mid 190.00 (collar_bps 500)"
    assert r.reason is OrdRejReason.ORDER_EXCEEDS_LIMIT
    assert rejected(rig.order(px=9500, side=SELL)).text == \
        "price collar: limit 95.00 is 50.0% below the NBBO mid 190.00 (collar_bps 500)"
    assert "price collar: limit 199.51" in rejected(rig.order(px=19951)).text
    assert "price collar: limit 180.49" in rejected(rig.order(px=18049, side=SELL)).text
    assert routed(rig.order(px=19950))[0].price_ticks == 19950  # exactly 5.00% through: inside
    routed(rig.order(px=18050, side=SELL))
    assert rig.rejects("price_collar") == 4


def test_collar_uses_the_last_trade_when_the_book_is_one_sided() -> None:
    rig = Rig()
    assert rig.md is not None
    rig.md.apply_book(0, 0, T0 + MS, [18999], [500], [], [])
    rig.md.apply_trade(1, 0, T0 + MS, 20000, 100, 1)
    assert "above the last trade 200.00" in rejected(rig.order(px=21001, dt_ms=2)).text
    routed(rig.order(px=21000))


def test_collar_uses_the_last_trade_when_the_book_is_stale() -> None:
    rig = Rig()
    assert rig.md is not None
    stale = rig.cfg.marketdata.stale_ms
    rig.md.apply_trade(1, 0, T0 + MS, 20000, 100, 1)
    # Fresh book: the mid (190.00) is the reference; 210.00 is beyond it.
    assert "the NBBO mid 190.00" in rejected(rig.order(px=21000)).text
    # The book is older than marketdata.stale_ms: the last print (200.00) rules.
    routed(rig.order(px=21000, dt_ms=stale + 1))
    # A stale book and no print at all: the stale mid still anchors the collar.
    assert "the stale NBBO mid 400.00" in rejected(rig.order(px=42100, symbol="MSFT")).text


def test_no_market_data_no_collar() -> None:
    rig = Rig(market=False)
    routed(rig.order(px=28500))


def test_market_order_children_are_limits_at_the_collar() -> None:
    rig = Rig()
    child = routed(rig.order(px=None))[0]
    assert (child.ord_type, child.price_ticks) == (LMT, 19950)
    child = routed(rig.order(px=None, side=SELL))[0]
    assert (child.ord_type, child.price_ticks) == (LMT, 18050)
    # Off: market children stay market orders.
    rig.change("collar_bps", "0")
    child = routed(rig.order(px=None))[0]
    assert (child.ord_type, child.price_ticks) == (MKT, None)


# ---------------------------------------------------------- qty and notional


def test_max_order_qty_per_symbol() -> None:
    rig = Rig('[[risk.symbols]]\nsymbol = "AAPL"\nmax_order_qty = 1000\n')
    assert rejected(rig.order(qty=1001)).text == \
        "max order qty: order qty 1001 exceeds the limit of 1000 for AAPL (risk.symbols[AAPL].max_order_qty)"
    routed(rig.order(qty=1000))
    routed(rig.order(qty=5000, symbol="MSFT", px=40001))  # the default, 100,000, for MSFT


def test_max_order_qty_default_and_per_session() -> None:
    rig = Rig('max_order_notional = 100000000\n[[risk.sessions]]\nsession = "OMS"\nmax_order_qty = 500\n')
    assert rejected(rig.order(qty=501)).text == (
        f"max order qty: order qty 501 exceeds the limit of 500 for session {SESSION} "
        "(risk.sessions[OMS].max_order_qty)")
    routed(rig.order(qty=500))
    other = "FIX.4.4:SOR->OMS2"
    assert "(risk.max_order_qty)" in rejected(rig.order(qty=100_001, px=1, session=other)).text
    routed(rig.order(qty=100_000, px=18999, session=other, side=SELL))


def test_max_order_notional() -> None:
    rig = Rig()
    # 52,632 x 190.00 = 10,000,080.00 > 10,000,000; 52,631 x 190.00 fits.
    r = rejected(rig.order(qty=52_632, px=19000))
    assert r.text == ("max order notional: order notional 10,000,080.00 exceeds the limit of 10,000,000.00 for "
                      "AAPL (risk.max_order_notional)")
    routed(rig.order(qty=52_631, px=19000))
    # A market order counts at the collar: 50,126 x 199.50 = 10,000,137.
    assert "max order notional" in rejected(rig.order(qty=50_126, px=None)).text
    routed(rig.order(qty=50_125, px=None))


def test_max_order_notional_per_session() -> None:
    rig = Rig('[[risk.sessions]]\nsession = "FIX.4.4:SOR->OMS"\nmax_order_notional = 19000\n')
    assert "(risk.sessions[FIX.4.4:SOR->OMS].max_order_notional)" in rejected(rig.order(qty=101, px=19000)).text
    routed(rig.order(qty=100, px=19000))


# -------------------------------------------------------------------- credit


def test_credit_counts_open_and_executed_and_releases_unfilled() -> None:
    # 1,000 x 190.00 = 190,000 per order; the credit holds five.
    rig = Rig('[[risk.sessions]]\nsession = "OMS"\ncredit_limit = 950000\n')
    kids = [routed(rig.order(qty=1000, px=19000))[0] for _ in range(5)]
    assert rig.eng.risk.credit_used(SESSION) == pytest.approx(950_000)
    r = rejected(rig.order(qty=1000, px=19000))
    assert r.text == (f"credit limit: order notional 190,000.00 on top of 950,000.00 open and executed exceeds "
                      f"950,000.00 for session {SESSION} (risk.sessions[OMS].credit_limit)")
    # One fills at 189.99 (executed: stays charged at what it cost), one ends
    # unfilled on both venues (given back).
    rig.fill(kids[0], px=18999)
    assert rig.eng.risk.credit_used(SESSION) == pytest.approx(949_990)
    second = [c for c in rig.cancel(kids[1]) if isinstance(c, SendChildOrder)]
    assert second and second[0].venue == "LIT2"
    assert any(isinstance(c, ReportToOms) and c.ord_status is OrdStatus.CANCELED for c in rig.cancel(second[0]))
    assert rig.eng.risk.credit_used(SESSION) == pytest.approx(759_990)
    routed(rig.order(qty=1000, px=19000))
    assert "credit limit" in rejected(rig.order(qty=1, px=19000)).text
    assert rig.rejects("credit_limit") == 2


# ------------------------------------------------------------------ throttle


def test_message_throttle_by_event_time() -> None:
    rig = Rig("max_msgs_per_s = 5\n")
    for _ in range(5):
        routed(rig.order(dt_ms=100))
    r = rejected(rig.order(dt_ms=100))  # the 6th within 600 ms
    assert r.text == (f"message throttle: more than 5 new orders, cancels and replaces in one second from session "
                      f"{SESSION} (risk.max_msgs_per_s)")
    assert r.reason is OrdRejReason.OTHER
    routed(rig.order(dt_ms=500))  # 1.000 s after the first: it has left the window
    routed(rig.order(qty=50, session="FIX.4.4:SOR->OMS2"))  # per session
    # Cancels count and are refused beyond it too (never queued).
    rig.now += 1
    rc = rig.eng.handle(CancelRequested(session=SESSION, cl_ord_id="x1", orig_cl_ord_id="c7", symbol="AAPL",
                                        side=BUY, recv_ns=rig.now)).commands
    assert isinstance(rc[0], RejectCancel) and rc[0].text.startswith("message throttle: more than 5")
    assert rig.rejects("message_throttle", "cancel") == 1
    assert rig.rejects("message_throttle") == 1


def test_throttle_change_at_run_time_applies_to_the_next_order() -> None:
    rig = Rig("max_msgs_per_s = 2\n")
    routed(rig.order())
    routed(rig.order())
    assert "more than 2" in rejected(rig.order()).text
    rig.change("session.OMS.max_msgs_per_s", "3")
    routed(rig.order())
    assert "more than 3" in rejected(rig.order()).text
    # The full session key, dots and all, names it too.
    rig.change(f"session.{SESSION}.max_msgs_per_s", "4")
    assert rig.eng.risk.config.sessions[-1].session == SESSION
    routed(rig.order())  # the window kept its times: 4 in it now
    assert f"more than 4 new orders, cancels and replaces in one second from session {SESSION} " \
        f"(risk.sessions[{SESSION}].max_msgs_per_s)" in rejected(rig.order()).text


# ---------------------------------------------------- repeated executions


def test_execution_throttle_stops_the_symbol_until_reenabled() -> None:
    rig = Rig("max_executions = 3\nexecution_window_ms = 1000\n")
    kids = [routed(rig.order(qty=100, tif=DAY))[0] for _ in range(3)]
    rig.fill(kids[0], 50)
    rig.fill(kids[1])
    assert rig.eng.risk.stopped_symbols() == []
    rig.fill(kids[2])  # the 3rd execution within 1 s
    assert rig.eng.risk.stopped_symbols() == ["AAPL"]
    r = rejected(rig.order())
    assert r.text == ("execution throttle: AAPL stopped after 3 executions in 1000 ms (risk.max_executions); "
                      "an operator must re-enable it")
    routed(rig.order(symbol="MSFT", px=40001))
    # The half-filled parent's next wave is a child of AAPL: not sent, and
    # its waterfall ends with the reason.
    out = rig.cancel(kids[0])
    assert not [c for c in out if isinstance(c, SendChildOrder)]
    end = next(c for c in out if isinstance(c, ReportToOms))
    assert end.ord_status is OrdStatus.CANCELED and end.cum_qty == 50
    assert end.text.startswith("waterfall exhausted: 50 unfilled; child of 50 for LIT2 not sent: execution throttle")
    assert rig.rejects("execution_throttle", "child") == 1
    rig.now += MS
    rig.eng.handle(SymbolReenabled(symbol="AAPL", who="ops", ts_ns=rig.now))
    assert rig.eng.risk.stopped_symbols() == []
    routed(rig.order())


def test_executions_spread_over_the_window_do_not_stop() -> None:
    rig = Rig("max_executions = 3\nexecution_window_ms = 1000\n")
    for _ in range(6):
        kid = routed(rig.order(dt_ms=600))[0]
        rig.fill(kid)
    assert rig.eng.risk.stopped_symbols() == []


# ------------------------------------------------------------ duplicates


def test_duplicate_guard_rejects_within_the_window() -> None:
    rig = Rig('dup_mode = "reject"\ndup_window_ms = 1000\n')
    routed(rig.order())
    r = rejected(rig.order(dt_ms=999))
    assert r.reason is OrdRejReason.DUPLICATE_ORDER
    assert r.text == ("duplicate order: same session, symbol, side, qty and price as one 999.0 ms ago "
                      "(risk.dup_window_ms 1000)")
    routed(rig.order(qty=101))  # another quantity is another order
    routed(rig.order(dt_ms=1))  # 1.000 s after the first: outside the window
    routed(rig.order(session="FIX.4.4:SOR->OMS2"))


def test_duplicate_guard_warns_by_default() -> None:
    rig = Rig()
    routed(rig.order())
    routed(rig.order())
    assert rig.registry.get_sample_value("sor_risk_warnings_total", {"limit": "duplicate_order"}) == 1
    assert rig.rejects("duplicate_order") == 0


# -------------------------------------------------------------- restricted


def test_restricted_symbols() -> None:
    rig = Rig('restricted_symbols = ["AAPL"]\n')
    r = rejected(rig.order())
    assert r.text == "restricted symbol: AAPL is on risk.restricted_symbols"
    assert r.reason is OrdRejReason.BROKER_OPTION
    routed(rig.order(symbol="MSFT", px=40001))
    rig.change("restricted_symbols", "MSFT")
    routed(rig.order())
    assert "restricted symbol: MSFT" in rejected(rig.order(symbol="MSFT", px=40001)).text


# ---------------------------------------------------- run-time limit changes


def test_collar_change_applies_to_the_next_order_and_is_journaled() -> None:
    rig = Rig()
    routed(rig.order(px=19300))  # 1.6% through: inside 500 bps
    ev = RiskLimitChanged(key="symbol.AAPL.collar_bps", value="100", who="alice", ts_ns=rig.now + 1)
    assert records.decode_event(records.encode(ev)) == ev  # the journal keeps it as the input it was
    rig.eng.handle(ev)
    assert "(collar_bps 100)" in rejected(rig.order(px=19300)).text
    routed(rig.order(px=19190))
    routed(rig.order(px=41000, symbol="MSFT"))  # MSFT keeps 500
    assert rig.registry.get_sample_value("sor_risk_limit_changes_total", {"outcome": "applied"}) == 1


@pytest.mark.parametrize(("key", "value"), [
    ("collar_bps", "-5"), ("collar_bps", "wide"), ("no_such_limit", "1"), ("symbol.NOPE.collar_bps", "5"),
    ("symbol.AAPL.credit_limit", "5"), ("dup_mode", "sometimes"),
])
def test_a_bad_change_is_refused_and_changes_nothing(key: str, value: str) -> None:
    rig = Rig()
    assert rig.eng.risk.check_change(key, value) is not None
    before = rig.eng.risk.config
    rig.change(key, value)
    assert rig.eng.risk.config == before
    assert rig.registry.get_sample_value("sor_risk_limit_changes_total", {"outcome": "refused"}) == 1


def test_every_field_is_changeable() -> None:
    rig = Rig()
    for key, value in [("max_order_qty", "10"), ("max_order_notional", "1000"), ("credit_limit", "1000000"),
                       ("max_msgs_per_s", "1000"), ("max_executions", "0"), ("execution_window_ms", "10"),
                       ("dup_window_ms", "0"), ("dup_mode", "reject"), ("enabled", "false"),
                       ("session.OMS.credit_limit", "5"), ("symbol.MSFT.max_order_qty", "7")]:
        assert rig.eng.risk.check_change(key, value) is None, key
    rig.change("max_order_qty", "10")
    assert "exceeds the limit of 10 for AAPL (risk.max_order_qty)" in rejected(rig.order(qty=11)).text
    rig.change("enabled", "false")
    routed(rig.order(qty=11, px=28500))


# ------------------------------------------------------- planner's children


class BadPlanner(RulePlanner):
    """Its first wave prices a child 10% through the mid (a model gone
    wrong), its second wave is sane."""

    name = "bad"

    def __init__(self, second_wave: bool) -> None:
        self.second_wave = second_wave

    def plan(self, order: ParentOrder, venues_up: frozenset[str]) -> Plan:
        waves = [Wave(slices=(Slice(venue="LIT1", tif=IOC, limit_ticks=20900),
                              Slice(venue="LIT2", tif=IOC, limit_ticks=19001)))]
        if self.second_wave:
            waves.append(Wave(slices=(Slice(venue="LIT2", tif=IOC, limit_ticks=19001),)))
        return Plan(waves=tuple(waves), name=self.name)


def test_children_that_breach_are_not_sent() -> None:
    rig = Rig(planner=BadPlanner(second_wave=True))
    cmds = rig.order(qty=100, px=None)
    kids = routed(cmds)
    # The LIT1 slice (209.00, beyond the 199.50 collar) was skipped; LIT2's went.
    assert [(k.venue, k.qty, k.price_ticks) for k in kids] == [("LIT2", 50, 19001)]
    assert rig.rejects("price_collar", "child") == 1
    # The second wave routes the rest.
    nxt = [c for c in rig.cancel(kids[0]) if isinstance(c, SendChildOrder)]
    assert [(k.venue, k.qty) for k in nxt] == [("LIT2", 100)]


def test_a_parent_whose_every_child_breaches_ends_with_the_reason() -> None:
    rig = Rig(planner=BadPlanner(second_wave=False), risk="collar_bps = 50\n")
    # Parent limit 190.50 is inside 50 bps; LIT1's 209.00 child is beyond the
    # parent's own limit (and the collar); LIT2's 190.01 goes.
    kids = routed(rig.order(qty=100, px=19050))
    assert [k.venue for k in kids] == ["LIT2"]
    assert rig.rejects("child_price", "child") == 1
    end = next(c for c in rig.cancel(kids[0]) if isinstance(c, ReportToOms))
    assert end.ord_status is OrdStatus.CANCELED
    assert end.text == ("waterfall exhausted: 100 unfilled; child of 50 for LIT1 not sent: child price: limit "
                        "209.00 is beyond the parent's limit 190.50")


def test_a_market_parent_with_only_breaching_children_is_canceled_at_once() -> None:
    class AllBad(RulePlanner):
        def plan(self, order: ParentOrder, venues_up: frozenset[str]) -> Plan:
            return Plan(waves=(Wave(slices=(Slice(venue="LIT1", tif=IOC, limit_ticks=20900),)),), name="allbad")

    rig = Rig(planner=AllBad())
    cmds = rig.order(qty=100, px=None)
    assert not [c for c in cmds if isinstance(c, SendChildOrder)]
    reps = [c for c in cmds if isinstance(c, ReportToOms)]
    assert [r.exec_type for r in reps] == [ExecType.NEW, ExecType.CANCELED]
    assert reps[-1].text == ("waterfall exhausted: 100 unfilled; child of 100 for LIT1 not sent: price collar: "
                             "child limit 209.00 is 10.0% above the NBBO mid 190.00 (collar_bps 500)")
    assert rig.eng.risk.credit_used(SESSION) == 0


def test_no_reference_yet_no_collar() -> None:
    md = MarketData(["LIT1", "LIT2"], [True, True], ["AAPL", "MSFT"])
    assert md.reference2(0, T0, 10**9) == (0, 0)
    rig = Rig(market=False)
    rig.eng.risk._market = md  # books not in yet
    routed(rig.order(px=28500))
    # A market order is then charged at the symbol's ref_price (190.00).
    assert "notional 19,000,000.00" in rejected(rig.order(qty=100_000, px=None)).text


# ------------------------------------------------------------ cancel/replace


def _replace(rig: Rig, orig: str, qty: int, px: int | None, side: Side = BUY) -> list[Command]:
    rig.n += 1
    rig.now += MS
    return rig.eng.handle(ReplaceRequested(
        session=SESSION, cl_ord_id=f"r{rig.n}", orig_cl_ord_id=orig, symbol="AAPL", side=side, qty=qty,
        ord_type=MKT if px is None else LMT, price_ticks=px, tif=DAY, recv_ns=rig.now)).commands


def _resting_rig(risk: str = "") -> Rig:
    """c1: a DAY buy of 100 at 189.00, resting on LIT1 (final_action rest)."""
    rig = Rig(risk, rest=True)
    _rest(rig)
    return rig


def _rest(rig: Rig) -> SendChildOrder:
    """One more DAY buy of 100 at 189.00, swept and resting on LIT1: its resting child."""
    sent = routed(rig.order(px=18900, tif=DAY))
    for _ in range(2):
        sent = [c for c in rig.cancel(sent[0]) if isinstance(c, SendChildOrder)]
    assert sent and sent[0].tif is DAY
    return sent[0]


def _refused(cmds: Iterable[Command]) -> RejectCancel:
    found = [c for c in cmds if isinstance(c, RejectCancel)]
    assert len(found) == 1, cmds
    assert found[0].response_to_replace
    return found[0]


def _taken(cmds: Iterable[Command]) -> None:
    assert not [c for c in cmds if isinstance(c, RejectCancel)], cmds
    assert any(isinstance(c, ReportToOms) and c.exec_type is ExecType.PENDING_REPLACE for c in cmds), cmds


def test_a_new_price_beyond_the_collar_is_refused_and_the_edge_is_taken() -> None:
    rig = _resting_rig()
    r = _refused(_replace(rig, "c1", 100, 19951))
    assert r.text == "price collar: limit 199.51 is 5.0% above the NBBO mid 190.00 (collar_bps 500)"
    assert rig.rejects("price_collar", "replace") == 1
    _taken(_replace(rig, "c1", 100, 19950))


def test_a_quantity_cut_passes_even_when_the_market_moved_beyond_the_collar() -> None:
    rig = _resting_rig()
    assert rig.md is not None
    # The market falls 10%: the resting 189.00 buy is now beyond the collar.
    rig.md.apply_book(0, 0, rig.now + MS, [17099], [500], [17101], [500])
    rig.now += 2 * MS
    _taken(_replace(rig, "c1", 50, 18900))
    assert rig.rejects("price_collar", "replace") == 0


def test_more_shares_up_to_the_max_notional_pass_and_beyond_are_refused() -> None:
    # 189.00 x 5,291 = 999,999 (inside 1,000,000); 5,292 shares are beyond.
    rig = _resting_rig("max_order_notional = 1000000")
    assert "max order notional" in _refused(_replace(rig, "c1", 5292, 18900)).text
    _taken(_replace(rig, "c1", 5291, 18900))


def test_a_replace_is_charged_its_new_credit_and_refused_beyond_the_session_credit() -> None:
    rig = _resting_rig("credit_limit = 100000")
    used = rig.eng.risk.credit_used(SESSION)
    assert used == 100 * 189.0
    # 529 x 189.00 = 99,981 within 100,000 once the order's own 18,900 is replaced, not added to.
    r = _refused(_replace(rig, "c1", 530, 18900))
    assert "credit limit: replaced order notional 100,170" in r.text, r.text
    _taken(_replace(rig, "c1", 529, 18900))


def test_a_pending_replace_holds_its_credit_so_a_second_one_cannot_overshoot() -> None:
    # 60,000 of credit; two parents of 18,900 each. Each alone could be
    # replaced to 200 (37,800); both would use 75,600.
    rig = _resting_rig("credit_limit = 60000")
    second = _rest(rig)
    _taken(_replace(rig, "c1", 200, 18900))
    assert rig.eng.risk.credit_used(SESSION) == 37_800 + 18_900, "reserved while pending"
    r = _refused(_replace(rig, "c2", 200, 18900))
    assert "credit limit" in r.text
    # Refused or not, the reservation settles: the second parent's cancel
    # ends it and gives its credit back; the first is charged its new terms.
    rig.cancel(second)
    assert rig.eng.risk.credit_used(SESSION) == 37_800
