"""StaticWaterfall plans and the allocate() splitter (router.waterfall)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.config import Config, parse_config
from router.domain.orders import ParentOrder
from router.domain.plan import Plan, Slice, Wave
from router.domain.types import OrdType, Side, TimeInForce
from router.routing.baselines import StaticWaterfall
from router.routing.policy import allocate, apply_limits

DETERMINISTIC = settings(derandomize=True, database=None, deadline=None, max_examples=300)

IOC, DAY = TimeInForce.IOC, TimeInForce.DAY
ALL = frozenset({"LIT1", "LIT2", "DARK1"})


def _config(final_action: str = "rest", rest_venue: str | None = "LIT1", allowed: tuple[str, ...] = ()) -> Config:
    rest = f'rest_venue = "{rest_venue}"\n' if rest_venue else ""
    rest += "allowed_venues = [" + ", ".join(f'"{v}"' for v in allowed) + "]\n"
    return parse_config(f"""
[oms]
port = 9870

[[symbols]]
symbol = "AAPL"

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

[[venues]]
name = "DARK1"
kind = "dark"
port = 9883
target_comp_id = "DARK1"

[waterfall]
venues = ["DARK1", "LIT1", "LIT2"]
final_action = "{final_action}"
{rest}""")


def _order(ord_type: OrdType = OrdType.LIMIT, tif: TimeInForce = DAY, price: int | None = 19000) -> ParentOrder:
    return ParentOrder(
        order_id="P1", session="OMS", cl_ord_id="c1", symbol="AAPL", side=Side.BUY, qty=100,
        ord_type=ord_type, price_ticks=price if ord_type is OrdType.LIMIT else None, tif=tif, arrival_ns=0,
    )


def _ioc(venue: str, limit: int | None) -> Wave:
    return Wave(slices=(Slice(venue=venue, tif=IOC, limit_ticks=limit),))


# ------------------------------------------------------------ StaticWaterfall


def test_rest_variant_day_limit_ends_with_day_wave_on_rest_venue() -> None:
    plan = StaticWaterfall(_config("rest")).plan(_order(), ALL)
    assert plan == Plan(
        name="static",
        final="rest",
        waves=(
            _ioc("DARK1", 19000),
            _ioc("LIT1", 19000),
            _ioc("LIT2", 19000),
            Wave(slices=(Slice(venue="LIT1", tif=DAY, limit_ticks=19000),)),
        ),
    )
    for wave in plan.waves:
        (sl,) = wave.slices
        assert sl.weight == 1.0
        assert sl.timeout_ms is None


def test_rest_variant_ioc_limit_parent_does_not_rest() -> None:
    plan = StaticWaterfall(_config("rest")).plan(_order(tif=IOC), ALL)
    assert plan.final == "cancel"
    assert plan.waves == (_ioc("DARK1", 19000), _ioc("LIT1", 19000), _ioc("LIT2", 19000))


@pytest.mark.parametrize("tif", [DAY, IOC])
def test_market_parent_never_rests_and_sends_market_children(tif: TimeInForce) -> None:
    plan = StaticWaterfall(_config("rest")).plan(_order(ord_type=OrdType.MARKET, tif=tif), ALL)
    assert plan.final == "cancel"
    assert plan.waves == (_ioc("DARK1", None), _ioc("LIT1", None), _ioc("LIT2", None))


@pytest.mark.parametrize("tif", [DAY, IOC])
def test_cancel_variant_never_rests(tif: TimeInForce) -> None:
    for rest_venue in ("LIT1", None):
        plan = StaticWaterfall(_config("cancel", rest_venue)).plan(_order(tif=tif), ALL)
        assert plan.final == "cancel"
        assert plan.waves == (_ioc("DARK1", 19000), _ioc("LIT1", 19000), _ioc("LIT2", 19000))


def test_down_venues_are_left_out_in_configured_order() -> None:
    wf = StaticWaterfall(_config("rest"))
    plan = wf.plan(_order(), frozenset({"LIT2", "LIT1"}))
    assert [w.slices[0].venue for w in plan.waves] == ["LIT1", "LIT2", "LIT1"]
    assert plan.waves[-1].slices[0].tif is DAY
    plan = wf.plan(_order(), frozenset({"LIT2"}))
    assert plan.waves == (_ioc("LIT2", 19000),)
    assert plan.final == "cancel", "rest venue down: nothing to rest on"


def test_no_venue_up_gives_empty_plan() -> None:
    for cfg in (_config("rest"), _config("cancel")):
        plan = StaticWaterfall(cfg).plan(_order(), frozenset())
        assert plan.waves == ()
        assert plan.final == "cancel"


def test_unknown_up_venue_is_ignored() -> None:
    plan = StaticWaterfall(_config("cancel")).plan(_order(), frozenset({"NOPE", "LIT2"}))
    assert plan.waves == (_ioc("LIT2", 19000),)


@DETERMINISTIC
@given(
    up=st.sets(st.sampled_from(["LIT1", "LIT2", "DARK1", "OTHER"])),
    final=st.sampled_from(["rest", "cancel"]),
    ord_type=st.sampled_from(list(OrdType)),
    tif=st.sampled_from(list(TimeInForce)),
    price=st.integers(min_value=1, max_value=10**7),
)
def test_plan_property(up: set[str], final: str, ord_type: OrdType, tif: TimeInForce, price: int) -> None:
    order = _order(ord_type, tif, price)
    plan = StaticWaterfall(_config(final)).plan(order, frozenset(up))
    limit = price if ord_type is OrdType.LIMIT else None
    expected = [_ioc(v, limit) for v in ("DARK1", "LIT1", "LIT2") if v in up]
    rests = final == "rest" and "LIT1" in up and ord_type is OrdType.LIMIT and tif is DAY
    if rests:
        expected.append(Wave(slices=(Slice(venue="LIT1", tif=DAY, limit_ticks=limit),)))
    assert plan.waves == tuple(expected)
    assert plan.final == ("rest" if rests else "cancel")
    for wave in plan.waves:
        assert len(wave.slices) == 1
        assert wave.slices[0].venue in up
        assert wave.slices[0].limit_ticks == limit
    # Only the last wave of a resting plan may be DAY.
    assert all(w.slices[0].tif is IOC for w in plan.waves[: len(plan.waves) - (1 if rests else 0)])


# ------------------------------------------------------------------ allocate


@pytest.mark.parametrize(
    ("residual", "weights", "lot", "expected"),
    [
        (100, [1.0], 1, [100]),
        (100, [1.0, 1.0], 1, [50, 50]),
        (101, [1.0, 1.0], 1, [51, 50]),
        (100, [1.0, 1.0, 1.0], 1, [34, 33, 33]),
        (100, [3.0, 1.0], 1, [75, 25]),
        (100, [1.0, 3.0], 1, [25, 75]),
        (10, [0.2, 0.3, 0.5], 1, [2, 3, 5]),
        (1000, [3.0, 1.0], 100, [800, 200]),  # 7.5 / 2.5 lots: the tie goes to the first slice
        (1000, [1.0, 1.0, 1.0], 100, [400, 300, 300]),
        (250, [1.0, 1.0], 100, [150, 100]),  # the odd lot goes to the heaviest slice, first on a tie
        (250, [1.0, 3.0], 100, [100, 150]),
        (50, [1.0, 1.0], 100, [50, 0]),  # less than a lot: all odd lot
        (50, [1.0, 2.0, 2.0], 100, [0, 50, 0]),
        (150, [0.0, 1.0], 100, [0, 150]),
        (50, [-1.0, 1.0], 100, [0, 50]),
        (100, [1.0, 0.0], 1, [100, 0]),
        (100, [0.0, 1.0], 1, [0, 100]),
        (100, [-5.0, 1.0, 1.0], 1, [0, 50, 50]),
        (7, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], 1, [1, 1, 1, 1, 1, 1, 1, 0]),
    ],
)
def test_allocate_examples(residual: int, weights: list[float], lot: int, expected: list[int]) -> None:
    assert allocate(residual, weights, lot) == expected


@pytest.mark.parametrize("residual", [0, -1, -100])
def test_allocate_nothing_to_split(residual: int) -> None:
    assert allocate(residual, [1.0, 2.0], 1) == [0, 0]


def test_allocate_no_weights() -> None:
    assert allocate(100, [], 1) == []


@pytest.mark.parametrize("weights", [[0.0], [0.0, 0.0], [-1.0, 0.0], [-1.0, -2.0]])
def test_allocate_no_positive_weight_sends_nothing(weights: list[float]) -> None:
    assert allocate(100, weights, 1) == [0] * len(weights)


@pytest.mark.parametrize(("residual", "weights"), [(150, [0.0, 1.0]), (50, [0.0, 1.0]), (50, [-1.0, 1.0])])
def test_allocate_zero_weight_slice_never_gets_shares(residual: int, weights: list[float]) -> None:
    parts = allocate(residual, weights, 100)
    assert sum(parts) == residual
    assert parts[0] == 0
    assert parts[1] == residual


_weights = st.lists(
    st.one_of(
        st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False),
        st.sampled_from([0.0, -1.0, 1.0, 1 / 3, 0.1]),
    ),
    min_size=1,
    max_size=8,
)


@DETERMINISTIC
@given(residual=st.integers(min_value=-10, max_value=10**7), weights=_weights,
       lot=st.sampled_from([1, 1, 10, 100, 7]))
def test_allocate_property(residual: int, weights: list[float], lot: int) -> None:
    parts = allocate(residual, weights, lot)
    assert len(parts) == len(weights)
    assert all(p >= 0 for p in parts)
    if residual <= 0 or not any(w > 0 for w in weights):
        assert parts == [0] * len(weights)
        return
    # Sums exactly to the residual: never more (the parent's leaves bound).
    assert sum(parts) == residual
    odd = residual % lot
    heaviest = weights.index(max(weights))
    assert (parts[heaviest] - odd) % lot == 0
    assert all(p % lot == 0 for i, p in enumerate(parts) if i != heaviest), "only the heaviest slice has an odd lot"
    lots = [p // lot for p in parts]
    lots[heaviest] = (parts[heaviest] - odd) // lot
    assert sum(lots) == residual // lot
    # Largest remainder: each slice within one lot of its exact share, and
    # slices with weight <= 0 get nothing at all.
    total = sum(Fraction(w) for w in weights if w > 0)
    for w, n, part in zip(weights, lots, parts):
        if w <= 0:
            assert part == 0
        else:
            exact = Fraction(w) / total * (residual // lot)
            assert abs(n - exact) < 1 + Fraction(1, 10**6)


# ------------------------------------------------------- allowed venues


def test_static_uses_only_allowed_venues() -> None:
    plan = StaticWaterfall(_config("rest", allowed=("LIT2", "LIT1"))).plan(_order(), ALL)
    assert plan.waves == (
        _ioc("LIT1", 19000),
        _ioc("LIT2", 19000),
        Wave(slices=(Slice(venue="LIT1", tif=DAY, limit_ticks=19000),)),
    )


def test_static_does_not_rest_on_a_disallowed_rest_venue() -> None:
    plan = StaticWaterfall(_config("rest", allowed=("DARK1", "LIT2"))).plan(_order(), ALL)
    assert plan.waves == (_ioc("DARK1", 19000), _ioc("LIT2", 19000))
    assert plan.final == "cancel"


def test_static_nothing_allowed_up_gives_empty_plan() -> None:
    plan = StaticWaterfall(_config("cancel", allowed=("DARK1",))).plan(_order(), frozenset({"LIT1", "LIT2"}))
    assert plan.waves == ()


# --------------------------------------------------------------- apply_limits


@pytest.mark.parametrize(
    ("sizes", "max_child", "min_child", "lot", "expected"),
    [
        ([100, 50], 0, 0, 1, [100, 50]),  # no limits: unchanged
        ([750, 250], 300, 0, 1, [300, 250]),  # cap; the 450 cut waits for the next wave
        ([1000], 250, 0, 100, [200]),  # cap rounded down to whole lots
        ([1000], 250, 250, 100, [250]),  # ... unless that falls below the floor
        ([1000], 50, 0, 100, [50]),  # a cap below one lot stays as set
        ([1050], 0, 0, 100, [1050]),
        ([600, 300, 100], 0, 200, 1, [700, 300, 0]),  # merged into the largest
        ([600, 199], 0, 200, 1, [799, 0]),  # just under the floor
        ([600, 200], 0, 200, 1, [600, 200]),  # at the floor: a child of its own
        ([100, 300, 300], 0, 200, 1, [0, 400, 300]),  # the first largest on a tie
        ([50, 40, 60], 0, 200, 1, [0, 0, 150]),  # all under the floor: one child of the whole residual
        ([0, 30, 0], 0, 200, 1, [0, 30, 0]),
        ([900, 150], 1000, 200, 1, [1000, 0]),  # merge first, then cap: 50 waits
        ([300, 0], 1000, 200, 1, [300, 0]),
        ([-5, 10], 0, 0, 1, [0, 10]),
        ([], 10, 10, 1, []),
    ],
)
def test_apply_limits_examples(sizes: list[int], max_child: int, min_child: int, lot: int,
                               expected: list[int]) -> None:
    assert apply_limits(sizes, max_child, min_child, lot) == expected
