"""The dropout family in the fused kernels (issue 12): ``dropout`` between layers,
``recurrent_dropout`` and ``zoneout`` on RNN, LSTM and GRU.

The compiled layers draw the masks (``layer.last_masks``); the NumPy reference
(``rnnkit.reference``, the specification) gets the very same masks through
``forward(masks=...)``, and every output and gradient must agree within the
tolerance table. Also: every SIMD path and 1 vs 2 threads bitwise, finite
differences with a fixed mask, the statistics of the masks, inference, the
stepper, reproducibility, checkpoints and bad input.
"""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import rnnkit as rk
from _helpers import fd_derivative
from conftest import FD_TOL, tol
from rnnkit import _core
from rnnkit import reference as ref
from rnnkit._options import CellMasks, Masks, draw_masks

FAST = {"rnn": rk.RNN, "lstm": rk.LSTM, "gru": rk.GRU}
REF = {"rnn": ref.RNN, "lstm": ref.LSTM, "gru": ref.GRU}
CELLS = list(FAST)

OPTIONS = {
    "dropout": dict(dropout=0.4),
    "recurrent": dict(recurrent_dropout=0.35),
    "zoneout": dict(zoneout=0.3),
    "all": dict(dropout=0.25, recurrent_dropout=0.3, zoneout=0.2),
}

# (T, B, I, H, L, bidirectional, lengths, batch_first): the GEMM path (B*T > 8),
# the direct path (B*T <= 8), T=1 and B=1, H not a multiple of any vector width.
SHAPES = {
    "stacked_bidir_lengths": (6, 5, 4, 19, 2, True, "unsorted", False),
    "batch_first_short": (7, 3, 5, 13, 3, False, "short", True),
    "direct": (2, 3, 3, 9, 2, True, None, False),
    "T1_B1": (1, 1, 2, 17, 2, False, None, False),
    "B1_long": (9, 1, 3, 6, 1, True, None, False),
}


def _lengths(mode: str | None, T: int, B: int) -> np.ndarray | None:
    if mode is None:
        return None
    rng = np.random.default_rng(1)
    top = T if mode == "unsorted" else T - 1
    out = rng.integers(1, top + 1, size=B)
    out[B // 2] = top
    return out


def _pair(cell: str, shape: tuple, dtype: str, **opts: Any) -> tuple[Any, Any]:
    T, B, I, H, L, bi, _, bf = shape
    kw = dict(num_layers=L, bidirectional=bi, batch_first=bf, dtype=dtype, seed=11)
    return FAST[cell](I, H, **kw, **opts), REF[cell](I, H, **kw, **opts)


def _inputs(cell: str, shape: tuple, dtype: str, rng: np.random.Generator) -> dict:
    T, B, I, H, L, bi, lens, bf = shape
    D, LD = 2 if bi else 1, L * (2 if bi else 1)

    def r(*s: int) -> np.ndarray:
        return rng.standard_normal(s).astype(dtype)

    x = r(B, T, I) if bf else r(T, B, I)
    dy = r(B, T, D * H) if bf else r(T, B, D * H)
    lstm = cell == "lstm"
    h0, dhn = r(LD, B, H), r(LD, B, H)
    hx = (h0, r(LD, B, H)) if lstm else h0
    dhx = (dhn, r(LD, B, H)) if lstm else dhn
    return dict(x=x, hx=hx, lengths=_lengths(lens, T, B), dy=dy, dhx=dhx)


def _run(layer: Any, inp: dict, masks: Masks | None = None) -> dict[str, np.ndarray]:
    layer.zero_grad()
    y, hn = layer.forward(inp["x"], inp["hx"], inp["lengths"], masks=masks)
    dx, dh0 = layer.backward(inp["dy"], inp["dhx"])
    out = {"y": y, "dx": dx}
    for name, v in (("h_n", hn), ("dh0", dh0)):
        if isinstance(v, tuple):
            out[name], out[name.replace("h", "c", 1)] = v
        else:
            out[name] = v
    out.update({"grad " + k: g.copy() for k, g in layer.grads.items()})
    return out


def _assert_close(got: dict, want: dict, dtype: str, what: str) -> None:
    assert got.keys() == want.keys()
    for k in want:
        rtol, atol = tol(dtype, "out" if k in ("y", "h_n", "c_n") else "grad")
        np.testing.assert_allclose(
            got[k], want[k], rtol=rtol, atol=atol, err_msg=f"{what}: {k}"
        )


def _assert_equal(got: dict, want: dict, what: str) -> None:
    for k in want:
        assert np.array_equal(got[k], want[k]), f"{what}: {k} differs"


# ------------------------------------------------------------ vs reference
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("opt", list(OPTIONS))
@pytest.mark.parametrize("cell", CELLS)
def test_kernel_matches_reference_with_the_same_masks(cell, opt, shape, dtype, rng):
    kern, want_layer = _pair(cell, SHAPES[shape], dtype, **OPTIONS[opt])
    inp = _inputs(cell, SHAPES[shape], dtype, rng)
    got = _run(kern, inp)
    masks = kern.last_masks
    assert masks is not None
    want = _run(want_layer, inp, masks=masks)
    _assert_close(got, want, dtype, f"{cell} {opt} {shape} {dtype}")
    # the masks given back to the kernel reproduce its forward bitwise
    again = _run(kern, inp, masks=masks)
    _assert_equal(again, got, "masks=last_masks")


@pytest.mark.parametrize("cell", CELLS)
def test_relu_and_sigmoid_rnn_and_no_bias(cell, rng):
    shape = SHAPES["stacked_bidir_lengths"]
    T, B, I, H, L, bi, _, bf = shape
    kw: dict[str, Any] = dict(num_layers=L, bidirectional=bi, dtype="float64")
    kw.update(seed=2, bias=False, **OPTIONS["all"])
    acts = ["relu", "sigmoid"] if cell == "rnn" else ["tanh"]
    for act in acts:
        extra = {"nonlinearity": act} if cell == "rnn" else {}
        kern = FAST[cell](I, H, **kw, **extra)
        other = REF[cell](I, H, **kw, **extra)
        inp = _inputs(cell, shape, "float64", rng)
        got = _run(kern, inp)
        _assert_close(got, _run(other, inp, kern.last_masks), "float64", act)


# ------------------------------------------------ SIMD paths and threads
# Big enough for a team of two (csrc/team.h: 2**20 FMAs per thread, 2**18 on
# the direct path): hidden units split between the threads, batch rows split,
# and the direct path.
THREADED = {
    "units": (8, 9, 20, 130, 2, True, "unsorted", False),
    "rows": (8, 50, 20, 33, 2, True, "short", False),
    "direct": (2, 4, 20, 130, 2, True, None, False),
}


@pytest.mark.parametrize("shape", list(THREADED))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", CELLS)
def test_every_simd_path_and_thread_count(cell, dtype, shape, rng, restore_config):
    shape = THREADED[shape]
    kern, other = _pair(cell, shape, dtype, **OPTIONS["all"])
    inp = _inputs(cell, shape, dtype, rng)
    _run(kern, inp)
    masks = kern.last_masks
    want = _run(other, inp, masks)
    for path in rk.simd_paths():
        rk.set_simd(path)
        results = {}
        for n in (1, 2):
            rk.set_num_threads(n)
            results[n] = _run(kern, inp, masks)
        _assert_equal(results[2], results[1], f"{path}: 2 threads vs 1")
        _assert_close(results[1], want, dtype, f"{path} vs reference")
        # inference with zoneout (its expectation) on this path, both counts
        outs = []
        for n in (1, 2):
            rk.set_num_threads(n)
            outs.append(kern.forward(inp["x"], inp["hx"], inp["lengths"], train=False))
        assert np.array_equal(outs[0][0], outs[1][0]), f"{path}: inference threads"


# --------------------------------------------------- finite differences
@pytest.mark.parametrize("opt", ["dropout", "recurrent", "zoneout", "all"])
@pytest.mark.parametrize("cell", CELLS)
def test_gradients_vs_finite_differences_fixed_masks(cell, opt, rng):
    shape = (4, 3, 3, 5, 2, True, "unsorted", False)
    T, B, I, H, L, bi, lens, _ = shape
    layer = FAST[cell](
        I, H, num_layers=L, bidirectional=bi, dtype="float64", seed=5, **OPTIONS[opt]
    )
    inp = _inputs(cell, shape, "float64", rng)
    _run(layer, inp)
    masks = layer.last_masks  # fixed from here on
    wy = rng.standard_normal((T, B, 2 * H))
    h0 = inp["hx"][0] if cell == "lstm" else inp["hx"]

    def loss() -> float:
        y, _ = layer.forward(inp["x"], inp["hx"], inp["lengths"], masks=masks)
        return float((y * wy).sum())

    layer.zero_grad()
    layer.forward(inp["x"], inp["hx"], inp["lengths"], masks=masks)
    dx, dh0 = layer.backward(wy, None)
    dh0 = dh0[0] if cell == "lstm" else dh0
    rtol, atol = FD_TOL["rtol"], FD_TOL["atol"]
    targets = [("x", inp["x"], dx), ("h0", h0, dh0)]
    targets += [(k, layer.params[k], layer.grads[k].copy()) for k in layer.params]
    for name, arr, grad in targets:
        v = rng.standard_normal(arr.shape)
        fd = fd_derivative(loss, arr, v)
        an = float((grad * v).sum())
        assert abs(fd - an) <= atol + rtol * abs(fd), (
            f"{cell} {opt}: d/d{name}: fd {fd} vs analytic {an}"
        )


# ------------------------------------------------------------ statistics
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_mask_rates(p):
    opts = rk.LSTM(3, 64, num_layers=2, dropout=p, recurrent_dropout=p, zoneout=p)
    m = draw_masks(
        opts.options,
        np.random.default_rng(3),
        cell="lstm",
        T=50,
        B=40,
        H=64,
        num_layers=2,
        num_directions=1,
        dtype=np.float32,
    )
    drop = m.dropout[0]
    assert set(np.unique(drop).tolist()) <= {0.0, np.float32(1 / (1 - p))}
    # 50*40*64 = 128000 draws: 5 sigma of a Bernoulli mean
    n = drop.size
    assert abs((drop != 0).mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    for cm in m.cells:
        for z in (cm.zoneout_h, cm.zoneout_c):
            assert z.dtype == np.bool_
            assert abs(z.mean() - p) < 5 * np.sqrt(p * (1 - p) / z.size)
        r = cm.recurrent
        assert r.shape == (40, 64)
        assert abs((r != 0).mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / r.size)


@pytest.mark.parametrize("cell", CELLS)
def test_recurrent_mask_applies_at_every_step(cell, rng):
    """A zero recurrent mask cuts W_hh at every step (the first included): the
    layer equals one with W_hh = 0; a mask of ones is the plain layer."""
    T, B, I, H = 6, 4, 3, 10
    layer = FAST[cell](I, H, recurrent_dropout=0.5, dtype="float64", seed=1)
    plain = FAST[cell](I, H, dtype="float64", seed=1)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((1, B, H))
    hx = (h0, np.zeros_like(h0)) if cell == "lstm" else h0
    ones = Masks([CellMasks(recurrent=np.ones((B, H)))], [])
    y1, _ = layer.forward(x, hx, masks=ones)
    y2, _ = plain.forward(x, hx)
    np.testing.assert_allclose(
        y1, y2, rtol=tol("float64", "out")[0], atol=tol("float64", "out")[1]
    )
    zeros = Masks([CellMasks(recurrent=np.zeros((B, H)))], [])
    y3, _ = layer.forward(x, hx, masks=zeros)
    plain.params["weight_hh_l0"][...] = 0
    y4, _ = plain.forward(x, hx)
    np.testing.assert_allclose(
        y3, y4, rtol=tol("float64", "out")[0], atol=tol("float64", "out")[1]
    )


@pytest.mark.parametrize("cell", CELLS)
def test_zoneout_inference_is_the_expectation(cell, rng):
    """One step: the mean of training outputs over many masks is the inference
    output (the expectation p h0 + (1-p) h~); and inference equals the reference."""
    B, I, H, p = 1, 3, 8, 0.3
    layer = FAST[cell](I, H, zoneout=p, dtype="float64", seed=4)
    other = REF[cell](I, H, zoneout=p, dtype="float64", seed=4)
    x1 = rng.standard_normal((1, B, I))
    h0 = rng.standard_normal((1, B, H))
    hx = (h0, rng.standard_normal((1, B, H))) if cell == "lstm" else h0
    N = 4000
    xs = np.repeat(x1, N, axis=1)
    hxs = (
        tuple(np.repeat(a, N, axis=1) for a in hx)
        if cell == "lstm"
        else (np.repeat(hx, N, axis=1))
    )
    y, _ = layer.forward(xs, hxs)
    yi, _ = layer.forward(x1, hx, train=False)
    assert layer.last_masks is None
    # per unit: a mean of N values, each h0 or h~
    spread = np.abs(h0[0] - yi[0]).max() + 1e-3
    assert np.abs(y.mean(axis=1) - yi[0]).max() < 5 * spread / np.sqrt(N) * 2
    seq = rng.standard_normal((5, 2, I))
    yk, hk = layer.forward(seq, train=False)
    yr, hr = other.forward(seq, train=False)
    np.testing.assert_allclose(yk, yr, *tol("float64", "out"))


@pytest.mark.parametrize("cell", CELLS)
def test_inference_is_deterministic_and_mask_free(cell, rng):
    layer = FAST[cell](3, 7, num_layers=2, dropout=0.5, recurrent_dropout=0.5, seed=0)
    plain = FAST[cell](3, 7, num_layers=2, seed=0)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    a, _ = layer.forward(x, train=False)
    assert layer.last_masks is None
    b, _ = layer.forward(x, train=False)
    c, _ = plain.forward(x, train=False)
    assert np.array_equal(a, b) and np.array_equal(a, c)
    t, _ = layer.forward(x)  # training differs: masks
    assert layer.last_masks is not None and not np.array_equal(t, a)


@pytest.mark.parametrize("cell", CELLS)
def test_masks_reproducible_from_seed_and_rng(cell, rng, restore_config):
    x = rng.standard_normal((6, 3, 4)).astype(np.float32)

    def make() -> Any:
        return FAST[cell](4, 9, num_layers=2, seed=8, **OPTIONS["all"])

    a, b = make(), make()
    rk.set_num_threads(1)
    ya, _ = a.forward(x)
    rk.set_num_threads(2)
    yb, _ = b.forward(x)
    assert np.array_equal(ya, yb)  # same seed, any thread count: the same masks
    ya2, _ = a.forward(x)
    assert not np.array_equal(ya, ya2)  # the next call draws new masks
    y1, _ = a.forward(x, rng=np.random.default_rng(4))
    y2, _ = b.forward(x, rng=np.random.default_rng(4))
    assert np.array_equal(y1, y2)
    c = FAST[cell](4, 9, num_layers=2, seed=9, **OPTIONS["all"])
    c.load_state_dict(a.state_dict())
    yc, _ = c.forward(x)
    assert not np.array_equal(yc, ya)  # another seed, other masks


# --------------------------------------------------------------- stepper
@pytest.mark.parametrize("cell", CELLS)
def test_stepper_honours_zoneout(cell, rng):
    layer = FAST[cell](3, 6, num_layers=2, zoneout=0.4, dropout=0.3, seed=2)
    with pytest.raises(ValueError, match=r"zoneout must be in \[0, 1\)"):
        _core.Stepper32(
            cell, "tanh", 2, 1, layer._weight_list(layer.params), zoneout=1.0
        )
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    y, _ = layer.forward(x, train=False)
    st = layer.stepper(batch_size=2)
    assert isinstance(st, _core.Stepper32)  # the compiled stepper, zoneout inside
    steps = np.stack([st.step(x[t]) for t in range(5)])
    np.testing.assert_allclose(steps, y, *tol("float32", "step"))
    plain = FAST[cell](3, 6, num_layers=2, seed=2)
    y0, _ = plain.forward(x, train=False)
    assert not np.allclose(y0, y)  # zoneout changes inference


# ---------------------------------------------------- checkpoints, copies
@pytest.mark.parametrize("cell", CELLS)
def test_options_survive_pickle_deepcopy_and_config(cell, tmp_path, rng):
    from rnnkit import _serial

    layer = FAST[cell](3, 6, num_layers=2, seed=2, **OPTIONS["all"])
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    for other in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer)):
        assert other.options == layer.options
        assert repr(other) == repr(layer) and "zoneout=0.2" in repr(layer)
        ya, _ = layer.forward(x, rng=np.random.default_rng(1))
        yb, _ = other.forward(x, rng=np.random.default_rng(1))
        assert np.array_equal(ya, yb)
    cfg = _serial.module_config(layer)
    assert cfg["dropout"] == 0.25 and cfg["zoneout"] == 0.2
    built = _serial.module_from_config(cfg)
    assert built.options == layer.options
    assert _serial.module_param_shapes(cfg) == {
        k: v.shape for k, v in layer.params.items()
    }
    model = rk.Sequential(layer, rk.Linear(6, 2, seed=0))
    path = tmp_path / "m.rnnkit"
    rk.save(path, model)
    loaded = rk.load(path)
    got = loaded.layers[0] if hasattr(loaded, "layers") else loaded[0]
    assert got.options == layer.options
    np.testing.assert_array_equal(
        got.forward(x, train=False)[0], layer.forward(x, train=False)[0]
    )


# --------------------------------------------------- layer_norm, proj_size
def test_layer_norm_and_proj_size_parameters():
    lstm = rk.LSTM(3, 8, proj_size=4, forget_bias=1.0, seed=0)
    assert lstm.params["weight_hr_l0"].shape == (4, 8)
    b = lstm.params["bias_ih_l0"]
    assert b[8:16].min() > 1.0 - 1 / np.sqrt(8) - 1e-6  # forget_bias added
    assert "proj_size=4" in repr(lstm) and lstm.state_size == 4
    gru = rk.GRU(3, 5, layer_norm=True)
    assert np.all(gru.params["ln_weight_ih_l0"] == 1)
    assert gru.params["ln_weight_hh_l0"].shape == (15,)
    with pytest.raises(TypeError):
        rk.GRU(3, 5, proj_size=2)  # not in its signature
    with pytest.raises(TypeError):
        rk.RNN(3, 5, layer_norm=True)
    both = rk.LSTM(3, 8, proj_size=4, layer_norm=True)  # the reference has it
    with pytest.raises(NotImplementedError, match="layer_norm with proj_size"):
        both.forward(np.ones((2, 1, 3), np.float32))


# Cell variants with kernels of their own, through the layer API: the layer
# draws the masks, the reference gets the same ones.
VARIANTS = {
    "ln_lstm": ("lstm", dict(layer_norm=True)),
    "ln_gru_masks": (
        "gru",
        dict(layer_norm=True, dropout=0.3, recurrent_dropout=0.3, zoneout=0.2),
    ),
    "ln_lstm_masks": ("lstm", dict(layer_norm=True, zoneout=0.25, dropout=0.2)),
    "lstmp": ("lstm", dict(proj_size=5)),
    "lstmp_masks": (
        "lstm",
        dict(proj_size=4, dropout=0.3, recurrent_dropout=0.3, zoneout=0.2),
    ),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_layers_match_reference(variant, dtype, rng):
    cell, opts = VARIANTS[variant]
    T, B, I, H, L = 6, 3, 4, 11, 2
    kw = dict(num_layers=L, bidirectional=True, dtype=dtype, seed=5)
    fast, slow = FAST[cell](I, H, **kw, **opts), REF[cell](I, H, **kw, **opts)
    S, LD = fast.state_size, 2 * L
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((LD, B, S)).astype(dtype)
    hx = (h0, rng.standard_normal((LD, B, H)).astype(dtype)) if cell == "lstm" else h0
    lengths = np.array([6, 2, 4])
    dy = rng.standard_normal((T, B, 2 * S)).astype(dtype)
    dhn = rng.standard_normal((LD, B, S)).astype(dtype)
    dhx = (
        (dhn, rng.standard_normal((LD, B, H)).astype(dtype)) if cell == "lstm" else dhn
    )
    inp = dict(x=x, hx=hx, lengths=lengths, dy=dy, dhx=dhx)
    got = _run(fast, inp)
    if opts.keys() - {"layer_norm", "proj_size"}:
        assert fast.last_masks is not None
    want = _run(slow, inp, masks=fast.last_masks)
    _assert_close(got, want, dtype, variant)
    y_inf, _ = fast.forward(x, hx, lengths, train=False)  # zoneout's expectation
    y_ref, _ = slow.forward(x, hx, lengths, train=False)
    rtol, atol = tol(dtype, "out")
    np.testing.assert_allclose(y_inf, y_ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize("variant", ["ln_lstm_masks", "ln_gru_masks", "lstmp_masks"])
def test_variant_stepper_follows_forward(variant, rng):
    cell, opts = VARIANTS[variant]
    layer = FAST[cell](3, 7, num_layers=2, dtype="float64", seed=2, **opts)
    xs = rng.standard_normal((5, 2, 3))
    y, _ = layer.forward(xs, train=False)
    st = layer.stepper(2)
    steps = np.stack([st.step(x) for x in xs])
    np.testing.assert_allclose(steps, y, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(dropout=1.0), "dropout must be in"),
        (dict(recurrent_dropout=-0.1), "recurrent_dropout must be in"),
        (dict(zoneout=1.5), "zoneout must be in"),
    ],
)
@pytest.mark.parametrize("cell", CELLS)
def test_rates_outside_range(cell, kw, match):
    with pytest.raises(ValueError, match=match):
        FAST[cell](3, 5, **kw)


def test_bad_rate_type():
    with pytest.raises(TypeError, match="zoneout must be a float"):
        rk.GRU(3, 5, zoneout="0.1")


def test_wrong_masks_name_the_argument(rng):
    layer = rk.LSTM(3, 5, num_layers=2, dtype="float64", **OPTIONS["all"])
    x = rng.standard_normal((4, 2, 3))
    layer.forward(x)
    good = layer.last_masks
    bad = copy.deepcopy(good)
    bad.cells[1].recurrent = np.ones((2, 4))
    with pytest.raises(ValueError, match=r"masks\.cells\[1\]\.recurrent must have "):
        layer.forward(x, masks=bad)
    bad = copy.deepcopy(good)
    bad.cells[0].zoneout_c = None
    with pytest.raises(ValueError, match=r"masks\.cells\[0\]\.zoneout_c is missing"):
        layer.forward(x, masks=bad)
    bad = copy.deepcopy(good)
    bad.dropout = []
    with pytest.raises(ValueError, match=r"masks\.dropout must hold 1"):
        layer.forward(x, masks=bad)
    with pytest.raises(TypeError, match="masks must be"):
        layer.forward(x, masks={"cells": []})
    plain = rk.GRU(3, 5, dtype="float64")
    with pytest.raises(ValueError, match=r"recurrent must be None"):
        plain.forward(x, masks=Masks([CellMasks(recurrent=np.ones((2, 5)))], []))


def test_core_validates_every_mask(rng):
    """The bindings check each mask's dtype, shape and contiguity by name."""
    T, B, I, H = 3, 2, 4, 5
    layer = rk.GRU(I, H, dtype="float64", seed=0)
    x = rng.standard_normal((T, B, I))
    h0 = np.zeros((1, B, H))
    w = layer._weight_list(layer.params)
    r, s = _core.workspace_size(
        "gru",
        "float64",
        T,
        B,
        I,
        H,
        1,
        False,
        True,
        _core.Mode.TRAIN_FORWARD,
        recurrent_dropout=True,
        zoneout=True,
    )
    res, scr = np.empty(r, np.uint8), np.empty(s, np.uint8)

    def call(**kw: Any) -> Any:
        return _core.forward(
            "gru", "tanh", 1, False, x, h0, None, w, None, res, scr, True, **kw
        )

    with pytest.raises(ValueError, match=r"rec_masks\[0\] must have shape \(2, 5\)"):
        call(rec_masks=[np.ones((2, 4))])
    with pytest.raises(TypeError, match=r"rec_masks\[0\] must have dtype float64"):
        call(rec_masks=[np.ones((2, 5), np.float32)])
    with pytest.raises(ValueError, match=r"rec_masks must hold 1 arrays"):
        call(rec_masks=[np.ones((2, 5))] * 2)
    with pytest.raises(TypeError, match=r"zone_h\[0\] must have dtype uint8"):
        call(zone_h=[np.zeros((T, B, H), bool)])
    with pytest.raises(ValueError, match=r"zone_h\[0\] must be C-contiguous"):
        call(zone_h=[np.zeros((T, H, B), np.uint8).transpose(0, 2, 1)])
    with pytest.raises(ValueError, match="zone_c must be None"):
        call(
            zone_h=[np.zeros((T, B, H), np.uint8)],
            zone_c=[np.zeros((T, B, H), np.uint8)],
        )
    with pytest.raises(ValueError, match=r"zoneout must be in \[0, 1\)"):
        call(zoneout=1.0)
    with pytest.raises(ValueError, match="must be None when train=False"):
        _core.forward(
            "gru",
            "tanh",
            1,
            False,
            x,
            h0,
            None,
            w,
            None,
            None,
            scr,
            False,
            rec_masks=[np.ones((B, H))],
        )
    with pytest.raises(ValueError, match=r"drop_masks must hold 0 arrays"):
        call(drop_masks=[np.ones((T, B, H))])


_CHILD = """
import sys, numpy as np, rnnkit as rk
assert rk.get_simd() == sys.argv[2], (rk.get_simd(), sys.argv[2])
out = {}
for cell, C in (("rnn", rk.RNN), ("lstm", rk.LSTM), ("gru", rk.GRU)):
    layer = C(4, 19, num_layers=2, bidirectional=True, dtype="float64", seed=3,
              dropout=0.25, recurrent_dropout=0.3, zoneout=0.2)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 5, 4))
    y, _ = layer.forward(x, lengths=[6, 2, 5, 6, 1], rng=np.random.default_rng(1))
    dx, _ = layer.backward(np.ones_like(y))
    yi, _ = layer.forward(x, train=False)
    out[cell + " y"], out[cell + " dx"], out[cell + " yi"] = y, dx, yi
    out.update({cell + " grad " + k: g for k, g in layer.grads.items()})
np.savez(sys.argv[1], **out)
"""


@pytest.mark.parametrize("path", rk.simd_paths())
def test_each_simd_path_from_the_environment(path, tmp_path):
    """RNNKIT_SIMD=<path> in a fresh process: the options' kernels of that path
    agree with the reference (the same masks: the same generator)."""
    env = dict(os.environ, RNNKIT_SIMD=path)
    f = tmp_path / "out.npz"
    r = subprocess.run(
        [sys.executable, "-c", _CHILD, str(f), path],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    got = np.load(f)
    for cell in CELLS:
        other = REF[cell](
            4,
            19,
            num_layers=2,
            bidirectional=True,
            dtype="float64",
            seed=3,
            dropout=0.25,
            recurrent_dropout=0.3,
            zoneout=0.2,
        )
        rng = np.random.default_rng(0)
        x = rng.standard_normal((6, 5, 4))
        y, _ = other.forward(x, lengths=[6, 2, 5, 6, 1], rng=np.random.default_rng(1))
        dx, _ = other.backward(np.ones_like(y))
        yi, _ = other.forward(x, train=False)
        want = {cell + " y": y, cell + " dx": dx, cell + " yi": yi}
        want.update({cell + " grad " + k: g for k, g in other.grads.items()})
        for k, v in want.items():
            rtol, atol = tol("float64", "grad" if "d" in k.split()[1] else "out")
            np.testing.assert_allclose(got[k], v, rtol=rtol, atol=atol, err_msg=k)


@pytest.mark.parametrize("cell", CELLS)
def test_stepper_zoneout_on_every_simd_path(cell, rng, restore_config):
    layer = FAST[cell](5, 21, num_layers=2, zoneout=0.3, dtype="float64", seed=6)
    other = REF[cell](5, 21, num_layers=2, zoneout=0.3, dtype="float64", seed=6)
    x = rng.standard_normal((4, 3, 5))
    want, _ = other.forward(x, train=False)
    for path in rk.simd_paths():
        rk.set_simd(path)
        st = layer.stepper(batch_size=3)
        got = np.stack([st.step(x[t]) for t in range(4)])
        np.testing.assert_allclose(
            got, want, *tol("float64", "out"), err_msg=f"{path} stepper"
        )
