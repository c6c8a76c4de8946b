"""A lit venue's book changes as market-data entries, sans-IO.

The one definition of what a simulated venue publishes: a snapshot of its
top levels, then per change only the levels that differ (279=1 change) and
the levels that emptied (279=2 delete, deepest first, so a receiver that
shifts deeper levels up on delete ends with the same book), and a trade
entry per execution. The FIX venue (``sim.mdfeed``) puts these entries on
the wire; the backtest hands them to the engine in the ``MarketDataReceived``
the FIX edge would have decoded, so both drive the router's one
market-data path (``router.market.feed``).
"""

from __future__ import annotations

from router.domain.events import MdEntry
from router.domain.types import Side
from sim.book import LitBook

Levels = tuple[tuple[int, int], ...]
"""(px_ticks, size) per level, best first."""

BID, ASK, TRADE = 0, 1, 2


def levels_of(book: LitBook, depth: int) -> tuple[Levels, Levels]:
    """The top ``depth`` bid and ask levels a venue publishes of ``book``."""
    return tuple(book.depth(Side.BUY, depth)), tuple(book.depth(Side.SELL, depth))


def snapshot_entries(symbol: str, bids: Levels, asks: Levels) -> list[MdEntry]:
    return [MdEntry(action="0", kind=kind, symbol=symbol, px_ticks=px, size=sz, level=i, aggressor=0)
            for kind, levels in ((BID, bids), (ASK, asks)) for i, (px, sz) in enumerate(levels)]


def level_changes(symbol: str, old: tuple[Levels, Levels], new: tuple[Levels, Levels]) -> list[MdEntry]:
    """The entries that turn book ``old`` into ``new``."""
    out: list[MdEntry] = []
    for kind in (BID, ASK):
        was, now = old[kind], new[kind]
        for i, lvl in enumerate(now):
            if i >= len(was) or was[i] != lvl:
                out.append(MdEntry(action="1", kind=kind, symbol=symbol, px_ticks=lvl[0], size=lvl[1], level=i,
                                   aggressor=0))
        for i in range(len(was) - 1, len(now) - 1, -1):
            out.append(MdEntry(action="2", kind=kind, symbol=symbol, px_ticks=0, size=0, level=i, aggressor=0))
    return out


def trade_entry(symbol: str, px_ticks: int, qty: int, aggressor: Side | None) -> MdEntry:
    return MdEntry(action="0", kind=TRADE, symbol=symbol, px_ticks=px_ticks, size=qty, level=0,
                   aggressor=0 if aggressor is None else aggressor.sign)
