"""`sor demo` runs the whole system and prints its summary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_completes_and_prints_the_summary() -> None:
    proc = subprocess.run([sys.executable, "-m", "router.cli", "demo", "--orders", "60", "--rate", "100"],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    for expected in ("parent orders: 60 sent", "fills by venue", "average price vs arrival mid",
                     "NewOrderSingle -> first ER", "invariants: OK", "stopped cleanly",
                     "journal: var/demo-journal.sqlite", "60/60 decisions identical"):
        assert expected in out, out
