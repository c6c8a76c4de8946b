"""The one configuration tree: TOML decoded into frozen msgspec structs.

Unknown fields are forbidden everywhere so a typo fails at start-up instead of
silently falling back to a default. ``load_config`` raises ``ConfigError``
with the dotted path of the offending field; the CLI turns that into exit
status 2.
"""

from __future__ import annotations

import ipaddress
import json
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

import msgspec

from router.domain.types import VenueKind


class ConfigError(Exception):
    """A configuration that cannot run; the message names the field."""


class _Cfg(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class SymbolConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    symbol: str
    tick_size: str = "0.01"
    lot_size: int = 1
    max_order_qty: int = 1_000_000
    ref_price: str = "100.00"
    """Where the simulator starts the mid; also a sanity anchor for the router."""


class VenueSimConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the simulator plays this venue (ignored when trading a real one)."""

    ack_latency_us: int = 0
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
    contra_prob: float = 0.5
    contra_size_mean: int = 300
    leak_ticks: int = 0
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


class VenueConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    kind: VenueKind
    host: str = "127.0.0.1"
    port: int
    sender_comp_id: str = "SOR"
    target_comp_id: str
    mic: str = ""
    """Reported to the OMS as LastMkt(30); defaults to the venue name."""
    take_fee_bps: float = 0.0
    make_rebate_bps: float = 0.0
    sim: VenueSimConfig = VenueSimConfig()

    @property
    def last_mkt(self) -> str:
        return self.mic or self.name


class OmsConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    port: int
    """quickfix 1.16 cannot bind a chosen address: the acceptor listens on
    every interface, and ``allowed_remote`` decides who may log on."""
    allowed_remote: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.1"])
    """Peer IP addresses allowed to log on; an empty list allows any."""
    sender_comp_id: str = "SOR"
    target_comp_id: str = "OMS"


class WaterfallConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    venues: list[str]
    """Venue names in the order the static waterfall tries them."""
    final_action: Literal["rest", "cancel"] = "rest"
    """After the last IOC step: rest the remainder (DAY limit parents only) or
    cancel it back to the OMS."""
    rest_venue: str | None = None
    child_ack_timeout_ms: int = 2_000
    """A child with no answer from its venue after this long is canceled."""
    planner: Literal["ml", "static", "equal", "displayed"] = "static"
    """ml: the venue model's expected-cost waterfall (static when the model
    cannot score); static: ``venues`` in order; equal: one wave split equally
    over the venues up; displayed: one wave split over the lit venues in
    proportion to their displayed contra size at the touch."""
    allowed_venues: list[str] = msgspec.field(default_factory=list)
    """Policy limit: venues any planner may use ([] = every configured venue)."""
    max_child_qty: int = 0
    """Policy limit: no child larger than this (0 = no cap); the excess waits
    for the next wave."""
    min_child_qty: int = 0
    """Policy limit: no child smaller than this; a smaller share is merged
    into the wave's other slices (0 = no floor). A parent smaller than this
    still routes as one child."""
    spray_top_k: int = 3
    """spray: how many of the best-ranked venues share one wave."""
    dark_rest_ms: int = 200
    """dark-first: how long the dark slices rest before the lit sweep."""
    leak_weight: float = 1.0
    """Weight of the predicted adverse markout in the expected cost."""
    unfilled_cost_bps: float = 5.0
    """Expected cost of a share a venue does not fill (it must go elsewhere,
    later): what the expected-cost ranking charges for (1 - fill prob)."""


class ModelConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    path: str = "models/default/model.onnx"
    """The ONNX venue model; its manifest is the same path with .json."""
    provider: Literal["cpu", "cuda", "auto"] = "cpu"
    """onnxruntime execution provider: auto takes CUDA when it is there."""
    budget_us: int = 2_000
    """A scoring run slower than this is not used: the order routes by the
    static waterfall and the fallback is counted (0 = no budget)."""
    threads: int = 1
    """onnxruntime intra-op threads (1: the hot path never fans out)."""


class FixConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    heartbeat_s: int = 30
    reconnect_s: int = 1
    state_dir: str = "var/fix"
    """File message stores live here so sequence numbers survive a restart."""
    log_messages: bool = False
    """Write every FIX message to a log file (costs latency)."""
    file_store: bool = True


class MetricsConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 9108
    enabled: bool = True


class SimConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Shared market parameters so all sim processes agree on the mid."""

    seed: int = 7
    mid_step_ms: int = 100
    mid_vol_ticks: float = 0.6
    epoch_ns: int = 0
    """0 means: the demo/test harness sets it when it starts the processes."""


class MarketDataConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    depth: int = 5
    """Book levels kept per side (and requested from venues)."""
    book_capacity: int = 1024
    """Book updates kept per (venue, symbol) ring."""
    trade_capacity: int = 4096
    """Trades kept per (venue, symbol) ring."""
    stale_ms: int = 2000
    """A feed with no update for this long is stale (features and alerts)."""
    stats_half_life_s: float = 300.0
    """Venue statistics (fill rate, time to fill, markouts) forget with this
    half-life, so they follow regime changes."""


class RouterConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    driver: Literal["threaded", "poll"] = "threaded"
    """threaded: quickfix's socket threads decode and hand events to the loop
    (idle CPU near zero, costs a thread hop). poll: the loop's thread pumps
    every FIX session and routes inline (no hop; spins a core while busy)."""
    poll_idle_spins: int = 20000
    """poll driver: empty passes before backing off. Spinning is what this
    driver is for: under sor bench at 250 parents/s, 20000 (never backing
    off between parents) gave tick-to-route p99.9 1.7 ms against 5.3 ms
    with 2000 and 4.6 ms with 100, on a 2-core box shared with the OMS and
    the venue."""
    poll_idle_backoff_us: int = 200
    """poll driver: how long to yield the core when idle (bounds the latency
    an idle router adds to the next message)."""
    poll_warm_every: int = 64
    """poll driver, ML planner: every this many idle passes, run the
    features and the model once for no order, so the next parent finds that
    code in the caches (0: never)."""
    gc_freeze_interval_ms: int = 1000
    """Move every live object out of the garbage collector's sight this
    often, so full collections never walk the day's orders (see
    ``Router._freeze_survivors``); 0 only freezes once, at start-up."""
    exec_id_prefix: str = ""
    """Prefix for ExecIDs/OrderIDs; empty means a per-start unique prefix."""


class RegimeConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """From ``at_s`` seconds after the scenario start, ``venue`` plays with
    these sim parameters (fields left out keep their value)."""

    at_s: float
    venue: str
    level_size_mean: int | None = None
    taker_rate_hz: float | None = None
    contra_prob: float | None = None
    contra_size_mean: int | None = None
    leak_ticks: int | None = None


class FlowConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The scenario's parent-order stream (seeded)."""

    parents: int = 500
    interval_ms: float = 200.0
    """Mean gap between parents (exponential)."""
    qty_min: int = 500
    qty_max: int = 3000
    limit_through_ticks: int = 8
    """Limit = the seeded fair mid at arrival plus (buy) or minus (sell) this
    many ticks: marketable through the touch, with a cap on how far a parent
    may walk."""
    buy_prob: float = 0.5
    tif: Literal["ioc", "day"] = "ioc"
    seed: int = 11


class ScenarioConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A named market for the simulator: backtests, training and the FIX sim
    venues all read it, so the same effects happen in both."""

    name: str
    description: str = ""
    impact_half_life_ms: int = 1_500
    """How fast a leak-driven move of the mid decays."""
    flow: FlowConfig = FlowConfig()
    regimes: list[RegimeConfig] = msgspec.field(default_factory=list)


class Config(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    oms: OmsConfig
    venues: list[VenueConfig]
    symbols: list[SymbolConfig]
    waterfall: WaterfallConfig
    router: RouterConfig = RouterConfig()
    fix: FixConfig = FixConfig()
    metrics: MetricsConfig = MetricsConfig()
    sim: SimConfig = SimConfig()
    marketdata: MarketDataConfig = MarketDataConfig()
    model: ModelConfig = ModelConfig()
    scenario: ScenarioConfig | None = None

    def venue(self, name: str) -> VenueConfig:
        for v in self.venues:
            if v.name == name:
                return v
        raise KeyError(name)

    def symbol(self, name: str) -> SymbolConfig:
        for s in self.symbols:
            if s.symbol == name:
                return s
        raise KeyError(name)


def _tick(value: str, where: str) -> Decimal:
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise ConfigError(f"{where}: {value!r} is not a decimal number") from None
    if not d.is_finite() or d <= 0:
        raise ConfigError(f"{where}: must be a positive decimal, got {value!r}")
    return d


def validate(cfg: Config) -> Config:
    """Cross-field checks msgspec cannot express; each names the field."""
    names = [v.name for v in cfg.venues]
    if not names:
        raise ConfigError("venues: at least one venue is required")
    for i, v in enumerate(cfg.venues):
        if v.name in names[:i]:
            raise ConfigError(f"venues[{i}].name: duplicate venue {v.name!r}")
        if not 0 < v.port < 65536:
            raise ConfigError(f"venues[{i}].port: {v.port} is not a TCP port")
    ports = [v.port for v in cfg.venues] + [cfg.oms.port]
    if len(set(ports)) != len(ports):
        raise ConfigError("venues[].port / oms.port: ports must be distinct")
    if not 0 < cfg.oms.port < 65536:
        raise ConfigError(f"oms.port: {cfg.oms.port} is not a TCP port")
    for i, addr in enumerate(cfg.oms.allowed_remote):
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise ConfigError(f"oms.allowed_remote[{i}]: {addr!r} is not an IP address") from None
    if not cfg.symbols:
        raise ConfigError("symbols: at least one symbol is required")
    seen: set[str] = set()
    for i, s in enumerate(cfg.symbols):
        if s.symbol in seen:
            raise ConfigError(f"symbols[{i}].symbol: duplicate symbol {s.symbol!r}")
        seen.add(s.symbol)
        tick = _tick(s.tick_size, f"symbols[{i}].tick_size")
        ref = _tick(s.ref_price, f"symbols[{i}].ref_price")
        if (ref / tick) % 1 != 0:
            raise ConfigError(f"symbols[{i}].ref_price: {s.ref_price} is not a multiple of tick_size")
        if s.lot_size <= 0:
            raise ConfigError(f"symbols[{i}].lot_size: must be positive")
        if s.max_order_qty <= 0:
            raise ConfigError(f"symbols[{i}].max_order_qty: must be positive")
    wf = cfg.waterfall
    if not wf.venues:
        raise ConfigError("waterfall.venues: at least one venue is required")
    for i, name in enumerate(wf.venues):
        if name not in names:
            raise ConfigError(f"waterfall.venues[{i}]: unknown venue {name!r} (known: {', '.join(names)})")
    if wf.final_action == "rest":
        if wf.rest_venue is None:
            raise ConfigError("waterfall.rest_venue: required when final_action = 'rest'")
        if wf.rest_venue not in names:
            raise ConfigError(f"waterfall.rest_venue: unknown venue {wf.rest_venue!r}")
    md = cfg.marketdata
    if not 1 <= md.depth <= 20:
        raise ConfigError(f"marketdata.depth: {md.depth} is not in 1..20")
    for name in ("book_capacity", "trade_capacity", "stale_ms"):
        if getattr(md, name) <= 0:
            raise ConfigError(f"marketdata.{name}: must be positive")
    if wf.child_ack_timeout_ms <= 0:
        raise ConfigError("waterfall.child_ack_timeout_ms: must be positive")
    for i, name in enumerate(wf.allowed_venues):
        if name not in names:
            raise ConfigError(f"waterfall.allowed_venues[{i}]: unknown venue {name!r}")
    for name in ("max_child_qty", "min_child_qty", "dark_rest_ms"):
        if getattr(wf, name) < 0:
            raise ConfigError(f"waterfall.{name}: must be >= 0")
    if wf.max_child_qty and wf.min_child_qty > wf.max_child_qty:
        raise ConfigError("waterfall.min_child_qty: larger than max_child_qty")
    if wf.spray_top_k < 1:
        raise ConfigError("waterfall.spray_top_k: must be >= 1")
    if cfg.model.budget_us < 0 or cfg.model.threads < 1:
        raise ConfigError("model.budget_us must be >= 0 and model.threads >= 1")
    for i, v in enumerate(cfg.venues):
        if v.sim.leak_ticks < 0:
            raise ConfigError(f"venues[{i}].sim.leak_ticks: must be >= 0")
    if cfg.scenario is not None:
        fl = cfg.scenario.flow
        if fl.parents < 0 or fl.interval_ms <= 0 or not 0 < fl.qty_min <= fl.qty_max:
            raise ConfigError("scenario.flow: need parents >= 0, interval_ms > 0 and 0 < qty_min <= qty_max")
        if not 0.0 <= fl.buy_prob <= 1.0:
            raise ConfigError("scenario.flow.buy_prob: must be within 0..1")
        for i, rg in enumerate(cfg.scenario.regimes):
            if rg.venue not in names:
                raise ConfigError(f"scenario.regimes[{i}].venue: unknown venue {rg.venue!r}")
            if rg.at_s < 0:
                raise ConfigError(f"scenario.regimes[{i}].at_s: must be >= 0")
    return cfg


def _describe(err: msgspec.ValidationError) -> str:
    # msgspec says "... - at `$.venues[0].port`"; turn the JSON path into the
    # TOML spelling operators write.
    text = str(err)
    if " - at `$." in text:
        msg, _, path = text.partition(" - at `$.")
        return f"{path.rstrip('`')}: {msg}"
    return text


def parse_config(text: str, source: str = "<string>") -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    try:
        cfg = msgspec.convert(raw, Config)
    except msgspec.ValidationError as e:
        raise ConfigError(f"{source}: {_describe(e)}") from None
    try:
        return validate(cfg)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def load_config(path: str | Path) -> Config:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config: {e.strerror}") from None
    return parse_config(text, str(p))


def dump_config(cfg: Config) -> str:
    """TOML text for a config (used by the demo and tests to hand a generated
    config to subprocesses)."""
    return _to_toml(msgspec.to_builtins(cfg))


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        # JSON string escapes are valid TOML basic-string escapes (control
        # characters included), which a hand-rolled replace would miss.
        # JSON leaves DEL raw, which TOML forbids in strings.
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list) and all(not isinstance(x, dict) for x in v):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as an inline TOML value")


def _to_toml(tree: dict[str, object], prefix: str = "") -> str:
    lines: list[str] = []
    tables: list[tuple[str, dict[str, object]]] = []
    arrays: list[tuple[str, list[dict[str, object]]]] = []
    for k, v in tree.items():
        if v is None:
            continue
        if isinstance(v, dict):
            tables.append((k, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            arrays.append((k, v))
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, sub in tables:
        name = f"{prefix}{k}"
        out += f"\n[{name}]\n" + _to_toml(sub, name + ".")
    for k, items in arrays:
        name = f"{prefix}{k}"
        for item in items:
            out += f"\n[[{name}]]\n" + _to_toml(item, name + ".")
    return out
