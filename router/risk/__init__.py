"""Pre-trade risk controls: every parent from the OMS and every child the
router creates passes them (``router.risk.controls``)."""

from router.risk.controls import LIMITS, Breach, RiskControls

__all__ = ["LIMITS", "Breach", "RiskControls"]
