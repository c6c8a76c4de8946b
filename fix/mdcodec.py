"""Market data from venues: subscription requests out, refreshes in.

Decoding runs on quickfix's thread for every update (thousands a second
per venue), so it works on the raw string rather than through SWIG calls per
field, and turns prices into ticks with float arithmetic: market data feeds
features, never money, and a float product rounds exactly to the tick for
any realistic price.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import quickfix as fix

from fix.codec import raw_fields
from router.domain.events import MarketDataReceived, MdEntry

MD_REQ_ID = 262
SUBSCRIPTION_REQUEST_TYPE = 263
MARKET_DEPTH = 264
MD_UPDATE_TYPE = 265
NO_MD_ENTRY_TYPES = 267
NO_RELATED_SYM = 146
NO_MD_ENTRIES = 268
MD_ENTRY_TYPE = 269
MD_ENTRY_PX = 270
MD_ENTRY_SIZE = 271
MD_UPDATE_ACTION = 279
MD_REQ_REJ_REASON = 281
MD_PRICE_LEVEL = 1023
AGGRESSOR_SIDE = 2446
"""A FIX 5 tag (FIX 4.4 has none): lets the router sign the trade flow."""

# MDEntryType values the router uses.
BID, OFFER, TRADE = "0", "1", "2"
KIND = {BID: 0, OFFER: 1, TRADE: 2}
AGGRESSOR = {"1": 1, "2": -1}


def subscription_request(req_id: str, symbols: Iterable[str], depth: int) -> fix.Message:
    """MarketDataRequest: snapshot plus incremental updates of books and trades."""
    m = fix.Message()
    m.getHeader().setField(35, "V")
    m.setField(MD_REQ_ID, req_id)
    m.setField(SUBSCRIPTION_REQUEST_TYPE, "1")
    m.setField(MARKET_DEPTH, str(depth))
    m.setField(MD_UPDATE_TYPE, "1")
    for kind in (BID, OFFER, TRADE):
        g = fix.Group(NO_MD_ENTRY_TYPES, MD_ENTRY_TYPE)
        g.setField(MD_ENTRY_TYPE, kind)
        m.addGroup(g)
    for s in symbols:
        g = fix.Group(NO_RELATED_SYM, 55)
        g.setField(55, s)
        m.addGroup(g)
    return m


class MdDecoder:
    def __init__(self, tick_sizes: dict[str, float], clock_ns: Callable[[], int]) -> None:
        self._inv_tick = {s: 1.0 / t for s, t in tick_sizes.items()}
        self._clock_ns = clock_ns
        self.errors = 0

    def decode(self, raw: str, venue: str) -> MarketDataReceived:
        """``raw`` is ``msg.toString()`` of a 35=W, 35=X or 35=Y message."""
        now = self._clock_ns()
        fields = raw_fields(raw)
        mt = next((v for t, v in fields if t == "35"), "")
        if mt == "Y":
            return MarketDataReceived(venue=venue, snapshot=False, symbol="", entries=(), recv_ns=now,
                                      rejected=True)
        snapshot = mt == "W"
        # Group members start at the delimiter: MDEntryType in a snapshot,
        # MDUpdateAction in an incremental refresh.
        delimiter = "269" if snapshot else "279"
        symbol = ""
        entries: list[MdEntry] = []
        cur: dict[str, str] | None = None
        for tag, value in fields:
            if tag == delimiter:
                if cur is not None:
                    entries.append(self._entry(cur, symbol))
                cur = {}
            if cur is None:
                if tag == "55":
                    symbol = value
                continue
            cur[tag] = value
        if cur is not None:
            entries.append(self._entry(cur, symbol))
        return MarketDataReceived(venue=venue, snapshot=snapshot, symbol=symbol, entries=tuple(entries),
                                  recv_ns=now)

    def _entry(self, f: dict[str, str], symbol: str) -> MdEntry:
        sym = f.get("55", symbol)
        inv = self._inv_tick.get(sym)
        try:
            px = float(f.get("270", "0"))
            size_f = float(f.get("271", "0"))
            level = int(f.get("1023", "1")) - 1
            if not (math.isfinite(px) and math.isfinite(size_f)):
                raise ValueError("NaN or infinite price/size")
            size = int(size_f)
        except ValueError:
            # Marked unreadable: the router drops the entry and counts it.
            self.errors += 1
            px, size, level = 0.0, 0, -1
        return MdEntry(action=f.get("279", "0"), kind=KIND.get(f.get("269", ""), -1), symbol=sym,
                       px_ticks=round(px * inv) if inv is not None else 0, size=size, level=level,
                       aggressor=AGGRESSOR.get(f.get("2446", ""), 0))
