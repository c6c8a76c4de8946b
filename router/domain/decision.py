"""The routing decision: everything that made a parent go where it went.

The engine returns one ``Decision`` per routed parent beside the commands.
It is the only record of a decision: planners keep no copy of their last
one, the driver reads the stage timings from it, the engine counts model
fallbacks from it, and the journal (next) stores it for audit, replay and
off-policy evaluation. The arrays are fresh copies, safe to keep.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from router.domain.plan import Plan
from router.domain.types import Msg


class Decision(Msg, frozen=True, kw_only=True):
    order_id: str
    ts_ns: int
    """The time the features describe: the parent's arrival."""
    plan: Plan
    venues: tuple[str, ...]
    """The venue of each row of ``features``, ``scores`` and ``costs``."""
    features: npt.NDArray[np.float32] | None = None
    """``[V, N_FEATURES]`` at arrival; None when the planner reads no market."""
    scores: npt.NDArray[np.float64] | None = None
    """The model's ``[V, 3]`` output (cost_bps, fill_prob, markout_bps); None when not scored."""
    costs: npt.NDArray[np.float64] | None = None
    """Expected cost per share of each venue (``router.routing.ml.expected_costs``)."""
    ranking: tuple[str, ...] = ()
    """Venues up and allowed, cheapest first (empty when not ranked)."""
    strategy: str | None = None
    """What was built from the ranking ("sequential", "spray", "dark-first",
    "static"); None when nothing could be planned."""
    model_version: str | None = None
    fallback: str | None = None
    """Why the model was not used when it should have been ("missing",
    "corrupt", "error", "invalid", "non_finite", "over_budget", ...)."""
    propensity: float = 1.0
    """Probability with which this plan was picked among those the policy
    could have picked: 1.0 for a deterministic planner. For the ML planner
    the pick is the lead venue (``router.routing.explore``): this is
    ``lead_probs`` at the lead, ``ranking[0]``."""
    lead_probs: npt.NDArray[np.float64] | None = None
    """Probability of each venue (aligned with ``venues``) having been the
    lead: the alternatives the exploring policy could have picked, for
    off-policy evaluation. None when the planner did not rank."""
    explored: bool = False
    """The lead is not the venue the model ranks cheapest."""
    action_values: npt.NDArray[np.float64] | None = None
    """The RL planner's value of each of its actions (``router.routing.rl.
    ACTIONS``, expected shortfall bps: lower is better) for this parent;
    None for the other planners."""
    role: str = "champion"
    """Which model decided: "champion", or "challenger" for a canary parent."""
    shadow: Decision | None = None
    """The challenger's decision for the same parent in shadow mode: scored,
    journaled, never acted on (its ``features`` are left out: they are this
    decision's)."""
    stages_ns: tuple[tuple[str, int], ...] = ()
    """Time spent in "features", "scoring" and "planning", when the planner
    has a clock (the daemon's does; a backtest's does not)."""
    expected_completion_ms: float | None = None
    """How long after arrival the plan expects its parent to be done
    (``router.routing.policy.expected_completion_ms``); None for a plan
    with no wave, and in journals written before the field existed."""
