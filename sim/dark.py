"""Dark midpoint pool: orders cross at the mid, against each other or hidden contra.

Nothing here is displayed. An order whose limit admits the current mid first
crosses resting dark orders on the other side (time priority), then, with
probability ``contra_prob``, finds hidden contra liquidity of random size.
The remainder of a DAY limit rests, hidden, until a later order or a
``on_contra_arrival`` call crosses it; IOC and market remainders are canceled.
Pure and synchronous: the caller supplies the mid and the time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from router.domain.types import OrdType, Side, TimeInForce
from sim.book import Fill, SubmitResult, admit_order

__all__ = ["CONTRA_ID", "CONTRA_OWNER", "DarkPool"]

CONTRA_ID = "dark-contra"
CONTRA_OWNER = "hidden"


@dataclass(slots=True)
class _DarkOrder:
    order_id: str
    owner: str
    side: Side
    limit_ticks: int
    remaining: int
    ts_ns: int


def _admits(side: Side, limit_ticks: int | None, mid_ticks: int) -> bool:
    """Whether an order on ``side`` with this limit (None = market) may trade at the mid."""
    if limit_ticks is None:
        return True
    return mid_ticks <= limit_ticks if side is Side.BUY else mid_ticks >= limit_ticks


class DarkPool:
    """Midpoint crossing for one symbol.

    Hidden contra sizes are geometric with mean ``contra_size_mean`` shares,
    floored at ``min_qty``; orders smaller than ``min_qty`` are refused
    (ValueError), as a real pool refuses orders below its minimum size.
    Fills against hidden contra report ``maker_id``/``maker_owner`` as
    ``CONTRA_ID``/``CONTRA_OWNER``; fills from ``on_contra_arrival`` report
    the contra as the taker, under the same names.
    """

    __slots__ = ("_by_side", "_orders", "_rng", "contra_prob", "contra_size_mean", "min_qty")

    def __init__(
        self,
        rng: np.random.Generator,
        contra_prob: float,
        contra_size_mean: int,
        min_qty: int = 1,
    ) -> None:
        if not 0.0 <= contra_prob <= 1.0:
            raise ValueError(f"contra_prob must be in [0, 1], got {contra_prob}")
        if contra_size_mean < 1:
            raise ValueError(f"contra_size_mean must be >= 1, got {contra_size_mean}")
        if min_qty < 1:
            raise ValueError(f"min_qty must be >= 1, got {min_qty}")
        self._rng = rng
        self.contra_prob = float(contra_prob)
        self.contra_size_mean = contra_size_mean
        self.min_qty = min_qty
        self._orders: dict[str, _DarkOrder] = {}
        # Insertion-ordered dicts give time priority with O(1) cancel.
        self._by_side: dict[Side, dict[str, _DarkOrder]] = {Side.BUY: {}, Side.SELL: {}}

    # ------------------------------------------------------------------ queries

    def resting(self, order_id: str) -> int | None:
        """Remaining quantity of a resting order, None if it is not resting."""
        order = self._orders.get(order_id)
        return None if order is None else order.remaining

    def owner_orders(self, owner: str) -> list[str]:
        """Ids of ``owner``'s resting orders, oldest first."""
        return [o.order_id for o in self._orders.values() if o.owner == owner]

    def resting_qty(self, side: Side) -> int:
        """Total hidden resting quantity on ``side`` (for tests and diagnostics)."""
        return sum(o.remaining for o in self._by_side[side].values())

    def __len__(self) -> int:
        return len(self._orders)

    # ----------------------------------------------------------------- commands

    def submit(
        self,
        order_id: str,
        owner: str,
        side: Side,
        qty: int,
        ord_type: OrdType,
        price_ticks: int | None,
        tif: TimeInForce,
        mid_ticks: int,
        ts_ns: int,
    ) -> SubmitResult:
        """Cross at ``mid_ticks`` if the limit admits it, then rest or cancel the rest.

        Raises ValueError, with the pool untouched, for a duplicate live
        ``order_id``, ``qty <= 0``, ``qty < min_qty`` or a limit order
        without a positive price. A market order's ``price_ticks`` is ignored.
        """
        limit = admit_order(order_id, qty, ord_type, price_ticks, self._orders, self.min_qty)
        result = SubmitResult()
        remaining = qty
        if _admits(side, limit, mid_ticks):
            contra_side = Side.SELL if side is Side.BUY else Side.BUY
            for fill in self._cross_resting(contra_side, remaining, mid_ticks):
                # Resting dark orders are the makers; the incoming one takes.
                result.fills.append(
                    Fill(order_id, fill.maker_id, fill.maker_owner, owner, fill.qty, mid_ticks)
                )
                remaining -= fill.qty
            if remaining > 0 and self._rng.random() < self.contra_prob:
                contra = max(self.min_qty, int(self._rng.geometric(1.0 / self.contra_size_mean)))
                traded = min(remaining, contra)
                result.fills.append(
                    Fill(order_id, CONTRA_ID, CONTRA_OWNER, owner, traded, mid_ticks)
                )
                remaining -= traded
        if remaining == 0:
            return result
        if limit is not None and tif is TimeInForce.DAY:
            order = _DarkOrder(order_id, owner, side, limit, remaining, ts_ns)
            self._orders[order_id] = order
            self._by_side[side][order_id] = order
            result.rested_qty = remaining
        else:
            result.canceled_qty = remaining
        return result

    def on_contra_arrival(
        self, side_of_contra: Side, qty: int, mid_ticks: int, ts_ns: int
    ) -> list[Fill]:
        """Background contra of ``qty`` on ``side_of_contra`` crosses resting orders.

        Resting orders whose limit admits the mid fill in time priority; ones
        that do not are skipped, not blocking. Unused contra vanishes.
        """
        if qty <= 0:
            return []
        resting_side = Side.SELL if side_of_contra is Side.BUY else Side.BUY
        return self._cross_resting(resting_side, qty, mid_ticks)

    def cancel(self, order_id: str) -> int | None:
        """Remove a resting order; its remaining qty, or None if not resting."""
        order = self._orders.pop(order_id, None)
        if order is None:
            return None
        del self._by_side[order.side][order_id]
        return order.remaining

    # ----------------------------------------------------------------- matching

    def _cross_resting(self, resting_side: Side, qty: int, mid_ticks: int) -> list[Fill]:
        """Fill resting orders on ``resting_side`` at the mid, contra as taker."""
        fills: list[Fill] = []
        book = self._by_side[resting_side]
        remaining = qty
        for order in list(book.values()):
            if remaining == 0:
                break
            if not _admits(resting_side, order.limit_ticks, mid_ticks):
                continue
            traded = min(remaining, order.remaining)
            order.remaining -= traded
            remaining -= traded
            fills.append(
                Fill(CONTRA_ID, order.order_id, order.owner, CONTRA_OWNER, traded, mid_ticks)
            )
            if order.remaining == 0:
                del book[order.order_id]
                del self._orders[order.order_id]
        return fills
