"""The two price measures every cost figure is built from, in one place:
the engine's slippage metric, the canary and quality monitors, the
backtest's markouts and the training labels all call these."""

from __future__ import annotations


def cost_bps(side: int, px: float, mid: float, fee_bps: float = 0.0) -> float:
    """What a fill at ``px`` cost against ``mid``, side-signed (``side`` +1
    buy, -1 sell), in bps of the mid, plus the venue's fee: positive is
    paid away. Prices in any one unit (ticks, or twice ticks for both)."""
    return side * (px - mid) / mid * 1e4 + fee_bps


def markout_bps(side: int, px: float, later_mid: float) -> float:
    """How the mid moved after a fill at ``px``, side-signed, in bps of the
    fill price: negative is the price running against the fill."""
    return side * (later_mid - px) / px * 1e4
