"""The operators' view against a real Prometheus server.

The daemon and the sim venues run as processes (sim.harness.Cluster), the
sim OMS sends orders, and a real ``prometheus`` (Debian's package, installed
by ``make deps-system``) scrapes the daemon every second with
deploy/prometheus.yml and evaluates deploy/alerts.yml. The tests read
Prometheus's HTTP API, never the daemon directly, except to compare the
dashboard's metric names with a live scrape of what the daemon exports.

The tests share one stack and run in file order: the last one kills a venue.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fix.codec import LAST_MKT, ORD_STATUS
from sim.config import SimClusterConfig
from sim.harness import Cluster, free_port, localize, poll_until
from sim.oms import SimOms
from tests.e2e.conftest import e2e_config
from tests.unit.test_deploy import (
    alert_exprs,
    alert_rules,
    dashboard_exprs,
    grafana_to_promql,
    metric_names,
)

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PROMETHEUS = shutil.which("prometheus")
T = 30.0  # seconds to wait for a condition Prometheus has to scrape first


class Prometheus:
    """A prometheus server process on a free loopback port."""

    def __init__(self, workdir: Path, metrics_port: int) -> None:
        assert PROMETHEUS is not None
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # deploy/prometheus.yml itself, pointed at this daemon's metrics port
        # and scraping/evaluating every second; its rule file next to it.
        text = (DEPLOY / "prometheus.yml").read_text()
        text, n = re.subn(r'"127\.0\.0\.1:9108"', f'"127.0.0.1:{metrics_port}"', text)
        assert n == 1, "deploy/prometheus.yml no longer targets 127.0.0.1:9108"
        text, n = re.subn(r"^(\s*)(scrape_interval|evaluation_interval):\s*\S+", r"\1\2: 1s", text, flags=re.M)
        assert n == 2, "deploy/prometheus.yml no longer sets global scrape and evaluation intervals"
        self.config = workdir / "prometheus.yml"
        self.config.write_text(text)
        shutil.copy(DEPLOY / "alerts.yml", workdir / "alerts.yml")
        self.log_path = workdir / "prometheus.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={self.config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=info"],
                stdout=log, stderr=subprocess.STDOUT, cwd=workdir)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; raises on a PromQL error."""
        try:
            body = self.get("/api/v1/query", query=promql)
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{promql!r}: HTTP {e.code}: {e.read().decode(errors='replace')}") from None
        assert body["status"] == "success", (promql, body)
        return list(body["data"]["result"])

    def values(self, promql: str, label: str) -> dict[str, float]:
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(promql)}

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


class Stack:
    def __init__(self, cluster: Cluster, oms: SimOms, prom: Prometheus) -> None:
        self.cluster, self.oms, self.prom = cluster, oms, prom


@pytest.fixture(scope="module")
def stack(default_config: SimClusterConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if PROMETHEUS is None:
        pytest.skip("prometheus not installed (`make deps-system` installs Debian's prometheus package)")
    work = tmp_path_factory.mktemp("prom-e2e")
    cfg = localize(e2e_config(default_config), work)
    cluster = Cluster(cfg, work)
    cluster.start(timeout_s=60)
    oms = SimOms("127.0.0.1", cfg.oms.port, sender_comp_id=cfg.oms.target_comp_id,
                 target_comp_id=cfg.oms.sender_comp_id, state_dir=work / "oms")
    prom: Prometheus | None = None
    try:
        oms.start()
        prom_dir = work / "prometheus"
        prom_dir.mkdir()
        prom = Prometheus(prom_dir, cfg.metrics.port)
        assert poll_until(prom.ready, T, 0.1), f"prometheus not ready after {T}s:\n{prom.log()[-3000:]}"
        yield Stack(cluster, oms, prom)
    finally:
        if prom is not None:
            rc = prom.stop()
            assert rc == 0, f"prometheus exited with {rc}:\n{prom.log()[-3000:]}"
        oms.stop()
        codes = cluster.stop()
        assert codes["daemon"] == 0 and all(c == 0 for c in codes.values()), (codes, cluster.log("daemon")[-3000:])


def _trade(oms: SimOms, n: int = 6) -> None:
    """Marketable IOC buys and sells (each fills 100 on LIT1 and 50 on LIT2)
    and one order for an unknown symbol (a reject)."""
    cls = []
    for i in range(n):
        side, px = ("1", "190.05") if i % 2 == 0 else ("2", "189.95")
        cls.append(oms.send_order(f"S{1 + i % 3}", side, 150, price=px, tif="3"))
    cls.append(oms.send_order("NOPE", "1", 100, price="10.00", tif="3"))
    for cl in cls:
        assert oms.wait_done(cl, T), cl
    assert any(r.get(LAST_MKT) for cl in cls for r in oms.reports(cl))
    assert oms.reports(cls[-1])[-1].get(ORD_STATUS) == "8"


def test_prometheus_scrapes_the_router(stack: Stack) -> None:
    prom = stack.prom
    _trade(stack.oms)
    checks = {
        "target up": lambda: prom.values('up{job="sor"}', "job") == {"sor": 1.0},
        "tick-to-route observed": lambda: any(v > 0 for v in prom.values("sor_tick_to_route_seconds_count",
                                                                         "__name__").values()),
        "fills by venue": lambda: any(v > 0 for v in prom.values("sum by (venue) (sor_fills_total)",
                                                                 "venue").values()),
        "venue sessions up": lambda: prom.values('sor_fix_session_up{session=~"venue:.*"}', "session") == {
            "venue:LIT1": 1.0, "venue:LIT2": 1.0, "venue:DARK1": 1.0},
        "OMS session up": lambda: prom.values('sor_fix_session_up{session="oms"}', "session") == {"oms": 1.0},
        "unknown-symbol reject counted": lambda: prom.values(
            'sor_order_rejects_total{reason="unknown_symbol"}', "reason").get("unknown_symbol", 0) >= 1,
    }
    for what, ok in checks.items():
        assert poll_until(ok, T, 0.2), f"{what}: not seen in Prometheus after {T}s"
    fills = prom.values("sum by (venue) (sor_fills_total)", "venue")
    assert fills.get("LIT1", 0) > 0 and fills.get("LIT2", 0) > 0, fills


def test_alert_rules_load_and_evaluate(stack: Stack) -> None:
    prom = stack.prom
    names = set(alert_rules())

    def all_evaluated() -> bool:
        rules = [r for g in prom.get("/api/v1/rules")["data"]["groups"] for r in g["rules"]]
        assert {r["name"] for r in rules} == names
        bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] == "err"]
        assert not bad, bad
        return all(r["health"] == "ok" for r in rules)

    assert poll_until(all_evaluated, T, 0.2), "rules not all evaluated"
    alerts = prom.get("/api/v1/alerts")["data"]["alerts"]
    assert not [a for a in alerts if a["labels"]["alertname"] in {"VenueSessionDown", "OmsSessionDown",
                                                                  "SorMetricsDown"}], alerts


def _exported_names(text: str) -> set[str]:
    """Series names a /metrics page can have: every sample name, and for
    every declared family (labelled families without children have no
    samples yet) the names prometheus-client gives its samples."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            if kind == "counter":
                base = name.removesuffix("_total")
                names |= {f"{base}_total", f"{base}_created"}
            elif kind in ("histogram", "summary"):
                names |= {name, *(f"{name}{s}" for s in ("_bucket", "_sum", "_count", "_created"))}
            else:
                names.add(name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_dashboard_and_alerts_read_only_exported_metrics(stack: Stack) -> None:
    cfg = stack.cluster.cfg
    url = f"http://{cfg.metrics.host}:{cfg.metrics.port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        exported = _exported_names(r.read().decode())
    assert "sor_tick_to_route_seconds_bucket" in exported and "sor_fills_total" in exported
    missing = {}
    for where, expr in {**dashboard_exprs(), **{f"alert {k}": v for k, v in alert_exprs().items()}}.items():
        if gone := metric_names(expr) - exported:
            missing[where] = sorted(gone)
    assert not missing, f"not exported by the running daemon: {missing}"


def test_dashboard_queries_run_on_prometheus(stack: Stack) -> None:
    prom = stack.prom
    _trade(stack.oms, 4)
    exprs = {where: grafana_to_promql(e) for where, e in dashboard_exprs().items()}
    # Every query is valid PromQL (query() raises otherwise).
    for where, expr in exprs.items():
        try:
            prom.query(expr)
        except AssertionError as e:
            raise AssertionError(f"dashboard panel {where}: {e}") from None
    # And every query over metrics with samples returns series, unless it
    # filters (the reject and error panels show only what is non-zero).
    sampled = {r["metric"]["__name__"] for r in prom.query('{__name__=~"sor_.+"}')}
    expect = {w: e for w, e in exprs.items() if metric_names(e) <= sampled and "> 0" not in e}
    assert len(expect) > 20, expect

    def all_have_series() -> bool:
        return all(prom.query(e) for e in expect.values())

    if not poll_until(all_have_series, T, 0.5):
        empty = [w for w, e in expect.items() if not prom.query(e)]
        raise AssertionError(f"dashboard queries with no series: {empty}")


def test_killed_venue_seen_by_prometheus(stack: Stack) -> None:
    prom = stack.prom
    stack.cluster.kill_venue("LIT2")
    assert poll_until(
        lambda: prom.values('sor_fix_session_up{session="venue:LIT2"}', "session") == {"venue:LIT2": 0.0}, T, 0.2
    ), "Prometheus never saw venue:LIT2 go down"

    def firing() -> list[dict[str, Any]]:
        return [a for a in prom.get("/api/v1/alerts")["data"]["alerts"]
                if a["labels"]["alertname"] == "VenueSessionDown" and a["state"] == "firing"]

    # `for: 10s`, then the next evaluation.
    assert poll_until(lambda: bool(firing()), T, 0.5), "VenueSessionDown never fired"
    assert [a["labels"]["session"] for a in firing()] == ["venue:LIT2"]
    assert firing()[0]["annotations"]["summary"].startswith("FIX session venue:LIT2 is down")
    assert prom.values('sor_fix_session_up{session=~"venue:LIT1|venue:DARK1"}', "session") == {
        "venue:LIT1": 1.0, "venue:DARK1": 1.0}
