"""The admin API: the operator's hands on the running router.

HTTP/1.1 with JSON in and out, served by a stdlib ``ThreadingHTTPServer``
on a thread of its own, never on the engine's. A request's command is
handed to the engine's loop with ``call_soon_threadsafe`` and applied
there as an engine event through ``Driver.inject`` (so it is journaled,
replayed and restored like any input); the request waits on a future the
loop completes, and answers with what the engine did. Status reads run on
the loop the same way: nothing here touches routing state from another
thread.

Every request must carry ``Authorization: Bearer <token>``, the token read
at start-up from ``admin.token_file``; any other is refused with 401,
counted in ``sor_admin_refused_total{reason}`` and logged with the peer's
address. The server binds ``admin.host`` (127.0.0.1 unless configured
otherwise; a non-loopback address needs ``admin.allow_non_loopback``).

Endpoints:

- ``GET /status``: sessions up/down, open parents and children (by venue),
  halts in force, disabled venues, the model in service, recent operator
  actions;
- ``POST /kill`` ``{"symbol"|"session"|"venue": NAME, "reason": TEXT,
  "who": NAME, "wait_ms": N}`` (no scope: everything): the kill switch;
  with ``wait_ms`` the answer waits until no child in scope works at any
  venue (at most that long) and says how long that took;
- ``POST /resume`` (same scope fields): lifts the kill switch of that scope;
- ``POST /venues/NAME/disable`` ``{"cancel_working": bool}``,
  ``POST /venues/NAME/enable``;
- ``GET /limits``, ``POST /limits`` ``{"key": K, "value": V}``: the
  pre-trade limits (``router.risk``), when the engine has them;
- ``POST /symbols/NAME/enable``: route a symbol the execution throttle
  stopped (``SymbolReenabled``), when the engine has risk controls;
- ``GET /console/state``: everything the operator console shows (the
  status, per-venue fill rates and markouts, open parents with their
  children, recent decisions, the limits: ``router.admin.console``).

The console's page itself (``GET /console`` and its files) is the one
thing served without a token: static files with no state in them, which
a browser must be able to load before its script can send the token (read
from the URL's fragment, never sent to the server). A request line's query
string is never logged, so a token put there by mistake stays out of the
log too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec

from router.admin.console import ASSET_PATHS, PAGE_HEADERS, Asset, ConsoleView, load_assets
from router.admin.models import ModelEndpoints
from router.config import Config
from router.domain.events import (
    EngineEvent,
    KillScope,
    KillSwitchEngaged,
    KillSwitchReleased,
    RiskLimitChanged,
    SymbolReenabled,
    VenueEnableChanged,
)
from router.engine import Engine
from router.engine.operator import OperatorAction, scope_name
from router.learning.venuestats import VenueStats
from router.metrics.registry import Metrics
from router.runtime.driver import Driver

log = logging.getLogger("sor.admin")

T = TypeVar("T")

MAX_BODY = 64 * 1024
"""Larger request bodies are refused (413)."""
MAX_WAIT_MS = 30_000
_CTRL = re.compile(r"[\x00-\x1f\x7f]")
"""Control characters (SOH among them) never reach a FIX Text(58) or the log."""


class AdminError(Exception):
    """The admin API cannot start; the message names the setting."""


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def read_token(path: str) -> str:
    """The bearer token in ``path`` (surrounding whitespace stripped)."""
    if not path:
        raise AdminError("admin.token_file: not set (the admin API never runs without a token)")
    try:
        token = Path(path).read_text().strip()
    except OSError as e:
        raise AdminError(f"admin.token_file: cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise AdminError(f"admin.token_file: {path} is not text") from None
    if not token:
        raise AdminError(f"admin.token_file: {path} is empty")
    if any(c.isspace() for c in token):
        raise AdminError(f"admin.token_file: {path} must hold one token (no spaces or line breaks)")
    return token


def clean(value: object, field: str, max_len: int) -> str:
    """A text field of a request, control characters out."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise HttpError(400, f"{field}: must be a string")
    v = _CTRL.sub(" ", value).strip()
    if len(v) > max_len:
        raise HttpError(400, f"{field}: at most {max_len} characters")
    return v


def _flag(body: dict[str, Any], field: str) -> bool:
    v = body.get(field, False)
    if not isinstance(v, bool):
        raise HttpError(400, f"{field}: must be true or false")
    return v


def action_json(act: OperatorAction) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(act)
    return out


class AdminServer:
    """The admin API of one router. ``start`` binds and serves on a daemon
    thread; ``stop`` closes it."""

    def __init__(self, cfg: Config, token: str, loop: asyncio.AbstractEventLoop, driver: Driver, engine: Engine,
                 metrics: Metrics, model: dict[str, str] | None = None, stats: VenueStats | None = None) -> None:
        self.cfg = cfg
        self._token = token.encode()
        self.loop = loop
        self.driver = driver
        self.engine = engine
        self.metrics = metrics
        self.model = dict(model or {})
        self.timeout_s = cfg.admin.command_timeout_ms / 1000
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.console = ConsoleView(cfg, engine, driver, stats)
        self.models = ModelEndpoints(self)
        try:
            self.assets: dict[str, Asset] = load_assets()
        except OSError as e:
            # The API works without its page; say so once, answer 503 there.
            log.error("admin: the operator console's files are missing from the install (%s)", e)
            self.assets = {}

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        a = self.cfg.admin
        handler = type("AdminHandler", (_Handler,), {"admin": self})
        try:
            httpd = ThreadingHTTPServer((a.host, a.port), handler)
        except OSError as e:
            raise AdminError(f"admin: cannot listen on {a.host}:{a.port}: {e.strerror}") from None
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="sor-admin", daemon=True)
        self._thread.start()
        log.info("admin API on http://%s:%d (bearer token from %s)", *self.address, a.token_file)

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the port the kernel gave, for port 0)."""
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    # ---------------------------------------------------- HTTP thread: auth

    def refusal(self, header: str | None) -> str | None:
        """None if the Authorization header carries the token, else why not."""
        if not header:
            return "no_token"
        scheme, _, given = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return "no_token"
        return None if hmac.compare_digest(given.strip().encode(), self._token) else "bad_token"

    def refused(self, reason: str, method: str, path: str, peer: str) -> None:
        self.metrics.admin_refused.labels(reason=reason).inc()
        log.warning("admin: refused %s %s from %s: %s", method, urlsplit(path).path[:200], peer,
                    "no bearer token" if reason == "no_token" else "wrong token")

    # ------------------------------------------------- HTTP thread: routing

    def on_loop(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the engine's loop and wait for its result."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn())
            except BaseException as e:
                fut.set_exception(e)

        try:
            self.loop.call_soon_threadsafe(run)
        except RuntimeError:
            raise HttpError(503, "the router is stopping") from None
        try:
            return fut.result(self.timeout_s)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise HttpError(503, f"the engine did not take the request within {self.cfg.admin.command_timeout_ms} "
                                 "ms (it may still apply it: see GET /status)") from None

    def handle(self, method: str, path: str, body: dict[str, Any], peer: str) -> tuple[int, dict[str, Any]]:
        parts = [p for p in path.split("/") if p]
        who = clean(body.get("who"), "who", 64) or "admin"
        route: tuple[str, str, Callable[[], tuple[int, dict[str, Any]]]] | None = None
        if parts == ["status"]:
            route = ("GET", "status", self.status)
        elif parts == ["kill"]:
            route = ("POST", "kill", lambda: self.kill(body, who, peer))
        elif parts == ["resume"]:
            route = ("POST", "resume", lambda: self.resume(body, who, peer))
        elif len(parts) == 3 and parts[0] == "venues" and parts[2] in ("disable", "enable"):
            route = ("POST", f"venue_{parts[2]}", lambda: self.venue(parts[1], parts[2] == "enable", body, who, peer))
        elif parts == ["limits"] and method == "POST":
            route = ("POST", "limits_set", lambda: self.set_limit(body, who, peer))
        elif parts == ["limits"]:
            route = ("GET", "limits", self.limits)
        elif len(parts) == 3 and parts[0] == "symbols" and parts[2] == "enable":
            route = ("POST", "symbol_enable", lambda: self.symbol_enable(parts[1], who, peer))
        elif parts == ["console", "state"]:
            route = ("GET", "console_state", self.console_state)
        elif parts == ["model"]:
            route = ("GET", "model", self.models.state)
        elif parts == ["model", "load"]:
            route = ("POST", "model_load", lambda: self.models.load(body, who, peer))
        elif parts == ["model", "mode"]:
            route = ("POST", "model_mode", lambda: self.models.mode(body, who))
        elif parts == ["model", "promote"]:
            route = ("POST", "model_promote", lambda: self.models.promote(who))
        elif parts == ["model", "rollback"]:
            route = ("POST", "model_rollback", lambda: self.models.rollback(body, who))
        if route is None:
            raise HttpError(404, f"no such endpoint: {path}")
        want, action, fn = route
        if method != want:
            raise HttpError(405, f"{method} {path}: use {want}")
        self.metrics.admin_requests.labels(action=action).inc()
        return fn()

    # ------------------------------------------------------------- actions

    def status(self) -> tuple[int, dict[str, Any]]:
        return 200, self.on_loop(self._status)

    def _model(self) -> dict[str, Any]:
        """The model at start-up, updated by what the operator loaded since."""
        p: Any = self.engine.planner
        if not hasattr(p, "apply_models") or not p.model_version:
            return self.model
        return {**self.model, "version": p.model_version, **p.state()}

    def _status(self) -> dict[str, Any]:
        """Loop thread: a snapshot of what the operator needs to see."""
        eng, cfg = self.engine, self.cfg
        c = eng.controls
        by_venue = dict.fromkeys(eng.venue_names, 0)
        for ch in eng.children.values():
            if not ch.is_terminal:
                by_venue[ch.venue] = by_venue.get(ch.venue, 0) + 1
        blocked = c.blocked_venues()
        risk: Any = getattr(eng, "risk", None)
        return {
            "ok": True,
            "router": {"name": cfg.router.name, "driver": cfg.router.driver, "planner": cfg.waterfall.planner},
            "model": self._model(),
            "sessions": {"venues": {v: v in eng.venues_up for v in eng.venue_names},
                         "oms": dict(sorted(eng.oms_sessions.items()))},
            "orders": {"open_parents": eng.open_parents, "open_children": eng.open_children,
                       "open_children_by_venue": by_venue},
            "halts": {"trading_halted": eng.halted,
                      "overloaded": eng.overload.reason if eng.overload is not None else None,
                      "kill_switches": [{"name": h.name, **msgspec.to_builtins(h)} for h in c.kills.values()]},
            "venues": {"disabled": [msgspec.to_builtins(v) for v in c.disabled.values()],
                       "routable": sorted(eng.venues_up - blocked)},
            "risk": {"stopped_symbols": risk.stopped_symbols()} if hasattr(risk, "stopped_symbols") else None,
            "recent_actions": [action_json(a) for a in list(c.actions)[-20:]],
        }

    def console_state(self) -> tuple[int, dict[str, Any]]:
        """What the operator console shows: read on the loop, encoded here."""
        view = self.console
        snap = self.on_loop(lambda: view.collect(self._status()))
        return 200, view.render(snap)

    def _operator(self, make: Callable[[int], EngineEvent]) -> OperatorAction:
        """Loop thread, via ``on_loop``: the event made with the loop's
        clock, applied and journaled by the driver; what the engine did."""
        eng, drv = self.engine, self.driver

        def run() -> OperatorAction | None:
            seq = eng.controls.seq
            drv.inject(make(drv.clock_ns()))
            return eng.controls.actions[-1] if eng.controls.seq != seq else None

        act = self.on_loop(run)
        if act is None:
            raise HttpError(500, "the engine did not apply the command (see the daemon's log)")
        return act

    @staticmethod
    def _scope(body: dict[str, Any]) -> tuple[KillScope, str]:
        given = [k for k in ("symbol", "session", "venue") if body.get(k) not in (None, "")]
        if len(given) > 1:
            raise HttpError(400, f"one scope at most (got {', '.join(given)})")
        if not given:
            return "all", ""
        kind: KillScope = given[0]  # type: ignore[assignment]
        return kind, clean(body[kind], kind, 128)

    def _answer(self, act: OperatorAction, extra: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        out = action_json(act)
        if extra:
            out.update(extra)
        return (200 if act.ok else 409), out

    def kill(self, body: dict[str, Any], who: str, peer: str) -> tuple[int, dict[str, Any]]:
        kind, scope = self._scope(body)
        reason = clean(body.get("reason"), "reason", 200)
        wait_ms = body.get("wait_ms", 0)
        if not isinstance(wait_ms, int) or isinstance(wait_ms, bool) or not 0 <= wait_ms <= MAX_WAIT_MS:
            raise HttpError(400, f"wait_ms: an integer 0..{MAX_WAIT_MS}")
        log.warning("admin: kill (%s) by %s from %s: %s", scope_name(kind, scope), who, peer, reason)
        t0 = time.monotonic()
        act = self._operator(lambda ts: KillSwitchEngaged(scope_kind=kind, scope=scope, who=who, reason=reason,
                                                          ts_ns=ts))
        extra: dict[str, Any] = {}
        if act.ok and wait_ms:
            eng = self.engine
            kw = {} if kind == "all" else {kind: scope}
            deadline = t0 + wait_ms / 1000
            left = self.on_loop(lambda: eng.open_children_at(**kw))
            while left and time.monotonic() < deadline:
                time.sleep(0.002)
                left = self.on_loop(lambda: eng.open_children_at(**kw))
            extra = {"open_children_in_scope": left,
                     "drained_ms": round((time.monotonic() - t0) * 1000, 1) if not left else None}
            log.warning("admin: kill (%s): %s", scope_name(kind, scope),
                        f"no child working in scope after {extra['drained_ms']} ms" if not left
                        else f"{left} children still working in scope after {wait_ms} ms")
        return self._answer(act, extra)

    def resume(self, body: dict[str, Any], who: str, peer: str) -> tuple[int, dict[str, Any]]:
        kind, scope = self._scope(body)
        log.warning("admin: resume (%s) by %s from %s", scope_name(kind, scope), who, peer)
        return self._answer(self._operator(lambda ts: KillSwitchReleased(scope_kind=kind, scope=scope, who=who,
                                                                         ts_ns=ts)))

    def venue(self, name: str, enabled: bool, body: dict[str, Any], who: str, peer: str
              ) -> tuple[int, dict[str, Any]]:
        if name not in self.engine.venue_names:
            raise HttpError(404, f"unknown venue {name!r} (venues: {', '.join(self.engine.venue_names)})")
        cancel = _flag(body, "cancel_working")
        reason = clean(body.get("reason"), "reason", 200)
        log.warning("admin: venue %s %s by %s from %s%s", name, "enable" if enabled else "disable", who, peer,
                    " (cancel working)" if cancel else "")
        return self._answer(self._operator(lambda ts: VenueEnableChanged(
            venue=name, enabled=enabled, cancel_working=cancel and not enabled, who=who, reason=reason, ts_ns=ts)))

    # ---------------------------------------------------------- risk hooks

    def _risk(self) -> Any:
        """The engine's pre-trade controls (``router.risk.RiskControls``), or
        None while the engine has none."""
        risk = getattr(self.engine, "risk", None)
        if risk is None or not hasattr(risk, "status"):
            raise HttpError(501, "risk limits are not available yet (the engine has no pre-trade controls)")
        return risk

    def limits(self) -> tuple[int, dict[str, Any]]:
        risk = self._risk()
        return 200, {"ok": True, **self.on_loop(risk.status)}

    def set_limit(self, body: dict[str, Any], who: str, peer: str) -> tuple[int, dict[str, Any]]:
        risk = self._risk()
        key = clean(body.get("key"), "key", 128)
        raw = body.get("value")
        if isinstance(raw, bool):
            value = "true" if raw else "false"
        elif isinstance(raw, int | float):
            value = str(raw)
        else:
            value = clean(raw, "value", 1000)
        if not key or raw is None:
            raise HttpError(400, 'a limit change needs "key" and "value"')
        drv = self.driver

        def run() -> tuple[bool, str]:
            why: str | None = risk.check_change(key, value)
            if why is not None:
                return False, why
            want = risk.changed(key, value)
            drv.inject(RiskLimitChanged(key=key, value=value, who=who, ts_ns=drv.clock_ns()))
            if risk.config != want:
                return False, "the engine did not apply the change (see the daemon's log)"
            return True, f"{key} = {value} (by {who})"

        log.warning("admin: limit %s = %s by %s from %s", key, value, who, peer)
        ok, text = self.on_loop(run)
        return (200 if ok else 409), {"ok": ok, "action": "limit", "key": key, "value": value, "who": who,
                                      "text": text}

    def symbol_enable(self, symbol: str, who: str, peer: str) -> tuple[int, dict[str, Any]]:
        risk = self._risk()
        drv = self.driver

        def run() -> tuple[bool, str]:
            if symbol not in risk.stopped_symbols():
                return False, f"{symbol} is not stopped by the execution throttle"
            drv.inject(SymbolReenabled(symbol=symbol, who=who, ts_ns=drv.clock_ns()))
            if symbol in risk.stopped_symbols():
                return False, "the engine did not re-enable it (see the daemon's log)"
            return True, f"{symbol} routed again (re-enabled by {who})"

        log.warning("admin: symbol %s enable by %s from %s", symbol, who, peer)
        ok, text = self.on_loop(run)
        return (200 if ok else 409), {"ok": ok, "action": "symbol_enable", "scope": symbol, "who": who,
                                      "text": text}


class _Handler(BaseHTTPRequestHandler):
    admin: AdminServer
    server_version = "sor-admin"
    protocol_version = "HTTP/1.1"
    timeout = 10.0
    """A client that stalls mid-request is dropped after this (seconds)."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        a = self.admin
        peer = str(self.client_address[0])
        if method == "GET" and urlsplit(self.path).path in ASSET_PATHS:
            # A body is never read here: the connection is not reused after one.
            self.close_connection = self.close_connection or self.headers.get("Content-Length", "0") != "0"
            self._asset(ASSET_PATHS[urlsplit(self.path).path])
            return
        why = a.refusal(self.headers.get("Authorization"))
        if why is not None:
            a.refused(why, method, self.path, peer)
            self.close_connection = True
            self._send(401, {"ok": False, "error": "unauthorized: a valid bearer token is required"},
                       {"WWW-Authenticate": 'Bearer realm="sor-admin"', "Connection": "close"})
            return
        try:
            status, out = a.handle(method, urlsplit(self.path).path, self._body(), peer)
        except HttpError as e:
            status, out = e.status, {"ok": False, "error": e.message}
        except Exception as e:
            log.exception("admin: %s %s failed", method, self.path)
            status, out = 500, {"ok": False, "error": f"internal error: {type(e).__name__}: {e}"}
        self._send(status, out)

    def _body(self) -> dict[str, Any]:
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise HttpError(400, "bad Content-Length") from None
        if n < 0 or n > MAX_BODY:
            self.close_connection = True
            raise HttpError(413, f"request body over {MAX_BODY} bytes")
        raw = self.rfile.read(n) if n else b""
        if not raw.strip():
            return {}
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise HttpError(400, "the body is not JSON") from None
        if not isinstance(obj, dict):
            raise HttpError(400, "the body must be a JSON object")
        return obj

    def _asset(self, name: str) -> None:
        """One of the console's static files: no token, no state in it."""
        asset = self.admin.assets.get(name)
        if asset is None:
            self._send(503, {"ok": False, "error": "the operator console's files are not installed"})
            return
        self._send_bytes(200, asset.body, asset.content_type, PAGE_HEADERS)

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, indent=1).encode() + b"\n"
        self._send_bytes(status, data, "application/json", {"Cache-Control": "no-store", **(headers or {})})

    def _send_bytes(self, status: int, data: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line without its query string: nothing a client put
        # there (a token pasted into the wrong part of a URL) is logged.
        text = format % args
        if self.requestline and self.requestline in text:
            method, _, rest = self.requestline.partition(" ")
            target, _, version = rest.partition(" ")
            text = text.replace(self.requestline, f"{method} {urlsplit(target).path} {version}".rstrip())
        log.debug("admin %s: %s", self.client_address[0], text)
