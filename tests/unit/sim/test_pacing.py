"""The simulator's pacer against a clock that moves between two reads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim import demo, scenario_run
from sim.pacing import sleep_until


class JumpingClock:
    """Returns the scripted readings in turn, then the last one forever."""

    def __init__(self, *readings: float) -> None:
        self.readings = list(readings)
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]


class StrictSleep:
    """``time.sleep``'s contract: a negative length is an error."""

    def __init__(self) -> None:
        self.lengths: list[float] = []

    def __call__(self, s: float) -> None:
        if s < 0:
            raise ValueError("sleep length must be non-negative")
        self.lengths.append(s)


def test_due_passes_between_the_check_and_the_sleep() -> None:
    # The demo's old loop read 9.9995 (< due, so wait), then 10.002 for the
    # length: sleep(-0.002) raised. One reading per decision cannot.
    clock = JumpingClock(9.9995, 10.002)
    sleep = StrictSleep()
    sleep_until(10.0, clock=clock, sleep=sleep)
    assert sleep.lengths == [pytest.approx(0.0005)]
    assert clock.reads == 2


def test_already_due_does_not_sleep() -> None:
    sleep = StrictSleep()
    sleep_until(10.0, clock=JumpingClock(10.0), sleep=sleep)
    assert sleep.lengths == []


def test_steps_are_capped() -> None:
    clock = JumpingClock(0.0, 0.001, 0.002, 0.0025, 0.003)
    sleep = StrictSleep()
    sleep_until(0.003, clock=clock, sleep=sleep)
    assert sleep.lengths == [pytest.approx(x) for x in (0.001, 0.001, 0.001, 0.0005)]


@given(st.lists(st.floats(min_value=-1.0, max_value=1.0, allow_nan=False), min_size=1, max_size=30))
def test_never_a_negative_sleep_whatever_the_clock_does(readings: list[float]) -> None:
    sleep = StrictSleep()
    sleep_until(0.0, clock=JumpingClock(*readings, 0.0), sleep=sleep)
    assert all(0 < s <= 0.001 for s in sleep.lengths)


def test_the_demo_and_the_scenario_runner_pace_with_it() -> None:
    assert demo.sleep_until is sleep_until
    assert scenario_run.sleep_until is sleep_until
