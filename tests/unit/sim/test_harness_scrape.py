"""sim.harness reads /metrics with prometheus-client's parser; its keys must
still be spelled as the exposition's lines are (label order, quoting and
escapes), since the tests and the bench look metrics up by those strings."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from sim.bench import histogram_quantiles
from sim.harness import parse_samples, sample_values


def _exposition() -> str:
    r = CollectorRegistry()
    up = Gauge("sor_fix_session_up", "up", ["session"], registry=r)
    up.labels(session="venue:LIT1").set(1)
    up.labels(session="oms").set(0)
    mid = Gauge("sor_md_mid", "mid", ["venue", "symbol"], registry=r)
    mid.labels(venue="LIT1", symbol="AAA").set(10.5)
    odd = Counter("sor_odd_total", "escapes", ["reason"], registry=r)
    odd.labels(reason='a "quoted" back\\slash\nnewline').inc(3)
    Counter("sor_plain_total", "no labels", registry=r).inc()
    h = Histogram("sor_stage_seconds", "stages", ["stage"], buckets=(0.001, 0.01), registry=r)
    for v in (0.0005, 0.0005, 0.005, 0.5):
        h.labels(stage="scoring").observe(v)
    return generate_latest(r).decode()


def test_keys_are_spelled_as_the_exposition_lines() -> None:
    text = _exposition()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    want = {ln.rpartition(" ")[0]: float(ln.rpartition(" ")[2]) for ln in lines}
    got = sample_values(parse_samples(text))
    assert got == want
    assert got['sor_fix_session_up{session="venue:LIT1"}'] == 1.0
    assert got['sor_md_mid{symbol="AAA",venue="LIT1"}'] == 10.5
    assert got["sor_plain_total"] == 1.0
    assert got['sor_stage_seconds_bucket{le="+Inf",stage="scoring"}'] == 4.0


def test_histogram_quantiles_from_parsed_buckets() -> None:
    rows = histogram_quantiles(parse_samples(_exposition()), "sor_stage_seconds", "stage")
    assert rows == {"scoring": {"count": 4, "p50_us_le": 1000.0, "p99_us_le": None, "max_us_le": None}}
    assert histogram_quantiles(parse_samples(_exposition()), "sor_missing_seconds", None) == {}
