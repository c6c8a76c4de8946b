"""``sor bench``: wire-level latency and throughput on loopback.

Everything is measured on one clock (CLOCK_MONOTONIC) across processes:

* floor: the sim OMS talks straight to one sim venue through the same
  quickfix stack; NewOrderSingle -> first ExecutionReport back at the OMS is
  two one-way FIX hops, the same count as OMS -> router -> venue;
* tick-to-route: the OMS stamps each parent with tag 7002 right before
  handing it to quickfix; the router copies the stamp onto the child and the
  first venue of the waterfall records when the child arrived (written at
  exit), so tick-to-route = arrival - stamp per parent;
* in-process stages: bucket-resolution estimates from the daemon's own
  ``sor_stage_seconds`` / ``sor_tick_to_route_seconds`` histograms;
* throughput: a rising ladder of offered rates, paced by a schedule.

Figures are printed and written as JSON, never asserted on (DESIGN.md).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client.samples import Sample

from fix.clock import monotonic_ns
from router.config import SymbolConfig
from sim.config import SimClusterConfig
from sim.harness import Cluster, localize, sample_values
from sim.oms import SimOms

TRACE = 7002
P99_LIMIT_US = 5000.0
QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999))
SYMBOLS = ["B1", "B2", "B3", "B4"]
FULL_RATES = [250.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0]
QUICK_RATES = [250.0, 500.0]


def bench_config(base: SimClusterConfig, driver: str, planner: str = "static",
                 md_per_s: float = 0.0, journal: bool = True) -> SimClusterConfig:
    """A deterministic market, one lit venue deep enough never to run dry:
    every IOC marketable parent fills in full on LIT1 with one child. With
    ``planner="ml"`` every parent also pays features and one ONNX scoring
    run, which is what the ML rows measure. ``md_per_s`` adds a second lit
    venue, MD1, in its own process, that routes nothing (not allowed) and
    publishes that many book entries per second to the router (quote-size
    churn, five levels a side): market data arriving while orders route."""
    r = msgspec.structs.replace
    lit = next(v for v in base.venues if v.name == "LIT1")
    sim = r(lit.sim, levels=5, level_size_mean=10_000_000, level_size_jitter=0.0, taker_rate_hz=0.0,
            contra_prob=0.0, requote_ms=50, md_churn_per_s=0.0)
    symbols = [SymbolConfig(symbol=s, tick_size="0.01", lot_size=1, max_order_qty=100_000, ref_price="190.00")
               for s in SYMBOLS]
    venues = [r(lit, sim=sim)]
    if md_per_s > 0:
        venues.append(r(lit, name="MD1", target_comp_id="MD1", mic="MD1", sim=r(sim, md_churn_per_s=md_per_s)))
    waterfall = r(base.waterfall, venues=["LIT1"], allowed_venues=["LIT1"], final_action="cancel",
                  rest_venue=None, planner=planner)
    # The ladder offers up to 10,000 parents/s from one OMS session, every
    # one filled on one symbol: above the production throttles (500
    # messages/s per session, 1,000 executions/s per symbol), which the bench
    # raises explicitly. Every other control stays on and is measured.
    risk = r(base.risk, max_msgs_per_s=max(20_000, base.risk.max_msgs_per_s), max_executions=0)
    # The ladder's top rates are meant to find where the router stops
    # keeping up, so the back-pressure gate's refusals, which would start
    # there, are off too (`sor bench --flood` measures them).
    router = r(base.router, driver=driver, overload=r(base.router.overload, enabled=False))
    return r(base, venues=venues, symbols=symbols, waterfall=waterfall,
             sim=r(base.sim, mid_vol_ticks=0.0), router=router,
             journal=r(base.journal, enabled=journal), risk=risk)


@dataclass(frozen=True)
class Variant:
    """One daemon set-up the bench measures against a fresh cluster."""

    key: str
    driver: str
    planner: str = "static"
    md_per_s: float = 0.0
    journal: bool = True
    """The decision journal on (SQLite, sync = batch), as the daemon runs by default."""
    journal_store: str = "sqlite"
    """postgres: the journal in a throwaway PostgreSQL server the run starts."""
    sync: str = "batch"
    """journal.sync; "every" holds each report for the OMS until durable."""


def variants(md_per_s: float, drivers: tuple[str, ...] = ("threaded", "poll")) -> list[Variant]:
    out = [Variant(d if p == "static" else f"{d}+ml", d, p) for d in drivers for p in ("static", "ml")]
    if md_per_s > 0:
        d = "poll" if "poll" in drivers else drivers[-1]
        out.append(Variant(f"{d}+ml+md", d, "ml", md_per_s))
    # The journal's cost, read against poll+ml of the same run (only when
    # named with --only).
    d = "poll" if "poll" in drivers else drivers[-1]
    out.append(Variant(f"{d}+ml-journal", d, "ml", journal=False))
    out.append(Variant(f"{d}+ml+journal-pg", d, "ml", journal_store="postgres"))
    out.append(Variant(f"{d}+ml+journal-every", d, "ml", sync="every"))
    # The RL planner beside ML (named with --only). The bench's market has
    # one lit venue and no pool, where the RL policy leaves the choice to the
    # ML planner's rules: this row is its state's cost on top of ML's, the
    # Q-model's run is measured in tests/perf/test_rl_bench.py.
    out.append(Variant(f"{d}+rl", d, "rl"))
    return out


# ------------------------------------------------------------------ statistics


def quantiles_us(values_ns: list[int]) -> dict[str, float]:
    """Nearest-rank quantiles, in microseconds."""
    if not values_ns:
        return {}
    v = sorted(values_ns)
    n = len(v)
    out = {name: v[min(n - 1, max(0, int(q * n + 0.999999) - 1))] / 1e3 for name, q in QUANTILES}
    out["max"] = v[-1] / 1e3
    out["mean"] = sum(v) / n / 1e3
    out["n"] = float(n)
    return out


def histogram_quantiles(samples: Iterable[Sample], name: str, label: str | None) -> dict[str, dict[str, Any]]:
    """{label value: {count, p50_us_le, p99_us_le, max_us_le}} from cumulative buckets; each
    quantile is the upper bound of the bucket it falls in (None: above the
    last finite bucket)."""
    series: dict[str, list[tuple[float, float]]] = {}
    bucket = f"{name}_bucket"
    for s in samples:
        if s.name != bucket:
            continue
        le = float(s.labels["le"])  # "+Inf" included: float() reads it
        series.setdefault(s.labels.get(label, "") if label else "", []).append((le, float(s.value)))
    out: dict[str, dict[str, Any]] = {}
    for key, buckets in sorted(series.items()):
        buckets.sort()
        total = buckets[-1][1] if buckets else 0.0
        if total <= 0:
            continue
        row: dict[str, Any] = {"count": int(total)}
        for qname, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
            le = next(b for b, c in buckets if c >= q * total)
            row[f"{qname}_us_le"] = None if le == float("inf") else round(le * 1e6, 1)
        out[key] = row
    return out


# --------------------------------------------------------------------- sending


@dataclass
class Sent:
    stamps: list[int] = field(default_factory=list)
    cl_ord_ids: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


class Sender:
    """Paces parents on a schedule (send when due; catch up in a burst when
    behind) and stamps each one right before it goes to quickfix."""

    def __init__(self, oms: SimOms) -> None:
        self.oms = oms
        self.i = 0
        self.last_stamp = 0
        self.next_freeze = 0

    def send_one(self, sent: Sent) -> None:
        i = self.i
        self.i += 1
        sym = SYMBOLS[i % len(SYMBOLS)]
        buy = (i // len(SYMBOLS)) % 2 == 0
        stamp = monotonic_ns()
        if stamp <= self.last_stamp:  # stamps key the venue's trace: keep them unique
            stamp = self.last_stamp + 1
        self.last_stamp = stamp
        cl = self.oms.send_order(sym, "1" if buy else "2", 10, price="190.05" if buy else "189.95", tif="3",
                                 extra=[(TRACE, str(stamp))])
        sent.stamps.append(stamp)
        sent.cl_ord_ids.append(cl)

    def paced(self, n: int | None, rate: float, window_s: float | None = None) -> Sent:
        sent = Sent()
        period_ns = int(1e9 / rate)
        t0 = monotonic_ns()
        end = t0 + int(window_s * 1e9) if window_s is not None else None
        k = 0
        while True:
            now = monotonic_ns()
            if (n is not None and k >= n) or (end is not None and now >= end):
                break
            due = t0 + k * period_ns
            if now < due:
                if now >= self.next_freeze:
                    # The sim OMS keeps every report it gets: without this a
                    # full collection in this process, between a stamp and
                    # its send, would count as the router's latency.
                    gc.freeze()
                    self.next_freeze = now + 1_000_000_000
                time.sleep((due - now) / 1e9)
                continue
            # Behind (or on time): send everything due now, as a batch.
            while t0 + k * period_ns <= now and (n is None or k < n):
                self.send_one(sent)
                k += 1
        sent.elapsed_s = (monotonic_ns() - t0) / 1e9
        return sent

    def wait_all(self, sent: Sent, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        done = 0
        for cl in sent.cl_ord_ids:
            if self.oms.wait_done(cl, max(0.0, deadline - time.monotonic())):
                done += 1
        return done


def first_er_rtts(oms: SimOms, sent: Sent) -> list[int]:
    out = []
    for cl, stamp in zip(sent.cl_ord_ids, sent.stamps, strict=True):
        reps = oms.reports(cl)
        if reps:
            out.append(reps[0].recv_ns - stamp)
    return out


# ---------------------------------------------------------------------- phases


def measure_floor(base: SimClusterConfig, work: Path, n: int, warmup: int, rate: float) -> dict[str, Any]:
    """OMS -> one sim venue directly: the OMS logs on as the router would."""
    cfg = localize(bench_config(base, "threaded"), work)
    venue = cfg.venues[0]
    cluster = Cluster(cfg, work)
    cluster.start_venue(venue.name)
    oms = SimOms("127.0.0.1", venue.port, sender_comp_id=venue.sender_comp_id,
                 target_comp_id=venue.target_comp_id, state_dir=work / "oms-floor")
    try:
        oms.start(timeout_s=30)
        s = Sender(oms)
        s.paced(warmup, rate)
        sent = s.paced(n, rate)
        s.wait_all(sent, 30)
        rtts = first_er_rtts(oms, sent)
    finally:
        oms.stop()
        cluster.stop()
    return {"what": "OMS -> sim venue -> OMS, NewOrderSingle to first ExecutionReport (2 FIX hops)",
            "rate_per_s": rate, "rtt_us": quantiles_us(rtts)}


def tick_to_route(arrivals: dict[int, int], sent: Sent) -> tuple[list[int], int]:
    vals = [arrivals[s] - s for s in sent.stamps if s in arrivals]
    return vals, len(sent.stamps) - len(vals)


class ScraperProcess:
    """``sim.scraper`` at 1 Hz against the daemon, started and stopped
    around a block of parents."""

    def __init__(self, url: str, interval_s: float = 1.0) -> None:
        self.url = url
        self.interval_s = interval_s
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout_s: float = 20.0) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "sim.scraper", self.url, str(self.interval_s)],
                                     stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
        assert self.proc.stdout is not None
        # Blocks until the child is up: its start-up CPU stays out of the block.
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.proc.kill()
            raise RuntimeError(f"scraper did not start: {line!r}")

    def stop(self) -> dict[str, Any]:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=20)
        self.proc = None
        return dict(json.loads(out.strip().splitlines()[-1]))


def alternating_blocks(s: Sender, n: int, rate: float, block: int,
                       during: Callable[[], contextlib.AbstractContextManager[object]]) -> dict[str, Sent]:
    """Parents in alternating blocks of ``block`` ("off" first, then "on"
    inside ``during()``) until each side has ``n``: both sides see the same
    drift of a shared machine."""
    sides: dict[str, Sent] = {"off": Sent(), "on": Sent()}
    on = False
    while min(len(x.stamps) for x in sides.values()) < n:
        side = sides["on" if on else "off"]
        k = min(block, n - len(side.stamps))
        if k > 0:
            with during() if on else contextlib.nullcontext():
                sent = s.paced(k, rate)
            s.wait_all(sent, 30)
            side.stamps += sent.stamps
            side.cl_ord_ids += sent.cl_ord_ids
        on = not on
    return sides


def scrape_comparison(s: Sender, url: str, n: int, rate: float, block: int) -> dict[str, Any]:
    """Tick-to-route with and without a 1 Hz scraper, in alternating blocks."""
    totals = {"scrapes": 0, "errors": 0, "bytes": 0, "max_ms": 0.0}

    @contextlib.contextmanager
    def scraping() -> Iterator[None]:
        scraper = ScraperProcess(url)
        scraper.start()
        try:
            yield
        finally:
            st = scraper.stop()
            totals["scrapes"] += st["scrapes"]
            totals["errors"] += st["errors"]
            totals["bytes"] = st["bytes"]
            totals["max_ms"] = max(totals["max_ms"], st["max_ms"])

    sides = alternating_blocks(s, n, rate, block, scraping)
    return {"sides": sides, "scrapes": totals["scrapes"], "scrape_errors": totals["errors"],
            "body_bytes": totals["bytes"], "slowest_scrape_ms": totals["max_ms"], "block": block}


def twin_model(model_path: Path, work: Path) -> Path:
    """The same ONNX file under another version (its manifest's), so that
    reloading the two in turn swaps the champion every time."""
    twin = work / "twin" / model_path.name
    twin.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_path, twin)
    manifest = json.loads(model_path.with_suffix(".json").read_text())
    manifest["version"] = f"{manifest['version']}-twin"
    twin.with_suffix(".json").write_text(json.dumps(manifest))
    return twin


def reload_comparison(s: Sender, admin: Any, model_paths: list[str], n: int, rate: float, block: int,
                      pause_s: float = 0.2) -> dict[str, Any]:
    """Tick-to-route with and without hot reloads of the champion, in
    alternating blocks. While an "on" block runs, a thread reloads the
    model through the admin API (``POST /model/load`` as champion: load and
    warm on the admin thread, swap on the loop between two orders), waits
    ``pause_s`` and loads the next of ``model_paths`` (two versions: each
    load is a swap). Each reload's span (request sent to answer) is kept,
    so the parents sent during one can be read apart."""
    import threading

    spans: list[tuple[int, int]] = []
    answers: list[dict[str, Any]] = []
    failed: list[str] = []

    def reload(stop: threading.Event) -> None:
        while not stop.is_set():
            path = model_paths[len(spans) % len(model_paths)]
            t0 = monotonic_ns()
            status, out = admin.request("POST", "/model/load", {"path": path, "as": "champion",
                                                                "reason": "bench hot reload"})
            spans.append((t0, monotonic_ns()))
            if status == 200:
                answers.append(out)
            else:
                failed.append(f"{status}: {out}")
            stop.wait(pause_s)

    @contextlib.contextmanager
    def reloading() -> Iterator[None]:
        stop = threading.Event()
        th = threading.Thread(target=reload, args=(stop,), daemon=True)
        th.start()
        try:
            yield
        finally:
            stop.set()
            th.join(30)

    sides = alternating_blocks(s, n, rate, block, reloading)
    if failed:
        raise RuntimeError(f"hot reloads refused: {failed[:3]}")
    return {"sides": sides, "spans": spans, "answers": answers, "block": block}


def _during(stamps: list[int], spans: list[tuple[int, int]], after_ns: int = 1_000_000) -> set[int]:
    """The stamps sent while a reload was in flight (up to ``after_ns`` past its answer)."""
    out: set[int] = set()
    for st in stamps:
        if any(a <= st <= b + after_ns for a, b in spans):
            out.add(st)
    return out


def _max_bucket(rows: dict[str, dict[str, Any]]) -> float | None:
    """The highest ``max_us_le`` of ``histogram_quantiles`` rows (None: above
    the last finite bucket, or no observation)."""
    maxes = [r["max_us_le"] for r in rows.values()]
    return None if not maxes or None in maxes else max(maxes)


def _md_entries(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items() if k.startswith("sor_md_entries_total{"))


def _md_rate(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    """Per second between two (monotonic s, counter) readings: market-data
    entries applied, journal records committed."""
    dt = after[0] - before[0]
    return round((after[1] - before[1]) / dt, 1) if dt > 0 else None


class Profiler:
    """py-spy sampling the daemon (``--profile DIR``): non-blocking, so the
    process is never paused for a sample, and flame-graph-ready output."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        exe = shutil.which("py-spy")
        if exe is None:
            print("--profile: py-spy is not installed (pip install py-spy); not profiling", file=sys.stderr)
            return
        self.proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--rate", "500", "--nonblocking",
                                      "--threads", "--format", "speedscope", "--output", str(out)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> str | None:
        """Stop sampling; the profile's path, or None (py-spy could not attach)."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None
        if not self.out.exists():
            print(f"--profile: py-spy wrote nothing: {err.decode(errors='replace')[-500:]}", file=sys.stderr)
            return None
        return str(self.out)


def run_driver(base: SimClusterConfig, work: Path, v: Variant, n: int, warmup: int, rate: float,
               rates: list[float], window_s: float, floor: dict[str, Any], scrape_n: int = 0,
               scrape_block: int = 1000, profile_dir: Path | None = None, reload_n: int = 0) -> dict[str, Any]:
    cfg = localize(bench_config(base, v.driver, v.planner, v.md_per_s, v.journal), work)
    if reload_n:
        from sim.harness import free_port

        token = work / "admin.token"
        token.write_text("bench-token\n")
        token.chmod(0o600)
        cfg = msgspec.structs.replace(cfg, admin=msgspec.structs.replace(
            cfg.admin, enabled=True, host="127.0.0.1", port=free_port(), token_file=str(token)))
    cfg = msgspec.structs.replace(cfg, journal=msgspec.structs.replace(cfg.journal, sync=v.sync))
    pg = None
    if v.journal_store == "postgres":
        from sim.pgserver import PgServer

        pg = PgServer()
        pg.start()
        cfg = msgspec.structs.replace(cfg, journal=msgspec.structs.replace(cfg.journal,
                                                                           url=pg.create_database("bench")))
    try:
        return _run_driver(cfg, work, v, n, warmup, rate, rates, window_s, floor, scrape_n, scrape_block,
                           profile_dir, reload_n)
    finally:
        if pg is not None:
            pg.stop()


def _run_driver(cfg: SimClusterConfig, work: Path, v: Variant, n: int, warmup: int, rate: float,
                rates: list[float], window_s: float, floor: dict[str, Any], scrape_n: int,
                scrape_block: int, profile_dir: Path | None, reload_n: int = 0) -> dict[str, Any]:
    cluster = Cluster(cfg, work, record_traces=True)
    cluster.start(timeout_s=60)
    oms = SimOms("127.0.0.1", cfg.oms.port, sender_comp_id=cfg.oms.target_comp_id,
                 target_comp_id=cfg.oms.sender_comp_id, state_dir=work / "oms")
    steps: list[tuple[float, Sent, int, list[int], float | None, float | None]] = []
    profile: str | None = None
    scraped: dict[str, Any] | None = None
    reloaded: dict[str, Any] | None = None
    md_latency: float | None = None

    def md_reading() -> tuple[float, float]:
        return time.monotonic(), _md_entries(cluster.metrics())

    try:
        oms.start(timeout_s=30)
        s = Sender(oms)
        s.wait_all(s.paced(warmup, rate), 30)
        m0 = md_reading()
        prof = None
        if profile_dir is not None and cluster.daemon is not None:
            prof = Profiler(cluster.daemon.pid, profile_dir / f"daemon-{v.key}.speedscope.json")
        lat = s.paced(n, rate)
        s.wait_all(lat, 60)
        # What the OMS waits for its ack (journal.sync = "every" holds it).
        lat_first_er = first_er_rtts(oms, lat)
        profile = prof.stop() if prof is not None else None
        md_latency = _md_rate(m0, md_reading())
        stages_samples = cluster.samples()
        if scrape_n > 0:
            scraped = scrape_comparison(s, f"http://{cfg.metrics.host}:{cfg.metrics.port}/metrics", scrape_n,
                                        rate, scrape_block)
        if reload_n > 0:
            from router.admin.client import AdminClient
            from sim.report import default_model_path

            admin = AdminClient(cfg.admin.host, cfg.admin.port, "bench-token", timeout_s=30)
            # The twin first: the first reload is already a swap.
            paths = [str(twin_model(default_model_path(), work)), str(default_model_path())]
            reloaded = reload_comparison(s, admin, paths, reload_n, rate, max(50, min(1000, reload_n // 4)))
        for r in rates:
            m0 = md_reading()
            j0 = _journal_reading(cluster)
            sent = s.paced(None, r, window_s)
            done = s.wait_all(sent, 60)
            md = _md_rate(m0, md_reading())
            rows = _md_rate(j0, _journal_reading(cluster)) if v.journal else None
            rtts = first_er_rtts(oms, sent)
            steps.append((r, sent, done, rtts, md, rows))
            # Online stop check (the venue's trace is only written at exit):
            # the OMS-observed first-ER p99, or a sender that cannot keep up.
            er_p99 = quantiles_us(rtts).get("p99", float("inf"))
            if er_p99 > P99_LIMIT_US or len(sent.stamps) < 0.8 * r * window_s:
                break
        final_samples = cluster.samples()
    finally:
        oms.stop()
        codes = cluster.stop()
    if codes.get("LIT1") != 0:
        raise RuntimeError(f"venue LIT1 exited with {codes}; trace not written")
    arrivals: dict[int, int] = {}
    for stamp, arrived in json.loads(cluster.trace_path("LIT1").read_text()):
        arrivals.setdefault(int(stamp), int(arrived))

    vals, missing = tick_to_route(arrivals, lat)
    ttr = quantiles_us(vals)
    ttr["missing"] = float(missing)
    fl = floor["rtt_us"]
    ratio = {q: round(ttr[q] / fl[q], 2) for q in ("p50", "p99") if ttr.get(q) and fl.get(q)}
    stages = histogram_quantiles(stages_samples, "sor_stage_seconds", "stage")
    in_proc = histogram_quantiles(stages_samples, "sor_tick_to_route_seconds", None).get("", {})
    gc_pauses = histogram_quantiles(final_samples, "sor_gc_pause_seconds", "generation")

    ladder: list[dict[str, Any]] = []
    held = 0.0
    for r, sent, done, rtts, md, rows in steps:
        tv, miss = tick_to_route(arrivals, sent)
        q = quantiles_us(tv)
        achieved = len(sent.stamps) / sent.elapsed_s if sent.elapsed_s > 0 else 0.0
        ok = bool(q) and q["p99"] <= P99_LIMIT_US and achieved >= 0.9 * r and miss == 0
        if ok:
            held = max(held, r)
        ladder.append({"offered_per_s": r, "achieved_per_s": round(achieved, 1), "parents": len(sent.stamps),
                       "completed": done, "missing_at_venue": miss,
                       "tick_to_route_us": {k: q[k] for k in ("p50", "p99", "max") if k in q},
                       "first_er_p99_us": quantiles_us(rtts).get("p99"), "held": ok,
                       "md_entries_per_s": md, "journal_rows_per_s": rows})
    sender_limited = any(st["achieved_per_s"] < 0.9 * st["offered_per_s"] for st in ladder)
    out: dict[str, Any] = {
        "driver": v.driver, "planner": v.planner,
        "tick_to_route_us": ttr,
        "first_er_us": quantiles_us(lat_first_er),
        "ratio_to_floor": ratio,
        "stages_us": {"note": "bucket-resolution estimates (upper bound of the bucket holding the quantile), "
                              "daemon histograms over warm-up + latency phase",
                      "stages": stages, "in_process_tick_to_route": in_proc},
        "throughput": {"window_s": window_s, "p99_limit_us": P99_LIMIT_US, "highest_rate_held_per_s": held,
                       "sender_limited": sender_limited, "steps": ladder},
        "market_data": {"churn_offered_entries_per_s": v.md_per_s,
                        "applied_entries_per_s_latency_phase": md_latency},
        "gc_pauses_us": {"note": "whole run, bucket-resolution estimates", "by_generation": gc_pauses,
                         "max_le_us": _max_bucket(gc_pauses)},
        "metrics_scrape_fallbacks": sample_values(final_samples).get("sor_metrics_scrape_fallbacks_total"),
        "journal": _journal_figures(v, final_samples, stages_samples),
        "profile": profile,
        "exit_codes": codes,
    }
    if scraped is not None:
        sides = {}
        for name, sent in scraped["sides"].items():
            tv, miss = tick_to_route(arrivals, sent)
            sides[name] = dict(quantiles_us(tv), missing=float(miss))
        off, on = sides["off"].get("p99.9"), sides["on"].get("p99.9")
        out["scrape"] = {
            "what": "1 Hz GET /metrics from another process, in alternating blocks with none",
            "block_parents": scraped["block"], "scrapes": scraped["scrapes"],
            "scrape_errors": scraped["scrape_errors"], "body_bytes": scraped["body_bytes"],
            "slowest_scrape_ms": scraped["slowest_scrape_ms"],
            "off_us": sides["off"], "on_us": sides["on"],
            "p99.9_change_pct": round(100.0 * (on - off) / off, 1) if on and off else None,
        }
    if reloaded is not None:
        stamps = reloaded["sides"]["on"].stamps
        during = _during(stamps, reloaded["spans"])
        ttr_of: dict[str, list[int]] = {"off": tick_to_route(arrivals, reloaded["sides"]["off"])[0],
                                        "on": tick_to_route(arrivals, reloaded["sides"]["on"])[0],
                                        "during": [arrivals[x] - x for x in during if x in arrivals]}
        ans = reloaded["answers"]
        out["reload"] = {
            "what": "hot swaps of the champion (POST /model/load as champion, two versions in turn, 200 ms apart) "
                    "in alternating "
                    "blocks with none; 'during': parents sent while a reload was in flight (to 1 ms after its "
                    "answer)",
            "block_parents": reloaded["block"], "reloads": len(reloaded["spans"]),
            "load_ms_median": statistics.median(a["load_ms"] for a in ans) if ans else None,
            "loop_us_median": statistics.median(a["loop_us"] for a in ans if "loop_us" in a) if ans else None,
            "loop_us_max": max((a["loop_us"] for a in ans if "loop_us" in a), default=None),
            **{f"{k}_us": dict(quantiles_us(v), n=float(len(v))) for k, v in ttr_of.items()},
            "missing_at_venue": sum(tick_to_route(arrivals, x)[1] for x in reloaded["sides"].values()),
        }
    return out


def _journal_reading(cluster: Cluster) -> tuple[float, float]:
    """(when, journal records committed so far)."""
    return time.monotonic(), cluster.metrics().get("sor_journal_records_total", 0.0)


def _journal_figures(v: Variant, final: list[Sample], latency_phase: list[Sample]) -> dict[str, Any] | None:
    """Records the journal committed and its writer's worst backlog."""
    if not v.journal:
        return None
    end = sample_values(final)
    lat = sample_values(latency_phase)
    return {"records": end.get("sor_journal_records_total"),
            "records_after_latency_run": lat.get("sor_journal_records_total"),
            "dropped": end.get("sor_journal_dropped_total"),
            "queue_high_water": end.get("sor_journal_queue_high_water"),
            "failed": end.get("sor_journal_failed"),
            "batch_us": histogram_quantiles(final, "sor_journal_batch_seconds", None).get("", {})}


# ---------------------------------------------------------------------- output


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.1f}"
    return str(x)


def paired_changes(rounds: list[dict[str, Any]], reference: str) -> dict[str, Any]:
    """Each run against ``reference`` measured in the same round: the
    change of tick-to-route p50 and p99 in percent, per round and its
    median (a shared machine's load moves both runs of a round alike)."""
    out: dict[str, Any] = {"reference": reference, "runs": {}}
    for key in rounds[0]:
        per: dict[str, list[float]] = {"p50": [], "p99": []}
        for rnd in rounds:
            for q in per:
                ref, got = rnd[reference]["tick_to_route_us"].get(q), rnd[key]["tick_to_route_us"].get(q)
                if ref and got is not None:
                    per[q].append(round(100.0 * (got / ref - 1.0), 1))
        out["runs"][key] = {
            **{f"{q}_change_pct": v for q, v in per.items()},
            **{f"{q}_change_pct_median": (float(statistics.median(v)) if v else None) for q, v in per.items()},
            **{f"{q}_us_median": float(statistics.median([r[key]["tick_to_route_us"][q] for r in rounds]))
               for q in per},
        }
    return out


def print_report(res: dict[str, Any]) -> None:
    m = res["machine"]
    print(f"\nsor bench  ({m['cpus']} CPUs, Python {m['python']}, {m['platform']})")
    print(f"parents per latency run: {res['parents']} (after {res['warmup']} warm-up), "
          f"paced at {res['latency_rate_per_s']:.0f}/s; loopback, "
          + (f"{len(res['rounds'])} rounds (the tables below: round 1)" if len(res.get("rounds", [])) > 1
             else "one run"))
    cols = ["p50", "p90", "p99", "p99.9", "max"]
    print(f"\n{'latency (us)':<34}" + "".join(f"{c:>10}" for c in cols) + f"{'x floor p50/p99':>18}")
    fl = res["floor"]["rtt_us"]
    print(f"{'floor: OMS<->venue RTT (2 hops)':<34}" + "".join(f"{_fmt(fl.get(c)):>10}" for c in cols))
    for d, r in res["drivers"].items():
        t = r["tick_to_route_us"]
        ratio = r["ratio_to_floor"]
        print(f"{'tick-to-route, ' + d:<34}" + "".join(f"{_fmt(t.get(c)):>10}" for c in cols)
              + f"{_fmt(ratio.get('p50')) + ' / ' + _fmt(ratio.get('p99')):>18}")
    for d, r in res["drivers"].items():
        f = r.get("first_er_us", {})
        print(f"{'NOS -> first ER at OMS, ' + d:<34}" + "".join(f"{_fmt(f.get(c)):>10}" for c in cols))
    print("\nin-process (daemon histograms; bucket-resolution estimates: quantile <= bucket bound, us)")
    for d, r in res["drivers"].items():
        st = r["stages_us"]
        parts = [f"{k} {_fmt(v['p50_us_le'])}/{_fmt(v['p99_us_le'])}" for k, v in st["stages"].items()]
        ip = st["in_process_tick_to_route"]
        if ip:
            parts.append(f"decode->child sent {_fmt(ip['p50_us_le'])}/{_fmt(ip['p99_us_le'])}")
        print(f"  {d:<12} p50/p99: " + ", ".join(parts))
        j = r.get("journal")
        if j:
            b = j["batch_us"]
            print(f"  {'':<12} journal: {_fmt(j['records'])} records, {_fmt(j['dropped'])} dropped, writer backlog "
                  f"at most {_fmt(j['queue_high_water'])}, batch commit p50/p99 <= {_fmt(b.get('p50_us_le'))}/"
                  f"{_fmt(b.get('p99_us_le'))} us")
        g = r.get("gc_pauses_us", {})
        if g.get("by_generation"):
            cnt = ", ".join(f"gen{k} {v['count']}" for k, v in g["by_generation"].items())
            print(f"  {'':<12} garbage collections: {cnt}; longest <= {_fmt(g['max_le_us'])} us")
    print(f"\nthroughput (window {res['window_s']} s per rate; held = wire p99 <= 5 ms and >= 90% of offered sent)")
    print(f"  {'driver':<12}{'offered/s':>10}{'achieved/s':>12}{'p50 us':>10}{'p99 us':>10}{'max us':>10}  held"
          f"  journal rows/s")
    for d, r in res["drivers"].items():
        for stp in r["throughput"]["steps"]:
            t = stp["tick_to_route_us"]
            rows = stp.get("journal_rows_per_s")
            print(f"  {d:<12}{stp['offered_per_s']:>10.0f}{stp['achieved_per_s']:>12.0f}{_fmt(t.get('p50')):>10}"
                  f"{_fmt(t.get('p99')):>10}{_fmt(t.get('max')):>10}  {'yes' if stp['held'] else 'no ':<3}"
                  f"  {_fmt(rows) if rows is not None else '-'}")
        tp = r["throughput"]
        note = " (the Python sim OMS could not offer some rates: sender-limited)" if tp["sender_limited"] else ""
        print(f"  {d:<12}highest rate held: {tp['highest_rate_held_per_s']:.0f}/s{note}")
    print(f"\nml: {res['ml_note']}")
    for d, r in res["drivers"].items():
        md = r["market_data"]
        if md["churn_offered_entries_per_s"] > 0:
            per_step = ", ".join(f"{st['offered_per_s']:.0f}/s: {_fmt(st['md_entries_per_s'])}"
                                 for st in r["throughput"]["steps"])
            print(f"market data, {d}: churn offered {md['churn_offered_entries_per_s']:,.0f} entries/s; applied by "
                  f"the daemon {_fmt(md['applied_entries_per_s_latency_phase'])}/s during the latency run; "
                  f"per throughput step (parents/s: entries/s) {per_step}")
    for d, r in res["drivers"].items():
        rl = r.get("reload")
        if not rl:
            continue
        print(f"\nhot reloads, {d} ({rl['reloads']} reloads in {rl['block_parents']}-parent blocks; load and warm "
              f"{_fmt(rl['load_ms_median'])} ms median on the admin thread, swap held the loop "
              f"{_fmt(rl['loop_us_median'])} us median, {_fmt(rl['loop_us_max'])} us at most; "
              f"{rl['missing_at_venue']} parents missing at the venue)")
        for name, label in (("off", "no reloads"), ("on", "blocks with reloads"), ("during", "sent during a reload")):
            t = rl[f"{name}_us"]
            print(f"  {label + ' (' + format(int(t.get('n', 0))) + ')':<32}"
                  + "".join(f"{_fmt(t.get(c)):>10}" for c in cols))
    pr = res.get("paired")
    if pr:
        n = len(res["rounds"])
        print(f"\nrepeated: {n} rounds, interleaved; tick-to-route p50 / p99 us, median of the rounds, and the "
              f"change against {pr['reference']} in the same round (per round, then the median)")
        for key, c in pr["runs"].items():
            per = ", ".join(f"{a:+.0f}/{b:+.0f}" for a, b in zip(c["p50_change_pct"], c["p99_change_pct"], strict=True))
            line = f"  {key:<26}{_fmt(c['p50_us_median']):>10} /{_fmt(c['p99_us_median']):>10}"
            if key != pr["reference"]:
                line += (f"   p50 {c['p50_change_pct_median']:+.1f}%, p99 {c['p99_change_pct_median']:+.1f}% "
                         f"(rounds: {per})")
            print(line)
    for d, r in res["drivers"].items():
        sc = r.get("scrape")
        if not sc:
            continue
        print(f"\nmetrics scraping, {d} ({sc['what']}; {sc['block_parents']} parents per block, "
              f"{sc['scrapes']} scrapes of {sc['body_bytes']:,} bytes, slowest {sc['slowest_scrape_ms']} ms)")
        for name in ("off", "on"):
            t = sc[f"{name}_us"]
            print(f"  {'scraper ' + name:<32}" + "".join(f"{_fmt(t.get(c)):>10}" for c in cols))
        print(f"  p99.9 change with the scraper: {_fmt(sc['p99.9_change_pct'])}%")


def run_bench(base: SimClusterConfig, parents: int, quick: bool, json_path: str, window_s: float | None = None,
              rates: list[float] | None = None, latency_rate: float = 250.0,
              drivers: tuple[str, ...] = ("threaded", "poll"), md_per_s: float | None = None,
              scrape_parents: int | None = None, scrape_variant: str = "poll+ml",
              only: list[str] | None = None, profile_dir: str | None = None, rounds: int = 1,
              reload_parents: int = 0) -> int:
    """``rounds`` > 1: the runs chosen are measured that many times,
    interleaved (every other round in reverse order, so a drift in the
    machine's load falls on all of them alike), and each is compared with
    the first run named, round by round (``paired``)."""
    warmup = min(1000, max(200, parents // 10))
    window = window_s if window_s is not None else (1.0 if quick else 2.0)
    ladder = rates or (QUICK_RATES if quick else FULL_RATES)
    md_rate = md_per_s if md_per_s is not None else (5_000.0 if quick else 50_000.0)
    scrape_n = scrape_parents if scrape_parents is not None else parents
    block = max(50, min(1000, scrape_n // 4))
    res: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
                    "python": platform.python_version(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine()},
        "parents": parents, "warmup": warmup, "latency_rate_per_s": latency_rate, "window_s": window,
        "ml": "on and off",
        "ml_note": "rows '<driver>+ml' route with the ML planner (features + one ONNX run of the shipped model per "
                   "parent); rows '<driver>' with the static waterfall; '+md': market data churn from a second "
                   "venue process (MD1) arrives during the whole run",
        "md_churn_entries_per_s": md_rate, "scrape_parents": scrape_n, "scrape_variant": scrape_variant,
    }
    prof_dir = Path(profile_dir).resolve() if profile_dir else None
    if prof_dir is not None:
        prof_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sor-bench-") as tmp:
        root = Path(tmp)
        (root / "floor").mkdir()
        print(f"floor: {parents} orders OMS -> venue ...", file=sys.stderr, flush=True)
        res["floor"] = measure_floor(base, root / "floor", parents, warmup, latency_rate)
        chosen = [v for v in variants(md_rate, drivers)
                  if (v.key in only if only else v.journal and v.journal_store == "sqlite" and v.sync == "batch"
                      and v.planner != "rl")]
        # The journal's comparison runs are asked for by name (--only).
        if only:
            chosen.sort(key=lambda v: only.index(v.key))
        res["drivers"] = {}
        res["rounds"] = []
        for rnd in range(rounds):
            done: dict[str, Any] = {}
            for v in (chosen if rnd % 2 == 0 else chosen[::-1]):
                work = root / f"{v.key}-{rnd}"
                work.mkdir()
                sn = scrape_n if v.key == scrape_variant and rnd == 0 else 0
                extra = f", scraper on/off {sn} parents each" if sn else ""
                tag = f" (round {rnd + 1} of {rounds})" if rounds > 1 else ""
                print(f"{v.key}{tag}: {parents} parents{extra}, then rates {ladder} ...", file=sys.stderr,
                      flush=True)
                rn = reload_parents if v.key == scrape_variant and rnd == 0 else 0
                done[v.key] = run_driver(base, work, v, parents, warmup, latency_rate, ladder, window,
                                         res["floor"], sn, block, prof_dir, rn)
            if rnd == 0:
                res["drivers"] = {v.key: done[v.key] for v in chosen}
            res["rounds"].append({k: {"tick_to_route_us": r["tick_to_route_us"], "first_er_us": r.get("first_er_us"),
                                      "highest_rate_held_per_s": r["throughput"]["highest_rate_held_per_s"]}
                                  for k, r in done.items()})
        if rounds > 1:
            res["paired"] = paired_changes(res["rounds"], chosen[0].key)
    Path(json_path).write_text(json.dumps(res, indent=2))
    print_report(res)
    print(f"\nJSON: {json_path}")
    return 0
