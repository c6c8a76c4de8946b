"""Pre-trade controls (EU RTS 6 Art. 15-17, SEC 15c3-5), checked by the
engine on every parent the OMS sends and on every child the router itself
creates: a bad model must not send what a bad OMS could not.

- price collar per symbol against the NBBO mid (the last trade when the
  book is one-sided or stale): a limit beyond ``collar_bps`` is refused; a
  market order's children become marketable limits at the collar;
- maximum order quantity and notional, per symbol and per OMS session;
- per-session credit: gross notional of open plus executed orders since
  start, counted the moment an order is accepted, what it leaves unfilled
  given back when it ends;
- a message throttle per OMS session (new orders, cancels, replaces per
  second; beyond it, a reject, never a queue);
- a repeated-execution throttle: after N fills of a symbol in T ms the
  symbol is not routed (no new parent, no new child) until re-enabled;
- a duplicate-order guard (same session, symbol, side, qty and price within
  ``dup_window_ms``: reject or warn) and a restricted-symbol list.

Sans-IO like the engine: every window runs on the events' own times
(``recv_ns``), so a backtest and a replay decide exactly as the daemon did.
The checks are O(1) per order: limits are resolved per symbol and per
session ahead of time (and again when an operator changes one), the
windows are preallocated rings of timestamps, and a passing order
allocates nothing here but the duplicate guard's entry.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import msgspec

from router.config import ConfigError, RiskConfig, RiskSessionConfig, RiskSymbolConfig, SymbolConfig, validate_risk
from router.domain.events import NewOrderReceived
from router.domain.types import OrdRejReason, OrdType, Side
from router.market.rings import REF_NAMES, REF_NONE, MarketData
from router.metrics.registry import Metrics

log = logging.getLogger("sor.risk")

COLLAR = "price_collar"
MAX_QTY = "max_order_qty"
MAX_NOTIONAL = "max_order_notional"
CREDIT = "credit_limit"
THROTTLE = "message_throttle"
EXEC_THROTTLE = "execution_throttle"
DUPLICATE = "duplicate_order"
RESTRICTED = "restricted_symbol"
CHILD_PRICE = "child_price"
LIMITS = (COLLAR, MAX_QTY, MAX_NOTIONAL, CREDIT, THROTTLE, EXEC_THROTTLE, DUPLICATE, RESTRICTED, CHILD_PRICE)
"""The ``limit`` label of ``sor_risk_rejects_total``: each control by name."""
ORDER_KINDS = ("parent", "child", "cancel", "replace")
"""The ``order`` label: what was refused."""

_SECOND_NS = 1_000_000_000
_DUP_SWEEP_MIN = 4096
_NEVER = -(1 << 62)
"""A ring slot never written: older than any window."""

_SYMBOL_FIELDS = tuple(f for f in RiskSymbolConfig.__struct_fields__ if f != "symbol")
_SESSION_FIELDS = tuple(f for f in RiskSessionConfig.__struct_fields__ if f != "session")
_TOP_FIELDS = tuple(f for f in RiskConfig.__struct_fields__ if f not in ("symbols", "sessions"))


class Breach(msgspec.Struct, frozen=True):
    """Why an order is refused: the control (a ``LIMITS`` name), the Text
    for the OMS naming the limit and the value, and the OrdRejReason."""

    limit: str
    text: str
    reason: OrdRejReason = OrdRejReason.ORDER_EXCEEDS_LIMIT


class _Ring:
    """The last ``n`` event times, oldest at ``head``: a sliding window in O(1)."""

    __slots__ = ("head", "n", "ts")

    def __init__(self, n: int) -> None:
        self.n = n
        self.ts = [_NEVER] * n
        self.head = 0

    def push(self, now_ns: int) -> None:
        h = self.head
        self.ts[h] = now_ns
        h += 1
        self.head = 0 if h == self.n else h

    def oldest(self) -> int:
        return self.ts[self.head]

    def resized(self, n: int) -> _Ring:
        """A ring of ``n`` holding this one's newest times (a limit changed
        at run time does not forget the window)."""
        out = _Ring(n)
        newest = self.ts[self.head:] + self.ts[:self.head]  # oldest first
        for t in newest[-n:]:
            if t != _NEVER:
                out.push(t)
        return out


def _fmt(d: Decimal | float) -> str:
    return f"{d:,.2f}"


class _Symbol:
    """One symbol's resolved limits and state."""

    __slots__ = ("collar_bps", "disabled", "exec_ring", "exec_window_ns", "index", "max_executions",
                 "max_notional", "max_notional_key", "max_qty", "max_qty_key", "ref_ticks", "restricted", "symbol",
                 "tick", "tick_f")

    def __init__(self, sc: SymbolConfig, index: int) -> None:
        self.symbol = sc.symbol
        self.index = index
        self.tick = Decimal(sc.tick_size)
        self.tick_f = float(self.tick)
        self.ref_ticks = int(Decimal(sc.ref_price) / self.tick)
        self.disabled: str | None = None
        """Why the execution throttle stopped the symbol; None: routing."""
        self.exec_ring: _Ring | None = None
        self.collar_bps = self.max_qty = self.max_executions = self.exec_window_ns = 0
        self.max_notional = 0.0
        self.max_qty_key = self.max_notional_key = ""
        self.restricted = False

    def resolve(self, risk: RiskConfig, over: RiskSymbolConfig | None) -> None:
        def pick(name: str) -> Any:
            v = getattr(over, name) if over is not None else None
            return getattr(risk, name) if v is None else v

        where = f"risk.symbols[{self.symbol}]."
        self.collar_bps = pick("collar_bps")
        self.max_qty = pick("max_order_qty")
        self.max_qty_key = (where if over is not None and over.max_order_qty is not None else "risk.") + "max_order_qty"
        self.max_notional = float(pick("max_order_notional"))
        self.max_notional_key = (where if over is not None and over.max_order_notional is not None
                                 else "risk.") + "max_order_notional"
        n = pick("max_executions")
        window = pick("execution_window_ms") * 1_000_000
        if n != self.max_executions:
            self.exec_ring = (self.exec_ring.resized(n) if self.exec_ring is not None else _Ring(n)) if n else None
        self.max_executions, self.exec_window_ns = n, window
        self.restricted = self.symbol in risk.restricted_symbols


class _Session:
    """One OMS session's resolved limits and state."""

    __slots__ = ("credit_limit", "credit_used", "key", "max_msgs", "max_notional", "max_qty", "msg_ring", "where")

    def __init__(self, key: str) -> None:
        self.key = key
        self.credit_used = 0.0
        """Gross notional of open plus executed orders."""
        self.max_msgs = 0
        self.msg_ring = _Ring(1)
        self.max_qty = 0
        self.max_notional = self.credit_limit = 0.0
        self.where = "risk."

    def resolve(self, risk: RiskConfig, over: RiskSessionConfig | None) -> None:
        def pick(name: str) -> Any:
            v = getattr(over, name) if over is not None else None
            return getattr(risk, name) if v is None else v

        self.where = f"risk.sessions[{over.session}]." if over is not None else "risk."
        self.max_qty = pick("max_order_qty")
        self.max_notional = float(pick("max_order_notional"))
        self.credit_limit = float(pick("credit_limit"))
        n = pick("max_msgs_per_s")
        if n != self.max_msgs:
            self.msg_ring = self.msg_ring.resized(n)
        self.max_msgs = n


class RiskControls:
    """The engine's pre-trade controls and their state (owned by the
    engine's thread, like everything the engine holds).

    ``check_parent`` / ``check_cancel`` / ``check_child`` answer None to let
    an order go, or the ``Breach`` that stops it; the engine turns a breach
    into the reject and counts it. ``accepted`` / ``parent_done`` /
    ``on_fill`` keep the credit and the execution throttle."""

    def __init__(self, risk: RiskConfig, symbols: Sequence[SymbolConfig], market: MarketData | None,
                 stale_ms: int, metrics: Metrics | None = None) -> None:
        self._market = market
        self._dup_warn = metrics.risk_warning[DUPLICATE] if metrics is not None else None
        self._stale_ns = stale_ms * 1_000_000
        self._syms = {sc.symbol: _Symbol(sc, market.symbol_index.get(sc.symbol, -1) if market else -1)
                      for sc in symbols}
        self._sessions: dict[str, _Session] = {}
        self._dups: dict[tuple[str, str, bool, int, int | None], int] = {}
        self._dup_sweep_at = _DUP_SWEEP_MIN
        self._open: dict[str, tuple[_Session, float, float]] = {}
        """order_id -> (its session, the notional charged, the tick size)."""
        self.child_px: int | None = None
        """After ``check_child`` lets a child go: the limit price it must
        carry (a market child capped at the collar gets one)."""
        self.last_px_ticks = 0
        """After ``check_parent`` lets a parent go: the price its credit is
        charged at."""
        self.warnings: int = 0
        """Duplicates let through with a warning (``dup_mode = "warn"``)."""
        self._dup_logged_ns = _NEVER
        self._dup_logged_n = 0
        self._ref_ns = _NEVER
        self._ref_sym: _Symbol | None = None
        self._ref: tuple[int, int] = (0, REF_NONE)
        self._apply(risk)

    # -------------------------------------------------------------- config

    @property
    def config(self) -> RiskConfig:
        return self._cfg

    def _apply(self, risk: RiskConfig) -> None:
        self._cfg = risk
        self.enabled = risk.enabled
        self._dup_ns = risk.dup_window_ms * 1_000_000 if risk.dup_mode != "off" else 0
        self._dup_reject = risk.dup_mode == "reject"
        over = {o.symbol: o for o in risk.symbols}
        for sym in self._syms.values():
            sym.resolve(risk, over.get(sym.symbol))
        for sess in self._sessions.values():
            sess.resolve(risk, self._session_override(sess.key))

    def _session_override(self, key: str) -> RiskSessionConfig | None:
        # The full key wins over the OMS's CompID alone.
        comp = key.rsplit("->", 1)[-1]
        by_comp = None
        for o in self._cfg.sessions:
            if o.session == key:
                return o
            if o.session == comp:
                by_comp = o
        return by_comp

    def _session(self, key: str) -> _Session:
        s = self._sessions.get(key)
        if s is None:
            s = self._sessions[key] = _Session(key)
            s.resolve(self._cfg, self._session_override(key))
        return s

    def changed(self, key: str, value: str) -> RiskConfig:
        """The ``[risk]`` tree with ``key`` set to ``value`` (see
        ``RiskLimitChanged``), validated; ``ConfigError`` names what is wrong."""
        kind, _, rest = key.partition(".")
        # A symbol (BRK.A) or a session key (FIX.4.4:SOR->OMS) may hold dots:
        # the field is what follows the last one.
        which, _, field = rest.rpartition(".")
        raw = msgspec.to_builtins(self._cfg)
        if not rest and kind in _TOP_FIELDS:
            raw[kind] = _parse(value, list_=kind == "restricted_symbols")
        elif which and kind in ("symbol", "session") and field in (
                _SYMBOL_FIELDS if kind == "symbol" else _SESSION_FIELDS):
            table = "symbols" if kind == "symbol" else "sessions"
            entries: list[dict[str, Any]] = raw[table]
            entry = next((e for e in entries if e[kind] == which), None)
            if entry is None:
                entry = {kind: which}
                entries.append(entry)
            entry[field] = _parse(value)
        else:
            raise ConfigError(f"{key}: not a risk limit (a [risk] field, symbol.SYM.FIELD or session.KEY.FIELD)")
        try:
            new = msgspec.convert(raw, RiskConfig)
        except msgspec.ValidationError as e:
            raise ConfigError(f"{key} = {value!r}: {e}") from None
        validate_risk(new, list(self._syms))
        return new

    def check_change(self, key: str, value: str) -> str | None:
        """None if ``key = value`` is a valid change, else why not."""
        try:
            self.changed(key, value)
        except ConfigError as e:
            return str(e)
        return None

    def change(self, key: str, value: str) -> None:
        """Apply a limit change from the next order on (``ConfigError`` if
        it does not fit; then nothing changed)."""
        self._apply(self.changed(key, value))

    def limit(self, key: str) -> object:
        """The current value of a ``[risk]`` field (for logs and status)."""
        return getattr(self._cfg, key, None)

    # -------------------------------------------------------------- checks

    def check_parent(self, ev: NewOrderReceived) -> Breach | None:
        sess = self._sessions.get(ev.session) or self._session(ev.session)
        now = ev.recv_ns
        ring = sess.msg_ring
        h = ring.head
        ts = ring.ts
        if now - ts[h] < _SECOND_NS:
            return self._throttled(sess)
        ts[h] = now
        h += 1
        ring.head = 0 if h == ring.n else h
        sym = self._syms.get(ev.symbol)
        if sym is None:
            return None  # the edge refuses unknown symbols; nothing to measure here
        if sym.restricted:
            return Breach(RESTRICTED, f"restricted symbol: {sym.symbol} is on risk.restricted_symbols",
                          OrdRejReason.BROKER_OPTION)
        if sym.disabled is not None:
            return Breach(EXEC_THROTTLE, sym.disabled, OrdRejReason.EXCHANGE_CLOSED)
        # The checks inline on the passing path; the helpers build the breach.
        qty = ev.qty
        if qty > sym.max_qty or qty > sess.max_qty:
            return self._check_qty(sym, sess, qty, "order")
        px = ev.price_ticks
        ref2 = src = 0
        bps = sym.collar_bps
        if bps or px is None:
            ref2, src = self._reference(sym, now, keep=True)
        if px is not None:
            # 2 * px * 1e4 against ref2 * (1e4 +- bps): whole numbers only.
            beyond = (px * 20_000 > ref2 * (10_000 + bps)) if ev.side is Side.BUY else \
                (px * 20_000 < ref2 * (10_000 - bps))
            if ref2 and bps and beyond:
                return self._collar(sym, ev.side, px, ref2, src, "limit")
            est = px
        elif ref2:
            # A market order is charged at the worst price its children may
            # trade at: the collar (or the reference, without one).
            est = self._cap(sym, ev.side, ref2) if sym.collar_bps else (ref2 + 1) // 2
        else:
            est = sym.ref_ticks
        notional = qty * est * sym.tick_f
        if notional > sym.max_notional or notional > sess.max_notional:
            return self._check_notional(sym, sess, notional, "order")
        if sess.credit_used + notional > sess.credit_limit:
            return Breach(CREDIT, f"credit limit: order notional {_fmt(notional)} on top of "
                                  f"{_fmt(sess.credit_used)} open and executed exceeds {_fmt(sess.credit_limit)} "
                                  f"for session {sess.key} ({sess.where}credit_limit)")
        if self._dup_ns:
            b = self._duplicate(ev, now)
            if b is not None:
                return b
        self.last_px_ticks = est
        return None

    def check_cancel(self, session: str, now_ns: int) -> Breach | None:
        """A cancel or replace from OMS ``session``: the message throttle."""
        sess = self._sessions.get(session) or self._session(session)
        ring = sess.msg_ring
        if now_ns - ring.oldest() < _SECOND_NS:
            return self._throttled(sess)
        ring.push(now_ns)
        return None

    def check_replace(self, order_id: str, session: str, symbol: str, side: Side, qty: int,
                      price_ticks: int | None, more_qty: bool, new_price: bool, now_ns: int) -> Breach | None:
        """A cancel/replace of an accepted parent to ``qty`` at
        ``price_ticks`` (None: market). Only what the replace adds is
        checked: a quantity increase against the size limits, a new price
        against the collar, either against notional and credit (the order's
        own charge is replaced, not added to). The engine asks only for a
        replace that adds risk (more shares, a more aggressive or market
        price): one that only takes risk off always passes. The message
        throttle was checked by ``check_cancel``. On a pass,
        ``last_px_ticks`` is the price the new terms' credit is charged at."""
        sym = self._syms.get(symbol)
        entry = self._open.get(order_id)
        if sym is None or entry is None:
            # Never charged (a symbol without controls): nothing to recharge.
            self.last_px_ticks = 0
            return None
        sess = self._sessions.get(session) or self._session(session)
        if sym.restricted:
            return Breach(RESTRICTED, f"restricted symbol: {symbol} is on risk.restricted_symbols",
                          OrdRejReason.BROKER_OPTION)
        if sym.disabled is not None:
            return Breach(EXEC_THROTTLE, sym.disabled, OrdRejReason.EXCHANGE_CLOSED)
        if more_qty:
            b = self._check_qty(sym, sess, qty, "order")
            if b is not None:
                return b
        ref2, src = self._reference(sym, now_ns)
        if price_ticks is not None:
            if new_price and ref2 and sym.collar_bps:
                b = self._collar(sym, side, price_ticks, ref2, src, "limit")
                if b is not None:
                    return b
            est = price_ticks
        elif ref2:
            est = self._cap(sym, side, ref2) if sym.collar_bps else (ref2 + 1) // 2
        else:
            est = sym.ref_ticks
        notional = qty * est * sym.tick_f
        b = self._check_notional(sym, sess, notional, "order")
        if b is not None:
            return b
        charged = entry[1]
        if sess.credit_used - charged + notional > sess.credit_limit:
            return Breach(CREDIT, f"credit limit: replaced order notional {_fmt(notional)} on top of "
                                  f"{_fmt(sess.credit_used - charged)} open and executed exceeds "
                                  f"{_fmt(sess.credit_limit)} for session {sess.key} ({sess.where}credit_limit)")
        self.last_px_ticks = est
        return None

    def notional(self, order_id: str, qty: int, px_ticks: int) -> float:
        """``qty`` at ``px_ticks`` in ``order_id``'s currency units (0 for an
        order the controls do not charge)."""
        entry = self._open.get(order_id)
        return qty * px_ticks * entry[2] if entry is not None else 0.0

    def charged(self, order_id: str) -> float:
        """What ``order_id`` is charged against its session's credit now."""
        entry = self._open.get(order_id)
        return entry[1] if entry is not None else 0.0

    def charge(self, order_id: str, notional: float) -> float:
        """Charge ``order_id`` ``notional`` instead of what it was charged
        (a replace: reserved while pending, settled or given back after).
        Returns the previous charge."""
        entry = self._open.get(order_id)
        if entry is None:
            return 0.0
        sess, charged, tick_f = entry
        sess.credit_used += notional - charged
        self._open[order_id] = (sess, notional, tick_f)
        return charged

    def check_child(self, session: str, symbol: str, side: Side, qty: int, ord_type: OrdType,
                    price_ticks: int | None, parent_price_ticks: int | None, now_ns: int) -> Breach | None:
        """A child the router is about to send. None: send it, at limit
        price ``child_px`` (a market child becomes a marketable limit at
        the collar when there is a reference price)."""
        self.child_px = price_ticks
        sym = self._syms.get(symbol)
        if sym is None:
            return None
        if sym.restricted:
            return Breach(RESTRICTED, f"restricted symbol: {symbol} is on risk.restricted_symbols",
                          OrdRejReason.BROKER_OPTION)
        if sym.disabled is not None:
            return Breach(EXEC_THROTTLE, sym.disabled, OrdRejReason.EXCHANGE_CLOSED)
        sess = self._sessions.get(session) or self._session(session)
        b = self._check_qty(sym, sess, qty, "child")
        if b is not None:
            return b
        if price_ticks is not None and parent_price_ticks is not None and \
                side.sign * (price_ticks - parent_price_ticks) > 0:
            return Breach(CHILD_PRICE, f"child price: limit {_fmt(price_ticks * sym.tick)} is beyond the "
                                       f"parent's limit {_fmt(parent_price_ticks * sym.tick)}")
        ref2 = src = 0
        if sym.collar_bps:
            ref2, src = self._reference(sym, now_ns)
        if ref2:
            if price_ticks is None:
                self.child_px = price_ticks = self._cap(sym, side, ref2)
            else:
                b = self._collar(sym, side, price_ticks, ref2, src, "child limit")
                if b is not None:
                    return b
        est = price_ticks if price_ticks is not None else ((ref2 + 1) // 2 if ref2 else sym.ref_ticks)
        return self._check_notional(sym, sess, qty * est * sym.tick_f, "child")

    # ----------------------------------------------------- state over time

    def accepted(self, order_id: str, session: str, symbol: str, qty: int) -> None:
        """A parent that passed ``check_parent`` was accepted: its credit is
        charged now, at ``last_px_ticks``."""
        sym = self._syms.get(symbol)
        if sym is None:
            return
        sess = self._sessions.get(session) or self._session(session)
        notional = qty * self.last_px_ticks * sym.tick_f
        sess.credit_used += notional
        self._open[order_id] = (sess, notional, sym.tick_f)

    def parent_done(self, order_id: str, notional_ticks: int) -> None:
        """A parent ended: what it executed (``notional_ticks``: its fills'
        qty x price) stays charged, the rest is given back."""
        entry = self._open.pop(order_id, None)
        if entry is not None:
            sess, charged, tick_f = entry
            sess.credit_used += notional_ticks * tick_f - charged

    def on_fill(self, symbol: str, now_ns: int) -> str | None:
        """A child of ``symbol`` filled. Returns why routing the symbol
        stops when this fill trips the repeated-execution throttle."""
        sym = self._syms.get(symbol)
        if sym is None or sym.exec_ring is None or sym.disabled is not None:
            return None
        ring = sym.exec_ring
        ring.push(now_ns)
        if now_ns - ring.oldest() >= sym.exec_window_ns:
            return None
        sym.disabled = (f"execution throttle: {symbol} stopped after {sym.max_executions} executions in "
                        f"{sym.exec_window_ns // 1_000_000} ms (risk.max_executions); an operator must "
                        f"re-enable it")
        return sym.disabled

    def reenable(self, symbol: str) -> bool:
        """Route ``symbol`` again (its execution window starts over);
        False if it was not stopped (or is unknown)."""
        sym = self._syms.get(symbol)
        if sym is None or sym.disabled is None:
            return False
        sym.disabled = None
        if sym.max_executions:
            sym.exec_ring = _Ring(sym.max_executions)
        return True

    def stopped_symbols(self) -> list[str]:
        return sorted(s.symbol for s in self._syms.values() if s.disabled is not None)

    def credit_used(self, session: str) -> float:
        s = self._sessions.get(session)
        return s.credit_used if s is not None else 0.0

    def status(self) -> dict[str, Any]:
        """The limits and the state, as plain data (the admin API's status)."""
        return {
            "limits": msgspec.to_builtins(self._cfg),
            "stopped_symbols": self.stopped_symbols(),
            "credit_used": {k: s.credit_used for k, s in self._sessions.items()},
        }

    # ----------------------------------------------------------- internals

    def _throttled(self, sess: _Session) -> Breach:
        return Breach(THROTTLE, f"message throttle: more than {sess.max_msgs} new orders, cancels and replaces "
                                f"in one second from session {sess.key} ({sess.where}max_msgs_per_s)",
                      OrdRejReason.OTHER)

    def _check_qty(self, sym: _Symbol, sess: _Session, qty: int, what: str) -> Breach | None:
        if qty > sym.max_qty:
            return Breach(MAX_QTY, f"max order qty: {what} qty {qty} exceeds the limit of {sym.max_qty} for "
                                   f"{sym.symbol} ({sym.max_qty_key})")
        if qty > sess.max_qty:
            return Breach(MAX_QTY, f"max order qty: {what} qty {qty} exceeds the limit of {sess.max_qty} for "
                                   f"session {sess.key} ({sess.where}max_order_qty)")
        return None

    def _check_notional(self, sym: _Symbol, sess: _Session, notional: float, what: str) -> Breach | None:
        if notional > sym.max_notional:
            return Breach(MAX_NOTIONAL, f"max order notional: {what} notional {_fmt(notional)} exceeds the "
                                        f"limit of {_fmt(sym.max_notional)} for {sym.symbol} "
                                        f"({sym.max_notional_key})")
        if notional > sess.max_notional:
            return Breach(MAX_NOTIONAL, f"max order notional: {what} notional {_fmt(notional)} exceeds the "
                                        f"limit of {_fmt(sess.max_notional)} for session {sess.key} "
                                        f"({sess.where}max_order_notional)")
        return None

    def _reference(self, sym: _Symbol, now_ns: int, keep: bool = False) -> tuple[int, int]:
        """``keep``: a parent's check, whose first wave's children are checked
        next, against the same book (until ``forget_reference``): one look at
        the market for all of them."""
        if not keep and now_ns == self._ref_ns and sym is self._ref_sym:
            return self._ref
        md = self._market
        if md is None or sym.index < 0:
            return 0, REF_NONE
        ref = md.reference2(sym.index, now_ns, self._stale_ns)
        if keep:
            self._ref_ns, self._ref_sym, self._ref = now_ns, sym, ref
        return ref

    def forget_reference(self) -> None:
        """The parent's first wave is built: later children look again."""
        self._ref_sym = None

    @staticmethod
    def _cap(sym: _Symbol, side: Side, ref2: int) -> int:
        """The collar's price on ``side``, in whole ticks inside the collar."""
        num = ref2 * (10_000 + side.sign * sym.collar_bps)
        return num // 20_000 if side is Side.BUY else -(-num // 20_000)

    @staticmethod
    def _collar(sym: _Symbol, side: Side, px: int, ref2: int, src: int, what: str) -> Breach | None:
        # 2 * px * 1e4 against ref2 * (1e4 +- bps): whole numbers only.
        bps = sym.collar_bps
        if side is Side.BUY:
            if px * 20_000 <= ref2 * (10_000 + bps):
                return None
        elif px * 20_000 >= ref2 * (10_000 - bps):
            return None
        away = abs(px * 2 - ref2) / ref2 * 100
        ref = Decimal(ref2) * sym.tick / 2
        return Breach(COLLAR, f"price collar: {what} {_fmt(px * sym.tick)} is {away:.1f}% "
                              f"{'above' if px * 2 > ref2 else 'below'} {REF_NAMES[src]} {_fmt(ref)} "
                              f"(collar_bps {bps})")

    def _dup_text(self, ago_ns: int) -> str:
        return (f"duplicate order: same session, symbol, side, qty and price as one {ago_ns / 1e6:.1f} ms ago "
                f"(risk.dup_window_ms {self._dup_ns // 1_000_000})")

    def _duplicate(self, ev: NewOrderReceived, now: int) -> Breach | None:
        dups, window = self._dups, self._dup_ns
        if len(dups) >= self._dup_sweep_at:
            # Entries older than the window go in one sweep now and then
            # (amortised O(1) per order), so the map holds about one
            # window's orders.
            self._dups = dups = {k: t for k, t in dups.items() if now - t < window}
            self._dup_sweep_at = max(_DUP_SWEEP_MIN, 2 * len(dups))
        # The side as a bool: an Enum's hash runs Python code.
        key = (ev.session, ev.symbol, ev.side is Side.BUY, ev.qty, ev.price_ticks)
        prev = dups.get(key)
        if prev is not None and now - prev < window:
            if self._dup_reject:
                return Breach(DUPLICATE, self._dup_text(now - prev), OrdRejReason.DUPLICATE_ORDER)
            self.warnings += 1
            if self._dup_warn is not None:
                self._dup_warn.inc()
            # Logged at most once a second (of event time): an OMS that
            # means to repeat itself must not flood the log.
            if now - self._dup_logged_ns >= _SECOND_NS:
                more = self.warnings - self._dup_logged_n - 1
                log.warning("order %s/%s: %s; let through (risk.dup_mode = warn)%s", ev.session, ev.cl_ord_id,
                            self._dup_text(now - prev), f" ({more} more since the last such warning)" if more else "")
                self._dup_logged_ns, self._dup_logged_n = now, self.warnings
        dups[key] = now
        return None


def _parse(value: str, list_: bool = False) -> Any:
    """A limit's value as TOML would spell it; a bare word is a string, and
    ``list_`` takes a comma-separated list."""
    if list_:
        return [v.strip() for v in value.split(",") if v.strip()]
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value
