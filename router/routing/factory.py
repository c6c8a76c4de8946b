"""The planner a config names."""

from __future__ import annotations

import logging
from collections.abc import Callable

from router.config import Config
from router.routing.baselines import DisplayedProportional, EqualSplit, StaticWaterfall
from router.routing.ml import MLPlanner
from router.routing.models import ModelRouter
from router.routing.policy import OrderFeatures, Planner, VenueScorer
from router.routing.rl import QModel, QModelError, RLPolicy

log = logging.getLogger("sor.routing")


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
    if kind == "rl":
        # The venue model's ranking, the Q-model's choice of what to build
        # from it. No Q-model: the ML planner's own rules, said loudly.
        try:
            policy: RLPolicy | None = RLPolicy(QModel(cfg.model.rl_path))
        except QModelError as e:
            log.error("waterfall.planner = rl: %s; routing by the ML planner's rules", e)
            policy = None
        return MLPlanner(cfg, features, scorer, fallback_reason, clock_ns=clock_ns, policy=policy)
    return ModelRouter(cfg, features, scorer, fallback_reason, clock_ns=clock_ns)
