"""The ML planner: venues ranked by the model's expected cost per share."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from router.config import Config
from router.domain.decision import Decision
from router.domain.orders import ParentOrder
from router.domain.plan import Plan, Slice, Wave
from router.domain.types import TimeInForce, VenueKind
from router.features.catalogue import C_MARK1, C_TOP3, C_TOUCH, C_TTF
from router.routing.baselines import StaticWaterfall
from router.routing.explore import lead_probabilities, pick, uniform
from router.routing.policy import (
    SCORE_FILL,
    SCORE_MARKOUT,
    STATIC,
    STRATEGIES,
    Ending,
    OrderFeatures,
    StrategyPolicy,
    VenueScorer,
    allowed_venues,
    dark_rest_ms_for,
    expected_completion_ms,
    ioc_wave,
    limit_of,
    weights_or_equal,
)
from router.routing.sweep import allocate, markout_penalties

log = logging.getLogger("sor.routing")

NO_VENUE = Plan(waves=(), name="ml:no-venue")
EXPLORED_FIRST_BPS = 1e6
"""A bonus no price difference can beat: an explored lead's levels are swept first."""


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


def rank(costs: Sequence[float], names: Sequence[str], usable: frozenset[str] | set[str]) -> list[int]:
    """Indices of the usable venues, cheapest expected cost first; ties keep
    the configured order (``sorted`` is stable). The ML planner's ranking,
    and what off-policy evaluation takes as a model's greedy lead."""
    return sorted((i for i, n in enumerate(names) if n in usable), key=costs.__getitem__)


class MLPlanner:
    """Ranks the usable venues by the model's expected cost per share and
    builds one of ``STRATEGIES`` from the ranking.

    Per order: features at the order's arrival time, one ``scorer.score``
    call, ``expected_costs``, the ranking (ascending cost, ties in config
    order), the strategy (the order's request if it names one, else policy:
    dark-first when the best venue is dark, spray when the order is larger
    than the contra size in the top 3 levels, sequential otherwise), then
    the plan. The lead venue (first in the ranking) is drawn by
    ``router.routing.explore`` within ``learning.explore_budget_bps``: most
    parents get the cheapest, a few a near-tie, and the decision records the
    probabilities (``propensity``, ``lead_probs``). Every plan is at the parent's limit (market children for a
    market parent) and ends like the static waterfall (rest or cancel).

    When there is no scorer, or it cannot score (it returns None, raises,
    or returns the wrong shape or non-finite numbers), the order routes by
    the static waterfall ("fallback:static") and the decision says why in
    ``fallback``: ``fallback_reason`` without a scorer, else
    ``scorer.last_failure`` ("error" when it raised, "invalid" for a bad
    output). A scoring problem never raises and never drops an order.

    ``decide`` returns the plan inside a ``Decision`` (features, scores,
    costs, ranking, strategy, model version, fallback; arrays are fresh
    copies). With ``clock_ns``, the time spent in "features", "scoring" and
    "planning" comes back in ``Decision.stages_ns``.
    """

    def __init__(self, cfg: Config, features: OrderFeatures, scorer: VenueScorer | None,
                 fallback_reason: str = "missing", *, clock_ns: Callable[[], int] | None = None,
                 policy: StrategyPolicy | None = None) -> None:
        wf = cfg.waterfall
        self._features = features
        self._policy = policy
        """Chooses the strategy and the pools' rest time from the model's
        view (``router.routing.rl``); None: the rules below."""
        self._scorer = scorer
        self._fallback_reason = fallback_reason
        self._clock = clock_ns
        self._names = tuple(v.name for v in cfg.venues)
        self._dark = tuple(v.kind is VenueKind.DARK for v in cfg.venues)
        self._fees = tuple(v.take_fee_bps for v in cfg.venues)
        self._allowed = allowed_venues(cfg)
        self._lots = {s.symbol: s.lot_size for s in cfg.symbols}
        self._top_k = wf.spray_top_k
        self._sweep_markout = wf.sweep_markout
        self._dark_rest_ms = wf.dark_rest_ms
        self._leak_weight = wf.leak_weight
        self._unfilled = wf.unfilled_cost_bps
        self._end = Ending(cfg)
        self._static = StaticWaterfall(cfg)
        self._learning = cfg.learning
        self._explore = cfg.learning.explore_budget_bps > 0.0 and cfg.learning.explore_max_prob > 0.0
        # The online learners ride on the feature engine's venue statistics
        # (router.learning): the bandit's evidence and detected changes, and
        # the pools' censored liquidity.
        self._stats = getattr(features, "stats", None)
        self._bonus_bps = cfg.learning.explore_uncertainty_bps
        self._boost_ns = int(cfg.learning.change_explore_s * 1e9)
        self._dark_split = cfg.learning.dark_split
        # The books the lit sweep reads (router.routing.sweep): the feature
        # engine's market data, when the planner has one.
        self._md = getattr(features, "md", None)
        self._md_venue = tuple(self._md.venue_index.get(n, -1) for n in self._names) if self._md is not None else ()

    @property
    def model_version(self) -> str | None:
        return self._scorer.version if self._scorer is not None else None

    @property
    def scorer(self) -> VenueScorer | None:
        return self._scorer

    def plan(self, order: ParentOrder, venues_up: frozenset[str]) -> Plan:
        return self.decide(order, venues_up).plan

    def decide(self, order: ParentOrder, venues_up: frozenset[str]) -> Decision:
        clock = self._clock
        stages: list[tuple[str, int]] = []
        usable = self._allowed & venues_up
        if not usable:
            return self._decision(order, NO_VENUE, stages)
        requested = (order.strategy or "").strip().lower()

        t0 = clock() if clock is not None else 0
        try:
            feats = np.array(self._features.compute_order(order, order.arrival_ns), dtype=np.float32, copy=True)
        except Exception:
            log.exception("features failed for %s: static waterfall", order.order_id)
            return self._fallback(order, venues_up, "error", stages)
        if clock is not None:
            t1 = clock()
            stages.append(("features", t1 - t0))
            t0 = t1

        if requested == STATIC:
            plan = self._static.plan(order, venues_up)
            if clock is not None:
                stages.append(("planning", clock() - t0))
            return self._decision(order, plan, stages, features=feats, strategy=STATIC)

        scorer = self._scorer
        if scorer is None:
            return self._fallback(order, venues_up, self._fallback_reason, stages, t0, feats)
        try:
            raw = scorer.score(feats)
        except Exception:
            log.exception("scorer raised for %s: static waterfall", order.order_id)
            return self._fallback(order, venues_up, "error", stages, None, feats)
        if clock is not None:
            t1 = clock()
            stages.append(("scoring", t1 - t0))
            t0 = t1
        if raw is None:
            return self._fallback(order, venues_up, scorer.last_failure or "unknown", stages, t0, feats)
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
            return self._fallback(order, venues_up, "invalid", stages, t0, feats)

        costs = _expected_costs(rows, self._leak_weight, self._unfilled, self._dark, self._fees)
        ranked = rank(costs, self._names, usable)
        greedy = ranked[0]
        probs = self._lead_probs(order, costs, ranked, greedy) if self._explore else None
        lead = greedy
        if probs is not None:
            lead = pick(probs, uniform(self._learning.explore_seed, order.session, order.cl_ord_id), greedy)
            if lead != greedy:
                # The plan is built around the explored venue as if the
                # model ranked it first; the others keep their order.
                ranked.remove(lead)
                ranked.insert(0, lead)

        rest_ms: int | None = None
        values: npt.NDArray[np.float64] | None = None
        chosen = None
        if requested not in STRATEGIES and self._policy is not None:
            chosen = self._policy.choose(feats, rows, costs, self._dark, order.qty)
        if requested in STRATEGIES:
            strategy = requested
        elif chosen is not None:
            strategy, rest_ms, values = chosen
        elif self._dark[ranked[0]]:
            strategy = "dark-first"
        elif float(feats[0, C_TOP3]) > 1.0 or order.qty > float(feats[ranked[0], C_TOUCH]):
            # One IOC for the whole order would walk the best venue's book
            # while other venues quote the same touch: split it, level by
            # level where the books are known (a pool worth a slice makes
            # it a spray, see _build).
            strategy = "sweep" if self._md is not None else "spray"
        else:
            strategy = "sequential"
        p = [min(max(r[SCORE_FILL], 0.0), 1.0) for r in rows]
        explored = lead != greedy
        plan, strategy = self._build(strategy, order, ranked, p, costs, feats, usable, explored, rows, rest_ms)
        if clock is not None:
            stages.append(("planning", clock() - t0))
        return self._decision(order, plan, stages, features=feats, scores=scores,
                              costs=np.array(costs, dtype=np.float64),
                              ranking=tuple(self._names[i] for i in ranked), strategy=strategy,
                              propensity=probs[lead] if probs is not None else 1.0,
                              lead_probs=np.array(probs, dtype=np.float64) if probs is not None else None,
                              explored=explored, action_values=values)

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

    def _decision(self, order: ParentOrder, plan: Plan, stages: list[tuple[str, int]], **found: Any) -> Decision:
        # Built once per order, at the end: the order path allocates one.
        feats = found.get("features")
        ttf = dict(zip(self._names, feats[:, C_TTF].tolist())) if feats is not None else None
        return Decision(order_id=order.order_id, ts_ns=order.arrival_ns, plan=plan, venues=self._names,
                        model_version=self.model_version, stages_ns=tuple(stages),
                        expected_completion_ms=expected_completion_ms(plan, ttf), **found)

    def _fallback(self, order: ParentOrder, venues_up: frozenset[str], reason: str,
                  stages: list[tuple[str, int]], t0: int | None = None,
                  features: npt.NDArray[np.float32] | None = None) -> Decision:
        """The static plan for an order the model could not score; ``t0``:
        when planning started, to report the "planning" stage."""
        plan = self._static.plan_named(order, venues_up, "fallback:static")
        if t0 is not None and self._clock is not None:
            stages.append(("planning", self._clock() - t0))
        return self._decision(order, plan, stages, features=features, strategy=STATIC, fallback=reason)

    def _lead_probs(self, order: ParentOrder, costs: list[float], ranked: list[int], greedy: int) -> list[float]:
        """Exploration's distribution over lead venues: the model's costs,
        the bandit's optimism for venues with little evidence of our own, and
        the boost that follows a detected change."""
        st, lc = self._stats, self._learning
        if st is None:
            return lead_probabilities(costs, ranked, greedy, lc)
        bonus = None
        if self._bonus_bps > 0.0:
            b = self._bonus_bps
            bonus = [b * (1.0 - e) for e in st.evidence(st.bucket_of(order.qty), order.arrival_ns)]
        last = st.last_change_ns
        boost = lc.change_explore_factor if last and order.arrival_ns - last < self._boost_ns else 1.0
        return lead_probabilities(costs, ranked, greedy, lc, bonus, boost)

    def _dark_weights(self, order: ParentOrder, pools: list[int], p: list[float],
                      lead: int) -> tuple[list[int], list[float]]:
        """The pools a dark-first wave rests in and their shares: the
        censored liquidity estimate's expected-fill maximising split
        (``learning.dark_split = "censored"``), a pool it gives nothing left
        out (but an explored lead keeps a unit: the log must see it), or the
        model's fill probabilities."""
        liq = self._stats.liquidity if self._stats is not None else None
        if self._dark_split == "censored" and liq is not None and len(pools) > 1:
            units = liq.allocate(pools, order.qty)
            if lead in pools and units[pools.index(lead)] == 0:
                units[pools.index(lead)] = 1
            kept = [(i, u) for i, u in zip(pools, units) if u > 0]
            if kept:
                total = sum(u for _, u in kept)
                return [i for i, _ in kept], [u / total for _, u in kept]
        return pools, weights_or_equal([p[i] for i in pools])

    def _seq(self, rows: Sequence[int], limit: int | None) -> list[Wave]:
        return [ioc_wave(self._names[i], limit) for i in rows]

    def _spray(self, ranked: list[int], order: ParentOrder, p: list[float], feats: npt.NDArray[np.float32],
               limit: int | None, costs: list[float], explored: bool = False) -> list[Wave]:
        """One wave over the best ``spray_top_k`` candidates weighted by
        expected fillable size, then the lit venues one by one (by rank) for
        what is left. Candidates are the lit venues and the dark ones cheaper
        than the best lit venue: a pool the model expects to leak is not
        worth a slice (unless exploration picked it to lead)."""
        lit = [i for i in ranked if not self._dark[i]]
        best_lit_cost = costs[lit[0]] if lit else math.inf
        lead = ranked[0] if explored else -1
        cand = [i for i in ranked if not self._dark[i] or costs[i] < best_lit_cost or i == lead]
        top = cand[: self._top_k]
        lot = self._lots.get(order.symbol, 1)
        fillable = [p[i] * (order.qty if self._dark[i] else max(float(feats[i, C_TOUCH]), lot)) for i in top]
        weights = weights_or_equal(fillable)
        waves = [Wave(slices=tuple(Slice(venue=self._names[i], weight=w, tif=TimeInForce.IOC, limit_ticks=limit)
                                   for i, w in zip(top, weights)))]
        # A lit venue of the spray may have more at worse prices within the
        # limit (or a fresh quote): the sweep revisits it.
        return waves + self._seq(lit if lit else cand[self._top_k:], limit)

    def _markouts(self, rows: Sequence[Sequence[float]], feats: npt.NDArray[np.float32]) -> list[float]:
        """Each venue's 1 s markout as ``waterfall.sweep_markout`` says
        whose (read only when a parent is swept)."""
        src = self._sweep_markout
        if src == "model":
            return [r[SCORE_MARKOUT] for r in rows]
        if src == "measured":
            return feats[:, C_MARK1].tolist()  # type: ignore[no-any-return]
        return [0.0] * len(self._names)

    def _sweep(self, order: ParentOrder, lit: list[int], markouts: Sequence[float], limit: int | None,
               lead: int | None = None) -> list[Wave] | None:
        """The lit venues' visible levels taken by all-in price
        (``router.routing.sweep``), then the lit venues one by one by rank at
        the parent's limit; None when no book shows anything to take.
        ``lead``: exploration's pick, whose levels go first (it must get its
        slice, or the log never sees what it does)."""
        md = self._md
        s = md.symbol_index.get(order.symbol) if md is not None else None
        if md is None or s is None or not lit:
            return None
        side = order.side.sign
        book_side = 1 if side > 0 else 0  # a buy takes asks
        pen = markout_penalties(markouts, lit)
        penalty = [self._fees[i] + pen.get(i, 0.0) for i in range(len(self._names))]
        if lead is not None:
            penalty[lead] = -EXPLORED_FIRST_BPS
        books = [(i, md.levels(self._md_venue[i], s, book_side)) for i in lit if self._md_venue[i] >= 0]
        takes = allocate(books, side, order.qty, limit, penalty)
        total = sum(t.qty for t in takes)
        if not total:
            return None
        first = Wave(slices=tuple(Slice(venue=self._names[t.venue], weight=t.qty / total, tif=TimeInForce.IOC,
                                        limit_ticks=t.limit_ticks) for t in takes))
        return [first, *self._seq(lit, limit)]

    def _build(self, strategy: str, order: ParentOrder, ranked: list[int], p: list[float], costs: list[float],
               feats: npt.NDArray[np.float32], usable: frozenset[str], explored: bool = False,
               rows: Sequence[Sequence[float]] = (), rest_ms: int | None = None) -> tuple[Plan, str]:
        """``explored``: ``ranked[0]`` is exploration's pick, and gets a
        slice even where the model's costs would leave it out. ``rest_ms``:
        dark-first's rest for a normal parent, when a policy chose it
        (else ``waterfall.dark_rest_ms``)."""
        limit = limit_of(order)
        names, dark = self._names, self._dark
        lit_ranked = [i for i in ranked if not dark[i]]
        best_lit = names[lit_ranked[0]] if lit_ranked else None
        lead = ranked[0] if explored else -1
        waves: list[Wave]
        name = f"ml:{strategy}"
        if strategy == "dark-first":
            best_lit_cost = costs[lit_ranked[0]] if lit_ranked else math.inf
            pools = [i for i in ranked if dark[i] and (costs[i] < best_lit_cost or i == lead)]
            if pools:
                pools, weights = self._dark_weights(order, pools, p, lead)
                # dark_rest_ms = 0 would make a DAY slice rest with no end:
                # then the pools get an IOC sweep instead, as they do for a
                # high-urgency parent (policy.dark_rest_ms_for).
                rest_ms = dark_rest_ms_for(order.urgency, self._dark_rest_ms if rest_ms is None else rest_ms)
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
        elif strategy == "sweep":
            best_lit_cost = costs[lit_ranked[0]] if lit_ranked else math.inf
            pools = [i for i in ranked if dark[i] and (costs[i] < best_lit_cost or i == lead)]
            swept = None if pools else self._sweep(order, lit_ranked, self._markouts(rows, feats), limit,
                                                   lead=ranked[0] if explored else None)
            if swept is None:
                # A pool worth a slice, an explored lead, or no book: the spray.
                strategy, name = "spray", "ml:sweep>spray"
                waves = self._spray(ranked, order, p, feats, limit, costs, explored)
            else:
                waves = swept
        elif strategy == "spray":
            waves = self._spray(ranked, order, p, feats, limit, costs, explored)
        else:
            waves = self._seq(ranked, limit)
        return self._end.finish(waves, name, order, usable, best_lit), strategy
