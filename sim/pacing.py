"""Waiting for a point in time by a schedule, for the simulator's drivers.

One clock reading decides both whether to wait and for how long: reading
the clock twice (``while clock() < due: sleep(due - clock())``) lets ``due``
pass between the two reads and hands ``time.sleep`` a negative length, which
raises (issue 17: ``sor demo`` died on it about one run in three).
"""

from __future__ import annotations

import time
from collections.abc import Callable


def sleep_until(due_s: float, *, max_step_s: float = 0.001, clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] = time.sleep) -> None:
    """Return once ``clock() >= due_s``, sleeping in steps of at most
    ``max_step_s`` (a short step keeps the overshoot near the timer's
    resolution rather than the whole remainder's)."""
    while True:
        left = due_s - clock()
        if left <= 0.0:
            return
        sleep(left if left < max_step_s else max_step_s)
