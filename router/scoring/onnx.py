"""The venue model adapter: one onnxruntime session, one batched run per order.

The model contract (the trainer/exporter in ``models/`` writes to it):

* an ONNX file with one input ``"features"``, float32 ``[batch, N_FEATURES]``
  (batch dynamic; raw ``router.features`` columns in ``FEATURE_NAMES`` order,
  normalisation is inside the graph) and one output ``"scores"``, float32
  ``[batch, 3]`` with the columns of ``OUTPUTS``:

  - ``cost_bps``: expected cost of a filled share against the parent's
    arrival mid, fees included, bps, positive = cost;
  - ``fill_prob``: expected filled fraction of a child sent there, 0..1;
  - ``markout_bps``: expected side-signed 1 s markout of its fills,
    negative = adverse;

* a manifest next to it, the same path with ``.json`` (``ModelManifest``):
  version, file name, sha256 of the ``.onnx`` bytes, the feature list, the
  input/output names and what the trainer wants to record.

Loading (``Scorer(...)`` / ``load_scorer``) checks all of it and raises:

* ``FeatureMismatchError`` when the manifest's feature list is not exactly
  ``FEATURE_NAMES``: the model was trained on other columns, and the daemon
  refuses to start rather than route on it;
* ``ModelLoadError`` with ``reason`` "missing" (no model or manifest file, or
  the CUDA provider asked for is not there), "corrupt" (sha256 mismatch) or
  "invalid" (unreadable manifest, ONNX that does not load, names, types or
  shapes off the contract, a failed warm-up run): the daemon routes by the
  static waterfall and counts the reason.

Scoring (``Scorer.score``) never raises: an onnxruntime error, a non-finite
score or a run slower than ``budget_us`` returns None, records
``last_failure``, bumps ``failures[reason]`` and calls ``on_fallback(reason)``
(the daemon wires that to ``Metrics.model_fallbacks``; this module does not
touch metrics). The caller then routes by the static waterfall.

Hot path: input and output buffers are allocated once, at load, and bound to
the session with an onnxruntime IOBinding over OrtValues that share their
memory, so a call copies the features into the bound input, runs, checks the
output and returns the bound output array: nothing is allocated per call on
the Python side. For a 28-64-64-3 MLP over 3 venues on the dev VM a score is
~5.2 us p50 this way and ~9.9 us with ``session.run`` and a feed dict (which
builds an input OrtValue and a fresh output array every call); the run is
made on the C session directly, skipping ~1 us of WebGPU-capture checks in
the Python wrapper (figures and the variants tried:
``tests/perf/test_scoring_bench.py``). The finite check is
``math.isfinite(sum(memoryview))`` over the 3V outputs: float32 values
summed as float64 cannot overflow, so the sum is non-finite exactly when one
value is (~0.3 us; ``np.isfinite(...).all()`` costs ~1.9 us).

The budget is the only clock read here: ``time.perf_counter_ns`` around the
run, which is what a budget is about (the engine's injected clock is not a
stopwatch). A Scorer is not thread-safe (one engine thread owns it), and a
model reload builds a new Scorer off the hot path and swaps it in.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from router.config import ModelConfig
from router.features.catalogue import N_FEATURES
from router.scoring.manifest import (
    INPUT_NAME,
    MANIFEST_FORMAT,
    N_OUTPUTS,
    OUTPUT_NAME,
    OUTPUTS,
    ModelLoadError,
    check_features,
    manifest_path,
    read_manifest,
)

log = logging.getLogger("sor.scoring")


FailureReason = Literal["error", "non_finite", "over_budget"]
FAILURE_REASONS: Final[tuple[str, ...]] = ("error", "non_finite", "over_budget")
WARMUP_RUNS: Final[int] = 5
LOG_EVERY: Final[int] = 1000
"""A scoring failure is logged the first time and then every LOG_EVERY-th time, per reason."""

_CPU: Final[str] = "CPUExecutionProvider"
_CUDA: Final[str] = "CUDAExecutionProvider"

F32 = npt.NDArray[np.float32]


def cuda_available() -> bool:
    """True when this onnxruntime build offers the CUDA execution provider.

    That says the provider is compiled in, not that the CUDA libraries load:
    a session asked for CUDA explicitly checks it really got it.
    """
    return _CUDA in ort.get_available_providers()


def _providers(provider: str) -> list[str]:
    if provider == "cpu":
        return [_CPU]
    if provider == "cuda":
        if not cuda_available():
            raise ModelLoadError(
                "missing", f"model.provider = 'cuda' but this onnxruntime has no {_CUDA} "
                f"(available: {', '.join(ort.get_available_providers())}); install onnxruntime-gpu "
                f"or set model.provider to 'cpu' or 'auto'")
        return [_CUDA, _CPU]
    if provider == "auto":
        return [_CUDA, _CPU] if cuda_available() else [_CPU]
    raise ModelLoadError("invalid", f"unknown model.provider {provider!r} (cpu, cuda or auto)")


def _is_dynamic(dim: object) -> bool:
    return dim is None or isinstance(dim, str)


def _check_io(sess: Any, path: Path) -> None:
    """The session's inputs and outputs must be the contract's, or ModelLoadError "invalid"."""
    ins = sess.get_inputs()
    outs = sess.get_outputs()
    want_in = f"one input {INPUT_NAME!r} tensor(float) [batch, {N_FEATURES}]"
    want_out = f"one output {OUTPUT_NAME!r} tensor(float) [batch, {N_OUTPUTS}]"
    if len(ins) != 1 or ins[0].name != INPUT_NAME:
        raise ModelLoadError("invalid", f"model {path}: inputs {[i.name for i in ins]}, expected {want_in}")
    if len(outs) != 1 or outs[0].name != OUTPUT_NAME:
        raise ModelLoadError("invalid", f"model {path}: outputs {[o.name for o in outs]}, expected {want_out}")
    for arg, n, want in ((ins[0], N_FEATURES, want_in), (outs[0], N_OUTPUTS, want_out)):
        shape = arg.shape
        ok = (arg.type == "tensor(float)" and shape is not None and len(shape) == 2
              and _is_dynamic(shape[0]) and shape[1] == n)
        if not ok:
            raise ModelLoadError(
                "invalid", f"model {path}: {arg.name!r} is {arg.type} {list(shape or [])}, expected {want} "
                f"(batch dynamic)")


class Scorer:
    """One venue model, loaded, checked and warmed up; ``score`` one order at a time.

    ``n_venues`` fixes the batch: ``score`` takes exactly ``[n_venues,
    N_FEATURES]``. ``budget_us`` 0 means no budget. ``io_binding`` False runs
    ``session.run`` with a feed dict instead (slower; kept for the benchmark).
    ``on_fallback`` (also settable later) is called with the reason of every
    failed ``score``.
    """

    def __init__(self, model_path: str | os.PathLike[str], n_venues: int, *,
                 provider: Literal["cpu", "cuda", "auto"] = "cpu", threads: int = 1, budget_us: int = 0,
                 on_fallback: Callable[[str], None] | None = None, io_binding: bool = True) -> None:
        if n_venues < 1:
            raise ValueError(f"n_venues must be >= 1, got {n_venues}")
        path = Path(model_path)
        mpath = manifest_path(path)
        if not path.is_file():
            raise ModelLoadError("missing", f"model file {path} not found")
        if not mpath.is_file():
            raise ModelLoadError("missing", f"model manifest {mpath} not found (expected next to {path.name})")
        manifest = read_manifest(mpath)
        check_features(manifest.features)
        if manifest.format != MANIFEST_FORMAT:
            raise ModelLoadError("invalid", f"manifest {mpath}: format {manifest.format}, "
                                 f"this router reads format {MANIFEST_FORMAT}")
        if manifest.model_file != path.name:
            raise ModelLoadError("invalid", f"manifest {mpath} describes {manifest.model_file!r}, not {path.name!r}")
        if (manifest.input, manifest.output, tuple(manifest.outputs)) != (INPUT_NAME, OUTPUT_NAME, OUTPUTS):
            raise ModelLoadError(
                "invalid", f"manifest {mpath}: input {manifest.input!r}, output {manifest.output!r} with columns "
                f"{manifest.outputs}; the contract is {INPUT_NAME!r} -> {OUTPUT_NAME!r} {list(OUTPUTS)}")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelLoadError("missing", f"model file {path} cannot be read: {exc}") from exc
        digest = hashlib.sha256(data).hexdigest()
        if digest != manifest.sha256.strip().lower():
            raise ModelLoadError("corrupt", f"model file {path} is corrupt: sha256 {digest}, "
                                 f"manifest {mpath.name} says {manifest.sha256}")
        providers = _providers(provider)

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            sess = ort.InferenceSession(data, sess_options=so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own (Fail, InvalidGraph, ...) and RuntimeError
            raise ModelLoadError("invalid", f"model {path} does not load in onnxruntime: {exc}") from exc
        in_use = sess.get_providers()
        if provider == "cuda" and _CUDA not in in_use:
            raise ModelLoadError("missing", f"model.provider = 'cuda' but the session runs on {in_use}: "
                                 f"the CUDA libraries did not load")
        if provider == "auto" and _CUDA in providers and _CUDA not in in_use:
            log.warning("model.provider = 'auto': %s is compiled in but did not load; scoring on CPU", _CUDA)
        _check_io(sess, path)

        self.path = path
        self.manifest = manifest
        self.version = manifest.version
        self.provider: Literal["cpu", "cuda"] = "cuda" if in_use[0] == _CUDA else "cpu"
        """The execution provider actually in use."""
        self.n_venues = n_venues
        self.threads = threads
        self.budget_us = budget_us
        self.io_binding = io_binding
        self.on_fallback = on_fallback
        self.failures: dict[str, int] = dict.fromkeys(FAILURE_REASONS, 0)
        self.last_failure: str | None = None
        """The reason of the most recent failed ``score`` (not cleared by a success)."""
        self.last_run_ns = 0
        """How long the last run took (set on every run that returned)."""
        self._session = sess
        self._shape = (n_venues, N_FEATURES)
        self._budget_ns = budget_us * 1_000
        self._in: F32 = np.zeros(self._shape, dtype=np.float32)
        self._out: F32 = np.zeros((n_venues, N_OUTPUTS), dtype=np.float32)
        self._out_flat = self._out.reshape(-1).data  # a flat memoryview over the same memory
        # onnxruntime logs every failed run to stderr itself: runs here log only fatal errors, and
        # _fail logs failures, rate-limited. "gpu_graph_id" -1 is "no CUDA/WebGPU graph capture for
        # this run" (none is configured); it is set because onnxruntime's Python wrapper looks that
        # key up on every run and a missing key costs it a C++ exception, ~35 us (1.31).
        ro = ort.RunOptions()
        ro.log_severity_level = 4
        ro.add_run_config_entry("gpu_graph_id", "-1")
        self._run_options = ro
        self._run: Callable[[], object]
        if io_binding:
            # OrtValues over the numpy buffers (CPU memory, shared, no copy): the session reads
            # self._in and writes self._out in place; on CUDA it copies them across per run.
            self._ov_in = ort.OrtValue.ortvalue_from_numpy(self._in)
            self._ov_out = ort.OrtValue.ortvalue_from_numpy(self._out)
            binding = sess.io_binding()
            binding.bind_ortvalue_input(INPUT_NAME, self._ov_in)
            binding.bind_ortvalue_output(OUTPUT_NAME, self._ov_out)
            self._binding = binding
            # The wrapper's run_with_iobinding only adds checks for WebGPU graph capture (~1 us):
            # call the C session directly when this onnxruntime has the usual private attributes.
            c_run = getattr(getattr(sess, "_sess", None), "run_with_iobinding", None)
            c_binding = getattr(binding, "_iobinding", None)
            self._direct = c_run is not None and c_binding is not None
            if c_run is not None and c_binding is not None:
                self._run_bound = functools.partial(c_run, c_binding, ro)
            else:
                self._run_bound = functools.partial(sess.run_with_iobinding, binding, ro)
            self._run = self._run_bound_sync if self.provider == "cuda" else self._run_bound
        else:
            self._direct = False
            self._feed = {INPUT_NAME: self._in}
            self._out_names = [OUTPUT_NAME]
            self._run = self._run_plain
        self._warm_up()

    def _run_plain(self) -> None:
        self._out[...] = self._session.run(self._out_names, self._feed, self._run_options)[0]

    def _run_bound_sync(self) -> None:
        self._run_bound()
        self._binding.synchronize_outputs()

    def _warm_up(self) -> None:
        """A few runs on zeros so the first order does not pay the session's first-run set-up."""
        try:
            for _ in range(WARMUP_RUNS):
                self._run()
        except Exception as exc:
            raise ModelLoadError("invalid", f"model {self.path} failed its warm-up run on zeros "
                                 f"[{self.n_venues}, {N_FEATURES}]: {exc}") from exc
        if not math.isfinite(sum(self._out_flat)):
            log.warning("model %s (version %s) gives non-finite scores on all-zero features",
                        self.path, self.version)
        self._out.fill(0.0)
        self._in.fill(0.0)

    def warm(self) -> None:
        """One run on whatever the input buffer holds, result and timing
        unused and no failure recorded: keeps onnxruntime's kernels and
        buffers in the caches while the router idles. A run after the core
        slept or polled sockets for a few ms was measured 4-5x slower than a
        warm one (50 vs 12 us, see README, Benchmark)."""
        # A real order meets the same error, and reports it.
        with contextlib.suppress(Exception):
            self._run()

    def score(self, features: F32) -> F32 | None:
        """Scores ``[n_venues, N_FEATURES]`` features: ``[n_venues, 3]`` (``OUTPUTS`` columns), or None.

        The array returned is this scorer's output buffer, overwritten by the
        next call: copy it to keep it. None means the model could not score
        this order (``last_failure`` says why) and the caller routes by the
        static waterfall. Never raises.
        """
        try:
            if features.shape != self._shape:
                raise ValueError(f"features shape {features.shape}, this scorer takes {self._shape}")
            self._in[...] = features
            t0 = time.perf_counter_ns()
            self._run()
            dt = time.perf_counter_ns() - t0
        except Exception as exc:
            self._fail("error", exc)
            return None
        self.last_run_ns = dt
        if not math.isfinite(sum(self._out_flat)):
            self._fail("non_finite", None)
            return None
        if self._budget_ns and dt > self._budget_ns:
            self._fail("over_budget", None)
            return None
        return self._out

    def _fail(self, reason: FailureReason, exc: BaseException | None) -> None:
        self.last_failure = reason
        n = self.failures[reason] + 1
        self.failures[reason] = n
        if n % LOG_EVERY == 1:
            if reason == "error":
                log.warning("model %s could not score (%d times so far): %s: %s",
                            self.version, n, type(exc).__name__, exc)
            elif reason == "non_finite":
                log.warning("model %s gave non-finite scores (%d times so far)", self.version, n)
            else:
                log.warning("model %s ran over its %d us budget (%d times so far; last run %.0f us)",
                            self.version, self.budget_us, n, self.last_run_ns / 1e3)
        cb = self.on_fallback
        if cb is not None:
            try:
                cb(reason)
            except Exception:
                log.exception("on_fallback(%r) raised", reason)

    def __repr__(self) -> str:
        return (f"Scorer(version={self.version!r}, path={str(self.path)!r}, provider={self.provider!r}, "
                f"n_venues={self.n_venues}, budget_us={self.budget_us})")


def load_scorer(cfg_model: ModelConfig, n_venues: int,
                on_fallback: Callable[[str], None] | None = None) -> Scorer:
    """The configured model, loaded and warmed up (raises ModelLoadError / FeatureMismatchError)."""
    return Scorer(cfg_model.path, n_venues, provider=cfg_model.provider, threads=cfg_model.threads,
                  budget_us=cfg_model.budget_us, on_fallback=on_fallback)
