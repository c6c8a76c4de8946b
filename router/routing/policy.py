"""What every planner shares: the seams it plugs into, how a plan ends, and
the policy size limits. The plan types are ``router.domain.plan``.

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

A parent's urgency (``ParentOrder.urgency``, tag SorUrgency(7003)) holds
for every planner too: a high-urgency parent never rests in the dark
(``dark_rest_ms_for``, ``Ending``), and every ``Decision`` carries the
plan's ``expected_completion_ms``, one formula for all planners.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from router.config import Config
from router.domain.decision import Decision
from router.domain.orders import ParentOrder
from router.domain.plan import Plan, Slice, Wave
from router.domain.types import OrdType, TimeInForce, Urgency, VenueKind

STRATEGIES: Final[tuple[str, ...]] = ("sequential", "spray", "dark-first", "sweep")
"""What the ML planner can do with a ranking; an OMS may request one by name
(custom tag 7001), and ``static`` requests the static waterfall."""

STATIC: Final = "static"
SCORE_COST, SCORE_FILL, SCORE_MARKOUT = 0, 1, 2
"""Columns of a scorer's ``[V, 3]`` output."""
UNMEASURED_TIME_TO_FILL_MS: Final = 100.0
"""A venue's time to fill when the planner has no measure of it (a rule
planner reads no market): VenueStats' prior, what a venue with no fills
of ours reads (``prior_time_to_fill_ms``)."""


class Planner(Protocol):
    """What the engine asks of a planner: a decision for one parent."""

    def decide(self, order: ParentOrder, venues_up: frozenset[str]) -> Decision: ...


class RulePlanner:
    """A planner that reads no model: its ``Decision`` is the plan, its
    name as the strategy, propensity 1."""

    name: str = "rule"

    def plan(self, order: ParentOrder, venues_up: frozenset[str]) -> Plan:
        raise NotImplementedError

    def decide(self, order: ParentOrder, venues_up: frozenset[str]) -> Decision:
        plan = self.plan(order, venues_up)
        return Decision(order_id=order.order_id, ts_ns=order.arrival_ns, plan=plan, venues=(), strategy=self.name,
                        expected_completion_ms=expected_completion_ms(plan))


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


class StrategyPolicy(Protocol):
    """Chooses what the ML planner builds from its model's view of a
    parent (``router.routing.rl``): the strategy and dark-first's rest."""

    @property
    def version(self) -> str: ...

    def choose(self, feats: npt.NDArray[np.float32], rows: Sequence[Sequence[float]], costs: Sequence[float],
               dark: Sequence[bool], qty: int) -> tuple[str, int | None, npt.NDArray[np.float64]] | None:
        """(strategy, rest_ms or None for the configured one, each action's
        value), or None to leave the choice to the planner's rules."""
        ...


class OrderFeatures(Protocol):
    """What the planners need from ``router.features.FeatureEngine``."""

    def compute_order(self, order: ParentOrder, now_ns: int) -> npt.NDArray[np.float32]: ...

    def warm(self, now_ns: int) -> None: ...


# ------------------------------------------------------------------ helpers


def limit_of(order: ParentOrder) -> int | None:
    return order.price_ticks if order.ord_type is OrdType.LIMIT else None


def allowed_venues(cfg: Config) -> frozenset[str]:
    names = [v.name for v in cfg.venues]
    allowed = cfg.waterfall.allowed_venues
    return frozenset(n for n in names if not allowed or n in allowed)


def ioc_wave(venue: str, limit: int | None) -> Wave:
    return Wave(slices=(Slice(venue=venue, tif=TimeInForce.IOC, limit_ticks=limit),))


def weights_or_equal(weights: Sequence[float]) -> list[float]:
    """Non-negative finite weights, or equal ones when none is positive (a
    wave whose weights are all zero would send nothing at all)."""
    w = [x if x > 0.0 and math.isfinite(x) else 0.0 for x in weights]
    return w if sum(w) > 0.0 else [1.0] * len(w)


class Ending:
    """How every planner ends, like the static waterfall: a DAY limit parent
    with final_action 'rest' rests its remainder on ``rest_venue`` when it
    is up and allowed (else on ``fallback``, when the planner offers one);
    anything else is canceled back to the OMS. A high-urgency parent never
    rests in the dark: a dark ``rest_venue`` gives way to ``fallback`` (the
    ML plan's best lit venue), and with none (the rule planners) its
    remainder is canceled."""

    def __init__(self, cfg: Config) -> None:
        self.rest = cfg.waterfall.final_action == "rest"
        self.rest_venue = cfg.waterfall.rest_venue
        self._dark = frozenset(v.name for v in cfg.venues if v.kind is VenueKind.DARK)

    def finish(self, waves: list[Wave], name: str, order: ParentOrder, usable: frozenset[str],
               fallback: str | None = None) -> Plan:
        if self.rest and order.ord_type is OrdType.LIMIT and order.tif is TimeInForce.DAY:
            venue = self.rest_venue if self.rest_venue is not None and self.rest_venue in usable else fallback
            if order.urgency is Urgency.HIGH and venue in self._dark:
                venue = fallback if fallback not in self._dark else None
            if venue is not None:
                waves.append(Wave(slices=(Slice(venue=venue, tif=TimeInForce.DAY, limit_ticks=order.price_ticks),)))
                return Plan(waves=tuple(waves), name=name, final="rest")
        return Plan(waves=tuple(waves), name=name, final="cancel")


def dark_rest_ms_for(urgency: Urgency, dark_rest_ms: int) -> int:
    """How long dark-first's pools rest for a parent of ``urgency``
    (``waterfall.dark_rest_ms`` is normal's): twice as long for low; 0 for
    high, which never rests in the dark. 0 makes the pools' slices IOC
    rather than leaving them out: a midpoint IOC still takes whatever
    contra rests in a pool, at the mid, for one round trip, where skipping
    the pools would give that price improvement up for nothing."""
    if urgency is Urgency.HIGH:
        return 0
    return 2 * dark_rest_ms if urgency is Urgency.LOW else dark_rest_ms


def expected_completion_ms(plan: Plan, time_to_fill_ms: Mapping[str, float] | None = None) -> float | None:
    """How long after arrival ``plan`` expects its parent to be done: its
    first wave, and when that wave rests (dark-first's pools: DAY slices
    with a timeout) the wave after it too, which takes what the pools
    leave::

        T = wave(0) + (wave(1) if wave 0 rests else 0)
        wave(w) = max over its slices of: the slice's timeout_ms when it
                  rests with one, else its venue's time to fill

    A wave ends when its slowest slice does; a resting slice ends at its
    timeout unless filled whole, which a pool seldom does. A venue's time
    to fill is ``time_to_fill_ms[venue]`` (the ML planner reads VenueStats'
    decayed sent-to-first-fill time of the order's size bucket, feature
    ``venue_time_to_fill_ms``), else ``UNMEASURED_TIME_TO_FILL_MS``. It is
    the plan's expected path: a later wave, for what the first ones leave,
    adds its own time when it runs. None for a plan with no wave. Every
    planner's ``Decision`` gets its figure here."""
    waves = plan.waves
    if not waves:
        return None
    ttf = time_to_fill_ms or {}

    def slice_ms(s: Slice) -> float:
        if s.tif is TimeInForce.DAY and s.timeout_ms:
            return float(s.timeout_ms)
        t = ttf.get(s.venue, UNMEASURED_TIME_TO_FILL_MS)
        return t if t >= 0.0 and math.isfinite(t) else UNMEASURED_TIME_TO_FILL_MS

    first = waves[0].slices
    total = max(map(slice_ms, first))
    if len(waves) > 1 and any(s.tif is TimeInForce.DAY and s.timeout_ms for s in first):
        total += max(map(slice_ms, waves[1].slices))
    return total


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
