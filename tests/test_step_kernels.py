"""The kernels around the recurrent layers (csrc/blocks.h) against the NumPy
reference (:mod:`rnnkit.reference.blocks`): Linear, softmax cross-entropy, the
embedding gather and scatter-add, the gradient norm and the optimizer updates.

Each in float32 and float64 on odd sizes (one row, widths that are not a
multiple of any vector width, a large vocabulary), bitwise identical for 1, 2
and 3 threads on every SIMD path this machine runs, gradients also by finite
differences; and the training step's hot path free of NumPy BLAS calls.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import rnnkit as rk
from _helpers import fd_gradient
from conftest import FD_TOL, tol
from rnnkit import _core
from rnnkit.reference import blocks as ref

DTYPES = ["float32", "float64"]
THREADS = (1, 2, 3)
SIMD = rk.simd_paths()


def _each_path(fn):
    """``{(simd, threads): fn()}`` over every SIMD path and THREADS, and checks
    that on each path every thread count gives bitwise the same arrays."""
    out = {}
    for simd in SIMD:
        rk.set_simd(simd)
        first = None
        for n in THREADS:
            rk.set_num_threads(n)
            got = fn()
            got = got if isinstance(got, tuple) else (got,)
            if first is None:
                first = got
            else:
                for a, b in zip(got, first):
                    np.testing.assert_array_equal(
                        np.asarray(a),
                        np.asarray(b),
                        err_msg=f"{simd}: {n} threads vs 1",
                    )
            out[simd, n] = got
    return out


@pytest.fixture(autouse=True)
def _restore(restore_config):
    yield


# ------------------------------------------------------------------- Linear
LINEAR_SHAPES = [(1, 1, 1), (1, 17, 5), (37, 33, 65), (300, 256, 97)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [None, "tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("N,I,O", LINEAR_SHAPES)
def test_linear_matches_reference(dtype, act, N, I, O, rng):
    x = rng.standard_normal((N, I)).astype(dtype)
    w = (rng.standard_normal((O, I)) / np.sqrt(I)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    dy = rng.standard_normal((N, O)).astype(dtype)
    y_ref = ref.linear_forward(x, w, b, act)
    dw_ref, db_ref = np.full_like(w, 0.5), np.full_like(b, 0.25)
    dx_ref = ref.linear_backward(dy, x, y_ref, w, dw_ref, db_ref, act)

    def run():
        y = _core.linear_forward(x, w, b, act)
        dw, db = np.full_like(w, 0.5), np.full_like(b, 0.25)
        dx = _core.linear_backward(dy, x, y, w, dw, db, act, True)
        return y, dx, dw, db

    ro, ao = tol(dtype, "out")
    rg, ag = tol(dtype, "grad")
    for (simd, _), (y, dx, dw, db) in _each_path(run).items():
        np.testing.assert_allclose(y, y_ref, ro, ao, err_msg=simd)
        for got, want in ((dx, dx_ref), (dw, dw_ref), (db, db_ref)):
            np.testing.assert_allclose(got, want, rg, ag * np.sqrt(N), err_msg=simd)


def test_linear_without_bias_and_dx(rng):
    x = rng.standard_normal((9, 19))
    w = rng.standard_normal((11, 19))
    dy = rng.standard_normal((9, 11))
    y = _core.linear_forward(x, w, None, None)
    np.testing.assert_allclose(y, x @ w.T, *tol("float64", "out"))
    dw = np.zeros_like(w)
    assert _core.linear_backward(dy, x, y, w, dw, None, None, False) is None
    np.testing.assert_allclose(dw, dy.T @ x, *tol("float64", "grad"))


@pytest.mark.parametrize("act", [None, "tanh", "sigmoid"])
def test_linear_gradients_by_finite_differences(act, rng):
    lin = rk.Linear(5, 3, activation=act, dtype="float64", seed=1)
    x = rng.standard_normal((2, 4, 5))
    v = rng.standard_normal((2, 4, 3))

    def f() -> float:
        return float(np.sum(lin.forward(x, train=False) * v))

    lin.zero_grad()
    lin.forward(x)
    dx = lin.backward(v)
    rt, at = FD_TOL["rtol"], FD_TOL["atol"]
    np.testing.assert_allclose(dx, fd_gradient(f, x), rt, at)
    for name in ("weight", "bias"):
        want = fd_gradient(f, lin.params[name])
        np.testing.assert_allclose(lin.grads[name], want, rt, at)


# ------------------------------------------------------------ cross-entropy
XENT_SHAPES = [(1, 1), (1, 3), (7, 17), (64, 1000), (3, 70001)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,C", XENT_SHAPES)
@pytest.mark.parametrize("mean", [True, False])
def test_cross_entropy_matches_reference(dtype, N, C, mean, rng):
    z = (3 * rng.standard_normal((N, C))).astype(dtype)
    z[0, 0] = 80.0  # large logits: the max-shift keeps them finite
    t = rng.integers(0, C, N).astype(np.int64)
    mask = rng.random(N) < 0.8
    mask[0] = True
    if N > 2:
        t[1] = -100  # ignore_index
    valid = mask & (t != -100)
    want_loss, want_d = ref.cross_entropy(z, t, valid, mean)

    def run():
        loss, n, d = _core.cross_entropy(z, t, mask, -100, mean)
        assert n == int(valid.sum())
        return np.array(loss), d

    r, a = tol(dtype, "out")
    for (simd, _), (loss, d) in _each_path(run).items():
        np.testing.assert_allclose(float(loss), want_loss, r, a, err_msg=simd)
        np.testing.assert_allclose(d, want_d, r, a, err_msg=simd)
        assert not d[~valid].any()


def test_cross_entropy_in_place_and_extremes(rng):
    z = rng.standard_normal((5, 13))
    z[2, 4] = -np.inf  # a masked-out class: probability 0
    t = np.array([0, 3, 5, 12, 7])
    want_loss, want_d = ref.cross_entropy(z.copy(), t, np.ones(5, bool), True)
    zz = z.copy()
    loss, n, d = _core.cross_entropy(zz, t, None, None, True, out=zz)
    assert d is zz and n == 5
    np.testing.assert_allclose(loss, want_loss, *tol("float64", "out"))
    np.testing.assert_allclose(zz, want_d, *tol("float64", "out"))
    z[1, 1] = np.nan  # NaN poisons its row, as in NumPy
    loss, _, d = _core.cross_entropy(z, t, None, None, True)
    assert np.isnan(loss) and np.isnan(d[1]).all() and np.isfinite(d[0]).all()
    loss, n, d = _core.cross_entropy(z, t, np.zeros(5, bool), None, True)
    assert (loss, n) == (0.0, 0) and not d.any()


def test_cross_entropy_gradient_by_finite_differences(rng):
    z = rng.standard_normal((3, 4, 7))
    t = rng.integers(0, 7, (3, 4))
    t[0, 1] = -100
    mask = np.ones((3, 4), bool)
    mask[2, 3] = False

    def f() -> float:
        return rk.losses.cross_entropy(z, t, mask=mask)[0]

    _, d = rk.losses.cross_entropy(z, t, mask=mask)
    np.testing.assert_allclose(d, fd_gradient(f, z), FD_TOL["rtol"], FD_TOL["atol"])


# --------------------------------------------------------------- Embedding
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,V,E", [(1, 1, 1), (5, 3, 7), (2000, 67, 67), (4096, 9, 64)])
@pytest.mark.parametrize("padding", [-1, 0])
def test_embedding_matches_reference(dtype, N, V, E, padding, rng):
    w = rng.standard_normal((V, E)).astype(dtype)
    ids = rng.integers(0, V, N).astype(np.int64)  # many repeats: the scatter-add
    dy = rng.standard_normal((N, E)).astype(dtype)
    want_dw = np.full_like(w, 0.5)
    ref.embedding_backward(ids, dy, want_dw, None if padding < 0 else padding)

    def run():
        dw = np.full_like(w, 0.5)
        _core.embedding_backward(ids, dy, dw, padding)
        return _core.embedding_forward(ids, w), dw

    r, a = tol(dtype, "grad")
    for (simd, _), (y, dw) in _each_path(run).items():
        np.testing.assert_array_equal(y, ref.embedding_forward(ids, w), err_msg=simd)
        np.testing.assert_allclose(dw, want_dw, r, a * np.sqrt(N), err_msg=simd)
        if padding >= 0:
            np.testing.assert_array_equal(dw[padding], 0.5)


def test_embedding_refuses_ids_out_of_range():
    w = np.zeros((4, 3))
    with pytest.raises(IndexError, match=r"ids\[1\] = 4 is outside the vocabulary"):
        _core.embedding_forward(np.array([0, 4]), w)
    with pytest.raises(IndexError, match=r"ids\[0\] = -1"):
        _core.embedding_backward(np.array([-1]), np.zeros((1, 3)), w)


# ------------------------------------------------------------ norm, clipping
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 4097, 300001])
def test_grad_norm_and_clip(dtype, n, rng):
    g = rng.standard_normal(n).astype(dtype)
    want = ref.grad_norm([g])

    def run():
        gg = g.copy()
        norm = rk.optim.clip_grad_norm([(np.zeros_like(gg), gg)], 0.5)
        return np.array(norm), gg

    r, a = tol(dtype, "out")
    for (simd, _), (norm, gg) in _each_path(run).items():
        np.testing.assert_allclose(float(norm), want, r, 0, err_msg=simd)
        coef = min(1.0, 0.5 / (want + 1e-6))  # clipped only above max_norm
        np.testing.assert_allclose(gg, g * coef, r, a, err_msg=simd)


def test_grad_norm_without_overflow():
    g = np.array([3e200, 4e200, 0.0])
    assert rk.optim.grad_norm([(np.zeros(3), g)]) == pytest.approx(5e200, rel=1e-15)


# --------------------------------------------------------------- optimizers
OPTIMIZERS = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.8, "centered": True, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1}),
]


def _reference_step(name, kw, p, g, state, t):
    """One step of the reference update at step t (1-based)."""
    lr = kw["lr"]
    wd = kw.get("weight_decay", 0.0 if name != "AdamW" else 0.01)
    if name == "SGD":
        ref.sgd(
            p,
            g,
            state.get("momentum_buffer"),
            lr,
            kw.get("momentum", 0.0),
            kw.get("dampening", 0.0),
            kw.get("nesterov", False),
            wd,
            t == 1,
        )
    elif name == "Adagrad":
        clr = lr / (1 + (t - 1) * kw.get("lr_decay", 0.0))
        ref.adagrad(p, g, state["sum"], clr, wd)
    elif name == "RMSprop":
        ref.rmsprop(
            p,
            g,
            state["square_avg"],
            state.get("momentum_buffer"),
            state.get("grad_avg"),
            lr,
            weight_decay=wd,
            momentum=kw.get("momentum", 0.0),
            centered=kw.get("centered", False),
        )
    else:
        ref.adam(
            p,
            g,
            state["exp_avg"],
            state["exp_avg_sq"],
            state.get("max_exp_avg_sq"),
            lr,
            t,
            weight_decay=wd,
            amsgrad=kw.get("amsgrad", False),
            decoupled=name == "AdamW",
        )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 13, 70001])
@pytest.mark.parametrize("name,kw", OPTIMIZERS, ids=lambda v: str(v))
def test_optimizer_matches_reference(dtype, n, name, kw, rng):
    p0 = rng.standard_normal(n).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) for _ in range(4)]
    pr = p0.copy()
    probe = getattr(rk.optim, name)([(np.zeros(1, dtype), np.zeros(1, dtype))], **kw)
    state = {s: np.zeros_like(pr) for s in probe.slots}
    for t, g in enumerate(grads, 1):
        _reference_step(name, kw, pr, g, state, t)

    def run():
        p, g = p0.copy(), np.zeros_like(p0)
        opt = getattr(rk.optim, name)([(p, g)], **kw)
        for gi in grads:
            g[...] = gi
            opt.step()
        return (p,) + tuple(opt.state[s][0] for s in opt.slots)

    r, a = (1e-5, 1e-6) if dtype == "float32" else (1e-12, 1e-14)
    if kw.get("centered") and dtype == "float32":
        # sqrt(v - m^2) cancels: one rounding of v or m (fused multiply-add or
        # not) moves the result by far more than an ulp
        r = 1e-3
    for (simd, _), (p, *slots) in _each_path(run).items():
        np.testing.assert_allclose(p, pr, r, a, err_msg=simd)
        for got, s in zip(slots, probe.slots):
            np.testing.assert_allclose(got, state[s], r, a, err_msg=f"{simd} {s}")


def test_optim_kernel_checks_its_buffers():
    p = np.zeros(4, np.float32)
    with pytest.raises(TypeError, match="grad must have dtype float32"):
        _core.optim_step("sgd", p, np.zeros(4), [None], 0.1)
    with pytest.raises(ValueError, match="slots\\[1\\] is required"):
        _core.optim_step(
            "adam", p, np.zeros(4, np.float32), [np.zeros(4, np.float32)], 0.1
        )
    ro = np.zeros(4, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="param must be writeable"):
        _core.optim_step("sgd", ro, np.zeros(4, np.float32), [None], 0.1)
    with pytest.raises(ValueError, match="dweight must be C-contiguous"):
        _core.linear_backward(
            np.zeros((2, 3)),
            np.zeros((2, 4)),
            None,
            np.zeros((3, 4)),
            np.zeros((4, 3)).T,
            None,
            None,
            True,
        )


# ------------------------------------------------ the hot path has no BLAS
PKG = Path(rk.__file__).resolve().parent
HOT = [
    "modules.py",
    "losses.py",
    "optim.py",
    "train.py",
    "models.py",
    "layers.py",
    "_backend.py",
    "_params.py",
    "text/model.py",
]
BLAS_CALLS = {"dot", "matmul", "einsum", "tensordot", "inner", "vdot"}
COLD = {"_generate", "_plan"}  # CharLM's sampling loop, not part of fit


def _blas_uses(tree: ast.AST) -> list[int]:
    for node in ast.walk(tree):
        if (
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.name in COLD
        ):
            node.body = [ast.Pass()]
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            lines.append(node.lineno)
        if isinstance(node, ast.Attribute) and node.attr in BLAS_CALLS:
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("path", HOT)
def test_training_step_calls_no_numpy_blas(path):
    """The modules of ``fit`` and ``CharLM.fit`` use no NumPy product (``@``,
    ``dot``, ``matmul``, ...): every product runs in rnnkit's kernels on its own
    threads, so no BLAS thread pool competes with them."""
    tree = ast.parse((PKG / path).read_text(encoding="utf-8"))
    assert _blas_uses(tree) == [], f"{path}: NumPy BLAS call on the training path"


def test_blas_detector_detects():
    assert _blas_uses(ast.parse("y = x @ w\nz = np.dot(a, b)\n")) == [1, 2]
