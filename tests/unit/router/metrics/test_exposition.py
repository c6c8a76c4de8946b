"""The stepwise exposition: formatted a family at a time by the engine's
thread, byte for byte what prometheus-client would serve, served over real
HTTP on loopback, and formatted by the HTTP thread itself when nothing steps."""

from __future__ import annotations

import threading
import time
import urllib.request

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from router.metrics.exposition import StepwiseExposition
from sim.harness import free_port


def _registry() -> CollectorRegistry:
    r = CollectorRegistry()
    c = Counter("t_orders", "orders", ["venue"], registry=r)
    c.labels(venue="A").inc(3)
    c.labels(venue="B").inc()
    Gauge("t_open", "open", registry=r).set(7)
    h = Histogram("t_lat_seconds", "latency", buckets=(1e-5, 1e-4, 1e-3), registry=r)
    for x in (5e-6, 5e-5, 2e-3):
        h.observe(x)
    return r


def _wait_wanted(e: StepwiseExposition, timeout_s: float = 10.0) -> None:
    """The scrape registers before it waits; spin until it has (deadline)."""
    deadline = time.monotonic() + timeout_s
    while not e.wanted:
        assert time.monotonic() < deadline, "the scrape never registered"


def _step_until_done(e: StepwiseExposition, stop: threading.Event) -> None:
    while not stop.is_set():
        e.step()


def test_steps_give_the_same_bytes_as_one_pass() -> None:
    r = _registry()
    e = StepwiseExposition(r, timeout_s=10)
    assert not e.wanted and not e.step(), "nothing is formatted unless a scrape wants it"
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(e.request()))
    t.start()
    steps = 0
    _wait_wanted(e)
    while e.step():
        steps += 1
    t.join(10)
    assert got == [generate_latest(r)]
    assert steps == 3, "one step per family"
    assert not e.wanted and e.fallbacks == 0


def test_served_over_http_while_the_engine_steps() -> None:
    r = _registry()
    e = StepwiseExposition(r, timeout_s=10)
    port = free_port()
    e.serve("127.0.0.1", port)
    stop = threading.Event()
    engine = threading.Thread(target=_step_until_done, args=(e, stop), daemon=True)
    engine.start()
    try:
        for _ in range(3):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
                body = resp.read()
                assert resp.headers["Content-Type"].startswith("text/plain")
            assert body == generate_latest(r)
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nope", timeout=10)
            raise AssertionError("404 expected")
        except urllib.error.HTTPError as err:
            assert err.code == 404
    finally:
        stop.set()
        engine.join(5)
        e.close()
    assert e.fallbacks == 0
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
        raise AssertionError("closed: nothing listens any more")
    except urllib.error.URLError:
        pass


def test_nothing_stepping_falls_back_to_the_http_thread() -> None:
    r = _registry()
    e = StepwiseExposition(r, timeout_s=0.05)
    assert e.request() == generate_latest(r)
    assert e.fallbacks == 1


def test_a_failing_collector_releases_the_scrape() -> None:
    r = _registry()

    class Broken:
        def collect(self) -> list[object]:
            raise RuntimeError("boom")

    r.register(Broken())  # type: ignore[arg-type]
    e = StepwiseExposition(r, timeout_s=10)
    result: list[object] = []

    def scrape() -> None:
        try:
            result.append(e.request())
        except RuntimeError as err:  # the fallback meets the same collector
            result.append(err)

    t = threading.Thread(target=scrape)
    t.start()
    _wait_wanted(e)
    raised = 0
    while e.wanted:
        try:
            e.step()
        except RuntimeError:
            raised += 1
    t.join(10)
    assert raised == 1 and e.fallbacks == 1 and isinstance(result[0], RuntimeError)
    assert not e.wanted, "the next scrape starts afresh"
