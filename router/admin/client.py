"""``sor ctl``: the admin API from the command line.

Reads ``[admin]`` (host, port, token_file) from the router's config, sends
one request, prints the answer (``--json``: as the API gave it) and exits
0 when the router did it, 1 when it refused or could not (a kill of an
unknown venue, a resume with nothing in force, a 401), 2 when the API
cannot be reached or the config does not allow it.

``sor ctl console`` prints the operator console's URL, the token in its
fragment (``#token=...``: a browser keeps that part to the page's script
and never sends it), after checking the API answers with that token.
"""

from __future__ import annotations

import getpass
import http.client
import json
import socket
import sys
from typing import Any
from urllib.parse import quote

from router.admin.server import AdminError, read_token
from router.config import Config


class AdminClient:
    def __init__(self, host: str, port: int, token: str, timeout_s: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.timeout_s = timeout_s

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """(HTTP status, the JSON answer); ``OSError`` when it cannot connect."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            try:
                out = json.loads(raw) if raw.strip() else {}
            except ValueError:
                out = {"ok": False, "error": raw.decode(errors="replace")[:500]}
            return resp.status, out if isinstance(out, dict) else {"ok": False, "error": str(out)}
        finally:
            conn.close()


def operator_name() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "operator"
    return f"{user}@{socket.gethostname()}"


def console_url(host: str, port: int, token: str | None) -> str:
    """Where the operator console is, as a browser on this host opens it:
    an API bound to every address is reached on loopback."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{port}/console"
    return url if token is None else f"{url}#token={quote(token, safe='')}"


def _console(client: AdminClient, args: Any) -> int:
    url = console_url(client.host, client.port, None if args.no_token else client.token)
    try:
        status, out = client.request("GET", "/status")
    except OSError as e:
        status, out = 0, {"error": f"cannot reach the admin API at {client.host}:{client.port}: {e}"}
    if args.json:
        print(json.dumps({"url": url, "reachable": status == 200}, indent=1))
    else:
        print(url)
    if status != 200:
        # The URL is still printed: the daemon may just not be up yet.
        why = out.get("error") or json.dumps(out)
        print(f"sor ctl: {why}" + (f" (HTTP {status})" if status else ""), file=sys.stderr)
        return 2 if status == 0 else 1
    return 0


def _scope(args: Any) -> dict[str, str]:
    for k in ("symbol", "session", "venue"):
        v = getattr(args, k, None)
        if v:
            return {k: v}
    return {}


def _print_status(st: dict[str, Any]) -> None:
    r, m = st.get("router", {}), st.get("model", {})
    print(f"router {r.get('name')} ({r.get('driver')} driver, planner {r.get('planner')}); model "
          f"{m.get('version', '?')} ({m.get('status', '?')})")
    sess = st.get("sessions", {})
    venues = sess.get("venues", {})
    print("venues:  " + ", ".join(f"{v} {'up' if up else 'DOWN'}" for v, up in venues.items()))
    oms = sess.get("oms", {})
    print("OMS:     " + (", ".join(f"{k} {'up' if up else 'DOWN'}" for k, up in oms.items()) or "no session yet"))
    o = st.get("orders", {})
    by = o.get("open_children_by_venue", {})
    print(f"orders:  {o.get('open_parents', 0)} open parents, {o.get('open_children', 0)} open children"
          + (f" ({', '.join(f'{v} {n}' for v, n in by.items())})" if by else ""))
    h = st.get("halts", {})
    kills = h.get("kill_switches", [])
    if h.get("trading_halted"):
        print(f"HALTED:  {h['trading_halted']}")
    for k in kills:
        why = f": {k['reason']}" if k.get("reason") else ""
        print(f"KILL:    {k['name']} by {k['who']}{why}")
    if not kills and not h.get("trading_halted"):
        print("halts:   none")
    v = st.get("venues", {})
    for d in v.get("disabled", []):
        why = f": {d['reason']}" if d.get("reason") else ""
        print(f"OFF:     venue {d['venue']} disabled by {d['who']}{why}")
    print("routing: " + (", ".join(v.get("routable", [])) or "no venue"))
    risk = st.get("risk")
    if risk and risk.get("stopped_symbols"):
        print("STOPPED: " + ", ".join(risk["stopped_symbols"]) + " (execution throttle)")


def _model_request(args: Any, who: str) -> tuple[str, str, dict[str, Any] | None]:
    """``sor ctl model ...`` as its request (``router.admin.models``);
    ``args.path`` is already an ONNX file (the CLI resolves registry names)."""
    act = args.model_action
    if act == "status":
        return "GET", "/model", None
    if act == "load":
        body: dict[str, Any] = {"path": args.path, "as": args.as_, "who": who, "reason": args.reason or ""}
        if args.as_ == "challenger":
            body.update({"mode": args.mode, "fraction": args.fraction if args.mode == "canary" else 0.0})
        return "POST", "/model/load", body
    if act == "mode":
        return "POST", "/model/mode", {"mode": args.mode, "fraction": args.fraction or 0.0, "who": who}
    if act == "promote":
        return "POST", "/model/promote", {"who": who}
    return "POST", "/model/rollback", {"who": who, "reason": args.reason or ""}


def run_ctl(cfg: Config, args: Any) -> int:
    a = cfg.admin
    if not a.enabled:
        print("sor ctl: the admin API is off in this config (admin.enabled = false)", file=sys.stderr)
        return 2
    try:
        token = read_token(a.token_file)
    except AdminError as e:
        print(f"sor ctl: {e}", file=sys.stderr)
        return 2
    client = AdminClient(a.host, a.port, token, timeout_s=max(10.0, a.command_timeout_ms / 1000 + 35))
    who = args.who or operator_name()
    method, path, body = "GET", "/status", None
    what = args.what
    if what == "console":
        return _console(client, args)
    if what == "kill":
        body = {**_scope(args), "reason": args.reason or "", "who": who, "wait_ms": args.wait_ms}
        method, path = "POST", "/kill"
    elif what == "resume":
        method, path, body = "POST", "/resume", {**_scope(args), "who": who}
    elif what == "venue":
        method, path = "POST", f"/venues/{args.name}/{args.venue_action}"
        body = {"who": who, "reason": args.reason or ""}
        if args.venue_action == "disable":
            body["cancel_working"] = bool(args.cancel)
    elif what == "limits":
        if args.set:
            key, eq, value = args.set.partition("=")
            if not eq or not key:
                print("sor ctl: limits set takes KEY=VALUE", file=sys.stderr)
                return 2
            method, path, body = "POST", "/limits", {"key": key.strip(), "value": value.strip(), "who": who}
        else:
            path = "/limits"
    elif what == "symbol":
        method, path, body = "POST", f"/symbols/{args.name}/enable", {"who": who}
    elif what == "model":
        method, path, body = _model_request(args, who)
    try:
        status, out = client.request(method, path, body)
    except OSError as e:
        print(f"sor ctl: cannot reach the admin API at {a.host}:{a.port}: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out, indent=1))
    elif status == 200 and what == "status":
        _print_status(out)
    elif status == 200 and what == "model" and args.model_action == "status":
        print(json.dumps(out, indent=1))
    elif status == 200 and what == "limits" and not args.set:
        print(json.dumps(out.get("limits", out), indent=1))
        if out.get("stopped_symbols"):
            print("stopped symbols: " + ", ".join(out["stopped_symbols"]))
    else:
        text = out.get("text") or out.get("error") or json.dumps(out)
        print(text if status == 200 else f"sor ctl: {text} (HTTP {status})",
              file=sys.stdout if status == 200 else sys.stderr)
        if status == 200 and what == "kill" and args.wait_ms:
            left = out.get("open_children_in_scope")
            if left == 0:
                print(f"no child working in scope after {out.get('drained_ms')} ms")
            elif left is not None:
                print(f"{left} children still working in scope after {args.wait_ms} ms", file=sys.stderr)
                return 1
    return 0 if status == 200 else 1
