"""The ``sor`` command.

``run`` is the daemon. ``demo``, ``sim-venue``, ``bench``, ``backtest`` and
``train`` drive the simulator and the trainer; they import ``sim`` and
``models`` inside their branch (by module path, so mypy checks the calls),
so the daemon never loads simulator or training code. ``run`` reads the
router's sections of the file (``router.config``); the simulator's commands
read the full tree (``sim.config``), and ``check-config`` checks the
simulator's sections too when the file has them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import msgspec

from router.config import Config, ConfigError, load_config, read_config_text, read_toml, simulator_sections

if TYPE_CHECKING:
    from sim.config import SimClusterConfig

DEFAULT_CONFIG = "config/sor.toml"


def _bad_config(e: ConfigError) -> NoReturn:
    print(f"sor: bad config: {e}", file=sys.stderr)
    raise SystemExit(2) from None


def _load(path: str) -> Config:
    """The router's sections, as the daemon reads them."""
    try:
        return load_config(path)
    except ConfigError as e:
        _bad_config(e)


def _load_sim(path: str) -> SimClusterConfig:
    """The full tree: the router's sections and the simulator's."""
    from sim.config import load_sim_config

    try:
        return load_sim_config(path)
    except ConfigError as e:
        _bad_config(e)


def _check_config(path: str) -> int:
    cfg = _load(path)
    try:
        sim_sections = simulator_sections(read_toml(read_config_text(path), path))
    except ConfigError as e:
        _bad_config(e)
    if sim_sections:
        _load_sim(path)
    extra = ", simulator sections ok" if sim_sections else ""
    print(f"{path}: ok ({len(cfg.venues)} venues, {len(cfg.symbols)} symbols){extra}")
    return 0


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

    v = sub.add_parser("sim-venue", help="run simulated venues (FIX acceptors)")
    v.add_argument("--config", default=DEFAULT_CONFIG)
    vg = v.add_mutually_exclusive_group(required=True)
    vg.add_argument("--venue", action="append", help="a venue to serve (repeat for several in one process)")
    vg.add_argument("--all", action="store_true",
                    help="every configured venue in one process, sharing one market (needed for leaking pools)")
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
    b.add_argument("--md-rate", type=float, default=None,
                   help="market data entries/s for the '+md' run (default 50000; --quick 5000; 0: no '+md' run)")
    b.add_argument("--scrape-parents", type=int, default=None,
                   help="parents with and without a 1 Hz metrics scraper, each (default: --parents)")
    b.add_argument("--only", nargs="+", metavar="RUN",
                   help="measure only these runs (threaded, threaded+ml, poll, poll+ml, poll+ml+md, poll+ml-journal)")
    b.add_argument("--profile", metavar="DIR",
                   help="sample the daemon with py-spy during each latency run; speedscope files in DIR")

    bt = sub.add_parser("backtest", help="scenarios x policies on a simulated clock: table with 95%% CIs, JSON, PNG")
    bt.add_argument("--scenarios", nargs="+", help="scenario names or TOML files (default: all shipped)")
    bt.add_argument("--policies", nargs="+", choices=["static", "equal", "displayed", "ml"])
    bt.add_argument("--parents", type=int, default=500, help="parents per scenario (default 500)")
    bt.add_argument("--seed", type=int, default=1, help="evaluation seed (training uses 101..)")
    bt.add_argument("--model", help="ONNX model (default: the shipped models/default/model.onnx)")
    bt.add_argument("--json", default="backtest-results.json")
    bt.add_argument("--png", default="backtest-shortfall.png")

    tr = sub.add_parser("train", help="simulate with an exploring policy, train the venue model, export ONNX")
    tr.add_argument("--scenarios", nargs="+", help="scenario names or TOML files (default: all shipped)")
    tr.add_argument("--seeds", type=int, nargs="+", help="simulation seeds (default 101 102 103 104)")
    tr.add_argument("--parents", type=int, default=None, help="parents per run (default: the scenario's)")
    tr.add_argument("--out", default="models/default", help="directory for model.onnx and model.json")
    tr.add_argument("--hidden", type=int, default=64)
    tr.add_argument("--epochs", type=int, default=60)
    tr.add_argument("--dataset", help="also save the generated dataset (.npz) here")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")

    rp = sub.add_parser("replay", help="feed a journaled session back through the engine and compare")
    rp.add_argument("journal", help="the SQLite journal (journal.path)")
    rp.add_argument("--session", type=int, help="session id (default: the latest)")
    rp.add_argument("--model", help="replay against this ONNX model instead of the session's")

    jr = sub.add_parser("journal", help="list a journal's sessions and what each recorded")
    jr.add_argument("journal", help="the SQLite journal (journal.path)")

    args = p.parse_args(argv)
    _logging(args.log_level)
    if args.cmd == "backtest":
        from sim import report

        return int(report.main(args.scenarios, args.policies, args.parents, args.seed, args.model, args.json,
                               args.png))
    if args.cmd == "train":
        from models import pipeline

        return int(pipeline.run_train(args.scenarios, args.seeds, args.parents, Path(args.out), args.hidden,
                                      args.epochs, Path(args.dataset) if args.dataset else None,
                                      progress=not args.quiet))
    if args.cmd in ("replay", "journal"):
        return _journal_cmd(args)
    if args.cmd == "check-config":
        return _check_config(args.config)
    if args.cmd == "run":
        from router.app import run_daemon

        return run_daemon(_load(args.config))
    cfg = _load_sim(args.config)
    if args.cmd == "sim-venue":
        names = [v.name for v in cfg.venues] if args.all else list(args.venue)
        unknown = [n for n in names if n not in {v.name for v in cfg.venues}]
        if unknown:
            print(f"sor: unknown venue {unknown[0]!r}", file=sys.stderr)
            return 2
        from sim import cli as sim_cli

        return int(sim_cli.run_venues(cfg, names, str(Path(args.state_dir)), args.record_trace))
    if args.cmd == "demo":
        from sim import demo

        if args.driver:
            cfg = msgspec.structs.replace(cfg, router=msgspec.structs.replace(cfg.router, driver=args.driver))
        return int(demo.run_demo(args.config, cfg, orders=args.orders, rate=args.rate, seed=args.seed,
                                 keep_ports=args.keep_ports))
    if args.cmd == "bench":
        from sim import bench

        parents = args.parents if args.parents is not None else (300 if args.quick else 20000)
        return int(bench.run_bench(cfg, parents=parents, quick=args.quick, json_path=args.json,
                                   window_s=args.window, rates=args.rates, latency_rate=args.latency_rate,
                                   md_per_s=args.md_rate, scrape_parents=args.scrape_parents,
                                   only=args.only, profile_dir=args.profile))
    return 2


def _journal_cmd(args: argparse.Namespace) -> int:
    from router.journal.store import JournalError, SqliteStore

    if not Path(args.journal).exists():
        print(f"sor: no journal at {args.journal}", file=sys.stderr)
        return 2
    try:
        if args.cmd == "journal":
            store = SqliteStore(args.journal, readonly=True)
            for s in store.sessions():
                counts = store.count(s.session_id)
                print(f"session {s.session_id}: started {s.started_ns}, ids {s.id_prefix!r}, model "
                      f"{s.model_version}; " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
            store.close()
            return 0
        from router.replay import format_report, replay

        rep = replay(args.journal, args.session, args.model)
    except JournalError as e:
        print(f"sor: {e}", file=sys.stderr)
        return 2
    print(format_report(rep, args.model))
    if args.model is None and (rep.commands_differ or rep.decisions_differ):
        return 1
    return 0


def entrypoint() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    entrypoint()
