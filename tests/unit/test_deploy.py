"""deploy/ as operators use it: promtool validates the scrape config and the
alert rules and runs the rules' unit tests (deploy/alerts_test.yml); the
Grafana dashboard is valid JSON whose every query names metrics the daemon
declares; the compose config is accepted by ``sor check-config`` and is
config/sor.toml but for the container settings; the systemd unit has what a
co-located service needs.

The metric names are checked here against a static read of the daemon's
declarations (router/*.py); tests/e2e/test_prometheus.py checks them again
against a live scrape of the running daemon and runs every dashboard query
on a real Prometheus. ``make test`` installs promtool (Debian's prometheus
package, ``make deps-system``), so the promtool tests skip only where it is
absent.
"""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from router.config import load_config
from sim.config import load_sim_config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana" / "sor-dashboard.json"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (`make deps-system` installs Debian's prometheus package)"
)

REQUIRED_ALERTS = {
    "VenueSessionDown", "OmsSessionDown", "MarketDataStale", "TickToRouteP99High", "ModelFallbackRate",
    "FillRateDrop", "RejectSpike", "EventLoopLag", "ModelCostErrorDrift", "ModelFillCalibrationDrift",
    "ModelMarkoutErrorDrift",
    "ModelCanaryRolledBack",
}

# What the dashboard must show (a metric name each panel group is built on).
REQUIRED_DASHBOARD_METRICS = {
    # latency
    "sor_tick_to_route_seconds_bucket", "sor_stage_seconds_bucket", "sor_venue_ack_seconds_bucket",
    "sor_fill_to_report_seconds_bucket", "sor_event_loop_lag_seconds_bucket",
    # fills
    "sor_fills_total", "sor_filled_qty_total", "sor_child_qty_sent_total", "sor_fill_slippage_bps_bucket",
    "sor_order_rejects_total", "sor_fix_session_up", "sor_md_staleness_seconds", "sor_open_parents",
    "sor_open_children",
    # models
    "sor_model_shortfall_bps_sum", "sor_model_parents_total", "sor_model_cost_error_bps_sum",
    "sor_model_fill_predicted_total", "sor_model_validation", "sor_model_rollbacks_total",
}


# ------------------------------------------------------------------ helpers
# (tests/e2e/test_prometheus.py uses these too)

_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'")
_METRIC = re.compile(r"(?<![A-Za-z0-9_:])sor_[A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The sor_* metric names a PromQL expression reads (label values in
    quotes are left out: they could look like names)."""
    return set(_METRIC.findall(_QUOTED.sub('""', expr)))


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])  # panels inside a collapsed row


def dashboard_exprs(dash: dict[str, Any] | None = None) -> dict[str, str]:
    """Every PromQL expression of the dashboard: '<panel title> #<id>/<refId>'
    -> expr, template variable queries included."""
    dash = dash if dash is not None else load_dashboard()
    out: dict[str, str] = {}
    for p in _panels(dash):
        for t in p.get("targets", []):
            out[f"{p['title']} #{p['id']}/{t['refId']}"] = t["expr"]
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]
            out[f"${v['name']}"] = q["query"] if isinstance(q, dict) else q
    return out


def grafana_to_promql(expr: str) -> str:
    """A dashboard expression as Grafana would send it (variables expanded
    to what an all-venues view sends); label_values() is not PromQL and is
    turned into the selector Grafana queries the label from."""
    m = re.fullmatch(r"label_values\((.+),\s*\w+\)", expr.strip())
    if m:
        return m.group(1)
    return (expr.replace("$__rate_interval", "1m").replace("$__interval", "2s").replace("$__range", "1h")
            .replace("${venue:regex}", ".*").replace("${venue}", ".*").replace("$venue", ".*"))


def alert_rules() -> dict[str, str]:
    """alertname -> the rule's text block in deploy/alerts.yml (no YAML
    parser in the venv; promtool checks the syntax, this reads the
    fields)."""
    text = (DEPLOY / "alerts.yml").read_text()
    blocks = re.split(r"^\s*- alert:\s*", text, flags=re.M)[1:]
    return {b.split("\n", 1)[0].strip(): b for b in blocks}


def alert_exprs() -> dict[str, str]:
    out = {}
    for name, block in alert_rules().items():
        m = re.search(r"^\s*expr:\s*(>-\s*\n)?(.*?)(?=^\s*(for|labels|annotations):)", block, flags=re.M | re.S)
        assert m, f"{name}: no expr"
        out[name] = m.group(2).strip()
    return out


_DECL = re.compile(r"\b(Counter|Gauge|Histogram|Summary|Info|(?:Counter|Gauge|Histogram|Summary)MetricFamily)"
                   r"\(\s*\"(sor_[a-z0-9_]+)\"")


def declared_metric_names() -> set[str]:
    """Series names the daemon can export, read from its declarations in
    router/*.py (prometheus-client adds _total to counters and
    _bucket/_sum/_count to histograms)."""
    names: set[str] = set()
    for path in (REPO / "router").rglob("*.py"):
        for kind, name in _DECL.findall(path.read_text()):
            if kind.startswith("Counter"):
                base = name.removesuffix("_total")
                names |= {f"{base}_total", f"{base}_created"}
            elif kind.startswith(("Histogram", "Summary")):
                names |= {name, *(f"{name}{s}" for s in ("_bucket", "_sum", "_count", "_created"))}
            elif kind == "Info":
                names.add(f"{name}_info")
            else:
                names.add(name)
    return names


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=120, check=False)


# ------------------------------------------------------------------ promtool


@needs_promtool
@pytest.mark.parametrize("config", ["prometheus.yml", "compose-prometheus.yml"])
def test_promtool_check_config(config: str) -> None:
    res = _promtool("check", "config", config)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout + res.stderr


@needs_promtool
def test_promtool_check_rules() -> None:
    res = _promtool("check", "rules", "alerts.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in res.stdout


@needs_promtool
def test_promtool_rule_unit_tests() -> None:
    res = _promtool("test", "rules", "alerts_test.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


# --------------------------------------------------------- scrape + alerts


def test_scrape_config_targets_the_default_metrics_endpoint() -> None:
    cfg = load_config(REPO / "config" / "sor.toml")
    text = (DEPLOY / "prometheus.yml").read_text()
    assert re.search(r"^\s*- job_name: sor\s*$", text, flags=re.M)
    assert f'targets: ["{cfg.metrics.host}:{cfg.metrics.port}"]' in text
    assert re.search(r"^rule_files:\s*\n\s*- alerts\.yml\s*$", text, flags=re.M)
    interval = re.search(r"^\s*scrape_interval:\s*(\d+)s\s*$", text, flags=re.M)
    assert interval and 1 <= int(interval.group(1)) <= 5


def _significant(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_compose_prometheus_config_differs_only_in_target() -> None:
    prod = _significant((DEPLOY / "prometheus.yml").read_text())
    compose = _significant((DEPLOY / "compose-prometheus.yml").read_text())
    assert [line.replace('"127.0.0.1:9108"', '"sor:9108"') for line in prod] == compose


def test_alert_rules_are_complete() -> None:
    rules = alert_rules()
    assert set(rules) >= REQUIRED_ALERTS, REQUIRED_ALERTS - set(rules)
    for name, block in rules.items():
        assert re.search(r"^\s*severity:\s*(critical|warning)\s*$", block, flags=re.M), name
        assert re.search(r"^\s*summary:", block, flags=re.M), name
        assert re.search(r"^\s*description:", block, flags=re.M), name
        assert "{{ $labels." in block, f"{name}: annotations should name the series ({{{{ $labels.* }}}})"
    exprs = alert_exprs()
    assert 'session=~"venue:.*"' in exprs["VenueSessionDown"]
    assert "for: 10s" in rules["VenueSessionDown"] and "for: 10s" in rules["MarketDataStale"]
    assert "sor_md_staleness_seconds > 2" in exprs["MarketDataStale"]
    assert "histogram_quantile(0.99" in exprs["TickToRouteP99High"] and "> 0.001" in exprs["TickToRouteP99High"]
    assert "for: 1m" in rules["TickToRouteP99High"] and "for: 1m" in rules["EventLoopLag"]
    assert "> 0.005" in exprs["EventLoopLag"]


def test_alert_rules_have_unit_tests() -> None:
    text = (DEPLOY / "alerts_test.yml").read_text()
    tested = set(re.findall(r"^\s*alertname:\s*(\w+)\s*$", text, flags=re.M))
    assert {"VenueSessionDown", "TickToRouteP99High"} <= tested
    assert set(alert_rules()) - tested == set(), "every alert has a promtool test"


def test_alert_rules_read_only_declared_metrics() -> None:
    declared = declared_metric_names()
    for name, expr in alert_exprs().items():
        missing = metric_names(expr) - declared
        assert not missing, f"{name} reads {missing}, which router/*.py does not declare"


# ----------------------------------------------------------------- dashboard


def test_dashboard_is_a_grafana_dashboard() -> None:
    dash = load_dashboard()
    assert 36 <= dash["schemaVersion"] <= 39
    assert dash["uid"] and dash["title"]
    ds_vars = [v for v in dash["templating"]["list"] if v["type"] == "datasource"]
    assert [(v["name"], v["query"], v["current"]["value"]) for v in ds_vars] == [
        ("DS_PROMETHEUS", "prometheus", "prometheus")]
    ids = [p["id"] for p in _panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for p in _panels(dash):
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
            assert t["expr"].strip(), p["title"]


def test_dashboard_shows_latency_and_fills() -> None:
    used = set().union(*map(metric_names, dashboard_exprs().values()))
    assert used >= REQUIRED_DASHBOARD_METRICS, REQUIRED_DASHBOARD_METRICS - used
    exprs = dashboard_exprs().values()
    # fill rate by venue = filled / sent, per venue
    assert any("sor_filled_qty_total" in e and "sor_child_qty_sent_total" in e and "/" in e for e in exprs)
    # p50 and p99 of tick-to-route
    tick = [e for e in exprs if "sor_tick_to_route_seconds_bucket" in e]
    assert any("histogram_quantile(0.5," in e for e in tick) and any("histogram_quantile(0.99," in e for e in tick)


def test_dashboard_reads_only_declared_metrics() -> None:
    declared = declared_metric_names()
    for where, expr in dashboard_exprs().items():
        missing = metric_names(expr) - declared
        assert not missing, f"{where}: {missing} not declared in router/*.py"


def test_metric_name_extraction() -> None:
    expr = ('histogram_quantile(0.99, sum by (le) (rate(sor_stage_seconds_bucket{stage="sor_fake"}[1m])))'
            " / ignoring(venue) sum(rate(sor_fills_total[5m]))")
    assert metric_names(expr) == {"sor_stage_seconds_bucket", "sor_fills_total"}


def test_grafana_provisioning_matches_compose() -> None:
    ds = (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    assert re.search(r"^\s*uid:\s*prometheus\s*$", ds, flags=re.M)
    assert "url: http://prometheus:9090" in ds
    prov = (DEPLOY / "grafana" / "provisioning" / "dashboards" / "sor.yml").read_text()
    path = re.search(r"^\s*path:\s*(\S+)\s*$", prov, flags=re.M)
    assert path
    compose = (DEPLOY / "compose.yaml").read_text()
    assert f"./grafana/sor-dashboard.json:{path.group(1)}/sor-dashboard.json:ro" in compose


# ------------------------------------------------------------------ compose


def test_compose_mounts_existing_files() -> None:
    compose = (DEPLOY / "compose.yaml").read_text()
    mounts = re.findall(r"^\s*- \./([^:\s]+):", compose, flags=re.M)
    assert mounts
    for rel in mounts:
        assert (DEPLOY / rel).exists(), rel
    assert re.search(r"^\s*context: \.\.\s*$", compose, flags=re.M) and (REPO / "Dockerfile").exists()
    for venue in ("LIT1", "LIT2", "DARK1"):
        assert f'"sim-venue", "--config", "/etc/sor/sor.toml", "--venue", "{venue}"' in compose
    assert "image: prom/prometheus:" in compose and "image: grafana/grafana:" in compose


def test_compose_config_accepted_by_the_daemon() -> None:
    res = subprocess.run([sys.executable, "-m", "router.cli", "check-config", "--config", "deploy/compose-sor.toml"],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert "ok (3 venues, 2 symbols)" in res.stdout


def test_compose_config_is_the_default_adapted_to_containers() -> None:
    # The full trees: the compose stack's sim venues play what the demo's play.
    compose = load_sim_config(DEPLOY / "compose-sor.toml")
    default = load_sim_config(REPO / "config" / "sor.toml")
    assert {v.name: v.host for v in compose.venues} == {"LIT1": "lit1", "LIT2": "lit2", "DARK1": "dark1"}
    assert compose.metrics.host == "0.0.0.0"
    assert compose.oms.allowed_remote == []
    # Everything else is the default: the compose stack trades what the demo trades.
    r = msgspec.structs.replace
    back = r(compose, venues=[r(v, host="127.0.0.1") for v in compose.venues],
             metrics=r(compose.metrics, host=default.metrics.host),
             oms=r(compose.oms, allowed_remote=default.oms.allowed_remote))
    assert back == default


# ------------------------------------------------------------------ systemd


def _unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",), comment_prefixes=("#", ";"))
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string((DEPLOY / "sor.service").read_text())
    return cp


def test_systemd_unit_has_what_the_service_needs() -> None:
    svc = _unit()["Service"]
    assert svc["ExecStart"].endswith("/sor run --config /etc/sor/sor.toml")
    assert svc["User"] == "sor" and svc["Group"] == "sor"
    assert svc["Restart"] == "on-failure" and float(svc["RestartSec"]) > 0
    assert svc["KillSignal"] == "SIGTERM" and int(svc["TimeoutStopSec"]) >= 10
    assert int(svc["LimitNOFILE"]) >= 4096
    assert svc["MemoryMax"]
    assert svc["NoNewPrivileges"] == "yes"
    assert svc["ProtectSystem"] == "strict"
    assert svc["ReadWritePaths"] == "/var/lib/sor" and svc["WorkingDirectory"] == "/var/lib/sor"
    text = (DEPLOY / "sor.service").read_text()
    assert "#CPUAffinity=" in text and "#Nice=" in text
    assert _unit()["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    # The unit as written points at /opt/sor; verify its directives with an
    # executable that exists here.
    unit = tmp_path / "sor.service"
    unit.write_text((DEPLOY / "sor.service").read_text().replace("/opt/sor/bin/sor", "/bin/true"))
    res = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                         check=False)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "Unknown" not in out and "ignoring" not in out, out
