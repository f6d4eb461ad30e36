"""Helpers shared by the per-cell suite (test_cells.py) and the cross-cell tests.

A ``Case`` names one configuration (cell, sizes, layout, dtype, lengths); the
``check_*`` functions run it on the compiled kernels and on the NumPy reference
(or on the kernels twice) and compare *everything* the layer returns: ``y``,
the final states, ``dx``, ``dh0`` (``dc0``) and every parameter gradient.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pytest

from conftest import FD_TOL, tol
from rnnkit import _cells

CELLS = tuple(_cells.CELLS)  # every registered cell, in the registry's order
DTYPES = ("float32", "float64")

Results = dict[str, np.ndarray]


# ---------------------------------------------------------- finite differences
def fd_derivative(
    f: Callable[[], float],
    x: np.ndarray,
    direction: np.ndarray | None = None,
    *,
    index: int | None = None,
    eps: float = FD_TOL["eps"],
) -> float:
    """Centered difference ``(f(x + eps v) - f(x - eps v)) / (2 eps)`` in float64.

    ``x`` is perturbed in place (``f`` reads it, takes no arguments) and restored
    bitwise afterwards. ``v`` is ``direction`` (same shape as ``x``) or, with
    ``index``, the unit vector of flat entry ``index``.
    """
    if (direction is None) == (index is None):
        raise ValueError("pass exactly one of direction and index")
    old = x.copy()
    try:
        if index is not None:
            flat = x.reshape(-1)
            assert np.shares_memory(flat, x), "x must be contiguous"
            flat[index] = old.reshape(-1)[index] + eps
            up = f()
            flat[index] = old.reshape(-1)[index] - eps
            down = f()
        else:
            x[...] = old + eps * direction
            up = f()
            x[...] = old - eps * direction
            down = f()
    finally:
        x[...] = old
    return float((up - down) / (2 * eps))


def fd_gradient(
    f: Callable[[], float], x: np.ndarray, eps: float = FD_TOL["eps"]
) -> np.ndarray:
    """The whole gradient of ``f`` at ``x`` by centered differences, entry by entry
    (``x`` perturbed in place and restored, as in :func:`fd_derivative`)."""
    g = np.zeros(x.shape, np.float64)
    for i in range(x.size):
        g.reshape(-1)[i] = fd_derivative(f, x, index=i, eps=eps)
    return g


# --------------------------------------------------------------------- cases
@dataclasses.dataclass(frozen=True)
class Case:
    cell: str
    T: int
    B: int
    I: int
    H: int
    L: int = 1
    bidir: bool = False
    batch_first: bool = False
    lengths: str | None = None  # None, "unsorted" (max == T) or "short" (max < T)
    dtype: str = "float64"
    nonlinearity: str = "tanh"
    bias: bool = True

    def __str__(self) -> str:
        parts = [
            self.cell
            if len(variants(self.cell)) == 1
            else f"{self.cell}-{self.nonlinearity}",
            f"T{self.T}B{self.B}I{self.I}H{self.H}L{self.L}",
            "bi" if self.bidir else "uni",
            "bf" if self.batch_first else "tm",
            f"len-{self.lengths}" if self.lengths else "nolen",
            self.dtype.replace("float", "f"),
        ]
        if not self.bias:
            parts.append("nobias")
        return "-".join(parts)

    @property
    def D(self) -> int:
        return 2 if self.bidir else 1


def variants(cell: str) -> list[str]:
    """The nonlinearities a cell is tested with: every one it accepts (only RNN has a
    choice; the others accept just ``"tanh"``)."""
    return list(_cells.get(cell).nonlinearities)


def has_cell_state(cell: str) -> bool:
    """True when the cell's state is a pair ``(h, c)`` (LSTM)."""
    return _cells.get(cell).has_cell_state


def grid_cases(cell: str) -> list[Case]:
    """Full cross product on one small odd shape (T=5, B=3, I=7, H=13)."""
    return [
        Case(cell, 5, 3, 7, 13, L, bidir, bf, lengths, dtype, nl)
        for nl, L, bidir, bf, lengths, dtype in itertools.product(
            variants(cell),
            (1, 2, 3),
            (False, True),
            (False, True),
            (None, "unsorted"),
            DTYPES,
        )
    ]


def edge_cases(cell: str) -> list[Case]:
    """Degenerate sizes: B=1, T=1, H=1, I=1, sizes just off a vector width."""
    shapes = [  # T, B, I, H
        (1, 1, 7, 13),
        (1, 4, 3, 5),
        (6, 1, 1, 1),
        (4, 2, 17, 9),
        (3, 5, 16, 15),
    ]
    cases = []
    for nl, (T, B, I, H), L, bidir, lengths, dtype in itertools.product(
        variants(cell), shapes, (1, 2), (False, True), (None, "short"), DTYPES
    ):
        if lengths == "short" and T == 1:
            lengths = "unsorted"  # every length is 1
        cases.append(Case(cell, T, B, I, H, L, bidir, False, lengths, dtype, nl))
    return cases


def large_cases(cell: str) -> list[Case]:
    """A few spot checks big enough for several vector tiles and thread chunks."""
    cases = []
    for nl in variants(cell):
        cases += [
            Case(cell, 11, 9, 20, 67, 2, True, False, "unsorted", "float32", nl),
            Case(cell, 11, 9, 20, 67, 2, True, True, "short", "float64", nl),
        ]
    cases += [
        Case(cell, 7, 16, 33, 64, 1, False, False, None, "float32"),
        Case(cell, 9, 17, 40, 96, 1, True, True, "unsorted", "float32"),
        Case(cell, 5, 33, 8, 31, 3, False, False, "short", "float64"),
        *blocking_cases(cell),
    ]
    return cases


def wide_hidden(cell: str, panel: int = 4096) -> int:
    """The smallest H whose gate rows G*H exceed one ``panel``-wide GEMM N panel."""
    return panel // _cells.get(cell).gates + 1


def blocking_cases(cell: str) -> list[Case]:
    """Sizes past the GEMM's cache blocking: every reduction (I=300, D*H=260 into
    layer 1, T*B=297 in the weight gradients, G*H in dx) longer than one 256-deep
    K block, and G*H past a 4096-wide N panel."""
    return [
        Case(cell, 9, 33, 300, 130, 2, True, False, "unsorted", "float32"),
        Case(cell, 2, 3, 5, wide_hidden(cell), 1, False, False, None, "float32"),
    ]


def nobias_cases(cell: str) -> list[Case]:
    return [
        Case(cell, 5, 3, 7, 13, L, bidir, False, lengths, dtype, nl, bias=False)
        for nl, (L, bidir, lengths), dtype in itertools.product(
            variants(cell), ((1, False, None), (2, True, "unsorted")), DTYPES
        )
    ]


def case_strategy(cell: str):
    """Hypothesis strategy over small random configurations of ``cell``."""
    from hypothesis import strategies as st

    return st.builds(
        Case,
        cell=st.just(cell),
        T=st.integers(1, 8),
        B=st.integers(1, 6),
        I=st.integers(1, 20),
        H=st.integers(1, 20),
        L=st.integers(1, 3),
        bidir=st.booleans(),
        batch_first=st.booleans(),
        lengths=st.sampled_from([None, "unsorted", "short"]),
        dtype=st.sampled_from(DTYPES),
        nonlinearity=st.sampled_from(variants(cell)),
        bias=st.booleans(),
    )


def params(cases: Iterable[Case]) -> list[Any]:
    return [pytest.param(c, id=str(c)) for c in cases]


# -------------------------------------------------------------------- layers
def layer_classes(impl: str) -> dict[str, type]:
    if impl == "kernel":
        import rnnkit as mod
    elif impl == "reference":
        import rnnkit.reference as mod
    else:
        raise ValueError(impl)
    return {name: getattr(mod, spec.class_name) for name, spec in _cells.CELLS.items()}


def make_layer(case: Case, impl: str = "kernel", seed: int = 7, **overrides: Any):
    cls = layer_classes(impl)[case.cell]
    kw: dict[str, Any] = {
        "num_layers": case.L,
        "bias": case.bias,
        "batch_first": case.batch_first,
        "bidirectional": case.bidir,
        "dtype": case.dtype,
        "seed": seed,
    }
    if len(variants(case.cell)) > 1:
        kw["nonlinearity"] = case.nonlinearity
    kw.update(overrides)
    return cls(case.I, case.H, **kw)


def make_pair(case: Case, seed: int = 7):
    """(kernel layer, reference layer) holding identical parameters."""
    kern = make_layer(case, "kernel", seed)
    ref = make_layer(case, "reference", seed)
    ref.load_state_dict(kern.state_dict())
    return kern, ref


# -------------------------------------------------------------------- inputs
def make_lengths(mode: str | None, T: int, B: int) -> np.ndarray | None:
    """Deterministic lengths: "unsorted" spans 1..T, neither ascending nor descending
    for B >= 3; "short" is the same clipped to T-1, so every sequence ends early."""
    if mode is None:
        return None
    base = np.rint(np.linspace(1, T, B)).astype(np.int64) if B > 1 else np.array([T])
    if B >= 3:
        base = np.roll(base, 1)
    if mode == "short":
        base = np.minimum(base, max(T - 1, 1))
    return base


def make_inputs(case: Case, rng: np.random.Generator) -> dict[str, Any]:
    """x, initial state, dy and final-state gradients for ``case`` (in the layer's
    layout)."""
    dt = np.dtype(case.dtype)
    T, B = case.T, case.B
    S = (case.L * case.D, B, case.H)
    xs = (B, T, case.I) if case.batch_first else (T, B, case.I)
    ys = (B, T, case.D * case.H) if case.batch_first else (T, B, case.D * case.H)

    def randn(shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dt)

    x, dy = randn(xs), randn(ys)
    h0, dhn = randn(S, 0.5), randn(S)
    if has_cell_state(case.cell):
        hx, dhx = (h0, randn(S)), (dhn, randn(S))
    else:
        hx, dhx = h0, dhn
    return {
        "x": x,
        "hx": hx,
        "dy": dy,
        "dhx": dhx,
        "lengths": make_lengths(case.lengths, T, B),
    }


# ----------------------------------------------------------------- run/compare
def run(
    layer,
    x,
    hx=None,
    dy=None,
    dhx=None,
    lengths=None,
    backward: bool = True,
    zero_grad: bool = True,
) -> Results:
    """One forward (and backward) pass; every result copied into a flat dict."""
    if zero_grad:
        layer.zero_grad()
    y, hn = layer.forward(x, hx, lengths=lengths)
    out: Results = {"y": np.array(y)}
    if has_cell_state(layer.cell):
        out["h_n"], out["c_n"] = np.array(hn[0]), np.array(hn[1])
    else:
        out["h_n"] = np.array(hn)
    if backward:
        dx, dh0 = layer.backward(dy, dhx)
        out["dx"] = np.array(dx)
        if has_cell_state(layer.cell):
            out["dh0"], out["dc0"] = np.array(dh0[0]), np.array(dh0[1])
        else:
            out["dh0"] = np.array(dh0)
        for name, g in layer.grads.items():
            out["d" + name] = np.array(g)
    return out


def run_case(layer, inputs: dict[str, Any], backward: bool = True) -> Results:
    return run(
        layer,
        inputs["x"],
        inputs["hx"],
        inputs["dy"],
        inputs["dhx"],
        inputs["lengths"],
        backward,
    )


def _kind(key: str) -> str:
    return "out" if key in ("y", "h_n", "c_n") else "grad"


def _describe(key: str, a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> str:
    if a.shape != b.shape:
        return f"{key}: shape {a.shape} != expected {b.shape}"
    if a.dtype != b.dtype:
        return f"{key}: dtype {a.dtype} != expected {b.dtype}"
    with np.errstate(invalid="ignore"):
        err = np.abs(a.astype(np.float64) - b.astype(np.float64))
        bad = ~(err <= atol + rtol * np.abs(b.astype(np.float64)))
    bad &= ~((np.isnan(a) & np.isnan(b)) | (a == b))  # NaN == NaN, inf == inf
    if not bad.any():
        return ""
    idx = np.unravel_index(
        np.argmax(np.where(bad, np.nan_to_num(err, nan=np.inf), -1)), a.shape
    )
    return (
        f"{key}: {int(bad.sum())}/{a.size} elements off,"
        f" worst at {tuple(map(int, idx))}:"
        f" got {a[idx]!r}, expected {b[idx]!r} (max abs err {np.nanmax(err):.3g},"
        f" rtol={rtol:g}, atol={atol:g})"
    )


def assert_results_close(
    got: Results,
    want: Results,
    dtype: str | np.dtype,
    what: str = "kernel vs reference",
) -> None:
    """Every entry of ``want`` present in ``got`` and within TOL[dtype]."""
    assert sorted(got) == sorted(want), f"{what}: keys {sorted(got)} != {sorted(want)}"
    problems = []
    for key in want:
        rtol, atol = tol(dtype, _kind(key))
        msg = _describe(key, np.asarray(got[key]), np.asarray(want[key]), rtol, atol)
        if msg:
            problems.append(msg)
    if problems:
        pytest.fail(
            f"{what}: {len(problems)} mismatching result(s):\n  "
            + "\n  ".join(problems),
            pytrace=False,
        )


def assert_results_equal(got: Results, want: Results, what: str) -> None:
    """Bitwise equality of every entry (NaN == NaN)."""
    assert sorted(got) == sorted(want), f"{what}: keys {sorted(got)} != {sorted(want)}"
    problems = []
    for key in want:
        a, b = np.asarray(got[key]), np.asarray(want[key])
        if (
            a.shape != b.shape
            or a.dtype != b.dtype
            or not np.array_equal(a, b, equal_nan=True)
        ):
            n = int((a != b).sum()) if a.shape == b.shape else a.size
            diff = (
                np.nanmax(np.abs(a.astype(np.float64) - b))
                if a.shape == b.shape
                else float("nan")
            )
            problems.append(
                f"{key}: {n}/{b.size} elements differ (max abs diff {diff:.3g})"
            )
    if problems:
        pytest.fail(
            f"{what}: not bitwise identical:\n  " + "\n  ".join(problems), pytrace=False
        )


# -------------------------------------------------------------------- checks
def check_parity(case: Case, rng: np.random.Generator) -> None:
    """Kernel and reference agree on y, final states and every gradient."""
    kern, ref = make_pair(case)
    inputs = make_inputs(case, rng)
    want = run_case(ref, inputs)
    got = run_case(kern, inputs)
    check_shapes(case, got)
    assert_results_close(got, want, case.dtype)


def check_shapes(case: Case, res: Results) -> None:
    dt = np.dtype(case.dtype)
    S = (case.L * case.D, case.B, case.H)
    ys = (
        (case.B, case.T, case.D * case.H)
        if case.batch_first
        else (case.T, case.B, case.D * case.H)
    )
    xs = ys[:2] + (case.I,)
    expected = {"y": ys, "h_n": S, "dx": xs, "dh0": S}
    if has_cell_state(case.cell):
        expected.update(c_n=S, dc0=S)
    for key, shape in expected.items():
        if key in res:
            assert res[key].shape == shape, f"{key} shape {res[key].shape} != {shape}"
    for key, arr in res.items():
        assert arr.dtype == dt, f"{key} dtype {arr.dtype} != {dt}"


def _state_at(hx: Any, sl: Any) -> Any:
    if hx is None:
        return None
    if isinstance(hx, tuple):
        return tuple(_state_at(h, sl) for h in hx)
    return hx[sl]


def check_chunks(case: Case, rng: np.random.Generator, splits: list[int]) -> None:
    """Running the sequence as consecutive chunks (one layer object per chunk, state
    carried forward, state gradient carried backward) equals one call over all T:
    y, final states, dx, dh0 and the summed parameter gradients."""
    assert not case.bidir and case.lengths is None and sum(splits) == case.T
    whole = make_layer(case)
    inputs = make_inputs(case, rng)
    want = run_case(whole, inputs)

    tax = 1 if case.batch_first else 0
    bounds = np.cumsum([0] + splits)
    layers = [make_layer(case) for _ in splits]
    ys, hx = [], inputs["hx"]
    for layer, a, b in zip(layers, bounds[:-1], bounds[1:]):
        sl = (slice(None), slice(a, b)) if case.batch_first else (slice(a, b),)
        y, hx = layer.forward(inputs["x"][sl], hx)
        ys.append(np.array(y))
    got: Results = {"y": np.concatenate(ys, axis=tax)}
    if has_cell_state(case.cell):
        got["h_n"], got["c_n"] = np.array(hx[0]), np.array(hx[1])
    else:
        got["h_n"] = np.array(hx)

    dxs, dhx = [], inputs["dhx"]
    for layer, a, b in reversed(list(zip(layers, bounds[:-1], bounds[1:]))):
        sl = (slice(None), slice(a, b)) if case.batch_first else (slice(a, b),)
        dx, dhx = layer.backward(np.ascontiguousarray(inputs["dy"][sl]), dhx)
        dxs.append(np.array(dx))
    got["dx"] = np.concatenate(dxs[::-1], axis=tax)
    if has_cell_state(case.cell):
        got["dh0"], got["dc0"] = np.array(dhx[0]), np.array(dhx[1])
    else:
        got["dh0"] = np.array(dhx)
    for name in whole.grads:
        got["d" + name] = sum(np.array(layer.grads[name]) for layer in layers)
    assert_results_close(got, want, case.dtype, what=f"chunks {splits} vs one call")


def check_lengths_alone(
    case: Case, rng: np.random.Generator, impl: str = "kernel"
) -> None:
    """A variable-length batch equals running each sequence alone on its own steps:
    y (and zeros past each end), h_n at each sequence's own last step, dx (zeros past
    each end, whatever dy holds there), dh0, and parameter gradients (summed)."""
    assert case.lengths is not None and not case.batch_first
    layer = make_layer(case, impl)
    inputs = make_inputs(case, rng)
    lengths = inputs["lengths"]
    batch = run_case(layer, inputs)  # dy is nonzero on the padded steps too

    alone: Results = {k: np.zeros_like(v) for k, v in batch.items()}
    for b, n in enumerate(lengths):
        one = run(
            layer,
            inputs["x"][:n, b : b + 1],
            _state_at(inputs["hx"], np.s_[:, b : b + 1]),
            inputs["dy"][:n, b : b + 1],
            _state_at(inputs["dhx"], np.s_[:, b : b + 1]),
        )
        for key in ("y", "dx"):
            alone[key][:n, b : b + 1] = one[key]
        for key in ("h_n", "c_n", "dh0", "dc0"):
            if key in one:
                alone[key][:, b : b + 1] = one[key]
        for key in one:
            if key.startswith(("dweight", "dbias")):
                alone[key] += one[key]
    assert_results_close(
        batch,
        alone,
        case.dtype,
        what=f"{impl}: batch with lengths {lengths.tolist()} vs each sequence alone",
    )
    # Past-the-end outputs and input gradients are exactly zero, not merely small.
    for b, n in enumerate(lengths):
        assert not batch["y"][n:, b].any(), (
            f"y[{n}:, {b}] is not zero (lengths[{b}]={n})"
        )
        assert not batch["dx"][n:, b].any(), (
            f"dx[{n}:, {b}] is not zero (lengths[{b}]={n})"
        )


def check_simd_threads(
    case: Case,
    rng: np.random.Generator,
    rk: Any,
    simd: str,
    threads: Iterable[int] = (1, 2, 3, 8),
) -> None:
    """On one SIMD path: bitwise identical results for every thread count (including
    more threads than cores or work items), and within tolerance of the reference."""
    kern, ref = make_pair(case)
    inputs = make_inputs(case, rng)
    want = run_case(ref, inputs)
    rk.set_simd(simd)
    assert rk.get_simd() == simd
    results = {}
    for n in threads:
        rk.set_num_threads(n)
        assert rk.get_num_threads() == n
        results[n] = run_case(kern, inputs)
    first, *rest = threads
    for n in rest:
        assert_results_equal(
            results[n],
            results[first],
            what=f"simd={simd}: {n} threads vs {first} thread(s)",
        )
    assert_results_close(
        results[first], want, case.dtype, what=f"simd={simd} vs reference"
    )


def check_inference(case: Case, rng: np.random.Generator) -> None:
    """train=False gives the training path's y and final states; backward then
    raises."""
    layer = make_layer(case)
    inputs = make_inputs(case, rng)
    train = run_case(layer, inputs, backward=False)
    y, hn = layer.forward(
        inputs["x"], inputs["hx"], lengths=inputs["lengths"], train=False
    )
    infer: Results = {"y": np.array(y)}
    if has_cell_state(case.cell):
        infer["h_n"], infer["c_n"] = np.array(hn[0]), np.array(hn[1])
    else:
        infer["h_n"] = np.array(hn)
    assert_results_close(infer, train, case.dtype, what="train=False vs train=True")
    with pytest.raises(RuntimeError, match="backward"):
        layer.backward(inputs["dy"], inputs["dhx"])
    # An inference forward also drops a pending training forward.
    layer.forward(inputs["x"], inputs["hx"], lengths=inputs["lengths"], train=True)
    layer.forward(inputs["x"], inputs["hx"], lengths=inputs["lengths"], train=False)
    with pytest.raises(RuntimeError, match="backward"):
        layer.backward(inputs["dy"], inputs["dhx"])


def check_accumulates(case: Case, rng: np.random.Generator) -> None:
    """backward adds into layer.grads; zero_grad clears them."""
    layer = make_layer(case)
    inputs = make_inputs(case, rng)
    once = run_case(layer, inputs)
    layer.forward(inputs["x"], inputs["hx"], lengths=inputs["lengths"])
    layer.backward(inputs["dy"], inputs["dhx"])
    twice = {"d" + k: np.array(g) for k, g in layer.grads.items()}
    assert_results_close(
        twice,
        {k: 2 * v for k, v in once.items() if k in twice},
        case.dtype,
        what="grads after two backwards vs 2x one",
    )
    layer.zero_grad()
    for name, g in layer.grads.items():
        assert not g.any(), f"zero_grad left {name} nonzero"


def check_no_side_effects(case: Case, rng: np.random.Generator) -> None:
    """Inputs are not written; returned arrays are not overwritten by later calls;
    parameters do not change in forward/backward."""
    layer = make_layer(case)
    inputs = make_inputs(case, rng)
    before = _copy_tree(inputs)
    params = layer.state_dict()
    first = run_case(layer, inputs)
    # Keep references (not copies) to what the first call returned.
    y1, hn1 = layer.forward(inputs["x"], inputs["hx"], lengths=inputs["lengths"])
    dx1, dh1 = layer.backward(inputs["dy"], inputs["dhx"])
    kept = _copy_tree((y1, hn1, dx1, dh1))
    _assert_tree_equal(inputs, before, "inputs changed by forward/backward")
    for name, p in layer.state_dict().items():
        assert np.array_equal(p, params[name]), f"parameter {name} changed"
    # A second call with other inputs must not clobber the first call's results.
    other = make_inputs(case, rng)
    run_case(layer, other)
    _assert_tree_equal(
        (y1, hn1, dx1, dh1), kept, "results of a call were overwritten by the next call"
    )
    assert np.array_equal(first["y"], kept[0])


def _copy_tree(t: Any) -> Any:
    if isinstance(t, dict):
        return {k: _copy_tree(v) for k, v in t.items()}
    if isinstance(t, (tuple, list)):
        return type(t)(_copy_tree(v) for v in t)
    return None if t is None else np.array(t, copy=True)


def _assert_tree_equal(a: Any, b: Any, msg: str, path: str = "") -> None:
    if isinstance(b, dict):
        for k in b:
            _assert_tree_equal(a[k], b[k], msg, f"{path}[{k!r}]")
    elif isinstance(b, (tuple, list)):
        for i, (u, v) in enumerate(zip(a, b)):
            _assert_tree_equal(u, v, msg, f"{path}[{i}]")
    elif b is None:
        assert a is None
    else:
        assert np.array_equal(np.asarray(a), b, equal_nan=True), f"{msg}: {path}"


def check_shape_changes(case: Case, rng: np.random.Generator) -> None:
    """One layer object, successive calls with different T and B (workspace regrowth
    and shrink), each matching a fresh reference."""
    kern, ref = make_pair(case)
    for T, B in ((case.T, case.B), (case.T + 3, case.B + 4), (1, 1), (case.T, case.B)):
        c = dataclasses.replace(case, T=T, B=B)
        inputs = make_inputs(c, rng)
        assert_results_close(
            run_case(kern, inputs),
            run_case(ref, inputs),
            case.dtype,
            what=f"T={T} B={B} after other shapes",
        )


def check_none_defaults(case: Case, rng: np.random.Generator) -> None:
    """hx=None, dy=None and dh_n=None mean zeros."""
    layer = make_layer(case)
    inputs = make_inputs(case, rng)
    S = (case.L * case.D, case.B, case.H)
    zeros = np.zeros(S, case.dtype)
    zstate = (zeros, zeros) if has_cell_state(case.cell) else zeros
    dy0 = np.zeros_like(inputs["dy"])
    a = run(layer, inputs["x"], None, None, inputs["dhx"], inputs["lengths"])
    b = run(layer, inputs["x"], zstate, dy0, inputs["dhx"], inputs["lengths"])
    assert_results_equal(a, b, "hx=None, dy=None vs explicit zeros")
    a = run(layer, inputs["x"], inputs["hx"], inputs["dy"], None, inputs["lengths"])
    b = run(layer, inputs["x"], inputs["hx"], inputs["dy"], zstate, inputs["lengths"])
    assert_results_equal(a, b, "dh_n=None vs explicit zeros")


def check_call_is_forward(case: Case, rng: np.random.Generator) -> None:
    layer = make_layer(case)
    inputs = make_inputs(case, rng)
    y1, h1 = layer.forward(inputs["x"], inputs["hx"])
    y2, h2 = layer(inputs["x"], inputs["hx"])
    assert_results_equal(
        {"y": np.array(y2), "h": np.array(h2)},
        {"y": np.array(y1), "h": np.array(h1)},
        "layer(x, h0) vs forward",
    )


def check_same_seed(case: Case) -> None:
    """Same seed, same initial parameters in the kernel and reference layers."""
    a = make_layer(case, "kernel", seed=123).state_dict()
    b = make_layer(case, "reference", seed=123).state_dict()
    assert list(a) == list(b)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    c = make_layer(case, "kernel", seed=124).state_dict()
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def check_y_matches_h_n(case: Case, rng: np.random.Generator) -> None:
    """The top layer's h_n is y at each sequence's last step (forward direction) and
    y at step 0 (reverse direction), bitwise: both are the same stored state."""
    layer = make_layer(case)
    inputs = make_inputs(case, rng)
    res = run_case(layer, inputs, backward=False)
    y = res["y"].transpose(1, 0, 2) if case.batch_first else res["y"]  # (T, B, D*H)
    lengths = inputs["lengths"]
    last = np.full(case.B, case.T - 1) if lengths is None else np.asarray(lengths) - 1
    top = (case.L - 1) * case.D
    H, b = case.H, np.arange(case.B)
    assert np.array_equal(res["h_n"][top], y[last, b, :H]), "h_n[top] != y[last step]"
    if case.bidir:
        assert np.array_equal(res["h_n"][top + 1], y[0, :, H:]), (
            "h_n[top, reverse] != y[0]"
        )


def check_interleaved(case: Case, rng: np.random.Generator) -> None:
    """Two layers' forwards and backwards interleaved (A fwd, B fwd, A bwd, B bwd)
    give exactly what each gives alone: nothing a backward needs lives in shared
    scratch space."""
    a, b = make_layer(case, seed=1), make_layer(case, seed=2)
    ia, ib = make_inputs(case, rng), make_inputs(case, rng)
    want_a, want_b = run_case(a, ia), run_case(b, ib)
    a.zero_grad()
    b.zero_grad()
    got_a, got_b = {}, {}
    got_a["y"] = np.array(a.forward(ia["x"], ia["hx"], lengths=ia["lengths"])[0])
    got_b["y"] = np.array(b.forward(ib["x"], ib["hx"], lengths=ib["lengths"])[0])
    got_a["dx"] = np.array(a.backward(ia["dy"], ia["dhx"])[0])
    got_b["dx"] = np.array(b.backward(ib["dy"], ib["dhx"])[0])
    for got, want, layer, name in ((got_a, want_a, a, "A"), (got_b, want_b, b, "B")):
        got.update({"d" + k: np.array(g) for k, g in layer.grads.items()})
        want = {k: want[k] for k in got}
        assert_results_equal(got, want, f"layer {name} interleaved vs alone")


def check_concurrent(case: Case, rng: np.random.Generator, workers: int = 3) -> None:
    """Layers driven from several Python threads at once (the GIL is released
    around the kernels) compute exactly what they compute one at a time."""
    import threading

    layers = [make_layer(case, seed=s) for s in range(workers)]
    inputs = [make_inputs(case, rng) for _ in range(workers)]
    want = [run_case(m, i) for m, i in zip(layers, inputs)]
    got: list[list[Results]] = [[] for _ in range(workers)]
    errors: list[BaseException] = []

    def work(j: int) -> None:
        try:
            for _ in range(5):
                got[j].append(run_case(layers[j], inputs[j]))
        except BaseException as e:  # noqa: BLE001 (re-raised in the test thread)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(j,)) for j in range(workers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    for j in range(workers):
        for k, res in enumerate(got[j]):
            assert_results_equal(res, want[j], f"worker {j}, call {k} vs sequential")
