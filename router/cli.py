"""The ``sor`` command.

``run`` is the daemon. ``demo`` and ``sim-venue`` drive the simulator; they
import ``sim`` lazily so the daemon never loads simulator code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

import msgspec

from router.config import Config, ConfigError, load_config

DEFAULT_CONFIG = "config/sor.toml"


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as e:
        print(f"sor: bad config: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def _logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sor", description="ML smart order router")
    p.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING (default), ERROR")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run the routing daemon")
    r.add_argument("--config", default=DEFAULT_CONFIG)

    c = sub.add_parser("check-config", help="validate a config file and exit (2 when bad)")
    c.add_argument("--config", default=DEFAULT_CONFIG)

    d = sub.add_parser("demo", help="sim venues + daemon + sim OMS on loopback, then a summary")
    d.add_argument("--config", default=DEFAULT_CONFIG)
    d.add_argument("--orders", type=int, default=200, help="parent orders to send (default 200)")
    d.add_argument("--rate", type=float, default=200.0, help="parent orders per second (default 200)")
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--keep-ports", action="store_true", help="use the config's ports instead of free ones")
    d.add_argument("--driver", choices=["threaded", "poll"], help="override router.driver from the config")

    v = sub.add_parser("sim-venue", help="run one simulated venue (a FIX acceptor)")
    v.add_argument("--config", default=DEFAULT_CONFIG)
    v.add_argument("--venue", required=True)
    v.add_argument("--state-dir", default="var/sim")
    v.add_argument("--record-trace", metavar="FILE",
                   help="write [SorTraceNs(7002), arrival CLOCK_MONOTONIC ns] of every order received, at exit")

    b = sub.add_parser("bench", help="wire-level tick-to-route, floor and throughput on loopback")
    b.add_argument("--config", default=DEFAULT_CONFIG)
    b.add_argument("--parents", type=int, default=None, help="parents per latency run (default 20000; --quick 300)")
    b.add_argument("--quick", action="store_true", help="smoke run: few parents, two rates, short windows")
    b.add_argument("--window", type=float, default=None, help="seconds per offered rate (default 2; --quick 1)")
    b.add_argument("--rates", type=float, nargs="+", help="offered parent rates per second, rising")
    b.add_argument("--latency-rate", type=float, default=250.0, help="pace of the latency runs (default 250/s)")
    b.add_argument("--json", default="bench-results.json", help="where to write the results")

    args = p.parse_args(argv)
    _logging(args.log_level)
    cfg = _load(args.config)

    if args.cmd == "check-config":
        print(f"{args.config}: ok ({len(cfg.venues)} venues, {len(cfg.symbols)} symbols)")
        return 0
    if args.cmd == "run":
        from router.app import run_daemon

        return run_daemon(cfg)
    if args.cmd == "sim-venue":
        if args.venue not in {v.name for v in cfg.venues}:
            print(f"sor: unknown venue {args.venue!r}", file=sys.stderr)
            return 2
        sim_cli = importlib.import_module("sim.cli")
        return int(sim_cli.run_venue(cfg, args.venue, str(Path(args.state_dir)), args.record_trace))
    if args.cmd == "demo":
        demo = importlib.import_module("sim.demo")
        if args.driver:
            cfg = msgspec.structs.replace(cfg, router=msgspec.structs.replace(cfg.router, driver=args.driver))
        return int(demo.run_demo(args.config, cfg, orders=args.orders, rate=args.rate, seed=args.seed,
                                 keep_ports=args.keep_ports))
    if args.cmd == "bench":
        bench = importlib.import_module("sim.bench")
        parents = args.parents if args.parents is not None else (300 if args.quick else 20000)
        return int(bench.run_bench(cfg, parents=parents, quick=args.quick, json_path=args.json,
                                   window_s=args.window, rates=args.rates, latency_rate=args.latency_rate))
    return 2


def entrypoint() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    entrypoint()
