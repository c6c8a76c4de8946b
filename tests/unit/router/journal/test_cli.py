"""``sor journal JOURNAL``: the listing, ``--parent`` (the story),
``--export-parquet`` (the tables and their row counts) and the errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from router.cli import main

from .conftest import RESTING, Journaled

ROOT = Path(__file__).resolve().parents[4]


def _sor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router.cli", "journal", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_parent_prints_the_story(journaled: Journaled, capsys: pytest.CaptureFixture[str]) -> None:
    d = journaled.decisions[-1]
    assert main(["journal", str(journaled.path), "--parent", d.order_id, "--session", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"parent {d.order_id} (ClOrdID ")
    assert f"strategy {d.strategy}" in out and "timeline" in out and "outcome: " in out
    assert main(["journal", str(journaled.path), "--parent", RESTING, "--oms-session", "OMS"]) == 0
    assert "OrderCancelRequest REST1-X" in capsys.readouterr().out


def test_a_bad_id_is_named_and_exits_1(journaled: Journaled) -> None:
    out = _sor(str(journaled.path), "--parent", "NO-SUCH-ID")
    assert out.returncode == 1 and out.stdout == ""
    assert "no parent 'NO-SUCH-ID'" in out.stderr
    bad_session = _sor(str(journaled.path), "--parent", RESTING, "--session", "42")
    assert bad_session.returncode == 2 and "no session 42" in bad_session.stderr


def test_export_parquet_writes_the_tables_and_counts_rows(journaled: Journaled, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out_dir = tmp_path / "analysis"
    out = _sor(str(journaled.path), "--export-parquet", str(out_dir), "--session", "1")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [ln.split(":")[0] for ln in lines] == [str(out_dir / f"{n}.parquet")
                                                  for n in ("decisions", "children", "fills", "oms_reports")]
    for ln in lines:
        path, rows = ln.rsplit(": ", 1)
        assert pq.read_table(path).num_rows == int(rows.split()[0])
    assert f": {len(journaled.decisions)} rows" in lines[0]


def test_listing_is_as_before(journaled: Journaled, tmp_path: Path) -> None:
    out = _sor(str(journaled.path))
    assert out.returncode == 0 and out.stdout.startswith("session 1: started ")
    assert f"decision {len(journaled.decisions)}" in out.stdout
    missing = _sor(str(tmp_path / "nothing.sqlite"))
    assert missing.returncode == 2 and "no journal at" in missing.stderr
    both = _sor(str(journaled.path), "--parent", "X", "--export-parquet", str(tmp_path))
    assert both.returncode == 2 and "not allowed with" in both.stderr
