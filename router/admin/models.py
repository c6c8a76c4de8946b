"""The admin API's model endpoints: load a model beside the champion (as a
shadow or a canary), change its mode, promote it, roll it back, and read
what each model did.

- ``GET /model``: champion, challenger, mode, canary fraction, the canary
  arms' live shortfall, the last automatic rollback;
- ``POST /model/load`` ``{"path", "as": "challenger"|"champion", "mode":
  "shadow"|"canary", "fraction"}``: load and warm the ONNX model on the
  admin thread (never the engine's), hand it to the loop, then put it in
  force with a journaled ``ModelsChanged`` between two orders. As
  "champion" it replaces the serving model (a hot reload);
- ``POST /model/mode`` ``{"mode", "fraction"}``: shadow, canary or off for
  the challenger loaded;
- ``POST /model/promote``: the challenger becomes the champion;
- ``POST /model/rollback``: the challenger is dropped.

Each answers like the other operator actions (200 done, 409 refused, with
the engine's text) plus ``loop_us``: how long the change held the engine's
loop (the cost of the swap between two orders).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from router.domain.events import ModelMode, ModelsChanged
from router.scoring.manifest import ModelLoadError
from router.scoring.onnx import load_scorer

if TYPE_CHECKING:
    from router.admin.server import AdminServer

log = logging.getLogger("sor.admin")

MODES = ("off", "shadow", "canary")



LOADER_NICE = 19
"""The loader thread's niceness: its 6-12 ms of CPU (the file, the
onnxruntime session, the warm-up runs) yield to the engine's thread and to
anything else the machine runs."""


def _load_niced(mc: Any, n_venues: int) -> Any:
    """``load_scorer`` on a thread of its own at ``LOADER_NICE`` (Linux
    schedules threads one by one; elsewhere the niceness is skipped). The
    admin thread waits for it: the load is slow, and off the engine's thread
    either way. Measured with hot swaps every 200 ms at 250 parents/s on the
    2-core box (``sor bench --reload-parents``): README, hot reload."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            if hasattr(os, "setpriority"):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOADER_NICE)
        except OSError:
            pass
        try:
            box["scorer"] = load_scorer(mc, n_venues)
        except BaseException as e:  # handed to the admin thread
            box["error"] = e

    t = threading.Thread(target=run, name="sor-model-load", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["scorer"]

class ModelEndpoints:
    def __init__(self, server: AdminServer) -> None:
        self.s = server

    def _planner(self) -> Any:
        p = self.s.engine.planner
        if not hasattr(p, "apply_models"):
            from router.admin.server import HttpError

            raise HttpError(409, f"waterfall.planner = {self.s.cfg.waterfall.planner!r} routes without models")
        return p

    def state(self) -> tuple[int, dict[str, Any]]:
        def run() -> dict[str, Any]:
            p = self.s.engine.planner
            out: dict[str, Any] = dict(p.state()) if hasattr(p, "state") else {"champion": None}
            mon = self.s.driver.monitor
            if mon is not None:
                out["arms"] = {k: {"parents": a.parents, "scored_filled": a.n, "shortfall_bps": a.mean,
                                   "fallbacks": a.fallbacks} for k, a in mon.arms.items()}
                out["last_rollback"] = mon.rolled_back
            return out

        return 200, self.s.on_loop(run)

    def _change(self, make: Callable[[Any, int], ModelsChanged], stage: Any = None) -> tuple[int, dict[str, Any]]:
        from router.admin.server import HttpError, action_json

        eng, drv = self.s.engine, self.s.driver

        def run() -> tuple[Any, float]:
            planner = self._planner()
            t0 = time.perf_counter_ns()
            if stage is not None:
                planner.stage(stage)
            seq = eng.controls.seq
            drv.inject(make(planner, drv.clock_ns()))
            loop_us = (time.perf_counter_ns() - t0) / 1e3
            return (eng.controls.actions[-1] if eng.controls.seq != seq else None), loop_us

        act, loop_us = self.s.on_loop(run)
        if act is None:
            raise HttpError(500, "the engine did not apply the change (see the daemon's log)")
        out = action_json(act)
        out["loop_us"] = round(loop_us, 1)
        out["models"] = self.s.on_loop(lambda: dict(getattr(eng.planner, "state", dict)()))
        return (200 if act.ok else 409), out

    @staticmethod
    def _mode(body: dict[str, Any], default: str) -> tuple[ModelMode, float]:
        from router.admin.server import HttpError

        mode = body.get("mode") or default
        if mode not in MODES:
            raise HttpError(400, f"mode: one of {', '.join(MODES)}, got {mode!r}")
        raw = body.get("fraction", 0.0 if mode != "canary" else None)
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0.0 <= float(raw) <= 1.0:
            raise HttpError(400, f"fraction: a number in [0, 1] (the canary's share of parents), got {raw!r}")
        return mode, float(raw)  # type: ignore[return-value]

    def load(self, body: dict[str, Any], who: str, peer: str) -> tuple[int, dict[str, Any]]:
        from router.admin.server import HttpError, clean

        path = clean(body.get("path"), "path", 4096)
        role = body.get("as") or "challenger"
        if not path:
            raise HttpError(400, 'a model load needs "path" (the ONNX file)')
        if role not in ("challenger", "champion"):
            raise HttpError(400, f'as: "challenger" or "champion", got {role!r}')
        mode, fraction = self._mode(body, "shadow") if role == "challenger" else ("off", 0.0)
        if role == "challenger" and mode == "off":
            raise HttpError(400, "a challenger is loaded in shadow or canary")
        cfg = self.s.cfg
        t0 = time.perf_counter()
        try:
            scorer = _load_niced(msgspec.structs.replace(cfg.model, path=path), len(cfg.venues))
        except (ModelLoadError, ValueError) as e:
            raise HttpError(409, f"cannot load {path}: {e}") from None
        load_ms = (time.perf_counter() - t0) * 1e3
        log.warning("admin: model %s loaded from %s in %.0f ms by %s from %s, as %s", scorer.version, path, load_ms,
                    who, peer, role)
        reason = clean(body.get("reason"), "reason", 500)
        if role == "champion":
            def make(p: Any, ts: int) -> ModelsChanged:
                return ModelsChanged(champion=scorer.version, who=who, reason=reason or "hot reload", ts_ns=ts)
        else:
            def make(p: Any, ts: int) -> ModelsChanged:
                return ModelsChanged(champion=p.model_version, challenger=scorer.version, mode=mode,
                                     fraction=fraction, who=who, reason=reason, ts_ns=ts)
        status, out = self._change(make, stage=scorer)
        out["load_ms"] = round(load_ms, 1)
        return status, out

    def mode(self, body: dict[str, Any], who: str) -> tuple[int, dict[str, Any]]:
        mode, fraction = self._mode(body, "shadow")

        def make(p: Any, ts: int) -> ModelsChanged:
            return ModelsChanged(champion=p.model_version, challenger=p.challenger_version, mode=mode,
                                 fraction=fraction, who=who, ts_ns=ts)

        return self._change(make)

    def promote(self, who: str) -> tuple[int, dict[str, Any]]:
        def make(p: Any, ts: int) -> ModelsChanged:
            if p.challenger_version is None:
                # The engine refuses a champion it has not loaded: say why here.
                return ModelsChanged(champion="(no challenger loaded)", who=who, ts_ns=ts)
            return ModelsChanged(champion=p.challenger_version, who=who, reason="promoted", ts_ns=ts)

        return self._change(make)

    def rollback(self, body: dict[str, Any], who: str) -> tuple[int, dict[str, Any]]:
        from router.admin.server import clean

        reason = clean(body.get("reason"), "reason", 500) or "rolled back"

        def make(p: Any, ts: int) -> ModelsChanged:
            return ModelsChanged(champion=p.model_version, who=who, reason=reason, ts_ns=ts)

        return self._change(make)
