"""The simulator's configuration: its sections of the one TOML file, and the
full tree (the router's config plus those sections).

The router's schema (``router.config``) knows nothing of the simulator: its
loader leaves out the top-level ``[sim]`` and ``[scenario]`` tables and each
venue's ``[venues.sim]`` table. This module declares them and extends the
router's structs with them (``SimVenueConfig``, ``SimClusterConfig``), so one
file still configures the daemon, the sim venues, the backtest and training.
``load_sim_config`` decodes the whole file with unknown fields forbidden
everywhere and runs the router's cross-field checks and the simulator's;
``dump_config`` writes a tree back as TOML for the processes the harness
starts (the daemon reads the same file with the router's loader).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import tomli_w

from router.config import (
    Config,
    ConfigError,
    NonNegative,
    Positive,
    VenueConfig,
    checked,
    decode_config,
    read_config_text,
    read_toml,
    validate,
)

Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
"""A probability: 0.0..1.0."""

__all__ = [
    "FlowConfig",
    "RegimeConfig",
    "ScenarioConfig",
    "SimClusterConfig",
    "SimConfig",
    "SimVenueConfig",
    "VenueSimConfig",
    "dump_config",
    "load_sim_config",
    "parse_sim_config",
    "validate_sim",
]


class _Cfg(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class VenueSimConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the simulator plays this venue (``[venues.sim]``; not read when
    trading a real one)."""

    ack_latency_us: NonNegative = 0
    levels: int = 5
    half_spread_ticks: int = 1
    level_size_mean: int = 300
    level_size_jitter: float = 0.5
    """Log-space sigma of displayed sizes; 0 gives exactly level_size_mean."""
    requote_ms: int = 50
    md_interval_ms: int = 10
    """Lit venues publish book changes at most this often (trades at once)."""
    taker_rate_hz: float = 5.0
    taker_size_mean: int = 100
    contra_prob: Probability = 0.5
    contra_size_mean: int = 300
    leak_ticks: NonNegative = 0
    """Dark pools only: a toxic pool leaks. Every router order it receives
    moves the shared mid this many ticks toward the order's side (others
    trade ahead on the lit venues) before it crosses; the move decays with
    ``scenario.impact_half_life_ms``. 0 is a benign pool."""
    md_churn_per_s: float = 0.0
    """Lit venues, benchmarks: book entries per second of extra market data,
    made by quote refreshes that change sizes but no price (so nothing
    trades differently), published in messages of one symbol's changed
    levels. 0 (the default) adds none."""
    seed: int = 1
    allowed_remote: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.1"])
    """Peers the sim venue lets log on (the router's address); [] allows any."""


class SimConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[sim]``: shared market parameters so all sim processes agree on the mid."""

    seed: int = 7
    mid_step_ms: int = 100
    mid_vol_ticks: float = 0.6
    epoch_ns: int = 0
    """0 means: the demo/test harness sets it when it starts the processes."""


class RegimeConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """From ``at_s`` seconds after the scenario start, ``venue`` plays with
    these sim parameters (fields left out keep their value)."""

    at_s: Annotated[float, msgspec.Meta(ge=0.0)]
    venue: str
    level_size_mean: int | None = None
    taker_rate_hz: float | None = None
    contra_prob: Probability | None = None
    contra_size_mean: int | None = None
    leak_ticks: NonNegative | None = None


class FlowConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The scenario's parent-order stream (seeded)."""

    parents: NonNegative = 500
    interval_ms: Annotated[float, msgspec.Meta(gt=0.0)] = 200.0
    """Mean gap between parents (exponential)."""
    qty_min: Positive = 500
    qty_max: Positive = 3000
    limit_through_ticks: int = 8
    """Limit = the seeded fair mid at arrival plus (buy) or minus (sell) this
    many ticks: marketable through the touch, with a cap on how far a parent
    may walk."""
    buy_prob: Probability = 0.5
    tif: Literal["ioc", "day"] = "ioc"
    low_prob: Probability = 0.0
    high_prob: Probability = 0.0
    """Shares of the parents that ask for low and high urgency (tag
    SorUrgency(7003) from the sim OMS; the event's ``urgency`` in the
    backtest); the others ask for normal whatever their ``tif`` (the
    router's IOC hint is for an OMS that sends no tag). Drawn from a stream
    of their own: the parents' other draws do not move."""
    seed: int = 11


class ScenarioConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[scenario]``: a named market for the simulator: backtests, training
    and the FIX sim venues all read it, so the same effects happen in both."""

    name: str
    description: str = ""
    impact_half_life_ms: int = 1_500
    """How fast a leak-driven move of the mid decays."""
    flow: FlowConfig = FlowConfig()
    regimes: list[RegimeConfig] = msgspec.field(default_factory=list)


class SimVenueConfig(VenueConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A venue with how the simulator plays it."""

    sim: VenueSimConfig = VenueSimConfig()


class SimClusterConfig(Config, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The full tree: the router's config plus the simulator's sections. Every
    router function that takes a ``Config`` takes this one too."""

    venues: Sequence[SimVenueConfig]
    sim: SimConfig = SimConfig()
    scenario: ScenarioConfig | None = None

    def venue(self, name: str) -> SimVenueConfig:
        for v in self.venues:
            if v.name == name:
                return v
        raise KeyError(name)


def validate_sim(cfg: SimClusterConfig) -> SimClusterConfig:
    """The simulator's cross-field checks (after the router's ``validate``);
    each names the field."""
    names = [v.name for v in cfg.venues]
    if cfg.scenario is not None:
        fl = cfg.scenario.flow
        if fl.qty_min > fl.qty_max:
            raise ConfigError(f"scenario.flow.qty_min: {fl.qty_min} is larger than qty_max ({fl.qty_max})")
        if fl.low_prob + fl.high_prob > 1.0:
            raise ConfigError(f"scenario.flow.high_prob: low_prob + high_prob is {fl.low_prob + fl.high_prob}, above 1")
        for i, rg in enumerate(cfg.scenario.regimes):
            if rg.venue not in names:
                raise ConfigError(f"scenario.regimes[{i}].venue: unknown venue {rg.venue!r}")
    return cfg


def parse_sim_config(text: str, source: str = "<string>") -> SimClusterConfig:
    """The full tree from TOML text: unknown fields are errors in every
    section, the router's and the simulator's."""
    cfg = decode_config(read_toml(text, source), SimClusterConfig, source)
    return checked(cfg, source, validate, validate_sim)


def load_sim_config(path: str | Path) -> SimClusterConfig:
    """``parse_sim_config`` of a file; ``ConfigError`` names the file."""
    return parse_sim_config(read_config_text(path), str(Path(path)))


def _without_none(v: Any) -> Any:
    # TOML has no null: a field left unset (None) is left out, and reads back
    # as its default (None).
    if isinstance(v, dict):
        return {k: _without_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_without_none(x) for x in v]
    return v


def dump_config(cfg: Config) -> str:
    """TOML text for a config, the full tree or the router's alone (the demo
    and the tests hand generated configs to subprocesses with it)."""
    return tomli_w.dumps(_without_none(msgspec.to_builtins(cfg)))
