"""Waterfall plans and the static planner.

A plan is a sequence of waves. The engine sends every slice of a wave at
once, waits until all of them are done (filled, expired or canceled), and
then sends the next wave sized from whatever is still unfilled. That one
shape covers a sequential waterfall (one slice per wave), a spray (several
slices in one wave) and dark-first (a timed dark wave, then a lit sweep), so
later planners only need to produce a different ``Plan``.

The planner is a seam: a pure function of the order, the set of venues that
are up right now, and (later) the market view.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from router.config import Config
from router.domain import OrdType, TimeInForce
from router.orders import ParentOrder


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


class StaticWaterfall:
    """Venues in configured order: IOC at the parent's limit on each, the
    residual moving down the list; then rest on a venue or cancel."""

    def __init__(self, cfg: Config) -> None:
        self._venues = tuple(cfg.waterfall.venues)
        self._final = cfg.waterfall.final_action
        self._rest_venue = cfg.waterfall.rest_venue

    def plan(self, order: ParentOrder, venues_up: frozenset[str]) -> Plan:
        limit = order.price_ticks if order.ord_type is OrdType.LIMIT else None
        waves = [
            Wave(slices=(Slice(venue=v, tif=TimeInForce.IOC, limit_ticks=limit),))
            for v in self._venues
            if v in venues_up
        ]
        can_rest = (
            self._final == "rest"
            and self._rest_venue is not None
            and self._rest_venue in venues_up
            and order.ord_type is OrdType.LIMIT
            and order.tif is TimeInForce.DAY
        )
        if can_rest:
            assert self._rest_venue is not None
            waves.append(
                Wave(slices=(Slice(venue=self._rest_venue, tif=TimeInForce.DAY, limit_ticks=limit),))
            )
        return Plan(waves=tuple(waves), name="static", final="rest" if can_rest else "cancel")


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
