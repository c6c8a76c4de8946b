"""The router's configuration: TOML decoded into frozen msgspec structs.

Unknown fields are forbidden everywhere so a typo fails at start-up instead of
silently falling back to a default. ``load_config`` raises ``ConfigError``
with the dotted path of the offending field; the CLI turns that into exit
status 2. Single-field ranges are ``msgspec.Meta`` constraints on the fields
(checked while decoding); ``validate`` holds the cross-field checks.

One TOML file carries the router's sections and the simulator's: the
top-level ``[sim]`` and ``[scenario]`` tables and each venue's
``[venues.sim]`` table. Those belong to ``sim.config`` (the simulator's
schema, a subclass tree of this one, with its own loader and validation):
the router's loader leaves them out before decoding and never looks inside
them (see ``SIMULATOR_TABLES``), so the daemon neither needs nor imports the
simulator's schema.
"""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from router.domain.types import VenueKind

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
"""A TCP port: 1..65535."""
Positive = Annotated[int, msgspec.Meta(ge=1)]
"""An integer >= 1 (sizes, capacities, timeouts)."""
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
"""An integer >= 0 (limits where 0 means none)."""
JournalUrl = Annotated[str, msgspec.Meta(pattern=r"^$|^postgres(ql)?://")]
"""Empty, or a ``postgresql://`` (``postgres://``) URL."""

SIMULATOR_TABLES = ("sim", "scenario")
"""Top-level tables the router's loader leaves to the simulator (``sim.config``)."""
VENUE_SIMULATOR_TABLE = "sim"
"""The table of each ``[[venues]]`` entry the router's loader leaves to the simulator."""


class ConfigError(Exception):
    """A configuration that cannot run; the message names the field."""


class _Cfg(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class SymbolConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    symbol: str
    tick_size: str = "0.01"
    lot_size: Positive = 1
    max_order_qty: Positive = 1_000_000
    adv_shares: Positive | None = None
    """Average daily volume in shares (reference data): the denominator of
    feature size_over_adv. Unset: estimated from the lit prints since start."""
    ref_price: str = "100.00"
    """Where the simulator starts the mid; also a sanity anchor for the router."""


class VenueConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A venue as the router trades it. The simulator's ``[venues.sim]`` table
    is not part of it: ``sim.config.SimVenueConfig`` adds it."""

    name: str
    kind: VenueKind
    host: str = "127.0.0.1"
    port: Port
    sender_comp_id: str = "SOR"
    target_comp_id: str
    mic: str = ""
    """Reported to the OMS as LastMkt(30); defaults to the venue name."""
    take_fee_bps: float = 0.0
    make_rebate_bps: float = 0.0

    @property
    def last_mkt(self) -> str:
        return self.mic or self.name


class OmsConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    port: Port
    """quickfix 1.16 cannot bind a chosen address: the acceptor listens on
    every interface, and ``allowed_remote`` decides who may log on."""
    allowed_remote: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.1"])
    """Peer IP addresses allowed to log on; an empty list allows any."""
    sender_comp_id: str = "SOR"
    target_comp_id: str = "OMS"
    cancel_on_disconnect: bool = False
    """When the OMS session drops, cancel every working parent it sent (its
    children at the venues first); the OMS reads the cancels when it logs on
    again (resent by sequence number)."""


class WaterfallConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    venues: list[str]
    """Venue names in the order the static waterfall tries them."""
    final_action: Literal["rest", "cancel"] = "rest"
    """After the last IOC step: rest the remainder (DAY limit parents only) or
    cancel it back to the OMS."""
    rest_venue: str | None = None
    child_ack_timeout_ms: Positive = 2_000
    """A child with no answer from its venue after this long is canceled."""
    planner: Literal["ml", "static", "equal", "displayed", "rl"] = "static"
    """ml: the venue model's expected-cost waterfall (static when the model
    cannot score); static: ``venues`` in order; equal: one wave split equally
    over the venues up; displayed: one wave split over the lit venues in
    proportion to their displayed contra size at the touch."""
    allowed_venues: list[str] = msgspec.field(default_factory=list)
    """Policy limit: venues any planner may use ([] = every configured venue)."""
    max_child_qty: NonNegative = 0
    """Policy limit: no child larger than this (0 = no cap); the excess waits
    for the next wave."""
    min_child_qty: NonNegative = 0
    """Policy limit: no child smaller than this; a smaller share is merged
    into the wave's other slices (0 = no floor). A parent smaller than this
    still routes as one child."""
    spray_top_k: Positive = 3
    """spray: how many of the best-ranked venues share one wave."""
    sweep_markout: Literal["measured", "model", "off"] = "measured"
    """sweep (``router.routing.sweep``): whose 1 s markout per lit venue
    adds to a level's all-in price beside the fee. measured: the router's
    own decayed markouts of its fills there (feature venue_markout_1s_bps);
    model: the model's markout head; off: fees only. The model's head is
    only as good as its training range: on venues whose fees it never saw
    it predicted nonsense (README, the lit sweep)."""
    dark_rest_ms: NonNegative = 200
    """dark-first: how long the dark slices rest before the lit sweep."""
    leak_weight: float = 1.0
    """Weight of the predicted adverse markout in the expected cost."""
    unfilled_cost_bps: float = 5.0
    """Expected cost of a share a venue does not fill (it must go elsewhere,
    later): what the expected-cost ranking charges for (1 - fill prob)."""


class CanaryConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When a canary challenger is rolled back automatically (``router.runtime.canary``)."""

    auto_rollback: bool = True
    min_parents: Positive = 50
    """Finished parents each arm needs before the monitor judges."""
    z: Annotated[float, msgspec.Meta(gt=0.0)] = 2.33
    """One-sided bound on the shortfall difference (2.33: 99%)."""
    max_excess_bps: Annotated[float, msgspec.Meta(ge=0.0)] = 0.5
    """How much worse than the champion the canary may be, at the bound's low end."""
    max_fallback_rate: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.05
    """Share of canary parents the challenger could not score (errors, over budget)."""


class ModelConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    path: str = "models/default/model.onnx"
    """The ONNX venue model; its manifest is the same path with .json."""
    rl_path: str = "models/rl/q.onnx"
    """The RL planner's Q-model (``waterfall.planner = "rl"``,
    ``router.routing.rl``; ``sor train-rl`` writes it), manifest beside it."""
    provider: Literal["cpu", "cuda", "auto"] = "cpu"
    """onnxruntime execution provider: auto takes CUDA when it is there."""
    budget_us: NonNegative = 2_000
    """A scoring run slower than this is not used: the order routes by the
    static waterfall and the fallback is counted (0 = no budget)."""
    threads: Positive = 1
    """onnxruntime intra-op threads (1: the hot path never fans out)."""
    canary: CanaryConfig = CanaryConfig()
    """``[model.canary]``: the automatic rollback of a canary challenger."""


class LearningConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Exploration of the ML planner (``router.routing.explore``): how much
    expected cost per share it may spend trying venues its model does not
    rank first, so the journal can train and evaluate the next model."""

    explore_budget_bps: Annotated[float, msgspec.Meta(ge=0.0)] = 0.1
    """Cap on the expected extra cost of exploring, bps per share by the
    model's own expected costs (0 = never explore: every propensity is 1)."""
    explore_max_prob: Annotated[float, msgspec.Meta(ge=0.0, le=0.5)] = 0.1
    """Cap on the probability that a parent is led by a venue other than
    the model's cheapest."""
    explore_temperature_bps: Annotated[float, msgspec.Meta(gt=0.0)] = 1.0
    """Softmax temperature over the expected-cost gaps: how strongly
    exploration prefers the venues that are nearly as cheap."""
    explore_seed: int = 0
    """Seeds the per-order draw (a hash of seed, session and ClOrdID)."""
    explore_uncertainty_bps: Annotated[float, msgspec.Meta(ge=0.0)] = 0.0
    """The exploration draw's optimism: a venue whose statistics rest on
    none of our own children looks this much cheaper to it (scaled down as
    evidence builds, ``VenueStats.evidence``), so a venue never tried, or
    just forgotten after a change, is tried first. The greedy choice and
    the budget use the model's costs unchanged."""
    change_detect: bool = False
    """Page-Hinkley tests on each pool's 250 ms markouts and fill fractions
    (``router.learning.changes``); an alarm makes the venue statistics keep
    only ``change_keep`` of that pool's past and raises exploration. Off by
    default: on the shipped scenarios it measured no better (README,
    "Online learners")."""
    change_delta_sd: Annotated[float, msgspec.Meta(ge=0.0)] = 0.5
    """The drift each test tolerates, in the stream's standard deviations."""
    change_threshold_sd: Annotated[float, msgspec.Meta(gt=0.0)] = 8.0
    """The evidence an alarm needs, in standard deviations (higher: fewer
    false alarms, later detection)."""
    change_keep: Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)] = 0.1
    change_explore_s: Annotated[float, msgspec.Meta(ge=0.0)] = 10.0
    """For this long after a detected change, exploration's budget and
    probability cap are multiplied by ``change_explore_factor`` (the cap
    at most 0.5): what changed at one venue may have changed at others."""
    change_explore_factor: Annotated[float, msgspec.Meta(ge=1.0)] = 4.0
    dark_split: Literal["censored", "model"] = "model"
    """How a dark-first wave splits across pools: ``censored``, by the
    censored liquidity estimate of each pool (``router.learning.darkpool``,
    the expected-fill maximising split); ``model`` (default; the censored
    split measured no better on the shipped scenarios), by the model's fill
    probabilities."""
    dark_forget: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.98
    """Per child, the weight the liquidity estimate keeps of a pool's past."""
    dark_unit_shares: Annotated[int, msgspec.Meta(ge=1)] = 100


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


class AdminConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The operator's admin API (``router.admin``): status, kill switch,
    venue enable/disable, over HTTP with a bearer token; ``sor ctl`` is
    its client."""

    enabled: bool = False
    """Off unless asked for; when on, ``token_file`` is required (the API
    never runs without a token) and the daemon refuses to start if the
    file cannot be read or is empty."""
    host: str = "127.0.0.1"
    """The address the API binds (an IP address). Only a loopback address
    is accepted unless ``allow_non_loopback``."""
    port: Port = 9109
    token_file: str = ""
    """A file holding the bearer token (one line; keep it mode 0600). Every
    request without ``Authorization: Bearer <token>`` is refused (401),
    counted in ``sor_admin_refused_total`` and logged."""
    allow_non_loopback: bool = False
    """Let ``host`` be an address other hosts can reach (behind a firewall
    that only lets the operators' hosts in)."""
    command_timeout_ms: Positive = 5_000
    """How long a request waits for the engine to apply its command."""


class MarketDataConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    depth: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5
    """Book levels kept per side (and requested from venues): 1..20."""
    book_capacity: Positive = 1024
    """Book updates kept per (venue, symbol) ring."""
    trade_capacity: Positive = 4096
    """Trades kept per (venue, symbol) ring."""
    stale_ms: Positive = 2000
    """A feed with no update for this long is stale (features and alerts)."""
    stats_half_life_s: float = 300.0
    """Venue statistics (fill rate, time to fill, markouts) forget with this
    half-life, so they follow regime changes."""


class JournalConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True
    path: str = "var/journal/sor.sqlite"
    """The SQLite journal (WAL); a new session is appended at every start.
    Unused when ``url`` is set."""
    url: JournalUrl = ""
    """Empty: the SQLite journal at ``path``. A ``postgresql://`` URL (libpq's
    form, e.g. ``postgresql://sor@db.example:5432/journal``; a password is
    better kept in ``~/.pgpass`` or ``PGPASSWORD`` than here): the journal
    lives in that PostgreSQL database (its own, or a schema of its own
    through ``?options=-csearch_path%3Djournal``), where several routers can
    share it, each start a new session. Each batch is one transaction,
    durable at its commit (``synchronous_commit`` on)."""
    sync: Literal["batch", "every"] = "batch"
    """batch: every committed batch is fsynced, at most max_delay_ms behind
    the engine; a crash can lose that much of the journal (venue
    reconciliation and the restart sweep then recover children and fills,
    but an ER the OMS already had may be reported again, and a child sent
    in that window may fill for no parent). every: nothing a step commands
    (child orders, cancels, reports for the OMS) leaves the process until
    its records are committed (group commit: the writer commits at once);
    reports committed but not yet sent at a crash are sent at the restart.
    Costs every order a commit before its children leave."""
    max_delay_ms: Positive = 20
    """How long a record may wait for its batch."""
    capacity: Positive = 1_000_000
    """Records the writer may fall behind before the journal counts as failed."""
    recover: bool = True
    """On start, rebuild the working orders, ClOrdIDs and ExecIDs of the last
    session by replaying its journaled inputs (and those of the sessions it
    was itself restored from), and continue its OrderID prefix."""
    on_failure: Literal["halt", "continue"] = "halt"
    """When the journal cannot keep up or write: halt stops accepting new
    parents (working ones go on); continue trades on, unrecorded, loudly."""


DupMode = Literal["reject", "warn", "off"]
"""What the duplicate-order guard does with a repeat: reject it, let it
through with a warning (logged, ``sor_risk_warnings_total``), or nothing."""


class RiskSymbolConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-symbol overrides of ``[risk]``; an unset field takes the
    ``[risk]`` value."""

    symbol: str
    collar_bps: NonNegative | None = None
    max_order_qty: Positive | None = None
    max_order_notional: Positive | None = None
    max_executions: NonNegative | None = None
    execution_window_ms: Positive | None = None


class RiskSessionConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-OMS-session overrides of ``[risk]``. ``session`` is the session's
    key (``FIX.4.4:SOR->OMS``) or the OMS's CompID alone (``OMS``)."""

    session: str
    max_order_qty: Positive | None = None
    max_order_notional: Positive | None = None
    credit_limit: Positive | None = None
    max_msgs_per_s: Positive | None = None


class RiskConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Pre-trade controls (``router.risk``), checked on every parent from the
    OMS and on every child the router itself creates. Notionals are in the
    symbols' price currency. An order limit of a symbol and of a session
    both apply (the smaller binds). Every field can be changed at run time
    (``router.domain.events.RiskLimitChanged``)."""

    enabled: bool = True
    """false: no pre-trade control at all (tests of other things only)."""
    collar_bps: NonNegative = 500
    """Price collar: a limit more than this far through the reference price
    (the NBBO mid; the last trade when the book is one-sided or stale) is
    rejected; a market order's children become limits at the collar. 0: no
    collar. With no reference at all (no market data yet) nothing is
    collared."""
    max_order_qty: Positive = 100_000
    """Largest order quantity (shares), parent or child."""
    max_order_notional: Positive = 10_000_000
    """Largest order notional (qty x limit, or x the reference price for a
    market order)."""
    credit_limit: Positive = 50_000_000_000
    """Per OMS session: gross notional of open plus executed orders over the
    day (since start), counted the moment an order is accepted, given back
    for what an order leaves unfilled when it ends (RTS 6 Art. 15(2)). The
    default is a backstop sized above `make soak`'s day (100,000 parents, some
    20 billion gross); a firm sets each client session's own."""
    max_msgs_per_s: Positive = 500
    """Per OMS session: new orders, cancels and replaces in any one second
    (of event time) beyond this are rejected, never queued."""
    max_executions: NonNegative = 1_000
    """Repeated-execution throttle: after this many fills of one symbol in
    ``execution_window_ms`` the router stops routing the symbol (new parents
    and new children) until an operator re-enables it
    (``SymbolReenabled``). 0: no throttle."""
    execution_window_ms: Positive = 1_000
    """The repeated-execution throttle's window."""
    dup_window_ms: NonNegative = 1_000
    """Duplicate-order guard: a new order with the same session, symbol,
    side, quantity and price as one accepted this recently (0: no guard)."""
    dup_mode: DupMode = "warn"
    """What the guard does: warn (the default: an OMS may mean it) or reject."""
    restricted_symbols: list[str] = msgspec.field(default_factory=list)
    """Symbols the router must not trade: every order in them is rejected."""
    symbols: list[RiskSymbolConfig] = msgspec.field(default_factory=list)
    sessions: list[RiskSessionConfig] = msgspec.field(default_factory=list)


class OverloadConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Back-pressure (``router.runtime.overload``): while the router is
    behind, new parents are rejected at once ("router overloaded: ...",
    counted in ``sor_order_rejects_total{reason="overloaded"}``) instead of
    queued, so an accepted order's first ER never waits behind a backlog.
    Cancels still go through. Each measure turns the gate on above its
    limit and lets it go off only once it has stayed at or under its clear
    level for ``hold_ms``."""

    enabled: bool = True
    """false: no parent is ever refused for load (the OMS's whole flow is
    taken, however late its answers). The inbox measure still defers ack
    deadlines while it is over its limit: the router never cancels its own
    children for being too busy to read their acks."""
    inbox_age_ms: Positive = 20
    """On when an event has waited longer than this to reach the engine.
    threaded: its time in the inbox; poll: how long the pump has found work
    on every pass without one empty pass (everything still queued arrived
    after that empty pass, so this bounds its wait). While this measure is
    on, an ack deadline that falls due waits another child_ack_timeout_ms
    instead of canceling the child: its answer may be queued unread."""
    inbox_clear_ms: NonNegative = 5
    """The inbox measure clears at or under this (below ``inbox_age_ms``)."""
    ack_ms: Positive = 50
    """On when the median ack time of a venue's recent answers (its child
    handed to quickfix -> the venue's first answer read off the socket; poll
    driver: not counting the pump's own busy time) is above this."""
    ack_clear_ms: NonNegative = 20
    """The ack measure clears at or under this (below ``ack_ms``)."""
    ack_window_ms: Positive = 250
    """Answers older than this do not count; with fewer than
    ``ack_min_samples`` left a venue's ack measure is clear. While the
    gate is on few new children are sent, so this is also about how long
    an ack overload outlives the last slow answer."""
    ack_samples: Positive = 32
    """A venue's median is taken over at most its last this many answers."""
    ack_min_samples: Positive = 4
    """Fewer recent answers than this are not a measure (one slow ack is
    not an overload)."""
    hold_ms: Positive = 100
    """How long a measure must stay at or under its clear level before the
    gate goes off (so also the shortest time it is on): no flapping."""


class RouterConfig(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str = "sor"
    """This router's name in the journal: several routers may share one
    (``journal.url``), and a restart recovers only its own sessions."""
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
    shutdown: Literal["cancel", "leave"] = "cancel"
    """On SIGTERM/SIGINT: cancel every working child at its venue and report
    the parents canceled to the OMS before logging out; or leave them
    working at the venues (logged, parent by parent)."""
    shutdown_timeout_ms: Positive = 5_000
    """How long a clean shutdown waits for the venues' cancel answers."""
    reconcile_timeout_ms: Positive = 5_000
    """After a restart from the journal, how long the OMS acceptor stays
    closed while the venues answer the status of every restored open child
    (it opens as soon as all have answered; after this it opens anyway,
    with an error naming the children still unconfirmed)."""
    exec_id_prefix: str = ""
    """Prefix for ExecIDs/OrderIDs; empty means a per-start unique prefix."""
    overload: OverloadConfig = OverloadConfig()
    """Back-pressure thresholds (``[router.overload]``)."""


class Config(_Cfg, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The router's tree. ``sim.config.SimClusterConfig`` extends it with the
    simulator's sections (``[sim]``, ``[scenario]``, ``[venues.sim]``)."""

    oms: OmsConfig
    venues: Sequence[VenueConfig]
    """Decoded as a list. A ``Sequence`` (read-only, so covariant) lets the
    simulator's tree narrow the element type to its own venue type."""
    symbols: list[SymbolConfig]
    waterfall: WaterfallConfig
    router: RouterConfig = RouterConfig()
    fix: FixConfig = FixConfig()
    metrics: MetricsConfig = MetricsConfig()
    admin: AdminConfig = AdminConfig()
    marketdata: MarketDataConfig = MarketDataConfig()
    model: ModelConfig = ModelConfig()
    journal: JournalConfig = JournalConfig()
    risk: RiskConfig = RiskConfig()
    learning: LearningConfig = LearningConfig()

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


C = TypeVar("C", bound=Config)
S = TypeVar("S", bound=msgspec.Struct)


def _tick(value: str, where: str) -> Decimal:
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise ConfigError(f"{where}: {value!r} is not a decimal number") from None
    if not d.is_finite() or d <= 0:
        raise ConfigError(f"{where}: must be a positive decimal, got {value!r}")
    return d


def validate(cfg: C) -> C:
    """Cross-field checks msgspec cannot express; each names the field.
    (Single-field ranges are ``msgspec.Meta`` constraints, checked while
    decoding.)"""
    names = [v.name for v in cfg.venues]
    if not names:
        raise ConfigError("venues: at least one venue is required")
    for i, v in enumerate(cfg.venues):
        if v.name in names[:i]:
            raise ConfigError(f"venues[{i}].name: duplicate venue {v.name!r}")
    ports = [v.port for v in cfg.venues] + [cfg.oms.port]
    if len(set(ports)) != len(ports):
        raise ConfigError("venues[].port / oms.port: ports must be distinct")
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
    for i, name in enumerate(wf.allowed_venues):
        if name not in names:
            raise ConfigError(f"waterfall.allowed_venues[{i}]: unknown venue {name!r}")
    if wf.max_child_qty and wf.min_child_qty > wf.max_child_qty:
        raise ConfigError("waterfall.min_child_qty: larger than max_child_qty")
    _check_admin(cfg.admin)
    _check_overload(cfg.router.overload)
    validate_risk(cfg.risk, [s.symbol for s in cfg.symbols])
    return cfg


def validate_risk(risk: RiskConfig, symbols: Sequence[str]) -> None:
    """``[risk]``'s cross-field checks: overrides name configured symbols,
    once each, and sessions once each."""
    seen: set[str] = set()
    for i, rs in enumerate(risk.symbols):
        if rs.symbol not in symbols:
            raise ConfigError(f"risk.symbols[{i}].symbol: unknown symbol {rs.symbol!r}")
        if rs.symbol in seen:
            raise ConfigError(f"risk.symbols[{i}].symbol: duplicate symbol {rs.symbol!r}")
        seen.add(rs.symbol)
    seen = set()
    for i, ss in enumerate(risk.sessions):
        if not ss.session:
            raise ConfigError(f"risk.sessions[{i}].session: must not be empty")
        if ss.session in seen:
            raise ConfigError(f"risk.sessions[{i}].session: duplicate session {ss.session!r}")
        seen.add(ss.session)


def _check_overload(o: OverloadConfig) -> None:
    if o.inbox_clear_ms >= o.inbox_age_ms:
        raise ConfigError(f"router.overload.inbox_clear_ms: {o.inbox_clear_ms} must be below inbox_age_ms "
                          f"({o.inbox_age_ms}): the gap is the hysteresis")
    if o.ack_clear_ms >= o.ack_ms:
        raise ConfigError(f"router.overload.ack_clear_ms: {o.ack_clear_ms} must be below ack_ms ({o.ack_ms}): "
                          "the gap is the hysteresis")
    if o.ack_min_samples > o.ack_samples:
        raise ConfigError(f"router.overload.ack_min_samples: {o.ack_min_samples} is more than ack_samples "
                          f"({o.ack_samples})")


def _check_admin(a: AdminConfig) -> None:
    try:
        host = ipaddress.ip_address(a.host)
    except ValueError:
        raise ConfigError(f"admin.host: {a.host!r} is not an IP address") from None
    if not host.is_loopback and not a.allow_non_loopback:
        raise ConfigError(f"admin.host: {a.host} is not a loopback address: the admin API binds loopback only "
                          "unless admin.allow_non_loopback = true")
    if a.enabled and not a.token_file:
        raise ConfigError("admin.token_file: required when admin.enabled = true (the admin API never runs "
                          "without a bearer token)")


# ------------------------------------------------------------------ loading


def _lookup(tree: object, path: str) -> object:
    """The value at a msgspec path such as ``venues[0].port`` in a decoded
    TOML tree; raises LookupError (or TypeError) when it is not there."""
    for key, index in _PATH_PART.findall(path):
        if index:
            if not isinstance(tree, list):
                raise LookupError(path)
            tree = tree[int(index)]
        else:
            if not isinstance(tree, dict):
                raise LookupError(path)
            tree = tree[key]
    return tree


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _describe(err: msgspec.ValidationError, raw: Mapping[str, Any]) -> str:
    # msgspec says "... - at `$.venues[0].port`"; turn the JSON path into the
    # TOML spelling operators write. A failed constraint ("Expected `int` >=
    # 1") does not say what it got: add the value from the file.
    text = str(err)
    if " - at `$." not in text:
        return text
    msg, _, path = text.partition(" - at `$.")
    path = path.rstrip("`")
    if msg.startswith("Expected `") and ", got " not in msg:
        try:
            value = _lookup(raw, path)
        except (LookupError, TypeError):
            pass
        else:
            try:
                shown = json.dumps(value, ensure_ascii=False)
            except (TypeError, ValueError):
                shown = repr(value)
            msg = f"{msg}, got {shown}"
    return f"{path}: {msg}"


def read_toml(text: str, source: str = "<string>") -> dict[str, Any]:
    """The TOML text as a plain tree; ``ConfigError`` names ``source``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None


def read_config_text(path: str | Path) -> str:
    p = Path(path)
    try:
        return p.read_text()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config: {e.strerror}") from None


def decode_config(raw: Mapping[str, Any], cls: type[S], source: str = "<string>") -> S:
    """A TOML tree decoded into ``cls``: types, unknown fields and the
    ``msgspec.Meta`` ranges, each error naming the field."""
    try:
        return msgspec.convert(raw, cls)
    except msgspec.ValidationError as e:
        raise ConfigError(f"{source}: {_describe(e, raw)}") from None


def checked(cfg: C, source: str, *checks: Callable[[C], object]) -> C:
    """Run cross-field ``checks`` on a decoded config; errors name ``source``."""
    try:
        for check in checks:
            check(cfg)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return cfg


def simulator_sections(raw: Mapping[str, Any]) -> list[str]:
    """Where a TOML tree has the simulator's sections, in TOML spelling
    (``sim``, ``scenario``, ``venues[1].sim``): what ``router_sections``
    leaves out."""
    out = [k for k in SIMULATOR_TABLES if k in raw]
    venues = raw.get("venues")
    if isinstance(venues, list):
        out += [f"venues[{i}].{VENUE_SIMULATOR_TABLE}" for i, v in enumerate(venues)
                if isinstance(v, dict) and VENUE_SIMULATOR_TABLE in v]
    return out


def router_sections(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The TOML tree less the simulator's sections: the top-level tables in
    ``SIMULATOR_TABLES`` and each venue's ``VENUE_SIMULATOR_TABLE``. Those are
    the simulator's to validate (``sim.config``); the router neither reads nor
    checks them. Everything else stays, so the router's own sections are
    decoded with ``forbid_unknown_fields`` and a typo there fails, named."""
    out = {k: v for k, v in raw.items() if k not in SIMULATOR_TABLES}
    venues = out.get("venues")
    if isinstance(venues, list):
        out["venues"] = [{k: x for k, x in v.items() if k != VENUE_SIMULATOR_TABLE} if isinstance(v, dict) else v
                         for v in venues]
    return out


def parse_config(text: str, source: str = "<string>") -> Config:
    """The router's config from TOML text. The simulator's sections (see
    ``router_sections``) are accepted and left out unread: ``sim.config``
    loads and validates the full tree."""
    cfg = decode_config(router_sections(read_toml(text, source)), Config, source)
    return checked(cfg, source, validate)


def load_config(path: str | Path) -> Config:
    """``parse_config`` of a file; ``ConfigError`` names the file."""
    return parse_config(read_config_text(path), str(Path(path)))
