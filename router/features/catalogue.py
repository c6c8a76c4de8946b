"""THE definition of the routing feature vector, for serving and training.

``FEATURES`` lists every column in order; the model manifest records
``FEATURE_NAMES`` and a model whose list differs is refused. ``FeatureEngine``
computes one row per venue (``[V, N_FEATURES]`` float32, venues in
``MarketData.venues`` order) for one parent order. Training runs the same
engine against the simulator's ``MarketData`` on its simulated clock, so no
formula exists anywhere else: change one here and every model must be
retrained.

Columns come in three groups. ``market`` columns describe the consolidated
lit market of the symbol and are the same in every venue row; ``order``
columns describe the parent order, also the same in every row; ``venue``
columns differ per row.

Conventions shared by all columns:

* Prices are ticks, so every price ratio is unit-free; ``bps`` is 1e-4 of a
  price. ``mid`` is (best bid + best ask) / 2 of the consolidated lit book
  (the NBBO), with sizes summed over the lit venues quoting the best price.
* "Consolidated top n levels" is the sum over lit venues of each venue's own
  top n levels, whatever their prices (``MarketData.depth_size``).
* No column ever raises or goes non-finite: an empty, one-sided, crossed or
  never-seen book gives 0, or the documented cap. A crossed/locked book is
  reported as is (negative spread) with ``crossed`` = 1; the model learns
  how far to trust the other columns then.
* Time is ``now_ns``, passed in: nothing here reads a clock.

Choices worth knowing when reading a model's behaviour:

* Realized vol pools the lit venues: each venue's own mid series gives
  log-returns between its consecutive book-ring rows (one row per commit,
  so an unchanged mid is a 0 return; a row with a one-sided book breaks the
  chain), and the sample std dev (ddof=1) is taken over the union. A
  consolidated-mid series would invent returns out of venues quoting at
  different moments; pooling keeps every return a real one.
* ATR buckets are feed-clock seconds, ``floor(now / 1 s) - 4`` to the current
  (partial) one, so completed buckets can be cached. A bucket's true range
  includes the mid carried in from before it, so a gap counts.
* Windows hold at most a ring's worth of rows (book_capacity / trade_capacity
  per venue): size the rings for the busiest symbol's 5 s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

import msgspec

from router.learning.venuestats import N_STATS, STAT_FILL_RATE, STAT_MARKOUT_5S_BPS


class Feature(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    unit: str
    group: Literal["market", "order", "venue"]
    description: str


FEATURES: Final[tuple[Feature, ...]] = (
    # ----------------------------------------------------------------- market
    Feature(name="spread_bps", unit="bps", group="market",
            description="NBBO (ask - bid) / mid; negative when crossed; 0 if a side is empty"),
    Feature(name="microprice_offset_bps", unit="bps", group="market",
            description="(microprice - mid) / mid, microprice = (bid*ask_sz + ask*bid_sz)/(bid_sz + ask_sz) "
                        "with NBBO prices and the total lit size at each; 0 if a side is empty"),
    Feature(name="imbalance_l1", unit="ratio", group="market",
            description="(B - A)/(B + A), B/A = consolidated bid/ask size in the top 1 level; 0 if both empty"),
    Feature(name="imbalance_l3", unit="ratio", group="market",
            description="as imbalance_l1 over the top 3 levels"),
    Feature(name="imbalance_l5", unit="ratio", group="market",
            description="as imbalance_l1 over the top 5 levels (all kept levels if depth < 5)"),
    Feature(name="realized_vol_1s_bps", unit="bps", group="market",
            description="sample std dev (ddof=1) of consecutive log-returns of each lit venue's mid, one per "
                        "book-ring row with ts >= now - 1 s, pooled over lit venues; 0 with < 2 returns"),
    Feature(name="realized_vol_5s_bps", unit="bps", group="market",
            description="as realized_vol_1s_bps over 5 s"),
    Feature(name="atr_5s_bps", unit="bps", group="market",
            description="mean over the 5 one-second buckets floor(now/1s)-4 .. floor(now/1s) of the bucket's "
                        "true range (max mid - min mid, including the mid carried in) / bucket's last mid; "
                        "averaged over lit venues that updated in those buckets; 0 if none did"),
    Feature(name="trade_flow_5s", unit="ratio", group="market",
            description="sum(aggressor sign * size) / sum(size) of lit trades with ts >= now - 5 s; "
                        "in [-1, 1]; 0 if none"),
    Feature(name="traded_volume_5s", unit="shares", group="market",
            description="total size of lit trades with ts >= now - 5 s"),
    Feature(name="nbbo_stale_ms", unit="ms", group="market",
            description="max over lit venues of now - last book commit; 60000 cap, also for a never-seen book"),
    Feature(name="crossed", unit="bool", group="market",
            description="1 when the NBBO is crossed or locked (bid >= ask, both present), else 0"),
    # ------------------------------------------------------------------ order
    Feature(name="size_over_adv", unit="ratio", group="order",
            description="order qty / the symbol's average daily volume: symbols[].adv_shares, else the lit "
                        "venues' prints since start scaled to a 6.5 h day (time floored at 60 s); 0 before "
                        "any print"),
    Feature(name="size_over_top3", unit="ratio", group="order",
            description="order qty / consolidated contra-side size in the top 3 levels; capped at 100, "
                        "also when that size is 0"),
    Feature(name="side", unit="sign", group="order", description="+1 buy, -1 sell"),
    Feature(name="is_limit", unit="bool", group="order", description="1 limit order, 0 market order"),
    Feature(name="limit_distance_bps", unit="bps", group="order",
            description="how far the limit is through the contra touch: buy (limit - ask)/ask, sell "
                        "(bid - limit)/bid; positive = marketable; 0 for market orders or an empty contra side"),
    Feature(name="is_ioc", unit="bool", group="order", description="urgency: 1 IOC, 0 DAY"),
    # ------------------------------------------------------------------ venue
    Feature(name="venue_fill_rate", unit="ratio", group="venue",
            description="our children's decayed filled/qty on this venue in the order's size bucket, "
                        "shrunk to the prior (VenueStats)"),
    Feature(name="venue_time_to_fill_ms", unit="ms", group="venue",
            description="decayed mean sent -> first fill of our filled children, size bucket, with prior"),
    Feature(name="venue_partial_freq", unit="ratio", group="venue",
            description="decayed share of our children that ended partially filled, size bucket, with prior"),
    Feature(name="venue_markout_1s_bps", unit="bps", group="venue",
            description="decayed mean side*(mid 1 s after - fill px)/fill px of our fills; negative = "
                        "adverse selection"),
    Feature(name="venue_markout_5s_bps", unit="bps", group="venue",
            description="as venue_markout_1s_bps at 5 s"),
    Feature(name="venue_fee_bps", unit="bps", group="venue",
            description="take fee; negative is a rebate"),
    Feature(name="venue_is_dark", unit="bool", group="venue", description="1 dark pool, 0 lit"),
    Feature(name="venue_touch_size", unit="shares", group="venue",
            description="this venue's level-0 contra size if it quotes the NBBO contra price, else 0 "
                        "(0 for dark)"),
    Feature(name="venue_touch_share", unit="ratio", group="venue",
            description="this venue's share of the lit size at the NBBO contra price (0 for dark)"),
    Feature(name="venue_stale_ms", unit="ms", group="venue",
            description="now - this venue's last book commit, 60000 cap (also never seen); 0 for dark"),
)

FEATURE_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in FEATURES)
N_FEATURES: Final[int] = len(FEATURES)
FEATURE_INDEX: Final[dict[str, int]] = {n: i for i, n in enumerate(FEATURE_NAMES)}

STALE_CAP_MS: Final[float] = 60_000.0
SIZE_RATIO_CAP: Final[float] = 100.0
VOL_WINDOWS_NS: Final[tuple[int, int]] = (1_000_000_000, 5_000_000_000)
FLOW_WINDOW_NS: Final[int] = 5_000_000_000
ATR_BUCKETS: Final[int] = 5
ATR_BUCKET_NS: Final[int] = 1_000_000_000

_C = FEATURE_INDEX
C_SPREAD: Final = _C["spread_bps"]
C_MICRO: Final = _C["microprice_offset_bps"]
C_IMB1: Final = _C["imbalance_l1"]
C_IMB3: Final = _C["imbalance_l3"]
C_IMB5: Final = _C["imbalance_l5"]
C_VOL1: Final = _C["realized_vol_1s_bps"]
C_VOL5: Final = _C["realized_vol_5s_bps"]
C_ATR: Final = _C["atr_5s_bps"]
C_FLOW: Final = _C["trade_flow_5s"]
C_TVOL: Final = _C["traded_volume_5s"]
C_STALE: Final = _C["nbbo_stale_ms"]
C_CROSSED: Final = _C["crossed"]
C_ADV: Final = _C["size_over_adv"]
C_TOP3: Final = _C["size_over_top3"]
C_SIDE: Final = _C["side"]
C_LIMIT: Final = _C["is_limit"]
C_LIMDIST: Final = _C["limit_distance_bps"]
C_IOC: Final = _C["is_ioc"]
C_FILL: Final = _C["venue_fill_rate"]
C_TTF: Final = _C["venue_time_to_fill_ms"]
C_FEE: Final = _C["venue_fee_bps"]
C_DARK: Final = _C["venue_is_dark"]
C_TOUCH: Final = _C["venue_touch_size"]
C_SHARE: Final = _C["venue_touch_share"]
C_VSTALE: Final = _C["venue_stale_ms"]
C_MARK1: Final = _C["venue_markout_1s_bps"]

# Layout invariants the hot path relies on: market then order columns form
# one prefix copied from row 0 to the other rows, and VenueStats writes its
# block straight into the row.
N_MARKET: Final = sum(1 for f in FEATURES if f.group == "market")
N_SHARED: Final = sum(1 for f in FEATURES if f.group != "venue")
assert all(f.group == "market" for f in FEATURES[:N_MARKET])
assert all(f.group == "order" for f in FEATURES[N_MARKET:N_SHARED])
assert [f.name for f in FEATURES[C_FILL:C_FILL + N_STATS]] == [
    "venue_fill_rate", "venue_time_to_fill_ms", "venue_partial_freq", "venue_markout_1s_bps", "venue_markout_5s_bps"]
assert STAT_FILL_RATE == 0 and STAT_MARKOUT_5S_BPS == N_STATS - 1


class FeatureMismatchError(ValueError):
    """Something was built on another feature vector than ``FEATURE_NAMES``:
    a model (the daemon refuses to start) or a training dataset.

    ``position`` is the first index where the lists differ, ``model_name`` and
    ``router_name`` what each has there (None past the end of a list, and
    for a file that stores no list at all, ``position`` -1).
    """

    def __init__(self, message: str, position: int = -1, model_name: str | None = None,
                 router_name: str | None = None, n_model: int = 0, n_router: int = N_FEATURES) -> None:
        super().__init__(message)
        self.position = position
        self.model_name = model_name
        self.router_name = router_name
        self.n_model = n_model
        self.n_router = n_router


def check_feature_names(names: Sequence[str], what: str, where: str, advice: str) -> None:
    """Raise ``FeatureMismatchError`` unless ``names`` is exactly
    ``FEATURE_NAMES``. ``what`` names the thing ("model", "dataset") in the
    message, ``where`` says which one, ``advice`` what to do about it."""
    got = tuple(names)
    ours = FEATURE_NAMES
    if got == ours:
        return
    pos = next((i for i, (a, b) in enumerate(zip(got, ours)) if a != b), min(len(got), len(ours)))
    theirs_at = got[pos] if pos < len(got) else None
    ours_at = ours[pos] if pos < len(ours) else None
    diff = len(got) - len(ours)
    if diff == 0:
        count = f"both have {len(ours)} features"
    else:
        count = (f"the {what} has {len(got)} features, the router {len(ours)} "
                 f"({abs(diff)} {'more' if diff > 0 else 'fewer'} in the {what})")
    detail: list[str] = []
    if missing := [n for n in ours if n not in got]:
        detail.append(f"missing {missing}")
    if extra := [n for n in got if n not in set(ours)]:
        detail.append(f"unknown {extra}")
    if not detail:
        detail.append("same names in another order")
    msg = (f"{where}: {what} was built with a different feature list than this router's FEATURE_NAMES: at "
           f"position {pos} the {what} has {theirs_at!r}, the router {ours_at!r}; {count}; {'; '.join(detail)}. "
           f"{advice}")
    raise FeatureMismatchError(msg, pos, theirs_at, ours_at, len(got), len(ours))
