"""The operator console in a real browser: headless Chromium (Debian's
``chromium``, driven by Playwright) against the daemon with the venue model,
its admin API on, the sim venues as processes and the sim OMS in the test.

What is checked:

- ``sor ctl console`` prints the URL; the page loads from it, takes the
  token from the fragment and wipes it from the address bar;
- it shows the live state: every venue session up, the parents resting at
  LIT1 with their children, a decision row per parent with its ranking,
  and the model version in service;
- Kill all (confirmed in the page's dialog) halts routing: the kill-switch
  metric says engaged, the resting parents end canceled naming the console,
  and a parent sent afterwards is rejected; Resume and a parent routes again;
- a page with a wrong token is refused once (counted) and stops asking;
  the page itself never makes a request without the token; the token is
  never in the daemon's log.

``SOR_CHROMIUM`` names another browser binary than Debian's ``chromium``.
``SOR_UPDATE_SCREENSHOT=1`` writes ``docs/console.png`` from the live state
(after waiting for the 5 s markouts); otherwise nothing in the tree changes.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from fix.codec import EXEC_TYPE, ORD_STATUS, TEXT
from sim.config import SimClusterConfig
from sim.harness import Cluster, free_port, localize, poll_until
from sim.oms import SimOms
from tests.e2e.conftest import e2e_config
from tests.e2e.flows import TIMEOUT_S, start_with_oms

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = ROOT / "models" / "default" / "model.onnx"
SCREENSHOT = ROOT / "docs" / "console.png"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 15_000
"""Playwright's deadline for anything the page should show."""


@pytest.fixture
def chromium() -> str:
    """Debian's chromium (``make deps-system`` installs it) and Playwright for
    Python; without them the test fails under CI and is skipped elsewhere."""
    path = os.environ.get("SOR_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    missing = []
    if not os.access(path, os.X_OK):
        missing.append(f"Debian's chromium package (make deps-system installs it; no {path})")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("Playwright for Python (the dev extras: pip install -e '.[dev]')")
    if missing:
        why = "the console test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path


def console_config(default: SimClusterConfig, work: Path) -> tuple[SimClusterConfig, str]:
    token = "console-" + secrets.token_hex(16)
    token_file = work / "admin.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    r = msgspec.structs.replace
    cfg = e2e_config(default)
    # The venue model decides, so the decisions show rankings and scores.
    cfg = r(cfg, waterfall=r(cfg.waterfall, planner="ml"), model=r(cfg.model, path=str(DEFAULT_MODEL)),
            admin=r(cfg.admin, enabled=True, port=free_port(), token_file=str(token_file)))
    return localize(cfg, work), token


@pytest.fixture
def live(default_config: SimClusterConfig, tmp_path: Path) -> Iterator[tuple[Cluster, SimOms, str]]:
    cfg, token = console_config(default_config, tmp_path)
    cluster, oms = start_with_oms(cfg, tmp_path)
    try:
        yield cluster, oms, token
    finally:
        oms.stop()
        codes = cluster.stop()
    assert codes == {"daemon": 0, "LIT1": 0, "LIT2": 0, "DARK1": 0}, (codes, cluster.log("daemon")[-3000:])


def acked(oms: SimOms, cl: str) -> bool:
    return any(r.get(EXEC_TYPE) == "0" for r in oms.reports(cl))


def flow(oms: SimOms, orders: list[tuple[str, str, int, str, str]]) -> list[str]:
    """Each order sent once the one before is answered (an IOC done, a DAY
    order acknowledged): the flow is gentle, whatever else runs on the box."""
    sent = []
    for symbol, side, qty, price, tif in orders:
        cl = oms.send_order(symbol, side, qty, price=price, tif=tif)
        assert oms.wait_for(lambda c=cl, t=tif: oms.is_done(c) if t == "3" else acked(oms, c), TIMEOUT_S), \
            oms.answers(cl)
        final = oms.reports(cl)[-1]
        assert final.get(ORD_STATUS) != "8", final
        sent.append(cl)
    return sent


def metric(cluster: Cluster, key: str) -> float:
    return cluster.metrics().get(key, 0.0)


def state(cluster: Cluster, token: str) -> dict[str, Any]:
    """GET /console/state as the page does."""
    a = cluster.cfg.admin
    conn = http.client.HTTPConnection(a.host, a.port, timeout=10)
    try:
        conn.request("GET", "/console/state", headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        out: dict[str, Any] = json.loads(resp.read())
        assert resp.status == 200, out
        return out
    finally:
        conn.close()


def screenshot(page: Any, cluster: Cluster, oms: SimOms, token: str) -> None:
    """docs/console.png: the console after the drill, with fresh flow (fills,
    resting parents), the 5 s markouts resolved and a filled decision in "why"."""
    from playwright.sync_api import expect

    def markouts() -> float:
        return sum(r["markouts"]["5s"] or 0 for r in state(cluster, token)["venue_stats"]["venues"])

    before = markouts()
    flow(oms, [(f"S{1 + i % 3}", "1" if i % 4 else "2", 80 + 20 * i, "190.05" if i % 4 else "189.95", "3")
               for i in range(6)])
    resting = flow(oms, [(f"S{4 + i % 3}", "1", 300 + 100 * i, "189.50", "0") for i in range(3)])
    assert poll_until(lambda: markouts() > before + 3, 15), "the new fills' 5 s markouts"
    expect(page.locator('#venues tr[data-venue="LIT2"] td').nth(10)).not_to_contain_text("n 0", timeout=WAIT_MS)
    expect(page.locator("#parents tr.parent")).to_have_count(len(resting), timeout=WAIT_MS)
    page.locator('#decisions tbody tr[data-order]').nth(len(resting)).click()
    page.evaluate("window.scrollTo(0, 0); document.getElementById('toast').hidden = true")
    page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_the_console_shows_the_live_router_and_its_kill_button_halts_routing(
        chromium: str, live: tuple[Cluster, SimOms, str]) -> None:
    """``chromium`` first: without a browser the cluster is never started."""
    from playwright.sync_api import expect, sync_playwright

    cluster, oms, token = live
    t0 = time.monotonic()
    # -------------------------------------------------- some live state
    # Marketable IOCs that fill at the touch (fills, markouts), and buys
    # below the bid that rest on LIT1 (open parents with their children).
    takers = flow(oms, [(f"S{1 + i % 3}", "1", 60 + 10 * i, "190.05", "3") for i in range(6)])
    resting = flow(oms, [(f"S{4 + i % 3}", "1", 200 + 100 * i, "189.50", "0") for i in range(4)])
    assert poll_until(lambda: metric(cluster, "sor_open_children") == len(resting), TIMEOUT_S)
    version = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())["version"]

    # ------------------------------------------ the URL `sor ctl` prints
    res = subprocess.run([sys.executable, "-m", "router.cli", "ctl", "--config", str(cluster.config_path),
                          "console"], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    url = res.stdout.strip()
    assert url.startswith(f"http://127.0.0.1:{cluster.cfg.admin.port}/console#token="), url

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            profile, executable_path=chromium, args=CHROMIUM_ARGS, viewport={"width": 1500, "height": 1000})
        try:
            # A tab with a wrong token: refused once, then it asks and stops.
            wrong = browser.new_page()
            wrong.goto(url.partition("#")[0] + "#token=not-the-token")
            expect(wrong.locator("#login")).to_be_visible(timeout=WAIT_MS)
            expect(wrong.locator("#conn")).to_have_text("token refused")

            page = browser.new_page()
            page.goto(url)
            # ------------------------------------------------ live state
            for v in ("LIT1", "LIT2", "DARK1"):
                expect(page.locator(f'#sessions [data-venue="{v}"]')).to_have_attribute("data-up", "true",
                                                                                         timeout=WAIT_MS)
            assert "#" not in page.url, "the token is wiped from the address bar"
            expect(page.locator("#model-version")).to_have_text(version)
            expect(page.locator("#trading")).to_have_attribute("data-state", "routing")
            rows = page.locator("#decisions tbody tr[data-order]")
            expect(rows).to_have_count(len(takers) + len(resting))
            expect(rows.first.locator("td").nth(4)).to_contain_text("\u203a")
            expect(page.locator("#why tr[data-why-venue]")).to_have_count(3)
            expect(page.locator("#parents tr.parent")).to_have_count(len(resting))
            expect(page.locator("#parents tr.child").first).to_be_visible()
            expect(page.locator('#venues tr[data-venue="LIT2"] td').nth(5)).not_to_have_text("—")

            # ------------------------------------------------- Kill all
            page.click("#kill-all")
            dialog = page.locator("#confirm")
            expect(dialog).to_be_visible()
            assert metric(cluster, 'sor_kill_switches{scope="all"}') == 0, "nothing before the confirmation"
            dialog.locator('input[name="reason"]').fill("console drill")
            page.click("#confirm-ok")
            expect(page.locator("#trading")).to_have_attribute("data-state", "killed", timeout=WAIT_MS)
            expect(page.locator("#banner")).to_contain_text("Kill switch (all) by console: console drill")
            expect(page.locator("#toast")).to_contain_text("kill switch (all) by console")
            assert metric(cluster, 'sor_kill_switches{scope="all"}') == 1
            assert oms.wait_all_done(resting, TIMEOUT_S)
            for cl in resting:
                final = oms.reports(cl)[-1]
                assert (final.get(ORD_STATUS), final.get(TEXT)) == ("4", "kill switch (all) by console: console drill")
            refused = oms.send_order("S1", "1", 50, price="190.05", tif="3")
            assert oms.wait_done(refused, TIMEOUT_S)
            rej = oms.reports(refused)[-1]
            assert rej.get(ORD_STATUS) == "8" and rej.get(TEXT).startswith("kill switch (all) by console"), rej
            expect(page.locator("#parents tr.parent")).to_have_count(0, timeout=WAIT_MS)

            # ----------------------------------------------------- Resume
            page.click('#halts [data-resume="all"]')
            expect(dialog).to_be_visible()
            page.click("#confirm-ok")
            expect(page.locator("#trading")).to_have_attribute("data-state", "routing", timeout=WAIT_MS)
            assert metric(cluster, 'sor_kill_switches{scope="all"}') == 0
            again = oms.send_order("S2", "1", 50, price="190.05", tif="3")
            assert oms.wait_done(again, TIMEOUT_S)
            assert oms.reports(again)[-1].get(ORD_STATUS) == "2", oms.reports(again)
            expect(page.locator("#actions tbody tr").first).to_contain_text("resume")

            # A venue disabled and enabled from its row, each confirmed.
            page.click('#venues [data-toggle="DARK1"]')
            page.click("#confirm-ok")
            expect(page.locator('#venues tr[data-venue="DARK1"]')).to_have_attribute("data-enabled", "false",
                                                                                     timeout=WAIT_MS)
            assert metric(cluster, 'sor_venue_disabled{venue="DARK1"}') == 1
            page.click('#venues [data-toggle="DARK1"]')
            page.click("#confirm-cancel")
            assert metric(cluster, 'sor_venue_disabled{venue="DARK1"}') == 1, "canceled: nothing done"
            page.click('#venues [data-toggle="DARK1"]')
            page.click("#confirm-ok")
            expect(page.locator('#venues tr[data-venue="DARK1"]')).to_have_attribute("data-enabled", "true",
                                                                                     timeout=WAIT_MS)
            # A kill of one symbol, then its own Resume in the list of what is in force.
            page.click("#kill-scope")
            dialog.locator('select[name="kind"]').select_option("symbol")
            dialog.locator('input[name="name"]').fill("S3")
            expect(dialog.locator('input[name="reason"]')).to_have_value("")
            page.click("#confirm-ok")
            expect(page.locator('#halts [data-kill="symbol S3"]')).to_be_visible(timeout=WAIT_MS)
            expect(page.locator("#trading")).to_have_attribute("data-state", "partial")
            assert metric(cluster, 'sor_kill_switches{scope="symbol"}') == 1
            page.click('#halts [data-resume="symbol S3"]')
            page.click("#confirm-ok")
            expect(page.locator("#trading")).to_have_attribute("data-state", "routing", timeout=WAIT_MS)
            assert metric(cluster, 'sor_kill_switches{scope="symbol"}') == 0
            expect(wrong.locator("#login")).to_be_visible()
            if os.environ.get("SOR_UPDATE_SCREENSHOT"):
                screenshot(page, cluster, oms, token)
        finally:
            browser.close()

    m = cluster.metrics()
    assert m.get('sor_admin_refused_total{reason="bad_token"}') == 1, "the wrong-token tab asked once, then stopped"
    assert m.get('sor_admin_refused_total{reason="no_token"}', 0) == 0, "the page never asks without the token"
    assert m.get('sor_admin_requests_total{action="console_state"}', 0) >= 3
    assert m.get('sor_admin_requests_total{action="kill"}') == 2
    assert token not in cluster.log("daemon"), "the token is never logged"
    print(f"\nconsole e2e: {time.monotonic() - t0:.1f} s after the cluster was up", flush=True)
