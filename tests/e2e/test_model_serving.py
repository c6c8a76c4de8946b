"""The daemon with the venue model: it serves it, falls back to the static
waterfall when the model is missing or corrupt (counted, orders still
route), and refuses to start on a model built for other features."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from sim.config import SimClusterConfig, dump_config
from sim.harness import Cluster, localize, poll_until
from sim.oms import SimOms
from tests.e2e.conftest import e2e_config

pytestmark = pytest.mark.e2e

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "default" / "model.onnx"


def _ml_config(base: SimClusterConfig, work: Path, model: Path) -> SimClusterConfig:
    cfg = e2e_config(base)
    r = msgspec.structs.replace
    cfg = r(cfg, waterfall=r(cfg.waterfall, planner="ml"), model=r(cfg.model, path=str(model)))
    return localize(cfg, work)


def _route_some(cfg: SimClusterConfig, work: Path, n: int) -> tuple[dict[str, float], list[str]]:
    cluster = Cluster(cfg, work)
    cluster.start(timeout_s=60)
    oms = SimOms("127.0.0.1", cfg.oms.port, sender_comp_id=cfg.oms.target_comp_id,
                 target_comp_id=cfg.oms.sender_comp_id, state_dir=work / "oms")
    try:
        oms.start()
        ids = [oms.send_order("S1", "1", 50, price="190.05", tif="3") for _ in range(n)]
        assert oms.wait_all_done(ids, timeout_s=20), cluster.log("daemon")[-3000:]
        filled = [c for c in ids if any(r.get(39) == "2" for r in oms.reports(c))]
        assert poll_until(lambda: cluster.metrics().get("sor_parent_orders_total", 0) >= 0, 5)
        return cluster.metrics(), filled
    finally:
        oms.stop()
        cluster.stop()


def _fallbacks(m: dict[str, float], reason: str) -> float:
    return m.get(f'sor_model_fallbacks_total{{reason="{reason}"}}', 0.0)


def test_serves_the_default_model(default_config: SimClusterConfig, tmp_path: Path) -> None:
    cfg = _ml_config(default_config, tmp_path, DEFAULT_MODEL)
    m, filled = _route_some(cfg, tmp_path, 5)
    assert len(filled) == 5
    version = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())["version"]
    assert m.get(f'sor_model_info{{version="{version}"}}') == 1.0
    assert sum(v for k, v in m.items() if k.startswith("sor_model_fallbacks_total")) == 0
    assert m.get('sor_stage_seconds_count{stage="scoring"}', 0) >= 5


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_falls_back_to_static_and_counts(default_config: SimClusterConfig, tmp_path: Path, damage: str) -> None:
    model = tmp_path / "model" / "model.onnx"
    model.parent.mkdir()
    if damage == "corrupt":
        shutil.copy(DEFAULT_MODEL, model)
        shutil.copy(DEFAULT_MODEL.with_suffix(".json"), model.with_suffix(".json"))
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0xFF
        model.write_bytes(bytes(data))
    cfg = _ml_config(default_config, tmp_path, model)
    m, filled = _route_some(cfg, tmp_path, 6)
    assert len(filled) == 6, "every order still routes (static waterfall)"
    assert _fallbacks(m, damage) == 6
    assert m.get('sor_model_info{version="static"}') == 1.0


def test_refuses_to_start_on_a_feature_mismatch(default_config: SimClusterConfig, tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    shutil.copy(DEFAULT_MODEL, model)
    manifest = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    feats = manifest["features"]
    feats[0], feats[1] = feats[1], feats[0]
    model.with_suffix(".json").write_text(json.dumps(manifest))
    cfg = _ml_config(default_config, tmp_path, model)
    path = tmp_path / "sor.toml"
    path.write_text(dump_config(cfg))
    proc = subprocess.run([sys.executable, "-m", "router.cli", "run", "--config", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 2, proc.stderr
    assert "refusing to start" in proc.stderr and "position 0" in proc.stderr, proc.stderr
