"""The cost-aware lit sweep: a parent spread over the visible levels of
every lit venue by all-in price, the way a sweep of the consolidated book
takes them.

A level's all-in price per share is its price plus the venue's take fee
(a rebate is a negative fee) plus the venue's expected markout penalty,
in bps of the price. The markout penalty is the model's: how much worse
than the other lit venues' the price runs after a fill there (its
side-signed 1 s markout below their mean), so a venue whose quotes fade
costs what its fills lose afterwards. The half spread every aggressive lit
fill pays against the later mid is in the price already, which is why only
the difference between venues is charged.

``allocate`` takes levels cheapest first, across venues, until the parent
is covered or the limit reached; each venue gets what it was allocated and
the price of the deepest level taken there, which becomes its child's
limit: no child walks further up its book than the sweep decided. What the
visible book cannot cover goes with the same proportions (a child may find
hidden or fresh size at its price) and then down the ML ranking at the
parent's limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class Take(NamedTuple):
    venue: int
    """Index into the planner's venues."""
    qty: int
    """Visible shares allocated there."""
    limit_ticks: int
    """The price of the deepest level taken there."""


def allocate(books: Sequence[tuple[int, Sequence[tuple[int, int]]]], side: int, qty: int, limit: int | None,
             penalty_bps: Sequence[float]) -> list[Take]:
    """``books``: (venue index, its levels (px, sz) on the side the parent
    takes, best first); ``side`` +1 buy (takes asks), -1 sell (takes bids);
    ``penalty_bps[venue]``: the take fee plus markout penalty. Returns the
    venues' takes, cheapest venue first."""
    cands: list[tuple[float, int, int, int]] = []
    for v, levels in books:
        pen = penalty_bps[v] / 1e4
        for px, sz in levels:
            if limit is not None and side * (px - limit) > 0:
                break  # beyond the parent's limit, and so is every deeper level
            # The signed all-in cost of one share: what a buy pays, minus what
            # a sell receives.
            cands.append((side * px + px * pen, v, px, sz))
    cands.sort()
    taken: dict[int, list[int]] = {}
    order: list[int] = []
    left = qty
    for _, v, px, sz in cands:
        if left <= 0:
            break
        q = min(sz, left)
        left -= q
        t = taken.get(v)
        if t is None:
            taken[v] = [q, px]
            order.append(v)
        else:
            t[0] += q
            if side * (px - t[1]) > 0:
                t[1] = px
    return [Take(v, taken[v][0], taken[v][1]) for v in order]


def markout_penalties(markouts_bps: Sequence[float], lit: Sequence[int]) -> dict[int, float]:
    """How much worse each lit venue's expected markout is than the mean of
    the lit venues' (bps, >= 0 means worse): the part of a venue's markout
    that routing elsewhere would avoid."""
    if not lit:
        return {}
    mean = sum(markouts_bps[i] for i in lit) / len(lit)
    return {i: mean - markouts_bps[i] for i in lit}
