"""The router's own child-order outcomes per venue, decayed in time.

Market data says what a venue displays; only our own children say what it
delivers: how much of what we send fills, how fast, how often it leaves a
remainder, and what the price does after we trade there (markouts). These
are the venue-quality inputs of the feature vector.

Every statistic is an exponentially time-decayed mean: an observation's
weight halves every ``half_life_s`` so the numbers follow regime changes (a
venue that stops filling, a pool that starts leaking) within minutes
instead of averaging over the whole day: at time ``now`` an observation made
at ``t`` weighs ``2 ** (-(now - t) / half_life)``.

Decay is lazy and uses "forward decay": an observation at ``t`` is added with
weight ``2 ** ((t - t0) / half_life)`` against a shared base time ``t0``, and
a read at ``now`` multiplies every sum by ``g = 2 ** (-(now - t0) / half_life)``.
That is exactly the per-cell "multiply by 2 ** (-(now - last) / half_life)
before adding" scheme, but one ``exp`` serves every venue and bucket of a
read (the feature engine reads all venues per order), reads never mutate,
and an observation booked late (``t`` before an earlier one) still gets its
own weight. When a weight would pass 2**64 every sum is rescaled and ``t0``
moves (every ~64 half-lives, so ~5 h at the default), which keeps the sums
finite.

Each mean is shrunk toward a prior worth ``prior_weight`` pseudo-observations
(Bayesian average): with no data a venue reads exactly the prior, and one
lucky child cannot make a venue look perfect. Weights are in units of
*observations* (one child, one fill), never shares, so the prior's weight
is comparable whatever the order sizes.

Markout sign convention (one definition for all horizons)::

    markout_bps = side_sign * (mid_after - fill_px) / fill_px * 1e4

``side_sign`` is +1 for a buy, -1 for a sell. Positive means the mid moved in
our favour after the fill (we bought and it went up). Adverse selection and
information leakage show up as NEGATIVE markouts. ``mid_after`` is the mid
when ``update_markouts`` resolves the entry, which is at or after it is due:
the caller runs it from the market-data or timer path, so the lateness is
bounded by that cadence.

All state lives in numpy arrays allocated in ``__init__``; the hot path reads
and writes them through flat memoryviews (about 3x faster than numpy scalar
indexing) and allocates nothing that outlives a call.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Sequence
from itertools import pairwise

import numpy as np

from router.learning.changes import STREAM_FILL, STREAM_MARKOUT, PageHinkley
from router.learning.darkpool import CensoredLiquidity

MARKOUT_HORIZONS_NS: tuple[int, ...] = (1_000_000_000, 5_000_000_000, 250_000_000)
"""Markout horizons: index 0 is 1 s after the fill, index 1 is 5 s (the
features' two), index 2 is 250 ms, which the change detector watches: a
pool that starts leaking moves the mid at once, and by 1 s the move is
diluted by the market's own noise and the impact's decay."""
DETECT_HORIZON = 2

N_HORIZONS = len(MARKOUT_HORIZONS_NS)

N_STATS = 5
"""Values ``read_all`` writes per venue, in this order."""
STAT_FILL_RATE = 0
STAT_TIME_TO_FILL_MS = 1
STAT_PARTIAL_FREQ = 2
STAT_MARKOUT_1S_BPS = 3
STAT_MARKOUT_5S_BPS = 4

_LN2 = math.log(2.0)
_REBASE_EXP = 64.0
"""Rescale the sums once a new observation's weight would exceed 2**64."""


def _flat_f(a: np.ndarray) -> memoryview[float]:
    """A 1-D float64 memoryview over ``a``'s storage (shared, not copied)."""
    assert a.flags.c_contiguous and a.dtype == np.float64
    return a.data.cast("B").cast("d")


def _flat_i(a: np.ndarray) -> memoryview[int]:
    """A 1-D int64 memoryview over ``a``'s storage (shared, not copied)."""
    assert a.flags.c_contiguous and a.dtype == np.int64
    return a.data.cast("B").cast("q")


class VenueStats:
    """Decayed per-venue outcome statistics of our own child orders.

    Size buckets split children by quantity at ``size_edges``: with the
    default ``(200, 1000)``, bucket 0 is qty < 200, 1 is 200 <= qty < 1000
    and 2 is qty >= 1000, because a venue that fills 100 shares reliably may
    not fill 5000.
    """

    def __init__(
        self,
        venues: Sequence[str],
        symbols: Sequence[str],
        *,
        half_life_s: float = 300.0,
        size_edges: Sequence[float] = (200.0, 1000.0),
        prior_weight: float = 2.0,
        prior_fill_rate: float = 0.5,
        prior_time_to_fill_ms: float = 100.0,
        prior_partial_freq: float = 0.0,
        prior_markout_bps: float = 0.0,
        markout_capacity: int = 4096,
        detector: PageHinkley | None = None,
        liquidity: CensoredLiquidity | None = None,
        dark: Sequence[bool] = (),
        change_keep: float = 0.1,
    ) -> None:
        if not (half_life_s > 0 and math.isfinite(half_life_s)):
            raise ValueError(f"half_life_s must be positive, got {half_life_s}")
        if not (prior_weight > 0 and math.isfinite(prior_weight)):
            # A prior is what a venue with no data reads, so it needs weight.
            raise ValueError(f"prior_weight must be > 0, got {prior_weight}")
        if markout_capacity <= 0:
            raise ValueError(f"markout_capacity must be positive, got {markout_capacity}")
        edges = tuple(float(e) for e in size_edges)
        if any(b <= a for a, b in pairwise(edges)):
            raise ValueError(f"size_edges must be strictly increasing, got {edges}")
        priors = (prior_fill_rate, prior_time_to_fill_ms, prior_partial_freq, prior_markout_bps)
        if not all(math.isfinite(p) for p in priors):
            raise ValueError("priors must be finite")
        self.venues: tuple[str, ...] = tuple(venues)
        self.symbols: tuple[str, ...] = tuple(symbols)
        self.venue_index: dict[str, int] = {n: i for i, n in enumerate(self.venues)}
        self.symbol_index: dict[str, int] = {n: i for i, n in enumerate(self.symbols)}
        self.size_edges: tuple[float, ...] = edges
        self.n_buckets = len(edges) + 1
        self.half_life_s = float(half_life_s)
        self.prior_weight = float(prior_weight)
        self.prior_fill_rate = float(prior_fill_rate)
        self.prior_time_to_fill_ms = float(prior_time_to_fill_ms)
        self.prior_partial_freq = float(prior_partial_freq)
        self.prior_markout_bps = float(prior_markout_bps)
        # ln 2 per ns of age, so a weight is one exp() of a product.
        self._k = _LN2 / (self.half_life_s * 1e9)
        self._rebase_ns = _REBASE_EXP * self.half_life_s * 1e9
        self.t0_ns = 0
        """Base time of the forward-decay weights (see the module docstring)."""
        self._fresh = True
        """No observation yet: the first one sets ``t0_ns`` to its own time."""

        nv, nb = len(self.venues), self.n_buckets
        # Children outcome sums per [venue, bucket], forward-decay weighted.
        self.child_w = np.zeros((nv, nb))
        """Number of finished children."""
        self.filled_w = np.zeros((nv, nb))
        """Sum of filled/qty (each child contributes 0..1)."""
        self.partial_w = np.zeros((nv, nb))
        """Number of children that ended partially filled."""
        self.ttf_w = np.zeros((nv, nb))
        """Number of children with a first fill (the time-to-fill weight)."""
        self.ttf_sum_ms = np.zeros((nv, nb))
        """Sum of first-fill latency in ms."""
        # Markout sums per [venue, horizon].
        self.markout_w = np.zeros((nv, N_HORIZONS))
        self.markout_sum_bps = np.zeros((nv, N_HORIZONS))
        self._sums = (self.child_w, self.filled_w, self.partial_w, self.ttf_w, self.ttf_sum_ms,
                      self.markout_w, self.markout_sum_bps)

        # Pending markouts: one FIFO ring per horizon. Fills arrive in time
        # order, so within one horizon the due times are ordered too and
        # resolving is a pop from the head while due.
        cap = int(markout_capacity)
        self.markout_capacity = cap
        self.pend_due_ns = np.zeros((N_HORIZONS, cap), dtype=np.int64)
        self.pend_venue = np.zeros((N_HORIZONS, cap), dtype=np.int64)
        self.pend_symbol = np.zeros((N_HORIZONS, cap), dtype=np.int64)
        self.pend_sign = np.zeros((N_HORIZONS, cap), dtype=np.int64)
        self.pend_px = np.zeros((N_HORIZONS, cap), dtype=np.int64)
        self._pend_head = [0] * N_HORIZONS
        """Ring position of the oldest pending entry per horizon."""
        self._pend_count = [0] * N_HORIZONS
        self.markouts_dropped = 0
        """Pending markouts overwritten because the ring was full (oldest first)."""
        self.markouts_skipped = 0
        """Due markouts discarded because the symbol had no two-sided mid."""
        self.markouts_resolved = 0

        self._cw = _flat_f(self.child_w)
        self._fw = _flat_f(self.filled_w)
        self._pw = _flat_f(self.partial_w)
        self._tw = _flat_f(self.ttf_w)
        self._ts = _flat_f(self.ttf_sum_ms)
        self._mw = _flat_f(self.markout_w)
        self._ms = _flat_f(self.markout_sum_bps)
        self._pdue = _flat_i(self.pend_due_ns)
        self._pv = _flat_i(self.pend_venue)
        self._ps = _flat_i(self.pend_symbol)
        self._psg = _flat_i(self.pend_sign)
        self._ppx = _flat_i(self.pend_px)
        self._scratch = np.zeros(nv * N_STATS)
        self._sc = _flat_f(self._scratch)

        # The online learners (router.learning.changes, .darkpool): fed by
        # the same outcomes, so replaying the journal rebuilds them too.
        if not 0.0 <= change_keep < 1.0:
            raise ValueError(f"change_keep must be in [0, 1), got {change_keep}")
        self.detector = detector
        self.liquidity = liquidity
        self.change_keep = float(change_keep)
        self.dark: tuple[bool, ...] = tuple(dark) if dark else (False,) * nv
        # Only the pools are watched: a lit venue's changes show in its
        # book, and its markouts (taking the spread, several fills per
        # sweep) raised false alarms that cost more than they caught.
        self._watch = [detector is not None and d for d in self.dark]
        self.changed_ns = [0] * nv
        """When each venue's last change was detected (0: never)."""
        self.last_change_ns = 0
        """The latest of ``changed_ns``."""
        self.changes = 0

    # ------------------------------------------------------------- helpers

    def bucket_of(self, qty: float) -> int:
        """Size bucket of a child quantity: the number of edges <= qty."""
        return bisect_right(self.size_edges, qty)

    def _weight(self, t_ns: int) -> float:
        """Forward-decay weight of an observation at ``t_ns``, rebasing first
        if it would get too large (or on the first observation)."""
        dt = t_ns - self.t0_ns
        if self._fresh or dt > self._rebase_ns:
            if not self._fresh:
                f = math.exp(-self._k * dt)
                for a in self._sums:
                    a *= f
            self._fresh = False
            self.t0_ns = t_ns
            return 1.0
        # A very late observation (far before t0) just weighs ~0.
        return math.exp(self._k * dt)

    # ------------------------------------------------------------- writers

    def record_child(self, v: int, qty: int, filled_qty: int, sent_ns: int, first_fill_ns: int | None,
                     partial: bool, now_ns: int) -> None:
        """Book one finished child (filled, canceled or expired) at ``now_ns``.

        ``partial`` is whether it ended with 0 < filled < qty (the caller
        knows; it is not re-derived so a venue's own notion can be used). A
        child with qty <= 0 is ignored: nothing was asked of the venue.
        """
        if qty <= 0:
            return
        frac = filled_qty / qty
        if self.liquidity is not None and self.dark[v]:
            self.liquidity.observe(v, qty, filled_qty)
        if self.detector is not None and self._watch[v] and self.detector.observe(v, STREAM_FILL, frac):
            self.forget(v, now_ns)
        w = self._weight(now_ns)
        i = v * self.n_buckets + bisect_right(self.size_edges, qty)
        self._cw[i] += w
        self._fw[i] += w * (0.0 if frac < 0.0 else (1.0 if frac > 1.0 else frac))
        if partial:
            self._pw[i] += w
        if filled_qty > 0 and first_fill_ns is not None:
            ttf = first_fill_ns - sent_ns
            self._tw[i] += w
            if ttf > 0:
                self._ts[i] += w * (ttf / 1e6)

    def record_fill(self, v: int, s: int, side_sign: int, px_ticks: int, qty: int, ts_ns: int) -> None:
        """Queue the markouts of one fill, due at ``ts + 1 s`` and ``ts + 5 s``
        (and ``ts + 250 ms`` at a venue the change detector watches).

        ``qty`` is accepted for the journal's sake but markouts are weighted
        per fill, not per share, to stay in the same units as the prior. When
        a ring is full its oldest pending entry is dropped and counted.
        """
        if px_ticks <= 0 or side_sign == 0 or qty <= 0:
            return
        cap = self.markout_capacity
        sign = 1 if side_sign > 0 else -1
        # The detector's horizon only for the venues it watches: no timer
        # 250 ms after every fill where nothing reads the markout.
        for h in range(N_HORIZONS if self._watch[v] else DETECT_HORIZON):
            count = self._pend_count[h]
            head = self._pend_head[h]
            if count == cap:
                head = head + 1 if head + 1 < cap else 0
                self._pend_head[h] = head
                count -= 1
                self.markouts_dropped += 1
            j = h * cap + (head + count) % cap
            self._pdue[j] = ts_ns + MARKOUT_HORIZONS_NS[h]
            self._pv[j] = v
            self._ps[j] = s
            self._psg[j] = sign
            self._ppx[j] = px_ticks
            self._pend_count[h] = count + 1

    def update_markouts(self, now_ns: int, mid2_of_symbol: Callable[[int], int]) -> int:
        """Resolve every pending markout due at ``now_ns``; returns how many
        were booked. ``mid2_of_symbol(s)`` is twice the symbol's mid in ticks
        (0 when there is no two-sided market: the markout is skipped, since
        a one-sided quote says nothing about where the price went)."""
        booked = 0
        cap = self.markout_capacity
        nh = N_HORIZONS
        w = -1.0
        for h in range(nh):
            head = self._pend_head[h]
            count = self._pend_count[h]
            while count > 0:
                j = h * cap + head
                if self._pdue[j] > now_ns:
                    break
                head = head + 1 if head + 1 < cap else 0
                count -= 1
                mid2 = mid2_of_symbol(self._ps[j])
                if mid2 <= 0:
                    self.markouts_skipped += 1
                    continue
                px = self._ppx[j]
                # side * (mid2/2 - px) / px in bps, in integers until the
                # division so a one-tick move is exact.
                mk = self._psg[j] * (mid2 - 2 * px) * 1e4 / (2 * px)
                if w < 0.0:
                    w = self._weight(now_ns)
                v = self._pv[j]
                if h == DETECT_HORIZON and self.detector is not None and self.detector.observe(v, STREAM_MARKOUT, mk):
                    self.forget(v, now_ns)
                k = v * nh + h
                self._mw[k] += w
                self._ms[k] += w * mk
                booked += 1
            self._pend_head[h] = head
            self._pend_count[h] = count
        self.markouts_resolved += booked
        return booked

    def forget(self, v: int, now_ns: int) -> None:
        """A change was detected at venue ``v``: keep only ``change_keep`` of
        its evidence, so its figures move to the prior and what follows
        instead of decaying at the half-life. Its pending markouts stay:
        they belong to fills already made."""
        keep = self.change_keep
        for a in self._sums:
            a[v] *= keep
        if self.liquidity is not None:
            self.liquidity.shrink(v, keep)
        self.changed_ns[v] = now_ns
        if now_ns > self.last_change_ns:
            self.last_change_ns = now_ns
        self.changes += 1

    def evidence(self, bucket: int, now_ns: int) -> list[float]:
        """How much each venue's figures rest on its own children rather
        than the prior, 0..1: ``w / (w + prior_weight)`` with ``w`` the
        decayed child weight at ``now_ns`` (0 for a venue never tried or
        just forgotten, near 1 for one traded all along)."""
        x = -self._k * (now_ns - self.t0_ns)
        g = math.exp(x if x > -700.0 else -700.0)
        pw, nb, cw = self.prior_weight, self.n_buckets, self._cw
        return [cw[v * nb + bucket] * g / (cw[v * nb + bucket] * g + pw) for v in range(len(self.venues))]

    def pending_markouts(self, horizon_index: int) -> int:
        return self._pend_count[horizon_index]

    def next_markout_ns(self) -> int | None:
        """When the earliest pending markout falls due (None: none pending).
        Each horizon's ring is in due order, fills being recorded in time
        order, so its head is its earliest."""
        cap = self.markout_capacity
        best: int | None = None
        for h in range(N_HORIZONS):
            if self._pend_count[h]:
                due = self._pdue[h * cap + self._pend_head[h]]
                if best is None or due < best:
                    best = due
        return best

    # --------------------------------------------------------------- readers

    def read_all(self, bucket: int, now_ns: int, out: memoryview[float], base: int, stride: int) -> None:
        """Write every venue's ``N_STATS`` values (``STAT_*`` order) for size
        ``bucket`` into the flat float memoryview ``out``, venue v from
        ``base + v * stride``. The one place the shrinkage formula lives:

            value = (decayed_sum + prior_weight * prior) / (decayed_weight + prior_weight)

        The feature engine calls it once per order; the scalar readers below
        go through it too."""
        nb = self.n_buckets
        x = self._k * (now_ns - self.t0_ns)
        if x > 700.0:
            # Over 1000 half-lives since t0: the data (weights < 2**64 each)
            # is nothing next to the prior.
            self._write_priors(out, base, stride)
            return
        # Numerator and denominator divided by g = 2**(-(now - t0)/h), so each
        # value is (sum + c) / (weight + pw_g): one add, no multiply per sum.
        # The floor keeps pw_g > 0 (a read long before t0) so den never is 0.
        pw_g = self.prior_weight * math.exp(x if x > -600.0 else -600.0)
        c_fill = pw_g * self.prior_fill_rate
        c_part = pw_g * self.prior_partial_freq
        c_ttf = pw_g * self.prior_time_to_fill_ms
        c_mk = pw_g * self.prior_markout_bps
        cw = self._cw
        fw = self._fw
        pwv = self._pw
        tw = self._tw
        ts = self._ts
        mw = self._mw
        ms = self._ms
        i = bucket
        k = 0
        o = base
        for _ in range(len(self.venues)):
            den = cw[i] + pw_g
            out[o] = (fw[i] + c_fill) / den
            out[o + 2] = (pwv[i] + c_part) / den
            out[o + 1] = (ts[i] + c_ttf) / (tw[i] + pw_g)
            out[o + 3] = (ms[k] + c_mk) / (mw[k] + pw_g)
            out[o + 4] = (ms[k + 1] + c_mk) / (mw[k + 1] + pw_g)
            i += nb
            k += N_HORIZONS
            o += stride

    def _write_priors(self, out: memoryview[float], base: int, stride: int) -> None:
        for v in range(len(self.venues)):
            o = base + v * stride
            out[o] = self.prior_fill_rate
            out[o + 1] = self.prior_time_to_fill_ms
            out[o + 2] = self.prior_partial_freq
            out[o + 3] = self.prior_markout_bps
            out[o + 4] = self.prior_markout_bps

    def _read(self, v: int, bucket: int, now_ns: int, stat: int) -> float:
        self.read_all(bucket, now_ns, self._sc, 0, N_STATS)
        return float(self._sc[v * N_STATS + stat])

    def fill_rate(self, v: int, bucket: int, now_ns: int) -> float:
        """Decayed mean of filled/qty over finished children, shrunk to the prior."""
        return self._read(v, bucket, now_ns, STAT_FILL_RATE)

    def mean_time_to_fill_ms(self, v: int, bucket: int, now_ns: int) -> float:
        """Decayed mean of first-fill latency (sent -> first fill) over filled children."""
        return self._read(v, bucket, now_ns, STAT_TIME_TO_FILL_MS)

    def partial_freq(self, v: int, bucket: int, now_ns: int) -> float:
        """Decayed share of children that ended partially filled."""
        return self._read(v, bucket, now_ns, STAT_PARTIAL_FREQ)

    def markout_bps(self, v: int, horizon_index: int, now_ns: int) -> float:
        """Decayed mean markout at horizon 0 (1 s) or 1 (5 s); see the module
        docstring for the sign. Markouts do not depend on the size bucket."""
        if not 0 <= horizon_index < N_HORIZONS:
            raise IndexError(f"horizon_index {horizon_index} outside [0, {N_HORIZONS})")
        return self._read(v, 0, now_ns, STAT_MARKOUT_1S_BPS + horizon_index)

    def child_weight(self, v: int, bucket: int, now_ns: int) -> float:
        """Decayed number of children behind the figures (0: prior only)."""
        return float(self.child_w[v, bucket]) * math.exp(-self._k * (now_ns - self.t0_ns))

    def markout_weight(self, v: int, horizon_index: int, now_ns: int) -> float:
        """Decayed number of markouts behind ``markout_bps``."""
        return float(self.markout_w[v, horizon_index]) * math.exp(-self._k * (now_ns - self.t0_ns))
