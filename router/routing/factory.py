"""The planner a config names."""

from __future__ import annotations

from collections.abc import Callable

from router.config import Config
from router.routing.baselines import DisplayedProportional, EqualSplit, StaticWaterfall
from router.routing.models import ModelRouter
from router.routing.policy import OrderFeatures, Planner, VenueScorer


def make_planner(cfg: Config, features: OrderFeatures | None = None, scorer: VenueScorer | None = None,
                 fallback_reason: str = "missing", *, clock_ns: Callable[[], int] | None = None) -> Planner:
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
    return ModelRouter(cfg, features, scorer, fallback_reason, clock_ns=clock_ns)
