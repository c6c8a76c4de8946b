"""Market data published by a simulated lit venue over FIX 4.4.

A MarketDataRequest (35=V, 263=1) for some symbols is answered with one
snapshot (35=W) per symbol, then incremental refreshes (35=X) whenever the
top of the book changes, at most once per ``interval`` (the venue's
``md_interval_ms``), and a trade entry (269=2) for every execution.

Incremental entries overwrite one price level: 279=1 (change) with
MDPriceLevel(1023), price and size. A level that became empty is sent as
279=2 (delete), deepest first, so a receiver that shifts deeper levels up
on delete ends with the same book. Trades carry AggressorSide(2446) (a FIX 5
tag; FIX 4.4 has none) so the router can sign the flow.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import quickfix as fix

from fix.codec import Ticks
from fix.mdcodec import (
    AGGRESSOR_SIDE,
    MD_ENTRY_PX,
    MD_ENTRY_SIZE,
    MD_ENTRY_TYPE,
    MD_PRICE_LEVEL,
    MD_REQ_ID,
    MD_REQ_REJ_REASON,
    MD_UPDATE_ACTION,
    NO_MD_ENTRIES,
)
from router.domain import Side
from sim.book import LitBook

SYMBOL = 55
TEXT = 58

Levels = tuple[tuple[int, int], ...]
Entry = list[tuple[int, str]]


class MdPublisher:
    def __init__(self, ticks: dict[str, Ticks], send: Callable[[fix.Message], None], depth: int = 5) -> None:
        self._ticks = ticks
        self._send = send
        self.depth = depth
        self._req_ids: dict[str, str] = {}
        self._last: dict[str, tuple[Levels, Levels]] = {}
        self._seq = itertools.count(1)
        self.messages_sent = 0
        self.entries_sent = 0

    @property
    def subscribed(self) -> frozenset[str]:
        return frozenset(self._req_ids)

    def subscribe(self, req_id: str, symbols: list[str], books: dict[str, LitBook]) -> list[str]:
        """Subscribe and send snapshots; returns the symbols this venue does not trade."""
        unknown = [s for s in symbols if s not in books]
        for s in symbols:
            if s in books:
                self._req_ids[s] = req_id
                self._snapshot(s, books[s])
        return unknown

    def unsubscribe_all(self) -> None:
        self._req_ids.clear()
        self._last.clear()

    def _levels(self, book: LitBook) -> tuple[Levels, Levels]:
        return (tuple(book.depth(Side.BUY, self.depth)), tuple(book.depth(Side.SELL, self.depth)))

    def _snapshot(self, symbol: str, book: LitBook) -> None:
        bids, asks = self._levels(book)
        t = self._ticks[symbol]
        m = fix.Message()
        m.getHeader().setField(35, "W")
        m.setField(MD_REQ_ID, self._req_ids[symbol])
        m.setField(SYMBOL, symbol)
        entries: list[Entry] = []
        for typ, levels in (("0", bids), ("1", asks)):
            for i, (px, sz) in enumerate(levels):
                entries.append([(MD_ENTRY_TYPE, typ), (MD_ENTRY_PX, t.to_str(px)), (MD_ENTRY_SIZE, str(sz)),
                                (MD_PRICE_LEVEL, str(i + 1))])
        self._with_entries(m, MD_ENTRY_TYPE, entries)
        self._last[symbol] = (bids, asks)

    def publish_books(self, books: dict[str, LitBook]) -> None:
        """Send an incremental refresh for every subscribed symbol whose top
        levels changed since the last message."""
        for symbol, req_id in self._req_ids.items():
            bids, asks = self._levels(books[symbol])
            prev = self._last.get(symbol)
            if prev == (bids, asks):
                continue
            t = self._ticks[symbol]
            entries: list[Entry] = []
            for typ, new, old in (("0", bids, prev[0] if prev else ()), ("1", asks, prev[1] if prev else ())):
                for i, lvl in enumerate(new):
                    if i >= len(old) or old[i] != lvl:
                        entries.append([(MD_UPDATE_ACTION, "1"), (MD_ENTRY_TYPE, typ), (SYMBOL, symbol),
                                        (MD_ENTRY_PX, t.to_str(lvl[0])), (MD_ENTRY_SIZE, str(lvl[1])),
                                        (MD_PRICE_LEVEL, str(i + 1))])
                for i in range(len(old) - 1, len(new) - 1, -1):
                    entries.append([(MD_UPDATE_ACTION, "2"), (MD_ENTRY_TYPE, typ), (SYMBOL, symbol),
                                    (MD_PRICE_LEVEL, str(i + 1))])
            m = fix.Message()
            m.getHeader().setField(35, "X")
            m.setField(MD_REQ_ID, req_id)
            self._with_entries(m, MD_UPDATE_ACTION, entries)
            self._last[symbol] = (bids, asks)

    def publish_trade(self, symbol: str, px_ticks: int, qty: int, aggressor: Side | None) -> None:
        req_id = self._req_ids.get(symbol)
        if req_id is None:
            return
        m = fix.Message()
        m.getHeader().setField(35, "X")
        m.setField(MD_REQ_ID, req_id)
        entry = [(MD_UPDATE_ACTION, "0"), (MD_ENTRY_TYPE, "2"), (SYMBOL, symbol),
                 (MD_ENTRY_PX, self._ticks[symbol].to_str(px_ticks)), (MD_ENTRY_SIZE, str(qty))]
        if aggressor is not None:
            entry.append((AGGRESSOR_SIDE, aggressor.value))
        self._with_entries(m, MD_UPDATE_ACTION, [entry])

    def reject(self, req_id: str, text: str) -> None:
        m = fix.Message()
        m.getHeader().setField(35, "Y")
        m.setField(MD_REQ_ID, req_id)
        m.setField(MD_REQ_REJ_REASON, "0")
        m.setField(TEXT, text)
        self._send(m)

    def _with_entries(self, m: fix.Message, delimiter: int, entries: list[Entry]) -> None:
        # Real repeating groups: the venue sessions parse with SOR's FIX 4.4
        # dictionary (fix/spec), which keeps each entry's fields together.
        for entry in entries:
            g = fix.Group(NO_MD_ENTRIES, delimiter)
            for tag, value in entry:
                g.setField(tag, value)
            m.addGroup(g)
        self._send(m)
        self.messages_sent += 1
        self.entries_sent += len(entries)
