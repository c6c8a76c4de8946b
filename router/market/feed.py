"""A venue's market-data message applied to the rings: the one path for the
daemon (decoded from FIX) and the backtest (built by the simulator in the
same incremental form).

A snapshot replaces the symbol's book on that venue; an incremental refresh
overwrites, deletes or adds one level per entry; a trade entry goes to the
trade ring. Each touched book is committed once, at the end of the message,
so features never see half a message.
"""

from __future__ import annotations

from router.domain.events import MarketDataReceived
from router.market.rings import MarketData


def apply_update(md: MarketData, upd: MarketDataReceived) -> tuple[bool, int, int]:
    """Apply one message; returns (whether the message was used, entries
    applied, entries dropped). An entry is dropped when it names an unknown
    symbol or the decoder marked it unreadable (kind or level -1). A
    rejected subscription, or a snapshot of an unknown symbol, is not used
    and counts as one dropped entry."""
    if upd.rejected:
        return False, 0, 1
    v = md.venue_index[upd.venue]
    sym_index = md.symbol_index
    touched: set[int] = set()
    applied = dropped = 0
    if upd.snapshot:
        s = sym_index.get(upd.symbol)
        if s is None:
            return False, 0, 1
        for side in (0, 1):
            for level in range(md.depth):
                md.set_level(v, s, side, level, 0, 0)
        touched.add(s)
    for e in upd.entries:
        s_opt = sym_index.get(e.symbol)
        if s_opt is None or e.kind < 0 or (e.kind < 2 and e.level < 0):
            dropped += 1
            continue
        s = s_opt
        if e.kind == 2:
            md.apply_trade(v, s, upd.recv_ns, e.px_ticks, e.size, e.aggressor)
        elif e.action == "2":
            md.delete_level(v, s, e.kind, e.level)
            touched.add(s)
        else:
            md.set_level(v, s, e.kind, e.level, e.px_ticks, e.size)
            touched.add(s)
        applied += 1
    for s in touched:
        md.commit_book(v, s, upd.recv_ns)
    return True, applied, dropped
