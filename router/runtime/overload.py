"""Back-pressure: when the router falls behind, new parents are refused at
once instead of queued behind the backlog.

``OverloadGate`` is the driver's measuring half; the engine's half is the
``OverloadChanged`` event the gate returns when its state changes (the
driver dispatches it like any input, so the journal holds it and replay
and recovery decide alike). The gate reads no clock: the driver hands it
every time it uses.

Two measures, each with its own hysteresis (on above its limit; off once it
has stayed at or under its clear level for ``hold_ms``):

- inbox age: how long the event being dispatched waited to reach the
  engine (threaded driver: its time in the inbox; poll driver: how long the
  pump has found work on every pass, which bounds the wait of whatever is
  still queued in the sockets). While it is on the gate says ``backlog``:
  the engine then defers ack deadlines instead of canceling children whose
  answers may be queued unread. That holds with ``enabled = false`` too,
  where the gate never refuses a parent: the router must not cancel its
  own children for being slow to read their acks either way.
- ack time, per venue: from a child handed to quickfix to the venue's first
  answer read off the socket (threaded: the socket thread's ``recv_ns``;
  poll: the start of the last pump pass that read no order traffic, the
  latest moment the answer is known not to have been there, so the pump's
  own busy time is never blamed on the venue); the measure is the median
  of the venue's recent answers, so one slow ack is not an overload.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from router.config import OverloadConfig
from router.domain.events import OverloadChanged

INBOX_AGE = "inbox_age"
ACK_TIME = "ack_time"
MEASURES = (INBOX_AGE, ACK_TIME)
ACK_EVAL_NS = 1_000_000
"""A venue's median is worked out at most once a millisecond on the answer
path (a flood of acks costs one sort per ms, not one per ack)."""
MAX_PENDING = 200_000
"""Children awaiting their first answer that the gate remembers: one a
venue never answers (the engine's ack timeout cancels it, and the cancel's
answer then counts) must not grow the map without end."""

_MS = 1_000_000


def _ms(ns: int) -> str:
    """Milliseconds to 0.1, rounded up: a value just over a limit never
    reads as the limit itself."""
    return f"{-(-ns // 100_000) / 10:.1f}"


class _Venue:
    """One venue's recent answers and its ack measure's state."""

    __slots__ = ("figure_ns", "high_ns", "next_eval_ns", "over", "reason", "samples")

    def __init__(self, size: int) -> None:
        self.samples: deque[tuple[int, int]] = deque(maxlen=size)
        """(read_ns, ack_ns) of the latest answers, oldest first."""
        self.over = False
        self.high_ns = 0
        """When the measure was last above the clear level."""
        self.next_eval_ns = 0
        self.figure_ns = 0
        """The median at the last evaluation (0: too few answers)."""
        self.reason = ""


class OverloadGate:
    def __init__(self, cfg: OverloadConfig) -> None:
        self.cfg = cfg
        self._inbox_on = cfg.inbox_age_ms * _MS
        self._inbox_off = cfg.inbox_clear_ms * _MS
        self._ack_on = cfg.ack_ms * _MS
        self._ack_off = cfg.ack_clear_ms * _MS
        self._window = cfg.ack_window_ms * _MS
        self._min = cfg.ack_min_samples
        self._size = cfg.ack_samples
        self._hold = cfg.hold_ms * _MS
        self._pending: OrderedDict[str, tuple[str, int]] = OrderedDict()
        """child_id -> (venue, when it was handed to quickfix), until its first answer."""
        self._venues: dict[str, _Venue] = {}
        self._inbox_over = False
        self._inbox_high_ns = 0
        self._inbox_reason = ""
        self.inbox_age_ns = 0
        """The last inbox observation (a gauge reads it)."""
        self.rejects = cfg.enabled
        """false: the gate never goes on (no parent refused for load); the
        inbox measure still says ``backlog``."""
        self.on = False
        self.backlog = False

    # -------------------------------------------------------------- inbox

    def inbox(self, age_ns: int, now_ns: int) -> OverloadChanged | None:
        """One observation of the inbox measure (the hot path: one compare
        when all is well)."""
        self.inbox_age_ns = age_ns
        if age_ns > self._inbox_off:
            self._inbox_high_ns = now_ns
            if age_ns > self._inbox_on and not self._inbox_over:
                self._inbox_over = True
                self._inbox_reason = f"inbox age {_ms(age_ns)} ms over {self.cfg.inbox_age_ms} ms"
                return self._changed(now_ns)
            return None
        if self._inbox_over and now_ns - self._inbox_high_ns >= self._hold:
            self._inbox_over = False
            return self._changed(now_ns)
        return None

    # ------------------------------------------------------------ answers

    def sent(self, child_id: str, venue: str, sent_ns: int) -> None:
        """A child order was handed to quickfix at ``sent_ns``."""
        p = self._pending
        p[child_id] = (venue, sent_ns)
        if len(p) > MAX_PENDING:
            p.popitem(last=False)

    def answered(self, child_id: str, read_ns: int, now_ns: int) -> OverloadChanged | None:
        """A venue's answer about ``child_id`` was read at ``read_ns``; only
        a child's first answer is an ack time."""
        p = self._pending.pop(child_id, None)
        if p is None:
            return None
        venue, sent_ns = p
        v = self._venues.get(venue)
        if v is None:
            v = self._venues[venue] = _Venue(self._size)
        v.samples.append((read_ns, max(0, read_ns - sent_ns)))
        if now_ns < v.next_eval_ns:
            return None
        return self._eval_venue(venue, v, now_ns)

    def venue_down(self, venue: str, now_ns: int) -> OverloadChanged | None:
        """A venue's session dropped: nothing it was asked will be answered
        on it, and its old answers say nothing of the next session."""
        gone = [cid for cid, (v, _) in self._pending.items() if v == venue]
        for cid in gone:
            del self._pending[cid]
        v = self._venues.pop(venue, None)
        return self._changed(now_ns) if v is not None and v.over else None

    def ack_figure_ns(self, venue: str) -> int:
        """A venue's ack measure at its last evaluation (a gauge reads it)."""
        v = self._venues.get(venue)
        return v.figure_ns if v is not None else 0

    def _eval_venue(self, venue: str, v: _Venue, now_ns: int) -> OverloadChanged | None:
        v.next_eval_ns = now_ns + ACK_EVAL_NS
        q = v.samples
        cutoff = now_ns - self._window
        while q and q[0][0] < cutoff:
            q.popleft()
        n = len(q)
        fig = sorted(a for _, a in q)[n // 2] if n >= self._min else 0
        v.figure_ns = fig
        if fig > self._ack_off:
            v.high_ns = now_ns
            if fig > self._ack_on and not v.over:
                v.over = True
                v.reason = (f"venue {venue} ack time {_ms(fig)} ms over {self.cfg.ack_ms} ms "
                            f"(median of its last {n} answers)")
                return self._changed(now_ns)
            return None
        if v.over and now_ns - v.high_ns >= self._hold:
            v.over = False
            return self._changed(now_ns)
        return None

    # ------------------------------------------------------------- ticks

    def tick(self, now_ns: int, inbox_age_ns: int) -> list[OverloadChanged]:
        """Every so often, busy or not: the inbox as it stands (0 when empty)
        and every venue's window, so a measure clears when nothing comes."""
        out: list[OverloadChanged] = []
        ch = self.inbox(inbox_age_ns, now_ns)
        if ch is not None:
            out.append(ch)
        for name, v in self._venues.items():
            ch = self._eval_venue(name, v, now_ns)
            if ch is not None:
                out.append(ch)
        return out

    # ------------------------------------------------------------ state

    def _changed(self, now_ns: int) -> OverloadChanged | None:
        """The event for the engine when (on, backlog) changed, naming what
        holds the gate on: the inbox first (it is the router's own state),
        else the first venue over."""
        over = [v for v in self._venues.values() if v.over]
        on = self.rejects and (self._inbox_over or bool(over))
        backlog = self._inbox_over
        if on == self.on and backlog == self.backlog:
            return None
        self.on, self.backlog = on, backlog
        if backlog:
            return OverloadChanged(on=on, measure=INBOX_AGE, reason=self._inbox_reason, backlog=True,
                                   ts_ns=now_ns)
        if not on:
            return OverloadChanged(on=False, ts_ns=now_ns)
        return OverloadChanged(on=True, measure=ACK_TIME, reason=over[0].reason, ts_ns=now_ns)
