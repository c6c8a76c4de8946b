"""A raw-socket FIX 4.4 peer for acceptance tests: no quickfix on this side.

``RawFixClient`` is a small blocking client over one TCP connection to
127.0.0.1, built on simplefix (encoding and parsing only). It does the
session layer itself, with every knob a FIX acceptance test needs in the
caller's hands:

- ``logon`` with any CompIDs, HeartBtInt and ResetSeqNumFlag;
- ``send`` any message with explicit MsgSeqNum control: the next number,
  a chosen one (a gap, a number already used), PossDupFlag/OrigSendingTime,
  header fields left out, the encoded bytes tampered with (``corrupt``), or
  not transmitted at all (``transmit=False``: a message "lost on the line",
  kept for the resend);
- ``send_raw`` bytes as they are (garbage, a message built by hand);
- ``pump_until`` reads with a deadline and runs the session while it waits:
  TestRequest answered with a Heartbeat, ResendRequest answered with real
  resends (PossDupFlag=Y, OrigSendingTime) or SequenceReset-GapFill,
  SequenceReset applied, a Logout answered, our own Heartbeats sent.

Every message received in sequence is kept in ``received`` as a
``sim.oms.Received`` (tag -> value), so ``sim.invariants`` checks the
execution reports this client saw exactly as it checks the sim OMS's.
Inbound sequence problems are recorded (``in_gaps``, ``too_low``), never
papered over: a test asserts on them.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
import simplefix  # type: ignore[import-untyped]

from sim.oms import TERMINAL, Received

BEGIN_STRING = "FIX.4.4"
SOH = b"\x01"

# Tags this peer and its tests use, named once (the session layer's and the order's).
BEGIN_SEQ_NO = 7
CL_ORD_ID = 11
CUM_QTY = 14
END_SEQ_NO = 16
LAST_MKT = 30
LAST_QTY = 32
MSG_SEQ_NUM = 34
MSG_TYPE = 35
NEW_SEQ_NO = 36
ORDER_QTY = 38
ORDER_ID = 37
ORD_STATUS = 39
ORD_TYPE = 40
ORIG_CL_ORD_ID = 41
POSS_DUP_FLAG = 43
PRICE = 44
POSS_RESEND = 97
SENDER_COMP_ID = 49
SENDING_TIME = 52
SIDE = 54
SYMBOL = 55
TARGET_COMP_ID = 56
TEXT = 58
TIME_IN_FORCE = 59
TRANSACT_TIME = 60
ENCRYPT_METHOD = 98
HEART_BT_INT = 108
TEST_REQ_ID = 112
ORIG_SENDING_TIME = 122
GAP_FILL_FLAG = 123
RESET_SEQ_NUM_FLAG = 141
ORD_REJ_REASON = 103
EXEC_TYPE = 150
REF_SEQ_NUM = 45
REF_TAG_ID = 371
REF_MSG_TYPE = 372
SESSION_REJECT_REASON = 373
BUSINESS_REJECT_REASON = 380

ADMIN_TYPES = frozenset({"0", "1", "2", "3", "4", "5", "A"})
"""Session-level MsgTypes: Heartbeat, TestRequest, ResendRequest, Reject,
SequenceReset, Logout, Logon. Never resent, always gap-filled."""

Fields = Iterable[tuple[int, str | int]]


def utc_timestamp(t: datetime | None = None) -> str:
    """A FIX UTCTimestamp with milliseconds: 20240102-13:45:01.123."""
    t = t or datetime.now(UTC)
    return t.strftime("%Y%m%d-%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def bad_checksum(raw: bytes) -> bytes:
    """The same message with its CheckSum(10) off by one."""
    head, sep, tail = raw.rpartition(SOH + b"10=")
    assert sep, "no CheckSum field"
    value = int(tail.rstrip(SOH))
    return head + sep + f"{(value + 1) % 256:03d}".encode() + SOH


def bad_body_length(delta: int) -> Callable[[bytes], bytes]:
    """A tamperer that declares BodyLength(9) ``delta`` bytes off the real
    length (the CheckSum is recomputed, so only the length is wrong)."""

    def tamper(raw: bytes) -> bytes:
        begin, rest = raw.split(SOH, 1)
        blen, rest = rest.split(SOH, 1)
        body = rest.rpartition(SOH + b"10=")[0] + SOH
        assert blen.startswith(b"9=")
        out = begin + SOH + f"9={int(blen[2:]) + delta}".encode() + SOH + body
        return out + f"10={sum(out) % 256:03d}".encode() + SOH

    return tamper


class Sent(msgspec.Struct, frozen=True, kw_only=True):
    """What this client sent (or meant to) under one MsgSeqNum: what a
    ResendRequest is answered from."""

    seq: int
    msg_type: str
    body: tuple[tuple[int, str], ...]
    sending_time: str


class RawFixClient:
    def __init__(self, port: int, sender_comp_id: str = "OMS", target_comp_id: str = "SOR",
                 host: str = "127.0.0.1", heartbeat_s: int = 30) -> None:
        self.host = host
        self.port = port
        self.sender_comp_id = sender_comp_id
        self.target_comp_id = target_comp_id
        self.heartbeat_s = heartbeat_s
        self.next_out = 1
        """MsgSeqNum of the next message ``send`` numbers itself."""
        self.next_in = 1
        """MsgSeqNum expected next from the peer."""
        self.store: dict[int, Sent] = {}
        self.received: list[Received] = []
        """Every message accepted, in arrival order, admin ones included (a
        Logon or Logout above a gap is kept when it arrives)."""
        self.too_low: list[Received] = []
        """Messages below ``next_in`` (PossDup resends are dropped as FIX says; others are errors)."""
        self.in_gaps: list[tuple[int, int]] = []
        """(expected, got) for every inbound message above ``next_in``."""
        self.resend_requests: list[tuple[int, int]] = []
        """(BeginSeqNo, EndSeqNo) of every ResendRequest the peer sent us."""
        self.resend_mode: Literal["resend", "gapfill"] = "resend"
        """How a ResendRequest is answered: application messages resent for
        real (PossDupFlag=Y, OrigSendingTime), or everything gap-filled."""
        self.no_resend: set[int] = set()
        """MsgSeqNums gap-filled even in ``resend`` mode: orders the sender
        chose not to resend (stale, as FIX allows)."""
        self.answer_resend_requests = True
        self.request_resends = True
        """Ask for a gap in what the peer sent (ResendRequest), holding later messages back."""
        self.answer_test_requests = True
        self.send_heartbeats = True
        self.logged_on = False
        self.connected = False
        self._logout_sent = False
        self._sock: socket.socket | None = None
        self._queued: dict[int, tuple[Received, bool]] = {}
        """Messages above a gap, by MsgSeqNum, waiting for the resend (with: already acted on)."""
        self._parser = simplefix.FixParser()
        self._last_out = time.monotonic()
        self._ids = itertools.count(1)
        self._prefix = f"R{time.time_ns() % 10**9:x}-"

    # ------------------------------------------------------------ connection

    def connect(self, timeout_s: float = 5.0) -> None:
        self._sock = socket.create_connection((self.host, self.port), timeout=timeout_s)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._parser = simplefix.FixParser()
        self.connected = True

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
        self.connected = False
        self.logged_on = False
        self._queued.clear()

    def __enter__(self) -> RawFixClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def logon(self, reset: bool = True, heartbeat_s: int | None = None, timeout_s: float = 5.0,
              extra: Fields = ()) -> Received | None:
        """Connect if needed, send Logon, wait for the answer.

        Returns the peer's Logon (now logged on) or Logout, or None when the
        peer closed the connection or said nothing before the deadline.
        ``reset``: ResetSeqNumFlag=Y, both sides start again at 1."""
        if self._sock is None:
            self.connect(timeout_s)
        if heartbeat_s is not None:
            self.heartbeat_s = heartbeat_s
        if reset:
            self.next_out, self.next_in = 1, 1
            self.store.clear()
            self._queued.clear()
        fields: list[tuple[int, str | int]] = [(ENCRYPT_METHOD, 0), (HEART_BT_INT, self.heartbeat_s)]
        if reset:
            fields.append((RESET_SEQ_NUM_FLAG, "Y"))
        fields += list(extra)
        mark = len(self.received)
        self._logout_sent = False
        self.send("A", fields)
        found = self.wait_msg("A5", timeout_s, since=mark)
        if found is not None and found.msg_type == "A":
            self.logged_on = True
        return found

    def logout(self, text: str | None = None, timeout_s: float = 5.0) -> bool:
        """Send Logout and wait for the peer's Logout or its close; then close.
        True when the peer answered with a Logout."""
        if self._sock is None:
            return False
        mark = len(self.received)
        self._logout_sent = True
        self.send("5", [(TEXT, text)] if text else [])
        answered = self.wait_msg("5", timeout_s, since=mark) is not None
        self.close()
        return answered

    # --------------------------------------------------------------- sending

    def new_id(self) -> str:
        return f"{self._prefix}{next(self._ids)}"

    def encode(self, msg_type: str, fields: Fields, seq: int, *, sending_time: str | None = None,
               poss_dup: bool = False, orig_sending_time: str | None = None, header: Fields = (),
               omit: Iterable[int] = ()) -> bytes:
        """The wire bytes of one message (BodyLength and CheckSum computed).
        ``omit``: standard header tags to leave out; ``header``: extra header
        fields (after the standard ones)."""
        skip = set(omit)
        m = simplefix.FixMessage()
        m.append_pair(8, BEGIN_STRING, header=True)
        m.append_pair(MSG_TYPE, msg_type, header=True)
        std: list[tuple[int, str | int | None]] = [
            (SENDER_COMP_ID, self.sender_comp_id), (TARGET_COMP_ID, self.target_comp_id), (MSG_SEQ_NUM, seq),
            (SENDING_TIME, sending_time or utc_timestamp()),
            (POSS_DUP_FLAG, "Y" if poss_dup else None), (ORIG_SENDING_TIME, orig_sending_time),
        ]
        for tag, value in [*std, *header]:
            if tag not in skip and value is not None:
                m.append_pair(tag, value, header=True)
        for tag, value in fields:
            m.append_pair(tag, value)
        return bytes(m.encode())

    def send(self, msg_type: str, fields: Fields = (), *, seq: int | None = None, poss_dup: bool = False,
             orig_sending_time: str | None = None, transmit: bool = True,
             corrupt: Callable[[bytes], bytes] | None = None, header: Fields = (), omit: Iterable[int] = (),
             store: bool = True) -> int:
        """Send one message; returns its MsgSeqNum.

        ``seq`` None: the next number (``next_out`` advances). An explicit
        ``seq`` at or past ``next_out`` moves ``next_out`` beyond it (the
        numbers skipped are a gap the peer will ask for: gap-filled, as
        nothing is stored under them); one below it is a resend and leaves
        ``next_out`` alone. ``transmit=False`` numbers and stores the
        message without writing it (lost on the line). ``corrupt`` tampers
        with the encoded bytes on the wire; the store keeps the good message,
        which is what a resend sends. ``store=False`` keeps it out of the
        store (a resend of it is then a gap fill)."""
        if seq is None:
            seq = self.next_out
        if seq >= self.next_out:
            self.next_out = seq + 1
        body = tuple((int(t), str(v)) for t, v in fields)
        sending_time = utc_timestamp()
        raw = self.encode(msg_type, body, seq, sending_time=sending_time, poss_dup=poss_dup,
                          orig_sending_time=orig_sending_time, header=header, omit=omit)
        if store and not poss_dup:
            self.store[seq] = Sent(seq=seq, msg_type=msg_type, body=body, sending_time=sending_time)
        if transmit:
            self.send_raw(corrupt(raw) if corrupt is not None else raw)
        return seq

    def send_raw(self, data: bytes) -> bool:
        """Write bytes as they are. False (and closed) when the peer has
        already dropped the connection: what a refused logon looks like."""
        assert self._sock is not None, "not connected"
        try:
            self._sock.sendall(data)
        except OSError:
            self.close()
            return False
        self._last_out = time.monotonic()
        return True

    def resend(self, seq: int) -> None:
        """Send the stored message ``seq`` again as FIX resends it:
        PossDupFlag=Y, OrigSendingTime = its first SendingTime."""
        s = self.store[seq]
        self.send(s.msg_type, s.body, seq=seq, poss_dup=True, orig_sending_time=s.sending_time)

    def gap_fill(self, seq: int, new_seq_no: int) -> None:
        """SequenceReset-GapFill under ``seq``: the peer's next expected becomes ``new_seq_no``."""
        self.send("4", [(GAP_FILL_FLAG, "Y"), (NEW_SEQ_NO, new_seq_no)], seq=seq, poss_dup=True,
                  orig_sending_time=utc_timestamp(), store=False)

    def answer_resend(self, begin: int, end: int) -> None:
        """Answer a ResendRequest: application messages resent for real (in
        ``resend`` mode), runs of everything else collapsed into gap fills."""
        last = self.next_out - 1 if end == 0 else min(end, self.next_out - 1)
        gap_start: int | None = None
        for seq in range(begin, last + 1):
            s = self.store.get(seq)
            real = (s is not None and s.msg_type not in ADMIN_TYPES and self.resend_mode == "resend"
                    and seq not in self.no_resend)
            if not real:
                if gap_start is None:
                    gap_start = seq
                continue
            if gap_start is not None:
                self.gap_fill(gap_start, seq)
                gap_start = None
            self.resend(seq)
        if gap_start is not None:
            self.gap_fill(gap_start, last + 1)

    # ------------------------------------------------------------ orders

    def send_order(self, symbol: str, side: str, qty: int | str, price: str | None = None, tif: str = "0",
                   cl_ord_id: str | None = None, extra: Fields = (), **send_kw: Any) -> str:
        """A NewOrderSingle (limit when ``price`` is given, else market); returns its ClOrdID.
        ``send_kw`` goes to ``send`` (seq, poss_dup, transmit, corrupt, ...)."""
        cl = cl_ord_id or self.new_id()
        self.send("D", self.order_fields(cl, symbol, side, qty, price, tif, extra), **send_kw)
        return cl

    @staticmethod
    def order_fields(cl: str, symbol: str, side: str, qty: int | str, price: str | None = None, tif: str = "0",
                     extra: Fields = ()) -> list[tuple[int, str | int]]:
        fields: list[tuple[int, str | int]] = [
            (CL_ORD_ID, cl), (SYMBOL, symbol), (SIDE, side), (ORDER_QTY, qty),
            (ORD_TYPE, "2" if price is not None else "1"), (TIME_IN_FORCE, tif),
        ]
        if price is not None:
            fields.append((PRICE, price))
        fields.append((TRANSACT_TIME, utc_timestamp()))
        fields += list(extra)
        return fields

    # ------------------------------------------------------------ receiving

    def _read_one(self, timeout_s: float) -> simplefix.FixMessage | None:
        """The next parsed message, or None at the deadline or when the peer closed."""
        deadline = time.monotonic() + timeout_s
        while True:
            msg = self._parser.get_message()
            if msg is not None:
                return msg
            if self._sock is None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._sock.settimeout(min(left, 0.1))
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                self._maybe_heartbeat()
                continue
            except OSError:
                data = b""
            if not data:
                self.close()
                continue
            self._parser.append_buffer(data)
            self._maybe_heartbeat()

    def _maybe_heartbeat(self) -> None:
        if (self.send_heartbeats and self.logged_on and self._sock is not None
                and time.monotonic() - self._last_out >= self.heartbeat_s):
            self.send("0")

    @staticmethod
    def _flatten(msg: simplefix.FixMessage) -> Received:
        fields: dict[int, str] = {}
        for tag, value in msg.pairs:
            fields.setdefault(int(tag), value.decode(errors="replace"))
        return Received(msg_type=fields.get(MSG_TYPE, ""), fields=fields, recv_ns=time.monotonic_ns())

    def recv(self, timeout_s: float) -> Received | None:
        """Read and handle one message (session duties included). Returns it,
        or None at the deadline or on close.

        In sequence: kept in ``received``, its duties done. Below the
        expected MsgSeqNum: kept in ``too_low`` only (a PossDup resend we
        have, or an error the test sees). Above it: the gap is recorded in
        ``in_gaps`` and, with ``request_resends``, asked for with one
        ResendRequest; the message waits until the gap is filled (a Logon or
        Logout is acted on at once, as FIX says)."""
        raw = self._read_one(timeout_s)
        if raw is None:
            return None
        r = self._flatten(raw)
        seq = int(r.get(MSG_SEQ_NUM, "0") or 0)
        mt = r.msg_type
        if mt == "4" and r.get(GAP_FILL_FLAG) != "Y":
            # SequenceReset-Reset: the numbers jump, whatever this one carries.
            self.received.append(r)
            self.next_in = int(r.get(NEW_SEQ_NO))
            self._drain()
            return r
        if mt == "A" and r.get(RESET_SEQ_NUM_FLAG) == "Y":
            self.next_in = seq
        if seq < self.next_in:
            self.too_low.append(r)
            return r
        if seq > self.next_in:
            self.in_gaps.append((self.next_in, seq))
            if self.request_resends:
                if not self._queued:
                    self.send("2", [(BEGIN_SEQ_NO, self.next_in), (END_SEQ_NO, 0)])
                early = mt in ("A", "5")
                if early:
                    self.received.append(r)
                    self._duties(r)
                self._queued[seq] = (r, early)
                return r
            self.next_in = seq
        self._take(r, fresh=True)
        self._drain()
        return r

    def _take(self, r: Received, fresh: bool) -> None:
        """Accept the in-sequence message ``r`` (``fresh``: not yet kept and acted on)."""
        self.next_in = int(r.get(MSG_SEQ_NUM)) + 1
        if r.msg_type == "4":
            self.next_in = int(r.get(NEW_SEQ_NO))
        if fresh:
            self.received.append(r)
            self._duties(r)

    def _drain(self) -> None:
        """Take the queued messages the gap no longer holds back; drop the
        ones a resend or gap fill went past."""
        while self._queued:
            seq = min(self._queued)
            if seq > self.next_in:
                return
            r, early = self._queued.pop(seq)
            if seq == self.next_in:
                self._take(r, fresh=not early)

    @property
    def gap_pending(self) -> bool:
        """A gap in what the peer sent is still waiting for its resend."""
        return bool(self._queued)

    def _duties(self, r: Received) -> None:
        """What the session layer does about a message, besides keeping it."""
        mt = r.msg_type
        if mt == "A":
            self.logged_on = True
        elif mt == "1" and self.answer_test_requests:
            self.send("0", [(TEST_REQ_ID, r.get(TEST_REQ_ID))])
        elif mt == "2":
            begin, end = int(r.get(BEGIN_SEQ_NO)), int(r.get(END_SEQ_NO))
            self.resend_requests.append((begin, end))
            if self.answer_resend_requests:
                self.answer_resend(begin, end)
        elif mt == "5":
            if not self._logout_sent and self._sock is not None:
                self._logout_sent = True
                self.send("5")
            self.logged_on = False

    def pump_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Run the session until ``predicate()`` holds (checked after every
        message) or the deadline passes. False at the deadline, or when the
        connection closed with the predicate still false."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self.recv(left) is None and self._sock is None:
                return predicate()
        return True

    def pump(self, duration_s: float) -> None:
        """Run the session for ``duration_s`` whatever arrives (to show that
        nothing does, or to let the peer's timers fire)."""
        self.pump_until(lambda: False, duration_s)

    def wait_msg(self, msg_types: str, timeout_s: float, since: int = 0,
                 where: Callable[[Received], bool] = lambda r: True) -> Received | None:
        """The first message kept from index ``since`` on whose MsgType is one
        of the characters of ``msg_types`` and that ``where`` accepts, waiting
        up to ``timeout_s``."""
        hit: list[Received] = []

        def pred() -> bool:
            hit[:] = [r for r in self.received[since:] if r.msg_type in set(msg_types) and where(r)][:1]
            return bool(hit)

        return hit[0] if self.pump_until(pred, timeout_s) else None

    def wait_closed(self, timeout_s: float) -> bool:
        """Wait until the peer closes the connection."""
        return self.pump_until(lambda: self._sock is None, timeout_s)

    # --------------------------------------------------------------- queries

    def messages(self, msg_type: str, since: int = 0) -> list[Received]:
        return [r for r in self.received[since:] if r.msg_type == msg_type]

    def reports(self, cl_ord_id: str) -> list[Received]:
        """Every ExecutionReport for ``cl_ord_id`` (as ClOrdID or OrigClOrdID), in order."""
        return [r for r in self.received if r.msg_type == "8"
                and cl_ord_id in (r.get(CL_ORD_ID), r.get(ORIG_CL_ORD_ID))]

    def reports_by_order(self) -> dict[str, list[Received]]:
        """Every ER, grouped by the order it belongs to (OrigClOrdID when set)."""
        out: dict[str, list[Received]] = {}
        for r in self.received:
            if r.msg_type == "8":
                out.setdefault(r.get(ORIG_CL_ORD_ID) or r.get(CL_ORD_ID), []).append(r)
        return out

    def is_done(self, cl_ord_id: str) -> bool:
        return any(r.get(ORD_STATUS) in TERMINAL and r.get(ORDER_ID) != "NONE" for r in self.reports(cl_ord_id))

    def wait_done(self, cl_ord_ids: Iterable[str], timeout_s: float) -> bool:
        ids = list(cl_ord_ids)
        return self.pump_until(lambda: all(self.is_done(c) for c in ids), timeout_s)

    def filled_qty(self) -> int:
        """Shares filled in every ER this client kept (sum of LastQty of fills)."""
        return sum(int(r.get(LAST_QTY, "0")) for r in self.received if r.msg_type == "8" and r.get(EXEC_TYPE) == "F")
