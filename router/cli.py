"""The ``sor`` command.

``run`` is the daemon. ``demo``, ``sim-venue``, ``bench``, ``soak``, ``backtest``
and ``train`` drive the simulator and the trainer; they import ``sim`` and
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
    from router.journal.store import JournalStore
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


def _or(given: str, instead: str, png: bool = False) -> str:
    """A backtest mode's own default file name where ``--json``/``--png``
    were left at the plain backtest's."""
    return instead if given == ("backtest-shortfall.png" if png else "backtest-results.json") else given


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
    v.add_argument("--fills-log", metavar="DIR",
                   help="append every fill of the router's orders to DIR/fills-<venue>.jsonl as it happens "
                        "(the venue's own record, for tests that match it share for share)")

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
                   help="measure only these runs (threaded, threaded+ml, poll, poll+ml, poll+ml+md; journal "
                        "comparisons: poll+ml-journal (off), poll+ml+journal-pg (PostgreSQL), poll+ml+journal-every "
                        "(sync = every))")
    b.add_argument("--reload-parents", type=int, default=0,
                   help="parents with and without hot reloads of the champion through the admin API, each, in "
                        "the poll+ml run (default 0: none)")
    b.add_argument("--rounds", type=int, default=1,
                   help="measure the runs this many times, interleaved, and compare each with the first run named "
                        "in --only round by round (default 1)")
    b.add_argument("--profile", metavar="DIR",
                   help="sample the daemon with py-spy during each latency run; speedscope files in DIR")
    b.add_argument("--flood", type=int, metavar="N",
                   help="instead of the latency runs: N NewOrderSingles from one OMS session in --flood-window-ms "
                        "through the daemon and the sim venues of --config; accepted, rejected by reason, first-ER "
                        "p50/p99, self-inflicted ack-timeout cancels")
    b.add_argument("--flood-window-ms", type=float, default=500.0, help="the flood's window (default 500)")
    b.add_argument("--flood-runs", nargs="+", default=["default"],
                   choices=["default", "gate-off", "throttle-raised", "neither"],
                   help="default: the config as is; gate-off: router.overload off; throttle-raised: "
                        "risk.max_msgs_per_s out of the way; neither: both (default: default)")
    b.add_argument("--flood-repeat", type=int, default=1, help="floods per run, each on a fresh cluster")
    b.add_argument("--driver", choices=["threaded", "poll"], help="--flood: override router.driver from the config")

    sk = sub.add_parser("soak", help="chaos soak: parents through sim venues while venues, the daemon and the OMS "
                                     "are killed on a seeded schedule; accounting share for share (exit 1 on FAIL)")
    sk.add_argument("--config", default=DEFAULT_CONFIG)
    sk.add_argument("--parents", type=int, default=2000, help="parent orders to send (default 2000)")
    sk.add_argument("--seed", type=int, default=1, help="seeds the order flow and the fault schedule")
    sk.add_argument("--rate", type=float, default=50.0, help="parent orders per second (default 50)")
    sk.add_argument("--workdir", help="where the run's logs, journal and FIX stores stay (default: a new temp dir)")
    sk.add_argument("--fault-every", type=float, default=30.0,
                    help="seconds of flow per fault (default 30; at least one of each kind is injected)")
    sk.add_argument("--journal-sync", choices=["batch", "every", "config"], default="every",
                    help="journal.sync for the run (default every: nothing reaches the OMS before it is durable; "
                         "config: the config file's)")

    bt = sub.add_parser("backtest", help="scenarios x policies on a simulated clock: table with 95%% CIs, JSON, PNG")
    bt.add_argument("--scenarios", nargs="+", help="scenario names or TOML files (default: all shipped)")
    bt.add_argument("--policies", nargs="+", choices=["static", "equal", "displayed", "ml", "rl", "oracle"],
                    help="default: static equal displayed ml; oracle: the ML planner scored by the scenario's "
                         "hidden parameters (sim/oracle.py), to read results as a share of it")
    bt.add_argument("--parents", type=int, default=500, help="parents per scenario (default 500)")
    bt.add_argument("--seed", type=int, default=1, help="evaluation seed (training uses 101..)")
    bt.add_argument("--model", help="ONNX model (default: the shipped models/default/model.onnx)")
    bt.add_argument("--json", default="backtest-results.json")
    bt.add_argument("--png", default="backtest-shortfall.png")
    bt.add_argument("--journal", metavar="PATH|URL",
                    help="journal every run there (one session each), as the daemon would")
    bt.add_argument("--explore-cost", action="store_true",
                    help="instead: what exploring costs per scenario (the ML planner with its [learning] settings "
                         "against exploration off, same parents, paired), over --seeds")
    bt.add_argument("--seeds", type=int, nargs="+",
                    help="--explore-cost, --adaptation, --ganchev: evaluation seeds (default 1 2 3; ganchev 1..5)")
    bt.add_argument("--adaptation", action="store_true",
                    help="instead: each policy around every regime change and over its first 50 parents "
                         "(default scenarios swap_pools, regime, cold_start): "
                         "shortfall per 25-parent bin, parents to recover, worst 50-parent window against the best "
                         "baseline, per-parent results (JSON), the adaptation plot (PNG)")
    bt.add_argument("--ganchev", action="store_true",
                    help="instead: the Ganchev et al. dark-pool allocation replica (four pools permuted at episode "
                         "1000), the router's censored learner with and without forgetting and change detection")

    trl = sub.add_parser("train-rl", help="the RL planner's Q-function: random-action backtests, one-step "
                                          "fitted-Q (LightGBM), ONNX (waterfall.planner = \"rl\")")
    trl.add_argument("--out", default="models/rl/q.onnx")
    trl.add_argument("--scenarios", nargs="+", help="default: calm regime toxic_dark thin")
    trl.add_argument("--seeds", type=int, nargs="+", help="default: 101 102 103 104")
    trl.add_argument("--parents", type=int, default=None, help="parents per run (default: the scenario's)")
    trl.add_argument("--model", help="the venue model whose ranking it builds on (default: the shipped one)")
    trl.add_argument("--quiet", action="store_true")

    tr = sub.add_parser("train", help="simulate with an exploring policy, train the venue model, export ONNX")
    tr.add_argument("--scenarios", nargs="+", help="scenario names or TOML files (default: all shipped)")
    tr.add_argument("--seeds", type=int, nargs="+", help="simulation seeds (default 101 102 103 104)")
    tr.add_argument("--parents", type=int, default=None, help="parents per run (default: the scenario's)")
    tr.add_argument("--out", default="models/default", help="directory for model.onnx and model.json")
    tr.add_argument("--family", choices=["mlp", "gbm"], default="mlp",
                    help="mlp: the numpy MLP (models.mlp); gbm: LightGBM (models.gbm); one pipeline for both")
    tr.add_argument("--hidden", type=int, default=64)
    tr.add_argument("--epochs", type=int, default=60)
    tr.add_argument("--dataset", help="also save the generated dataset (.npz) here")
    tr.add_argument("--journal", metavar="PATH|URL",
                    help="train on what a router did: the journal's decisions and their outcomes (SQLite file or "
                         "PostgreSQL URL); instead of simulating, unless --with-sim")
    tr.add_argument("--with-sim", action="store_true", help="with --journal: mix in the simulated scenarios' rows")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.add_argument("--register", action="store_true",
                    help="add the trained model to the registry (its parent: the champion now)")
    tr.add_argument("--registry", default="models/registry", help="the registry's directory (default %(default)s)")

    rp = sub.add_parser("replay", help="feed a journaled session back through the engine and compare")
    rp.add_argument("journal", help="the SQLite file (journal.path) or the PostgreSQL URL (journal.url)")
    rp.add_argument("--session", type=int, help="session id (default: the latest)")
    rp.add_argument("--model", help="replay against this ONNX model instead of the session's")

    jr = sub.add_parser("journal", help="list a journal's sessions; one parent's story; a Parquet export")
    jr.add_argument("journal", help="the journal: the SQLite file (journal.path) or its URL")
    jw = jr.add_mutually_exclusive_group()
    jw.add_argument("--parent", metavar="ID",
                    help="print one parent's whole story: its OrderID, or a ClOrdID the OMS sent")
    jw.add_argument("--export-parquet", metavar="DIR",
                    help="write decisions, children, fills and oms_reports .parquet files into DIR")
    jr.add_argument("--session", type=int, help="only this session (and the sessions it was restored from)")
    jr.add_argument("--oms-session", metavar="KEY", help="with --parent: the OMS session a ClOrdID belongs to")

    tc = sub.add_parser("tca", help="transaction cost analysis of a journal: by venue, strategy and model version, "
                                    "95%% CIs; text, JSON, a self-contained HTML page")
    tc.add_argument("journal", help="the SQLite file (journal.path) or the PostgreSQL URL (journal.url)")
    tc.add_argument("--since", help="only parents that arrived at or after this (ISO 8601, UTC by default, or ns)")
    tc.add_argument("--until", help="only parents that arrived at or before this")
    tc.add_argument("--json", default="tca.json", help="where the figures go (default %(default)s)")
    tc.add_argument("--html", default="tca.html", help="where the page goes (default %(default)s)")

    _ctl_parser(sub)
    _model_parser(sub)

    # ``sor model`` parses its own options (models.registry): the ones before
    # its first word reach it here as unknown ones, in their order.
    args, unknown = p.parse_known_args(argv)
    if unknown and args.cmd != "model":
        p.error(f"unrecognized arguments: {' '.join(unknown)}")
    _logging(args.log_level)
    if args.cmd == "ctl":
        from router.admin.client import run_ctl

        if args.what == "model" and args.model_action == "load":
            args.path = _model_path(args.path, args.registry)
        return run_ctl(_load(args.config), args)
    if args.cmd == "backtest" and args.explore_cost:
        import json

        from sim import validate

        rows = validate.explore_cost(args.scenarios, args.seeds or validate.GATE_SEEDS,
                                     args.parents, args.model)
        print(validate.format_explore_cost(rows))
        json_path = args.json if args.json != "backtest-results.json" else "explore-cost.json"
        Path(json_path).write_text(json.dumps(rows, indent=2) + "\n")
        print(f"\nwrote {json_path}")
        return 0
    if args.cmd == "backtest" and args.adaptation:
        from sim import adaptation

        return adaptation.main(args.scenarios, args.policies, args.seeds, None if args.parents == 500 else args.parents,
                               args.model, _or(args.json, "adaptation.json"), _or(args.png, "adaptation.png", png=True))
    if args.cmd == "backtest" and args.ganchev:
        from sim import ganchev

        return ganchev.main(args.seeds, _or(args.json, "ganchev-results.json"), _or(args.png, "ganchev.png", png=True))
    if args.cmd == "backtest":
        from sim import report

        return int(report.main(args.scenarios, args.policies, args.parents, args.seed, args.model, args.json,
                               args.png, args.journal))
    if args.cmd == "train-rl":
        from models import rl

        return rl.run_train_rl(Path(args.out), args.scenarios, args.seeds, args.parents, args.model, args.quiet)
    if args.cmd == "train":
        from models import pipeline

        rc = int(pipeline.run_train(args.scenarios, args.seeds, args.parents, Path(args.out), args.hidden,
                                    args.epochs, Path(args.dataset) if args.dataset else None,
                                    progress=not args.quiet, journal=args.journal, with_sim=args.with_sim,
                                    family=args.family))
        if rc != 0 or not args.register:
            return rc
        from models import registry

        return registry.run_cli(["--registry", args.registry, "add", args.out])
    if args.cmd == "model":
        from models import registry

        return registry.run_cli([*unknown, *args.rest])
    if args.cmd == "tca":
        from sim import tca

        return tca.run_tca(args.journal, args.since, args.until, args.json, args.html)
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

        return int(sim_cli.run_venues(cfg, names, str(Path(args.state_dir)), args.record_trace, args.fills_log))
    if args.cmd == "demo":
        from sim import demo

        if args.driver:
            cfg = msgspec.structs.replace(cfg, router=msgspec.structs.replace(cfg.router, driver=args.driver))
        return int(demo.run_demo(args.config, cfg, orders=args.orders, rate=args.rate, seed=args.seed,
                                 keep_ports=args.keep_ports))
    if args.cmd == "soak":
        import tempfile

        from sim import soak

        workdir = args.workdir or tempfile.mkdtemp(prefix="sor-soak-")
        rep = soak.run_soak(args.parents, args.seed, args.rate, workdir, base=cfg, fault_every_s=args.fault_every,
                            journal_sync=None if args.journal_sync == "config" else args.journal_sync)
        return 0 if rep.passed else 1
    if args.cmd == "bench" and args.flood:
        from sim import flood

        json_path = args.json if args.json != "bench-results.json" else "flood-results.json"
        return int(flood.run_flood(cfg, args.config, args.flood, args.flood_window_ms, args.flood_runs,
                                   args.flood_repeat, json_path, args.driver))
    if args.cmd == "bench":
        from sim import bench

        parents = args.parents if args.parents is not None else (300 if args.quick else 20000)
        return int(bench.run_bench(cfg, parents=parents, quick=args.quick, json_path=args.json,
                                   window_s=args.window, rates=args.rates, latency_rate=args.latency_rate,
                                   md_per_s=args.md_rate, scrape_parents=args.scrape_parents,
                                   only=args.only, profile_dir=args.profile, rounds=args.rounds,
                                   reload_parents=args.reload_parents))
    return 2


def _model_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``sor model``: the model registry (``models.registry``), which parses its own arguments."""
    m = sub.add_parser("model", help="the model registry: list | show | add | promote | rollback | path",
                       add_help=False)
    m.add_argument("rest", nargs=argparse.REMAINDER)


def _model_path(name: str, registry: str) -> str:
    """``sor ctl model load``: an ONNX file as given, or a registry version's."""
    from models.registry import Registry, RegistryError, model_file

    if not Path(registry).is_dir():
        return str(Path(name).resolve())
    try:
        return str(model_file(Registry(registry), name)[0].resolve())
    except RegistryError as e:
        raise SystemExit(f"sor ctl: {e}") from None


def _ctl_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``sor ctl``: the admin API's client (``router.admin.client``)."""
    ctl = sub.add_parser("ctl", help="operator control of a running router over its admin API ([admin] in the config)")
    ctl.add_argument("--config", default=DEFAULT_CONFIG, help="where [admin] host, port and token_file are read")
    ctl.add_argument("--json", action="store_true", help="print the API's JSON answer")
    ctl.add_argument("--who", help="the operator named in the journal and the log (default: user@host)")
    what = ctl.add_subparsers(dest="what", required=True)
    what.add_parser("status", help="sessions, open orders, halts, disabled venues, the model in service")
    con = what.add_parser("console", help="print the URL of the operator console (a web page of the admin API); "
                                          "the token rides in its #fragment, which a browser never sends")
    con.add_argument("--no-token", action="store_true",
                     help="leave the token out of the URL: the page asks for it")

    def scoped(name: str, help_: str) -> argparse.ArgumentParser:
        sp = what.add_parser(name, help=help_)
        g = sp.add_mutually_exclusive_group()
        g.add_argument("--symbol", help="only this symbol")
        g.add_argument("--session", help="only this OMS session (its key, as in the status)")
        g.add_argument("--venue", help="only this venue")
        return sp

    k = scoped("kill", "kill switch: cancel every working order in scope, refuse new ones until resumed")
    k.add_argument("--reason", help="said to the OMS in Text(58) and in the journal")
    k.add_argument("--wait-ms", type=int, default=2000,
                   help="wait until no child in scope works at a venue, at most this long (default 2000; 0: no)")
    scoped("resume", "lift the kill switch of that scope (no scope: the one over everything)")
    v = what.add_parser("venue", help="take a venue out of routing or put it back")
    va = v.add_subparsers(dest="venue_action", required=True)
    vd = va.add_parser("disable", help="no new child goes to the venue")
    vd.add_argument("name")
    vd.add_argument("--cancel", action="store_true", help="also cancel its working children (they move on)")
    vd.add_argument("--reason")
    ve = va.add_parser("enable", help="route to the venue again")
    ve.add_argument("name")
    ve.set_defaults(reason=None)
    lim = what.add_parser("limits", help="the pre-trade limits; `limits set KEY=VALUE` changes one")
    lim.add_argument("set_word", nargs="?", choices=["set"], metavar="set")
    lim.add_argument("set", nargs="?", metavar="KEY=VALUE")
    sy = what.add_parser("symbol", help="`symbol enable NAME`: route a symbol the execution throttle stopped")
    sy.add_argument("symbol_action", choices=["enable"])
    sy.add_argument("name")
    mo = what.add_parser("model", help="champion and challenger in the running router: load (shadow, canary or "
                                       "a hot reload of the champion), mode, promote, rollback, status")
    ma = mo.add_subparsers(dest="model_action", required=True)
    ma.add_parser("status", help="champion, challenger, mode, the canary's live arms, the last auto-rollback")
    ml = ma.add_parser("load", help="load a model beside the champion (or as the champion: --as champion)")
    ml.add_argument("path", help="an ONNX file, or a version or alias of the model registry (--registry)")
    ml.add_argument("--as", dest="as_", choices=["challenger", "champion"], default="challenger")
    ml.add_argument("--mode", choices=["shadow", "canary"], default="shadow")
    ml.add_argument("--fraction", type=float, default=0.1, help="canary: the share of parents (default 0.1)")
    ml.add_argument("--reason")
    ml.add_argument("--registry", default="models/registry", help="where versions are looked up")
    mm = ma.add_parser("mode", help="the loaded challenger in shadow, canary or off")
    mm.add_argument("mode", choices=["off", "shadow", "canary"])
    mm.add_argument("--fraction", type=float, default=0.1)
    ma.add_parser("promote", help="the challenger becomes the champion")
    mr = ma.add_parser("rollback", help="drop the challenger: the champion routes every parent")
    mr.add_argument("--reason")


def _open_journal(target: str) -> JournalStore:
    """The one place ``sor journal`` opens a journal: read-only, a SQLite
    file or a database URL (``router.journal.store.open_store``)."""
    from router.journal.store import JournalError, open_store

    if "://" not in target and not Path(target).exists():
        raise JournalError(f"no journal at {target}")
    return open_store(target, readonly=True)


def _journal(args: argparse.Namespace) -> int:
    """``sor journal``: the sessions, one parent's story, or the Parquet export."""
    from router.journal.store import JournalError
    from router.journal.story import ParentKeyError

    try:
        store = _open_journal(args.journal)
    except JournalError as e:
        print(f"sor: {e}", file=sys.stderr)
        return 2
    try:
        if args.parent is not None:
            from router.journal.story import format_story, parent_story

            print(format_story(parent_story(store, args.session, args.parent, oms_session=args.oms_session)))
        elif args.export_parquet is not None:
            from router.journal.export import export_parquet

            counts = export_parquet(store, args.export_parquet, args.session)
            for name, rows in counts.items():
                print(f"{Path(args.export_parquet) / name}.parquet: {rows} rows")
        else:
            sessions = store.sessions()
            if args.session is not None and args.session not in {s.session_id for s in sessions}:
                raise JournalError(f"{args.journal}: no session {args.session} "
                                   f"(sessions: {[s.session_id for s in sessions]})")
            for s in sessions:
                if args.session is not None and s.session_id != args.session:
                    continue
                counts = store.count(s.session_id)
                print(f"session {s.session_id}: started {s.started_ns}, ids {s.id_prefix!r}, model "
                      f"{s.model_version}; " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    except ParentKeyError as e:
        print(f"sor: {e.args[0]}", file=sys.stderr)
        return 1
    except (JournalError, ImportError) as e:
        print(f"sor: {e}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0


def _journal_cmd(args: argparse.Namespace) -> int:
    if args.cmd == "journal":
        return _journal(args)
    from router.journal.store import JournalError, is_postgres_url

    if not is_postgres_url(args.journal) and not Path(args.journal).exists():
        print(f"sor: no journal at {args.journal}", file=sys.stderr)
        return 2
    try:
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
