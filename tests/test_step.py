"""Single steps (``layer.stepper``): the generation path against whole sequences."""

import numpy as np
import pytest

import rnnkit as rk
from conftest import tol
from rnnkit import _cells, reference

# (cell, nonlinearity); None for cells without a choice.
CELLS = [
    (cell, nl if len(spec.nonlinearities) > 1 else None)
    for cell, spec in _cells.CELLS.items()
    for nl in spec.nonlinearities
]


def make(cls_mod, cell, nl, I, H, L, dtype, batch_first=False):
    cls = getattr(cls_mod, _cells.get(cell).class_name)
    kw = {"nonlinearity": nl} if nl is not None else {}
    return cls(I, H, num_layers=L, dtype=dtype, seed=3, batch_first=batch_first, **kw)


@pytest.mark.parametrize("cell,nl", CELLS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "B,I,H,L", [(1, 7, 13, 1), (1, 16, 16, 2), (5, 3, 33, 3), (30, 9, 20, 2)]
)
def test_steps_equal_sequence(cell, nl, dtype, B, I, H, L, rng):
    layer = make(rk, cell, nl, I, H, L, dtype)
    T = 6
    x = rng.standard_normal((T, B, I)).astype(dtype)
    shape = (L, B, H)
    h0 = rng.standard_normal(shape).astype(dtype) * 0.5
    c0 = rng.standard_normal(shape).astype(dtype) * 0.5
    hx = (h0, c0) if _cells.get(cell).has_cell_state else h0
    y, state = layer.forward(x, hx, train=False)
    st = layer.stepper(batch_size=B, hx=hx)
    ys = np.stack([st.step(x[t]) for t in range(T)])
    rtol, atol = tol(dtype, "step")
    np.testing.assert_allclose(ys, y, rtol=rtol, atol=atol)
    h, c = st.get_state()
    hn = state[0] if _cells.get(cell).has_cell_state else state
    np.testing.assert_allclose(h, hn, rtol=rtol, atol=atol)
    if _cells.get(cell).has_cell_state:
        np.testing.assert_allclose(c, state[1], rtol=rtol, atol=atol)
    else:
        assert c is None


@pytest.mark.parametrize("cell,nl", CELLS)
def test_kernel_stepper_matches_reference_stepper(cell, nl, rng):
    fast = make(rk, cell, nl, 5, 11, 2, "float64")
    slow = make(reference, cell, nl, 5, 11, 2, "float64")
    a, b = fast.stepper(2), slow.stepper(2)
    rtol, atol = tol("float64", "step")
    for _ in range(4):
        x = rng.standard_normal((2, 5))
        np.testing.assert_allclose(a.step(x), b.step(x), rtol=rtol, atol=atol)


def test_stepper_threads_and_simd_paths_bitwise(rng):
    layer = rk.LSTM(40, 200, num_layers=2, seed=0)
    xs = rng.standard_normal((5, 1, 40)).astype(np.float32)
    old_t, old_s = rk.get_num_threads(), rk.get_simd()
    try:
        outs = {}
        for simd in rk.simd_paths():
            rk.set_simd(simd)
            for n in (1, 2):
                rk.set_num_threads(n)
                st = layer.stepper()
                outs[simd, n] = np.stack([st.step(x) for x in xs])
        rtol, atol = tol("float32", "step")
        first = rk.simd_paths()[0]
        for simd in rk.simd_paths():
            assert np.array_equal(outs[simd, 1], outs[simd, 2])
            np.testing.assert_allclose(
                outs[simd, 1], outs[first, 1], rtol=rtol, atol=atol
            )
    finally:
        rk.set_num_threads(old_t)
        rk.set_simd(old_s)


def test_stepper_snapshot_and_bad_input():
    layer = rk.GRU(4, 6, seed=0)
    st = layer.stepper(batch_size=2)
    with pytest.raises(ValueError, match=r"x must have shape \(2, 4\), got \(3, 4\)"):
        st.step(np.zeros((3, 4), np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        st.step(np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match="batch_size"):
        layer.stepper(batch_size=0)
    with pytest.raises(ValueError, match="unidirectional"):
        rk.GRU(4, 6, bidirectional=True).stepper()
    with pytest.raises(ValueError, match=r"h must have shape \(1, 2, 6\)"):
        st.set_state(np.zeros((1, 3, 6), np.float32))
    # float64 input is converted; the state advances
    y1 = st.step(np.ones((2, 4)))
    y2 = st.step(np.ones((2, 4)))
    assert y1.dtype == np.float32 and not np.array_equal(y1, y2)
