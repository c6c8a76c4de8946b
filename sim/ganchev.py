"""``sor backtest --ganchev``: the dark-pool allocation problem of Ganchev,
Kearns, Nevmyvaka and Vaughan (CACM 2010), played against the router's own
learner (``router.learning.darkpool``, with ``router.learning.changes``).

Each episode a trader splits ``units`` units across four pools; pool i
holds ``L_i`` units, drawn afresh each episode from its own distribution
(a zero bin: ``L = 0`` with probability ``z``; else a power law
``P(L = s) ~ s ** -beta`` on 1..``max_liquidity``), and fills
``min(sent_i, L_i)``: a full fill is all the learner learns (censoring). At
episode ``permute_at`` the pools' distributions are permuted, so the deep
pool turns shallow and the reverse.

Scored against the ideal allocation (the greedy on the true tails, which
maximises expected fill): each episode, the expected fill of the learner's
split under the true distributions over the ideal's (expectations, not the
draws, so the figure is not noise). Three learners side by side: the
Kaplan-Meier estimate without forgetting; with forgetting (every pool's
evidence times ``forget`` per episode, so a pool left unused drifts back to
the prior and is tried again); and with forgetting and a Page-Hinkley test
on each pool's fill fraction, whose alarm keeps only ``change_keep`` of
that pool's evidence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from router.learning.changes import STREAM_FILL, PageHinkley
from router.learning.darkpool import CensoredLiquidity

POOLS = ((0.10, 1.1), (0.50, 1.4), (0.30, 2.5), (0.80, 0.9))
"""(zero-bin probability, power-law exponent) of each pool before the permutation."""
PERMUTATION = (2, 3, 0, 1)
"""Pool i plays pool ``PERMUTATION[i]``'s distribution after the change."""
LEARNERS = ("km", "km+forget", "km+forget+detect")


def tails(z: float, beta: float, max_liquidity: int, max_units: int) -> np.ndarray:
    """``T(k) = P(L >= k)`` for k = 0..max_units."""
    s = np.arange(1, max_liquidity + 1, dtype=np.float64)
    p = s ** -beta
    p *= (1.0 - z) / p.sum()
    ge = np.concatenate([[1.0], p[::-1].cumsum()[::-1]])  # P(L >= k), k = 0..max_liquidity
    return ge[: max_units + 1] if len(ge) > max_units else np.pad(ge, (0, max_units + 1 - len(ge)))


def expected_fill(t: np.ndarray, alloc: list[int]) -> float:
    """Expected units filled when pool i (tail row ``t[i]``) is sent ``alloc[i]``."""
    return float(sum(t[i, 1 : a + 1].sum() for i, a in enumerate(alloc)))


def ideal(t: np.ndarray, units: int) -> list[int]:
    """The greedy on the true tails (the expected-fill maximising split)."""
    marg = t[:, 1:]
    top = np.argsort(-marg.ravel(), kind="stable")[:units]
    return np.bincount(top // marg.shape[1], minlength=len(t)).tolist()  # type: ignore[no-any-return]


def _draw(rng: np.random.Generator, z: float, beta: float, max_liquidity: int) -> int:
    if rng.random() < z:
        return 0
    s = np.arange(1, max_liquidity + 1, dtype=np.float64)
    p = s ** -beta
    return int(rng.choice(s, p=p / p.sum()))


def run(learner: str, seed: int, *, episodes: int = 2000, permute_at: int = 1000, units: int = 50,
        max_liquidity: int = 200, forget: float = 0.99, change_keep: float = 0.1) -> np.ndarray:
    """One learner, one seed: each episode's share of the ideal's expected fill."""
    n = len(POOLS)
    mu = units  # the estimate's levels reach the whole order
    before = np.stack([tails(z, b, max_liquidity, mu) for z, b in POOLS])
    after = before[list(PERMUTATION)]
    rng = np.random.default_rng([seed, 1000])
    liq = CensoredLiquidity(n, max_units=mu, unit=1, forget=1.0)
    ph = PageHinkley(n) if learner == "km+forget+detect" else None
    out = np.empty(episodes)
    for e in range(episodes):
        t = before if e < permute_at else after
        params = [POOLS[i] for i in (range(n) if e < permute_at else PERMUTATION)]
        alloc = liq.allocate(list(range(n)), units)
        best = expected_fill(t, ideal(t, units))
        out[e] = expected_fill(t, alloc) / best if best > 0 else 1.0
        if learner != "km":
            for v in range(n):
                liq.shrink(v, forget)
        for v, a in enumerate(alloc):
            if a <= 0:
                continue
            filled = min(a, _draw(rng, *params[v], max_liquidity))
            liq.observe(v, a, filled)
            if ph is not None and ph.observe(v, STREAM_FILL, filled / a):
                liq.shrink(v, change_keep)
    return out


def summarize(curves: np.ndarray, permute_at: int, window: int = 50, target: float = 0.95) -> dict[str, Any]:
    """``curves[seed, episode]``: the seed-mean curve, read before and after
    the permutation."""
    m = curves.mean(axis=0)
    c = np.concatenate([[0.0], np.cumsum(m[permute_at:])])
    moving = (c[window:] - c[:-window]) / window
    reached = next((int(k) for k in range(len(moving)) if moving[k] >= target), None)
    return {
        "before_last_200": round(float(m[permute_at - 200 : permute_at].mean()), 4),
        "after_first_200": round(float(m[permute_at : permute_at + 200].mean()), 4),
        "after_200_on": round(float(m[permute_at + 200 :].mean()), 4),
        "episodes_to_target": reached,
        "target": target, "window": window,
    }


def main(seeds: list[int] | None = None, json_path: str = "ganchev-results.json",
         png_path: str = "ganchev.png", episodes: int = 2000, permute_at: int = 1000) -> int:
    seeds = seeds or [1, 2, 3, 4, 5]
    report: dict[str, Any] = {"seeds": seeds, "episodes": episodes, "permute_at": permute_at, "learners": {}}
    curves = {}
    for lr in LEARNERS:
        curves[lr] = np.stack([run(lr, s, episodes=episodes, permute_at=permute_at) for s in seeds])
        report["learners"][lr] = summarize(curves[lr], permute_at)
    print(f"Ganchev et al. replica: 4 pools, zero bin + power law, permuted at episode {permute_at}; "
          f"share of the ideal allocation's expected fill, mean of seeds {seeds}")
    print(f"  {'learner':<18} {'before (last 200)':>17} {'after (first 200)':>17} {'after (200 on)':>14} "
          f"{'episodes to 95% (50-ep mean)':>29}")
    for lr, r in report["learners"].items():
        k = r["episodes_to_target"]
        print(f"  {lr:<18} {r['before_last_200']:17.3f} {r['after_first_200']:17.3f} {r['after_200_on']:14.3f} "
              f"{'never' if k is None else str(k):>29}")
    Path(json_path).write_text(json.dumps(report, indent=2) + "\n")
    _plot(curves, permute_at, Path(png_path))
    print(f"\nwrote {json_path} and {png_path}")
    return 0


def _plot(curves: dict[str, np.ndarray], permute_at: int, path: Path, smooth: int = 25) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    for lr, c in curves.items():
        m = c.mean(axis=0)
        k = np.ones(smooth) / smooth
        ax.plot(np.arange(len(m) - smooth + 1) + smooth // 2, np.convolve(m, k, mode="valid"), label=lr)
    ax.axvline(permute_at, color="black", linewidth=0.8)
    ax.axhline(0.95, color="grey", linewidth=0.6, linestyle="--")
    ax.set_xlabel("episode")
    ax.set_ylabel("share of the ideal's expected fill")
    ax.set_title("Dark-pool allocation (Ganchev et al. 2010 setting), pools permuted at the line")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
