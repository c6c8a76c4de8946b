"""Price-time-priority limit order book for one symbol, plus background liquidity.

Pure and synchronous: no FIX, no I/O, no clock reads. Time arrives as
``ts_ns`` arguments and is only recorded; priority within a price level is
arrival order, which is what a single-threaded matching engine sees anyway.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Container
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from router.domain.types import OrdType, Side, TimeInForce

__all__ = ["BackgroundLiquidity", "Fill", "LitBook", "SubmitResult", "admit_order"]


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution between an incoming (taker) and a resting (maker) order.

    A frozen slotted dataclass rather than a msgspec Struct: it never crosses a
    process boundary (the venue wrapper turns it into ExecutionReports), so it
    needs no codec, and the matching loop creates many of them.
    The price is always the maker's (resting) price.
    """

    taker_id: str
    maker_id: str
    maker_owner: str
    taker_owner: str
    qty: int
    price_ticks: int


@dataclass(slots=True)
class SubmitResult:
    """What happened to one submitted order.

    Always ``qty == filled_qty + rested_qty + canceled_qty``; ``canceled_qty``
    is the remainder of an IOC or market order that found no more liquidity.
    """

    fills: list[Fill] = field(default_factory=list)
    rested_qty: int = 0
    canceled_qty: int = 0

    @property
    def filled_qty(self) -> int:
        return sum(f.qty for f in self.fills)


def admit_order(order_id: str, qty: int, ord_type: OrdType, price_ticks: int | None, resting: Container[str],
                min_qty: int = 1) -> int | None:
    """The checks the lit book and the dark pool make before an order touches
    them (ValueError on failure, in this order: id, size, price, ``min_qty``,
    an id still in ``resting``); returns the order's limit, None for a market
    order (whose ``price_ticks`` is ignored)."""
    if not order_id:
        raise ValueError("order_id must be non-empty")
    if qty <= 0:
        raise ValueError(f"order {order_id!r}: qty must be > 0, got {qty}")
    if ord_type is OrdType.LIMIT:
        if price_ticks is None:
            raise ValueError(f"order {order_id!r}: limit order without a price")
        if price_ticks <= 0:
            raise ValueError(f"order {order_id!r}: price_ticks must be > 0, got {price_ticks}")
    if qty < min_qty:
        raise ValueError(f"order {order_id!r}: qty {qty} below minimum {min_qty}")
    if order_id in resting:
        raise ValueError(f"duplicate order_id {order_id!r}: already resting")
    return price_ticks if ord_type is OrdType.LIMIT else None


@dataclass(slots=True)
class _Resting:
    order_id: str
    owner: str
    side: Side
    price_ticks: int
    remaining: int
    ts_ns: int


@dataclass(slots=True)
class _Level:
    # Canceled orders stay in the deque with remaining == 0 and are skipped when
    # reached: removing from the middle of a deque is O(n) per cancel.
    queue: deque[_Resting] = field(default_factory=deque)
    total: int = 0


class _Side:
    """One side of the book: price -> level, plus the prices kept sorted ascending."""

    __slots__ = ("levels", "prices", "side")

    def __init__(self, side: Side) -> None:
        self.side = side
        self.levels: dict[int, _Level] = {}
        self.prices: list[int] = []

    def best(self) -> int | None:
        if not self.prices:
            return None
        return self.prices[-1] if self.side is Side.BUY else self.prices[0]

    def add(self, order: _Resting) -> None:
        level = self.levels.get(order.price_ticks)
        if level is None:
            level = _Level()
            self.levels[order.price_ticks] = level
            bisect.insort(self.prices, order.price_ticks)
        level.queue.append(order)
        level.total += order.remaining

    def drop_level(self, price: int) -> None:
        del self.levels[price]
        i = bisect.bisect_left(self.prices, price)
        del self.prices[i]

    def best_first(self) -> list[int]:
        return self.prices[::-1] if self.side is Side.BUY else list(self.prices)


class LitBook:
    """A lit limit order book: price-time priority, fills at the resting price."""

    __slots__ = ("_by_owner", "_orders", "_sides")

    def __init__(self) -> None:
        self._sides = {Side.BUY: _Side(Side.BUY), Side.SELL: _Side(Side.SELL)}
        self._orders: dict[str, _Resting] = {}
        # dict as an insertion-ordered set, so owner_orders lists oldest first.
        self._by_owner: dict[str, dict[str, None]] = {}

    # ------------------------------------------------------------------ queries

    def best_bid(self) -> int | None:
        return self._sides[Side.BUY].best()

    def best_ask(self) -> int | None:
        return self._sides[Side.SELL].best()

    def depth(self, side: Side, levels: int) -> list[tuple[int, int]]:
        """``(price_ticks, total_qty)`` for the best ``levels`` levels of ``side``."""
        book_side = self._sides[side]
        prices = book_side.best_first()[: max(0, levels)]
        return [(p, book_side.levels[p].total) for p in prices]

    def resting(self, order_id: str) -> int | None:
        """Remaining quantity of a resting order, None if it is not resting."""
        order = self._orders.get(order_id)
        return None if order is None else order.remaining

    def owner_orders(self, owner: str) -> list[str]:
        """Ids of ``owner``'s resting orders, oldest first."""
        return list(self._by_owner.get(owner, ()))

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
        ts_ns: int,
    ) -> SubmitResult:
        """Match an incoming order, then rest (DAY limit) or cancel the remainder.

        Raises ValueError, with the book untouched, for a duplicate live
        ``order_id``, ``qty <= 0`` or a limit order without a positive price.
        A market order's ``price_ticks`` is ignored.
        """
        limit = admit_order(order_id, qty, ord_type, price_ticks, self._orders)
        fills = self._match(order_id, owner, side, qty, limit)
        remaining = qty - sum(f.qty for f in fills)
        result = SubmitResult(fills=fills)
        if remaining == 0:
            return result
        if ord_type is OrdType.LIMIT and tif is TimeInForce.DAY:
            assert limit is not None
            order = _Resting(order_id, owner, side, limit, remaining, ts_ns)
            self._sides[side].add(order)
            self._orders[order_id] = order
            self._by_owner.setdefault(owner, {})[order_id] = None
            result.rested_qty = remaining
        else:
            result.canceled_qty = remaining
        return result

    def cancel(self, order_id: str) -> int | None:
        """Remove a resting order; its remaining qty, or None if not resting."""
        order = self._orders.get(order_id)
        if order is None:
            return None
        remaining = order.remaining
        book_side = self._sides[order.side]
        level = book_side.levels[order.price_ticks]
        level.total -= remaining
        order.remaining = 0
        self._forget(order)
        if level.total == 0:
            book_side.drop_level(order.price_ticks)
        return remaining

    def amend_qty(self, order_id: str, qty: int) -> bool:
        """Change a resting order's size in place (a maker's quote refresh).
        Time priority is kept either way: only the background makers amend,
        and they only ever queue behind themselves at their own levels.
        False if the order is not resting or ``qty <= 0``."""
        order = self._orders.get(order_id)
        if order is None or qty <= 0:
            return False
        self._sides[order.side].levels[order.price_ticks].total += qty - order.remaining
        order.remaining = qty
        return True

    # ----------------------------------------------------------------- matching

    def _match(
        self, taker_id: str, taker_owner: str, side: Side, qty: int, limit: int | None
    ) -> list[Fill]:
        contra = self._sides[Side.SELL if side is Side.BUY else Side.BUY]
        fills: list[Fill] = []
        remaining = qty
        while remaining > 0:
            best = contra.best()
            if best is None:
                break
            if limit is not None and (best > limit if side is Side.BUY else best < limit):
                break
            level = contra.levels[best]
            queue = level.queue
            while remaining > 0 and queue:
                maker = queue[0]
                if maker.remaining == 0:
                    queue.popleft()  # canceled earlier, lazily dropped here
                    continue
                traded = min(remaining, maker.remaining)
                maker.remaining -= traded
                level.total -= traded
                remaining -= traded
                fills.append(Fill(taker_id, maker.order_id, maker.owner, taker_owner, traded, best))
                if maker.remaining == 0:
                    queue.popleft()
                    self._forget(maker)
            if level.total == 0:
                contra.drop_level(best)
        return fills

    def _forget(self, order: _Resting) -> None:
        del self._orders[order.order_id]
        owned = self._by_owner[order.owner]
        del owned[order.order_id]
        if not owned:
            del self._by_owner[order.owner]


class BackgroundLiquidity:
    """Market-maker quotes and aggressive flow that stand in for other traders.

    Every order goes through ``LitBook.submit``, so when the mid moves through
    a resting router order the fresh ladder really trades with it; that is
    how passive router orders get filled in the simulator.
    Sizes are log-normal around ``size_mean`` shares (``size_jitter`` is the
    log-space sigma), rounded to whole ``lot_size`` lots, at least one lot.
    """

    __slots__ = (
        "_book",
        "_flick",
        "_quotes",
        "_rng",
        "_seq",
        "half_spread_ticks",
        "levels",
        "lot_size",
        "owner",
        "size_jitter",
        "size_mean",
    )

    def __init__(
        self,
        book: LitBook,
        rng: np.random.Generator,
        levels: int,
        half_spread_ticks: int,
        size_mean: int,
        size_jitter: float,
        owner: str = "bg",
        lot_size: int = 100,
    ) -> None:
        if levels < 0:
            raise ValueError(f"levels must be >= 0, got {levels}")
        if half_spread_ticks < 1:
            raise ValueError(f"half_spread_ticks must be >= 1, got {half_spread_ticks}")
        if size_mean <= 0 or lot_size <= 0:
            raise ValueError("size_mean and lot_size must be > 0")
        if size_jitter < 0:
            raise ValueError(f"size_jitter must be >= 0, got {size_jitter}")
        self._book = book
        self._rng = rng
        self._seq = 0
        self._quotes: list[str] = []
        self._flick = False
        self.levels = levels
        self.half_spread_ticks = half_spread_ticks
        self.size_mean = size_mean
        self.size_jitter = float(size_jitter)
        self.owner = owner
        self.lot_size = lot_size

    def requote(self, mid_ticks: int, ts_ns: int) -> list[Fill]:
        """Cancel all of this owner's quotes and place a fresh ladder around ``mid_ticks``.

        Returns the fills of quotes that crossed resting orders of others.
        """
        for order_id in self._book.owner_orders(self.owner):
            self._book.cancel(order_id)
        self._quotes.clear()
        sizes = self._sizes(2 * self.levels)
        fills: list[Fill] = []
        # Innermost level first, so a crossed resting order trades against
        # the most aggressive quote, as it would against a real sweep.
        for i in range(self.levels):
            price = mid_ticks - self.half_spread_ticks - i
            if price > 0:
                fills += self._place(Side.BUY, int(sizes[i]), price, ts_ns)
        for i in range(self.levels):
            price = mid_ticks + self.half_spread_ticks + i
            fills += self._place(Side.SELL, int(sizes[self.levels + i]), price, ts_ns)
        return fills

    def flicker(self) -> int:
        """Every quote still resting from the last ladder changes its size by
        one lot, up on one call and back down on the next: quote-refresh
        churn that moves no price and trades nothing, so a benchmark can set
        the market data volume without touching what orders fill at.
        Returns the number of quotes amended."""
        self._flick = not self._flick
        step = self.lot_size if self._flick else -self.lot_size
        n = 0
        book = self._book
        for order_id in self._quotes:
            qty = book.resting(order_id)
            if qty is not None and book.amend_qty(order_id, qty + step if qty + step > 0 else qty + abs(step)):
                n += 1
        return n

    def take(self, side: Side, qty: int, ts_ns: int) -> list[Fill]:
        """An aggressive market IOC of ``qty`` shares; unmatched remainder vanishes."""
        result = self._book.submit(
            self._next_id(), self.owner, side, qty, OrdType.MARKET, None, TimeInForce.IOC, ts_ns
        )
        return result.fills

    def _place(self, side: Side, qty: int, price: int, ts_ns: int) -> list[Fill]:
        order_id = self._next_id()
        result = self._book.submit(order_id, self.owner, side, qty, OrdType.LIMIT, price, TimeInForce.DAY, ts_ns)
        if result.rested_qty:
            self._quotes.append(order_id)
        return result.fills

    def _sizes(self, n: int) -> npt.NDArray[np.int64]:
        # mean-preserving log-normal: E[exp(s*z - s^2/2)] == 1
        s = self.size_jitter
        raw = self.size_mean * np.exp(s * self._rng.standard_normal(n) - 0.5 * s * s)
        lots = np.maximum(1, np.rint(raw / self.lot_size)).astype(np.int64)
        return lots * self.lot_size

    def _next_id(self) -> str:
        # Skip ids someone else happens to have resting, so a name clash can
        # never make a background order raise.
        while True:
            self._seq += 1
            order_id = f"{self.owner}:{self._seq}"
            if self._book.resting(order_id) is None:
                return order_id
