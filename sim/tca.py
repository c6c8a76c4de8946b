"""``sor tca JOURNAL [--since ... --until ...]``: post-trade transaction cost
analysis of what a router did, from its journal.

The journal is read back as outcomes (``sim.journal_run``: the engine's own
arrival mid, its children, the venues' fills, the OMS reports), so the
figures use the definitions of the backtest (``sim.backtest.ParentResult``)
and of the training labels (``models.labels``). Grouped four ways:

* **by strategy**, **by urgency** (SorUrgency(7003), or the TimeInForce
  hint) and **by model version** (per parent): implementation
  shortfall against the arrival mid in bps, fees included, unfilled shares
  charged at the mid when the parent ended plus one tick; fill rate; time
  from arrival to the parent's end (its final report: its last child is
  done) beside the time its plan expected (``Decision.expected_completion_ms``,
  decisions that carry one); the quantity-weighted 1 s and 5 s
  markouts of its fills (negative: the price ran against the fill);
  reversion, the 5 s markout less the 1 s one (positive: the price came
  back after the first second, a sign of temporary impact);
* **by venue** (per child sent): the cost of its fills against the
  parent's arrival mid, fee included; its fill rate (filled / sent); time
  from sending to its first fill; the 1 s and 5 s markouts of its fills
  and their reversion.

Every figure is a mean with its 95% interval (normal approximation over
parents or children). Output: a text table, JSON, and one self-contained
HTML page with the plots embedded as PNGs (matplotlib), for a browser with
no network.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.labels import child_labels
from sim.backtest import ChildLabel, mean_ci
from sim.journal_run import JournalRun, Logged, read_journal

CI = tuple[float, float, float]
MARKOUT_5S_NS = 5_000_000_000


def parse_time(text: str | None) -> int | None:
    """ISO 8601 (UTC when no zone is given) or integer nanoseconds."""
    if text is None:
        return None
    t = text.strip()
    if t.lstrip("-").isdigit():
        return int(t)
    dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1e9)


def _ci(values: list[float]) -> CI:
    return mean_ci([v for v in values if math.isfinite(v)])


def _parent_row(group: list[Logged]) -> dict[str, Any]:
    res = [lg.result for lg in group]
    filled = [r for r in res if r.filled]
    m1 = [r.markout_1s_num / r.filled for r in filled]
    m5 = [r.markout_5s_num / r.filled for r in filled]
    return {
        "parents": len(res), "shares": sum(r.qty for r in res), "filled": sum(r.filled for r in res),
        "shortfall_bps": _ci([r.shortfall_bps() for r in res]),
        "fill_rate": _ci([r.fill_rate for r in res]),
        "time_to_end_ms": _ci([(r.done_ns - r.arrival_ns) / 1e6 for r in res if r.done_ns is not None]),
        "expected_completion_ms": _ci([lg.decision.expected_completion_ms for lg in group
                                       if lg.decision.expected_completion_ms is not None]),
        "markout_1s_bps": _ci(m1), "markout_5s_bps": _ci(m5),
        "reversion_bps": _ci([b - a for a, b in zip(m1, m5)]),
    }


def _venue_row(children: list[ChildLabel], run: JournalRun, fees: dict[str, float]) -> dict[str, Any]:
    cost: list[float] = []
    m1: list[float] = []
    m5: list[float] = []
    ttf: list[float] = []
    frac: list[float] = []
    for lab in children:
        res = run.logged[lab.parent].result
        f, c, m = child_labels(lab, res, fees.get(lab.venue, 0.0), run.mid_at)
        frac.append(f)
        if lab.fills:
            cost.append(c)
            m1.append(m)
            m5.append(child_labels(lab, res, 0.0, run.mid_at, MARKOUT_5S_NS)[2])
            ttf.append((lab.fills[0][0] - lab.sent_ns) / 1e6)
    return {
        "children": len(children), "sent": sum(lab.qty for lab in children),
        "filled": sum(x[1] for lab in children for x in lab.fills),
        "cost_bps": _ci(cost), "fill_rate": _ci(frac), "time_to_first_fill_ms": _ci(ttf),
        "markout_1s_bps": _ci(m1), "markout_5s_bps": _ci(m5), "reversion_bps": _ci([b - a for a, b in zip(m1, m5)]),
    }


def _by(items: Iterable[Logged], key: Callable[[Logged], str]) -> dict[str, list[Logged]]:
    out: dict[str, list[Logged]] = {}
    for it in items:
        out.setdefault(key(it), []).append(it)
    return dict(sorted(out.items()))


def analyse(journal: str, since: str | None = None, until: str | None = None) -> dict[str, Any]:
    s, u = parse_time(since), parse_time(until)
    run = read_journal(journal, s, u)
    done = list(run.finished())
    keep = {lg.decision.order_id for lg in done}
    fees = {v.name: v.take_fee_bps for v in run.cfg.venues}
    by_venue: dict[str, list[ChildLabel]] = {}
    for lab in run.children.values():
        if lab.parent in keep:
            by_venue.setdefault(lab.venue, []).append(lab)
    first, last = run.span_ns
    return {
        "journal": journal, "sessions": run.sessions,
        "span_utc": [_utc(first), _utc(last)], "since": since, "until": until,
        "parents": len(done), "unfinished": len(run.logged) - len(done),
        "all": _parent_row(done) if done else None,
        "by_strategy": {k: _parent_row(v) for k, v in _by(done, lambda lg: lg.decision.strategy or "-").items()},
        "by_urgency": {k: _parent_row(v) for k, v in _by(done, lambda lg: lg.urgency).items()},
        "by_model": {k: _parent_row(v) for k, v in
                     _by(done, lambda lg: (lg.decision.model_version or "static")
                         + (" (canary)" if lg.decision.role == "challenger" else "")).items()},
        "by_venue": {k: _venue_row(v, run, fees) for k, v in sorted(by_venue.items())},
    }


def _utc(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S") if ns else ""


def _f(t: CI, d: int = 2) -> str:
    m, lo, hi = t
    return "-" if not math.isfinite(m) else f"{m:.{d}f} [{lo:.{d}f}, {hi:.{d}f}]"


PARENT_COLS = (("shortfall_bps", "shortfall bps", 2), ("fill_rate", "fill rate", 3),
               ("time_to_end_ms", "time to end ms", 1), ("expected_completion_ms", "expected end ms", 1),
               ("markout_1s_bps", "markout 1s bps", 2),
               ("markout_5s_bps", "markout 5s bps", 2), ("reversion_bps", "reversion bps", 2))
VENUE_COLS = (("cost_bps", "fill cost bps", 2), ("fill_rate", "fill rate", 3),
              ("time_to_first_fill_ms", "to first fill ms", 2), ("markout_1s_bps", "markout 1s bps", 2),
              ("markout_5s_bps", "markout 5s bps", 2), ("reversion_bps", "reversion bps", 2))


def _table(title: str, rows: dict[str, dict[str, Any]], cols: tuple[tuple[str, str, int], ...], count: str) -> str:
    width = max([len(title), *(len(k) for k in rows)]) + 2
    head = f"{title:<{width}}{count:>9}  " + "  ".join(f"{label:<24}" for _, label, _ in cols)
    lines = [head, "-" * len(head)]
    for k, r in rows.items():
        lines.append(f"{k:<{width}}{r[count]:>9}  " + "  ".join(f"{_f(r[c], d):<24}" for c, _, d in cols))
    return "\n".join(lines)


def format_text(rep: dict[str, Any]) -> str:
    out = [f"TCA of {rep['journal']} (sessions {rep['sessions']}, {rep['span_utc'][0]} .. {rep['span_utc'][1]} UTC): "
           f"{rep['parents']} finished parents" + (f", {rep['unfinished']} not finished (left out)"
                                                   if rep["unfinished"] else ""),
           "means with 95% intervals; shortfall and costs in bps against the arrival mid, fees included", ""]
    out += [_table("strategy", rep["by_strategy"], PARENT_COLS, "parents"), ""]
    out += [_table("urgency", rep["by_urgency"], PARENT_COLS, "parents"), ""]
    out += [_table("model", rep["by_model"], PARENT_COLS, "parents"), ""]
    out += [_table("venue", rep["by_venue"], VENUE_COLS, "children")]
    return "\n".join(out)


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode()


def _plots(rep: dict[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    for title, section, col in (("Shortfall by strategy", "by_strategy", "shortfall_bps"),
                                ("Shortfall by model version", "by_model", "shortfall_bps"),
                                ("Fill cost by venue", "by_venue", "cost_bps"),
                                ("1 s and 5 s markouts by venue", "by_venue", None)):
        rows = rep[section]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 3.4))
        names = list(rows)
        series = [(col, "C0")] if col else [("markout_1s_bps", "C0"), ("markout_5s_bps", "C1")]
        width = 0.8 / len(series)
        for j, (c, color) in enumerate(series):
            ms = [rows[n][c][0] for n in names]
            err = [[max(0.0, m - rows[n][c][1]) for n, m in zip(names, ms)],
                   [max(0.0, rows[n][c][2] - m) for n, m in zip(names, ms)]]
            xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(names))]
            ax.bar(xs, [m if math.isfinite(m) else 0.0 for m in ms], width, yerr=err, capsize=3, color=color,
                   label=c.replace("_bps", "").replace("_", " "))
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, fontsize=8)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_ylabel("bps (95% CI)")
        ax.set_title(title)
        if len(series) > 1:
            ax.legend()
        fig.tight_layout()
        out.append((title, _png(fig)))
        plt.close(fig)
    return out


def _html_table(title: str, rows: dict[str, dict[str, Any]], cols: tuple[tuple[str, str, int], ...],
                count: str) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in cols)
    body = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{r[count]}</td>"
        + "".join(f"<td>{html.escape(_f(r[c], d))}</td>" for c, _, d in cols) + "</tr>"
        for k, r in rows.items())
    return (f"<h2>By {html.escape(title)}</h2><table><thead><tr><th>{html.escape(title)}</th><th>{count}</th>{head}"
            f"</tr></thead><tbody>{body}</tbody></table>")


def format_html(rep: dict[str, Any]) -> str:
    plots = "".join(f'<figure><img alt="{html.escape(t)}" src="data:image/png;base64,{b}"></figure>'
                    for t, b in _plots(rep))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SOR TCA</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; white-space: nowrap; }}
thead th {{ background: #f2f2f2; }} tbody th {{ text-align: left; }}
figure {{ display: inline-block; margin: 0 1em 1em 0; }}
</style></head><body>
<h1>Transaction cost analysis</h1>
<p>{html.escape(rep['journal'])}: sessions {rep['sessions']}, {rep['span_utc'][0]} .. {rep['span_utc'][1]} UTC,
{rep['parents']} finished parents{f", {rep['unfinished']} unfinished left out" if rep['unfinished'] else ""}.
Means with 95% intervals. Shortfall and costs in bps against the arrival mid, fees included; unfilled shares
at the mid when the parent ended plus one tick. Markouts: negative means the price ran against the fill;
reversion is the 5 s markout less the 1 s one. Time to end: arrival to the parent's final report; expected end:
what its plan expected.</p>
{_html_table("strategy", rep["by_strategy"], PARENT_COLS, "parents")}
{_html_table("urgency", rep["by_urgency"], PARENT_COLS, "parents")}
{_html_table("model", rep["by_model"], PARENT_COLS, "parents")}
{_html_table("venue", rep["by_venue"], VENUE_COLS, "children")}
<h2>Plots</h2>{plots}
</body></html>
"""


def run_tca(journal: str, since: str | None, until: str | None, json_path: str | None, html_path: str | None) -> int:
    rep = analyse(journal, since, until)
    print(format_text(rep))
    if json_path:
        Path(json_path).write_text(json.dumps(rep, indent=2) + "\n")
    if html_path:
        Path(html_path).write_text(format_html(rep))
    written = [p for p in (json_path, html_path) if p]
    if written:
        print(f"\nwrote {', '.join(written)}")
    return 0 if rep["parents"] else 1
