"""A small multi-task MLP for the venue scores, trained with numpy and Adam.

Architecture (the ONNX graph built by ``models.export`` is the same, op for op)::

    xs = clip((x - x_mean) * x_inv_std, -clip, clip)        # standardise
    h1 = relu(xs @ W1 + b1)                                 # [n, hidden]
    h2 = relu(h1 @ W2 + b2)                                 # [n, hidden]
    z  = h2 @ W3 + b3                                       # [n, 3]
    y  = z * y_scale + y_shift                              # bps for heads 0 and 2
    scores = [y0, sigmoid(y1), y2]                          # cost_bps, fill_prob, markout_bps

Normalisation lives in the model: ``x_mean``/``x_inv_std`` come from the
training rows; a feature that never varied there gets ``x_inv_std = 0``, so
the model ignores it rather than blowing an unseen value up by 1/std (the
clip at +-10 standard deviations bounds the damage of outliers such as a
60000 ms stale book in the other columns). The cost and markout heads are
trained on standardised targets and de-standardised by ``y_scale``/``y_shift``
so the scores come out in bps.

Loss per minibatch, each head averaged over the rows it applies to:
Huber (or MSE with ``huber_delta=None``) on cost and markout over filled rows
with a finite target, binary cross-entropy of the fill logit against the
(fractional) filled share over all rows, weighted by ``head_weights``.
Early stopping keeps the parameters of the epoch with the lowest loss on a
validation set split off by group. Training runs in float32; everything is
deterministic for a seed (given the same BLAS threads).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from models.dataset import Dataset, split_by_group
from models.progress import Progress
from router.features.catalogue import FEATURE_NAMES, N_FEATURES

__all__ = ["HEADS", "MLP", "FitReport"]

F32 = npt.NDArray[np.float32]

HEADS: tuple[str, str, str] = ("cost_bps", "fill_prob", "markout_bps")
"""Output columns, as ``router.scoring.OUTPUTS`` (``models.export`` checks they agree)."""
_STD_FLOOR = 1e-6
_PREDICT_CHUNK = 65_536


@dataclass
class FitReport:
    """What happened during ``MLP.fit``; JSON-ready via ``as_dict``."""

    epochs_run: int = 0
    best_epoch: int = 0
    best_valid_loss: float = math.inf
    stopped_early: bool = False
    train_rows: int = 0
    valid_rows: int = 0
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "best_valid_loss": self.best_valid_loss if math.isfinite(self.best_valid_loss) else None,
            "stopped_early": self.stopped_early,
            "train_rows": self.train_rows,
            "early_stopping_rows": self.valid_rows,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.train_rows * self.epochs_run / self.seconds) if self.seconds > 0 else None,
        }


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Run the block with BLAS limited to ``n`` threads (``None``: leave it alone).

    Training multiplies small matrices (a minibatch by 28x64 or 64x64), where
    threads buy nothing, and a threaded OpenBLAS that spin-waits collapses
    (10x and worse) when other processes share the cores. One thread is also
    what makes a seed reproduce bit for bit across machines with different
    core counts. threadpoolctl finds every BLAS loaded in the process
    (OpenBLAS, MKL, BLIS) and puts the old counts back on exit; where it
    finds none this is a no-op.
    """
    if n is None:
        yield
        return
    with threadpool_limits(limits=max(int(n), 1), user_api="blas"):
        yield


def _sigmoid(z: F32) -> F32:
    """Overflow-free logistic in float32."""
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def _softplus(z: F32) -> F32:
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


class MLP:
    """``n_in -> hidden -> hidden -> 3`` with ReLU; see the module docstring."""

    def __init__(
        self,
        hidden: int = 64,
        *,
        n_in: int = N_FEATURES,
        seed: int = 0,
        clip: float | None = 10.0,
        head_weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
        huber_delta: float | None = 1.5,
    ) -> None:
        if hidden < 1:
            raise ValueError("hidden must be >= 1")
        self.n_in = n_in
        self.hidden = hidden
        self.seed = seed
        self.clip = clip
        self.head_weights = tuple(float(w) for w in head_weights)
        self.huber_delta = huber_delta
        rng = np.random.default_rng(seed)

        def he(fan_in: int, fan_out: int, gain: float = 1.0) -> F32:
            return (rng.standard_normal((fan_in, fan_out)) * gain * math.sqrt(2.0 / fan_in)).astype(np.float32)

        self.W1 = he(n_in, hidden)
        self.b1 = np.zeros(hidden, np.float32)
        self.W2 = he(hidden, hidden)
        self.b2 = np.zeros(hidden, np.float32)
        self.W3 = he(hidden, 3, gain=0.1)
        self.b3 = np.zeros(3, np.float32)
        self.x_mean = np.zeros(n_in, np.float32)
        self.x_inv_std = np.ones(n_in, np.float32)
        self.y_scale = np.ones(3, np.float32)
        self.y_shift = np.zeros(3, np.float32)
        self.constant_features: list[str] = []
        self.fitted = False

    # ------------------------------------------------------------ params
    _PARAM_NAMES = ("W1", "b1", "W2", "b2", "W3", "b3")
    _STATE_NAMES = (*_PARAM_NAMES, "x_mean", "x_inv_std", "y_scale", "y_shift")

    def _params(self) -> list[F32]:
        return [getattr(self, n) for n in self._PARAM_NAMES]

    def state(self) -> dict[str, F32]:
        """Copies of every array the forward pass uses (weights and normalisers)."""
        return {n: getattr(self, n).copy() for n in self._STATE_NAMES}

    def load_state(self, state: dict[str, F32]) -> None:
        for n in self._STATE_NAMES:
            cur = getattr(self, n)
            new = np.asarray(state[n], dtype=np.float32)
            if new.shape != cur.shape:
                raise ValueError(f"{n}: shape {new.shape}, model has {cur.shape}")
            setattr(self, n, new.copy())

    @property
    def n_params(self) -> int:
        return sum(p.size for p in self._params())

    # ------------------------------------------------------------ forward
    def standardize(self, features: npt.ArrayLike) -> F32:
        """``clip((features - x_mean) * x_inv_std)`` in float32, exactly as the graph does it."""
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"X: expected shape (n, {self.n_in}), got {x.shape}")
        xs = (x - self.x_mean) * self.x_inv_std
        if self.clip is not None:
            c = np.float32(self.clip)
            np.clip(xs, -c, c, out=xs)
        return xs

    def _logits(self, xs: F32) -> tuple[F32, F32, F32, F32, F32]:
        a1 = xs @ self.W1
        a1 += self.b1
        h1 = np.maximum(a1, np.float32(0))
        a2 = h1 @ self.W2
        a2 += self.b2
        h2 = np.maximum(a2, np.float32(0))
        z = h2 @ self.W3
        z += self.b3
        return a1, h1, a2, h2, z

    def predict(self, features: npt.ArrayLike) -> F32:
        """``[n, 3]`` float32 scores (cost_bps, fill_prob, markout_bps) of ``[n, n_in]`` features."""
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"X: expected shape (n, {self.n_in}), got {x.shape}")
        out = np.empty((x.shape[0], 3), np.float32)
        for s in range(0, x.shape[0], _PREDICT_CHUNK):
            z = self._logits(self.standardize(x[s : s + _PREDICT_CHUNK]))[4]
            y = z * self.y_scale + self.y_shift
            y[:, 1] = _sigmoid(y[:, 1])
            out[s : s + _PREDICT_CHUNK] = y
        return out

    # ------------------------------------------------------------ training
    def _fit_normalizers(self, ds: Dataset) -> None:
        x = ds.X.astype(np.float64)
        mean = x.mean(axis=0) if len(ds) else np.zeros(self.n_in)
        std = x.std(axis=0) if len(ds) else np.zeros(self.n_in)
        dead = std < _STD_FLOOR
        self.x_mean = mean.astype(np.float32)
        self.x_inv_std = np.where(dead, 0.0, 1.0 / np.maximum(std, _STD_FLOOR)).astype(np.float32)
        self.constant_features = [FEATURE_NAMES[j] for j in np.nonzero(dead)[0]] if self.n_in == N_FEATURES else []

        def stats(values: F32, mask: npt.NDArray[np.bool_]) -> tuple[float, float]:
            v = values[mask].astype(np.float64)
            if v.size == 0:
                return 0.0, 1.0
            sd = float(v.std())
            return float(v.mean()), (sd if sd >= _STD_FLOOR else 1.0)

        c_mu, c_sd = stats(ds.cost_bps, ds.cost_mask)
        m_mu, m_sd = stats(ds.markout_bps, ds.markout_mask)
        self.y_scale = np.array([c_sd, 1.0, m_sd], np.float32)
        self.y_shift = np.array([c_mu, 0.0, m_mu], np.float32)

    def _targets(self, ds: Dataset) -> tuple[F32, F32]:
        """Standardised targets ``[n, 3]`` (0 where masked) and masks ``[n, 3]`` as float32."""
        n = len(ds)
        t = np.zeros((n, 3), np.float32)
        m = np.zeros((n, 3), np.float32)
        for col, values, mask in ((0, ds.cost_bps, ds.cost_mask), (2, ds.markout_bps, ds.markout_mask)):
            t[mask, col] = (values[mask] - self.y_shift[col]) / self.y_scale[col]
            m[:, col] = mask
        t[:, 1] = ds.fill_frac
        m[:, 1] = 1.0
        return t, m

    def _loss_grad(self, z: F32, t: F32, m: F32, want_grad: bool) -> tuple[float, F32 | None]:
        """Weighted multi-task loss of logits ``z`` and its gradient w.r.t. ``z``."""
        counts = np.maximum(m.sum(axis=0), 1.0)
        w = np.asarray(self.head_weights, np.float32) / counts.astype(np.float32)
        r = z - t
        d = self.huber_delta
        reg = np.delete(r, 1, axis=1)
        if d is None:
            reg_loss = 0.5 * reg * reg
        else:
            a = np.abs(reg)
            reg_loss = np.where(a <= d, 0.5 * reg * reg, d * (a - 0.5 * d))
        bce = _softplus(z[:, 1]) - t[:, 1] * z[:, 1]
        loss = (
            float(w[0] * (reg_loss[:, 0] * m[:, 0]).sum())
            + float(w[1] * bce.sum())
            + float(w[2] * (reg_loss[:, 1] * m[:, 2]).sum())
        )
        if not want_grad:
            return loss, None
        g = r if d is None else np.clip(r, -d, d)
        g = g * m
        g[:, 1] = _sigmoid(z[:, 1]) - t[:, 1]
        g *= w
        # float32 in training (a no-op there); the gradient check runs this in float64.
        return loss, g.astype(z.dtype, copy=False)

    def loss_and_grads(self, xs: F32, t: F32, m: F32) -> tuple[float, list[F32]]:
        """Loss of one minibatch and its gradient for each parameter, in ``_PARAM_NAMES`` order.

        ``xs`` is standardised input ``[n, n_in]``; ``t`` and ``m`` are the
        batch's rows of ``_targets``. This is the backward pass training
        uses, kept apart so a finite-difference test checks the very code
        that trains. It follows the dtype of the inputs and parameters.
        """
        a1, h1, a2, h2, z = self._logits(xs)
        loss, dz = self._loss_grad(z, t, m, want_grad=True)
        assert dz is not None
        dh2 = dz @ self.W3.T
        dh2 *= a2 > 0
        dh1 = dh2 @ self.W2.T
        dh1 *= a1 > 0
        return loss, [xs.T @ dh1, dh1.sum(axis=0), h1.T @ dh2, dh2.sum(axis=0), h2.T @ dz, dz.sum(axis=0)]

    def loss(self, ds: Dataset) -> float:
        """Mean weighted multi-task loss on a dataset (standardised units)."""
        if len(ds) == 0:
            return math.nan
        t, m = self._targets(ds)
        z = np.concatenate(
            [self._logits(self.standardize(ds.X[s : s + _PREDICT_CHUNK]))[4] for s in range(0, len(ds), _PREDICT_CHUNK)]
        )
        return self._loss_grad(z, t, m, want_grad=False)[0]

    def fit(
        self,
        train: Dataset,
        valid: Dataset | None = None,
        *,
        epochs: int = 60,
        batch_size: int = 512,
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        patience: int = 6,
        valid_fraction: float = 0.1,
        progress: bool = False,
        threads: int | None = 1,
    ) -> FitReport:
        """Train in place; keep the best epoch by validation loss.

        Without ``valid``, ``valid_fraction`` of ``train``'s groups are split
        off for early stopping (none if ``valid_fraction`` is 0: then all
        epochs run and the last one is kept). ``threads`` caps BLAS while
        fitting (see ``blas_threads``; ``None`` leaves it as it is).
        """
        if len(train) == 0:
            raise ValueError("cannot fit on an empty dataset")
        if self.fitted:
            raise ValueError("this MLP is already fitted (its normalisers belong to that data); build a new one")
        with blas_threads(threads):
            return self._fit(train, valid, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                             patience=patience, valid_fraction=valid_fraction, progress=progress)

    def _fit(
        self,
        train: Dataset,
        valid: Dataset | None,
        *,
        epochs: int,
        batch_size: int,
        lr: float,
        weight_decay: float,
        patience: int,
        valid_fraction: float,
        progress: bool,
    ) -> FitReport:
        if valid is None:
            train, valid = split_by_group(train, valid_fraction, seed=self.seed + 1)
        t0 = time.perf_counter()
        rng = np.random.default_rng(self.seed)
        self._fit_normalizers(train)
        xs = self.standardize(train.X)
        t, m = self._targets(train)
        p_fill = min(max(float(train.fill_frac.mean()), 1e-4), 1 - 1e-4)
        self.b3[1] = math.log(p_fill / (1 - p_fill))

        params = self._params()
        m1 = [np.zeros_like(p) for p in params]
        m2 = [np.zeros_like(p) for p in params]
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        step = 0
        n = len(train)
        bs = max(1, min(batch_size, n))
        report = FitReport(train_rows=n, valid_rows=len(valid))
        best = self.state()
        bad_epochs = 0
        bar = Progress(epochs * n, "train", enabled=progress, unit="rows")
        try:
            for epoch in range(1, epochs + 1):
                perm = rng.permutation(n)
                train_loss = 0.0
                for s in range(0, n, bs):
                    idx = perm[s : s + bs]
                    loss, grads = self.loss_and_grads(xs[idx], t[idx], m[idx])
                    train_loss += loss * idx.size
                    step += 1
                    c1 = 1.0 - beta1**step
                    c2 = 1.0 - beta2**step
                    lr_t = np.float32(lr * math.sqrt(c2) / c1)
                    for i, (p, g) in enumerate(zip(params, grads)):
                        mo, ve = m1[i], m2[i]
                        mo *= beta1
                        mo += (1 - beta1) * g
                        ve *= beta2
                        ve += (1 - beta2) * (g * g)
                        if weight_decay and p.ndim == 2:
                            p *= np.float32(1.0 - lr * weight_decay)
                        p -= lr_t * mo / (np.sqrt(ve) + np.float32(eps))
                    bar.update(idx.size)
                train_loss /= n
                if not math.isfinite(train_loss):
                    raise FloatingPointError(f"training diverged at epoch {epoch} (loss {train_loss}); lower lr")
                valid_loss = self.loss(valid) if len(valid) else train_loss
                report.history.append({"epoch": epoch, "train_loss": train_loss, "valid_loss": valid_loss})
                report.epochs_run = epoch
                if not len(valid) or valid_loss < report.best_valid_loss - 1e-6:
                    report.best_valid_loss = valid_loss
                    report.best_epoch = epoch
                    best = self.state()
                    bad_epochs = 0
                else:
                    bad_epochs += 1
                bar.update(0, note=f"epoch {epoch} loss {train_loss:.4f} valid {valid_loss:.4f}")
                if len(valid) and bad_epochs >= patience:
                    report.stopped_early = True
                    break
        finally:
            bar.close()
        self.load_state(best)
        self.fitted = True
        report.seconds = time.perf_counter() - t0
        return report
