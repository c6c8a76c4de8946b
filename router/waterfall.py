"""Waterfall plans, the planners that build them, and the policy size limits.

A plan is a sequence of waves. The engine sends every slice of a wave at
once, waits until all of them are done (filled, expired or canceled), and
then sends the next wave sized from whatever is still unfilled. That one
shape covers a sequential waterfall (one slice per wave), a spray (several
slices in one wave) and dark-first (a timed dark wave, then a lit sweep), so
every planner only needs to produce a different ``Plan``.

A planner is a seam: a pure function of the order, the set of venues that
are up right now, and (for the ML and displayed planners) the market view.

Planners (``waterfall.planner``):

* ``static``: ``StaticWaterfall``, the configured venue list in order.
* ``ml``: ``MLPlanner``, venues ranked by the model's expected cost per
  share (``expected_costs``) and one of ``STRATEGIES`` picked by policy or
  requested by the OMS; the static waterfall when the model cannot score.
* ``equal`` / ``displayed``: the backtest's baselines (``EqualSplit``,
  ``DisplayedProportional``): one split wave, then the static list.

Policy limits hold for every planner: a plan only names venues in
``waterfall.allowed_venues`` (every configured venue when empty), and the
engine passes each wave's sizes through ``apply_limits`` (``max_child_qty``,
``min_child_qty``), one place for all planners.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Final, Protocol

import msgspec
import numpy as np
import numpy.typing as npt

from router.config import Config
from router.domain import OrdType, TimeInForce, VenueKind
from router.features import C_TOP3, C_TOUCH
from router.orders import ParentOrder

log = logging.getLogger("sor.waterfall")

STRATEGIES: Final[tuple[str, ...]] = ("sequential", "spray", "dark-first")
"""What the ML planner can do with a ranking; an OMS may request one by name
(custom tag 7001), and ``static`` requests the static waterfall."""

STATIC: Final = "static"
SCORE_COST, SCORE_FILL, SCORE_MARKOUT = 0, 1, 2
"""Columns of a scorer's ``[V, 3]`` output."""


class Slice(msgspec.Struct, frozen=True, kw_only=True):
    venue: str
    weight: float = 1.0
    """Share of the wave's quantity; a wave's weights are normalised."""
    tif: TimeInForce
    limit_ticks: int | None
    """None sends a market child."""
    timeout_ms: int | None = None
    """Cancel the slice if still open after this long (None: venue decides)."""


class Wave(msgspec.Struct, frozen=True, kw_only=True):
    slices: tuple[Slice, ...]


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    waves: tuple[Wave, ...]
    name: str
    final: str = "cancel"
    """What happens when the waves are exhausted with quantity left: 'cancel'
    reports the remainder canceled to the OMS; a resting last wave leaves
    nothing to do (the parent completes when that child does)."""


class Planner(Protocol):
    def plan(self, order: ParentOrder, venues_up: frozenset[str]) -> Plan: ...


class VenueScorer(Protocol):
    """What the ML planner needs from the venue model (``router.scoring``)."""

    @property
    def version(self) -> str: ...

    @property
    def last_failure(self) -> str | None:
        """Why the last ``score`` returned None."""
        ...

    def score(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.floating] | None:
        """``[V, N_FEATURES]`` in, ``[V, 3]`` out (cost_bps, fill_prob,
        markout_bps), or None when it could not score (``last_failure`` says
        why)."""
        ...

    def warm(self) -> None:
        """A run whose result is unused (keeps the model's code hot)."""
        ...


class OrderFeatures(Protocol):
    """What the planners need from ``router.features.FeatureEngine``."""

    def compute_order(self, order: ParentOrder, now_ns: int) -> npt.NDArray[np.float32]: ...

    def warm(self, now_ns: int) -> None: ...


# ------------------------------------------------------------------ helpers


def _limit(order: ParentOrder) -> int | None:
    return order.price_ticks if order.ord_type is OrdType.LIMIT else None


def _allowed(cfg: Config) -> frozenset[str]:
    names = [v.name for v in cfg.venues]
    allowed = cfg.waterfall.allowed_venues
    return frozenset(n for n in names if not allowed or n in allowed)


def _ioc(venue: str, limit: int | None) -> Wave:
    return Wave(slices=(Slice(venue=venue, tif=TimeInForce.IOC, limit_ticks=limit),))


def _weights_or_equal(weights: Sequence[float]) -> list[float]:
    """Non-negative finite weights, or equal ones when none is positive (a
    wave whose weights are all zero would send nothing at all)."""
    w = [x if x > 0.0 and math.isfinite(x) else 0.0 for x in weights]
    return w if sum(w) > 0.0 else [1.0] * len(w)


class _Ending:
    """How every planner ends, like the static waterfall: a DAY limit parent
    with final_action 'rest' rests its remainder on ``rest_venue`` when it
    is up and allowed (else on ``fallback``, when the planner offers one);
    anything else is canceled back to the OMS."""

    def __init__(self, cfg: Config) -> None:
        self.rest = cfg.waterfall.final_action == "rest"
        self.rest_venue = cfg.waterfall.rest_venue

    def finish(self, waves: list[Wave], name: str, order: ParentOrder, usable: frozenset[str],
               fallback: str | None = None) -> Plan:
        if self.rest and order.ord_type is OrdType.LIMIT and order.tif is TimeInForce.DAY:
            venue = self.rest_venue if self.rest_venue is not None and self.rest_venue in usable else fallback
            if venue is not None:
                waves.append(Wave(slices=(Slice(venue=venue, tif=TimeInForce.DAY, limit_ticks=order.price_ticks),)))
                return Plan(waves=tuple(waves), name=name, final="rest")
        return Plan(waves=tuple(waves), name=name, final="cancel")


# -------------------------------------------------------------- static plans


class StaticWaterfall:
    """Venues in configured order: IOC at the parent's limit on each, the
    residual moving down the list; then rest on a venue or cancel. Only
    venues in ``allowed_venues`` are used."""

    def __init__(self, cfg: Config, name: str = STATIC) -> None:
        self._venues = tuple(cfg.waterfall.venues)
        self._allowed = _allowed(cfg)
        self._end = _Ending(cfg)
        self.name = name

    def plan(self, order: ParentOrder, venues_up: frozenset[str]) -> Plan:
        return self.plan_named(order, venues_up, self.name)

    def plan_named(self, order: ParentOrder, venues_up: frozenset[str], name: str) -> Plan:
        usable = self._allowed & venues_up
        limit = _limit(order)
        waves = [_ioc(v, limit) for v in self._venues if v in usable]
        return self._end.finish(waves, name, order, usable)


class EqualSplit:
    """Baseline: one IOC wave over every allowed venue that is up, equal
    weights, at the parent's limit; then the residual goes down the static
    list (``waterfall.venues``), one IOC wave per venue; then rest or cancel
    like the static waterfall."""

    name = "equal"

    def __init__(self, cfg: Config) -> None:
        static = list(cfg.waterfall.venues)
        self._order = tuple(static + [v.name for v in cfg.venues if v.name not in static])
        self._static = tuple(static)
        self._allowed = _allowed(cfg)
        self._end = _Ending(cfg)

    def plan(self, order: ParentOrder, venues_up: frozenset[str]) -> Plan:
        usable = self._allowed & venues_up
        limit = _limit(order)
        first = [v for v in self._order if v in usable]
        waves: list[Wave] = []
        if first:
            waves.append(Wave(slices=tuple(Slice(venue=v, tif=TimeInForce.IOC, limit_ticks=limit) for v in first)))
        waves += [_ioc(v, limit) for v in self._static if v in usable]
        return self._end.finish(waves, self.name, order, usable)


class DisplayedProportional:
    """Baseline: one IOC wave over the allowed lit venues that are up,
    weighted by the contra size each displays at the NBBO (feature
    ``venue_touch_size``; equal weights when none shows any), then the same
    static residual sweep as ``EqualSplit``; then rest or cancel."""

    name = "displayed"

    def __init__(self, cfg: Config, features: OrderFeatures) -> None:
        self._features = features
        self._rows = tuple((i, v.name) for i, v in enumerate(cfg.venues) if v.kind is VenueKind.LIT)
        self._static = tuple(cfg.waterfall.venues)
        self._allowed = _allowed(cfg)
        self._end = _Ending(cfg)

    def plan(self, order: ParentOrder, venues_up: frozenset[str]) -> Plan:
        usable = self._allowed & venues_up
        limit = _limit(order)
        lit = [(i, v) for i, v in self._rows if v in usable]
        waves: list[Wave] = []
        if lit:
            try:
                touch = self._features.compute_order(order, order.arrival_ns)[:, C_TOUCH]
                sizes = [float(touch[i]) for i, _ in lit]
            except Exception:
                log.exception("displayed planner: no features for %s; equal weights", order.order_id)
                sizes = []
            weights = _weights_or_equal(sizes or [0.0] * len(lit))
            waves.append(Wave(slices=tuple(Slice(venue=v, weight=w, tif=TimeInForce.IOC, limit_ticks=limit)
                                           for (_, v), w in zip(lit, weights))))
        waves += [_ioc(v, limit) for v in self._static if v in usable]
        return self._end.finish(waves, self.name, order, usable)


# ------------------------------------------------------------ the ML planner


def expected_costs(scores: npt.ArrayLike, leak_weight: float, unfilled_cost_bps: float,
                   dark: Sequence[bool] | None = None, fees_bps: Sequence[float] | None = None
                   ) -> npt.NDArray[np.float64]:
    """Expected cost per share (bps vs the arrival mid, positive = cost) of
    sending the order to each venue first, from the model's ``[V, 3]``
    scores (c = cost of a filled share incl. fees, p = fill probability,
    m = side-signed 1 s markout of its fills)::

        e_v = p_v * (c_v + leak_weight * A_v) + (1 - p_v) * (U + L_v)

    * ``p_v`` (clipped to [0, 1]) weighs the two outcomes of a share sent
      there: it fills, or it has to go elsewhere.
    * A filled share costs ``c_v``, fees included (a rebate lowers it).
    * ``A_v = max(0, -m_v)`` is adverse selection: the price running away
      after the fill. It is charged for dark venues only: a midpoint fill's
      adverse markout is information leaking, whereas an aggressive lit
      fill's markout against the mid is mostly the spread it paid, which
      ``c_v`` already counts. ``leak_weight`` scales how much the desk cares.
    * An unfilled share goes elsewhere, later: ``U`` is the larger of
      ``unfilled_cost_bps`` and the cheapest predicted lit cost (where the
      remainder ends up), so a cheap venue that rarely fills does not rank
      first.
    * ``L_v = max(0, c_v - fee_v)`` for a dark venue: a fair midpoint fill
      costs nothing but the fee against the arrival mid, so anything above
      is the mid moving against us because we showed up (a leaking pool);
      the unfilled shares pay that move again on the lit venues.

    ``dark``/``fees_bps`` per venue; without them every venue is treated as
    dark for ``A`` and no ``L`` is charged (the plain formula). Lower is
    better; the ranking is ascending ``e`` over the venues up and allowed.
    Scores must be finite (the planner checks them first).
    """
    rows = np.asarray(scores, dtype=np.float64).tolist()
    return np.array(_expected_costs(rows, leak_weight, unfilled_cost_bps, dark, fees_bps), dtype=np.float64)


def _expected_costs(rows: list[list[float]], leak_weight: float, unfilled_cost_bps: float,
                    dark: Sequence[bool] | None = None, fees_bps: Sequence[float] | None = None) -> list[float]:
    """``expected_costs`` over plain lists: with a handful of venues, Python
    floats are several times faster than numpy's per-call overhead."""
    u = unfilled_cost_bps
    if dark is not None:
        lit_costs = [r[0] for r, d in zip(rows, dark) if not d]
        if lit_costs and min(lit_costs) > u:
            u = min(lit_costs)
    out = []
    for i, (c, p, m) in enumerate(rows):
        p = 0.0 if p < 0.0 else (1.0 if p > 1.0 else p)
        if dark is None:
            out.append(p * (c + leak_weight * (-m if m < 0.0 else 0.0)) + (1.0 - p) * u)
        elif dark[i]:
            moved = c - (fees_bps[i] if fees_bps is not None else 0.0)
            out.append(p * (c + leak_weight * (-m if m < 0.0 else 0.0))
                       + (1.0 - p) * (u + (moved if moved > 0.0 else 0.0)))
        else:
            out.append(p * c + (1.0 - p) * u)
    return out


class MLPlanner:
    """Ranks the usable venues by the model's expected cost per share and
    builds one of ``STRATEGIES`` from the ranking.

    Per order: features at the order's arrival time, one ``scorer.score``
    call, ``expected_costs``, the ranking (ascending cost, ties in config
    order), the strategy (the order's request if it names one, else policy:
    dark-first when the best venue is dark, spray when the order is larger
    than the contra size in the top 3 levels, sequential otherwise), then
    the plan. Every plan is at the parent's limit (market children for a
    market parent) and ends like the static waterfall (rest or cancel).

    When there is no scorer, or it cannot score (it returns None, raises,
    or returns the wrong shape or non-finite numbers), the order routes by
    the static waterfall ("fallback:static") and ``on_fallback(reason)`` is
    called once for it; reason is ``fallback_reason`` without a scorer,
    else ``scorer.last_failure`` ("error" when it raised, "invalid" for a
    bad output). A scoring problem never raises and never drops an order.

    The last decision stays readable for the journal: ``last_features``,
    ``last_scores`` (None when not scored), ``last_costs``,
    ``last_ranking``, ``last_strategy`` and ``last_fallback``; the arrays
    are fresh copies per order, safe to keep. With ``stage_ns`` and
    ``clock_ns``, the time spent in "features", "scoring" and "planning"
    is reported as ``stage_ns(stage, elapsed_ns)``.
    """

    def __init__(self, cfg: Config, features: OrderFeatures, scorer: VenueScorer | None,
                 on_fallback: Callable[[str], None] | None = None, fallback_reason: str = "missing", *,
                 stage_ns: Callable[[str, int], None] | None = None,
                 clock_ns: Callable[[], int] | None = None) -> None:
        wf = cfg.waterfall
        self._features = features
        self._scorer = scorer
        self._on_fallback = on_fallback
        self._fallback_reason = fallback_reason
        self._stage = stage_ns if clock_ns is not None else None
        self._clock = clock_ns if stage_ns is not None else None
        self._names = tuple(v.name for v in cfg.venues)
        self._dark = tuple(v.kind is VenueKind.DARK for v in cfg.venues)
        self._fees = tuple(v.take_fee_bps for v in cfg.venues)
        self._allowed = _allowed(cfg)
        self._lots = {s.symbol: s.lot_size for s in cfg.symbols}
        self._top_k = wf.spray_top_k
        self._dark_rest_ms = wf.dark_rest_ms
        self._leak_weight = wf.leak_weight
        self._unfilled = wf.unfilled_cost_bps
        self._end = _Ending(cfg)
        self._static = StaticWaterfall(cfg)
        self.last_features: npt.NDArray[np.float32] | None = None
        self.last_scores: npt.NDArray[np.float64] | None = None
        self.last_costs: npt.NDArray[np.float64] | None = None
        self.last_ranking: tuple[str, ...] = ()
        self.last_strategy: str | None = None
        self.last_fallback: str | None = None

    @property
    def model_version(self) -> str | None:
        return self._scorer.version if self._scorer is not None else None

    def plan(self, order: ParentOrder, venues_up: frozenset[str]) -> Plan:
        clock, stage = self._clock, self._stage
        self.last_features = self.last_scores = self.last_costs = None
        self.last_ranking = ()
        self.last_strategy = self.last_fallback = None
        usable = self._allowed & venues_up
        if not usable:
            return Plan(waves=(), name="ml:no-venue")
        requested = (order.strategy or "").strip().lower()

        t0 = clock() if clock is not None else 0
        try:
            feats = self._features.compute_order(order, order.arrival_ns)
            self.last_features = np.array(feats, dtype=np.float32, copy=True)
        except Exception:
            log.exception("features failed for %s: static waterfall", order.order_id)
            return self._fallback(order, venues_up, "error")
        if clock is not None and stage is not None:
            t1 = clock()
            stage("features", t1 - t0)
            t0 = t1

        if requested == STATIC:
            self.last_strategy = STATIC
            plan = self._static.plan(order, venues_up)
            if clock is not None and stage is not None:
                stage("planning", clock() - t0)
            return plan

        scorer = self._scorer
        if scorer is None:
            return self._fallback(order, venues_up, self._fallback_reason, t0)
        try:
            raw = scorer.score(feats)
        except Exception:
            log.exception("scorer raised for %s: static waterfall", order.order_id)
            return self._fallback(order, venues_up, "error")
        if clock is not None and stage is not None:
            t1 = clock()
            stage("scoring", t1 - t0)
            t0 = t1
        if raw is None:
            return self._fallback(order, venues_up, scorer.last_failure or "unknown", t0)
        try:
            scores = np.array(raw, dtype=np.float64, copy=True)  # the scorer reuses its buffer
            rows = scores.tolist()
            # A sum is non-finite exactly when one of its terms is (inf - inf is nan).
            valid = scores.shape == (len(self._names), 3) and math.isfinite(sum(map(sum, rows)))
        except (TypeError, ValueError):
            valid = False
        if not valid:
            log.error("scorer output is not %d finite [cost, fill, markout] rows: static waterfall",
                      len(self._names))
            return self._fallback(order, venues_up, "invalid", t0)
        self.last_scores = scores

        costs = _expected_costs(rows, self._leak_weight, self._unfilled, self._dark, self._fees)
        self.last_costs = np.array(costs, dtype=np.float64)
        ranked = sorted((i for i, n in enumerate(self._names) if n in usable), key=costs.__getitem__)
        # (sorted is stable: ties keep the configured venue order)
        self.last_ranking = tuple(self._names[i] for i in ranked)

        if requested in STRATEGIES:
            strategy = requested
        elif self._dark[ranked[0]]:
            strategy = "dark-first"
        elif float(self.last_features[0, C_TOP3]) > 1.0 or order.qty > float(self.last_features[ranked[0], C_TOUCH]):
            # One IOC for the whole order would walk the best venue's book
            # while other venues quote the same touch: split it.
            strategy = "spray"
        else:
            strategy = "sequential"
        p = [min(max(r[SCORE_FILL], 0.0), 1.0) for r in rows]
        plan = self._build(strategy, order, ranked, p, costs, self.last_features, usable)
        if clock is not None and stage is not None:
            stage("planning", clock() - t0)
        return plan

    # ---------------------------------------------------------- internals

    def warm(self, now_ns: int) -> None:
        """Features and one model run for no order, results unused, nothing
        recorded: the poll driver calls this while idle so the next real
        order finds the decision path in the caches."""
        try:
            self._features.warm(now_ns)
            if self._scorer is not None:
                self._scorer.warm()
        except Exception:
            log.exception("warming the decision path failed")

    def _fallback(self, order: ParentOrder, venues_up: frozenset[str], reason: str, t0: int | None = None) -> Plan:
        """The static plan for an order the model could not score; ``t0``:
        when planning started, to report the "planning" stage."""
        self.last_fallback = reason
        self.last_strategy = STATIC
        if self._on_fallback is not None:
            try:
                self._on_fallback(reason)
            except Exception:
                log.exception("on_fallback hook raised")
        plan = self._static.plan_named(order, venues_up, "fallback:static")
        if t0 is not None and self._clock is not None and self._stage is not None:
            self._stage("planning", self._clock() - t0)
        return plan

    def _seq(self, rows: Sequence[int], limit: int | None) -> list[Wave]:
        return [_ioc(self._names[i], limit) for i in rows]

    def _spray(self, ranked: list[int], order: ParentOrder, p: list[float], feats: npt.NDArray[np.float32],
               limit: int | None, costs: list[float]) -> list[Wave]:
        """One wave over the best ``spray_top_k`` candidates weighted by
        expected fillable size, then the lit venues one by one (by rank) for
        what is left. Candidates are the lit venues and the dark ones cheaper
        than the best lit venue: a pool the model expects to leak is not
        worth a slice."""
        lit = [i for i in ranked if not self._dark[i]]
        best_lit_cost = costs[lit[0]] if lit else math.inf
        cand = [i for i in ranked if not self._dark[i] or costs[i] < best_lit_cost]
        top = cand[: self._top_k]
        lot = self._lots.get(order.symbol, 1)
        fillable = [p[i] * (order.qty if self._dark[i] else max(float(feats[i, C_TOUCH]), lot)) for i in top]
        weights = _weights_or_equal(fillable)
        waves = [Wave(slices=tuple(Slice(venue=self._names[i], weight=w, tif=TimeInForce.IOC, limit_ticks=limit)
                                   for i, w in zip(top, weights)))]
        # A lit venue of the spray may have more at worse prices within the
        # limit (or a fresh quote): the sweep revisits it.
        return waves + self._seq(lit if lit else cand[self._top_k:], limit)

    def _build(self, strategy: str, order: ParentOrder, ranked: list[int], p: list[float], costs: list[float],
               feats: npt.NDArray[np.float32], usable: frozenset[str]) -> Plan:
        limit = _limit(order)
        names, dark = self._names, self._dark
        lit_ranked = [i for i in ranked if not dark[i]]
        best_lit = names[lit_ranked[0]] if lit_ranked else None
        waves: list[Wave]
        name = f"ml:{strategy}"
        if strategy == "dark-first":
            best_lit_cost = costs[lit_ranked[0]] if lit_ranked else math.inf
            pools = [i for i in ranked if dark[i] and costs[i] < best_lit_cost]
            if pools:
                weights = _weights_or_equal([p[i] for i in pools])
                # dark_rest_ms = 0 would make a DAY slice rest with no end:
                # then the pools get an IOC sweep instead.
                rest_ms = self._dark_rest_ms
                tif = TimeInForce.DAY if rest_ms > 0 else TimeInForce.IOC
                waves = [Wave(slices=tuple(
                    Slice(venue=names[i], weight=w, tif=tif, limit_ticks=limit, timeout_ms=rest_ms or None)
                    for i, w in zip(pools, weights)))]
                # What the pools leave is swept on the lit venues, split by
                # what they show when one venue's touch cannot take it all.
                if lit_ranked and order.qty > float(feats[lit_ranked[0], C_TOUCH]):
                    waves += self._spray(lit_ranked, order, p, feats, limit, costs)
                else:
                    waves += self._seq(lit_ranked, limit)
            else:
                strategy = "sequential"
                name = "ml:dark-first>sequential"
                waves = self._seq(ranked, limit)
        elif strategy == "spray":
            waves = self._spray(ranked, order, p, feats, limit, costs)
        else:
            waves = self._seq(ranked, limit)
        self.last_strategy = strategy
        return self._end.finish(waves, name, order, usable, best_lit)


def make_planner(cfg: Config, features: OrderFeatures | None = None, scorer: VenueScorer | None = None,
                 on_fallback: Callable[[str], None] | None = None, fallback_reason: str = "missing", *,
                 stage_ns: Callable[[str, int], None] | None = None,
                 clock_ns: Callable[[], int] | None = None) -> Planner:
    """The planner ``waterfall.planner`` names. ``ml`` and ``displayed`` read
    the market through ``features`` (a ``FeatureEngine``)."""
    kind = cfg.waterfall.planner
    if kind == "static":
        return StaticWaterfall(cfg)
    if kind == "equal":
        return EqualSplit(cfg)
    if features is None:
        raise ValueError(f"waterfall.planner = {kind!r} needs a feature engine")
    if kind == "displayed":
        return DisplayedProportional(cfg, features)
    return MLPlanner(cfg, features, scorer, on_fallback, fallback_reason, stage_ns=stage_ns, clock_ns=clock_ns)


# ---------------------------------------------------------------- sizing


def allocate(residual: int, weights: list[float], lot: int) -> list[int]:
    """Split ``residual`` shares by weight in whole lots, largest remainders
    first, so the parts sum exactly to the residual rounded down to a lot
    (never more: children must not exceed the parent's leaves)."""
    if residual <= 0 or not weights:
        return [0] * len(weights)
    total_w = sum(w for w in weights if w > 0)
    if total_w <= 0:
        return [0] * len(weights)
    lots = residual // lot
    raw = [(max(w, 0.0) / total_w) * lots for w in weights]
    parts = [int(r) for r in raw]
    short = lots - sum(parts)
    order = sorted(range(len(weights)), key=lambda i: raw[i] - parts[i], reverse=True)
    for i in order[:short]:
        parts[i] += 1
    out = [p * lot for p in parts]
    # An odd lot left over (residual not a lot multiple) goes to the slice
    # with the largest weight so a parent can always be completed and a
    # zero-weight slice never gets shares.
    heaviest = max(range(len(weights)), key=lambda i: weights[i])
    out[heaviest] += residual - lots * lot
    return out


def apply_limits(sizes: Sequence[int], max_child: int, min_child: int, lot: int) -> list[int]:
    """A wave's child sizes under the policy limits (0 = no limit).

    * No child below ``min_child``: every smaller non-zero size is merged
      into the wave's largest one (the first on a tie). A wave whose total
      is below ``min_child`` so becomes one child of the whole total: a
      residual smaller than the floor still routes.
    * No child above ``max_child``: each is cut to the cap, rounded down to
      whole lots when that still leaves at least one lot and ``min_child``
      (so a cap that is not a lot multiple does not create odd lots). What is
      cut is not sent in this wave: it waits for the next one, or goes back
      to the OMS as unfilled when the plan runs out.

    Merging comes first, so the cap holds on merged children too. The result
    never sums above ``sum(sizes)``, so children never exceed the parent's
    leaves.
    """
    out = [max(q, 0) for q in sizes]
    if min_child > 0 and len(out) > 1:
        big = max(range(len(out)), key=out.__getitem__)
        for i, q in enumerate(out):
            if i != big and 0 < q < min_child:
                out[big] += q
                out[i] = 0
    if max_child > 0:
        cap = max_child
        whole = max_child // lot * lot if lot > 0 else 0
        if whole >= max(min_child, lot, 1):
            cap = whole
        out = [min(q, cap) for q in out]
    return out
