"""SharedMarket (mid, leak impact, regimes) and VenueCore (matching, order
lifecycle) of the sans-IO simulated exchange, on the shipped scenarios."""

from __future__ import annotations

import math

import pytest

from router.domain.types import OrdType, Side, TimeInForce
from sim.book import LitBook
from sim.config import SimClusterConfig
from sim.exchange import (
    Ack,
    Canceled,
    CancelRefused,
    Filled,
    Out,
    Rejected,
    SharedMarket,
    Trade,
    VenueCore,
)
from sim.report import scenario_config

EPOCH = 10**12
SEC = 1_000_000_000
SYM = "XYZ"
BUY, SELL = Side.BUY, Side.SELL
LMT, MKT = OrdType.LIMIT, OrdType.MARKET
IOC, DAY = TimeInForce.IOC, TimeInForce.DAY


@pytest.fixture(scope="module")
def toxic() -> SimClusterConfig:
    return scenario_config("toxic_dark")


@pytest.fixture(scope="module")
def regime() -> SimClusterConfig:
    return scenario_config("regime")


class Exchange:
    """Every venue of a scenario on one SharedMarket, lit venues requoting on
    every leak (the wiring the backtest and the sim venues use)."""

    def __init__(self, cfg: SimClusterConfig) -> None:
        self.market = SharedMarket(cfg, EPOCH)
        self.cores = {v.name: VenueCore(cfg, v.name, self.market, v.name) for v in cfg.venues}
        self.leaks: list[tuple[str, int]] = []
        self.requoted: dict[str, list[Out]] = {name: [] for name in self.cores}
        self.market.on_leak(self._on_leak)

    def _on_leak(self, symbol: str, ts_ns: int) -> None:
        self.leaks.append((symbol, ts_ns))
        for core in self.cores.values():
            if core.lit:
                self.requoted[core.venue.name] += core.requote(symbol, ts_ns)

    def tick_all(self, ts_ns: int) -> None:
        for core in self.cores.values():
            core.tick(ts_ns, core.venue.sim.requote_ms / 1e3)

    def book(self, venue: str) -> LitBook:
        b = self.cores[venue].books[SYM].book
        assert b is not None
        return b


def _fills(outs: list[Out]) -> list[Filled]:
    return [o for o in outs if isinstance(o, Filled)]


# ------------------------------------------------------------------ leaks


def test_toxic_pool_buy_moves_mid_requotes_lit_and_fills_at_moved_mid(toxic: SimClusterConfig) -> None:
    assert toxic.venue("DARKT").sim.leak_ticks == 2
    ex = Exchange(toxic)
    t = EPOCH + 3 * SEC
    ex.tick_all(t)
    mid0 = ex.market.mid_at(SYM, t)
    assert mid0 == ex.market.fair_mid_at(SYM, t)  # nothing leaked yet
    ask1, bid1 = ex.book("LIT1").best_ask(), ex.book("LIT1").best_bid()
    ask2 = ex.book("LIT2").best_ask()
    assert ask1 is not None and bid1 is not None and ask2 is not None
    assert ask1 == mid0 + toxic.venue("LIT1").sim.half_spread_ticks

    outs = ex.cores["DARKT"].new_order("c1", SYM, BUY, 1000, MKT, None, IOC, t)

    assert ex.market.mid_at(SYM, t) == mid0 + 2
    assert ex.market.fair_mid_at(SYM, t) == mid0  # the benchmark never moves
    assert ex.leaks == [(SYM, t)]
    # Lit venues requoted around the moved mid at once, without a tick.
    assert ex.book("LIT1").best_ask() == ask1 + 2
    assert ex.book("LIT1").best_bid() == bid1 + 2
    assert ex.book("LIT2").best_ask() == ask2 + 2
    fills = _fills(outs)
    assert fills, "the toxic pool (contra_prob 0.8) filled nothing at this seed"
    assert all(f.px_ticks == mid0 + 2 for f in fills)
    assert isinstance(outs[0], Ack)


def test_leak_decays_with_half_life(toxic: SimClusterConfig) -> None:
    ex = Exchange(toxic)
    t = EPOCH + 3 * SEC
    ex.cores["DARKT"].new_order("c1", SYM, BUY, 1000, MKT, None, IOC, t)
    hl = toxic.scenario.impact_half_life_ms * 1_000_000 if toxic.scenario else 0
    assert hl == 500_000_000
    assert ex.market.impact_at(SYM, t) == pytest.approx(2.0)
    assert ex.market.impact_at(SYM, t + hl) == pytest.approx(1.0)
    assert ex.market.impact_at(SYM, t + 2 * hl) == pytest.approx(0.5)
    later = t + 5 * hl
    assert abs(ex.market.mid_at(SYM, later) - ex.market.fair_mid_at(SYM, later)) <= 1
    # Lit venues quote around the decayed mid on their next tick.
    ex.tick_all(later)
    assert ex.book("LIT1").best_ask() == ex.market.mid_at(SYM, later) + 1


def test_toxic_pool_sell_moves_mid_down(toxic: SimClusterConfig) -> None:
    ex = Exchange(toxic)
    t = EPOCH + 4 * SEC
    ex.tick_all(t)
    mid0 = ex.market.mid_at(SYM, t)
    bid1 = ex.book("LIT1").best_bid()
    assert bid1 is not None
    outs = ex.cores["DARKT"].new_order("s1", SYM, SELL, 800, LMT, mid0 - 5, IOC, t)
    assert ex.market.mid_at(SYM, t) == mid0 - 2
    assert ex.market.impact_at(SYM, t) == pytest.approx(-2.0)
    assert ex.book("LIT1").best_bid() == bid1 - 2
    assert all(f.px_ticks == mid0 - 2 for f in _fills(outs))


def test_benign_pool_does_not_move_mid(toxic: SimClusterConfig) -> None:
    assert toxic.venue("DARKB").sim.leak_ticks == 0
    ex = Exchange(toxic)
    t = EPOCH + 3 * SEC
    ex.tick_all(t)
    mid0 = ex.market.mid_at(SYM, t)
    ask1 = ex.book("LIT1").best_ask()
    for i, side in enumerate((BUY, SELL, BUY)):
        outs = ex.cores["DARKB"].new_order(f"b{i}", SYM, side, 1000, MKT, None, IOC, t)
        assert all(f.px_ticks == mid0 for f in _fills(outs))
    assert ex.market.mid_at(SYM, t) == mid0
    assert ex.market.impact_at(SYM, t) == 0.0
    assert ex.market.impulses[SYM] == []
    assert ex.leaks == []
    assert ex.book("LIT1").best_ask() == ask1


def test_two_leaks_stack(toxic: SimClusterConfig) -> None:
    ex = Exchange(toxic)
    t = EPOCH + 3 * SEC
    mid0 = ex.market.mid_at(SYM, t)
    ex.cores["DARKT"].new_order("c1", SYM, BUY, 100, MKT, None, IOC, t)
    ex.cores["DARKT"].new_order("c2", SYM, BUY, 100, MKT, None, IOC, t)
    assert ex.market.mid_at(SYM, t) == mid0 + 4


# ------------------------------------------------------------ impact history


def test_impact_at_past_instant_sums_impulses(toxic: SimClusterConfig) -> None:
    m = SharedMarket(toxic, EPOCH)
    hl = 500_000_000
    t1, t2, t3 = EPOCH + 10 * SEC, EPOCH + 10 * SEC + hl, EPOCH + 12 * SEC
    m.leak(SYM, 2.0, t1)
    m.leak(SYM, -3.0, t2)
    m.leak(SYM, 1.0, t3)
    assert m.impulses[SYM] == [(t1, 2.0), (t2, -3.0), (t3, 1.0)]

    def expected(ts: int) -> float:
        return sum(a * 0.5 ** ((ts - t) / hl) for t, a in m.impulses[SYM] if t <= ts)

    # Before the first impulse there is no impact; between impulses only the
    # earlier ones count, decayed from their own instants.
    assert m.impact_at(SYM, t1 - 1) == 0.0
    assert m.impact_at(SYM, t1) == pytest.approx(2.0)
    assert m.impact_at(SYM, t1 + hl // 2) == pytest.approx(2.0 * 0.5**0.5)
    assert m.impact_at(SYM, t2) == pytest.approx(1.0 - 3.0)
    for ts in (t1 + 1, t2 - 1, t2 + 123_456_789, t3 - 1, t3, t3 + 7 * hl):
        assert m.impact_at(SYM, ts) == pytest.approx(expected(ts), abs=1e-9), ts
        assert m.mid_at(SYM, ts) == m.fair_mid_at(SYM, ts) + round(expected(ts))


def test_fair_mid_never_includes_impact(toxic: SimClusterConfig) -> None:
    leaked = SharedMarket(toxic, EPOCH)
    clean = SharedMarket(toxic, EPOCH)
    leaked.leak(SYM, 5.0, EPOCH + SEC)
    for ts in range(EPOCH, EPOCH + 3 * SEC, 100_000_000):
        assert leaked.fair_mid_at(SYM, ts) == clean.fair_mid_at(SYM, ts) == clean.mid_at(SYM, ts)
    assert leaked.mid_at(SYM, EPOCH + SEC) == leaked.fair_mid_at(SYM, EPOCH + SEC) + 5
    assert leaked.mid_at(SYM, EPOCH + SEC - 1) == leaked.fair_mid_at(SYM, EPOCH + SEC - 1)


def test_mid_path_is_the_same_in_every_market(toxic: SimClusterConfig) -> None:
    a, b = SharedMarket(toxic, EPOCH), SharedMarket(toxic, EPOCH)
    ts = [EPOCH + k * 37_000_000 for k in range(300)]
    mids = [a.fair_mid_at(SYM, t) for t in ts]
    assert mids == [b.fair_mid_at(SYM, t) for t in reversed(ts)][::-1]
    assert len(set(mids)) > 1  # the walk moves


# ---------------------------------------------------------------- regimes


def test_params_follow_regime_schedule(regime: SimClusterConfig) -> None:
    m = SharedMarket(regime, EPOCH)
    switch = EPOCH + 50 * SEC
    before, after = switch - 1, switch
    assert m.params("DARK1", EPOCH).leak_ticks == 0
    assert m.params("DARK1", before).leak_ticks == 0
    assert m.params("DARK1", after).leak_ticks == 2
    assert m.params("DARK1", switch + 100 * SEC).leak_ticks == 2
    assert m.params("LIT2", before).level_size_mean == 900
    assert m.params("LIT2", after).level_size_mean == 300
    assert m.params("LIT1", before).level_size_mean == 300
    assert m.params("LIT1", after).level_size_mean == 900
    # Fields a regime leaves out keep their base value.
    base = regime.venue("DARK1").sim
    assert m.params("DARK1", before) == base
    assert m.params("DARK1", after).contra_prob == base.contra_prob
    assert m.params("DARK1", after).contra_size_mean == base.contra_size_mean
    assert m.params("LIT2", after).taker_rate_hz == regime.venue("LIT2").sim.taker_rate_hz


def test_regime_turns_pool_toxic(regime: SimClusterConfig) -> None:
    ex = Exchange(regime)
    t_early = EPOCH + 49 * SEC
    mid = ex.market.mid_at(SYM, t_early)
    ex.cores["DARK1"].new_order("e1", SYM, BUY, 500, MKT, None, IOC, t_early)
    assert ex.market.mid_at(SYM, t_early) == mid
    assert ex.leaks == []
    t_late = EPOCH + 51 * SEC
    mid = ex.market.mid_at(SYM, t_late)
    ex.cores["DARK1"].new_order("l1", SYM, BUY, 500, MKT, None, IOC, t_late)
    assert ex.market.mid_at(SYM, t_late) == mid + 2
    assert ex.leaks == [(SYM, t_late)]


def _mean_level_size(core: VenueCore, t0: int, n: int) -> float:
    dt = core.venue.sim.requote_ms * 1_000_000
    book = core.books[SYM].book
    assert book is not None
    sizes: list[int] = []
    for k in range(n):
        core.tick(t0 + k * dt, dt / 1e9)
        for side in (BUY, SELL):
            sizes += [q for _, q in book.depth(side, 10)]
    return sum(sizes) / len(sizes)


def test_tick_uses_regime_level_size(regime: SimClusterConfig) -> None:
    m = SharedMarket(regime, EPOCH)
    lit2 = VenueCore(regime, "LIT2", m, "LIT2")
    lit1 = VenueCore(regime, "LIT1", m, "LIT1")
    before2 = _mean_level_size(lit2, EPOCH + 40 * SEC, 40)
    after2 = _mean_level_size(lit2, EPOCH + 55 * SEC, 40)
    assert lit2.params.level_size_mean == 300
    assert 700 < before2 < 1100
    assert 200 < after2 < 400
    before1 = _mean_level_size(lit1, EPOCH + 40 * SEC, 40)
    after1 = _mean_level_size(lit1, EPOCH + 55 * SEC, 40)
    assert before1 < 400 < 700 < after1


# --------------------------------------------------------- order lifecycle


@pytest.fixture
def lit(toxic: SimClusterConfig) -> tuple[VenueCore, int]:
    ex = Exchange(toxic)
    t = EPOCH + 3 * SEC
    ex.tick_all(t)
    return ex.cores["LIT1"], t


def test_ioc_partial_fill_then_remainder_canceled(lit: tuple[VenueCore, int]) -> None:
    core, t = lit
    book = core.books[SYM].book
    assert book is not None
    ask = book.best_ask()
    assert ask is not None
    top = book.depth(SELL, 1)[0][1]
    qty = top + 10_000  # more than the best level holds
    outs = core.new_order("i1", SYM, BUY, qty, LMT, ask, IOC, t)

    assert isinstance(outs[0], Ack)
    assert outs[0].order.cl_ord_id == "i1"
    fills = _fills(outs)
    canceled = [o for o in outs if isinstance(o, Canceled)]
    assert sum(f.qty for f in fills) == top
    assert all(f.px_ticks == ask for f in fills)
    assert len(canceled) == 1
    assert outs[-1] is canceled[0]
    c = canceled[0]
    assert (c.cl_ord_id, c.orig_cl_ord_id) == ("i1", None)
    order = c.order
    assert order.cum_qty == top
    assert order.cum_qty + (order.qty - order.cum_qty) == qty
    assert order.notional == sum(f.qty * f.px_ticks for f in fills)
    # Every fill is a public print with the router as the aggressor.
    trades = [o for o in outs if isinstance(o, Trade)]
    assert [(tr.px_ticks, tr.qty, tr.aggressor) for tr in trades] == [(f.px_ticks, f.qty, BUY) for f in fills]
    # Nothing of it is left: not at the venue, not in the book.
    assert "i1" not in core.orders
    assert book.resting("i1") is None
    assert book.best_ask() == ask + 1


def test_ioc_full_fill_has_no_cancel(lit: tuple[VenueCore, int]) -> None:
    core, t = lit
    book = core.books[SYM].book
    assert book is not None
    bid = book.best_bid()
    assert bid is not None
    outs = core.new_order("s1", SYM, SELL, 100, MKT, None, IOC, t)
    kinds = [type(o) for o in outs if not isinstance(o, Trade)]
    assert kinds == [Ack, Filled]
    f = _fills(outs)[0]
    assert (f.qty, f.px_ticks, f.order.cum_qty, f.order.done) == (100, bid, 100, True)
    assert "s1" not in core.orders


def test_ioc_that_cannot_trade_is_canceled_whole(lit: tuple[VenueCore, int]) -> None:
    core, t = lit
    book = core.books[SYM].book
    assert book is not None
    ask = book.best_ask()
    assert ask is not None
    outs = core.new_order("n1", SYM, BUY, 300, LMT, ask - 1, IOC, t)
    assert [type(o) for o in outs] == [Ack, Canceled]
    assert outs[1].order.cum_qty == 0  # type: ignore[union-attr]
    assert "n1" not in core.orders


def test_rejects(lit: tuple[VenueCore, int]) -> None:
    core, t = lit
    mid = core.market.mid_at(SYM, t)
    outs = core.new_order("d1", SYM, BUY, 200, LMT, mid - 20, DAY, t)
    assert [type(o) for o in outs] == [Ack]
    dup = core.new_order("d1", SYM, SELL, 100, MKT, None, IOC, t)
    assert len(dup) == 1 and isinstance(dup[0], Rejected)
    assert "duplicate" in dup[0].text
    # The resting order is untouched by the rejected duplicate.
    assert core.orders["d1"].side is BUY
    book = core.books[SYM].book
    assert book is not None and book.resting("d1") == 200

    unk = core.new_order("u1", "NOPE", BUY, 100, MKT, None, IOC, t)
    assert len(unk) == 1 and isinstance(unk[0], Rejected)
    assert (unk[0].cl_ord_id, unk[0].symbol) == ("u1", "NOPE")
    assert "u1" not in core.orders

    for bad in (core.new_order("z1", SYM, BUY, 0, MKT, None, IOC, t),
                core.new_order("z2", SYM, BUY, 100, LMT, None, IOC, t)):
        assert len(bad) == 1 and isinstance(bad[0], Rejected)


def test_duplicate_at_toxic_pool_is_rejected_before_it_leaks(toxic: SimClusterConfig) -> None:
    ex = Exchange(toxic)
    t = EPOCH + 3 * SEC
    mid = ex.market.mid_at(SYM, t)
    core = ex.cores["DARKT"]
    # A buy limited well below the mid rests (after leaking once).
    assert [type(o) for o in core.new_order("k1", SYM, BUY, 500, LMT, mid - 10, DAY, t)] == [Ack]
    assert ex.market.mid_at(SYM, t) == mid + 2
    dup = core.new_order("k1", SYM, BUY, 500, MKT, None, IOC, t)
    assert len(dup) == 1 and isinstance(dup[0], Rejected)
    assert ex.leaks == [(SYM, t)]
    assert ex.market.mid_at(SYM, t) == mid + 2
    unk = core.new_order("k2", "NOPE", BUY, 500, MKT, None, IOC, t)
    assert isinstance(unk[0], Rejected)
    assert ex.leaks == [(SYM, t)]


def test_cancel_unknown_is_refused(lit: tuple[VenueCore, int]) -> None:
    core, _ = lit
    outs = core.cancel("x1", "never-sent")
    assert len(outs) == 1 and isinstance(outs[0], CancelRefused)
    assert (outs[0].cl_ord_id, outs[0].orig_cl_ord_id, outs[0].order) == ("x1", "never-sent", None)


def test_cancel_resting_day_order(lit: tuple[VenueCore, int]) -> None:
    core, t = lit
    mid = core.market.mid_at(SYM, t)
    core.new_order("r1", SYM, SELL, 300, LMT, mid + 20, DAY, t)
    book = core.books[SYM].book
    assert book is not None and book.resting("r1") == 300
    outs = core.cancel("x1", "r1")
    assert len(outs) == 1 and isinstance(outs[0], Canceled)
    c = outs[0]
    assert (c.cl_ord_id, c.orig_cl_ord_id, c.order.cl_ord_id, c.order.cum_qty) == ("x1", "r1", "r1", 0)
    assert book.resting("r1") is None
    assert "r1" not in core.orders
    # A second cancel is refused: the venue remembers the order ended.
    again = core.cancel("x2", "r1")
    assert len(again) == 1 and isinstance(again[0], CancelRefused)
    assert again[0].order is not None and again[0].order.ord_status == "4"
    # One it never had is unknown.
    never = core.cancel("x3", "zz")
    assert len(never) == 1 and isinstance(never[0], CancelRefused) and never[0].order is None


def test_cancel_resting_dark_order(toxic: SimClusterConfig) -> None:
    ex = Exchange(toxic)
    t = EPOCH + 3 * SEC
    mid = ex.market.mid_at(SYM, t)
    core = ex.cores["DARKB"]
    # A buy limited below the mid cannot cross: it rests, hidden.
    outs = core.new_order("k1", SYM, BUY, 500, LMT, mid - 3, DAY, t)
    assert [type(o) for o in outs] == [Ack]
    pool = core.books[SYM].pool
    assert pool is not None and pool.resting("k1") == 500
    outs = core.cancel("k2", "k1")
    assert len(outs) == 1 and isinstance(outs[0], Canceled)
    assert pool.resting("k1") is None


def test_resting_order_filled_by_requote_after_mid_moves(toxic: SimClusterConfig) -> None:
    """A resting router sell is lifted when the mid moves through it (the lit
    makers' fresh ladder trades with it); the fill comes back as a record."""
    ex = Exchange(toxic)
    t = EPOCH + 3 * SEC
    ex.tick_all(t)
    core = ex.cores["LIT1"]
    mid = ex.market.mid_at(SYM, t)
    # A DAY sell resting 6 ticks above the mid, behind the makers' asks.
    outs = core.new_order("p1", SYM, SELL, 100, LMT, mid + 6, DAY, t)
    assert [type(o) for o in outs] == [Ack]
    assert ex.book("LIT1").resting("p1") == 100
    ex.market.leak(SYM, 10.0, t)  # the mid jumps through the resting sell
    assert math.isclose(ex.market.impact_at(SYM, t), 10.0)
    fills = _fills(ex.requoted["LIT1"])
    assert [(f.order.cl_ord_id, f.qty, f.px_ticks) for f in fills] == [("p1", 100, mid + 6)]
    assert fills[0].order.done
    assert "p1" not in core.orders
    assert ex.book("LIT1").resting("p1") is None
    assert ex.book("LIT1").best_bid() == mid + 9


def test_status_is_the_venues_own_record(lit: tuple[VenueCore, int]) -> None:
    core, t = lit
    mid = core.market.mid_at(SYM, t)
    core.new_order("s1", SYM, SELL, 300, LMT, mid + 20, DAY, t)
    st = core.status("s1")
    assert st is not None and (st.ord_status, st.cum_qty) == ("0", 0)
    core.cancel("x1", "s1")
    st = core.status("s1")
    assert st is not None and st.ord_status == "4"
    assert core.status("never") is None
    # A reused ClOrdID of a finished order is still a duplicate.
    (rej,) = core.new_order("s1", SYM, SELL, 100, LMT, mid + 20, DAY, t)
    assert isinstance(rej, Rejected) and "duplicate" in rej.text
