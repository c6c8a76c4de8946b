"""The numpy MLP's hand-written backward pass against central differences.

``MLP.loss_and_grads`` is what ``MLP.fit`` steps Adam with; here it runs in
float64 (it follows the dtype of its inputs) on a tiny network and batch, and
every parameter's gradient must match ``(L(w+h) - L(w-h)) / 2h`` element by
element. A wrong sign, a missing ReLU mask or a head's weight dropped from
one side but not the other shows up as a mismatch.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.mlp import MLP
from tests.unit.models.test_models import synthetic

N_IN, HIDDEN, ROWS = 4, 5, 24
H = 1e-6


def _float64_mlp(huber_delta: float | None, seed: int = 7) -> MLP:
    """Random weights and biases (non-zero, so every term of the backward pass is exercised), in float64."""
    mlp = MLP(HIDDEN, n_in=N_IN, seed=seed, head_weights=(1.0, 0.7, 1.3), huber_delta=huber_delta)
    rng = np.random.default_rng(seed)
    for name in MLP._PARAM_NAMES:
        shape = getattr(mlp, name).shape
        setattr(mlp, name, rng.standard_normal(shape) * 0.8)
    return mlp


def _batch(seed: int = 11) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardised inputs and targets/masks shaped as ``MLP._targets`` makes them (0 where masked)."""
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((ROWS, N_IN))
    m = np.ones((ROWS, 3))
    m[:, 0] = rng.random(ROWS) < 0.7
    m[:, 2] = m[:, 0]
    t = np.empty((ROWS, 3))
    t[:, 0] = rng.standard_normal(ROWS) * 2.0
    t[:, 1] = rng.integers(0, 5, ROWS) / 4  # fractional filled share
    t[:, 2] = rng.standard_normal(ROWS) * 2.0
    t[:, [0, 2]] *= m[:, [0, 2]]
    return xs, t, m


def _central_differences(mlp: MLP, xs: np.ndarray, t: np.ndarray, m: np.ndarray, name: str) -> np.ndarray:
    p = getattr(mlp, name)
    num = np.empty_like(p)
    for i in np.ndindex(p.shape):
        keep = p[i]
        p[i] = keep + H
        up = mlp.loss_and_grads(xs, t, m)[0]
        p[i] = keep - H
        down = mlp.loss_and_grads(xs, t, m)[0]
        p[i] = keep
        num[i] = (up - down) / (2 * H)
    return num


@pytest.mark.parametrize("huber_delta", [0.5, None], ids=["huber", "mse"])
def test_every_parameter_gradient_matches_central_differences(huber_delta: float | None) -> None:
    mlp = _float64_mlp(huber_delta)
    xs, t, m = _batch()

    # The batch must reach every branch, or a wrong formula there goes unseen.
    a1, _, a2, _, z = mlp._logits(xs)
    assert (a1 > 0).any() and (a1 < 0).any() and (a2 > 0).any() and (a2 < 0).any()
    assert (m[:, 0] == 0).any() and (m[:, 0] == 1).any()
    if huber_delta is not None:
        r = np.abs((z - t)[:, [0, 2]][m[:, 0] == 1])
        assert (r < huber_delta).any() and (r > huber_delta).any(), "both sides of the Huber kink"

    loss, grads = mlp.loss_and_grads(xs, t, m)
    assert np.isfinite(loss) and loss > 0
    assert [g.shape for g in grads] == [getattr(mlp, n).shape for n in MLP._PARAM_NAMES]
    for name, g in zip(MLP._PARAM_NAMES, grads):
        assert g.dtype == np.float64, "the check must run in float64"
        num = _central_differences(mlp, xs, t, m, name)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8, err_msg=f"d loss / d {name}")


def test_fit_steps_with_loss_and_grads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training calls the checked function (not a copy of it), in float32."""
    seen: list[np.dtype] = []
    real = MLP.loss_and_grads

    def spy(self: MLP, xs: np.ndarray, t: np.ndarray, m: np.ndarray) -> tuple[float, list[np.ndarray]]:
        loss, grads = real(self, xs, t, m)
        seen.extend(g.dtype for g in grads)
        return loss, grads

    monkeypatch.setattr(MLP, "loss_and_grads", spy)
    MLP(hidden=4, seed=1).fit(synthetic(20), epochs=1, batch_size=16, progress=False)
    assert seen and all(d == np.float32 for d in seen)
