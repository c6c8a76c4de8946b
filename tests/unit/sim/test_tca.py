"""``sor tca``: a journal's post-trade analysis by strategy, model and
venue, checked against the outcomes it is built from; the page is one
self-contained file; the time window selects parents by arrival."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest

from router.domain.commands import SendChildOrder
from router.domain.events import EngineEvent
from router.domain.types import TimeInForce, Urgency, VenueKind
from router.engine import Step
from sim.backtest import Backtest, mean_ci
from sim.journal_run import BacktestJournal, read_journal
from sim.report import make_scorer, scenario_config
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


# ------------------------------------------------------------------ urgency


@dataclass
class _Mixed:
    path: Path
    sent: list[tuple[Urgency, str, TimeInForce]] = field(default_factory=list)
    """(the parent's urgency, venue, time in force) of every child sent."""


class _Children(BacktestJournal):
    def __init__(self, bt: Backtest, path: Path, out: _Mixed) -> None:
        self.bt, self.out = bt, out
        super().__init__(bt, path)

    def on_step(self, ev: EngineEvent, step: Step) -> None:
        eng = self.bt.engine
        for c in step.commands:
            if isinstance(c, SendChildOrder):
                self.out.sent.append((eng.parents[eng.children[c.child_id].parent_id].urgency, c.venue, c.tif))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> _Mixed:
    """The calm scenario's ML router with a flow that asks for every urgency."""
    cfg = scenario_config("calm")
    assert cfg.scenario is not None
    flow = msgspec.structs.replace(cfg.scenario.flow, low_prob=0.25, high_prob=0.35)
    cfg = msgspec.structs.replace(cfg, scenario=msgspec.structs.replace(cfg.scenario, flow=flow))
    out = _Mixed(tmp_path_factory.mktemp("tca-urgency") / "sor.sqlite")
    bt = Backtest(cfg, "ml", make_scorer(cfg, None), parents=60)
    jr = _Children(bt, out.path, out)
    bt.run(settle_s=2.0)
    jr.close()
    return out


def test_by_urgency_with_the_expected_completion_beside_the_realised(mixed: _Mixed) -> None:
    rep = analyse(str(mixed.path))
    run = read_journal(mixed.path)
    done = list(run.finished())
    assert set(rep["by_urgency"]) == {"low", "normal", "high"}
    assert sum(r["parents"] for r in rep["by_urgency"].values()) == rep["parents"] == len(done)
    for section in ("all", "by_strategy", "by_urgency", "by_model"):
        rows = [rep["all"]] if section == "all" else list(rep[section].values())
        for row in rows:
            m, lo, hi = row["expected_completion_ms"]
            assert math.isfinite(m) and lo <= m <= hi and math.isfinite(row["time_to_end_ms"][0])
    for u, row in rep["by_urgency"].items():
        group = [lg for lg in done if lg.urgency == u]
        want = mean_ci([lg.decision.expected_completion_ms or 0.0 for lg in group])
        assert all(math.isclose(a, b) for a, b in zip(row["expected_completion_ms"], want))
        realised = mean_ci([((lg.result.done_ns or 0) - lg.result.arrival_ns) / 1e6 for lg in group])
        assert all(math.isclose(a, b) for a, b in zip(row["time_to_end_ms"], realised))
    text = format_text(rep)
    assert "urgency" in text and "expected end ms" in text and "time to end ms" in text
    assert "By urgency" in format_html(rep)


def test_high_urgency_children_never_rest_in_the_dark(mixed: _Mixed) -> None:
    cfg = scenario_config("calm")
    dark = {v.name for v in cfg.venues if v.kind is VenueKind.DARK}
    rested = {u for u, venue, tif in mixed.sent if venue in dark and tif is TimeInForce.DAY}
    assert Urgency.HIGH not in rested
    assert rested, "the other urgencies did rest in the pool: the check means something"
    assert any(u is Urgency.HIGH and venue in dark for u, venue, _ in mixed.sent), "high still took the pool, IOC"
