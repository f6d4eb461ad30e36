"""The NumPy reference (``rnnkit.reference``) checked on its own.

Everything else in the suite is compared with the reference, so here it is
compared with things that do not depend on it: centered finite differences in
float64 for every gradient, the definition of variable lengths (each sequence run
alone), chunked runs, float32 vs float64, and, when torch is installed,
``torch.nn.RNN/LSTM/GRU`` on the same weights. Uses the functional API
(``forward``/``backward`` on a dict of PyTorch-named parameters) except where the
layer classes are the subject.
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from typing import Any

import numpy as np
import pytest

from _helpers import fd_derivative
from conftest import FD_TOL, named_tol, tol
from rnnkit import _cells, _ops, layers
from rnnkit import reference as ref

# PyTorch's gate rows per cell, written out here independently of the registry
# (make_params builds the parameters from them; test_registry_matches checks that
# rnnkit._cells agrees).
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
CELLS = [
    (cell, nl) for cell, spec in _cells.CELLS.items() for nl in spec.nonlinearities
]


def cell_id(c: tuple[str, str]) -> str:
    return c[0] if c[0] != "rnn" else f"rnn-{c[1]}"


# ------------------------------------------------------------------ problems
@dataclasses.dataclass
class Problem:
    """One configuration with its inputs and a random scalar loss
    ``L = sum(y * Wy) + sum(h_n * Wh) (+ sum(c_n * Wc))``."""

    cell: str
    nl: str
    L: int
    bidir: bool
    lengths: np.ndarray | None
    arrays: dict[str, np.ndarray]  # x, h0, (c0), and every parameter
    Wy: np.ndarray
    Wh: np.ndarray
    Wc: np.ndarray | None

    @property
    def lstm(self) -> bool:
        return self.cell == "lstm"

    @property
    def param_names(self) -> list[str]:
        return [k for k in self.arrays if k not in ("x", "h0", "c0")]

    def run(self, arrays: dict[str, np.ndarray] | None = None, train: bool = False):
        a = self.arrays if arrays is None else arrays
        return ref.forward(
            self.cell,
            a["x"],
            a["h0"],
            a.get("c0"),
            {k: a[k] for k in self.param_names},
            num_layers=self.L,
            bidirectional=self.bidir,
            nonlinearity=self.nl,
            lengths=self.lengths,
            train=train,
        )

    def loss(self, arrays: dict[str, np.ndarray]) -> float:
        y, h_n, c_n, _ = self.run(arrays)
        out = np.sum(y * self.Wy) + np.sum(h_n * self.Wh)
        if self.lstm:
            out += np.sum(c_n * self.Wc)
        return float(out)

    def grads(self) -> dict[str, np.ndarray]:
        """Analytic gradient of the loss w.r.t. every entry of ``arrays``."""
        *_, cache = self.run(train=True)
        grads = {k: np.zeros_like(self.arrays[k]) for k in self.param_names}
        dx, dh0, dc0 = ref.backward(cache, self.Wy, self.Wh, self.Wc, grads)
        grads.update(x=dx, h0=dh0)
        if self.lstm:
            grads["c0"] = dc0
        return grads


def make_params(
    cell: str,
    I: int,
    H: int,
    L: int,
    D: int,
    bias: bool,
    rng: np.random.Generator,
    dtype: Any = np.float64,
) -> dict[str, np.ndarray]:
    """PyTorch's names and shapes, written out here independently of layers.py."""
    G = GATES[cell]
    params = {}
    for k in range(L):
        for d in range(D):
            s = f"_l{k}" + ("_reverse" if d else "")
            in_size = I if k == 0 else D * H
            params["weight_ih" + s] = rng.uniform(-0.7, 0.7, (G * H, in_size))
            params["weight_hh" + s] = rng.uniform(-0.7, 0.7, (G * H, H))
            if bias:
                params["bias_ih" + s] = rng.uniform(-0.5, 0.5, G * H)
                params["bias_hh" + s] = rng.uniform(-0.5, 0.5, G * H)
    return {k: v.astype(dtype) for k, v in params.items()}


def unsorted_lengths(T: int, B: int) -> np.ndarray:
    """1..T, neither ascending nor descending for B >= 3, containing 1 and T."""
    base = np.rint(np.linspace(1, T, B)).astype(np.int64)
    return np.roll(base, 1)


def make_problem(
    cell: str,
    nl: str,
    T: int,
    B: int,
    I: int,
    H: int,
    L: int = 1,
    bidir: bool = False,
    lengths: Any = None,
    bias: bool = True,
    rng: np.random.Generator | None = None,
    dtype: Any = np.float64,
) -> Problem:
    rng = np.random.default_rng(0) if rng is None else rng
    D = 2 if bidir else 1
    if isinstance(lengths, str):
        lengths = {
            "unsorted": unsorted_lengths(T, B),
            "short": np.minimum(unsorted_lengths(T, B), max(T - 1, 1)),
        }[lengths]
    arrays = {
        "x": rng.standard_normal((T, B, I)),
        "h0": 0.5 * rng.standard_normal((L * D, B, H)),
    }
    if cell == "lstm":
        arrays["c0"] = 0.5 * rng.standard_normal((L * D, B, H))
    arrays = {k: v.astype(dtype) for k, v in arrays.items()}
    arrays.update(make_params(cell, I, H, L, D, bias, rng, dtype))
    S = (L * D, B, H)
    Wy = rng.standard_normal((T, B, D * H)).astype(dtype)
    Wh = rng.standard_normal(S).astype(dtype)
    Wc = rng.standard_normal(S).astype(dtype) if cell == "lstm" else None
    return Problem(cell, nl, L, bidir, lengths, arrays, Wy, Wh, Wc)


@pytest.mark.parametrize("cell", sorted(GATES))
@pytest.mark.parametrize("L, bidir, bias", [(1, False, True), (3, True, False)])
def test_registry_matches(cell, L, bidir, bias):
    """rnnkit._cells gives the names and shapes written out independently here."""
    rng = np.random.default_rng(0)
    want = {
        k: v.shape for k, v in make_params(cell, 5, 3, L, 1 + bidir, bias, rng).items()
    }
    assert _cells.get(cell).param_shapes(5, 3, L, bidir, bias) == want
    assert list(_cells.get(cell).param_shapes(5, 3, L, bidir, bias)) == list(want)
    assert set(_cells.CELLS) == set(GATES)


# ------------------------------------------------------ finite differences
def check_finite_differences(
    p: Problem, rng: np.random.Generator, entries: int = 3
) -> None:
    """Centered differences on ``entries`` random entries of every tensor, plus one
    random direction per tensor (which involves all of its entries at once)."""
    eps, rtol, atol = FD_TOL["eps"], FD_TOL["rtol"], FD_TOL["atol"]
    grads = p.grads()
    assert sorted(grads) == sorted(p.arrays)
    problems = []
    for name, value in p.arrays.items():
        g = grads[name]
        assert g.shape == value.shape and g.dtype == value.dtype, name
        probes = []  # (direction, analytic directional derivative, label)
        picks = rng.choice(value.size, size=min(entries, value.size), replace=False)
        for flat in picks:
            v = np.zeros(value.size)
            v[flat] = 1.0
            idx = np.unravel_index(flat, value.shape)
            label = f"{name}{tuple(map(int, idx))}"
            probes.append((v.reshape(value.shape), g[idx], label))
        v = rng.standard_normal(value.shape)
        probes.append((v, float(np.sum(g * v)), f"{name}·random"))
        for v, want, label in probes:
            fd = fd_derivative(lambda: p.loss(p.arrays), value, v, eps=eps)
            if not abs(fd - want) <= atol + rtol * abs(want):
                problems.append(
                    f"{label}: analytic {want:.10g}, finite difference {fd:.10g}"
                )
    assert not problems, "gradient mismatch:\n  " + "\n  ".join(problems)


FD_GRID = [
    pytest.param(
        c,
        L,
        bidir,
        lengths,
        id=f"{cell_id(c)}-L{L}-{'bi' if bidir else 'uni'}-{lengths or 'nolen'}",
    )
    for c, L, bidir, lengths in itertools.product(
        CELLS, (1, 2), (False, True), (None, "unsorted")
    )
]


@pytest.mark.parametrize("cell_nl, L, bidir, lengths", FD_GRID)
def test_gradients_finite_differences(cell_nl, L, bidir, lengths, rng):
    cell, nl = cell_nl
    p = make_problem(
        cell, nl, T=4, B=3, I=5, H=3, L=L, bidir=bidir, lengths=lengths, rng=rng
    )
    check_finite_differences(p, rng)


EDGE = [  # T, B, I, H, L, bidir, lengths, bias
    (1, 1, 5, 3, 1, False, None, True),
    (1, 1, 2, 1, 2, True, None, True),
    (3, 1, 1, 1, 1, True, None, True),
    (5, 4, 5, 3, 2, True, "short", False),
    (2, 5, 3, 2, 1, False, "unsorted", False),
]


@pytest.mark.parametrize("cell_nl", CELLS, ids=cell_id)
@pytest.mark.parametrize("T, B, I, H, L, bidir, lengths, bias", EDGE)
def test_gradients_finite_differences_edge(
    cell_nl, T, B, I, H, L, bidir, lengths, bias, rng
):
    cell, nl = cell_nl
    p = make_problem(cell, nl, T, B, I, H, L, bidir, lengths, bias, rng)
    assert any(k.startswith("bias") for k in p.arrays) == bias
    check_finite_differences(p, rng)


# ----------------------------------------------------------------- lengths
def assert_close(got: np.ndarray, want: np.ndarray, kind: str, what: str) -> None:
    rtol, atol = tol(want.dtype, kind)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


def sequence_alone(p: Problem, b: int) -> Problem:
    """Sequence b of p on its own: batch of one, its own steps only, no lengths."""
    assert p.lengths is not None
    n, one = int(p.lengths[b]), slice(b, b + 1)
    arrays = {**p.arrays, "x": p.arrays["x"][:n, one], "h0": p.arrays["h0"][:, one]}
    if p.lstm:
        arrays["c0"] = p.arrays["c0"][:, one]
    return dataclasses.replace(
        p,
        lengths=None,
        arrays=arrays,
        Wy=p.Wy[:n, one],
        Wh=p.Wh[:, one],
        Wc=None if p.Wc is None else p.Wc[:, one],
    )


@pytest.mark.parametrize("cell_nl", CELLS, ids=cell_id)
@pytest.mark.parametrize("mode", ["unsorted", "short"])
def test_lengths_equal_each_sequence_alone(cell_nl, mode, rng):
    """Outputs past each end are zero; h_n, c_n, dx, dh0, dc0 and the parameter
    gradients equal running each sequence alone, for both directions and with
    nonzero dy on the padding; padding content is irrelevant."""
    cell, nl = cell_nl
    T, B = 6, 4
    p = make_problem(cell, nl, T, B, I=3, H=5, L=2, bidir=True, lengths=mode, rng=rng)
    lengths = p.lengths
    assert lengths is not None and len(set(lengths.tolist())) > 1
    y, h_n, c_n, _ = p.run()
    g = p.grads()
    param_sums = {k: np.zeros_like(p.arrays[k]) for k in p.param_names}
    for b, n in enumerate(lengths):
        assert not y[n:, b].any(), f"y past the end of sequence {b} is not zero"
        assert not g["x"][n:, b].any(), f"dx past the end of sequence {b} is not zero"
        alone = sequence_alone(p, b)
        y1, h1, c1, _ = alone.run()
        assert_close(y[:n, b : b + 1], y1, "out", f"y of sequence {b}")
        assert_close(h_n[:, b : b + 1], h1, "out", f"h_n of sequence {b}")
        if p.lstm:
            assert_close(c_n[:, b : b + 1], c1, "out", f"c_n of sequence {b}")
        g1 = alone.grads()
        assert_close(g["x"][:n, b : b + 1], g1["x"], "grad", f"dx of sequence {b}")
        for k in ("h0", "c0"):
            if k in g:
                assert_close(g[k][:, b : b + 1], g1[k], "grad", f"d{k} of sequence {b}")
        for k in param_sums:
            param_sums[k] += g1[k]
    # Parameter gradients of the batch are the sums over the sequences alone.
    for k, total in param_sums.items():
        assert_close(g[k], total, "grad", f"d{k}")

    # Whatever the padding holds (here NaN and Inf) changes nothing, bitwise.
    x = p.arrays["x"].copy()
    for b, n in enumerate(lengths):
        x[n:, b] = np.where(rng.random(x[n:, b].shape) < 0.5, np.nan, np.inf)
    dirty = dataclasses.replace(p, arrays={**p.arrays, "x": x})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y2, h2, _, _ = dirty.run()
        g2 = dirty.grads()
    assert np.array_equal(y2, y) and np.array_equal(h2, h_n)
    for name in g:
        assert np.array_equal(g2[name], g[name]), f"d{name} depends on padding"


@pytest.mark.parametrize("cell_nl", CELLS, ids=cell_id)
def test_full_lengths_equal_no_lengths(cell_nl, rng):
    cell, nl = cell_nl
    p = make_problem(cell, nl, 5, 3, 4, 3, L=2, bidir=True, rng=rng)
    full = dataclasses.replace(p, lengths=np.full(3, 5, dtype=np.int64))
    for a, b in zip(p.run()[:3], full.run()[:3]):
        if a is not None:
            assert_close(a, b, "out", "lengths == T vs no lengths")
    ga, gb = p.grads(), full.grads()
    for name in ga:
        assert_close(ga[name], gb[name], "grad", f"d{name}: lengths == T vs no lengths")


# ------------------------------------------------------------------ chunks
def run_chunks(p: Problem, bounds: list[int]):
    """Runs p's sequence in consecutive chunks, carrying the state forward and the
    state gradient backward; returns y, h_n, c_n and all gradients."""
    a = p.arrays
    params = {k: a[k] for k in p.param_names}
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    h, c, ys, caches = a["h0"], a.get("c0"), [], []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        y, h, c, cache = ref.forward(
            p.cell,
            a["x"][lo:hi],
            h,
            c,
            params,
            num_layers=p.L,
            bidirectional=False,
            nonlinearity=p.nl,
        )
        ys.append(y)
        caches.append(cache)
    dh, dc, dxs = p.Wh, p.Wc, []
    for (lo, hi), cache in reversed(list(zip(zip(bounds[:-1], bounds[1:]), caches))):
        dx, dh, dc = ref.backward(cache, p.Wy[lo:hi], dh, dc, grads)
        dxs.append(dx)
    grads.update(x=np.concatenate(dxs[::-1]), h0=dh)
    if p.lstm:
        grads["c0"] = dc
    return np.concatenate(ys), h, c, grads


@pytest.mark.parametrize("cell_nl", CELLS, ids=cell_id)
@pytest.mark.parametrize("split", ["single-steps", "two-chunks"])
def test_chunks_equal_one_call(cell_nl, split, rng):
    cell, nl = cell_nl
    T = 7
    p = make_problem(cell, nl, T, B=3, I=4, H=5, L=2, rng=rng)
    bounds = list(range(T + 1)) if split == "single-steps" else [0, 3, T]
    y, h_n, c_n, grads = run_chunks(p, bounds)
    y1, h1, c1, _ = p.run()
    assert_close(y, y1, "out", "y")
    assert_close(h_n, h1, "out", "h_n")
    if p.lstm:
        assert_close(c_n, c1, "out", "c_n")
    want = p.grads()
    for name in want:
        assert_close(grads[name], want[name], "grad", f"d{name}")


# ----------------------------------------------------------------- dtypes
@pytest.mark.parametrize("cell_nl", CELLS, ids=cell_id)
@pytest.mark.parametrize("lengths", [None, "unsorted"])
def test_float32_matches_float64(cell_nl, lengths):
    cell, nl = cell_nl
    kw = {"L": 2, "bidir": True, "lengths": lengths}
    p64 = make_problem(cell, nl, 6, 3, 5, 7, rng=np.random.default_rng(1), **kw)
    p32 = make_problem(
        cell, nl, 6, 3, 5, 7, rng=np.random.default_rng(1), dtype=np.float32, **kw
    )
    for a32, a64, name in zip(p32.run(), p64.run(), ("y", "h_n", "c_n")):
        if a64 is None:
            assert a32 is None
            continue
        assert a32.dtype == np.float32, f"{name} computed in {a32.dtype}"
        rtol, atol = named_tol("float32_vs_float64")
        np.testing.assert_allclose(a32, a64, rtol=rtol, atol=atol, err_msg=name)
    g32, g64 = p32.grads(), p64.grads()
    for name in g64:
        assert g32[name].dtype == np.float32, name
        rtol, atol = tol(np.float32, "grad")
        np.testing.assert_allclose(
            g32[name], g64[name], rtol=rtol, atol=atol, err_msg=f"d{name}"
        )


def test_compute_dtype_is_the_dtype_of_x(rng):
    """float32 x with float64 parameters computes in float32; gradients are added
    into the float64 gradient arrays."""
    p = make_problem("lstm", "tanh", 3, 2, 4, 3, rng=rng)
    x32 = p.arrays["x"].astype(np.float32)
    y, h_n, c_n, cache = p.run({**p.arrays, "x": x32}, train=True)
    assert y.dtype == h_n.dtype == c_n.dtype == np.float32
    grads = {k: np.zeros_like(p.arrays[k]) for k in p.param_names}
    dx, dh0, dc0 = ref.backward(cache, p.Wy, p.Wh, p.Wc, grads)
    assert dx.dtype == dh0.dtype == dc0.dtype == np.float32
    assert grads["weight_ih_l0"].dtype == np.float64 and grads["weight_ih_l0"].any()


# ---------------------------------------------------------- special values
@pytest.mark.parametrize("cell_nl", CELLS, ids=cell_id)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_inputs_saturate_without_warnings(cell_nl, dtype, rng):
    cell, nl = cell_nl
    p = make_problem(cell, nl, 4, 3, 5, 3, bidir=True, rng=rng, dtype=dtype)
    x = (p.arrays["x"] * 1e30).astype(dtype)  # pre-activations far beyond exp's range
    big = dataclasses.replace(p, arrays={**p.arrays, "x": x})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, h_n, _, _ = big.run()
        g = big.grads()
    assert np.isfinite(y).all() and np.isfinite(h_n).all()
    for name in g:
        assert not np.isnan(g[name]).any(), f"d{name} has NaN"


def test_sigmoid_is_stable():
    for dtype in (np.float32, np.float64):
        finite = [-1e30, -1000, -100, -30, -1, 0, 1, 30, 100, 1000, 1e30]
        a = np.array(finite + [np.inf, -np.inf, np.nan], dtype=dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            s = _ops.sigmoid(a, out=np.empty_like(a))
            want = 1 / (1 + np.exp(-a.astype(np.longdouble)))
        assert s.dtype == dtype
        # Relative accuracy down to the smallest normal number (below it: 0).
        rtol, atol = named_tol("sigmoid_vs_longdouble")
        np.testing.assert_allclose(
            s[:-1], want[:-1].astype(dtype), rtol=rtol, atol=atol + np.finfo(dtype).tiny
        )
        assert np.isnan(s[-1])


@pytest.mark.parametrize("cell_nl", CELLS, ids=cell_id)
def test_nan_propagates_without_exceptions(cell_nl, rng):
    """A NaN in one sequence's input poisons that sequence from there on (like
    NumPy arithmetic), leaves the other sequences alone, and raises nothing."""
    cell, nl = cell_nl
    p = make_problem(cell, nl, 5, 3, 4, 3, L=2, rng=rng)
    x = p.arrays["x"].copy()
    x[2, 1, 0] = np.nan
    bad = dataclasses.replace(p, arrays={**p.arrays, "x": x})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, h_n, _, _ = bad.run()
        g = bad.grads()
    y0, *_ = p.run()
    assert np.isnan(y[2:, 1]).all() and np.isnan(h_n[:, 1]).all()
    assert not np.isnan(y[:2]).any()
    np.testing.assert_array_equal(np.delete(y, 1, axis=1), np.delete(y0, 1, axis=1))
    # x's NaN reaches dW_ih through the GEMM (relu' = (h > 0) is 0 at NaN, so dx of
    # the relu RNN may stay finite, as in PyTorch).
    assert np.isnan(g["weight_ih_l0"]).any()


# ------------------------------------------------------------- API details
def test_backward_adds_and_leaves_inputs_alone(rng):
    p = make_problem(
        "gru", "tanh", 4, 3, 5, 3, L=2, bidir=True, lengths="unsorted", rng=rng
    )
    before = {k: v.copy() for k, v in p.arrays.items()}
    *_, cache = p.run(train=True)
    grads = {k: np.zeros_like(p.arrays[k]) for k in p.param_names}
    dy, dh = p.Wy.copy(), p.Wh.copy()
    ref.backward(cache, dy, dh, None, grads)
    once = {k: v.copy() for k, v in grads.items()}
    _, _, _, cache = p.run(train=True)
    ref.backward(cache, dy, dh, None, grads)
    rtol, atol = named_tol("accumulate_twice")
    for k, g in grads.items():
        np.testing.assert_allclose(g, 2 * once[k], rtol=rtol, atol=atol)
    for k, v in before.items():
        assert np.array_equal(p.arrays[k], v), f"{k} was modified"
    assert np.array_equal(dy, p.Wy) and np.array_equal(dh, p.Wh)


def test_inference_returns_no_cache(rng):
    p = make_problem("lstm", "tanh", 4, 3, 5, 3, L=2, bidir=True, rng=rng)
    y, h_n, c_n, cache = p.run(train=False)
    y1, h1, c1, cache1 = p.run(train=True)
    assert cache is None and cache1 is not None
    for a, b in ((y, y1), (h_n, h1), (c_n, c1)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("cell_nl", CELLS, ids=cell_id)
def test_layer_classes_match_functional_api(cell_nl, rng):
    cell, nl = cell_nl
    cls = getattr(ref, _cells.get(cell).class_name)
    base = getattr(layers, _cells.get(cell).class_name)
    kw = {"nonlinearity": nl} if cell == "rnn" else {}
    kw.update(num_layers=2, bidirectional=True, batch_first=True, dtype="float64")
    layer = cls(5, 4, seed=3, **kw)
    assert isinstance(layer, base) and type(layer).__name__ == base.__name__
    T, B = 6, 3
    x = rng.standard_normal((B, T, 5))
    lengths = unsorted_lengths(T, B)
    dy = rng.standard_normal((B, T, 8))
    S = (4, B, 4)
    h0, dh = rng.standard_normal(S), rng.standard_normal(S)
    c0, dc = rng.standard_normal(S), rng.standard_normal(S)
    hx, dhx = ((h0, c0), (dh, dc)) if cell == "lstm" else (h0, dh)

    y, hn = layer.forward(x, hx, lengths=lengths)
    dx, dh0 = layer.backward(dy, dhx)

    grads = {k: np.zeros_like(v) for k, v in layer.params.items()}
    y1, h1, c1, cache = ref.forward(
        cell,
        x.transpose(1, 0, 2).copy(),
        h0,
        c0 if cell == "lstm" else None,
        layer.params,
        num_layers=2,
        bidirectional=True,
        nonlinearity=nl,
        lengths=lengths,
    )
    dx1, dh01, dc01 = ref.backward(
        cache, dy.transpose(1, 0, 2).copy(), dh, dc if cell == "lstm" else None, grads
    )
    assert np.array_equal(y, y1.transpose(1, 0, 2))
    assert np.array_equal(dx, dx1.transpose(1, 0, 2))
    if cell == "lstm":
        assert np.array_equal(hn[0], h1) and np.array_equal(hn[1], c1)
        assert np.array_equal(dh0[0], dh01) and np.array_equal(dh0[1], dc01)
    else:
        assert np.array_equal(hn, h1) and np.array_equal(dh0, dh01)
    for k, g in grads.items():
        assert np.array_equal(layer.grads[k], g), k
    # Inference: same outputs, nothing kept for backward.
    y2, _ = layer.forward(x, hx, lengths=lengths, train=False)
    assert np.array_equal(y2, y)
    with pytest.raises(RuntimeError, match="backward"):
        layer.backward(dy, dhx)


def test_layer_quick_start_float32():
    lstm = ref.LSTM(8, 16, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 8)).astype(np.float32)
    y, (h_n, c_n) = lstm.forward(x)
    dx, (dh0, dc0) = lstm.backward(np.ones_like(y))
    assert c_n.shape == h_n.shape == (1, 2, 16)
    assert y.shape == (5, 2, 16) and y.dtype == np.float32
    assert dx.shape == (5, 2, 8) and dx.dtype == np.float32
    assert dh0.shape == dc0.shape == (1, 2, 16)
    assert np.array_equal(h_n[0], y[-1])
    assert all(g.any() for g in lstm.grads.values())


# ------------------------------------------------------------ torch parity
def torch_module(torch, p: Problem, I: int, H: int, bias: bool = True):
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[p.cell]
    kw = {"nonlinearity": p.nl} if p.cell == "rnn" else {}
    m = cls(I, H, num_layers=p.L, bidirectional=p.bidir, bias=bias, **kw).double()
    m.load_state_dict({k: torch.from_numpy(p.arrays[k]) for k in p.param_names})
    return m


def torch_grads(torch, p: Problem, lengths: np.ndarray | None = None):
    """y, h_n, c_n and every gradient of p's loss, computed by torch."""
    T, _, I = p.arrays["x"].shape
    H = p.arrays["h0"].shape[2]
    m = torch_module(torch, p, I, H, bias=any(k.startswith("bias") for k in p.arrays))
    x = torch.from_numpy(p.arrays["x"].copy()).requires_grad_()
    h0 = torch.from_numpy(p.arrays["h0"].copy()).requires_grad_()
    c0 = torch.from_numpy(p.arrays["c0"].copy()).requires_grad_() if p.lstm else None
    inp: Any = x
    if lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(
            x, torch.from_numpy(lengths), enforce_sorted=False
        )
    out, hn = m(inp, (h0, c0) if p.lstm else h0)
    if lengths is not None:
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    h_n, c_n = hn if p.lstm else (hn, None)
    loss = (out * torch.from_numpy(p.Wy)).sum() + (h_n * torch.from_numpy(p.Wh)).sum()
    if p.lstm:
        loss = loss + (c_n * torch.from_numpy(p.Wc)).sum()
    loss.backward()
    res = {"y": out, "h_n": h_n, "x": x.grad, "h0": h0.grad}
    if p.lstm:
        res.update(c_n=c_n, c0=c0.grad)
    for name, prm in m.named_parameters():
        res[name] = prm.grad
    return {k: v.detach().numpy() for k, v in res.items()}


def compare_with_torch(p: Problem, want: dict[str, np.ndarray]) -> None:
    y, h_n, c_n, _ = p.run()
    got = {"y": y, "h_n": h_n, **p.grads()}
    if p.lstm:
        got["c_n"] = c_n
    assert sorted(got) == sorted(want)
    for k, w in want.items():
        kind = "out" if k in ("y", "h_n", "c_n") else "grad"
        assert_close(got[k], w, kind, f"{k}: reference vs torch")


TORCH_CELLS = [c for c in CELLS if c != ("rnn", "sigmoid")]  # torch: tanh, relu only
TORCH_GRID = [
    pytest.param(c, L, bidir, id=f"{cell_id(c)}-L{L}-{'bi' if bidir else 'uni'}")
    for c, (L, bidir) in itertools.product(
        TORCH_CELLS, ((1, False), (2, True), (2, False))
    )
]


@pytest.mark.parametrize("cell_nl, L, bidir", TORCH_GRID)
def test_torch_parity(cell_nl, L, bidir, rng):
    torch = pytest.importorskip("torch")
    cell, nl = cell_nl
    p = make_problem(cell, nl, 5, 3, 4, 6, L, bidir, rng=rng)
    compare_with_torch(p, torch_grads(torch, p))


@pytest.mark.parametrize("cell_nl", TORCH_CELLS, ids=cell_id)
@pytest.mark.parametrize("mode", ["unsorted", "short"])
def test_torch_parity_packed_lengths(cell_nl, mode, rng):
    torch = pytest.importorskip("torch")
    cell, nl = cell_nl
    p = make_problem(cell, nl, 6, 4, 3, 5, L=2, bidir=True, lengths=mode, rng=rng)
    compare_with_torch(p, torch_grads(torch, p, p.lengths))


def test_torch_parity_no_bias(rng):
    torch = pytest.importorskip("torch")
    for cell, nl in TORCH_CELLS:
        p = make_problem(cell, nl, 4, 2, 3, 4, L=2, bidir=True, bias=False, rng=rng)
        compare_with_torch(p, torch_grads(torch, p))
