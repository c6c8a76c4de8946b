"""The operator console's side of the admin API: its page served without a
token (and with nothing in it), its state only with one (refusals counted),
the state read on the engine's loop, decisions explained, query strings
kept out of the log, ``sor ctl console``, and the page shipped in the
package. The page in a browser: tests/e2e/test_console.py."""

from __future__ import annotations

import fnmatch
import http.client
import json
import logging
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from router.admin import console
from router.admin.client import console_url
from router.admin.console import ASSET_PATHS, ConsoleView
from router.cli import main
from router.domain.decision import Decision
from router.domain.plan import Plan, Slice, Wave
from router.domain.types import TimeInForce
from router.features.catalogue import FEATURE_INDEX, N_FEATURES
from router.learning.venuestats import VenueStats
from router.runtime.driver import DECISIONS_KEPT
from sim.harness import free_port
from tests.unit.router.admin.test_server import TOKEN, Rig

ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.close()


def get(rig: Rig, path: str, token: str | None = None, method: str = "GET") -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection(rig.host, rig.port, timeout=10)
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    conn.request(method, path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body, {k.lower(): v for k, v in resp.getheaders()}


# ------------------------------------------------------------------ the page


def test_the_page_is_served_without_a_token_and_holds_no_state(rig: Rig) -> None:
    rig.order("c1")
    types = {"/console": "text/html", "/console/": "text/html", "/console/index.html": "text/html",
             "/console/console.js": "text/javascript",
             "/console/console.css": "text/css", "/console/favicon.svg": "image/svg+xml"}
    assert set(types) == set(ASSET_PATHS)
    for path, ctype in types.items():
        status, body, headers = get(rig, path)
        assert status == 200, path
        assert headers["content-type"].startswith(ctype)
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
        assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"
        assert b"LIT1" not in body and b"AAPL" not in body, "static: nothing of the router's state"
    page = get(rig, "/console")[1].decode()
    assert 'src="/console/console.js"' in page and "://" not in page, "nothing loaded from elsewhere"
    assert rig.metric("sor_admin_refused_total", reason="no_token") == 0
    assert rig.metric("sor_admin_requests_total", action="console_state") == 0


def test_only_the_page_is_open_everything_else_still_needs_the_token(rig: Rig) -> None:
    assert get(rig, "/console", method="POST")[0] == 401, "the page's paths are open to GET only"
    assert get(rig, "/console/nope")[0] == 401
    assert get(rig, "/console/nope", TOKEN)[0] == 404
    assert get(rig, "/console/../status")[0] == 401
    assert rig.metric("sor_admin_refused_total", reason="no_token") == 3


@pytest.mark.parametrize("token,reason", [(None, "no_token"), ("wrong", "bad_token"), (TOKEN + "x", "bad_token")])
def test_the_state_is_refused_without_the_token_and_counted(rig: Rig, token: str | None, reason: str) -> None:
    rig.order("c1")
    status, body, headers = get(rig, "/console/state", token)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    out = json.loads(body)
    assert set(out) == {"ok", "error"}, "nothing of the state"
    assert rig.metric("sor_admin_refused_total", reason=reason) == 1
    assert rig.metric("sor_admin_requests_total", action="console_state") == 0


def test_missing_page_files_leave_the_api_working(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    def gone() -> dict[str, console.Asset]:
        raise FileNotFoundError("index.html")

    monkeypatch.setattr("router.admin.server.load_assets", gone)
    r = Rig(tmp_path)
    try:
        assert "console's files are missing" in caplog.text
        assert get(r, "/console")[0] == 503
        assert get(r, "/console/state", TOKEN)[0] == 200
    finally:
        r.close()


# ------------------------------------------------------------------ the state


def test_the_state_shows_sessions_parents_with_children_decisions_and_limits(rig: Rig) -> None:
    rig.order("c1")
    rig.order("c2", symbol="LOTS")
    status, st, _ = rig.call("GET", "/console/state")
    assert status == 200 and st["ok"]
    assert st["sessions"]["venues"] == {"LIT1": True, "LIT2": True, "DARK1": True}
    assert st["model"]["version"] == "static"
    assert st["venue_kinds"] == {"LIT1": "lit", "LIT2": "lit", "DARK1": "dark"}
    assert st["venue_stats"] is None, "this engine was built without venue statistics"
    assert st["unix_ms"] > 0 and st["now_ns"] > 0
    parents = st["parents"]
    assert [p["cl_ord_id"] for p in parents] == ["c2", "c1"], "newest first"
    p = parents[1]
    assert (p["symbol"], p["side"], p["qty"], p["price"], p["state"]) == ("AAPL", "BUY", 100, "190.00", "NEW")
    assert [c["venue"] for c in p["children"]] == ["DARK1"] and p["children"][0]["open"]
    decisions = st["decisions"]
    assert [d["parent"]["cl_ord_id"] for d in decisions] == ["c2", "c1"]
    assert decisions[1]["order_id"] == p["order_id"] and decisions[1]["strategy"] == "static"
    assert decisions[1]["plan"]["waves"][0] == [{"venue": "DARK1", "weight": 1.0, "tif": "IOC", "limit": "190.00",
                                                  "timeout_ms": None}]
    assert st["limits"]["limits"]["collar_bps"] == rig.engine.risk.config.collar_bps
    assert rig.metric("sor_admin_requests_total", action="console_state") == 1


def test_the_driver_keeps_the_last_decisions_only(rig: Rig) -> None:
    for i in range(DECISIONS_KEPT + 7):
        rig.order(f"c{i}", symbol="LOTS" if i % 2 else "AAPL")
    assert len(rig.driver.decisions) == DECISIONS_KEPT
    _, st, _ = rig.call("GET", "/console/state")
    ids = [d["parent"]["cl_ord_id"] for d in st["decisions"]]
    assert ids == [f"c{i}" for i in range(DECISIONS_KEPT + 6, 6, -1)]
    assert len(st["parents"]) == console.PARENTS_SHOWN


def test_a_decision_says_why_each_venue_stands_where_it_does(rig: Rig) -> None:
    feats = np.zeros((3, N_FEATURES), dtype=np.float32)
    feats[:, FEATURE_INDEX["spread_bps"]] = 1.05
    feats[:, FEATURE_INDEX["venue_fill_rate"]] = [0.4, 0.8, 0.5]
    scores = np.array([[2.0, 0.9, -0.5], [1.0, 0.95, float("nan")], [3.0, 0.3, -4.0]])
    plan = Plan(name="ml:sequential", waves=(Wave(slices=(Slice(venue="LIT2", tif=TimeInForce.IOC,
                                                                limit_ticks=19005),)),))
    d = Decision(order_id="T-P9", ts_ns=5, plan=plan, venues=("LIT1", "LIT2", "DARK1"), features=feats,
                 scores=scores, costs=np.array([2.5, 1.2, float("inf")]), ranking=("LIT2", "LIT1"),
                 strategy="sequential", model_version="mlp-1", propensity=0.9, stages_ns=(("scoring", 12_345),))
    view = rig.server.console
    rig.order("c1")
    info = rig.on_loop(lambda: view.collect({})).decisions[0][1]  # an AAPL parent, as the loop copied it
    out = view.decision_json(d, info)
    json.dumps(out, allow_nan=False)  # a browser's JSON has no NaN or Infinity
    assert [(v["venue"], v["rank"]) for v in out["venues"]] == [("LIT2", 1), ("LIT1", 2), ("DARK1", None)]
    lit2 = out["venues"][0]
    assert lit2["cost_bps"] == 1.2 and lit2["scores"] == {"cost_bps": 1.0, "fill_prob": 0.95, "markout_bps": None}
    assert lit2["features"]["venue_fill_rate"] == pytest.approx(0.8) and lit2["kind"] == "lit"
    assert out["venues"][2]["cost_bps"] is None and out["venues"][2]["kind"] == "dark"
    assert out["market"]["spread_bps"] == pytest.approx(1.05) and "venue_fill_rate" not in out["market"]
    assert (out["strategy"], out["model_version"], out["fallback"], out["propensity"]) == (
        "sequential", "mlp-1", None, 0.9)
    assert out["plan"]["waves"][0][0]["limit"] == "190.05", "the parent's symbol prices the plan"
    assert out["stages_us"] == {"scoring": 12.3}


def test_venue_statistics_agree_with_the_engines_readers(rig: Rig) -> None:
    stats = VenueStats(list(rig.engine.venue_names), ["AAPL"])
    now = rig.driver.clock_ns()
    for _ in range(4):
        stats.record_child(1, 100, 100, now - 5_000_000, now - 4_000_000, False, now)
    stats.record_child(0, 500, 100, now - 5_000_000, now - 1_000_000, True, now)
    stats.record_fill(1, 0, 1, 19001, 100, now - 6_000_000_000)
    stats.update_markouts(now, lambda s: 2 * 19000)
    view = ConsoleView(rig.cfg, rig.engine, rig.driver, stats)
    scratch = stats._scratch.copy()
    st = rig.on_loop(lambda: view.render(view.collect({})))["venue_stats"]
    assert np.array_equal(stats._scratch, scratch), "the shared scratch buffer is not touched"
    assert st["buckets"] == ["<200", "200-1000", ">=1000"] and st["half_life_s"] == 300.0
    by = {v["venue"]: v for v in st["venues"]}
    t = rig.driver.clock_ns()
    assert by["LIT2"]["by_size"][0]["fill_rate"] == pytest.approx(stats.fill_rate(1, 0, t), abs=1e-3)
    assert by["LIT2"]["fill_rate"] == by["LIT2"]["by_size"][0]["fill_rate"], "one bucket has children"
    assert by["LIT2"]["children"] == pytest.approx(4.0, abs=0.1)
    assert by["LIT2"]["markout_bps"]["5s"] == pytest.approx(stats.markout_bps(1, 1, t), abs=0.01)
    assert by["LIT2"]["markout_bps"]["5s"] < 0 and by["LIT2"]["markouts"]["5s"] == pytest.approx(1.0, abs=0.1)
    assert by["LIT1"]["partial_freq"] > 0 and by["DARK1"]["children"] == 0.0
    assert by["DARK1"]["fill_rate"] == stats.prior_fill_rate, "no data: the prior"


# ---------------------------------------------------------------- the log


def test_a_query_string_is_never_logged(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    secret = "tok-in-the-wrong-place"
    with caplog.at_level(logging.DEBUG, logger="sor.admin"):
        assert get(rig, f"/console?token={secret}")[0] == 200
        assert get(rig, f"/status?token={secret}")[0] == 401
        assert get(rig, f"/console/state?x={secret}", TOKEN)[0] == 200
    assert "admin: refused GET /status from 127.0.0.1" in caplog.text
    assert "GET /console HTTP/1.1" in caplog.text, "the request line is logged, less its query"
    assert secret not in caplog.text
    assert TOKEN not in caplog.text


# ---------------------------------------------------------------- sor ctl


def test_sor_ctl_console_prints_the_url_with_the_token_in_its_fragment(
        rig: Rig, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = ["ctl", "--config", str(rig.config_path)]
    assert main([*cfg, "console"]) == 0
    assert capsys.readouterr().out.strip() == f"http://127.0.0.1:{rig.port}/console#token={TOKEN}"
    assert main([*cfg, "console", "--no-token"]) == 0
    assert capsys.readouterr().out.strip() == f"http://127.0.0.1:{rig.port}/console"
    assert main([*cfg, "--json", "console"]) == 0
    assert json.loads(capsys.readouterr().out) == {"url": f"http://127.0.0.1:{rig.port}/console#token={TOKEN}",
                                                   "reachable": True}
    gone = tmp_path / "gone.toml"
    gone.write_text(rig.config_path.read_text().replace(f"port = {rig.port}\n", f"port = {free_port()}\n"))
    assert main(["ctl", "--config", str(gone), "console"]) == 2
    out = capsys.readouterr()
    assert out.out.startswith("http://127.0.0.1:") and "cannot reach the admin API" in out.err
    rig.token_file.write_text("not-the-token\n")
    assert main([*cfg, "console"]) == 1
    assert "HTTP 401" in capsys.readouterr().err


def test_the_console_url_is_one_a_browser_on_this_host_opens() -> None:
    assert console_url("127.0.0.1", 9109, "a/b+c") == "http://127.0.0.1:9109/console#token=a%2Fb%2Bc"
    assert console_url("0.0.0.0", 1, None) == "http://127.0.0.1:1/console"
    assert console_url("::", 1, None) == "http://[::1]:1/console"
    assert console_url("::1", 1, None) == "http://[::1]:1/console"
    assert console_url("10.0.0.5", 1, None) == "http://10.0.0.5:1/console"


# ------------------------------------------------------------- packaging


def test_the_page_ships_in_the_package() -> None:
    """A non-editable install has the console: its package is found and
    every file of the page matches the package data."""
    tool: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    include = tool["packages"]["find"]["include"]
    packages = {".".join(f.parent.relative_to(ROOT).parts) for top in ("router", "fix", "sim", "models")
                for f in (ROOT / top).rglob("__init__.py")}
    found = {pkg for pkg in packages if any(fnmatch.fnmatchcase(pkg, pat) for pat in include)}
    assert found == packages, "every package ships, not only the top-level ones"
    assert {"router.admin", "router.admin.console", "router.engine", "router.runtime"} <= found
    globs = tool["package-data"]["router.admin.console"]
    folder = ROOT / "router" / "admin" / "console"
    shipped = {p.name for p in folder.iterdir() if p.is_file() and p.suffix != ".py"}
    assert shipped == set(ASSET_PATHS.values())
    assert all(any(fnmatch.fnmatch(name, g) for g in globs) for name in shipped)
    assert {name: len(a.body) > 0 for name, a in console.load_assets().items()} == dict.fromkeys(shipped, True)
