"""The feature engine: one ``[V, N_FEATURES]`` row block per parent order,
computed from the market rings and the venue statistics.

Rolling columns (realized vol, ATR, trade flow) are kept incrementally. For
each (lit venue, symbol) the engine remembers how far it has read the
MarketData book and trade rings and keeps running sums over the rows in each
window: it consumes only the rows committed since its last read and evicts
those that fell out of the window, instead of rescanning ~200 rows per venue
per order. On top of
that, the symbol's market block (every market column but staleness, plus the
NBBO and depth the order and venue columns use) is cached until a ring
moves, a window row expires or the ATR second turns, so an order in a quiet
market skips it. Consequences: features see committed books (MarketData's
rule: commit once per message); ``now_ns`` must not go backwards per symbol
(if it does the state is rebuilt from the rings) and rows must not be
stamped after ``now_ns`` (they would be counted). If more rows than a ring
holds arrive between two reads, the state is rebuilt from what the ring
still holds, detected by the last row read no longer being in its slot; a
trade ring that moved by exactly its capacity between two orders is only
noticed at its next trade.

Hot path: ``compute`` reads the MarketData and VenueStats arrays through
flat memoryviews built once here (an item read is ~25 ns, numpy scalar
indexing ~100 ns), does scalar arithmetic, and writes into ``self.out``,
allocated once. See ``tests/perf/test_features_bench.py`` for figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from router.config import Config
from router.domain.orders import ParentOrder
from router.domain.types import OrdType, TimeInForce, VenueKind
from router.features.catalogue import (
    ATR_BUCKET_NS,
    ATR_BUCKETS,
    C_ADV,
    C_ATR,
    C_CROSSED,
    C_DARK,
    C_FEE,
    C_FILL,
    C_FLOW,
    C_IMB1,
    C_IMB3,
    C_IMB5,
    C_IOC,
    C_LIMDIST,
    C_LIMIT,
    C_MICRO,
    C_SHARE,
    C_SIDE,
    C_SPREAD,
    C_STALE,
    C_TOP3,
    C_TOUCH,
    C_TVOL,
    C_VOL1,
    C_VOL5,
    C_VSTALE,
    FLOW_WINDOW_NS,
    N_FEATURES,
    N_MARKET,
    N_SHARED,
    SIZE_RATIO_CAP,
    STALE_CAP_MS,
    VOL_WINDOWS_NS,
)
from router.learning.changes import PageHinkley
from router.learning.darkpool import CensoredLiquidity
from router.learning.venuestats import VenueStats
from router.market.rings import MarketData

_NAN: Final = float("nan")
_BARS: Final = 8
"""Bar slots per (venue, symbol): a power of two > ATR_BUCKETS so a slot is
``sec & 7`` and the current bucket never overwrites one still in the window."""

F32 = npt.NDArray[np.float32]


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _ints(a: np.ndarray, name: str) -> memoryview[int]:
    """Flat memoryview of an int64/int8 array that is its own C-contiguous
    block, indexed in C order ([v, s, row] -> (v * S + s) * rows + row)."""
    if not a.flags.c_contiguous:
        raise ValueError(f"MarketData.{name} must be C-contiguous")
    raw = a.data.cast("B")
    if a.dtype == np.int64:
        return raw.cast("q")
    if a.dtype == np.int8:
        return raw.cast("b")
    raise ValueError(f"MarketData.{name}: unexpected dtype {a.dtype}")


def _book(a: np.ndarray, name: str, n_symbols: int) -> tuple[memoryview[int], int, int]:
    """(flat memoryview of the block ``a`` views, offset of a[0, 0, 0], key
    stride) for a current-book array ``[V, S, depth]`` that may be a strided
    view into a packed block. Uses public numpy attributes only, so it
    follows whatever packing MarketData chooses as long as levels are
    adjacent and (v, s) collapse to one key ``k = v * S + s``."""
    root = _root(a)
    if not root.flags.c_contiguous or a.dtype != np.int64:
        raise ValueError(f"MarketData.{name} must be int64 in a C-contiguous block")
    item = a.itemsize
    off = a.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    sv, ss, sl = (st // item for st in a.strides)
    if off % item or sl != 1 or sv != n_symbols * ss:
        raise ValueError(f"MarketData.{name}: levels must be adjacent and venues outermost")
    return root.data.cast("B").cast("q"), off // item, ss


def _i64(n: int, fill: int = 0) -> tuple[npt.NDArray[np.int64], memoryview[int]]:
    a = np.full(n, fill, dtype=np.int64)
    return a, a.data.cast("B").cast("q")


def _f64(n: int) -> tuple[npt.NDArray[np.float64], memoryview[float]]:
    a = np.zeros(n, dtype=np.float64)
    return a, a.data.cast("B").cast("d")


_NEVER: Final = (1 << 63) - 1
ADV_DAY_NS: Final = 23_400 * 1_000_000_000
"""A trading day (6.5 h) for the ADV estimate."""
ADV_MIN_OBS_NS: Final = 60 * 1_000_000_000
_NO_BAR: Final = -(1 << 62)


class FeatureEngine:
    """Computes ``[V, N_FEATURES]`` for one order into ``self.out``.

    ``self.out`` is the same array on every call and is the engine's: copy it
    to keep it, never write to it (the static venue columns, fee and dark,
    are written once here and not rewritten per call).
    """

    def __init__(self, md: MarketData, stats: VenueStats, venue_fees_bps: Sequence[float],
                 adv: Mapping[str, float], default_adv: float | None = None) -> None:
        nv, ns = len(md.venues), len(md.symbols)
        if tuple(stats.venues) != tuple(md.venues):
            raise ValueError(f"VenueStats venues {stats.venues} differ from MarketData venues {md.venues}")
        if len(venue_fees_bps) != nv:
            raise ValueError(f"venue_fees_bps has {len(venue_fees_bps)} entries for {nv} venues")
        if not all(abs(f) <= 10_000.0 for f in venue_fees_bps):
            raise ValueError(f"venue_fees_bps must be finite and within +-10000 bps, got {list(venue_fees_bps)}")
        # ADV below one share is a data error, and would let size_over_adv
        # overflow float32.
        if default_adv is not None and not (1.0 <= default_adv < math.inf):
            raise ValueError(f"default_adv must be >= 1 share, got {default_adv}")
        for sym, a in adv.items():
            if not (1.0 <= a < math.inf):
                raise ValueError(f"adv[{sym!r}] must be >= 1 share, got {a}")
        self.md = md
        self._warm_s = 0
        self.stats = stats
        self.n_venues = nv
        self.n_symbols = ns
        # 0.0: no ADV known for the symbol; size_over_adv then estimates one
        # from the volume printed since start (see ``_estimated_adv``).
        self._adv = [float(adv.get(sym, default_adv or 0.0)) for sym in md.symbols]
        self._tvol: memoryview[int] = _ints(md.traded_volume, "traded_volume")
        self._tfirst: memoryview[int] = _ints(md.first_trade_ns, "first_trade_ns")
        lit = [bool(x) for x in md.lit]
        self._lit = tuple(v for v in range(nv) if lit[v])
        self._lit_k0 = tuple((v, v * ns) for v in self._lit)
        self._lit_row = tuple(lit)

        self.out: F32 = np.zeros((nv, N_FEATURES), dtype=np.float32)
        self._o: memoryview[float] = self.out.data.cast("B").cast("f")
        # Columns that never change: written here, never per call. A dark
        # venue has no book, so its touch and staleness columns stay 0.
        for v in range(nv):
            self.out[v, C_FEE] = venue_fees_bps[v]
            self.out[v, C_DARK] = 0.0 if lit[v] else 1.0

        # ---- MarketData through flat memoryviews (see the module docstring).
        self._depth = d = int(md.bid_px.shape[2])
        self._bp, self._o_bp, kb = _book(md.bid_px, "bid_px", ns)
        self._bs, self._o_bs, kb1 = _book(md.bid_sz, "bid_sz", ns)
        self._ap, self._o_ap, kb2 = _book(md.ask_px, "ask_px", ns)
        self._as, self._o_as, kb3 = _book(md.ask_sz, "ask_sz", ns)
        if not kb == kb1 == kb2 == kb3:
            raise ValueError("MarketData book arrays must share one key stride")
        self._kb = kb
        self._cb = int(md.ring_ts.shape[2])
        self._ct = int(md.trade_ts.shape[2])
        self._bts = _ints(md.book_ts, "book_ts")
        self._rts = _ints(md.ring_ts, "ring_ts")
        self._rm2 = _ints(md.ring_mid2, "ring_mid2")
        self._rh = _ints(md.ring_head, "ring_head")
        self._rc = _ints(md.ring_count, "ring_count")
        self._tts = _ints(md.trade_ts, "trade_ts")
        self._tsz = _ints(md.trade_sz, "trade_sz")
        self._tsd = _ints(md.trade_side, "trade_side")
        self._th = _ints(md.trade_head, "trade_head")
        self._tc = _ints(md.trade_count, "trade_count")
        self._levels = min(d, 5)

        # ---- rolling state per key k = v * S + s (only lit keys are used).
        nk = nv * ns
        # Book ring read position: head, count and ts of the last row read
        # (an overwrite of that row means the position was lost), mid2 of
        # that row (the next return needs it), last non-zero mid2 (carried
        # into a new bar), and when the oldest window row expires.
        self.b_head, self._b_head = _i64(nk)
        self.b_count, self._b_count = _i64(nk)
        self.b_ts, self._b_ts = _i64(nk)
        self.b_prev, self._b_prev = _i64(nk)
        self.b_valid, self._b_valid = _i64(nk)
        self.b_next, self._b_next = _i64(nk, _NEVER)
        # Windows [k, w]: ring position of the oldest row in the window, rows
        # in it, valid returns, sum r, sum r^2.
        self.w_tail, self._w_tail = _i64(nk * 2)
        self.w_rows, self._w_rows = _i64(nk * 2)
        self.w_n, self._w_n = _i64(nk * 2)
        self.w_s1, self._w_s1 = _f64(nk * 2)
        self.w_s2, self._w_s2 = _f64(nk * 2)
        # Log-return at each book-ring row (NaN: none), so eviction subtracts
        # exactly what was added even after MarketData reused the row.
        self.ret, self._ret = _f64(nk * self._cb)
        # One-second bars [k, slot]: second, high, low, last (mid2 ticks),
        # and the sum over the completed ATR buckets, cached for the second
        # it was computed in.
        self.bar_sec, self._bar_sec = _i64(nk * _BARS, _NO_BAR)
        self.bar_hi, self._bar_hi = _i64(nk * _BARS)
        self.bar_lo, self._bar_lo = _i64(nk * _BARS)
        self.bar_last, self._bar_last = _i64(nk * _BARS)
        self.atr_sec, self._atr_sec = _i64(nk, _NO_BAR)
        self.atr_val, self._atr_val = _f64(nk)
        # Trade ring read position and the 5 s window sums.
        self.t_head, self._t_head = _i64(nk)
        self.t_count, self._t_count = _i64(nk)
        self.t_ts, self._t_ts = _i64(nk)
        self.t_tail, self._t_tail = _i64(nk)
        self.t_rows, self._t_rows = _i64(nk)
        # Floats, not int64: a sum of wire sizes must not overflow a store.
        self.t_signed, self._t_signed = _f64(nk)
        self.t_vol, self._t_vol = _f64(nk)
        self.t_next, self._t_next = _i64(nk, _NEVER)
        self.sym_now, self._sym_now = _i64(ns, -(1 << 63))
        # Per-symbol market block (see _refresh) and until when it holds.
        self.mkt = np.zeros((ns, N_MARKET), dtype=np.float32)
        self._mkt: memoryview[float] = self.mkt.data.cast("B").cast("f")
        self.quote_px, self._quote_px = _i64(ns * 2)
        """NBBO bid and ask per symbol (0: empty side)."""
        self.quote_sz, self._quote_sz = _f64(ns * 4)
        """Lit size at the NBBO bid and ask, top-3 bid and ask size per symbol."""
        self.sym_until, self._sym_until = _i64(ns, -(1 << 63))
        self._row_starts = tuple(range(N_FEATURES, nv * N_FEATURES, N_FEATURES))
        self.resyncs = 0
        """Read positions rebuilt from a ring (overrun, lost position, time
        going backwards). A rising count means orders come too rarely for
        the feed rate to be read incrementally (``sor_feature_resyncs``)."""

    # ------------------------------------------------------------ rolling state

    def _check_time(self, s: int, now: int) -> None:
        if now < self._sym_now[s]:
            # Windows only slide forward: rebuild rather than un-evict.
            for _, k0 in self._lit_k0:
                self._b_count[k0 + s] = 0
                self._t_count[k0 + s] = 0
                self._b_next[k0 + s] = -(1 << 63)
                self._t_next[k0 + s] = -(1 << 63)
            self._sym_until[s] = -(1 << 63)
            self.resyncs += 1
        self._sym_now[s] = now

    def _reset_book(self, k: int, start: int) -> None:
        for w in (2 * k, 2 * k + 1):
            self._w_tail[w] = start
            self._w_rows[w] = 0
            self._w_n[w] = 0
            self._w_s1[w] = 0.0
            self._w_s2[w] = 0.0
        self._b_prev[k] = 0
        self._b_valid[k] = 0
        for j in range(k * _BARS, (k + 1) * _BARS):
            self._bar_sec[j] = _NO_BAR
        self._atr_sec[k] = _NO_BAR
        self._b_head[k] = start
        self._b_count[k] = 0
        self._b_ts[k] = 0

    def _sync_book(self, k: int, now: int) -> None:
        """Consume the book rows committed since the last read of key ``k``
        into both vol windows and the bars, then evict expired rows. One
        pass with the window state in locals: this runs per new row."""
        cb = self._cb
        rts = self._rts
        head = self._rh[k]
        cnt = self._rc[k]
        seen_head = self._b_head[k]
        seen_cnt = self._b_count[k]
        tb = k * cb
        if seen_cnt == 0 or cnt < seen_cnt:
            if seen_cnt:
                self.resyncs += 1
            seen_head = (head - cnt) % cb
            self._reset_book(k, seen_head)
            n_new = cnt
        elif cnt < cb:
            n_new = cnt - seen_cnt
        else:
            n_new = (head - seen_head) % cb
            if rts[tb + (seen_head - 1) % cb] != self._b_ts[k]:
                # The last row read was overwritten: more than a ring's worth
                # arrived. Rebuild from what the ring holds (oldest at head).
                self.resyncs += 1
                self._reset_book(k, head)
                seen_head = head
                n_new = cnt
        ret = self._ret
        w_tail = self._w_tail
        w_rows = self._w_rows
        w_n = self._w_n
        w_s1 = self._w_s1
        w_s2 = self._w_s2
        kw = 2 * k
        # Deliberate: the two vol windows are unrolled by hand (the *0 and *1
        # locals), here, in the full-ring eviction in the loop below and in
        # the expiry eviction after it. Their state stays in locals for the
        # whole pass; one helper per window would cost a call and a 6-tuple
        # back per window per sync, and a loop over the windows would read
        # and write the w_* arrays again (the module docstring and
        # tests/perf/test_features_bench.py: "book catch-up in one pass with
        # the window state in locals", busy ~40 -> ~32 us). Keep the two
        # copies in step.
        tail0 = w_tail[kw]
        rows0 = w_rows[kw]
        n0 = w_n[kw]
        a0 = w_s1[kw]
        q0 = w_s2[kw]
        tail1 = w_tail[kw + 1]
        rows1 = w_rows[kw + 1]
        n1 = w_n[kw + 1]
        a1 = w_s1[kw + 1]
        q1 = w_s2[kw + 1]
        if n_new:
            rm2 = self._rm2
            prev = self._b_prev[k]
            valid = self._b_valid[k]
            bar_sec = self._bar_sec
            bar_hi = self._bar_hi
            bar_lo = self._bar_lo
            bar_last = self._bar_last
            kb = k * _BARS
            p = seen_head
            t = 0
            lo_sec = _NEVER
            for _ in range(n_new):
                m = rm2[tb + p]
                t = rts[tb + p]
                # A window spanning the whole ring gives its oldest row up to
                # the row replacing it, before ret[] at that position is reused.
                if rows0 == cb:
                    r = ret[tb + tail0]
                    if r == r:
                        n0 -= 1
                        a0 -= r
                        q0 -= r * r
                    tail0 = tail0 + 1 if tail0 + 1 < cb else 0
                    rows0 -= 1
                if rows1 == cb:
                    r = ret[tb + tail1]
                    if r == r:
                        n1 -= 1
                        a1 -= r
                        q1 -= r * r
                    tail1 = tail1 + 1 if tail1 + 1 < cb else 0
                    rows1 -= 1
                rows0 += 1
                rows1 += 1
                if m > 0:
                    if prev > 0:
                        # mid2 ratio == mid ratio.
                        r = math.log(m / prev)
                        ret[tb + p] = r
                        n0 += 1
                        a0 += r
                        q0 += r * r
                        n1 += 1
                        a1 += r
                        q1 += r * r
                    else:
                        ret[tb + p] = _NAN
                    sec = t // ATR_BUCKET_NS
                    if sec < lo_sec:
                        lo_sec = sec
                    j = kb + (sec & (_BARS - 1))
                    if bar_sec[j] != sec:
                        # True range: the bar opens at the mid carried in.
                        op = valid if valid > 0 else m
                        bar_sec[j] = sec
                        bar_hi[j] = op
                        bar_lo[j] = op
                    if m > bar_hi[j]:
                        bar_hi[j] = m
                    if m < bar_lo[j]:
                        bar_lo[j] = m
                    bar_last[j] = m
                    valid = m
                else:
                    ret[tb + p] = _NAN
                prev = m
                p = p + 1 if p + 1 < cb else 0
            self._b_prev[k] = prev
            self._b_valid[k] = valid
            self._b_ts[k] = t
            self._b_head[k] = head
            self._b_count[k] = cnt
            if lo_sec < self._atr_sec[k]:
                # A bar before the cached second changed (late rows).
                self._atr_sec[k] = _NO_BAR

        # Evict rows that fell out of each window; tails only move forward.
        # b_next is the first time the oldest remaining row will be out.
        # Window 0, then the same for window 1 (unrolled on purpose, see above).
        nxt = _NEVER
        if rows0:
            cutoff = now - VOL_WINDOWS_NS[0]
            t = rts[tb + tail0]
            while t < cutoff:
                r = ret[tb + tail0]
                if r == r:
                    n0 -= 1
                    a0 -= r
                    q0 -= r * r
                tail0 = tail0 + 1 if tail0 + 1 < cb else 0
                rows0 -= 1
                if not rows0:
                    break
                t = rts[tb + tail0]
            if rows0:
                nxt = t + VOL_WINDOWS_NS[0] + 1
            if not n0:
                # Nothing left: drop the accumulated rounding with it.
                a0 = q0 = 0.0
        if rows1:
            cutoff = now - VOL_WINDOWS_NS[1]
            t = rts[tb + tail1]
            while t < cutoff:
                r = ret[tb + tail1]
                if r == r:
                    n1 -= 1
                    a1 -= r
                    q1 -= r * r
                tail1 = tail1 + 1 if tail1 + 1 < cb else 0
                rows1 -= 1
                if not rows1:
                    break
                t = rts[tb + tail1]
            if rows1 and t + VOL_WINDOWS_NS[1] + 1 < nxt:
                nxt = t + VOL_WINDOWS_NS[1] + 1
            if not n1:
                a1 = q1 = 0.0
        w_tail[kw] = tail0
        w_rows[kw] = rows0
        w_n[kw] = n0
        w_s1[kw] = a0
        w_s2[kw] = q0
        w_tail[kw + 1] = tail1
        w_rows[kw + 1] = rows1
        w_n[kw + 1] = n1
        w_s1[kw + 1] = a1
        w_s2[kw + 1] = q1
        self._b_next[k] = nxt

    def _sync_trades(self, k: int, now: int) -> None:
        ct = self._ct
        head = self._th[k]
        cnt = self._tc[k]
        seen_head = self._t_head[k]
        seen_cnt = self._t_count[k]
        tts = self._tts
        tsz = self._tsz
        tsd = self._tsd
        tb = k * ct
        rows = self._t_rows[k]
        n_new = 0
        rebuild = seen_cnt == 0 or cnt < seen_cnt
        if not rebuild:
            if cnt < ct:
                n_new = cnt - seen_cnt
            else:
                n_new = (head - seen_head) % ct
                rebuild = tts[tb + (seen_head - 1) % ct] != self._t_ts[k]
            if rebuild:
                self.resyncs += 1
            elif rows + n_new > ct:
                # Rows of the window were overwritten before we evicted
                # them: their sizes are gone, so recount from the ring (it
                # holds fewer trades than the window, so all of it counts).
                rebuild = True
        if rebuild:
            seen_head = (head - cnt) % ct
            self._t_tail[k] = seen_head
            rows = 0
            self._t_signed[k] = 0.0
            self._t_vol[k] = 0.0
            n_new = cnt
        if n_new:
            signed = self._t_signed[k]
            vol = self._t_vol[k]
            p = seen_head
            for _ in range(n_new):
                z = tsz[tb + p]
                vol += z
                signed += tsd[tb + p] * z
                p = p + 1 if p + 1 < ct else 0
            self._t_signed[k] = signed
            self._t_vol[k] = vol
            rows += n_new
            self._t_ts[k] = tts[tb + (head - 1) % ct]
        self._t_head[k] = head
        self._t_count[k] = cnt
        nxt = _NEVER
        if rows:
            cutoff = now - FLOW_WINDOW_NS
            tail = self._t_tail[k]
            t = tts[tb + tail]
            if t < cutoff:
                signed = self._t_signed[k]
                vol = self._t_vol[k]
                while t < cutoff:
                    z = tsz[tb + tail]
                    vol -= z
                    signed -= tsd[tb + tail] * z
                    tail = tail + 1 if tail + 1 < ct else 0
                    rows -= 1
                    if not rows:
                        break
                    t = tts[tb + tail]
                if not rows:
                    signed = vol = 0.0  # drop accumulated rounding
                self._t_tail[k] = tail
                self._t_signed[k] = signed
                self._t_vol[k] = vol
            if rows:
                nxt = t + FLOW_WINDOW_NS + 1
        self._t_rows[k] = rows
        self._t_next[k] = nxt

    def _atr_prev(self, k: int, now_sec: int) -> None:
        """Cache the sum of bar range / last over the ATR buckets before
        ``now_sec`` (-1.0: no bar in them). Those bars are complete once the
        second turns, so this runs about once a second per key; the current
        bucket is added per refresh."""
        kb = k * _BARS
        tr = 0.0
        seen = False
        for sec in range(now_sec - ATR_BUCKETS + 1, now_sec):
            j = kb + (sec & (_BARS - 1))
            if self._bar_sec[j] == sec:
                seen = True
                tr += (self._bar_hi[j] - self._bar_lo[j]) / self._bar_last[j]
        self._atr_sec[k] = now_sec
        self._atr_val[k] = tr if seen else -1.0

    # ------------------------------------------------------------------ compute

    def warm(self, now_ns: int) -> None:
        """Run ``compute`` for a one-share limit buy on the next symbol in
        turn, result unused: keeps this path's code and data in the caches
        while the router idles (see ``Router._pump``). Same effect on the
        state as an order at ``now_ns`` would have (the caches catch up), so
        it changes no later result."""
        n = len(self.md.symbols)
        if n:
            self._warm_s = (self._warm_s + 1) % n
            self.compute(self._warm_s, 1, 1, True, 0, True, now_ns)

    def compute_order(self, order: ParentOrder, now_ns: int) -> F32:
        """``compute`` for a ParentOrder (symbol looked up in MarketData)."""
        is_limit = order.ord_type is OrdType.LIMIT
        limit = order.price_ticks if is_limit and order.price_ticks is not None else 0
        return self.compute(self.md.symbol_index[order.symbol], order.side.sign, order.qty, is_limit, limit,
                            order.tif is TimeInForce.IOC, now_ns)

    def _refresh(self, s: int, now: int) -> None:
        """Catch up every lit venue of ``s`` and recompute the symbol's market
        block (the market columns but staleness, and the NBBO/depth the order
        and venue columns need), valid until a ring moves, a window row
        expires or the ATR second turns."""
        bp = self._bp
        bs = self._bs
        ap = self._ap
        as_ = self._as
        o_bp = self._o_bp
        o_bs = self._o_bs
        o_ap = self._o_ap
        o_as = self._o_as
        kbs = self._kb
        w_n = self._w_n
        w_s1 = self._w_s1
        w_s2 = self._w_s2
        bar_sec = self._bar_sec
        bar_hi = self._bar_hi
        bar_lo = self._bar_lo
        bar_last = self._bar_last
        now_sec = now // ATR_BUCKET_NS
        until = (now_sec + 1) * ATR_BUCKET_NS
        five = self._levels == 5
        bb = bbs = ba = bas = 0
        b1 = b3 = b5 = a1 = a3 = a5 = 0
        n0 = n1 = 0
        x0 = y0 = x1 = y1 = 0.0
        atr_sum = 0.0
        atr_venues = 0
        flow = vol = 0.0
        rh = self._rh
        bts = self._bts
        th = self._th
        b_head = self._b_head
        b_ts = self._b_ts
        b_next = self._b_next
        t_head = self._t_head
        t_next = self._t_next
        for _, k0 in self._lit_k0:
            k = k0 + s
            # Each slow path runs only when its ring moved or a window row is
            # due to expire. A trade ring that moved by exactly its capacity
            # since the last read looks unmoved here; the next move is caught
            # by the position check in _sync_trades.
            nxt = b_next[k]
            if rh[k] != b_head[k] or bts[k] != b_ts[k] or now >= nxt:
                self._sync_book(k, now)
                nxt = b_next[k]
            if nxt < until:
                until = nxt
            nxt = t_next[k]
            if th[k] != t_head[k] or now >= nxt:
                self._sync_trades(k, now)
                nxt = t_next[k]
            if nxt < until:
                until = nxt
            kw = 2 * k
            n0 += w_n[kw]
            x0 += w_s1[kw]
            y0 += w_s2[kw]
            n1 += w_n[kw + 1]
            x1 += w_s1[kw + 1]
            y1 += w_s2[kw + 1]
            if self._atr_sec[k] != now_sec:
                self._atr_prev(k, now_sec)
            tr = self._atr_val[k]
            j = k * _BARS + (now_sec & (_BARS - 1))
            if bar_sec[j] == now_sec:
                cur = (bar_hi[j] - bar_lo[j]) / bar_last[j]
                tr = cur if tr < 0.0 else tr + cur
            if tr >= 0.0:
                atr_sum += tr
                atr_venues += 1
            flow += self._t_signed[k]
            vol += self._t_vol[k]

            i = k * kbs
            if five:
                j = i + o_bs
                z0 = bs[j]
                z2 = z0 + bs[j + 1] + bs[j + 2]
                b1 += z0
                b3 += z2
                b5 += z2 + bs[j + 3] + bs[j + 4]
                j = i + o_as
                y = as_[j]
                w2 = y + as_[j + 1] + as_[j + 2]
                a1 += y
                a3 += w2
                a5 += w2 + as_[j + 3] + as_[j + 4]
            else:
                n3 = min(self._depth, 3)
                z0 = bs[i + o_bs]
                y = as_[i + o_as]
                b1 += z0
                a1 += y
                b3 += _levels_sum(bs, i + o_bs, n3)
                a3 += _levels_sum(as_, i + o_as, n3)
                b5 += _levels_sum(bs, i + o_bs, self._levels)
                a5 += _levels_sum(as_, i + o_as, self._levels)
            p = bp[i + o_bp]
            if p:
                if p > bb:
                    bb = p
                    bbs = z0
                elif p == bb:
                    bbs += z0
            p = ap[i + o_ap]
            if p:
                if p < ba or not ba:
                    ba = p
                    bas = y
                elif p == ba:
                    bas += y

        m = self._mkt
        r = s * N_MARKET
        if bb and ba:
            m2 = bb + ba
            m[r + C_SPREAD] = 2e4 * (ba - bb) / m2
            m[r + C_MICRO] = 2e4 * ((bb * bas + ba * bbs) / (bbs + bas) - 0.5 * m2) / m2 if bbs + bas else 0.0
            m[r + C_CROSSED] = 1.0 if bb >= ba else 0.0
        else:
            m[r + C_SPREAD] = 0.0
            m[r + C_MICRO] = 0.0
            m[r + C_CROSSED] = 0.0
        m[r + C_IMB1] = (b1 - a1) / (b1 + a1) if b1 + a1 else 0.0
        m[r + C_IMB3] = (b3 - a3) / (b3 + a3) if b3 + a3 else 0.0
        m[r + C_IMB5] = (b5 - a5) / (b5 + a5) if b5 + a5 else 0.0
        # Pooled sample variance; max() absorbs rounding below zero.
        m[r + C_VOL1] = 1e4 * math.sqrt(max(y0 - x0 * x0 / n0, 0.0) / (n0 - 1)) if n0 >= 2 else 0.0
        m[r + C_VOL5] = 1e4 * math.sqrt(max(y1 - x1 * x1 / n1, 0.0) / (n1 - 1)) if n1 >= 2 else 0.0
        m[r + C_ATR] = atr_sum * 1e4 / (ATR_BUCKETS * atr_venues) if atr_venues else 0.0
        m[r + C_FLOW] = flow / vol if vol > 0 else 0.0
        m[r + C_TVOL] = vol
        m[r + C_STALE] = 0.0  # per call, not cached
        qp = self._quote_px
        qp[2 * s] = bb
        qp[2 * s + 1] = ba
        qs = self._quote_sz
        qs[4 * s] = bbs
        qs[4 * s + 1] = bas
        qs[4 * s + 2] = b3
        qs[4 * s + 3] = a3
        self._sym_until[s] = until

    def _estimated_adv(self, s: int, now: int) -> float:
        """The symbol's daily volume as the lit venues' prints since start
        extrapolate it: shares printed / time since the first print, times
        a trading day; the time is floored at ``ADV_MIN_OBS_NS`` so the first
        prints do not read as a huge day. 0.0 before any print."""
        vol = 0
        first = -1
        for _, k0 in self._lit_k0:
            k = k0 + s
            t = self._tfirst[k]
            if t >= 0:
                vol += self._tvol[k]
                if first < 0 or t < first:
                    first = t
        if first < 0 or vol <= 0:
            return 0.0
        elapsed = now - first
        return vol * ADV_DAY_NS / (elapsed if elapsed > ADV_MIN_OBS_NS else ADV_MIN_OBS_NS)

    def compute(self, symbol_index: int, side_sign: int, qty: int, is_limit: bool, limit_ticks: int,
                is_ioc: bool, now_ns: int) -> F32:
        """Fill and return ``self.out`` (the same array every call) for one
        order on ``symbol_index``; ``side_sign`` +1 buy / -1 sell."""
        s = symbol_index
        now = now_ns
        if now < self._sym_now[s]:
            self._check_time(s, now)
        self._sym_now[s] = now
        o = self._o
        nf = N_FEATURES
        rc = self._rc
        bts = self._bts
        rh = self._rh
        th = self._th
        b_head = self._b_head
        b_ts = self._b_ts
        t_head = self._t_head

        # -------- staleness per lit venue, and whether the symbol's cached
        # market block still holds (no ring moved, nothing expired).
        valid = now < self._sym_until[s]
        stale_max = 0.0 if self._lit_k0 else STALE_CAP_MS
        for v, k0 in self._lit_k0:
            k = k0 + s
            bt = bts[k]
            if valid and (bt != b_ts[k] or rh[k] != b_head[k] or th[k] != t_head[k]):
                valid = False
            if rc[k]:
                st = (now - bt) / 1e6
                st = STALE_CAP_MS if st > STALE_CAP_MS else (st if st > 0.0 else 0.0)
            else:
                st = STALE_CAP_MS
            o[v * nf + C_VSTALE] = st
            if st > stale_max:
                stale_max = st
        if not valid:
            self._refresh(s, now)

        # -------- market columns: the symbol's block, then staleness
        r = s * N_MARKET
        o[0:N_MARKET] = self._mkt[r : r + N_MARKET]
        o[C_STALE] = stale_max

        # -------- order columns
        buy = side_sign > 0
        qs = self._quote_sz
        if buy:
            cpx = self._quote_px[2 * s + 1]
            csz = qs[4 * s + 1]
            top3 = qs[4 * s + 3]
        else:
            cpx = self._quote_px[2 * s]
            csz = qs[4 * s]
            top3 = qs[4 * s + 2]
        adv = self._adv[s] or self._estimated_adv(s, now)
        o[C_ADV] = qty / adv if adv > 0.0 else 0.0
        if top3 > 0:
            r3 = qty / top3
            o[C_TOP3] = r3 if r3 < SIZE_RATIO_CAP else SIZE_RATIO_CAP
        else:
            o[C_TOP3] = SIZE_RATIO_CAP
        o[C_SIDE] = 1.0 if buy else -1.0
        o[C_IOC] = 1.0 if is_ioc else 0.0
        if is_limit:
            o[C_LIMIT] = 1.0
            if cpx and limit_ticks > 0:
                o[C_LIMDIST] = (limit_ticks - cpx if buy else cpx - limit_ticks) * 1e4 / cpx
            else:
                o[C_LIMDIST] = 0.0
        else:
            o[C_LIMIT] = 0.0
            o[C_LIMDIST] = 0.0

        # -------- venue rows
        for r in self._row_starts:
            o[r : r + N_SHARED] = o[0:N_SHARED]
        self.stats.read_all(self.stats.bucket_of(qty), now, o, C_FILL, nf)
        kbs = self._kb
        if buy:
            pmv, smv, c_px, c_sz = self._ap, self._as, self._o_ap, self._o_as
        else:
            pmv, smv, c_px, c_sz = self._bp, self._bs, self._o_bp, self._o_bs
        for v, k0 in self._lit_k0:
            row = v * nf
            i = (k0 + s) * kbs
            if cpx and pmv[i + c_px] == cpx:
                z = smv[i + c_sz]
                o[row + C_TOUCH] = z
                o[row + C_SHARE] = z / csz
            else:
                o[row + C_TOUCH] = 0.0
                o[row + C_SHARE] = 0.0
        return self.out


def feature_engine(cfg: Config, md: MarketData, stats: VenueStats) -> FeatureEngine:
    """The feature engine of a config: ADV per symbol from
    ``symbols[].adv_shares``, estimated from the prints where it is not set."""
    adv = {s.symbol: float(s.adv_shares) for s in cfg.symbols if s.adv_shares}
    return FeatureEngine(md, stats, [v.take_fee_bps for v in cfg.venues], adv)


def market_state(cfg: Config) -> tuple[MarketData, VenueStats, FeatureEngine]:
    """The rings, venue statistics and feature engine of a config, allocated
    once. The daemon and the backtest both build them here, so both compute
    the same columns from the same parameters."""
    m = cfg.marketdata
    venues = [v.name for v in cfg.venues]
    symbols = [s.symbol for s in cfg.symbols]
    md = MarketData(venues, [v.kind is VenueKind.LIT for v in cfg.venues], symbols, depth=m.depth,
                    book_capacity=m.book_capacity, trade_capacity=m.trade_capacity)
    lc = cfg.learning
    dark = [v.kind is VenueKind.DARK for v in cfg.venues]
    detector = PageHinkley(len(venues), lc.change_delta_sd, lc.change_threshold_sd) if lc.change_detect else None
    liquidity = CensoredLiquidity(len(venues), unit=lc.dark_unit_shares, forget=lc.dark_forget)
    stats = VenueStats(venues, symbols, half_life_s=m.stats_half_life_s, detector=detector, liquidity=liquidity,
                       dark=dark, change_keep=lc.change_keep)
    return md, stats, feature_engine(cfg, md, stats)


def _levels_sum(mv: memoryview[int], i: int, n: int) -> int:
    tot = 0
    for j in range(i, i + n):
        tot += mv[j]
    return tot
