"""Process entry points of the simulator (called by ``sor sim-venue``)."""

from __future__ import annotations

from fix.gateway import hard_exit
from sim.config import SimClusterConfig
from sim.venue import serve_venues


def run_venues(cfg: SimClusterConfig, venues: list[str], state_dir: str, record_trace: str | None = None,
               fills_log: str | None = None) -> int:
    import uvloop

    uvloop.run(serve_venues(cfg, venues, state_dir, record_trace=record_trace, fills_log=fills_log))
    hard_exit(0)
    return 0
