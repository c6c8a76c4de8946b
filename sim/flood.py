"""``sor bench --flood N --flood-window-ms W``: N NewOrderSingles from one
OMS session in W ms through the real daemon and sim venues (the config as
given: by default ``config/sor.toml``, the ML planner, three venues).

What it reports per run, from the OMS's side of the wire and the daemon's
own counters: how many parents were accepted and how many rejected, by
reason (the router's back-pressure, "router overloaded: ...", the
session's message throttle, anything else); the first-ER round trip
(NewOrderSingle handed to quickfix -> first ExecutionReport back at the
OMS, one CLOCK_MONOTONIC) of the accepted ones and of the rejected ones;
whether every parent got an answer and reached a terminal state; the ER
invariants; and the router's ack-timeout cancels (the sim venues ack at
once, so every one of them is self-inflicted: the router was too busy to
read the ack), with the ack deadlines it deferred instead.

Runs (``--flood-runs``), each against a fresh cluster:

- ``default``: the config as it is (back-pressure on, the 500/s throttle);
- ``gate-off``: ``router.overload.enabled = false`` (the throttle alone);
- ``throttle-raised``: ``risk.max_msgs_per_s`` raised out of the way (the
  back-pressure gate alone);
- ``neither``: both off, the original finding's set-up.

Figures are printed and written as JSON, never asserted on (DESIGN.md).
"""

from __future__ import annotations

import gc
import json
import os
import platform
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from fix.clock import monotonic_ns
from fix.codec import EXEC_TYPE, ORD_STATUS, TEXT
from router.config import SymbolConfig
from sim.config import SimClusterConfig
from sim.harness import Cluster, localize
from sim.invariants import InvariantError, check_all
from sim.oms import TERMINAL, SimOms

RUNS = ("default", "gate-off", "throttle-raised", "neither")
RAISED_MSGS_PER_S = 1_000_000
"""``throttle-raised``: far above any flood the sim OMS can send."""
WARMUP = 20
"""Parents sent and finished before the flood (the model's first runs, the
sessions' first messages stay out of the figures)."""


def flood_config(base: SimClusterConfig, run: str, driver: str | None = None) -> SimClusterConfig:
    r = msgspec.structs.replace
    router = base.router if driver is None else r(base.router, driver=driver)
    risk = base.risk
    if run in ("gate-off", "neither"):
        router = r(router, overload=r(router.overload, enabled=False))
    if run in ("throttle-raised", "neither"):
        risk = r(risk, max_msgs_per_s=max(RAISED_MSGS_PER_S, risk.max_msgs_per_s))
    return r(base, router=router, risk=risk)


def flood_orders(symbols: list[SymbolConfig], n: int) -> list[tuple[str, str, str]]:
    """(symbol, side, limit) for each parent: marketable IOC limits half a
    percent through the reference price, the symbols and sides in turn."""
    out = []
    syms = symbols
    for i in range(n):
        s = syms[i % len(syms)]
        ref, tick = Decimal(s.ref_price), Decimal(s.tick_size)
        off = (ref * Decimal("0.005") / tick).to_integral_value() * tick
        buy = (i // len(syms)) % 2 == 0
        out.append((s.symbol, "1" if buy else "2", str(ref + off if buy else ref - off)))
    return out


def send_flood(oms: SimOms, orders: list[tuple[str, str, str]], window_ns: int, qty: int,
               freeze: bool = True) -> tuple[list[str], float]:
    """Send ``orders`` (IOC) evenly over ``window_ns``: each when due, a
    burst of everything due when behind. Returns the ClOrdIDs and the
    seconds it took. ``freeze``: ``gc.freeze()`` first, so a collection of
    the reports the OMS keeps does not stall the sender mid-flood."""
    n = len(orders)
    period = window_ns / n if n else 0.0
    cls: list[str] = []
    if freeze:
        gc.freeze()
    t0 = monotonic_ns()
    k = 0
    while k < n:
        now = monotonic_ns()
        due = t0 + int(k * period)
        if now < due:
            time.sleep((due - now) / 1e9)
            continue
        while k < n and t0 + int(k * period) <= now:
            sym, side, px = orders[k]
            cls.append(oms.send_order(sym, side, qty, price=px, tif="3"))
            k += 1
    return cls, (monotonic_ns() - t0) / 1e9


def wait_answered(oms: SimOms, cls: list[str], timeout_s: float) -> bool:
    """Wait until every parent has ended (terminal ER or reject). One
    parent at a time, in the order sent: ``SimOms.wait_all_done`` re-checks
    every parent on every message, which over thousands of parents would
    cost the OMS process more CPU than the router under test."""
    deadline = time.monotonic() + timeout_s
    return all(oms.wait_done(cl, max(0.0, deadline - time.monotonic())) for cl in cls)


def _q_ms(values_ns: list[int]) -> dict[str, float]:
    if not values_ns:
        return {}
    v = sorted(values_ns)
    n = len(v)

    def q(p: float) -> float:
        return round(v[min(n - 1, max(0, int(p * n + 0.999999) - 1))] / 1e6, 2)

    return {"p50": q(0.50), "p99": q(0.99), "max": round(v[-1] / 1e6, 2), "n": n}


def _reason(text: str) -> str:
    if text.startswith("router overloaded"):
        return "overloaded"
    if text.startswith("message throttle"):
        return "throttle"
    return "other: " + text[:60]


def flood_once(cfg: SimClusterConfig, work: Path, n: int, window_ms: float, qty: int = 100,
               done_timeout_s: float = 180.0) -> dict[str, Any]:
    """One flood against a fresh cluster built from ``cfg`` in ``work``."""
    cfg = localize(cfg, work)
    cluster = Cluster(cfg, work)
    try:
        cluster.start(timeout_s=60)
        return _flood(cluster, cfg, work, n, window_ms, qty, done_timeout_s)
    finally:
        cluster.stop()


def _flood(cluster: Cluster, cfg: SimClusterConfig, work: Path, n: int, window_ms: float, qty: int,
           done_timeout_s: float) -> dict[str, Any]:
    oms = SimOms("127.0.0.1", cfg.oms.port, sender_comp_id=cfg.oms.target_comp_id,
                 target_comp_id=cfg.oms.sender_comp_id, state_dir=work / "oms")
    try:
        oms.start(timeout_s=30)
        warm, _ = send_flood(oms, flood_orders(cfg.symbols, WARMUP), int(WARMUP * 10e6), qty)  # 10 ms apart
        wait_answered(oms, warm, 30)
        before = cluster.metrics()
        cls, send_s = send_flood(oms, flood_orders(cfg.symbols, n), int(window_ms * 1e6), qty)
        t_sent = time.monotonic()
        all_done = wait_answered(oms, cls, done_timeout_s)
        done_s = time.monotonic() - t_sent + send_s
        after = cluster.metrics()
        reports = {cl: oms.reports(cl) for cl in cls}
        sent_ns = dict(oms.sent_ns)  # written by this thread only, before each send
    finally:
        oms.stop()

    accepted_rtt: list[int] = []
    rejected_rtt: list[int] = []
    rejected: dict[str, int] = {}
    unanswered = not_terminal = 0
    for cl in cls:
        reps = reports[cl]
        if not reps:
            unanswered += 1
            continue
        first = reps[0]
        rtt = first.recv_ns - sent_ns[cl]
        if not any(r.get(ORD_STATUS) in TERMINAL for r in reps):
            not_terminal += 1
        if first.get(EXEC_TYPE) == "8":
            rejected_rtt.append(rtt)
            why = _reason(first.get(TEXT))
            rejected[why] = rejected.get(why, 0) + 1
        else:
            accepted_rtt.append(rtt)
    try:
        check_all(reports)
        invariants = "ok"
    except InvariantError as e:
        invariants = str(e)

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    anomalies = {k.split('kind="')[1].rstrip('"}'): delta(k) for k in after
                 if k.startswith("sor_venue_anomalies_total{") and delta(k)}
    return {
        "parents": n, "window_ms": window_ms, "sent_in_s": round(send_s, 3),
        "offered_per_s": round(n / send_s, 1) if send_s > 0 else None,
        "accepted": len(accepted_rtt), "rejected": sum(rejected.values()), "rejected_by_reason": rejected,
        "unanswered": unanswered, "not_terminal": not_terminal, "all_terminal_within_timeout": all_done,
        "last_answer_after_s": round(done_s, 2),
        "first_er_ms_accepted": _q_ms(accepted_rtt), "first_er_ms_rejected": _q_ms(rejected_rtt),
        "ack_timeout_cancels": delta('sor_venue_anomalies_total{kind="ack_timeout"}'),
        "status_timeout_cancels": delta('sor_venue_anomalies_total{kind="status_timeout"}'),
        "ack_deadlines_deferred": delta("sor_ack_timeouts_deferred_total"),
        "gate_trips": {m: delta(f'sor_overload_trips_total{{measure="{m}"}}') for m in ("inbox_age", "ack_time")},
        "router_rejects_overloaded": delta('sor_order_rejects_total{reason="overloaded"}'),
        "venue_anomalies": anomalies,
        "invariants": invariants,
    }


def _fmt_q(q: dict[str, float]) -> str:
    return f"{q['p50']:,.1f} / {q['p99']:,.1f} / {q['max']:,.1f}" if q else "-"


def print_flood(res: dict[str, Any]) -> None:
    m = res["machine"]
    print(f"\nsor bench --flood {res['parents']} --flood-window-ms {res['window_ms']:g}  "
          f"({m['cpus']} CPUs, Python {m['python']}; driver {res['driver']}; config {res['config']})")
    print(f"\n{'run':<18}{'sent in':>9}{'accepted':>10}{'rejected':>10}  {'by reason':<34}"
          f"{'first ER ms p50 / p99 / max':>30}{'ack-timeout':>13}{'deferred':>10}  answered")
    for row in res["runs"]:
        why = ", ".join(f"{k} {v}" for k, v in sorted(row["rejected_by_reason"].items())) or "-"
        ok = "all" if row["unanswered"] == 0 and row["not_terminal"] == 0 else \
            f"{row['unanswered']} none, {row['not_terminal']} open"
        print(f"{row['run']:<18}{row['sent_in_s']:>8.2f}s{row['accepted']:>10}{row['rejected']:>10}  {why:<34}"
              f"{_fmt_q(row['first_er_ms_accepted']):>30}{row['ack_timeout_cancels']:>13.0f}"
              f"{row['ack_deadlines_deferred']:>10.0f}  {ok}")
    print("\nfirst ER: NewOrderSingle handed to quickfix at the OMS -> first ExecutionReport back there "
          "(accepted parents: the New; rejected: the reject, "
          + "; ".join(f"{r['run']} p50/p99 {_fmt_q(r['first_er_ms_rejected'])} ms" for r in res["runs"]) + ")")
    bad = [r for r in res["runs"] if r["invariants"] != "ok"]
    for r in bad:
        print(f"ER invariants broken in {r['run']}: {r['invariants']}")
    if not bad:
        print("ER invariants: ok in every run")


def run_flood(base: SimClusterConfig, config_path: str, parents: int, window_ms: float, runs: list[str],
              repeat: int, json_path: str, driver: str | None = None) -> int:
    res: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "parents": parents, "window_ms": window_ms, "config": config_path,
        "driver": driver or base.router.driver, "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="sor-flood-") as tmp:
        for run in runs:
            for k in range(repeat):
                work = Path(tmp) / f"{run}-{k}"
                work.mkdir()
                print(f"flood {run} #{k + 1}: {parents} parents in {window_ms:g} ms ...", file=sys.stderr, flush=True)
                row = flood_once(flood_config(base, run, driver), work, parents, window_ms)
                res["runs"].append({"run": run if repeat == 1 else f"{run} #{k + 1}", **row})
    Path(json_path).write_text(json.dumps(res, indent=2))
    print_flood(res)
    print(f"\nJSON: {json_path}")
    return 0
