"""The training labels of a child order: one definition for the simulator's
exploring runs (``models.explore``) and for a router's journal
(``sim.journal_run``).

A labelled row is a first-wave child: the child a parent's decision sent at
arrival, whose venue's feature row the decision read. Its labels:

* ``fill_frac``: filled qty / child qty. A child that did not fill all of
  its size is the censored observation the issue names: the venue had
  less than the size sent within the child's life, not nothing. The label
  is the share of the size sent that filled, which is what the router
  asks of a venue (the size is in the order features), never "this venue
  has no liquidity";
* ``cost_bps``: side-signed average fill price against the parent's
  arrival mid, plus the venue's take fee, per filled share; NaN without a
  fill (a cost is only defined for shares that traded);
* ``markout_bps``: the quantity-weighted side-signed move of the mid 1 s
  after each fill against its price; NaN without a fill.

Where the mid comes from is the caller's: the simulator's true mid, or the
mid the router itself saw (its NBBO) when the data is a journal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
import numpy.typing as npt

from models.dataset import Dataset
from router.domain.costs import cost_bps, markout_bps
from router.features.catalogue import N_FEATURES
from sim.backtest import ChildLabel, ParentResult

MARKOUT_NS = 1_000_000_000


def child_labels(lab: ChildLabel, res: ParentResult, fee_bps: float,
                 mid_at: Callable[[str, int], float], horizon_ns: int = MARKOUT_NS) -> tuple[float, float, float]:
    """(fill_frac, cost_bps, markout_bps) of one child; the markout at
    ``horizon_ns`` after each fill (1 s: the training label)."""
    q = sum(f[1] for f in lab.fills)
    if not q:
        return 0.0, float("nan"), float("nan")
    px = sum(f[1] * f[2] for f in lab.fills) / q
    cost = cost_bps(res.side, px, res.arrival_mid, fee_bps)
    mark = sum(f[1] * markout_bps(res.side, f[2], mid_at(res.symbol, f[0] + horizon_ns)) for f in lab.fills) / q
    return q / lab.qty, cost, mark


def label_rows(children: Iterable[ChildLabel], results: Mapping[str, ParentResult],
               features: Mapping[str, npt.NDArray[np.float32]], venue_index: Mapping[str, int],
               fee_bps: Mapping[str, float], mid_at: Callable[[str, int], float], scenario: str) -> Dataset:
    """Every first-wave child of a parent with a result and features, as
    one row; ``ChildLabel.parent`` keys ``results`` and ``features``, and
    rows of one parent share a group (the split is by decision)."""
    groups: dict[str, int] = {}
    xs: list[npt.NDArray[np.float32]] = []
    frac: list[float] = []
    cost: list[float] = []
    mark: list[float] = []
    group: list[int] = []
    venue: list[str] = []
    for lab in children:
        if not lab.first_wave:
            continue
        res, x = results.get(lab.parent), features.get(lab.parent)
        if res is None or x is None or not res.arrival_mid or lab.venue not in venue_index:
            continue
        f, c, m = child_labels(lab, res, fee_bps.get(lab.venue, 0.0), mid_at)
        xs.append(x[venue_index[lab.venue]])
        frac.append(f)
        cost.append(c)
        mark.append(m)
        group.append(groups.setdefault(lab.parent, len(groups)))
        venue.append(lab.venue)
    ff = np.asarray(frac, dtype=np.float32)
    return Dataset(X=np.asarray(xs, dtype=np.float32).reshape(-1, N_FEATURES), cost_bps=np.asarray(cost, np.float32),
                   fill_frac=ff, markout_bps=np.asarray(mark, dtype=np.float32), has_fill=ff > 0,
                   group=np.asarray(group, dtype=np.int64), venue=np.asarray(venue, dtype=str),
                   scenario=np.asarray([scenario] * len(venue), dtype=str))
