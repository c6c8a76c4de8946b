"""The clock every SOR process stamps with.

CLOCK_MONOTONIC is shared by every process on the box, so stamps taken by
the OMS, the router and a venue (tag 7002 traces, latency figures) can be
compared; ``time.perf_counter_ns`` is per process.
"""

from __future__ import annotations

import time


def monotonic_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)
