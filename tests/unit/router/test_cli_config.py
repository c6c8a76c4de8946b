"""`sor check-config` as operators run it: a real subprocess, exit status 2
and the field named on stderr for a bad file, 0 for the shipped default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DEFAULT_TEXT = (REPO / "config" / "sor.toml").read_text()


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router.cli", "check-config", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )


def _bad(old: str, new: str) -> str:
    assert old in DEFAULT_TEXT
    return DEFAULT_TEXT.replace(old, new, 1)


def test_default_config_ok() -> None:
    res = _check("--config", "config/sor.toml")
    assert res.returncode == 0, res.stderr
    assert "config/sor.toml: ok (3 venues, 2 symbols)" in res.stdout
    assert res.stderr == ""


def test_default_config_is_the_default_path() -> None:
    res = _check()
    assert res.returncode == 0, res.stderr
    assert "ok (3 venues, 2 symbols)" in res.stdout


def test_copied_good_config_ok(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(DEFAULT_TEXT)
    res = _check("--config", str(good))
    assert res.returncode == 0, res.stderr
    assert f"{good}: ok" in res.stdout


def test_router_only_config_ok(tmp_path: Path) -> None:
    # No [sim], [scenario] or [venues.sim]: a config for real venues.
    good = tmp_path / "real.toml"
    good.write_text('[oms]\nport = 1\n[[symbols]]\nsymbol = "X"\n[[venues]]\nname = "V"\nkind = "lit"\n'
                    'port = 2\ntarget_comp_id = "V"\n[waterfall]\nvenues = ["V"]\nfinal_action = "cancel"\n')
    res = _check("--config", str(good))
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{good}: ok (1 venues, 1 symbols)\n"


BAD = {
    "unknown nested key": (_bad("levels = 5", "levelz = 5"), ["venues[0].sim", "levelz"]),
    "unknown top-level key": (_bad("[oms]", "bogus = 1\n[oms]"), ["bogus"]),
    # The simulator's sections are checked too when the file has them.
    "unknown key in [sim]": (_bad("mid_step_ms = 100", "mid_step_msx = 100"), ["sim", "mid_step_msx"]),
    "bad sim value": (_bad("contra_prob = 0.4", "contra_prob = 4"), ["venues[2].sim.contra_prob", "got 4"]),
    "wrong type": (_bad("port = 9870", 'port = "abc"'), ["oms.port", "int"]),
    "missing field": (_bad('target_comp_id = "LIT1"\n', ""), ["venues[0]", "target_comp_id"]),
    "duplicate venue": (_bad('name = "LIT2"', 'name = "LIT1"'), ["duplicate venue", "LIT1"]),
    "waterfall venue not defined": (_bad('"DARK1", "LIT1", "LIT2"', '"DARK1", "NOPE"'),
                                    ["waterfall.venues[1]", "NOPE"]),
    "rest_venue missing": (_bad('rest_venue = "LIT1"\n', ""), ["waterfall.rest_venue"]),
    "off-tick ref_price": (_bad('"190.00"', '"190.001"'), ["symbols[0].ref_price"]),
    "invalid TOML": (_bad("[oms]", "[oms"), ["not valid TOML"]),
}


@pytest.mark.parametrize(("text", "needles"), list(BAD.values()), ids=list(BAD))
def test_bad_config_exits_2_and_names_field(tmp_path: Path, text: str, needles: list[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    res = _check("--config", str(bad))
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stdout == ""
    assert res.stderr.startswith(f"sor: bad config: {bad}: "), res.stderr
    for needle in needles:
        assert needle in res.stderr, (needle, res.stderr)
    assert "Traceback" not in res.stderr


def test_missing_file_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    res = _check("--config", str(missing))
    assert res.returncode == 2
    assert str(missing) in res.stderr and "cannot read config" in res.stderr
    assert "Traceback" not in res.stderr
