"""Waterfall plans: what a planner decides and the engine carries out.

A plan is a sequence of waves. The engine sends every slice of a wave at
once, waits until all of them are done (filled, expired or canceled), and
then sends the next wave sized from whatever is still unfilled. That one
shape covers a sequential waterfall (one slice per wave), a spray (several
slices in one wave) and dark-first (a timed dark wave, then a lit sweep), so
every planner only needs to produce a different ``Plan``.
"""

from __future__ import annotations

import msgspec

from router.domain.types import TimeInForce


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
