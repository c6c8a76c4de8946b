"""A simulated OMS: a quickfix initiator that sends parent orders to the
router and records every message it gets back.

Used by ``sor demo`` and by the tests. Received messages are flattened into
``Received`` records (tag -> value) on quickfix's thread; callers wait on
conditions with deadlines (``wait_for``), never with sleeps.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import msgspec
import quickfix as fix

from fix.bridge import BridgeApplication, send
from fix.clock import monotonic_ns
from fix.codec import (
    CL_ORD_ID,
    MSG_TYPE,
    ORD_STATUS,
    ORD_TYPE,
    ORDER_QTY,
    ORIG_CL_ORD_ID,
    PRICE,
    SIDE,
    SYMBOL,
    TIME_IN_FORCE,
    URGENCY_TAG,
    raw_fields,
)
from fix.gateway import Gateway
from fix.settings import SessionSpec
from router.domain.types import TERMINAL_STATUSES

TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)
"""OrdStatus(39) wire values after which an order is done."""


class Received(msgspec.Struct, frozen=True):
    msg_type: str
    fields: dict[int, str]
    recv_ns: int

    def get(self, tag: int, default: str = "") -> str:
        return self.fields.get(tag, default)


def _flatten(msg: fix.Message) -> dict[int, str]:
    return {int(t): v for t, v in raw_fields(msg.toString())}


class SimOms:
    def __init__(self, host: str, port: int, sender_comp_id: str = "OMS", target_comp_id: str = "SOR",
                 state_dir: str | Path = "var/sim-oms", heartbeat_s: int = 30) -> None:
        self._cond = threading.Condition()
        self.messages: list[Received] = []
        self.by_cl_ord_id: dict[str, list[Received]] = {}
        self.sent_ns: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._prefix = f"O{time.time_ns() % 10**9:x}-"
        self.app = BridgeApplication("sim-oms", self._on_message, self._on_session, on_admin=self._on_admin)
        spec = SessionSpec(role="initiator", sender_comp_id=sender_comp_id, target_comp_id=target_comp_id,
                           host=host, port=port, heartbeat_s=heartbeat_s, reconnect_s=1)
        self.gw = Gateway("sim-oms", [spec], self.app, state_dir, file_store=True)
        self._sid = fix.SessionID("FIX.4.4", sender_comp_id, target_comp_id)
        self.up = False

    # ------------------------------------------------------------- callbacks

    def _record(self, msg: fix.Message) -> None:
        now = monotonic_ns()
        fields = _flatten(msg)
        r = Received(msg_type=fields.get(MSG_TYPE, ""), fields=fields, recv_ns=now)
        with self._cond:
            self.messages.append(r)
            cl = fields.get(CL_ORD_ID)
            if cl is not None:
                self.by_cl_ord_id.setdefault(cl, []).append(r)
            # A cancel's answers belong to the original order's story too.
            orig = fields.get(ORIG_CL_ORD_ID)
            if orig is not None and orig != cl:
                self.by_cl_ord_id.setdefault(orig, []).append(r)
            self._cond.notify_all()

    def _on_message(self, msg: fix.Message, key: str) -> None:
        self._record(msg)

    def _on_admin(self, msg: fix.Message, key: str) -> None:
        # Session-level Rejects are answers the tests look for.
        if msg.getHeader().getField(MSG_TYPE) == "3":
            self._record(msg)

    def _on_session(self, key: str, up: bool) -> None:
        with self._cond:
            self.up = up
            self._cond.notify_all()

    # ---------------------------------------------------------------- control

    def start(self, timeout_s: float = 10.0) -> None:
        self.gw.start()
        if not self.wait_for(lambda: self.up, timeout_s):
            raise TimeoutError("sim OMS could not log on to the router")

    def stop(self) -> None:
        self.gw.stop()

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def new_id(self) -> str:
        return f"{self._prefix}{next(self._ids)}"

    # ---------------------------------------------------------------- sending

    def send_fields(self, msg_type: str, fields: list[tuple[int, str]]) -> bool:
        """Send any message, well-formed or not (the bad-input tests use it)."""
        m = fix.Message()
        m.getHeader().setField(MSG_TYPE, msg_type)
        for tag, value in fields:
            m.setField(tag, value)
        m.setField(fix.TransactTime())
        return send(m, self._sid)

    def send_order(self, symbol: str, side: str, qty: int | str, price: str | None = None, ord_type: str | None = None,
                   tif: str = "0", cl_ord_id: str | None = None, extra: list[tuple[int, str]] | None = None,
                   urgency: str | None = None) -> str:
        """A NewOrderSingle; ``urgency``: SorUrgency(7003) (None: not sent,
        and the router reads TimeInForce as the hint)."""
        cl = cl_ord_id or self.new_id()
        ot = ord_type or ("2" if price is not None else "1")
        fields = [(CL_ORD_ID, cl), (SYMBOL, symbol), (SIDE, side), (ORDER_QTY, str(qty)), (ORD_TYPE, ot),
                  (TIME_IN_FORCE, tif)]
        if price is not None:
            fields.append((PRICE, price))
        if urgency is not None:
            fields.append((URGENCY_TAG, urgency))
        fields += extra or []
        with self._cond:
            self.sent_ns[cl] = monotonic_ns()
        if not self.send_fields("D", fields):
            raise RuntimeError("router session is not available")
        return cl

    def send_cancel(self, orig_cl_ord_id: str, symbol: str, side: str, qty: int,
                    cl_ord_id: str | None = None) -> str:
        cl = cl_ord_id or self.new_id()
        self.send_fields("F", [(CL_ORD_ID, cl), (ORIG_CL_ORD_ID, orig_cl_ord_id), (SYMBOL, symbol), (SIDE, side),
                               (ORDER_QTY, str(qty))])
        return cl

    def send_replace(self, orig_cl_ord_id: str, symbol: str, side: str, qty: int, price: str | None = None,
                     tif: str = "0", cl_ord_id: str | None = None) -> str:
        """An OrderCancelReplaceRequest (35=G): the order's new total
        quantity and price (None: market). Its reports come under the new
        ClOrdID."""
        cl = cl_ord_id or self.new_id()
        fields = [(CL_ORD_ID, cl), (ORIG_CL_ORD_ID, orig_cl_ord_id), (SYMBOL, symbol), (SIDE, side),
                  (ORDER_QTY, str(qty)), (ORD_TYPE, "2" if price is not None else "1"), (TIME_IN_FORCE, tif)]
        if price is not None:
            fields.append((PRICE, price))
        if not self.send_fields("G", fields):
            raise RuntimeError("router session is not available")
        return cl

    def order_story(self, cl_ord_ids: Iterable[str]) -> list[Received]:
        """Every execution report under any of ``cl_ord_ids`` (an order and
        its replaces), in arrival order: what ``sim.invariants`` checks
        as one order."""
        ids = set(cl_ord_ids)
        with self._cond:
            return [r for r in self.messages if r.msg_type == "8" and r.get(CL_ORD_ID) in ids]

    # ---------------------------------------------------------------- queries

    def reports(self, cl_ord_id: str) -> list[Received]:
        """Execution reports for an order, in arrival order."""
        with self._cond:
            return [r for r in self.by_cl_ord_id.get(cl_ord_id, []) if r.msg_type == "8"]

    def answers(self, cl_ord_id: str) -> list[Received]:
        with self._cond:
            return list(self.by_cl_ord_id.get(cl_ord_id, []))

    def is_done(self, cl_ord_id: str) -> bool:
        with self._cond:
            return self._done_locked(cl_ord_id)

    def wait_done(self, cl_ord_id: str, timeout_s: float = 10.0) -> bool:
        return self.wait_for(lambda: self._done_locked(cl_ord_id), timeout_s)

    def wait_all_done(self, cl_ord_ids: Iterable[str], timeout_s: float) -> bool:
        ids = list(cl_ord_ids)
        return self.wait_for(lambda: all(self._done_locked(c) for c in ids), timeout_s)

    def _done_locked(self, cl_ord_id: str) -> bool:
        return any(r.msg_type == "8" and r.get(ORD_STATUS) in TERMINAL for r in self.by_cl_ord_id.get(cl_ord_id, []))

    def wait_answer(self, cl_ord_id: str, msg_types: str, timeout_s: float = 10.0) -> Received | None:
        found: list[Received] = []

        def pred() -> bool:
            found[:] = [r for r in self.by_cl_ord_id.get(cl_ord_id, []) if r.msg_type in msg_types]
            return bool(found)

        return found[0] if self.wait_for(pred, timeout_s) else None

    def session_rejects(self) -> list[Received]:
        with self._cond:
            return [r for r in self.messages if r.msg_type == "3"]

