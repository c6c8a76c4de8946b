"""A real quickfix initiator/acceptor pair on 127.0.0.1 through the bridge.

The acceptor side is wired exactly as the daemon wires it: the quickfix
callback decodes into a frozen struct on quickfix's thread and hands it to
the asyncio loop with call_soon_threadsafe.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from fix.bridge import BridgeApplication
from fix.codec import MSG_SEQ_NUM, OmsCodec
from fix.gateway import Gateway
from fix.settings import SessionSpec
from router.domain.events import NewOrderReceived
from router.domain.types import Instrument, Side
from sim.oms import SimOms

INSTRUMENTS = [Instrument(symbol="AAPL", tick_size="0.01", lot_size=1, max_order_qty=10_000)]


class AcceptorHarness:
    """Acceptor + bridge + codec, delivering decoded events to an asyncio queue."""

    def __init__(self, port: int, state_dir: Path, loop: asyncio.AbstractEventLoop, fail_on: str | None = None) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.errors: list[str] = []
        self.sessions: asyncio.Queue[tuple[str, bool]] = asyncio.Queue()
        self.codec = OmsCodec(INSTRUMENTS, clock_ns=lambda: 1)
        self.fail_on = fail_on
        self.app = BridgeApplication("it-acceptor", self._on_message, self._on_session, self.errors.append)
        spec = SessionSpec(role="acceptor", sender_comp_id="SOR", target_comp_id="OMS", port=port)
        self.gw = Gateway("it-acceptor", [spec], self.app, state_dir)

    def _on_message(self, msg: Any, key: str) -> None:
        ev = self.codec.decode(msg, key)
        if isinstance(ev, NewOrderReceived) and ev.cl_ord_id == self.fail_on:
            raise RuntimeError("boom in the callback")
        self.loop.call_soon_threadsafe(self.queue.put_nowait, ev)

    def _on_session(self, key: str, up: bool) -> None:
        self.loop.call_soon_threadsafe(self.sessions.put_nowait, (key, up))


async def _get(q: asyncio.Queue[Any], timeout_s: float = 10.0) -> Any:
    return await asyncio.wait_for(q.get(), timeout_s)


async def test_order_crosses_the_bridge_onto_the_loop(port: int, tmp_path: Path) -> None:
    acc = AcceptorHarness(port, tmp_path, asyncio.get_running_loop(), fail_on="bad-1")
    acc.gw.start()
    oms = SimOms("127.0.0.1", port, state_dir=tmp_path / "oms")
    try:
        await asyncio.to_thread(oms.start)
        assert await _get(acc.sessions) == ("FIX.4.4:SOR->OMS", True)

        oms.send_order("AAPL", "1", 100, price="190.07", cl_ord_id="ok-1")
        ev = await _get(acc.queue)
        assert isinstance(ev, NewOrderReceived)
        assert (ev.cl_ord_id, ev.symbol, ev.side, ev.qty, ev.price_ticks) == ("ok-1", "AAPL", Side.BUY, 100, 19007)
        assert ev.session == "FIX.4.4:SOR->OMS"
        with pytest.raises((AttributeError, TypeError)):
            ev.qty = 5  # type: ignore[misc]  # frozen: safe to hand across threads

        # An exception in the callback is caught and counted; the session
        # survives and the next message still arrives.
        oms.send_order("AAPL", "2", 100, price="190.00", cl_ord_id="bad-1")
        oms.send_order("AAPL", "2", 200, price="190.00", cl_ord_id="ok-2")
        ev2 = await _get(acc.queue)
        assert ev2.cl_ord_id == "ok-2"
        assert acc.errors == ["fromApp"]
        assert "FIX.4.4:SOR->OMS" in acc.app.logged_on
    finally:
        await asyncio.to_thread(oms.stop)
        acc.gw.stop()
    assert await _get(acc.sessions) == ("FIX.4.4:SOR->OMS", False)


async def test_sequence_numbers_survive_a_restart(port: int, tmp_path: Path) -> None:
    """File message stores: a restarted initiator continues its sequence."""
    acc = AcceptorHarness(port, tmp_path, asyncio.get_running_loop())
    acc.gw.start()
    seqs: list[int] = []
    try:
        for round_ in range(2):
            oms = SimOms("127.0.0.1", port, state_dir=tmp_path / "oms")
            await asyncio.to_thread(oms.start)
            oms.send_order("AAPL", "1", 100, price="190.00", cl_ord_id=f"r{round_}")
            await _get(acc.queue)
            await asyncio.to_thread(oms.stop)
            # quickfix's file store keeps "next sender : next target".
            seqnums = next((tmp_path / "oms").rglob("*.seqnums")).read_text()
            seqs.append(int(seqnums.split(":")[0]))
    finally:
        acc.gw.stop()
    # Logon, order, logout per round: the second round starts after the first.
    assert seqs[1] > seqs[0] > 1


def test_session_spec_is_frozen() -> None:
    spec = SessionSpec(role="acceptor", sender_comp_id="A", target_comp_id="B", port=1)
    with pytest.raises(AttributeError):
        spec.port = 2  # type: ignore[misc]
    assert msgspec.structs.replace(spec, port=2).port == 2
    assert MSG_SEQ_NUM == 34


def test_peer_outside_allowed_remote_gets_nothing_through(tmp_path: Path) -> None:
    """quickfix cannot bind one address, so the acceptor refuses peers not in
    allowed_remote. quickfix 1.16 answers the Logon before checking the
    address and then disconnects, so the refused peer sees a logon/logout
    flap; what matters is that no application message of it is processed,
    while a listed peer's orders arrive as usual."""
    from sim.harness import free_port

    for allowed, listed in ((("10.9.9.9",), False), (("127.0.0.1",), True)):
        port = free_port()
        cond = threading.Condition()
        received: list[str] = []
        refusals: list[bool] = []

        def on_message(msg: Any, key: str, received: list[str] = received, cond: threading.Condition = cond) -> None:
            with cond:
                received.append(msg.getField(11))
                cond.notify_all()

        def on_session(key: str, up: bool, refusals: list[bool] = refusals,
                       cond: threading.Condition = cond) -> None:
            with cond:
                if not up:
                    refusals.append(up)
                cond.notify_all()

        # quickfix keeps one process-wide map of sessions: a SessionID still
        # held by another test's acceptor would take this logon instead.
        oms_id = f"OMS{port}"
        app = BridgeApplication("guarded", on_message, on_session)
        spec = SessionSpec(role="acceptor", sender_comp_id="SOR", target_comp_id=oms_id, port=port,
                           allowed_remote=allowed)
        gw = Gateway("guarded", [spec], app, tmp_path / str(port))
        gw.start()
        oms = SimOms("127.0.0.1", port, sender_comp_id=oms_id, state_dir=tmp_path / f"oms{port}")
        try:
            if listed:
                oms.start(timeout_s=10)
                oms.send_order("AAPL", "1", 100, price="190.00", cl_ord_id="listed-1")
                with cond:
                    assert cond.wait_for(lambda received=received: received == ["listed-1"], 10)
            else:
                oms.gw.start()
                # Orders offered whenever the refused peer believes it is up.
                with cond:
                    deadline = time.monotonic() + 15
                    while len(refusals) < 3 and time.monotonic() < deadline:
                        if oms.up:
                            with contextlib.suppress(RuntimeError):
                                oms.send_order("AAPL", "1", 100, price="190.00")
                        cond.wait(0.05)
                    assert len(refusals) >= 3
                    assert received == []
        finally:
            oms.stop()
            gw.stop()
