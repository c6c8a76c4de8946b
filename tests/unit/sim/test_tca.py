"""``sor tca``: a journal's post-trade analysis by strategy, model and
venue, checked against the outcomes it is built from; the page is one
self-contained file; the time window selects parents by arrival."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from sim.backtest import mean_ci
from sim.journal_run import read_journal
from sim.tca import analyse, format_html, format_text, parse_time, run_tca
from tests.unit.router.journal.conftest import Journaled, make_journal


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Journaled:
    return make_journal(tmp_path_factory.mktemp("tca") / "sor.sqlite", parents=80)


def test_groups_add_up_and_agree_with_the_outcomes(journal: Journaled) -> None:
    rep = analyse(str(journal.path))
    run = read_journal(journal.path)
    done = list(run.finished())
    assert rep["parents"] == len(done) > 50
    assert sum(r["parents"] for r in rep["by_strategy"].values()) == len(done)
    assert sum(r["parents"] for r in rep["by_model"].values()) == len(done)
    want = mean_ci([lg.result.shortfall_bps() for lg in done])
    assert all(math.isclose(a, b) for a, b in zip(rep["all"]["shortfall_bps"], want))
    venues = {lab.venue for lab in run.children.values()}
    assert set(rep["by_venue"]) == venues
    for v, row in rep["by_venue"].items():
        labs = [lab for lab in run.children.values() if lab.venue == v]
        assert row["children"] == len(labs) and row["filled"] == sum(f[1] for lab in labs for f in lab.fills)
        assert row["fill_rate"][1] <= row["fill_rate"][0] <= row["fill_rate"][2]


def test_text_json_and_a_self_contained_page(journal: Journaled, tmp_path: Path) -> None:
    j, h = tmp_path / "tca.json", tmp_path / "tca.html"
    assert run_tca(str(journal.path), None, None, str(j), str(h)) == 0
    rep = json.loads(j.read_text())
    text = format_text(rep)
    assert "strategy" in text and "venue" in text and "95% intervals" in text
    page = h.read_text()
    assert page.count("data:image/png;base64,") >= 3
    assert not re.search(r"""(src|href)=["']https?://""", page), "nothing fetched from a network"
    assert all(v in page for v in rep["by_venue"])
    assert format_html(rep) == page


def test_the_window_selects_parents_by_arrival(journal: Journaled) -> None:
    run = read_journal(journal.path)
    first, last = run.span_ns
    mid = (first + last) // 2
    early = analyse(str(journal.path), until=str(mid))
    late = analyse(str(journal.path), since=str(mid + 1))
    assert early["parents"] + late["parents"] == analyse(str(journal.path))["parents"]
    assert early["parents"] > 0 and late["parents"] > 0
    assert analyse(str(journal.path), until=str(first - 1))["parents"] == 0


def test_parse_time() -> None:
    assert parse_time("1000") == 1000
    assert parse_time("1970-01-01T00:00:01Z") == 1_000_000_000
    assert parse_time("1970-01-01T00:00:01") == 1_000_000_000, "UTC when no zone is given"
    assert parse_time("1970-01-01T01:00:01+01:00") == 1_000_000_000
    assert parse_time(None) is None
