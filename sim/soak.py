"""``sor soak``: the chaos soak.

Parents stream from a sim OMS through the daemon to the sim venues while a
seeded schedule of faults hits the processes: a venue killed with SIGKILL
and restarted with an empty book (it keeps its FIX store), the daemon
killed with SIGKILL and restarted on its journal, the OMS logged out and
back on with the same FIX store (so the daemon's reports made meanwhile
come through the FIX resend). At the end whatever still works is canceled,
every parent must end at the OMS, the daemon stops cleanly, and the run is
accounted share for share against the venues' own fill records
(``--fills-log``):

- lost / duplicated shares: per parent, the CumQty the OMS was told against
  the sum of the venue fills of its children (which child belongs to which
  parent comes from the journal, ``router.journal.story.Walk``), plus venue
  fills of children the journal never recorded;
- duplicated fills: OMS fill reports that trace (through the journal) to a
  venue ExecID already reported, and parents with more fill reports than
  venue fills (where no reconciliation booked missed fills in one report);
- over-fills: CumQty above OrderQty at the OMS, or venue fills above the
  parent's OrderQty;
- invariant violations: ``sim.invariants.check_order`` on every parent's
  reports (ExecIDs unique across the run), and reports after a terminal;
- orphans at the venues: with the daemon stopped, the soak logs on to each
  venue as the router (from a copy of the router's FIX store, so sequence
  numbers line up) and asks the status (35=H) of every order the router
  ever sent there (read from that same FIX store, so children the journal
  lost are asked about too); any the venue still works is an orphan;
- the daemon's resident memory (``/proc/<pid>/status`` VmRSS), sampled
  every second, per incarnation.

The run passes only when nothing is lost, duplicated or over-filled, no
orphan is left, every parent ended, no invariant broke and every fault
recovered within its deadline. Waits are on conditions with deadlines;
the only timed pauses are the schedule's own (how long a fault keeps a
process down, the pace of the parents).
"""

from __future__ import annotations

import heapq
import json
import re
import shutil
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import quickfix as fix

from fix.bridge import BridgeApplication, send
from fix.clock import monotonic_ns
from fix.codec import (
    AVG_PX,
    CL_ORD_ID,
    CUM_QTY,
    CXL_REJ_REASON,
    EXEC_ID,
    EXEC_TYPE,
    LAST_MKT,
    LAST_PX,
    LAST_QTY,
    LEAVES_QTY,
    MSG_TYPE,
    ORD_STATUS,
    ORDER_ID,
    ORDER_QTY,
    ORIG_CL_ORD_ID,
    SIDE,
    SYMBOL,
    TEXT,
    raw_fields,
)
from fix.gateway import Gateway
from fix.settings import SessionSpec, session_id, session_key
from sim.config import SimClusterConfig
from sim.exchange import mid_path
from sim.harness import Cluster, localize, rss_kb
from sim.invariants import InvariantError, check_order
from sim.oms import TERMINAL, Received, SimOms
from sim.pacing import sleep_until

KINDS = ("venue_kill", "daemon_kill", "oms_disconnect")
KEEP_TAGS = frozenset({MSG_TYPE, CL_ORD_ID, ORIG_CL_ORD_ID, EXEC_ID, ORDER_ID, ORDER_QTY, ORD_STATUS, EXEC_TYPE,
                       CUM_QTY, LEAVES_QTY, AVG_PX, LAST_PX, LAST_QTY, LAST_MKT, TEXT, CXL_REJ_REASON})
"""What the soak keeps of each message the OMS receives (all the checks read)."""
WORKING = frozenset({"0", "1", "5", "6", "A", "E"})
"""OrdStatus values of an order a venue still works."""
SETTLE_S = 5.0
"""A parent terminal this long is checked and its messages dropped (a report
arriving after that still counts: as a report after a terminal state)."""
SIZES = (100, 200, 300, 500, 800, 1200, 2000)


# ------------------------------------------------------------------ the OMS


class Ledger:
    """What the OMS received, shared by every incarnation of the sim OMS
    (each reconnect is a new ``SoakOms`` on the same FIX store)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.by_cl: dict[str, list[Received]] = {}
        self.sent_ns: dict[str, int] = {}
        self.settled: set[str] = set()
        self.late: list[str] = []
        """Execution reports for a parent after it was checked as terminal."""
        self.late_entry_rejects = 0
        self.session_rejects: list[Received] = []
        self.received = 0


class SoakOms(SimOms):
    """The sim OMS, keeping only the fields the checks read, in a ledger
    that outlives the connection."""

    def __init__(self, ledger: Ledger, host: str, port: int, sender_comp_id: str, target_comp_id: str,
                 state_dir: Path) -> None:
        super().__init__(host, port, sender_comp_id=sender_comp_id, target_comp_id=target_comp_id,
                         state_dir=state_dir)
        self.ledger = ledger
        self._cond = ledger.cond
        self.by_cl_ord_id = ledger.by_cl
        self.sent_ns = ledger.sent_ns
        self.messages = []  # unused: the ledger keeps what matters

    def _record(self, msg: fix.Message) -> None:
        now = monotonic_ns()
        fields = {int(t): v for t, v in raw_fields(msg.toString()) if int(t) in KEEP_TAGS}
        r = Received(msg_type=fields.get(MSG_TYPE, ""), fields=fields, recv_ns=now)
        led = self.ledger
        with self._cond:
            led.received += 1
            if r.msg_type == "3":
                led.session_rejects.append(r)
                self._cond.notify_all()
                return
            cl = fields.get(CL_ORD_ID)
            orig = fields.get(ORIG_CL_ORD_ID)
            parent = orig or cl
            if parent is not None and parent in led.settled:
                if r.msg_type == "8":
                    if fields.get(ORDER_ID) == "NONE":
                        led.late_entry_rejects += 1
                    else:
                        led.late.append(f"{parent}: {r.get(EXEC_TYPE)}/{r.get(ORD_STATUS)} exec {r.get(EXEC_ID)} "
                                        f"cum {r.get(CUM_QTY)} after the parent was terminal")
                return
            if cl is not None:
                self.by_cl_ord_id.setdefault(cl, []).append(r)
            if orig is not None and orig != cl:
                self.by_cl_ord_id.setdefault(orig, []).append(r)
            self._cond.notify_all()


# ------------------------------------------------------------------ records


@dataclass(frozen=True)
class PlannedFault:
    at_s: float
    """Seconds into the flow (the parents' schedule) it is due."""
    kind: str
    target: str
    down_s: float


@dataclass
class FaultRecord:
    plan: PlannedFault
    start_s: float = 0.0
    recovered_s: float | None = None
    events: list[tuple[float, str]] = field(default_factory=list)
    error: str | None = None
    wall: float = 0.0
    """time.time() when it was injected (to line up with FIX SendingTimes)."""

    @property
    def recovery_s(self) -> float | None:
        return None if self.recovered_s is None else self.recovered_s - self.start_s


@dataclass
class Incarnation:
    """One daemon process: its resident memory over its life."""

    pid: int
    started_s: float
    parents_at_start: int
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    """(seconds into the run, parents sent so far, VmRSS KiB)."""
    ended: str = ""
    restore_s: float | None = None
    ready_s: float | None = None
    """Seconds from its start until the OMS was logged on to it."""
    warm_kb: int | None = None
    """VmRSS after warm-up (the first sample ``warmup_s`` after it served the OMS)."""
    warm_parents: int | None = None
    warm_s: float | None = None

    @property
    def end_kb(self) -> int | None:
        return self.samples[-1][2] if self.samples else None

    @property
    def peak_kb(self) -> int | None:
        return max(s[2] for s in self.samples) if self.samples else None


@dataclass
class ParentSummary:
    cl: str
    symbol: str
    side: str
    qty: int
    status: str = ""
    cum: int = 0
    fills_qty: int = 0
    fill_reports: int = 0
    reports: int = 0
    reconciled: bool = False
    text: str = ""
    canceled_by_oms: bool = False
    violation: str | None = None


@dataclass
class Orphan:
    venue: str
    cl_ord_id: str
    ord_status: str
    cum_qty: str
    known: str
    """What the journal says of it: parent and state, or 'never journaled'."""


@dataclass
class SoakReport:
    seed: int
    rate: float
    workdir: str
    journal_sync: str
    parents_planned: int
    parents_sent: int = 0
    parents_terminal: int = 0
    stuck: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    oms_cancels: int = 0
    end_cancels: int = 0
    send_s: float = 0.0
    duration_s: float = 0.0
    oms_shares: int = 0
    """Sum of LastQty of the fill reports the OMS got."""
    oms_cum: int = 0
    """Sum of the parents' final CumQty."""
    oms_fill_reports: int = 0
    venue_shares: int = 0
    venue_fills: int = 0
    """The fills each venue reported, from its own FIX message store (every
    ExecutionReport it sent, persisted before it went out; resent from there
    after a restart)."""
    fills_log_missing: list[str] = field(default_factory=list)
    """Fills in a venue's FIX store missing from its ``--fills-log`` (a venue
    killed between sending the report and writing the line)."""
    fills_log_extra: list[str] = field(default_factory=list)
    venue_fills_unattributed: list[dict[str, Any]] = field(default_factory=list)
    unattributed_children: list[str] = field(default_factory=list)
    """Per child behind those fills: what was sent and when, what the daemon said."""
    journaled_not_sent: list[str] = field(default_factory=list)
    """ERs the journal holds as made for the OMS that never reached the
    router's OMS FIX store (so were never sent, and recovery will not send them)."""
    sent_not_journaled: list[str] = field(default_factory=list)
    """ExecIDs the OMS FIX store sent that the journal does not hold."""
    first_report_us: dict[str, float] = field(default_factory=dict)
    """NewOrderSingle -> first ExecutionReport at the OMS, p50/p99/max (does the machine hold the rate?)."""
    parents_matched: int = 0
    mismatched: list[tuple[str, int, int, int]] = field(default_factory=list)
    """(ClOrdID, final CumQty at the OMS, sum of the LastQty of its fill
    reports, shares its children filled at the venues)."""
    lost_shares: int = 0
    dup_shares: int = 0
    dup_fills: list[str] = field(default_factory=list)
    overfills: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    orphans: list[Orphan] = field(default_factory=list)
    audited: dict[str, int] = field(default_factory=dict)
    """Orders asked about per venue at the end."""
    audit_unanswered: dict[str, int] = field(default_factory=dict)
    faults: list[FaultRecord] = field(default_factory=list)
    incarnations: list[Incarnation] = field(default_factory=list)
    daemon_stop_rc: int | None = None
    anomalies: dict[str, float] = field(default_factory=dict)
    """The daemon's anomaly counters, summed over its incarnations."""
    log_errors: list[str] = field(default_factory=list)
    log_error_count: int = 0
    memory_note: str = ""
    memory_ok: bool | None = None
    errors: list[str] = field(default_factory=list)
    """Anything that kept the soak itself from working."""

    @property
    def faults_failed(self) -> list[FaultRecord]:
        return [f for f in self.faults if f.error is not None or f.recovered_s is None]

    @property
    def passed(self) -> bool:
        return (not self.errors and self.parents_sent == self.parents_planned
                and self.parents_terminal == self.parents_sent and self.lost_shares == 0 and self.dup_shares == 0
                and not self.dup_fills and not self.overfills and not self.violations and not self.orphans
                and not self.venue_fills_unattributed and not self.faults_failed and not self.mismatched
                and not self.audit_unanswered and not self.fills_log_extra and self.memory_ok is not False)


# ------------------------------------------------------------------ schedule


def plan_faults(rng: np.random.Generator, duration_s: float, venues: list[str], every_s: float,
                daemon_before: float = 0.65) -> list[PlannedFault]:
    """Faults spread over the flow's middle: the first three one of each kind
    (shuffled), then drawn; daemon kills only in the first ``daemon_before``
    of the run, so its last incarnation lives long enough to judge memory."""
    n = max(3, int(duration_s / every_s))
    lo, hi = 0.12 * duration_s, 0.88 * duration_s
    slots = np.linspace(lo, hi, n)
    jitter = (hi - lo) / max(n, 1) * 0.3
    kinds = list(rng.permutation(KINDS))
    out: list[PlannedFault] = []
    for i, t in enumerate(slots):
        at = float(min(hi, max(lo, t + rng.uniform(-jitter, jitter))))
        if i < 3:
            kind = str(kinds[i])
        else:
            kind = str(rng.choice(KINDS, p=[0.45, 0.25, 0.30]))
            if kind == "daemon_kill" and at > daemon_before * duration_s:
                kind = str(rng.choice(["venue_kill", "oms_disconnect"]))
        target = str(rng.choice(venues)) if kind == "venue_kill" else ("daemon" if kind == "daemon_kill" else "oms")
        down = {"venue_kill": (1.0, 4.0), "daemon_kill": (0.3, 3.0), "oms_disconnect": (0.5, 3.0)}[kind]
        out.append(PlannedFault(at_s=round(at, 2), kind=kind, target=target,
                                down_s=round(float(rng.uniform(*down)), 2)))
    out.sort(key=lambda f: f.at_s)
    return out


def soak_config(base: SimClusterConfig, journal_sync: str | None = "every") -> SimClusterConfig:
    """The config as given (the default one: marketable and resting orders
    mixed over two lit venues and a dark pool, the ML planner), with a
    clean stop that cancels what is left, and ``journal.sync`` (None: the
    config's). "every" by default: the mode in which nothing reaches the OMS
    before it is durable, which is what exactly-once across a SIGKILL needs;
    with "batch" a crash can lose the last batch and the OMS may be told of
    a fill twice (README: Decision journal), which the soak counts."""
    r = msgspec.structs.replace
    journal = base.journal if journal_sync is None else r(base.journal, sync=journal_sync)
    return r(base, router=r(base.router, shutdown="cancel"), journal=journal)


# ------------------------------------------------------------------ the flow


@dataclass
class Parent:
    cl: str
    symbol: str
    side: str
    qty: int
    kind: float
    """The draw that picks its type (see ``make_parents``)."""
    cancel_at_s: float | None
    sent_s: float | None = None
    cancels: list[str] = field(default_factory=list)


def make_parents(rng: np.random.Generator, n: int, symbols: list[str], seed: int) -> list[Parent]:
    """Seeded order mix (prices are set against the mid when sent): 10%
    market, 35% marketable IOC (the router cancels what its waterfall
    cannot fill), 25% marketable DAY (the rest rests), 30% passive DAY (rests;
    the OMS cancels it after a while unless it filled; 3% are left to
    rest until the end)."""
    out = []
    for i in range(n):
        u = float(rng.random())
        sym = symbols[int(rng.integers(len(symbols)))]
        side = "1" if rng.random() < 0.5 else "2"
        qty = int(rng.choice(SIZES))
        cancel: float | None = None
        if u >= 0.45:  # DAY limits: the OMS cancels most of them after a while
            p = 0.5 if u < 0.70 else 0.97
            if rng.random() < p:
                cancel = float(rng.uniform(0.3, 15.0))
        out.append(Parent(cl=f"K{seed}-{i + 1}", symbol=sym, side=side, qty=qty, kind=u, cancel_at_s=cancel))
    return out


# ------------------------------------------------------------------ the soak


class Soak:
    def __init__(self, cfg: SimClusterConfig, workdir: Path, parents: int, seed: int, rate: float,
                 fault_every_s: float, warmup_s: float, log: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.work = workdir
        self.n = parents
        self.seed = seed
        self.rate = rate
        self.warmup_s = warmup_s
        self.say = log
        self.rng = np.random.default_rng(seed)
        self.cluster = Cluster(cfg, workdir, log_level="INFO")
        self.ledger = Ledger()
        self.oms: SoakOms | None = None
        self.oms_dir = workdir / "oms-fix"
        self.parents = make_parents(self.rng, parents, [s.symbol for s in cfg.symbols], seed)
        self.by_cl = {p.cl: p for p in self.parents}
        self.plan = plan_faults(self.rng, parents / rate, [v.name for v in cfg.venues], fault_every_s)
        self.report = SoakReport(seed=seed, rate=rate, workdir=str(workdir), journal_sync=cfg.journal.sync,
                                 parents_planned=parents)
        self.paths = {s.symbol: mid_path(cfg, s, cfg.sim.epoch_ns) for s in cfg.symbols}
        self.ticks = {s.symbol: Decimal(s.tick_size) for s in cfg.symbols}
        self.summaries: dict[str, ParentSummary] = {}
        self.exec_ids: set[str] = set()
        self.cancel_heap: list[tuple[float, str]] = []
        self.t0 = time.monotonic()
        self.next_rss = 0.0
        self.next_alive = 0.0
        self.flow_t0 = 0.0
        self.i = 0
        self.base_t, self.base_i, self.rebase = 0.0, 0, True
        self.next_settle = 0.0
        self.anomalies: dict[str, float] = {}
        self.unsettled: dict[str, Parent] = {}
        """Sent parents not yet checked as terminal, oldest first."""
        self.sent: dict[str, dict[str, SentOrder]] = {}
        self.first_report_us: list[float] = []

    # ------------------------------------------------------------ helpers

    def now_s(self) -> float:
        return time.monotonic() - self.t0

    def new_oms(self) -> SoakOms:
        c = self.cfg
        o = SoakOms(self.ledger, "127.0.0.1", c.oms.port, sender_comp_id=c.oms.target_comp_id,
                    target_comp_id=c.oms.sender_comp_id, state_dir=self.oms_dir)
        return o

    def done(self, cl: str) -> bool:
        """Terminal at the OMS (checked and dropped, or a terminal report in)."""
        led = self.ledger
        with led.cond:
            return cl in led.settled or any(r.msg_type == "8" and r.get(ORD_STATUS) in TERMINAL
                                            and _own_answer(r) for r in led.by_cl.get(cl, ()))

    def oms_up(self) -> bool:
        return self.oms is not None and self.oms.up

    def _incarnation(self) -> Incarnation | None:
        return self.report.incarnations[-1] if self.report.incarnations else None

    def _new_incarnation(self) -> None:
        d = self.cluster.daemon
        assert d is not None
        self.report.incarnations.append(Incarnation(pid=d.pid, started_s=self.now_s(),
                                                    parents_at_start=self.report.parents_sent))

    def sample_rss(self, force: bool = False) -> None:
        now = self.now_s()
        if not force and now < self.next_rss:
            return
        self.next_rss = now + 1.0
        inc = self._incarnation()
        d = self.cluster.daemon
        if inc is None or d is None or d.pid != inc.pid:
            return
        kb = rss_kb(d.pid)
        if kb is None:
            return
        inc.samples.append((round(now, 2), self.report.parents_sent, kb))
        if inc.warm_kb is None and inc.ready_s is not None and now >= inc.started_s + inc.ready_s + self.warmup_s:
            inc.warm_kb, inc.warm_parents, inc.warm_s = kb, self.report.parents_sent, now

    def check_alive(self) -> None:
        """A process that died without being told to is a finding: say so,
        and bring it back so the soak goes on."""
        c = self.cluster
        d = c.daemon
        if d is not None and d.poll() is not None:
            msg = f"daemon died on its own at {self.now_s():.2f} s (exit {d.returncode}); restarted"
            self.report.errors.append(msg)
            self.say(f"  !! {msg}")
            inc = self._incarnation()
            if inc is not None:
                inc.ended = f"DIED (exit {d.returncode}) at {self.now_s():.2f} s"
            c.start_daemon()
            self._new_incarnation()
        for name, proc in list(c.venues.items()):
            if proc.poll() is not None:
                msg = f"venue {name} died on its own at {self.now_s():.2f} s (exit {proc.returncode}); restarted"
                self.report.errors.append(msg)
                self.say(f"  !! {msg}")
                c.start_venue(name)

    def scrape_anomalies(self) -> None:
        """The daemon's anomaly counters now (before it dies: they reset)."""
        try:
            m = self.cluster.metrics()
        except OSError:
            return
        for k, v in m.items():
            if v and k.startswith(("sor_venue_anomalies", "sor_illegal_transitions", "sor_callback_errors",
                                   "sor_inbox_overflows", "sor_journal_dropped", "sor_session_rejects",
                                   "sor_order_rejects", "sor_cancel_rejects", "sor_model_fallbacks")) \
                    and not k.endswith("_created"):
                self.anomalies[k] = self.anomalies.get(k, 0.0) + v

    # ------------------------------------------------------------ sending

    def send_parent(self, p: Parent) -> bool:
        assert self.oms is not None
        mid = self.paths[p.symbol].mid_at(time.time_ns())
        sign = 1 if p.side == "1" else -1
        u = p.kind
        tick = self.ticks[p.symbol]
        try:
            if u < 0.10:
                self.oms.send_order(p.symbol, p.side, p.qty, cl_ord_id=p.cl)
            else:
                if u < 0.70:
                    offset = int(self.rng.integers(1, 6))
                else:
                    offset = -int(self.rng.integers(1, 4))
                px = (mid + sign * offset) * tick
                tif = "3" if u < 0.45 else "0"
                self.oms.send_order(p.symbol, p.side, p.qty, price=format(px, "f"), tif=tif, cl_ord_id=p.cl)
        except RuntimeError:
            return False
        p.sent_s = self.now_s()
        self.unsettled[p.cl] = p
        if p.cancel_at_s is not None:
            heapq.heappush(self.cancel_heap, (p.sent_s + p.cancel_at_s, p.cl))
        return True

    def cancel(self, p: Parent) -> bool:
        assert self.oms is not None
        cid = f"{p.cl}-X{len(p.cancels) + 1}"
        try:
            self.oms.send_cancel(p.cl, p.symbol, p.side, p.qty, cl_ord_id=cid)
        except RuntimeError:
            return False
        p.cancels.append(cid)
        return True

    def due_cancels(self) -> None:
        now = self.now_s()
        while self.cancel_heap and self.cancel_heap[0][0] <= now and self.oms_up():
            _, cl = heapq.heappop(self.cancel_heap)
            assert self.oms is not None
            if not self.done(cl) and self.cancel(self.by_cl[cl]):
                self.report.oms_cancels += 1

    # ------------------------------------------------------------ checking

    def settle(self, force: bool = False) -> None:
        """Check the parents that ended a while ago and drop their messages."""
        now_ns = monotonic_ns()
        horizon = int(SETTLE_S * 1e9)
        led = self.ledger
        taken: list[tuple[Parent, list[Received]]] = []
        with led.cond:
            for p in list(self.unsettled.values()):
                reps = led.by_cl.get(p.cl, [])
                term = next((r.recv_ns for r in reps if r.msg_type == "8" and r.get(ORD_STATUS) in TERMINAL
                             and _own_answer(r)), None)
                if term is None or (not force and now_ns - term < horizon):
                    continue
                led.settled.add(p.cl)
                del self.unsettled[p.cl]
                led.by_cl.pop(p.cl, None)
                for c in p.cancels:
                    led.by_cl.pop(c, None)
                taken.append((p, reps))
        for p, reps in taken:
            self.summaries[p.cl] = self.summarize(p, reps)

    def summarize(self, p: Parent, reps: list[Received]) -> ParentSummary:
        ers = [r for r in reps if r.msg_type == "8"]
        s = ParentSummary(cl=p.cl, symbol=p.symbol, side=p.side, qty=p.qty, reports=len(ers))
        try:
            check_order(p.cl, ers, self.exec_ids)
        except InvariantError as e:
            s.violation = str(e)
        own = [r for r in ers if _own_answer(r)]
        sent_ns = self.ledger.sent_ns.get(p.cl)
        if own and sent_ns is not None:
            self.first_report_us.append((own[0].recv_ns - sent_ns) / 1e3)
        for r in own:
            if r.get(EXEC_TYPE) == "F":
                s.fill_reports += 1
                s.fills_qty += int(Decimal(r.get(LAST_QTY) or "0"))
            if "reconciled with venue" in r.get(TEXT):
                s.reconciled = True
        if own:
            final = own[-1]
            s.status = final.get(ORD_STATUS)
            s.cum = int(Decimal(final.get(CUM_QTY) or "0"))
            s.text = final.get(TEXT)
            s.canceled_by_oms = final.get(CL_ORD_ID) in p.cancels
        return s

    # ------------------------------------------------------------ faults

    def run_fault(self, f: FaultRecord) -> None:
        """Inject one fault and wait (with deadlines) until the system has
        recovered; parents keep flowing while a venue is down."""
        pl = f.plan
        f.start_s = self.now_s()
        f.wall = time.time()

        def ev(text: str) -> None:
            t = self.now_s()
            f.events.append((t, text))
            self.say(f"  [{t:8.2f}s] {pl.kind} {pl.target}: {text}")

        c = self.cluster
        if pl.kind == "venue_kill":
            c.kill_venue(pl.target)
            ev("SIGKILL")
            key = f'sor_fix_session_up{{session="venue:{pl.target}"}}'
            seen_down = self.wait_flowing(lambda: self._metric(key) == 0.0, 20.0)
            ev("router saw the session down" if seen_down else "router did NOT see the session down in 20 s")
            self.wait_flowing(lambda: False, max(0.0, f.start_s + pl.down_s - self.now_s()))
            c.start_venue(pl.target)
            ev(f"restarted (empty book, same FIX store) after {self.now_s() - f.start_s:.2f} s")
            if self.wait_flowing(lambda: self._metric(key) == 1.0, 60.0):
                f.recovered_s = self.now_s()
                ev("router logged on again (reconciled its open children there)")
            else:
                f.error = "venue session not back within 60 s"
                ev(f.error)
        elif pl.kind == "daemon_kill":
            self.scrape_anomalies()
            self.sample_rss(force=True)
            inc = self._incarnation()
            rc = c.kill_daemon()
            if inc is not None:
                inc.ended = f"SIGKILL at {self.now_s():.2f} s"
            ev(f"SIGKILL (exit {rc})")
            # Parents stop while the OMS has nobody to talk to; venues go on
            # filling the children left resting.
            self.wait_flowing(lambda: False, pl.down_s)
            c.start_daemon()
            self._new_incarnation()
            ev(f"restarted on its journal after {self.now_s() - f.start_s:.2f} s")
            try:
                c.wait_sessions({v.name: 1.0 for v in self.cfg.venues}, 180)
                ev("venue sessions up")
                assert self.oms is not None
                if self.oms.wait_for(lambda: self.oms is not None and self.oms.up, 120):
                    f.recovered_s = self.now_s()
                    inc = self._incarnation()
                    if inc is not None:
                        inc.ready_s = self.now_s() - inc.started_s
                    ev("OMS logged on again (the acceptor opened once venues reconciled)")
                else:
                    f.error = "OMS not logged on again within 120 s"
                    ev(f.error)
            except (TimeoutError, RuntimeError) as e:
                f.error = f"daemon did not come back: {e}"
                ev(f.error[:300])
        elif pl.kind == "oms_disconnect":
            assert self.oms is not None
            self.oms.stop()
            self.oms = None
            ev("OMS logged out")
            self.wait_flowing(lambda: False, pl.down_s)
            self.oms = self.new_oms()
            try:
                self.oms.start(timeout_s=60)
                f.recovered_s = self.now_s()
                ev(f"OMS logged on again with the same store after {self.now_s() - f.start_s:.2f} s "
                   "(reports made meanwhile come as the FIX resend)")
            except TimeoutError as e:
                f.error = str(e)
                ev(f.error)

    def _metric(self, key: str) -> float | None:
        try:
            return self.cluster.metrics().get(key)
        except OSError:
            return None

    # ------------------------------------------------------------ the loop

    def wait_flowing(self, cond: Callable[[], bool], timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for ``cond`` (checked 5 times a second)
        while parents keep being sent on schedule, cancels go out when due
        and memory is sampled."""
        deadline = time.monotonic() + timeout_s
        next_check = 0.0
        while True:
            now = time.monotonic()
            if now >= next_check:
                if cond():
                    return True
                next_check = now + 0.2
            if now >= deadline:
                return False
            self.pump(min(deadline, next_check))

    def pump(self, until: float) -> None:
        """Send what is due until ``until`` (monotonic seconds), with the
        housekeeping in between."""
        while True:
            self.housekeeping()
            now = time.monotonic()
            if now >= until:
                return
            if self.i < self.n and self.oms_up():
                if self.rebase:
                    self.base_t, self.base_i, self.rebase = now, self.i, False
                due = self.base_t + (self.i - self.base_i) / self.rate
                if due < now - 0.5:  # far behind (a pause): no burst to catch up
                    self.base_t, self.base_i = now, self.i
                    due = now
                if due <= now:
                    if self.send_parent(self.parents[self.i]):
                        self.i += 1
                        self.report.parents_sent = self.i
                    else:
                        self.rebase = True
                        sleep_until(min(until, now + 0.05))
                    continue
                sleep_until(min(until, due, now + 0.05))
            else:
                # Nothing to send (all sent, or the OMS is cut off): wait a
                # little, for the OMS when that is what is missing.
                self.rebase = True
                step = max(0.0, min(until - now, 0.05))
                if self.i < self.n and self.oms is not None:
                    self.oms.wait_for(lambda: self.oms is not None and self.oms.up, step)
                else:
                    sleep_until(now + step)

    def housekeeping(self) -> None:
        self.sample_rss()
        self.due_cancels()
        now = self.now_s()
        if now >= self.next_alive:
            self.next_alive = now + 1.0
            self.check_alive()
        if now >= self.next_settle:
            self.next_settle = now + 2.0
            self.settle()

    def run(self) -> SoakReport:
        rep = self.report
        c = self.cluster
        say = self.say
        say(f"sor soak: {self.n:,} parents at {self.rate:g}/s (flow ~{self.n / self.rate:.0f} s), seed {self.seed}, "
            f"journal.sync = {self.cfg.journal.sync}, planner {self.cfg.waterfall.planner}, "
            f"{self.cfg.router.driver} driver; workdir {self.work}")
        say("fault schedule (seconds into the flow):")
        for p in self.plan:
            say(f"  {p.at_s:8.2f}s  {p.kind:<15} {p.target:<7} down {p.down_s:.2f} s")
        t_start = self.t0 = time.monotonic()
        try:
            c.start(timeout_s=120)
        except Exception as e:
            rep.errors.append(f"cluster start failed: {e}")
            c.stop()
            return rep
        self._new_incarnation()
        self.report.incarnations[-1].started_s = 0.0
        self.oms = self.new_oms()
        try:
            self.oms.start(timeout_s=60)
        except TimeoutError as e:
            rep.errors.append(str(e))
            c.stop()
            return rep
        inc = self._incarnation()
        assert inc is not None
        inc.ready_s = self.now_s() - inc.started_s
        try:
            self._flow()
            self._finish()
        except Exception as e:  # the soak itself broke: say so, with what it has
            import traceback

            rep.errors.append(f"soak aborted: {e!r}\n{traceback.format_exc()}")
        finally:
            if self.oms is not None:
                self.oms.stop()
                self.oms = None
            codes = c.stop()
            bad = {k: v for k, v in codes.items() if v != 0 and k != "daemon"}
            if bad:
                rep.errors.append(f"venues did not stop cleanly: {bad}")
        rep.duration_s = time.monotonic() - t_start
        try:
            self._account()
        except Exception as e:
            import traceback

            rep.errors.append(f"accounting failed: {e!r}\n{traceback.format_exc()}")
        return rep

    def _flow(self) -> None:
        rep = self.report
        self.flow_t0 = self.now_s()
        self.say(f"flow (starts {self.flow_t0:.2f} s into the run; times below are seconds into the run):")
        self.i = 0
        self.base_t, self.base_i, self.rebase = time.monotonic(), 0, True
        for pl in self.plan:
            # Due by the parents' schedule: at_s of flow, counted in parents.
            at_parent = min(self.n, int(pl.at_s * self.rate))
            self.wait_flowing(lambda: self.i >= at_parent, 3600.0)  # noqa: B023 - used at once
            f = FaultRecord(plan=pl)
            rep.faults.append(f)
            self.run_fault(f)
        self.wait_flowing(lambda: self.i >= self.n, 3600.0)
        rep.send_s = self.now_s() - self.flow_t0
        self.say(f"  [{self.now_s():8.2f}s] all {self.i:,} parents sent")

    def _finish(self) -> None:
        rep = self.report
        c = self.cluster
        # Let the IOC and market parents in flight land, then cancel whatever
        # still works.
        self.wait_flowing(lambda: all(self.done(p.cl) for p in list(self.unsettled.values()) if p.kind < 0.45), 10.0)
        for attempt in (1, 2):
            open_ = [p for p in list(self.unsettled.values()) if not self.done(p.cl)]
            self.say(f"  [{self.now_s():8.2f}s] end: {len(open_):,} parents still working; the OMS cancels them"
                     + (" (again)" if attempt == 2 else ""))
            for p in open_:
                if self.cancel(p):
                    rep.end_cancels += 1
            if self.wait_flowing(lambda o=open_: all(self.done(p.cl) for p in o), 60.0):  # type: ignore[misc]
                break
        self.scrape_anomalies()
        self.sample_rss(force=True)
        inc = self._incarnation()
        rc = c.stop_daemon(timeout_s=60)
        rep.daemon_stop_rc = rc
        if inc is not None:
            inc.ended = f"clean stop (exit {rc}) at {self.now_s():.2f} s"
        self.say(f"  [{self.now_s():8.2f}s] daemon stopped (SIGTERM, exit {rc})")
        if rc != 0:
            rep.errors.append(f"daemon clean stop exited {rc}")
        # Anything the shutdown reported is in by now (it reports before it logs out).
        self.settle(force=True)
        # The orphan audit: the venues' own word on every order the router sent.
        if self.oms is not None:
            self.oms.stop()
            self.oms = None
        self.say(f"  [{self.now_s():8.2f}s] asking the venues about every order the router sent them")
        self._audit()

    # ------------------------------------------------------------ the audit

    def _audit(self) -> None:
        rep = self.report
        store = Path(self.cfg.fix.state_dir) / "venues" / "store"
        copy = self.work / "audit-fix"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(Path(self.cfg.fix.state_dir), copy)
        sent: dict[str, dict[str, SentOrder]] = {}
        for v in self.cfg.venues:
            body = store / f"FIX.4.4-{v.sender_comp_id}-{v.target_comp_id}.body"
            sent[v.name] = sent_orders(body)
        for f in venue_store_fills(self.cfg, self.work / "sim-fix"):
            sent.setdefault(f["venue"], {}).setdefault(f["cl"], SentOrder(symbol="", side="1"))
        self.sent = sent
        total = sum(len(o) for o in sent.values())
        answers = audit_venues(self.cfg, copy, sent, timeout_s=max(60.0, total / 500))
        self._audit_answers = answers
        for venue, orders in sent.items():
            rep.audited[venue] = len(orders)
            got = answers.get(venue, {})
            missing = [cl for cl in orders if cl not in got]
            if missing:
                rep.audit_unanswered[venue] = len(missing)

    # ------------------------------------------------------------ accounting

    def _account(self) -> None:
        rep = self.report
        led = self.ledger
        self.settle(force=True)
        # Parents that never ended: summarize what they got.
        for p in self.parents[:rep.parents_sent]:
            if p.cl not in self.summaries:
                self.summaries[p.cl] = self.summarize(p, led.by_cl.get(p.cl, []))
                rep.stuck.append(p.cl)
        sums = [self.summaries[p.cl] for p in self.parents[:rep.parents_sent]]
        rep.parents_terminal = sum(1 for s in sums if s.status in TERMINAL)
        outcomes: Counter[str] = Counter()
        for s in sums:
            outcomes[_outcome(s)] += 1
        rep.outcomes = dict(outcomes.most_common())
        rep.oms_shares = sum(s.fills_qty for s in sums)
        rep.oms_cum = sum(s.cum for s in sums)
        rep.oms_fill_reports = sum(s.fill_reports for s in sums)
        if self.first_report_us:
            lat = np.asarray(self.first_report_us)
            rep.first_report_us = {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
                                   "max": float(lat.max())}
        rep.violations = [s.violation for s in sums if s.violation] + led.late
        for s in sums:
            if s.cum > s.qty or s.fills_qty > s.qty:
                rep.overfills.append(f"{s.cl}: OMS CumQty {s.cum}, fills {s.fills_qty} > OrderQty {s.qty}")

        jm = journal_map(self.cfg.journal.path)
        fills = venue_store_fills(self.cfg, self.work / "sim-fix")
        logged = {(f["venue"], f["exec_id"]) for f in self.cluster.venue_fills()}
        stored = {(f["venue"], f["exec_id"]) for f in fills}
        rep.fills_log_missing = sorted(f"{v} {e}" for v, e in stored - logged)
        rep.fills_log_extra = sorted(f"{v} {e}" for v, e in logged - stored)
        rep.venue_fills = len(fills)
        rep.venue_shares = sum(int(f["qty"]) for f in fills)
        by_parent: Counter[str] = Counter()
        count_by_parent: Counter[str] = Counter()
        for f in fills:
            cl = jm.child_cl.get(f["cl"])
            if cl is None:
                rep.venue_fills_unattributed.append(f)
                continue
            by_parent[cl] += int(f["qty"])
            count_by_parent[cl] += 1
        for s in sums:
            venue = by_parent.get(s.cl, 0)
            if venue == s.cum == s.fills_qty:
                rep.parents_matched += 1
            else:
                # A share counts as delivered once the OMS got a fill report
                # for it (CumQty alone carries no price, no venue, no time).
                rep.mismatched.append((s.cl, s.cum, s.fills_qty, venue))
                rep.lost_shares += max(0, venue - min(s.cum, s.fills_qty))
                rep.dup_shares += max(0, max(s.cum, s.fills_qty) - venue)
            if venue > s.qty:
                rep.overfills.append(f"{s.cl}: its children filled {venue} at the venues > OrderQty {s.qty}")
            if not s.reconciled and s.fill_reports > count_by_parent.get(s.cl, 0):
                rep.dup_fills.append(f"{s.cl}: {s.fill_reports} fill reports at the OMS for "
                                     f"{count_by_parent.get(s.cl, 0)} venue fills")
        rep.lost_shares += sum(int(f["qty"]) for f in rep.venue_fills_unattributed)
        self._explain_unattributed(log_text := self.cluster.log("daemon"))
        del log_text
        oms_store = Path(self.cfg.fix.state_dir) / "oms" / "store" / \
            f"FIX.4.4-{self.cfg.oms.sender_comp_id}-{self.cfg.oms.target_comp_id}.body"
        wire = sent_exec_ids(oms_store)
        rep.journaled_not_sent = [f"{x}: {line}" for x, line in jm.oms_reports.items() if x not in wire]
        rep.sent_not_journaled = sorted(wire - jm.oms_reports.keys())
        for (v_name, exec_id), times in jm.reported.items():
            if times > 1:
                rep.dup_fills.append(f"venue {v_name} ExecID {exec_id} reported to the OMS {times} times (journal)")
        # Orphans: working at a venue after the daemon's clean stop.
        for venue, answers in getattr(self, "_audit_answers", {}).items():
            for cl, (status, cum) in answers.items():
                if status in WORKING:
                    rep.orphans.append(Orphan(venue=venue, cl_ord_id=cl, ord_status=status, cum_qty=cum,
                                              known=jm.describe(cl)))
        rep.anomalies = dict(sorted(self.anomalies.items()))
        log = self.cluster.log("daemon")
        errs = [ln for ln in log.splitlines() if " ERROR " in ln or "Traceback" in ln]
        rep.log_error_count = len(errs)
        kinds: Counter[str] = Counter(re.sub(r"\d+", "N", ln.split(": ", 1)[-1])[:140] for ln in errs)
        rep.log_errors = [f"{n} x {k}" for k, n in kinds.most_common(12)]
        restores = re.findall(r"restored from journal session \d+ \(\d+ sessions, (\d+) inputs, ([\d.]+) s\)", log)
        for inc, (_, secs) in zip(rep.incarnations[1:], restores, strict=False):
            inc.restore_s = float(secs)
        self._judge_memory()

    def _explain_unattributed(self, log: str) -> None:
        """For each child the venues filled but the journal never recorded:
        what the router sent (its FIX store), when against the daemon's
        SIGKILLs, and what the daemon said of its reports."""
        rep = self.report
        by_child: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for f in rep.venue_fills_unattributed:
            by_child.setdefault((f["venue"], f["cl"]), []).append(f)
        kills = [(f.wall, f.start_s) for f in rep.faults if f.plan.kind == "daemon_kill" and f.wall]
        for (venue, cl), fs in by_child.items():
            o = self.sent.get(venue, {}).get(cl)
            what = "not in the router's FIX store"
            if o is not None and o.symbol:
                what = (f"{'BUY' if o.side == '1' else 'SELL'} {o.qty} {o.symbol} @ {o.price} TIF {o.tif}, sent "
                        f"{o.sending_time} (FIX seq {o.seq})")
            when = ""
            if o is not None and o.sending_time:
                try:
                    t = datetime.strptime(o.sending_time, "%Y%m%d-%H:%M:%S.%f").replace(tzinfo=UTC).timestamp()
                except ValueError:
                    t = None
                after = [(w, s) for w, s in kills if t is not None and w >= t]
                if t is not None and after:
                    w, s_ = min(after)
                    when = f"; {1000 * (w - t):.0f} ms before the daemon's SIGKILL at {s_:.2f} s"
            said = [ln.split(" sor.", 1)[-1] for ln in log.splitlines() if cl in ln][:2]
            rep.unattributed_children.append(
                f"{venue} {cl}: {sum(int(f['qty']) for f in fs)} shares in {len(fs)} fills; {what}{when}; "
                f"daemon log: {said or 'nothing'}")

    def _judge_memory(self) -> None:
        """Flat means: after warm-up, the last incarnation's VmRSS grows by no
        more than quickfix's own FileStore index explains (it keeps ~64 B
        per stored message until the session's daily reset) plus a margin."""
        rep = self.report
        last = rep.incarnations[-1] if rep.incarnations else None
        if last is None or last.warm_kb is None or last.warm_parents is None or not last.samples:
            rep.memory_note = "not judged: no warm sample of the last incarnation"
            return
        end_s, end_parents, end_kb = last.samples[-1]
        parents = end_parents - last.warm_parents
        span = end_s - (last.warm_s or end_s)
        growth_kb = end_kb - last.warm_kb
        stored = fix_store_messages(Path(self.cfg.fix.state_dir))
        per_parent = stored / max(1, rep.parents_sent)
        index_kb = FIX_STORE_INDEX_B * per_parent * parents / 1024
        residual_kb = growth_kb - index_kb
        limit_kb = max(16 * 1024, last.warm_kb // 20)
        figures = (f"last incarnation: VmRSS {last.warm_kb / 1024:.1f} -> {end_kb / 1024:.1f} MiB "
                   f"({growth_kb / 1024:+.1f}) over {parents:,} parents / {span:.0f} s after warm-up "
                   f"({growth_kb / max(1, parents) * 1000:.0f} KiB per 1,000 parents); quickfix's FileStore "
                   f"index ({FIX_STORE_INDEX_B} B per stored message, {per_parent:.1f} stored per parent, kept until "
                   f"the FIX session's daily reset) accounts for {index_kb / 1024:.1f} MiB; the rest "
                   f"{residual_kb / 1024:+.1f} MiB (limit +{limit_kb / 1024:.0f})")
        if parents < 20_000 or span < 120:
            rep.memory_note = figures + ": too short to judge (needs 20,000 parents and 120 s)"
            return
        rep.memory_ok = residual_kb <= limit_kb
        rep.memory_note = figures + (": flat" if rep.memory_ok else ": GROWING")


def _own_answer(r: Received) -> bool:
    """Whether an ER is part of its parent's story. An entry reject
    (OrderID NONE) is, when the router refused the parent for load: that
    is the parent's one answer. Any other entry reject here answers a
    resend of a parent already taken (a duplicate ClOrdID)."""
    return r.get(ORDER_ID) != "NONE" or r.get(TEXT).startswith("router overloaded")


def _outcome(s: ParentSummary) -> str:
    if s.status == "":
        return "no report"
    if s.status not in TERMINAL:
        return "not terminal"
    if s.status == "2":
        return "filled"
    if s.status == "8":
        return "rejected (router overloaded)" if s.text.startswith("router overloaded") else "rejected"
    if s.status == "C":
        return "expired"
    part = "partially filled, rest " if s.cum else ""
    if s.canceled_by_oms:
        return f"{part}canceled by the OMS"
    if s.text.startswith("waterfall exhausted"):
        return f"{part}canceled by the router (waterfall end)"
    if "router shutting down" in s.text:
        return f"{part}canceled by the clean stop"
    return f"{part}canceled ({re.sub(r'[0-9]+', 'N', s.text)[:60]})"


# ------------------------------------------------------------------ the journal


@dataclass
class JournalMap:
    child_cl: dict[str, str]
    """child ClOrdID -> the OMS ClOrdID of its parent."""
    child_state: dict[str, str]
    reported: Counter[tuple[str, str]]
    """(venue, venue ExecID) -> how many fill reports to the OMS it caused."""
    oms_reports: dict[str, str]
    """ExecID -> a line about it, for every ExecutionReport the journal says
    the engine made for the OMS (what recovery takes as sent)."""

    def describe(self, child: str) -> str:
        if child not in self.child_cl:
            return "never journaled (the router cannot know it)"
        return f"parent {self.child_cl[child]}, journal says {self.child_state.get(child, 'SENT')}"


def journal_map(path: str) -> JournalMap:
    """Which child is whose (the story walk), and which venue fills the OMS
    was told of, from every session of the journal."""
    from router.domain.commands import ReportToOms, SendChildOrder
    from router.domain.events import VenueReport
    from router.domain.types import ExecType
    from router.journal.store import SqliteStore
    from router.journal.story import Entry, Walk, chains

    child_state: dict[str, str] = {}
    reported: Counter[tuple[str, str]] = Counter()
    oms_reports: dict[str, str] = {}
    step_fill: dict[str, tuple[int, int, str, str]] = {}
    last: list[tuple[int, int, str, str] | None] = [None]

    def on(key: str | None, e: Entry) -> None:
        it = e.item
        if isinstance(it, SendChildOrder):
            child_state.setdefault(it.child_id, "SENT")
        elif isinstance(it, VenueReport):
            if it.exec_type is not ExecType.ORDER_STATUS or it.child_id in child_state:
                child_state[it.child_id] = it.ord_status.name
            last[0] = (e.session_id, e.seq, it.venue, it.exec_id) if it.exec_type is ExecType.TRADE else None
        if isinstance(it, ReportToOms):
            oms_reports[it.exec_id] = (f"{it.cl_ord_id} {it.exec_type.name} last {it.last_qty} cum {it.cum_qty} "
                                       f"(journal session {e.session_id}, seq {e.seq})")
        if isinstance(it, ReportToOms) and it.exec_type is ExecType.TRADE:
            lf = last[0]
            if lf is not None and lf[0] == e.session_id and lf[1] == e.seq:
                reported[(lf[2], lf[3])] += 1
                step_fill[it.exec_id] = lf

    store = SqliteStore(path, readonly=True)
    try:
        walk = Walk(on)
        for chain in chains(store.sessions()):
            walk.run(chain, store.records)
    finally:
        store.close()
    order_cl = {oid: cl for (_, cl), oid in walk.cl_parent.items()}
    child_cl = {c: order_cl.get(oid, oid) for c, oid in walk.child_parent.items()}
    return JournalMap(child_cl=child_cl, child_state=child_state, reported=reported, oms_reports=oms_reports)


def sent_exec_ids(body: Path) -> set[str]:
    """ExecIDs of every ExecutionReport in a quickfix file store's body (what
    went out on that session, or was handed to quickfix to go out)."""
    out: set[str] = set()
    if not body.exists():
        return out
    for m in _MSG.finditer(body.read_bytes()):
        raw = m.group(0)
        if b"\x0135=8\x01" not in raw:
            continue
        f = dict(raw_fields(raw.decode(errors="replace")))
        if f.get(str(EXEC_ID)):
            out.add(f[str(EXEC_ID)])
    return out


# ------------------------------------------------------------------ venues


FIX_STORE_INDEX_B = 64
"""Resident bytes quickfix 1.16's FileStore keeps per stored message (its
seq -> offset map, until the session resets): measured by storing 700,000
messages in one, 63.7 B each."""


def fix_store_messages(state_dir: Path) -> int:
    """How many messages the router's FIX file stores hold (all sessions),
    from their header files (one ``seq,offset,size`` entry per message)."""
    return sum(h.read_text().count(",") // 2 for h in state_dir.glob("*/store/*.header"))


_MSG = re.compile(rb"8=FIX\.4\.4\x01.*?\x0110=\d{3}\x01", re.S)


def venue_store_fills(cfg: SimClusterConfig, sim_state: Path) -> list[dict[str, Any]]:
    """Every fill each sim venue reported to the router, read from the
    venue's own FIX message store (``<state>/sim-<venue>/store``): quickfix
    persists each message before it goes out, and a venue restarted on the
    store resends from it, so this is what the venue told the router, all
    its runs, killed or not. Keys as the fills log: venue, cl, exec_id, qty,
    px, cum."""
    out: list[dict[str, Any]] = []
    for v in cfg.venues:
        body = sim_state / f"sim-{v.name}" / "store" / f"FIX.4.4-{v.target_comp_id}-{v.sender_comp_id}.body"
        if not body.exists():
            continue
        seen: set[str] = set()
        for m in _MSG.finditer(body.read_bytes()):
            raw = m.group(0)
            if b"\x01150=F\x01" not in raw or b"\x0135=8\x01" not in raw:
                continue
            f = dict(raw_fields(raw.decode(errors="replace")))
            exec_id = f.get(str(EXEC_ID), "")
            if exec_id in seen:
                continue
            seen.add(exec_id)
            out.append({"venue": v.name, "cl": f.get(str(CL_ORD_ID), ""), "exec_id": exec_id,
                        "qty": int(Decimal(f.get(str(LAST_QTY), "0"))), "px": f.get(str(LAST_PX), ""),
                        "cum": int(Decimal(f.get(str(CUM_QTY), "0")))})
    return out


@dataclass(frozen=True)
class SentOrder:
    """A NewOrderSingle as the router's FIX store has it."""

    symbol: str
    side: str
    qty: str = ""
    price: str = ""
    tif: str = ""
    sending_time: str = ""
    seq: str = ""


def sent_orders(body: Path) -> dict[str, SentOrder]:
    """ClOrdID -> the NewOrderSingle, for every one in a quickfix file
    store's message body file (what went out on that session, every run)."""
    out: dict[str, SentOrder] = {}
    if not body.exists():
        return out
    for m in _MSG.finditer(body.read_bytes()):
        raw = m.group(0).decode(errors="replace")
        if "\x0135=D\x01" not in raw:
            continue
        f = dict(raw_fields(raw))
        cl = f.get(str(CL_ORD_ID))
        if cl:
            out[cl] = SentOrder(symbol=f.get(str(SYMBOL), ""), side=f.get(str(SIDE), "1"), qty=f.get("38", ""),
                                price=f.get("44", ""), tif=f.get("59", ""), sending_time=f.get("52", ""),
                                seq=f.get("34", ""))
    return out


def audit_venues(cfg: SimClusterConfig, state_dir: Path, orders: dict[str, dict[str, SentOrder]],
                 timeout_s: float = 120.0) -> dict[str, dict[str, tuple[str, str]]]:
    """Log on to every venue as the router (``state_dir``: a copy of the
    router's FIX state, so sequence numbers continue) and ask the status
    (35=H) of each order; returns venue -> ClOrdID -> (OrdStatus, CumQty)
    as the venues answered. The daemon must be stopped."""
    answers: dict[str, dict[str, tuple[str, str]]] = {v.name: {} for v in cfg.venues}
    by_key: dict[str, str] = {}
    cond = threading.Condition()

    def on_message(msg: fix.Message, key: str) -> None:
        f = dict(raw_fields(msg.toString()))
        if f.get("35") != "8" or f.get(str(EXEC_TYPE)) != "I":
            return
        with cond:
            venue = by_key.get(key)
            if venue is not None:
                answers[venue][f.get(str(CL_ORD_ID), "")] = (f.get(str(ORD_STATUS), ""), f.get(str(CUM_QTY), ""))
                cond.notify_all()

    specs = [SessionSpec(role="initiator", sender_comp_id=v.sender_comp_id, target_comp_id=v.target_comp_id,
                         host=v.host, port=v.port, heartbeat_s=cfg.fix.heartbeat_s, reconnect_s=1)
             for v in cfg.venues]
    for v, s in zip(cfg.venues, specs, strict=True):
        by_key[session_key(session_id(s))] = v.name
    app = BridgeApplication("soak-audit", on_message)
    gw = Gateway("venues", specs, app, state_dir, file_store=True)
    gw.start()
    try:
        with app.changed:
            app.changed.wait_for(lambda: len(app.logged_on) == len(specs), 60)
        for v, s in zip(cfg.venues, specs, strict=True):
            sid = session_id(s)
            for cl, o in orders.get(v.name, {}).items():
                m = fix.Message()
                m.getHeader().setField(MSG_TYPE, "H")
                m.setField(CL_ORD_ID, cl)
                m.setField(SYMBOL, o.symbol or "?")
                m.setField(SIDE, o.side or "1")
                send(m, sid)
        total = sum(len(o) for o in orders.values())
        with cond:
            cond.wait_for(lambda: sum(len(a) for a in answers.values()) >= total, timeout_s)
    finally:
        gw.stop()
    return answers


# ------------------------------------------------------------------ the text


def _mib(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f}"


def format_report(rep: SoakReport) -> str:
    out = ["", "fault log:"]
    for f in rep.faults:
        pl = f.plan
        rec = f"recovered in {f.recovery_s:.2f} s" if f.recovery_s is not None else f"NOT RECOVERED ({f.error})"
        out.append(f"  {f.start_s:8.2f}s  {pl.kind:<15} {pl.target:<7} (planned {pl.at_s:.2f}s, down "
                   f"{pl.down_s:.2f} s): {rec}")
        for t, text in f.events:
            out.append(f"             {t:8.2f}s  {text}")
    kinds = Counter(f.plan.kind for f in rep.faults)
    out.append("  faults injected: " + ", ".join(f"{kinds.get(k, 0)} {k}" for k in KINDS))
    took = [f.recovery_s for f in rep.faults if f.recovery_s is not None]
    if took:
        out.append(f"  recovery: median {statistics.median(took):.2f} s, max {max(took):.2f} s")
    out += ["", "accounting:",
            f"  parents sent              {rep.parents_sent:>10,} of {rep.parents_planned:,} "
            f"({rep.send_s:.0f} s of flow, {rep.duration_s:.0f} s in all)",
            f"  parents terminal at OMS   {rep.parents_terminal:>10,}"
            + (f"   STUCK: {len(rep.stuck)}, e.g. {rep.stuck[:5]}" if rep.stuck else "")]
    for name, n in rep.outcomes.items():
        out.append(f"    {name:<52} {n:>8,}")
    if rep.first_report_us:
        lat = rep.first_report_us
        out.append(f"  NewOrderSingle -> first ER at the OMS: p50 {lat['p50'] / 1e3:.1f} ms, p99 "
                   f"{lat['p99'] / 1e3:.1f} ms, max {lat['max'] / 1e3:.0f} ms (a parent sent just before a SIGKILL "
                   "waits for the restart)")
    out += [f"  OMS cancels during the run {rep.oms_cancels:>9,}; at the end {rep.end_cancels:,}",
            f"  shares filled, OMS (sum LastQty of {rep.oms_fill_reports:,} fill ERs) {rep.oms_shares:>12,}",
            f"  shares filled, OMS (sum of final CumQty)             {rep.oms_cum:>12,}",
            f"  shares filled, venues' records ({rep.venue_fills:,} fills)     {rep.venue_shares:>12,}"
            "   (each venue's FIX store: every fill report it sent)",
            f"    cross-check with the venues' --fills-log: {len(rep.fills_log_missing)} fills missing from it"
            + (f" (a venue SIGKILLed between sending the report and writing the line: {rep.fills_log_missing[:5]})"
               if rep.fills_log_missing else "")
            + (f"; {len(rep.fills_log_extra)} IN THE LOG BUT NOT THE STORE: {rep.fills_log_extra[:5]}"
               if rep.fills_log_extra else ""),
            f"  parents matched share for share (OMS CumQty = its children's venue fills) "
            f"{rep.parents_matched:,} of {rep.parents_sent:,}"]
    for cl, cum, fills, venue in rep.mismatched[:20]:
        out.append(f"    MISMATCH {cl}: OMS CumQty {cum}, fill reports to the OMS sum to {fills}, its children's "
                   f"venue fills {venue}")
    out += [f"  lost shares               {rep.lost_shares:>10,}"
            + (f" (incl. {sum(int(f['qty']) for f in rep.venue_fills_unattributed):,} in "
               f"{len(rep.venue_fills_unattributed)} venue fills of {len(rep.unattributed_children)} children the "
               "journal never recorded, so no parent and no report to the OMS:"
               if rep.venue_fills_unattributed else "")]
    out += [f"    {u}" for u in rep.unattributed_children[:10]]
    out += [
            f"  duplicated shares         {rep.dup_shares:>10,}",
            f"  duplicated fills          {len(rep.dup_fills):>10,}"]
    out += [f"    {d}" for d in rep.dup_fills[:10]]
    out.append(f"  over-filled parents       {len(rep.overfills):>10,}")
    out += [f"    {d}" for d in rep.overfills[:10]]
    out.append(f"  ERs journaled but never sent to the OMS (not in the router's OMS FIX store) "
               f"{len(rep.journaled_not_sent):,}; sent but not journaled {len(rep.sent_not_journaled):,}")
    out += [f"    NEVER SENT {d}" for d in rep.journaled_not_sent[:10]]
    out += [f"    NOT JOURNALED {d}" for d in rep.sent_not_journaled[:10]]
    out.append(f"  invariant violations      {len(rep.violations):>10,}")
    out += [f"    {d}" for d in rep.violations[:10]]
    asked = ", ".join(f"{v} {n:,}" for v, n in rep.audited.items())
    out.append(f"  orphans at the venues     {len(rep.orphans):>10,}   (asked the venues, 35=H, about every order "
               f"the router's FIX store sent: {asked})")
    if rep.audit_unanswered:
        out.append(f"    UNANSWERED: {rep.audit_unanswered}")
    for o in rep.orphans[:20]:
        out.append(f"    ORPHAN {o.venue} {o.cl_ord_id}: OrdStatus {o.ord_status}, CumQty {o.cum_qty}; {o.known}")
    out += ["", "daemon memory (VmRSS MiB) per incarnation:",
            "  pid      started   ready+restore  parents in life  warm     peak     end   how it ended"]
    for inc in rep.incarnations:
        parents = (inc.samples[-1][1] - inc.parents_at_start) if inc.samples else 0
        ready = f"{inc.ready_s:.1f}s" if inc.ready_s is not None else "-"
        restore = f"/{inc.restore_s:.1f}s" if inc.restore_s is not None else ""
        out.append(f"  {inc.pid:<8} {inc.started_s:7.1f}s  {ready + restore:>13}  {parents:>15,}  "
                   f"{_mib(inc.warm_kb):>6} {_mib(inc.peak_kb):>8} {_mib(inc.end_kb):>7}   {inc.ended}")
    out.append(f"  {rep.memory_note}")
    if rep.anomalies:
        out += ["", "daemon counters (summed over incarnations):"]
        out += [f"  {k} {v:g}" for k, v in rep.anomalies.items()]
    out.append(f"daemon log: {rep.log_error_count} ERROR lines" + (":" if rep.log_errors else ""))
    out += [f"  {e}" for e in rep.log_errors]
    for e in rep.errors:
        out.append(f"SOAK ERROR: {e}")
    verdict = "PASS" if rep.passed else "FAIL"
    out.append(f"\nsoak {verdict}: lost {rep.lost_shares}, duplicated {rep.dup_shares} shares / "
               f"{len(rep.dup_fills)} fills, over-filled {len(rep.overfills)}, orphans {len(rep.orphans)}, "
               f"violations {len(rep.violations)}, not terminal {rep.parents_sent - rep.parents_terminal}, "
               f"faults not recovered {len(rep.faults_failed)} (seed {rep.seed}, workdir {rep.workdir})")
    return "\n".join(out)


def report_json(rep: SoakReport) -> str:
    body = msgspec.to_builtins(rep)
    body["passed"] = rep.passed
    return json.dumps(body, indent=1)


# ------------------------------------------------------------------ entry


def run_soak(parents: int, seed: int, rate: float, workdir: str | Path, *, base: SimClusterConfig,
             fault_every_s: float = 30.0, journal_sync: str | None = "every", warmup_s: float = 20.0,
             log: Callable[[str], None] = print) -> SoakReport:
    """Run the chaos soak in ``workdir`` (created; kept afterwards: logs,
    journal, fill records, FIX stores are the evidence)."""
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    cfg = localize(soak_config(base, journal_sync), work)
    soak = Soak(cfg, work, parents, seed, rate, fault_every_s, warmup_s, log)
    rep = soak.run()
    log(format_report(rep))
    (work / "soak-report.json").write_text(report_json(rep))
    return rep
