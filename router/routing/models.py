"""Champion and challenger: which venue model routes each parent.

``ModelRouter`` is the ML planner the daemon runs: an ``MLPlanner`` per
model, over the same features. What it does is set by ``ModelsChanged``,
an engine event (journaled, ordered between two orders like any input):

* "off": the champion decides every parent;
* "shadow": the champion decides and acts; the challenger decides the same
  parent too, and its decision rides along in ``Decision.shadow`` for the
  journal (and off-policy comparison), never acted on. Its time is the
  "shadow" stage: the price of shadowing, paid on the order path, measured;
* "canary": parents whose (session, ClOrdID) hash under ``fraction`` are
  routed by the challenger (``Decision.role`` "challenger"), the rest by
  the champion. The hash makes the split reproducible and independent of
  the order's terms and of exploration's draw (another salt).

Loading a model is slow (file I/O, an onnxruntime session, warm-up runs),
so it never happens here: the admin thread loads and warms a scorer and
hands it over with ``stage`` (on the loop thread); the event then names the
version. A version not staged is refused and nothing changes, so no parent
is ever scored by a half-loaded model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec

from router.config import Config
from router.domain.decision import Decision
from router.domain.events import ModelMode, ModelsChanged
from router.domain.orders import ParentOrder
from router.routing.explore import uniform
from router.routing.ml import MLPlanner
from router.routing.policy import OrderFeatures, VenueScorer

log = logging.getLogger("sor.routing")

CANARY_SALT = 0x0CA7A7
"""Seeds the canary split's hash (exploration's uses ``learning.explore_seed``)."""


class ModelRouter:
    def __init__(self, cfg: Config, features: OrderFeatures, champion: VenueScorer | None,
                 fallback_reason: str = "missing", *, clock_ns: Callable[[], int] | None = None) -> None:
        self._cfg = cfg
        self._features = features
        self._clock = clock_ns
        self._fallback_reason = fallback_reason
        self.champion = MLPlanner(cfg, features, champion, fallback_reason, clock_ns=clock_ns)
        self.challenger: MLPlanner | None = None
        self.mode: ModelMode = "off"
        self.fraction = 0.0
        self._staged: dict[str, VenueScorer] = {}
        if champion is not None:
            self._staged[champion.version] = champion

    # ------------------------------------------------------------- the seam

    @property
    def model_version(self) -> str | None:
        return self.champion.model_version

    @property
    def challenger_version(self) -> str | None:
        return self.challenger.model_version if self.challenger is not None else None

    def in_canary(self, order: ParentOrder) -> bool:
        return self.fraction > 0.0 and uniform(CANARY_SALT, order.session, order.cl_ord_id) < self.fraction

    def decide(self, order: ParentOrder, venues_up: frozenset[str]) -> Decision:
        ch = self.challenger
        if ch is None or self.mode == "off":
            return self.champion.decide(order, venues_up)
        if self.mode == "canary":
            if self.in_canary(order):
                return msgspec.structs.replace(ch.decide(order, venues_up), role="challenger")
            return self.champion.decide(order, venues_up)
        d = self.champion.decide(order, venues_up)
        clock = self._clock
        t0 = clock() if clock is not None else 0
        s = ch.decide(order, venues_up)
        stages = d.stages_ns + ((("shadow", clock() - t0),) if clock is not None else ())
        return msgspec.structs.replace(d, shadow=msgspec.structs.replace(s, features=None, role="challenger"),
                                       stages_ns=stages)

    def plan(self, order: ParentOrder, venues_up: frozenset[str]) -> object:
        return self.decide(order, venues_up).plan

    def warm(self, now_ns: int) -> None:
        self.champion.warm(now_ns)
        if self.challenger is not None and self.mode != "off":
            self.challenger.warm(now_ns)

    # --------------------------------------------------------------- changes

    def stage(self, scorer: VenueScorer) -> None:
        """Loop thread: a loaded, warmed scorer that a ``ModelsChanged`` may
        now name."""
        self._staged[scorer.version] = scorer

    def manifest_of(self, version: str) -> object | None:
        """The manifest of a model in service or staged (its validation
        figures are the quality monitor's yardstick)."""
        for planner in (self.champion, self.challenger):
            if planner is not None and planner.model_version == version:
                return getattr(planner.scorer, "manifest", None)
        s = self._staged.get(version)
        return getattr(s, "manifest", None) if s is not None else None

    def staged(self) -> list[str]:
        return sorted(self._staged)

    def apply_models(self, ev: ModelsChanged) -> str | None:
        """Put ``ev`` in force; None when done, else why nothing changed."""
        if ev.mode not in ("off", "shadow", "canary"):
            return f"unknown mode {ev.mode!r}"
        if not 0.0 <= ev.fraction <= 1.0:
            return f"fraction {ev.fraction} is not in [0, 1]"
        if ev.mode != "off" and ev.challenger is None:
            return f"mode {ev.mode} needs a challenger"
        for v in (ev.champion, ev.challenger):
            if v is not None and v not in self._staged and v != self.model_version:
                return f"model {v} is not loaded (load it first)"
        if ev.champion != self.model_version:
            self.champion = MLPlanner(self._cfg, self._features, self._staged[ev.champion], self._fallback_reason,
                                      clock_ns=self._clock)
        if ev.challenger is None:
            self.challenger = None
        elif ev.challenger != self.challenger_version:
            self.challenger = MLPlanner(self._cfg, self._features, self._staged[ev.challenger],
                                        self._fallback_reason, clock_ns=self._clock)
        self.mode = ev.mode if ev.challenger is not None else "off"
        self.fraction = ev.fraction if self.mode == "canary" else 0.0
        # Keep only what serves: a scorer holds an onnxruntime session.
        keep = {v for v in (self.model_version, self.challenger_version) if v is not None}
        self._staged = {v: s for v, s in self._staged.items() if v in keep}
        return None

    def state(self) -> dict[str, object]:
        return {"champion": self.model_version, "challenger": self.challenger_version, "mode": self.mode,
                "fraction": self.fraction}
