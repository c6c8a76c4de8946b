"""The reinforcement-learning planner (``waterfall.planner = "rl"``): a
Q-function, fitted offline in the simulator, chooses what the ML planner
builds for each parent.

What this is, exactly: one-step fitted-Q iteration (a contextual bandit
with a learned value function) over ``ACTIONS``, the ML planner's
strategies and, for dark-first, how long the pools rest. The state is what
the planner knows at arrival (``state``: the market and order columns of
the features, and a summary of the venue model's view: the cheapest lit
cost, how much cheaper the best pool is, its fill probability and markout,
how many pools beat the best lit venue, the lit touch against the size);
the reward is minus the parent's implementation shortfall in bps, fees and
the unfilled remainder's cost included (``sim.backtest.ParentResult``),
so ``Q(s, a)`` is the expected shortfall of building ``a`` in ``s``. The
later waves are the ML planner's own, not chosen by the policy: a multi-step
policy (a choice per wave, on what the earlier waves got) needs the engine
to consult the planner between waves, which it does not yet.

Serving is one batched ONNX run: the state repeated once per action with
the action's one-hot appended, ``[len(ACTIONS), STATE_DIM + len(ACTIONS)]``
in, ``[len(ACTIONS), 1]`` out; the lowest value wins (ties: the first
action). Where no pool is rated cheaper than the best lit venue the policy
leaves the choice to the ML planner's rules (the lit sweep): its
experience has pools, and on lit-only markets it measured worse. The
values are the decision's ``action_values``, its ranking of what it could
have done. Training and export: ``models/rl.py``
(``sor train-rl``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from router.features.catalogue import C_TOUCH, N_SHARED

ACTIONS: Final[tuple[tuple[str, int | None], ...]] = (
    ("sequential", None),
    ("sweep", None),
    ("spray", None),
    ("dark-first", 50),
    ("dark-first", 200),
    ("dark-first", 500),
)
"""(strategy, dark rest ms) the policy can choose; a rest applies to
dark-first only (None: the strategy has no rest)."""
N_ACTIONS: Final = len(ACTIONS)
SUMMARY: Final[tuple[str, ...]] = (
    "best_lit_cost_bps", "pool_edge_bps", "pool_fill_prob", "pool_markout_bps", "cheap_pools", "lit_touch_over_qty",
)
STATE_DIM: Final = N_SHARED + len(SUMMARY)
CHEAP_POOLS: Final = SUMMARY.index("cheap_pools")
INPUT_NAME: Final = "state_action"
OUTPUT_NAME: Final = "q"
NO_POOL_EDGE_BPS: Final = -20.0
"""``pool_edge_bps`` where there is no pool (a pool that far worse than lit)."""


def state(feats: npt.NDArray[np.float32], rows: Sequence[Sequence[float]], costs: Sequence[float],
          dark: Sequence[bool], qty: int, out: npt.NDArray[np.float32] | None = None) -> npt.NDArray[np.float32]:
    """The policy's state of one parent: ``[STATE_DIM]`` float32 (into ``out``
    when given). The same function fills training rows and serving rows."""
    x = np.empty(STATE_DIM, dtype=np.float32) if out is None else out
    x[:N_SHARED] = feats[0, :N_SHARED]
    lit = [i for i, d in enumerate(dark) if not d]
    pools = [i for i, d in enumerate(dark) if d]
    best_lit = min((costs[i] for i in lit), default=0.0)
    if pools:
        bp = min(pools, key=costs.__getitem__)
        edge, fill, mark = best_lit - costs[bp], rows[bp][1], rows[bp][2]
    else:
        edge, fill, mark = NO_POOL_EDGE_BPS, 0.0, 0.0
    touch = sum(float(feats[i, C_TOUCH]) for i in lit)
    x[N_SHARED:] = (best_lit, edge, min(max(fill, 0.0), 1.0), mark, sum(1 for i in pools if costs[i] < best_lit),
                    touch / qty if qty > 0 else 0.0)
    return x


def with_actions(x: npt.NDArray[np.float32], out: npt.NDArray[np.float32] | None = None) -> npt.NDArray[np.float32]:
    """``x`` repeated per action with the action's one-hot: the Q-model's batch."""
    b = np.zeros((N_ACTIONS, STATE_DIM + N_ACTIONS), dtype=np.float32) if out is None else out
    b[:, :STATE_DIM] = x
    b[:, STATE_DIM:] = np.eye(N_ACTIONS, dtype=np.float32)
    return b


class QModelError(Exception):
    pass


def manifest_path(onnx_path: str | Path) -> Path:
    return Path(onnx_path).with_suffix(".json")


class QModel:
    """The fitted Q-function: one onnxruntime session, buffers allocated
    once. Its manifest (same path, ``.json``) holds the version, the ONNX's
    sha256 and the state and action lists it was trained on; a mismatch
    with this module's refuses the model."""

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        p = Path(path)
        try:
            man = json.loads(manifest_path(p).read_text())
            blob = p.read_bytes()
        except (OSError, ValueError) as e:
            raise QModelError(f"Q-model {p}: {e}") from e
        if hashlib.sha256(blob).hexdigest() != man.get("sha256"):
            raise QModelError(f"Q-model {p}: sha256 does not match its manifest")
        want = {"state": [*_shared_names(), *SUMMARY], "actions": [list(a) for a in ACTIONS]}
        if man.get("state") != want["state"] or man.get("actions") != want["actions"]:
            raise QModelError(f"Q-model {p}: trained on other state columns or actions")
        self.version: str = str(man.get("version", "unknown"))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self._sess = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
        self._batch = with_actions(np.zeros(STATE_DIM, dtype=np.float32))
        self._x = np.empty(STATE_DIM, dtype=np.float32)
        self.values(self._x)  # warm

    def values(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Q of every action in state ``x`` (``[N_ACTIONS]``, expected shortfall bps)."""
        self._batch[:, :STATE_DIM] = x
        (q,) = self._sess.run([OUTPUT_NAME], {INPUT_NAME: self._batch})
        return np.asarray(q, dtype=np.float64).reshape(N_ACTIONS)


def _shared_names() -> list[str]:
    from router.features.catalogue import FEATURE_NAMES

    return list(FEATURE_NAMES[:N_SHARED])


def state_names() -> list[str]:
    return [*_shared_names(), *SUMMARY]


class RLPolicy:
    """The ``StrategyPolicy`` of the RL planner: the action of lowest Q."""

    def __init__(self, model: QModel) -> None:
        self._q = model
        self._x = np.empty(STATE_DIM, dtype=np.float32)

    @property
    def version(self) -> str:
        return self._q.version

    def choose(self, feats: npt.NDArray[np.float32], rows: Sequence[Sequence[float]], costs: Sequence[float],
               dark: Sequence[bool], qty: int) -> tuple[str, int | None, npt.NDArray[np.float64]] | None:
        x = state(feats, rows, costs, dark, qty, self._x)
        if x[N_SHARED + CHEAP_POOLS] <= 0 or not np.isfinite(x).all():
            # No pool beats the best lit venue: dark-first has nothing to
            # rest in, and the lit-only choice is the rules' (the cost-aware
            # sweep): the Q-model was fitted on markets with pools and
            # measured worse than the rules on lit-only ones (README).
            return None
        q = self._q.values(x)
        if not math.isfinite(float(q.sum())):
            return None
        a = int(np.argmin(q))
        strategy, rest = ACTIONS[a]
        return strategy, rest, q
