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
from router.domain.events import MdEntry
from router.domain.types import Side
from sim.book import LitBook
from sim.mdupdates import Levels, level_changes, levels_of, snapshot_entries, trade_entry

SYMBOL = 55
TEXT = 58

Entry = list[tuple[int, str]]
ENTRY_TYPE = ("0", "1", "2")
"""MDEntryType(269) by ``MdEntry.kind``: bid, offer, trade."""


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
        return levels_of(book, self.depth)

    def _snapshot(self, symbol: str, book: LitBook) -> None:
        bids, asks = self._levels(book)
        t = self._ticks[symbol]
        m = fix.Message()
        m.getHeader().setField(35, "W")
        m.setField(MD_REQ_ID, self._req_ids[symbol])
        m.setField(SYMBOL, symbol)
        entries: list[Entry] = [[(MD_ENTRY_TYPE, ENTRY_TYPE[e.kind]), (MD_ENTRY_PX, t.to_str(e.px_ticks)),
                                 (MD_ENTRY_SIZE, str(e.size)), (MD_PRICE_LEVEL, str(e.level + 1))]
                                for e in snapshot_entries(symbol, bids, asks)]
        self._with_entries(m, MD_ENTRY_TYPE, entries)
        self._last[symbol] = (bids, asks)

    def publish_books(self, books: dict[str, LitBook]) -> None:
        """Send an incremental refresh for every subscribed symbol whose top
        levels changed since the last message."""
        for symbol, req_id in self._req_ids.items():
            new = self._levels(books[symbol])
            prev = self._last.get(symbol)
            if prev == new:
                continue
            t = self._ticks[symbol]
            entries = [self._incremental(e, t) for e in level_changes(symbol, prev or ((), ()), new)]
            m = fix.Message()
            m.getHeader().setField(35, "X")
            m.setField(MD_REQ_ID, req_id)
            self._with_entries(m, MD_UPDATE_ACTION, entries)
            self._last[symbol] = new

    def publish_trade(self, symbol: str, px_ticks: int, qty: int, aggressor: Side | None) -> None:
        req_id = self._req_ids.get(symbol)
        if req_id is None:
            return
        m = fix.Message()
        m.getHeader().setField(35, "X")
        m.setField(MD_REQ_ID, req_id)
        entry = self._incremental(trade_entry(symbol, px_ticks, qty, aggressor), self._ticks[symbol])
        if aggressor is not None:
            entry.append((AGGRESSOR_SIDE, aggressor.value))
        self._with_entries(m, MD_UPDATE_ACTION, [entry])

    @staticmethod
    def _incremental(e: MdEntry, t: Ticks) -> Entry:
        out = [(MD_UPDATE_ACTION, e.action), (MD_ENTRY_TYPE, ENTRY_TYPE[e.kind]), (SYMBOL, e.symbol)]
        if e.action != "2":
            out += [(MD_ENTRY_PX, t.to_str(e.px_ticks)), (MD_ENTRY_SIZE, str(e.size))]
        if e.kind != 2:
            out.append((MD_PRICE_LEVEL, str(e.level + 1)))
        return out

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
