"""Change detection on the router's own outcomes per venue (Page-Hinkley).

The venue statistics forget at a fixed half-life, which is a compromise: a
short one makes every figure noisy, a long one makes the router keep
trading on a pool for minutes after it started leaking (issue 15 measured
175 parents to recover when two pools swapped roles). A detector lets the
half-life stay long in calm markets and still react at once: each pool's
250 ms markouts and per-child fill fractions feed a two-sided Page-Hinkley
test, and an alarm tells the statistics to forget most of that pool's
past (``VenueStats.forget``) and the planner to explore more for a while.
(Whether it pays is measured, not assumed: README, "Online learners".)

Page-Hinkley on the standardised stream: with m and sd the stream's mean
and standard deviation before x_t, z_t = (x_t - m) / sd and::

    up_t = sum_{i<=t} (z_i - delta)      alarm when up_t - min(up) > lambda
    dn_t = sum_{i<=t} (z_i + delta)      alarm when max(dn) - dn_t > lambda

Standardising makes one ``delta`` (the drift tolerated, half the smallest
shift worth catching) and one ``lambda`` (the evidence an alarm needs) hold
for every stream and venue, in standard deviations: a lit venue's markouts
are several times noisier than a pool's, and fill fractions are in other
units altogether. A shift of s standard deviations raises an alarm after
about ``lambda / (s - delta)`` observations; with no shift, the false-alarm
rate falls exponentially in ``lambda``. After an alarm the stream starts
over, so its mean and spread are learned from what follows the change.
Mean and variance are running figures over the first ``window``
observations and exponential after, so a stream that has run all day still
tracks; no alarm before ``min_obs`` observations, which a spread needs.

Pure Python lists, not numpy: one observation is a handful of scalar
updates, and numpy scalar indexing costs more than the arithmetic.
"""

from __future__ import annotations

import math

STREAM_MARKOUT = 0
"""A fill's 250 ms markout, bps (``venuestats.DETECT_HORIZON``)."""
STREAM_FILL = 1
"""A finished child's filled fraction, 0..1."""
N_STREAMS = 2


class PageHinkley:
    """Two-sided Page-Hinkley tests on standardised streams, one per
    (venue, stream)."""

    __slots__ = ("_dn", "_dn_max", "_mean", "_n", "_up", "_up_min", "_var", "alarms", "delta", "min_obs",
                 "n_venues", "threshold", "window")

    def __init__(self, n_venues: int, delta: float = 0.5, threshold: float = 8.0, *,
                 min_obs: int = 20, window: int = 200) -> None:
        if delta < 0 or threshold <= 0:
            raise ValueError("delta must be >= 0 and threshold > 0")
        if min_obs < 2 or window < min_obs:
            raise ValueError("min_obs must be >= 2 and window >= min_obs")
        self.n_venues = n_venues
        self.delta = float(delta)
        self.threshold = float(threshold)
        self.min_obs = min_obs
        self.window = window
        n = n_venues * N_STREAMS
        self._n = [0] * n
        self._mean = [0.0] * n
        self._var = [0.0] * n
        self._up = [0.0] * n
        self._up_min = [0.0] * n
        self._dn = [0.0] * n
        self._dn_max = [0.0] * n
        self.alarms = [0] * n
        """Alarms so far per (venue, stream), flat ``v * N_STREAMS + stream``."""

    def observe(self, v: int, stream: int, x: float) -> bool:
        """Add one observation; True when it raises an alarm (the stream
        has then started over)."""
        i = v * N_STREAMS + stream
        n = self._n[i]
        m = self._mean[i]
        var = self._var[i]
        alarm = False
        if n >= self.min_obs and var > 1e-12:
            z = (x - m) / math.sqrt(var)
            up = self._up[i] + z - self.delta
            dn = self._dn[i] + z + self.delta
            self._up[i] = up
            self._dn[i] = dn
            if up < self._up_min[i]:
                self._up_min[i] = up
            if dn > self._dn_max[i]:
                self._dn_max[i] = dn
            lam = self.threshold
            alarm = up - self._up_min[i] > lam or self._dn_max[i] - dn > lam
        if alarm:
            self.alarms[i] += 1
            self.reset(v, stream)
            return True
        # Welford's update, turning exponential once the window is full.
        n += 1
        k = n if n < self.window else self.window
        d = x - m
        m += d / k
        var += (d * (x - m) - var) / k
        self._n[i] = n
        self._mean[i] = m
        self._var[i] = var
        return False

    def reset(self, v: int, stream: int) -> None:
        i = v * N_STREAMS + stream
        self._n[i] = 0
        self._mean[i] = self._var[i] = 0.0
        self._up[i] = self._up_min[i] = self._dn[i] = self._dn_max[i] = 0.0

    def mean(self, v: int, stream: int) -> float:
        """The stream's running mean since its last alarm (0 before any
        observation)."""
        return self._mean[v * N_STREAMS + stream]

    def sd(self, v: int, stream: int) -> float:
        return math.sqrt(self._var[v * N_STREAMS + stream])

    def count(self, v: int, stream: int) -> int:
        return self._n[v * N_STREAMS + stream]
