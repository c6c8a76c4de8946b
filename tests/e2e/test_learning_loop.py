"""The learning loop end to end, on the post-change market of the regime
scenario (every regime change in force from the start: the generous pool
leaks, lit depth moved):

1. the daemon routes the scenario's parents through its sim venues with
   the shipped model, exploring at the default budget, journaling;
2. ``sor train --journal`` trains a candidate on that journal (the daemon
   still running, the journal still being written);
3. ``sor model add`` / ``sor model validate --journal``: the gate's
   simulation, off-policy and latency parts, its report, its verdict in
   the registry, and promotion following the verdict (a failed gate is
   refused unless skipped on the record);
4. ``sor ctl model load`` the candidate as a shadow, then a 20% canary,
   then ``sor ctl model promote`` it to champion, and the registry's
   aliases follow; every parent ends, every report obeys the invariants,
   and the journal holds each step.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from router.domain.events import ModelsChanged
from router.journal import records
from router.journal.store import SqliteStore
from sim.config import dump_config
from sim.harness import Cluster, free_port, localize, poll_until
from sim.invariants import check_all
from sim.oms import SimOms
from sim.report import scenario_config
from tests.e2e.flows import ScenarioFlow, wait_books

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "default"
JOURNALED = 3000
PACE_S = 0.02
"""50 parents a second, ten times the scenario's own pace: the gate's
simulation plays the same pace (the scenario file written below), so the
market the model learns from is the one it is judged on."""


def _sor(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_journal_retrain_validate_shadow_canary_champion(tmp_path: Path) -> None:
    cfg = scenario_config("regime:after")
    assert cfg.scenario is not None
    cfg = msgspec.structs.replace(cfg, scenario=msgspec.structs.replace(
        cfg.scenario, flow=msgspec.structs.replace(cfg.scenario.flow, interval_ms=PACE_S * 1000)))
    token = tmp_path / "admin.token"
    token.write_text("e2e-" + secrets.token_hex(16) + "\n")
    token.chmod(0o600)
    r = msgspec.structs.replace
    cfg = localize(r(cfg, admin=r(cfg.admin, enabled=True, port=free_port(), token_file=str(token)),
                     model=r(cfg.model, path=str(SHIPPED / "model.onnx"),
                             # The canary is judged elsewhere (test_canary): here it only routes.
                             canary=r(cfg.model.canary, min_parents=10_000)),
                     router=r(cfg.router, overload=r(cfg.router.overload, enabled=False))), tmp_path)
    config = tmp_path / "sor.toml"
    config.write_text(dump_config(cfg))
    reg = tmp_path / "registry"
    journal = cfg.journal.path

    cluster = Cluster(cfg, tmp_path, venues_in_one=True)
    cluster.start(timeout_s=60)
    oms = SimOms("127.0.0.1", cfg.oms.port, sender_comp_id=cfg.oms.target_comp_id,
                 target_comp_id=cfg.oms.sender_comp_id, state_dir=tmp_path / "oms")
    flow = ScenarioFlow(cfg, oms, JOURNALED + 600, PACE_S)
    try:
        oms.start()
        wait_books(cluster, cfg)
        flow.send(JOURNALED)
        assert oms.wait_all_done(flow.sent, timeout_s=60)

        # 2. train on the live journal
        t = _sor("train", "--journal", journal, "--out", str(tmp_path / "cand"), "--quiet")
        assert t.returncode == 0, t.stderr[-3000:]
        cand = json.loads((tmp_path / "cand" / "model.json").read_text())
        src = cand["training"]["source"]["journal"]
        assert src["decisions"] >= JOURNALED * 0.95 and src["explored"] > 20, src

        # 3. the registry and the gate
        base = ["model", "--registry", str(reg)]
        assert _sor(*base, "add", str(SHIPPED)).returncode == 0
        shipped_version = json.loads((SHIPPED / "model.json").read_text())["version"]
        p = _sor(*base, "promote", shipped_version, "--to", "champion", "--skip-gate", "the shipped model")
        assert p.returncode == 0, p.stderr
        assert _sor(*base, "add", str(tmp_path / "cand")).returncode == 0
        v = _sor(*base, "validate", cand["version"], "--journal", journal, "--scenarios", str(config),
                 "--seeds", "1", "2", "3", "4", "5", "--out", str(tmp_path / "val"))
        print(v.stdout)
        assert (tmp_path / "val" / "report.json").exists(), v.stderr[-3000:]
        rep = json.loads((tmp_path / "val" / "report.json").read_text())
        (row,) = rep["simulation"]["rows"]
        assert row["parents"] == 5 * 500 and row["verdict"] in ("better", "worse", "no different")
        ope = rep["journal"]["ope"]
        assert ope["decisions"] >= JOURNALED * 0.9 and set(ope["models"]) == {"candidate", "champion"}
        assert (tmp_path / "val" / "report.png").stat().st_size > 1000
        gate = json.loads((reg / cand["version"] / "model.json").read_text())["validation"]["gate"]
        assert gate["passed"] is rep["passed"] and (v.returncode == 0) is rep["passed"]
        # Promotion follows the verdict. Whether this short, fast journal
        # yields a better model varies from run to run (README: the learning
        # loop); what must hold is that a failed gate blocks the promotion
        # unless an operator skips it on the record.
        promote = [*base, "promote", cand["version"], "--to", "challenger"]
        if rep["passed"]:
            assert _sor(*promote).returncode == 0
        else:
            refused = _sor(*promote)
            assert refused.returncode == 1 and "validation gate failed" in refused.stderr, refused.stderr
            assert _sor(*promote, "--skip-gate", "e2e: the loop goes on").returncode == 0

        # 4. shadow, canary, champion in the running daemon
        ctl = ["ctl", "--config", str(config), "--json", "model"]
        s = _sor(*ctl, "load", "challenger", "--registry", str(reg), "--mode", "shadow")
        assert s.returncode == 0, s.stdout + s.stderr
        shadowed = flow.send(50)
        assert poll_until(lambda: cluster.metrics().get('sor_stage_seconds_count{stage="shadow"}', 0) >= 50, 20)
        c = _sor(*ctl, "mode", "canary", "--fraction", "0.2")
        assert c.returncode == 0 and json.loads(c.stdout)["models"]["mode"] == "canary", c.stdout
        canaried = flow.send(400)
        pr = _sor(*ctl, "promote")
        assert pr.returncode == 0, pr.stdout + pr.stderr
        final = [*base, "promote", cand["version"], "--to", "champion"]
        if not rep["passed"]:
            final += ["--skip-gate", "e2e: promoted after its canary"]
        assert _sor(*final).returncode == 0
        after = flow.send(50)
        assert oms.wait_all_done(flow.sent, timeout_s=60)
        check_all({cl: oms.answers(cl) for cl in flow.sent})
        st = json.loads(_sor(*ctl, "status").stdout)
        assert st["champion"] == cand["version"] and st["challenger"] is None
        aliases = json.loads((reg / "aliases.json").read_text())
        assert aliases["champion"] == cand["version"] and aliases["challenger"] is None
    finally:
        oms.stop()
        cluster.stop()

    roles = _journal_roles(journal)
    assert [c.mode for c in roles["changes"]] == ["shadow", "canary", "off"]
    by_cl: dict[str, Any] = roles["decisions"]
    assert all(by_cl[cl].shadow is not None for cl in shadowed)
    on_canary = sum(by_cl[cl].role == "challenger" for cl in canaried)
    assert 0.12 * len(canaried) < on_canary < 0.28 * len(canaried), on_canary
    assert all(by_cl[cl].model_version == cand["version"] and by_cl[cl].role == "champion" for cl in after)


def _journal_roles(path: str) -> dict[str, Any]:
    store = SqliteStore(path, readonly=True)
    changes: list[ModelsChanged] = []
    decisions: dict[str, Any] = {}
    last_cl = None
    try:
        for info in store.sessions():
            for st in records.steps(store.records(info.session_id)):
                ev = records.decode_event(st.event)
                if isinstance(ev, ModelsChanged):
                    changes.append(ev)
                last_cl = getattr(ev, "cl_ord_id", last_cl)
                if st.decision is not None and last_cl is not None:
                    decisions[last_cl] = records.decode_decision(st.decision)
    finally:
        store.close()
    return {"changes": changes, "decisions": decisions}
