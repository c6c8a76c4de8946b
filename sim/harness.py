"""Start sim venues and the daemon as real processes on loopback.

Used by ``sor demo`` and the end-to-end tests: a config is rewritten with
free ephemeral ports and a fresh state directory, every process gets it, and
readiness is read from the daemon's own metrics endpoint (all venue sessions
up) rather than guessed with sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from sim.config import SimClusterConfig, dump_config

# Ports this process handed out lately. The kernel may give the same
# ephemeral port to two binds in a row once the first socket is closed, so a
# config built from consecutive calls could name one port twice (seen in CI:
# a venue and the OMS acceptor on one port).
_RECENT_PORTS: deque[int] = deque(maxlen=4096)


def free_port() -> int:
    """A loopback port that is free now and that this process has not
    handed out among its last few thousand."""
    for _ in range(1000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _RECENT_PORTS:
            _RECENT_PORTS.append(port)
            return port
    raise RuntimeError("no loopback port left that was not handed out recently")


def outbound_address() -> str | None:
    """An address of this host other than loopback, if it has one (for
    tests that a port bound to loopback is not reachable from it). No
    packet is sent: connecting a UDP socket only picks the route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            addr = str(s.getsockname()[0])
        except OSError:
            return None
    return None if addr.startswith("127.") or addr == "0.0.0.0" else addr


def localize(cfg: SimClusterConfig, state_dir: Path, keep_ports: bool = False,
             epoch_ns: int | None = None) -> SimClusterConfig:
    """The same config on fresh loopback ports with its own state dir."""
    venues = [msgspec.structs.replace(v, host="127.0.0.1", port=v.port if keep_ports else free_port())
              for v in cfg.venues]
    oms = msgspec.structs.replace(cfg.oms, port=cfg.oms.port if keep_ports else free_port())
    metrics = msgspec.structs.replace(cfg.metrics, host="127.0.0.1",
                                      port=cfg.metrics.port if keep_ports else free_port())
    fix_cfg = msgspec.structs.replace(cfg.fix, state_dir=str(state_dir / "router-fix"))
    journal = msgspec.structs.replace(cfg.journal, path=str(state_dir / "journal.sqlite"))
    sim = msgspec.structs.replace(cfg.sim, epoch_ns=epoch_ns if epoch_ns is not None else time.time_ns())
    return msgspec.structs.replace(cfg, venues=venues, oms=oms, metrics=metrics, fix=fix_cfg, sim=sim,
                                   journal=journal)


def poll_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.02) -> bool:
    """Check a condition every ``interval_s`` until it holds or the deadline
    passes. For conditions only observable by asking (a metric over HTTP),
    where there is nothing to block on."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(interval_s, left))


def rss_kb(pid: int) -> int | None:
    """Resident memory of a process (VmRSS of ``/proc/<pid>/status``, KiB);
    None when it is gone or the kernel does not say."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def parse_samples(text: str) -> list[Sample]:
    """Every sample of a Prometheus text exposition, in exposition order.

    The one parser of ``/metrics`` in the harness and the bench:
    prometheus-client's own, so escapes and label quoting are read as the
    exposition writes them."""
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def _escape_label(value: str) -> str:
    # The text format's three escapes, so a key reads as the exposition line does.
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def sample_key(sample: Sample) -> str:
    """``name{a="x",b="y"}`` (labels in exposition order), or ``name`` without labels."""
    if not sample.labels:
        return sample.name
    labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sample.labels.items())
    return f"{sample.name}{{{labels}}}"


def sample_values(samples: Iterable[Sample]) -> dict[str, float]:
    """{'name{labels}': value}, keyed by ``sample_key``."""
    return {sample_key(s): float(s.value) for s in samples}


def scrape_samples(host: str, port: int, timeout_s: float = 2.0) -> list[Sample]:
    """One GET of ``/metrics``, parsed by ``parse_samples``."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout_s) as r:
        return parse_samples(r.read().decode())


def scrape(host: str, port: int, timeout_s: float = 2.0) -> dict[str, float]:
    """Prometheus text exposition -> {'name{labels}': value}."""
    return sample_values(scrape_samples(host, port, timeout_s))


class Cluster:
    """Venue processes + the daemon process, for one config."""

    def __init__(self, cfg: SimClusterConfig, workdir: Path, log_level: str = "WARNING", record_traces: bool = False,
                 venues_in_one: bool = False) -> None:
        self.cfg = cfg
        self.venues_in_one = venues_in_one
        """One process for every venue (one shared market: leaks reach the lit venues)."""
        self.workdir = workdir
        self.config_path = workdir / "sor.toml"
        self.config_path.write_text(dump_config(cfg))
        self.log_level = log_level
        self.record_traces = record_traces
        self.venues: dict[str, subprocess.Popen[bytes]] = {}
        self.daemon: subprocess.Popen[bytes] | None = None

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        out = open(self.workdir / f"{log_name}.log", "ab")  # noqa: SIM115 - owned by the child process
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        return subprocess.Popen([sys.executable, "-m", "router.cli", "--log-level", self.log_level, *args],
                                stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=Path(__file__).resolve().parent.parent)

    @property
    def fills_dir(self) -> Path:
        """Where the venues append every fill of the router's orders."""
        return self.workdir / "venue-fills"

    def venue_fills(self) -> list[dict[str, Any]]:
        """Every fill the venues reported, as they recorded them (all runs)."""
        out: list[dict[str, Any]] = []
        for p in sorted(self.fills_dir.glob("fills-*.jsonl")):
            venue = p.stem.removeprefix("fills-")
            for line in p.read_text().splitlines():
                if line.strip():
                    out.append({"venue": venue, **json.loads(line)})
        return out

    def trace_path(self, venue: str) -> Path:
        """Where a venue started with record_traces writes its arrivals at exit."""
        return self.workdir / f"trace-{venue}.json"

    def start_venue(self, name: str) -> None:
        extra = ["--record-trace", str(self.trace_path(name))] if self.record_traces else []
        self.venues[name] = self._spawn(["sim-venue", "--config", str(self.config_path), "--venue", name,
                                         "--state-dir", str(self.workdir / "sim-fix"),
                                         "--fills-log", str(self.fills_dir), *extra], f"venue-{name}")

    def start_daemon(self) -> None:
        # A restarted daemon's log goes on in the same file.
        self.daemon = self._spawn(["run", "--config", str(self.config_path)], "daemon")

    def start(self, timeout_s: float = 30.0) -> None:
        if self.venues_in_one:
            self.venues["all"] = self._spawn(["sim-venue", "--config", str(self.config_path), "--all",
                                              "--state-dir", str(self.workdir / "sim-fix"),
                                              "--fills-log", str(self.fills_dir)], "venue-all")
        else:
            for v in self.cfg.venues:
                self.start_venue(v.name)
        self.start_daemon()
        self.wait_sessions({v.name: 1.0 for v in self.cfg.venues}, timeout_s)

    def metrics(self) -> dict[str, float]:
        return scrape(self.cfg.metrics.host, self.cfg.metrics.port)

    def samples(self) -> list[Sample]:
        """The daemon's metrics with their labels apart (what histogram readers need)."""
        return scrape_samples(self.cfg.metrics.host, self.cfg.metrics.port)

    def wait_sessions(self, want: dict[str, float], timeout_s: float) -> None:
        """Wait until each venue's session-up gauge has the wanted value."""
        deadline = time.monotonic() + timeout_s
        last: dict[str, float] = {}
        while time.monotonic() < deadline:
            if self.daemon is not None and self.daemon.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.daemon.returncode}: {self.log('daemon')[-2000:]}")
            try:
                last = self.metrics()
                if all(last.get(f'sor_fix_session_up{{session="venue:{v}"}}') == up for v, up in want.items()):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"venue sessions not {want} after {timeout_s}s; metrics: "
                           f"{ {k: v for k, v in last.items() if 'session_up' in k} }")

    def log(self, name: str) -> str:
        p = self.workdir / f"{name}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def kill_venue(self, name: str) -> None:
        proc = self.venues.pop(name)
        proc.kill()
        proc.wait(10)

    def kill_daemon(self) -> int:
        """SIGKILL the daemon (a crash: nothing is flushed, nothing said)."""
        if self.daemon is None:
            return 0
        self.daemon.kill()
        rc = self.daemon.wait(10)
        self.daemon = None
        return rc

    def stop_daemon(self, timeout_s: float = 20.0) -> int:
        """SIGTERM the daemon and return its exit status."""
        if self.daemon is None:
            return 0
        self.daemon.send_signal(signal.SIGTERM)
        try:
            rc = self.daemon.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            rc = self.daemon.wait(5)
        self.daemon = None
        return rc

    def stop(self) -> dict[str, int]:
        codes = {"daemon": self.stop_daemon()}
        for proc in self.venues.values():
            proc.send_signal(signal.SIGTERM)
        for name, proc in self.venues.items():
            try:
                codes[name] = proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait(5)
        self.venues.clear()
        return codes
