"""The planner of a replay: the decisions a journal recorded, given back."""

from __future__ import annotations

from router.domain.decision import Decision
from router.domain.orders import ParentOrder
from router.routing.policy import Planner


class RecordedPlanner:
    """A planner that answers with the decisions a session recorded, so a
    restored engine routes every old parent exactly as it was routed (a
    model's run over its time budget, say, is not re-decided). A parent
    whose decision did not reach the journal (the last batch before a
    crash) is decided by ``fallback``."""

    def __init__(self, fallback: Planner) -> None:
        self.fallback = fallback
        self.next: Decision | None = None

    def decide(self, order: ParentOrder, venues_up: frozenset[str]) -> Decision:
        d, self.next = self.next, None
        if d is None or d.order_id != order.order_id:
            return self.fallback.decide(order, venues_up)
        return d
