"""Live market data in preallocated numpy ring buffers.

Everything is allocated in ``__init__`` from the configured universe; applying
an update writes into existing arrays and allocates nothing that outlives the
call. Prices are int64 ticks, sizes int64 shares, timestamps int64 ns
(CLOCK_MONOTONIC, from the injected clock: nothing here reads a clock). A
price of 0 or a size of 0 marks an empty level.

Indexing: ``v`` is a venue index (``venue_index[name]``), ``s`` a symbol index
(``symbol_index[symbol]``), ``side`` 0 = bid, 1 = ask.

Layout. The public arrays (``bid_px`` ... ``ring_ask_sz``) are numpy views for
the vectorised readers in ``router.features``. Underneath, the current book is
one C-contiguous block ``[V, S, 4, depth]`` (bid px, bid sz, ask px, ask sz)
and the book ring one block ``[V, S, Cb, 4, depth]``, so a commit copies a
whole book into its ring row with a single memmove. The writers go through flat
``memoryview`` casts of those blocks with precomputed offsets: a memoryview
item read or write is a plain C store that yields a Python int, several times
cheaper than numpy scalar indexing, which builds index tuples and numpy
scalars per access (see ``tests/perf/test_marketdata_bench.py`` for figures).
The public book arrays are therefore strided views: ``bid_px[v, s]`` is
contiguous along depth, a whole array is not (``np.ascontiguousarray`` if a
consumer needs that). Do not rebind them: the memoryviews keep pointing at
the originals.

Memory: ``V * S * (Cb * (4 * depth + 2) + Ct * 3.125) * 8`` bytes, pages
touched lazily (``np.zeros``). Dark venues get rows too, so every array is
indexed by the same ``v``; their book rows stay zero, their trade rings fill.

Invariant kept by every writer: a level is either ``(px > 0, sz > 0)`` or
``(0, 0)``; readers rely on it and test the price alone. Code that writes the
public arrays directly must keep it.

Errors. Values that come off the wire (level, side, px, sz) never raise on
the hot path: a level outside ``[0, depth)``, a side other than 0/1, or a
price/size too large for int64 arithmetic drops the update and counts it in
``dropped_updates``; a size or price <= 0 empties the level. Indices and
venue kinds come from the router's own tables, so a wrong one is a
programming error and raises (``IndexError`` / ``ValueError``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

BID: Final = 0
ASK: Final = 1

STALE_NEVER: Final[int] = (1 << 63) - 1
"""``staleness_ns`` of a book that was never committed (int64 max)."""

MAX_PX_TICKS: Final[int] = (1 << 62) - 1
"""Largest accepted price: bid + ask of two of them still fits int64 (mid2)."""

REF_NONE, REF_NBBO, REF_LAST_TRADE, REF_STALE_NBBO = 0, 1, 2, 3
"""Where ``MarketData.reference2`` found its price."""
REF_NAMES: Final = ("no reference", "the NBBO mid", "the last trade", "the stale NBBO mid")

MAX_SIZE: Final[int] = (1 << 63) - 1

# Field order inside one book row of the packed blocks.
_BID_PX, _BID_SZ, _ASK_PX, _ASK_SZ = 0, 1, 2, 3
_FIELDS: Final = 4

I64 = npt.NDArray[np.int64]


def _flat_q(arr: np.ndarray) -> memoryview:
    """A 1-D int64 memoryview over a C-contiguous int64 array."""
    return arr.data.cast("B").cast("q")


class MarketData:
    """Current books, a ring of committed books, and a ring of trades per
    (venue, symbol).

    The update methods are called on the engine thread, one market-data
    message at a time; nothing here is thread-safe, by design (the engine owns
    all mutable state).
    """

    def __init__(
        self,
        venues: Sequence[str],
        lit: Sequence[bool],
        symbols: Sequence[str],
        *,
        depth: int = 5,
        book_capacity: int = 1024,
        trade_capacity: int = 4096,
    ) -> None:
        if len(venues) != len(lit):
            raise ValueError(f"venues ({len(venues)}) and lit ({len(lit)}) differ in length")
        if not venues or not symbols:
            raise ValueError("MarketData needs at least one venue and one symbol")
        if len(set(venues)) != len(venues):
            raise ValueError(f"duplicate venue names: {list(venues)}")
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"duplicate symbols: {list(symbols)}")
        for name, val in (("depth", depth), ("book_capacity", book_capacity), ("trade_capacity", trade_capacity)):
            if val < 1:
                raise ValueError(f"{name} must be >= 1, got {val}")

        self.venues: tuple[str, ...] = tuple(venues)
        self.symbols: tuple[str, ...] = tuple(symbols)
        self.depth: int = depth
        self.book_capacity: int = book_capacity
        self.trade_capacity: int = trade_capacity
        self.venue_index: dict[str, int] = {n: i for i, n in enumerate(self.venues)}
        self.symbol_index: dict[str, int] = {n: i for i, n in enumerate(self.symbols)}
        self.lit: npt.NDArray[np.bool_] = np.array([bool(x) for x in lit], dtype=np.bool_)
        self.dropped_updates: int = 0
        """Wire updates ignored: level outside [0, depth), side not 0/1, or a
        price/size beyond int64 arithmetic; also trades with px or sz <= 0."""

        nv, ns, d, cb, ct = len(self.venues), len(self.symbols), depth, book_capacity, trade_capacity
        i64 = np.int64

        self._book = np.zeros((nv, ns, _FIELDS, d), dtype=i64)
        self.bid_px: I64 = self._book[:, :, _BID_PX, :]
        self.bid_sz: I64 = self._book[:, :, _BID_SZ, :]
        self.ask_px: I64 = self._book[:, :, _ASK_PX, :]
        self.ask_sz: I64 = self._book[:, :, _ASK_SZ, :]
        self.book_ts: I64 = np.zeros((nv, ns), dtype=i64)

        self._ring = np.zeros((nv, ns, cb, _FIELDS, d), dtype=i64)
        self.ring_bid_px: I64 = self._ring[:, :, :, _BID_PX, :]
        self.ring_bid_sz: I64 = self._ring[:, :, :, _BID_SZ, :]
        self.ring_ask_px: I64 = self._ring[:, :, :, _ASK_PX, :]
        self.ring_ask_sz: I64 = self._ring[:, :, :, _ASK_SZ, :]
        self.ring_ts: I64 = np.zeros((nv, ns, cb), dtype=i64)
        self.ring_mid2: I64 = np.zeros((nv, ns, cb), dtype=i64)
        self.ring_head: I64 = np.zeros((nv, ns), dtype=i64)
        self.ring_count: I64 = np.zeros((nv, ns), dtype=i64)

        self.trade_ts: I64 = np.zeros((nv, ns, ct), dtype=i64)
        self.trade_px: I64 = np.zeros((nv, ns, ct), dtype=i64)
        self.trade_sz: I64 = np.zeros((nv, ns, ct), dtype=i64)
        self.trade_side: npt.NDArray[np.int8] = np.zeros((nv, ns, ct), dtype=np.int8)
        self.trade_head: I64 = np.zeros((nv, ns), dtype=i64)
        self.trade_count: I64 = np.zeros((nv, ns), dtype=i64)
        self.traded_volume: I64 = np.zeros((nv, ns), dtype=i64)
        """Shares printed per (venue, symbol) since start (the rings forget; this does not)."""
        self.first_trade_ns: I64 = np.full((nv, ns), -1, dtype=i64)
        """When the first print of each (venue, symbol) arrived; -1: none yet."""

        # Hot-path state: plain ints and flat memoryviews, so the writers do
        # integer arithmetic and C stores only.
        self._nv = nv
        self._ns = ns
        self._row = _FIELDS * d
        self._lit_row: list[bool] = [bool(x) for x in self.lit]
        self._lit_venues: tuple[int, ...] = tuple(v for v in range(nv) if self._lit_row[v])
        # Offset of venue v's book for symbol 0; add s * row for symbol s.
        self._lit_bases: tuple[int, ...] = tuple(v * ns * self._row for v in self._lit_venues)
        self._lit_pairs: tuple[tuple[int, int], ...] = tuple(zip(self._lit_venues, self._lit_bases, strict=True))
        # [v][s] -> v * S + s. Exact dicts, not range checks: one specialised
        # lookup validates both indices (a negative one would wrap silently in
        # a list) and, for _lit_k, which leaves dark venues out, the kind too.
        # The writers catch KeyError at zero cost until it is raised.
        self._all_k: dict[int, dict[int, int]] = {v: {s: v * ns + s for s in range(ns)} for v in range(nv)}
        self._lit_k: dict[int, dict[int, int]] = {v: self._all_k[v] for v in self._lit_venues}
        self._bk = _flat_q(self._book)
        self._rg = _flat_q(self._ring)
        self._zero_row = _flat_q(np.zeros(self._row, dtype=i64))
        self._bts = _flat_q(self.book_ts)
        self._rts = _flat_q(self.ring_ts)
        self._rmid2 = _flat_q(self.ring_mid2)
        self._rhead = _flat_q(self.ring_head)
        self._rcount = _flat_q(self.ring_count)
        self._tts = _flat_q(self.trade_ts)
        self._tpx = _flat_q(self.trade_px)
        self._tsz = _flat_q(self.trade_sz)
        self._tside = self.trade_side.data.cast("B").cast("b")
        self._thead = _flat_q(self.trade_head)
        self._tcount = _flat_q(self.trade_count)
        self._tvol = _flat_q(self.traded_volume)
        self._tfirst = _flat_q(self.first_trade_ns)

    # ------------------------------------------------------------ checks

    def _bad_index(self, v: int, s: int) -> Exception:
        # Runs only once a table lookup has failed: says which mistake it was.
        if not (0 <= v < self._nv and 0 <= s < self._ns):
            return IndexError(f"venue index {v} / symbol index {s} outside [0, {self._nv}) x [0, {self._ns})")
        return ValueError(f"venue {self.venues[v]!r} is dark: it has no book")

    def _key(self, v: int, s: int) -> int:
        try:
            return self._all_k[v][s]
        except KeyError:
            raise self._bad_index(v, s) from None

    @staticmethod
    def _check_side(side: int) -> None:
        if side != 0 and side != 1:
            raise ValueError(f"side must be 0 (bid) or 1 (ask), got {side!r}")

    # ------------------------------------------------------------ writers

    def set_level(self, v: int, s: int, side: int, level: int, px: int, sz: int) -> None:
        """Change one level of the current book (no ring write: ``commit_book``
        after the batch). ``sz <= 0`` or ``px <= 0`` empties the level."""
        # The key lookup and the level/side check are inlined here and in
        # delete_level on purpose, not moved into a shared helper: both run
        # once per market-data entry, and one more Python call would be a
        # sizeable share of set_level's ~315 ns (tests/perf/
        # test_marketdata_bench.py). Keep the two copies in step.
        try:
            k = self._lit_k[v][s]
        except KeyError:
            raise self._bad_index(v, s) from None
        d = self.depth
        if not (0 <= level < d and (side == 0 or side == 1)):
            self.dropped_updates += 1
            return
        i = (k * _FIELDS + 2 * side) * d + level
        bk = self._bk
        if 0 < px <= MAX_PX_TICKS and 0 < sz <= MAX_SIZE:
            bk[i] = px
            bk[i + d] = sz
        elif px <= 0 or sz <= 0:
            bk[i] = 0
            bk[i + d] = 0
        else:
            self.dropped_updates += 1

    def delete_level(self, v: int, s: int, side: int, level: int) -> None:
        """FIX MDUpdateAction=2: remove ``level``, shift deeper levels up one
        and empty the deepest (the venue refills it with a later New)."""
        # Same lookup and checks as set_level, inlined (per entry; see there).
        try:
            k = self._lit_k[v][s]
        except KeyError:
            raise self._bad_index(v, s) from None
        d = self.depth
        if not (0 <= level < d and (side == 0 or side == 1)):
            self.dropped_updates += 1
            return
        o = (k * _FIELDS + 2 * side) * d
        bk = self._bk
        # memoryview slice assignment uses memmove, so the overlap is safe.
        bk[o + level : o + d - 1] = bk[o + level + 1 : o + d]
        bk[o + d + level : o + 2 * d - 1] = bk[o + d + level + 1 : o + 2 * d]
        bk[o + d - 1] = 0
        bk[o + 2 * d - 1] = 0

    def commit_book(self, v: int, s: int, ts_ns: int) -> None:
        """Copy the current book into the ring (one row), set ``book_ts`` and
        the row's ``ring_mid2``. Call once per market-data message, after its
        entries are applied, so the ring never holds a half-applied book."""
        try:
            k = self._lit_k[v][s]
        except KeyError:
            raise self._bad_index(v, s) from None
        # Inlined rather than shared with apply_book/clear_book (which call
        # this method): a Python call is ~10% of an update.
        cb = self.book_capacity
        row = self._row
        h = self._rhead[k]
        src = k * row
        dst = (k * cb + h) * row
        bk = self._bk
        self._rg[dst : dst + row] = bk[src : src + row]
        bid = bk[src]
        ask = bk[src + 2 * self.depth]
        r = k * cb + h
        self._rmid2[r] = bid + ask if bid and ask else 0
        self._rts[r] = ts_ns
        self._bts[k] = ts_ns
        h += 1
        self._rhead[k] = 0 if h == cb else h
        n = self._rcount[k]
        if n < cb:
            self._rcount[k] = n + 1

    def apply_book(
        self,
        v: int,
        s: int,
        ts_ns: int,
        bid_px: Sequence[int],
        bid_sz: Sequence[int],
        ask_px: Sequence[int],
        ask_sz: Sequence[int],
    ) -> None:
        """Full snapshot (MarketDataSnapshotFullRefresh), best level first,
        then commit. Levels beyond ``depth`` are truncated (routine when the
        venue publishes deeper than we keep, so not counted); missing deeper
        levels are emptied. Levels are stored as sent, unsorted or not."""
        try:
            k = self._lit_k[v][s]
        except KeyError:
            raise self._bad_index(v, s) from None
        if len(bid_px) != len(bid_sz) or len(ask_px) != len(ask_sz):
            raise ValueError(
                f"snapshot px/sz lengths differ: bid {len(bid_px)}/{len(bid_sz)}, ask {len(ask_px)}/{len(ask_sz)}"
            )
        o = k * self._row
        self._fill_side(o, bid_px, bid_sz)
        self._fill_side(o + 2 * self.depth, ask_px, ask_sz)
        self.commit_book(v, s, ts_ns)

    def _fill_side(self, o: int, pxs: Sequence[int], szs: Sequence[int]) -> None:
        d = self.depth
        bk = self._bk
        n = len(pxs)
        if n > d:
            n = d
        for i in range(n):
            px = pxs[i]
            sz = szs[i]
            if 0 < px <= MAX_PX_TICKS and 0 < sz <= MAX_SIZE:
                bk[o + i] = px
                bk[o + d + i] = sz
            else:
                if px > 0 and sz > 0:  # too large for int64 arithmetic
                    self.dropped_updates += 1
                bk[o + i] = 0
                bk[o + d + i] = 0
        if n < d:
            zero = self._zero_row
            bk[o + n : o + d] = zero[: d - n]
            bk[o + d + n : o + 2 * d] = zero[: d - n]

    def clear_book(self, v: int, s: int, ts_ns: int) -> None:
        """Empty the book and commit it (venue disconnected, trading halted),
        so readers see an empty book rather than the last, now stale, one. A
        no-op on a dark venue, which has no book, so callers may clear every
        venue of a dropped session without checking its kind."""
        k = self._key(v, s)
        if not self._lit_row[v]:
            return
        o = k * self._row
        self._bk[o : o + self._row] = self._zero_row
        self.commit_book(v, s, ts_ns)

    def apply_trade(self, v: int, s: int, ts_ns: int, px: int, sz: int, side: int) -> None:
        """Append a trade print (dark venues too: their prints are the only
        market data they have). ``side``: +1 buyer aggressor, -1 seller,
        anything else is stored as 0 (unknown). A print with px or sz <= 0
        (or beyond int64 arithmetic) is dropped and counted."""
        try:
            k = self._all_k[v][s]
        except KeyError:
            raise self._bad_index(v, s) from None
        if not (0 < px <= MAX_PX_TICKS and 0 < sz <= MAX_SIZE):
            self.dropped_updates += 1
            return
        ct = self.trade_capacity
        h = self._thead[k]
        r = k * ct + h
        self._tts[r] = ts_ns
        self._tpx[r] = px
        self._tsz[r] = sz
        self._tside[r] = side if side == 1 or side == -1 else 0
        h += 1
        self._thead[k] = 0 if h == ct else h
        n = self._tcount[k]
        if n < ct:
            self._tcount[k] = n + 1
        self._tvol[k] += sz
        if self._tfirst[k] < 0:
            self._tfirst[k] = ts_ns

    # ------------------------------------------------------------ readers

    def best(self, v: int, s: int, side: int) -> tuple[int, int]:
        """(px, sz) of level 0 of the current book; (0, 0) when empty or dark."""
        try:
            k = self._all_k[v][s]
        except KeyError:
            raise self._bad_index(v, s) from None
        if side != 0 and side != 1:
            self._check_side(side)
        d = self.depth
        i = (k * _FIELDS + 2 * side) * d
        return self._bk[i], self._bk[i + d]

    def levels(self, v: int, s: int, side: int) -> list[tuple[int, int]]:
        """(px, sz) of each non-empty level of venue v's current book on
        ``side``, best first; [] for a dark venue."""
        k = self._lit_k.get(v, {}).get(s)
        if k is None:
            if v not in self._all_k or s not in self._all_k[v]:
                raise self._bad_index(v, s)
            return []
        self._check_side(side)
        d = self.depth
        i = (k * _FIELDS + 2 * side) * d
        bk = self._bk
        return [(bk[i + j], bk[i + d + j]) for j in range(d) if bk[i + j] > 0 and bk[i + d + j] > 0]

    def mid2(self, v: int, s: int) -> int:
        """bid + ask of venue v's current level 0 (2 * mid); 0 if one-sided."""
        i = self._key(v, s) * self._row
        bid = self._bk[i]
        ask = self._bk[i + 2 * self.depth]
        return bid + ask if bid and ask else 0

    def nbbo(self, s: int) -> tuple[int, int, int, int]:
        """(bid px, bid size, ask px, ask size) over lit venues' level 0; the
        size is the total across venues quoting that price. 0s for an empty
        side. A crossed or locked result is returned as is: see ``crossed``."""
        if not 0 <= s < self._ns:
            raise self._bad_index(0, s)
        bk = self._bk
        d = self.depth
        so = s * self._row
        bb = bbs = ba = bas = 0
        for base in self._lit_bases:
            i = base + so
            p = bk[i]
            if p:
                if p > bb:
                    bb = p
                    bbs = bk[i + d]
                elif p == bb:
                    bbs += bk[i + d]
            p = bk[i + 2 * d]
            if p:
                if p < ba or not ba:
                    ba = p
                    bas = bk[i + 3 * d]
                elif p == ba:
                    bas += bk[i + 3 * d]
        return bb, bbs, ba, bas

    def crossed(self, s: int) -> bool:
        """True when the consolidated book is crossed or locked (best bid >=
        best ask across lit venues, both sides present): prices are suspect,
        so features and routing should not trust the midpoint."""
        bb, _, ba, _ = self.nbbo(s)
        return bool(bb and ba and bb >= ba)

    def touch_share(self, s: int, side: int, out: npt.NDArray[np.float64]) -> None:
        """Fill ``out`` (float64 ``[V]``; all of it is overwritten) with each
        venue's share of the displayed size at the NBBO price on ``side``: 0
        for dark venues and venues away from the touch, all 0 when the side
        is empty. Allocates nothing."""
        if not 0 <= s < self._ns:
            raise self._bad_index(0, s)
        if side != 0 and side != 1:
            self._check_side(side)
        bk = self._bk
        d = self.depth
        o = s * self._row + 2 * side * d
        best = tot = 0
        for base in self._lit_bases:
            i = base + o
            p = bk[i]
            if not p:
                continue
            if p == best:
                tot += bk[i + d]
            elif not best or (p > best if side == 0 else p < best):
                best = p
                tot = bk[i + d]
        out.fill(0.0)
        if not tot:
            return
        for v, base in self._lit_pairs:
            i = base + o
            if bk[i] == best:
                out[v] = bk[i + d] / tot

    def depth_size(self, s: int, side: int, levels: int) -> int:
        """Total displayed size in each lit venue's top ``levels`` levels
        (clamped to ``depth``), whatever their prices."""
        if not 0 <= s < self._ns:
            raise self._bad_index(0, s)
        self._check_side(side)
        d = self.depth
        n = min(max(levels, 0), d)
        bk = self._bk
        o = s * self._row + (2 * side + 1) * d
        tot = 0
        for base in self._lit_bases:
            i = base + o
            tot += sum(bk[i : i + n])
        return tot

    def consolidated_mid2(self, s: int) -> int:
        """NBBO bid + ask (2 * mid, exact in ticks); 0 if either side is empty."""
        bb, _, ba, _ = self.nbbo(s)
        return bb + ba if bb and ba else 0

    def reference2(self, s: int, now_ns: int, stale_ns: int) -> tuple[int, int]:
        """The price pre-trade risk measures an order against, doubled (so a
        mid stays whole ticks), and where it came from: ``(mid2, REF_NBBO)``
        while the NBBO is two-sided and some lit book was committed within
        ``stale_ns``; else ``(2 * px, REF_LAST_TRADE)`` of the latest print
        on any venue; else ``(mid2, REF_STALE_NBBO)`` of a stale two-sided
        NBBO; else ``(0, REF_NONE)``. One pass over the lit books (the NBBO
        and the newest commit together); allocates nothing but the tuple."""
        if not 0 <= s < self._ns:
            raise self._bad_index(0, s)
        bk, bts, rcount = self._bk, self._bts, self._rcount
        d2 = 2 * self.depth
        so = s * self._row
        ns = self._ns
        bb = ba = 0
        newest = -1
        for v, base in self._lit_pairs:
            i = base + so
            p = bk[i]
            if p > bb:
                bb = p
            p = bk[i + d2]
            if p and (p < ba or not ba):
                ba = p
            k = v * ns + s
            if rcount[k] and bts[k] > newest:
                newest = bts[k]
        mid2 = bb + ba if bb and ba else 0
        if mid2 and newest >= 0 and now_ns - newest <= stale_ns:
            return mid2, REF_NBBO
        ct = self.trade_capacity
        best_ts = best_px = -1
        for v in range(self._nv):
            k = v * ns + s
            if self._tcount[k]:
                h = self._thead[k]
                r = k * ct + (h - 1 if h else ct - 1)
                if self._tts[r] > best_ts:
                    best_ts = self._tts[r]
                    best_px = self._tpx[r]
        if best_px > 0:
            return 2 * best_px, REF_LAST_TRADE
        if mid2:
            return mid2, REF_STALE_NBBO
        return 0, REF_NONE

    def staleness_ns(self, v: int, s: int, now_ns: int) -> int:
        """now - ts of the last commit; ``STALE_NEVER`` if never committed.
        "Never" is judged by the ring count, not ``book_ts == 0``, so a
        simulated clock starting at 0 still works. Dark venues: STALE_NEVER."""
        k = self._key(v, s)
        if not self._rcount[k]:
            return STALE_NEVER
        return now_ns - self._bts[k]

    def mid2_series(self, v: int, s: int, out_ts: I64, out_mid2: I64) -> int:
        """Copy the book ring's (ts, mid2) rows, oldest first, into the
        caller's arrays (len >= book_capacity, so a too-small buffer fails on
        the first call, not when the ring fills). Returns the row count; rows
        with mid2 == 0 (one-sided books) are included."""
        k = self._key(v, s)
        cb = self.book_capacity
        if len(out_ts) < cb or len(out_mid2) < cb:
            raise ValueError(f"output arrays need len >= {cb}, got {len(out_ts)} and {len(out_mid2)}")
        n = self._rcount[k]
        start = (self._rhead[k] - n) % cb
        first = min(n, cb - start)
        ts = self.ring_ts[v, s]
        m2 = self.ring_mid2[v, s]
        out_ts[:first] = ts[start : start + first]
        out_mid2[:first] = m2[start : start + first]
        out_ts[first:n] = ts[: n - first]
        out_mid2[first:n] = m2[: n - first]
        return n

    def trade_series(
        self, v: int, s: int, out_ts: I64, out_px: I64, out_sz: I64, out_side: npt.NDArray[np.int8]
    ) -> int:
        """Copy the trade ring oldest first into the caller's arrays (len >=
        trade_capacity); returns the count."""
        k = self._key(v, s)
        ct = self.trade_capacity
        if min(len(out_ts), len(out_px), len(out_sz), len(out_side)) < ct:
            raise ValueError(f"output arrays need len >= {ct}")
        n = self._tcount[k]
        start = (self._thead[k] - n) % ct
        first = min(n, ct - start)
        for src, dst in ((self.trade_ts, out_ts), (self.trade_px, out_px), (self.trade_sz, out_sz),
                         (self.trade_side, out_side)):
            row = src[v, s]
            dst[:first] = row[start : start + first]
            dst[first:n] = row[: n - first]
        return n
