"""The router's FIX edge: quickfix messages in, domain events out; domain
commands in, quickfix messages out.

``RouterEdge`` owns the two gateways (the OMS acceptor and the venue
initiators), decodes every application message with the codecs into an
event and hands it to ``on_event``, and carries out the engine's commands
(``execute``). What is wrong on the wire is answered here (session Reject,
BusinessMessageReject) and counted through ``EdgeCounters``; it never
reaches the engine. Which thread runs the callbacks is the driver's choice:
quickfix's socket threads (``start``) or the caller's own (``poll``).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any, Protocol

from fix.bridge import BridgeApplication, send
from fix.codec import Malformed, OmsCodec, Unsupported, VenueCodec, msg_type
from fix.gateway import Gateway
from fix.mdcodec import MdDecoder, subscription_request
from fix.settings import SessionSpec, session_id, session_key
from router.domain.commands import (
    CancelChild,
    Command,
    QueryChildStatus,
    QueryVenueOrders,
    RejectCancel,
    RejectOrder,
    ReportToOms,
    SendChildOrder,
    SubscribeMarketData,
)
from router.domain.events import Event, NewOrderReceived, OmsSessionChanged, VenueSessionChanged
from router.domain.types import Instrument

log = logging.getLogger("sor.edge")


class EdgeCounters(Protocol):
    """What the edge reports; the composition root binds it to metrics."""

    def session_reject(self, kind: str) -> None: ...

    def callback_error(self, callback: str) -> None: ...

    def unused_venue_message(self) -> None: ...

    def oms_session(self, up: bool) -> None: ...


class RouterEdge:
    def __init__(self, instruments: list[Instrument], oms: SessionSpec, venues: list[tuple[str, SessionSpec]],
                 state_dir: str, log_messages: bool, file_store: bool, clock_ns: Callable[[], int],
                 counters: EdgeCounters) -> None:
        self.clock_ns = clock_ns
        self._counters = counters
        self.on_event: Callable[[Event, int], None] = lambda ev, decoded_ns: None
        """Set by the driver: every decoded event, and for a new order when
        decoding finished (0 for other events)."""
        self.oms_codec = OmsCodec(instruments, clock_ns)
        self.venue_codec = VenueCodec(instruments, clock_ns)
        self.md_decoder = MdDecoder({i.symbol: float(i.tick_size) for i in instruments}, clock_ns)
        self._md_req_ids = itertools.count(1)
        self._venue_by_key = {session_key(session_id(s)): name for name, s in venues}
        self._venue_sid = {name: session_id(s) for name, s in venues}
        self.events = 0
        """Application messages seen by the callbacks: tells a poll pump that
        a pass was busy."""
        self.oms_open = True
        """Whether the OMS acceptor listens (``hold_oms`` keeps it closed
        until ``open_oms``: a restart reconciling with the venues)."""
        self._threads = False
        self.oms_app = BridgeApplication("oms", self._on_oms_message, self._on_oms_session,
                                         lambda cb: counters.callback_error(f"oms.{cb}"))
        self.venue_app = BridgeApplication("venues", self._on_venue_message, self._on_venue_session,
                                           lambda cb: counters.callback_error(f"venue.{cb}"))
        self.oms_gw = Gateway("oms", [oms], self.oms_app, state_dir, log_messages, file_store)
        self.venue_gw = Gateway("venues", [s for _, s in venues], self.venue_app, state_dir, log_messages,
                                file_store)

    # ------------------------------------------------------------ lifecycle

    def hold_oms(self) -> None:
        """Keep the OMS acceptor closed until ``open_oms`` (call before
        ``start`` or the first ``poll``)."""
        self.oms_open = False

    def open_oms(self) -> None:
        if self.oms_open:
            return
        self.oms_open = True
        if self._threads:
            self.oms_gw.start()

    def start(self) -> None:
        """quickfix's own socket threads run the callbacks from now on."""
        self._threads = True
        self.venue_gw.start()
        if self.oms_open:
            self.oms_gw.start()

    def poll(self) -> None:
        """One pass over every session on the caller's thread (no quickfix threads)."""
        if self.oms_open:
            self.oms_gw.poll()
        self.venue_gw.poll()

    def stop(self) -> None:
        # OMS first so no new parents arrive while venues wind down.
        self.oms_gw.stop()
        self.venue_gw.stop()

    # ------------------------------------------------------------ decoding

    def _on_oms_message(self, msg: Any, key: str) -> None:
        self.events += 1
        ev = self.oms_codec.decode(msg, key)
        if isinstance(ev, Malformed):
            self._counters.session_reject(ev.kind)
            self._send_oms(OmsCodec.encode_session_reject(ev), key)
            return
        if isinstance(ev, Unsupported):
            self._counters.session_reject("unsupported_message")
            self._send_oms(OmsCodec.encode_business_reject(ev), key)
            return
        self.on_event(ev, self.clock_ns() if isinstance(ev, NewOrderReceived) else 0)

    def _on_oms_session(self, key: str, up: bool) -> None:
        self._counters.oms_session(up)
        self.on_event(OmsSessionChanged(session=key, up=up, ts_ns=self.clock_ns()), 0)

    def _on_venue_message(self, msg: Any, key: str) -> None:
        self.events += 1
        venue = self._venue_by_key.get(key)
        if venue is None:
            return
        if msg_type(msg) in ("W", "X", "Y"):
            self.on_event(self.md_decoder.decode(msg.toString(), venue), 0)
            return
        ev = self.venue_codec.decode(msg, venue)
        if ev is None:
            self._counters.unused_venue_message()
            return
        self.on_event(ev, 0)

    def _on_venue_session(self, key: str, up: bool) -> None:
        venue = self._venue_by_key.get(key)
        if venue is not None:
            self.on_event(VenueSessionChanged(venue=venue, up=up, ts_ns=self.clock_ns()), 0)

    # ------------------------------------------------------------ encoding

    def execute(self, cmds: list[Command]) -> int | None:
        """Carry out the engine's commands; returns when the first child
        order was handed to quickfix (None if there was none)."""
        t_first_child: int | None = None
        for c in cmds:
            if isinstance(c, SendChildOrder):
                if not send(self.venue_codec.encode_new(c), self._venue_sid[c.venue]):
                    log.error("child %s to %s could not be handed to quickfix", c.child_id, c.venue)
                if t_first_child is None:
                    t_first_child = self.clock_ns()
            elif isinstance(c, ReportToOms):
                self._send_oms(self.oms_codec.encode_report(c), c.session)
            elif isinstance(c, CancelChild):
                send(VenueCodec.encode_cancel(c), self._venue_sid[c.venue])
            elif isinstance(c, QueryChildStatus):
                send(VenueCodec.encode_status_request(c), self._venue_sid[c.venue])
            elif isinstance(c, QueryVenueOrders):
                send(VenueCodec.encode_mass_status_request(c), self._venue_sid[c.venue])
            elif isinstance(c, RejectOrder):
                self._send_oms(self.oms_codec.encode_reject_order(c), c.session)
            elif isinstance(c, RejectCancel):
                self._send_oms(OmsCodec.encode_cancel_reject(c), c.session)
            elif isinstance(c, SubscribeMarketData):
                req = subscription_request(f"{c.venue}-md-{next(self._md_req_ids)}", c.symbols, c.depth)
                send(req, self._venue_sid[c.venue])
        return t_first_child

    def _send_oms(self, msg: Any, key: str) -> None:
        sid = self.oms_app.session_id(key)
        if sid is None or not send(msg, sid):
            log.error("message for OMS session %s could not be handed to quickfix", key)
