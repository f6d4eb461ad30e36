"""Losses: values against plain NumPy formulas, gradients against centered finite
differences (float64), masking / ignore_index / reductions, extreme logits, errors,
and PyTorch parity when torch is importable."""

from __future__ import annotations

import numpy as np
import pytest

from _helpers import fd_gradient
from conftest import FD_TOL, named_tol
from rnnkit import losses as L


@pytest.fixture(autouse=True, scope="module")
def _torch_one_thread():
    """torch (when importable) on one thread: its OpenMP pool and the kernels' would
    otherwise spin against each other on a small machine."""
    try:
        import torch
    except ImportError:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def ce_naive(z: np.ndarray, t: np.ndarray, valid: np.ndarray, reduction: str) -> float:
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    nll = -np.log(np.take_along_axis(p, np.where(valid, t, 0)[..., None], -1)[..., 0])
    total = nll[valid].sum()
    return float(total / valid.sum()) if reduction == "mean" else float(total)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_matches_naive_and_fd(rng, reduction):
    B, T, C = 3, 4, 5
    z = rng.standard_normal((B, T, C))
    t = rng.integers(0, C, size=(B, T))
    t[0, 1] = -100  # ignored
    mask = np.ones((B, T), bool)
    mask[2, 3] = False  # padding
    loss, d = L.cross_entropy(z, t, mask=mask, reduction=reduction)
    valid = (t != -100) & mask
    rtol, atol = named_tol("reordered_float64")
    assert loss == pytest.approx(ce_naive(z, t, valid, reduction), rel=rtol, abs=atol)
    zz = z.copy()
    want = fd_gradient(
        lambda: L.cross_entropy(zz, t, mask=mask, reduction=reduction)[0], zz
    )
    np.testing.assert_allclose(d, want, rtol=FD_TOL["rtol"], atol=FD_TOL["atol"])
    assert not d[0, 1].any() and not d[2, 3].any()


def test_cross_entropy_stable_and_dtype():
    z = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, 1e4]], dtype=np.float32)
    loss, d = L.cross_entropy(z, np.array([1, 2]))
    rtol, atol = named_tol("float32_ulps")
    assert np.isfinite(loss) and loss == pytest.approx(5e3, rel=rtol, abs=atol)
    assert d.dtype == np.float32 and np.isfinite(d).all()
    rtol, atol = named_tol("float32_cancel")  # softmax - onehot sums to 0
    np.testing.assert_allclose(d.sum(-1), 0, rtol=rtol, atol=atol)


def test_cross_entropy_nothing_counts_and_ignore_none():
    z, t = np.ones((2, 3)), np.array([-100, -100])
    loss, d = L.cross_entropy(z, t)
    assert loss == 0.0 and not d.any()
    with pytest.raises(IndexError, match="class -100 at position \\(0,\\)"):
        L.cross_entropy(z, t, ignore_index=None)


def test_cross_entropy_errors():
    z = np.zeros((2, 3))
    with pytest.raises(IndexError, match="class 3 .* outside \\[0, 3\\)"):
        L.cross_entropy(z, np.array([0, 3]))
    with pytest.raises(TypeError, match="targets must be an integer array"):
        L.cross_entropy(z, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="targets must have shape \\(2,\\)"):
        L.cross_entropy(z, np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="logits must be a floating-point"):
        L.cross_entropy(np.zeros((2, 3), int), np.array([0, 1]))
    with pytest.raises(ValueError, match="reduction"):
        L.cross_entropy(z, np.array([0, 1]), reduction="none")
    with pytest.raises(ValueError, match="mask must have shape"):
        L.cross_entropy(z, np.array([0, 1]), mask=np.ones(3, bool))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_bce_with_logits(rng, reduction):
    x = rng.standard_normal((4, 3)) * 3
    y = rng.random((4, 3))  # soft labels
    mask = np.array([True, True, False, True])  # prefix mask over rows
    loss, d = L.binary_cross_entropy_with_logits(x, y, mask=mask, reduction=reduction)
    s = 1 / (1 + np.exp(-x))
    per = -(y * np.log(s) + (1 - y) * np.log(1 - s))
    want = per[mask].sum() / (per[mask].size if reduction == "mean" else 1)
    rtol, atol = named_tol("reordered_float64")
    assert loss == pytest.approx(want, rel=rtol, abs=atol)
    xx = x.copy()
    g = fd_gradient(
        lambda: L.binary_cross_entropy_with_logits(
            xx, y, mask=mask, reduction=reduction
        )[0],
        xx,
    )
    np.testing.assert_allclose(d, g, rtol=FD_TOL["rtol"], atol=FD_TOL["atol"])
    big, _ = L.binary_cross_entropy_with_logits(
        np.array([800.0, -800.0]), np.array([0.0, 1.0])
    )
    assert big == pytest.approx(800.0)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse(rng, reduction):
    x, y = rng.standard_normal((3, 5, 2)), rng.standard_normal((3, 5, 2))
    mask = L.length_mask(np.array([5, 2, 3]), 5)  # (B, T) prefix of (B, T, F)
    loss, d = L.mse(x, y, mask=mask, reduction=reduction)
    sq = ((x - y) ** 2)[mask]
    assert loss == pytest.approx(sq.sum() / (sq.size if reduction == "mean" else 1))
    xx = x.copy()
    g = fd_gradient(lambda: L.mse(xx, y, mask=mask, reduction=reduction)[0], xx)
    np.testing.assert_allclose(d, g, rtol=FD_TOL["rtol"], atol=FD_TOL["atol"])
    with pytest.raises(ValueError, match="target must have shape"):
        L.mse(x, y[:, :2])


def test_loss_objects_and_names():
    ce = L.get_loss("cross_entropy")
    assert isinstance(ce, L.CrossEntropyLoss)
    z, t = np.zeros((2, 3)), np.array([0, 1])
    assert ce(z, t)[0] == L.cross_entropy(z, t)[0]
    assert L.CrossEntropyLoss(ignore_index=1)(z, t)[0] == pytest.approx(np.log(3))
    with pytest.raises(ValueError, match="loss must be one of"):
        L.get_loss("hinge")
    assert L.MSELoss(reduction="sum").config() == {"reduction": "sum"}


def test_torch_parity(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    z = rng.standard_normal((3, 4, 6))
    t = rng.integers(0, 6, size=(3, 4))
    t[1, 2] = -100
    loss_rtol, loss_atol = named_tol("reordered_float64")
    grad_rtol, grad_atol = named_tol("torch_float64")
    for reduction in ("mean", "sum"):
        zt = torch.tensor(z, requires_grad=True)
        want = F.cross_entropy(
            zt.reshape(-1, 6),
            torch.tensor(t).reshape(-1),
            ignore_index=-100,
            reduction=reduction,
        )
        want.backward()
        loss, d = L.cross_entropy(z, t, reduction=reduction)
        assert loss == pytest.approx(want.item(), rel=loss_rtol, abs=loss_atol)
        np.testing.assert_allclose(d, zt.grad.numpy(), rtol=grad_rtol, atol=grad_atol)

        x, y = rng.standard_normal((5, 2)), rng.random((5, 2))
        xt = torch.tensor(x, requires_grad=True)
        want = F.binary_cross_entropy_with_logits(
            xt, torch.tensor(y), reduction=reduction
        )
        want.backward()
        loss, d = L.binary_cross_entropy_with_logits(x, y, reduction=reduction)
        assert loss == pytest.approx(want.item(), rel=loss_rtol, abs=loss_atol)
        np.testing.assert_allclose(d, xt.grad.numpy(), rtol=grad_rtol, atol=grad_atol)

        xt = torch.tensor(x, requires_grad=True)
        want = F.mse_loss(xt, torch.tensor(y), reduction=reduction)
        want.backward()
        loss, d = L.mse(x, y, reduction=reduction)
        assert loss == pytest.approx(want.item(), rel=loss_rtol, abs=loss_atol)
        np.testing.assert_allclose(d, xt.grad.numpy(), rtol=grad_rtol, atol=grad_atol)
