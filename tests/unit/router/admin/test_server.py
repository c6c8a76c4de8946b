"""The admin API for real: a ThreadingHTTPServer on 127.0.0.1 with an
ephemeral port, the engine and the driver on an asyncio loop of their own
thread (as in the daemon), requests over HTTP with and without the token,
and ``sor ctl`` in-process against it."""

from __future__ import annotations

import asyncio
import errno
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from router.admin.client import AdminClient
from router.admin.server import AdminError, AdminServer, read_token
from router.cli import main
from router.config import ConfigError, parse_config
from router.domain.commands import CancelChild, Command, RejectOrder, SendChildOrder
from router.domain.events import Event, NewOrderReceived, OverloadChanged, VenueSessionChanged
from router.domain.types import OrdType, Side, TimeInForce
from router.engine import Engine
from router.metrics.registry import Metrics
from router.routing.baselines import StaticWaterfall
from router.runtime.driver import Driver
from sim.harness import free_port, outbound_address
from tests.unit.router.engine.test_core import CONFIG_TOML, PX, VENUES

TOKEN = "s3cret-token-for-tests"


class Edge:
    def __init__(self) -> None:
        self.on_event: Callable[[Event, int], None] = lambda ev, ns: None
        self.events = 0
        self.sent: list[Command] = []

    def start(self) -> None: ...

    def poll(self) -> None: ...

    def stop(self) -> None: ...

    def hold_oms(self) -> None: ...

    def open_oms(self) -> None: ...

    def execute(self, cmds: list[Command]) -> int | None:
        self.sent.extend(cmds)
        return time.monotonic_ns()


class Rig:
    def __init__(self, tmp: Path, admin_toml: str = "") -> None:
        self.token_file = tmp / "admin.token"
        self.token_file.write_text(TOKEN + "\n")
        text = (CONFIG_TOML + 'final_action = "rest"\nrest_venue = "LIT1"\n\n[admin]\nenabled = true\n'
                f'port = 1\ntoken_file = "{self.token_file}"\n{admin_toml}')
        cfg = parse_config(text, "test.toml")
        self.loop = asyncio.new_event_loop()
        self.registry = CollectorRegistry()
        self.metrics = Metrics([v.name for v in cfg.venues], registry=self.registry)
        self.engine = Engine(cfg, StaticWaterfall(cfg), self.metrics, "T-")
        self.edge = Edge()
        self.driver = Driver(cfg.router, self.loop, self.engine, self.edge, self.metrics, None, time.monotonic_ns)
        for v in VENUES:
            self.driver.inject(VenueSessionChanged(venue=v, up=True, ts_ns=time.monotonic_ns()))
        cfg = msgspec.structs.replace(cfg, admin=msgspec.structs.replace(cfg.admin, port=free_port()))
        self.cfg = cfg
        self.server = AdminServer(cfg, read_token(str(self.token_file)), self.loop, self.driver, self.engine,
                                  self.metrics, model={"version": "static", "status": "disabled",
                                                       "planner": "static"})
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server.start()
        self.host, self.port = self.server.address
        self.config_path = tmp / "sor.toml"
        self.config_path.write_text(text.replace("port = 1\n", f"port = {self.port}\n"))

    def close(self) -> None:
        self.server.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def on_loop(self, fn: Callable[[], Any]) -> Any:
        return self.server.on_loop(fn)

    def order(self, cl: str, symbol: str = "AAPL") -> list[Command]:
        before = len(self.edge.sent)
        ev = NewOrderReceived(session="OMS", cl_ord_id=cl, symbol=symbol, side=Side.BUY, qty=100,
                              ord_type=OrdType.LIMIT, price_ticks=PX, tif=TimeInForce.DAY,
                              recv_ns=time.monotonic_ns())
        self.on_loop(lambda: self.driver.inject(ev))
        return self.edge.sent[before:]

    def call(self, method: str, path: str, body: Any = None, token: str | None = TOKEN,
             raw: bytes | None = None) -> tuple[int, dict[str, Any], http.client.HTTPResponse]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        out = json.loads(resp.read())
        conn.close()
        return resp.status, out, resp

    def metric(self, name: str, **labels: str) -> float:
        v = self.registry.get_sample_value(name, labels)
        return 0.0 if v is None else v


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.close()


# ------------------------------------------------------------------- tokens


@pytest.mark.parametrize("path", ["/status", "/kill", "/nope"])
def test_without_a_token_every_request_is_refused_and_counted(rig: Rig, path: str,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    status, out, resp = rig.call("POST" if path == "/kill" else "GET", path, {}, token=None)
    assert status == 401 and not out["ok"]
    assert resp.getheader("WWW-Authenticate", "").startswith("Bearer")
    assert rig.metric("sor_admin_refused_total", reason="no_token") == 1
    assert "admin: refused" in caplog.text and "127.0.0.1" in caplog.text
    assert rig.engine.controls.kills == {}, "nothing was done"


def test_a_wrong_token_is_refused_and_counted(rig: Rig) -> None:
    for bad in ("wrong", TOKEN + "x", TOKEN[:-1]):
        status, _, _ = rig.call("POST", "/kill", {}, token=bad)
        assert status == 401
    conn = http.client.HTTPConnection(rig.host, rig.port, timeout=5)
    conn.request("GET", "/status", headers={"Authorization": f"Basic {TOKEN}"})
    assert conn.getresponse().status == 401
    conn.close()
    assert rig.metric("sor_admin_refused_total", reason="bad_token") == 3
    assert rig.metric("sor_admin_refused_total", reason="no_token") == 1
    assert rig.engine.controls.kills == {}
    assert rig.metric("sor_admin_requests_total", action="kill") == 0


# ---------------------------------------------------------------- endpoints


def test_status_shows_sessions_orders_halts_and_the_model(rig: Rig) -> None:
    rig.order("c1")
    status, st, _ = rig.call("GET", "/status")
    assert status == 200 and st["ok"]
    assert st["sessions"]["venues"] == {"LIT1": True, "LIT2": True, "DARK1": True}
    assert st["orders"]["open_parents"] == 1 and st["orders"]["open_children"] == 1
    assert st["orders"]["open_children_by_venue"]["DARK1"] == 1
    assert st["halts"] == {"trading_halted": None, "overloaded": None, "kill_switches": []}
    assert st["venues"] == {"disabled": [], "routable": ["DARK1", "LIT1", "LIT2"]}
    assert st["model"] == {"version": "static", "status": "disabled", "planner": "static"}
    assert rig.metric("sor_admin_requests_total", action="status") == 1


def test_status_says_when_the_back_pressure_gate_refuses_new_parents(rig: Rig) -> None:
    reason = "inbox age 35.0 ms over 20 ms"
    rig.on_loop(lambda: rig.driver.inject(OverloadChanged(on=True, measure="inbox_age", reason=reason,
                                                          backlog=True, ts_ns=time.monotonic_ns())))
    _, st, _ = rig.call("GET", "/status")
    assert st["halts"]["overloaded"] == reason
    rig.on_loop(lambda: rig.driver.inject(OverloadChanged(on=False, ts_ns=time.monotonic_ns())))
    _, st, _ = rig.call("GET", "/status")
    assert st["halts"]["overloaded"] is None


def test_kill_applies_on_the_engine_and_answers_what_it_did(rig: Rig) -> None:
    assert any(isinstance(c, SendChildOrder) for c in rig.order("before"))
    status, out, _ = rig.call("POST", "/kill", {"symbol": "AAPL", "reason": "fat\x01finger", "who": "alice"})
    assert status == 200 and out["ok"], out
    assert (out["action"], out["scope"], out["who"], out["parents_canceled"], out["child_cancels_sent"]) == (
        "kill", "symbol AAPL", "alice", 1, 1)
    assert "fat finger" in out["text"], "control characters never reach FIX Text"
    assert any(isinstance(c, CancelChild) for c in rig.edge.sent), "the cancel went to the venue"
    rej = [c for c in rig.order("after") if isinstance(c, RejectOrder)]
    assert rej and rej[0].text.startswith("kill switch (symbol AAPL) by alice: fat finger")
    assert any(isinstance(c, SendChildOrder) for c in rig.order("other", symbol="LOTS")), "other symbols route"
    _, st, _ = rig.call("GET", "/status")
    assert [k["name"] for k in st["halts"]["kill_switches"]] == ["symbol AAPL"]
    assert st["recent_actions"][-1]["action"] == "kill"
    assert rig.metric("sor_kill_switches", scope="symbol") == 1

    status, out, _ = rig.call("POST", "/resume", {"symbol": "AAPL", "who": "bob"})
    assert status == 200 and out["text"] == "kill switch (symbol AAPL) released by bob (engaged by alice)"
    assert any(isinstance(c, SendChildOrder) for c in rig.order("again"))
    status, out, _ = rig.call("POST", "/resume", {"symbol": "AAPL"})
    assert status == 409 and not out["ok"] and "no kill switch" in out["text"]


def test_kill_with_wait_reports_when_no_child_is_left(rig: Rig) -> None:
    rig.order("c1")
    status, out, _ = rig.call("POST", "/kill", {"wait_ms": 50})
    assert status == 200 and out["open_children_in_scope"] == 1 and out["drained_ms"] is None, \
        "the fake venues never confirm the cancel"
    status, out, _ = rig.call("POST", "/kill", {"venue": "LIT2", "wait_ms": 1000})
    assert status == 200 and out["open_children_in_scope"] == 0 and out["drained_ms"] is not None


def test_venue_disable_and_enable(rig: Rig) -> None:
    status, out, _ = rig.call("POST", "/venues/DARK1/disable", {"cancel_working": False, "reason": "slow acks"})
    assert status == 200 and out["text"].startswith("venue DARK1 disabled by admin: slow acks")
    sent = [c for c in rig.order("c1") if isinstance(c, SendChildOrder)]
    assert [c.venue for c in sent] == ["LIT1"]
    assert rig.metric("sor_venue_disabled", venue="DARK1") == 1
    _, st, _ = rig.call("GET", "/status")
    assert st["venues"]["routable"] == ["LIT1", "LIT2"] and st["venues"]["disabled"][0]["venue"] == "DARK1"
    status, out, _ = rig.call("POST", "/venues/LIT1/disable", {"cancel_working": True})
    assert status == 200 and out["child_cancels_sent"] == 1
    assert rig.call("POST", "/venues/DARK1/enable")[0] == 200
    assert rig.metric("sor_venue_disabled", venue="DARK1") == 0
    assert rig.call("POST", "/venues/NOPE/disable")[0] == 404
    assert rig.call("POST", "/venues/LIT1/disable", {"cancel_working": "yes"})[0] == 400


def test_bad_requests_are_answered_not_crashed(rig: Rig) -> None:
    assert rig.call("GET", "/nope")[0] == 404
    assert rig.call("GET", "/kill")[0] == 405
    assert rig.call("POST", "/status")[0] == 405
    assert rig.call("POST", "/kill", raw=b"{not json")[0] == 400
    assert rig.call("POST", "/kill", raw=b"[1, 2]")[0] == 400
    assert rig.call("POST", "/kill", {"symbol": "AAPL", "venue": "LIT1"})[0] == 400
    assert rig.call("POST", "/kill", {"wait_ms": -1})[0] == 400
    assert rig.call("POST", "/kill", {"reason": "x" * 500})[0] == 400
    assert rig.engine.controls.kills == {}
    assert rig.call("GET", "/status")[0] == 200


def test_limits_answer_what_the_engine_has(rig: Rig) -> None:
    status, out, _ = rig.call("GET", "/limits")
    risk = getattr(rig.engine, "risk", None)
    if risk is None:
        assert status == 501 and "not available yet" in out["error"]
        assert rig.call("POST", "/limits", {"key": "collar_bps", "value": 100})[0] == 501
        return
    assert status == 200 and out["limits"]["collar_bps"] == risk.config.collar_bps
    status, out, _ = rig.call("POST", "/limits", {"key": "collar_bps", "value": 123, "who": "alice"})
    assert status == 200 and out["ok"], out
    assert risk.config.collar_bps == 123
    status, out, _ = rig.call("POST", "/limits", {"key": "no_such_limit", "value": "1"})
    assert status == 409 and not out["ok"] and "no_such_limit" in out["text"]
    assert rig.call("POST", "/limits", {"key": "collar_bps"})[0] == 400
    status, out, _ = rig.call("POST", "/symbols/AAPL/enable")
    assert status == 409 and "not stopped" in out["text"]


# ----------------------------------------------------------------- sor ctl


def test_sor_ctl_drives_the_api(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    rig.order("c1")
    cfg = ["ctl", "--config", str(rig.config_path)]
    assert main([*cfg, "status"]) == 0
    out = capsys.readouterr().out
    assert "venues:  LIT1 up, LIT2 up, DARK1 up" in out and "1 open parents, 1 open children" in out
    assert "halts:   none" in out
    assert main([*cfg, "--who", "eve", "kill", "--session", "OMS", "--reason", "drill", "--wait-ms", "0"]) == 0
    assert "kill switch (session OMS) by eve: drill: 1 working parents canceled" in capsys.readouterr().out
    assert main([*cfg, "status"]) == 0
    assert "KILL:    session OMS by eve: drill" in capsys.readouterr().out
    assert main([*cfg, "resume"]) == 1, "nothing over everything is in force"
    assert "no kill switch (all) in force (in force: session OMS)" in capsys.readouterr().err
    assert main([*cfg, "resume", "--session", "OMS"]) == 0
    assert main([*cfg, "venue", "disable", "LIT2", "--cancel"]) == 0
    assert "venue LIT2 disabled by" in capsys.readouterr().out
    assert main([*cfg, "venue", "enable", "LIT2"]) == 0
    assert "venue LIT2 enabled by" in capsys.readouterr().out
    assert main([*cfg, "--json", "status"]) == 0
    assert json.loads(capsys.readouterr().out)["venues"]["disabled"] == []
    if getattr(rig.engine, "risk", None) is not None:
        assert main([*cfg, "limits", "set", "collar_bps=250"]) == 0
        assert "collar_bps = 250" in capsys.readouterr().out
        assert main([*cfg, "limits"]) == 0
        assert '"collar_bps": 250' in capsys.readouterr().out
        assert main([*cfg, "limits", "set", "collar_bps=-1"]) == 1


def test_sor_ctl_with_a_wrong_token_or_no_daemon(rig: Rig, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    rig.token_file.write_text("not-the-token\n")
    assert main(["ctl", "--config", str(rig.config_path), "status"]) == 1
    assert "HTTP 401" in capsys.readouterr().err
    gone = tmp_path / "gone.toml"
    gone.write_text(rig.config_path.read_text().replace(f"port = {rig.port}\n", f"port = {free_port()}\n"))
    assert main(["ctl", "--config", str(gone), "status"]) == 2
    assert "cannot reach the admin API" in capsys.readouterr().err


def test_the_client_class_speaks_to_the_server(rig: Rig) -> None:
    status, out = AdminClient(rig.host, rig.port, TOKEN).request("GET", "/status")
    assert status == 200 and out["ok"]


# ------------------------------------------------------ binding and config




def test_the_api_is_not_reachable_on_any_address_but_loopback(rig: Rig) -> None:
    addr = outbound_address()
    if addr is None:
        pytest.skip("this host has no non-loopback address")
    with socket.socket() as s, pytest.raises(OSError) as e:
        s.settimeout(2)
        s.connect((addr, rig.port))
    assert e.value.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ETIMEDOUT, None)


ADMIN_BASE = CONFIG_TOML + 'final_action = "cancel"\n\n[admin]\n'


def test_config_refuses_a_non_loopback_bind_unless_asked() -> None:
    assert parse_config(ADMIN_BASE, "t.toml").admin.host == "127.0.0.1"
    for host in ("0.0.0.0", "10.1.2.3", "::"):
        with pytest.raises(ConfigError, match=r"admin\.host: .* is not a loopback address"):
            parse_config(ADMIN_BASE + f'host = "{host}"\n', "t.toml")
    cfg = parse_config(ADMIN_BASE + 'host = "0.0.0.0"\nallow_non_loopback = true\n', "t.toml")
    assert cfg.admin.host == "0.0.0.0"
    assert parse_config(ADMIN_BASE + 'host = "::1"\n', "t.toml").admin.host == "::1"
    with pytest.raises(ConfigError, match=r"admin\.host: 'localhost' is not an IP address"):
        parse_config(ADMIN_BASE + 'host = "localhost"\n', "t.toml")


def test_config_refuses_an_enabled_api_without_a_token_file() -> None:
    assert not parse_config(ADMIN_BASE, "t.toml").admin.enabled
    with pytest.raises(ConfigError, match=r"admin\.token_file: required when admin\.enabled"):
        parse_config(ADMIN_BASE + "enabled = true\n", "t.toml")


def test_a_token_file_that_cannot_be_used_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(AdminError, match="cannot read"):
        read_token(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(AdminError, match="is empty"):
        read_token(str(empty))
    two = tmp_path / "two"
    two.write_text("a b\n")
    with pytest.raises(AdminError, match="one token"):
        read_token(str(two))
    ok = tmp_path / "ok"
    ok.write_text("  tok  \n")
    assert read_token(str(ok)) == "tok"


def test_a_port_in_use_is_a_clear_error(rig: Rig) -> None:
    dup = AdminServer(rig.cfg, TOKEN, rig.loop, rig.driver, rig.engine, rig.metrics)
    with pytest.raises(AdminError, match=f"cannot listen on 127.0.0.1:{rig.port}"):
        dup.start()
