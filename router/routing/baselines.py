"""The rule-based planners: the static waterfall and the backtest's baselines."""

from __future__ import annotations

import logging

from router.config import Config
from router.domain.orders import ParentOrder
from router.domain.plan import Plan, Slice, Wave
from router.domain.types import TimeInForce, VenueKind
from router.features.catalogue import C_TOUCH
from router.routing.policy import (
    STATIC,
    Ending,
    OrderFeatures,
    RulePlanner,
    allowed_venues,
    ioc_wave,
    limit_of,
    weights_or_equal,
)

log = logging.getLogger("sor.routing")


# -------------------------------------------------------------- static plans


class StaticWaterfall(RulePlanner):
    """Venues in configured order: IOC at the parent's limit on each, the
    residual moving down the list; then rest on a venue or cancel. Only
    venues in ``allowed_venues`` are used."""

    def __init__(self, cfg: Config, name: str = STATIC) -> None:
        self._venues = tuple(cfg.waterfall.venues)
        self._allowed = allowed_venues(cfg)
        self._end = Ending(cfg)
        self.name = name

    def plan(self, order: ParentOrder, venues_up: frozenset[str]) -> Plan:
        return self.plan_named(order, venues_up, self.name)

    def plan_named(self, order: ParentOrder, venues_up: frozenset[str], name: str) -> Plan:
        usable = self._allowed & venues_up
        limit = limit_of(order)
        waves = [ioc_wave(v, limit) for v in self._venues if v in usable]
        return self._end.finish(waves, name, order, usable)


class EqualSplit(RulePlanner):
    """Baseline: one IOC wave over every allowed venue that is up, equal
    weights, at the parent's limit; then the residual goes down the static
    list (``waterfall.venues``), one IOC wave per venue; then rest or cancel
    like the static waterfall."""

    name = "equal"

    def __init__(self, cfg: Config) -> None:
        static = list(cfg.waterfall.venues)
        self._order = tuple(static + [v.name for v in cfg.venues if v.name not in static])
        self._static = tuple(static)
        self._allowed = allowed_venues(cfg)
        self._end = Ending(cfg)

    def plan(self, order: ParentOrder, venues_up: frozenset[str]) -> Plan:
        usable = self._allowed & venues_up
        limit = limit_of(order)
        first = [v for v in self._order if v in usable]
        waves: list[Wave] = []
        if first:
            waves.append(Wave(slices=tuple(Slice(venue=v, tif=TimeInForce.IOC, limit_ticks=limit) for v in first)))
        waves += [ioc_wave(v, limit) for v in self._static if v in usable]
        return self._end.finish(waves, self.name, order, usable)


class DisplayedProportional(RulePlanner):
    """Baseline: one IOC wave over the allowed lit venues that are up,
    weighted by the contra size each displays at the NBBO (feature
    ``venue_touch_size``; equal weights when none shows any), then the same
    static residual sweep as ``EqualSplit``; then rest or cancel."""

    name = "displayed"

    def __init__(self, cfg: Config, features: OrderFeatures) -> None:
        self._features = features
        self._rows = tuple((i, v.name) for i, v in enumerate(cfg.venues) if v.kind is VenueKind.LIT)
        self._static = tuple(cfg.waterfall.venues)
        self._allowed = allowed_venues(cfg)
        self._end = Ending(cfg)

    def plan(self, order: ParentOrder, venues_up: frozenset[str]) -> Plan:
        usable = self._allowed & venues_up
        limit = limit_of(order)
        lit = [(i, v) for i, v in self._rows if v in usable]
        waves: list[Wave] = []
        if lit:
            try:
                touch = self._features.compute_order(order, order.arrival_ns)[:, C_TOUCH]
                sizes = [float(touch[i]) for i, _ in lit]
            except Exception:
                log.exception("displayed planner: no features for %s; equal weights", order.order_id)
                sizes = []
            weights = weights_or_equal(sizes or [0.0] * len(lit))
            waves.append(Wave(slices=tuple(Slice(venue=v, weight=w, tif=TimeInForce.IOC, limit_ticks=limit)
                                           for (_, v), w in zip(lit, weights))))
        waves += [ioc_wave(v, limit) for v in self._static if v in usable]
        return self._end.finish(waves, self.name, order, usable)
