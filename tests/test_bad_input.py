"""Bad and unusual input: every mistake gets a clear exception naming the argument
and the expected vs actual value; unusual-but-valid input (other float dtypes,
non-contiguous or Fortran-order arrays, NaN/Inf) gives the right answer.

Validation lives in the shared base class, so each test runs on the compiled
layers and on the reference layers alike.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from _helpers import (
    CELLS,
    Case,
    assert_results_close,
    assert_results_equal,
    layer_classes,
    make_inputs,
    make_layer,
    make_pair,
    run,
    run_case,
)

T, B, I, H = 4, 3, 5, 6


@pytest.fixture(params=["kernel", "reference"])
def impl(request) -> str:
    return request.param


@pytest.fixture(params=CELLS)
def cell(request) -> str:
    return request.param


def case_for(cell: str, **kw) -> Case:
    base = {"T": T, "B": B, "I": I, "H": H, "L": 2, "bidir": True, "dtype": "float32"}
    base.update(kw)
    return Case(cell, **base)


def layer_for(cell: str, impl: str, **kw):
    return make_layer(case_for(cell, **kw), impl)


def state(cell: str, h, c=None):
    return (h, h if c is None else c) if cell == "lstm" else h


def good(cell: str, rng, **kw):
    return make_inputs(case_for(cell, **kw), rng)


# ----------------------------------------------------------------------- x
@pytest.mark.parametrize("shape, ndim", [((T, B), 2), ((T, B, I, 1), 4), ((I,), 1)])
def test_x_wrong_ndim(cell, impl, shape, ndim):
    layer = layer_for(cell, impl)
    with pytest.raises(
        ValueError, match=rf"x must be 3-D \(T, B, I\), got ndim {ndim}"
    ):
        layer.forward(np.zeros(shape, np.float32))


def test_x_wrong_ndim_batch_first_names_layout(cell, impl):
    layer = layer_for(cell, impl, batch_first=True)
    with pytest.raises(ValueError, match=r"x must be 3-D \(B, T, I\)"):
        layer.forward(np.zeros((B, T), np.float32))


def test_x_wrong_input_size(cell, impl):
    layer = layer_for(cell, impl)
    with pytest.raises(ValueError, match=rf"x must have input size {I}.*got {I + 1}"):
        layer.forward(np.zeros((T, B, I + 1), np.float32))


@pytest.mark.parametrize("shape", [(0, B, I), (T, 0, I), (0, 0, I)])
def test_x_empty_time_or_batch(cell, impl, shape):
    layer = layer_for(cell, impl)
    with pytest.raises(
        ValueError, match=r"x must have T >= 1 and B >= 1, got T=\d+, B=\d+"
    ):
        layer.forward(np.zeros(shape, np.float32))


def test_x_empty_batch_first(cell, impl):
    layer = layer_for(cell, impl, batch_first=True)
    with pytest.raises(ValueError, match=r"got T=4, B=0"):
        layer.forward(np.zeros((0, T, I), np.float32))


@pytest.mark.parametrize(
    "dtype", [np.int32, np.int64, np.uint8, bool, object, np.complex64, np.complex128]
)
def test_x_not_float(cell, impl, dtype):
    layer = layer_for(cell, impl)
    x = np.ones((T, B, I)).astype(dtype)
    with pytest.raises(
        TypeError,
        match=rf"x must be a floating-point array \(float32\), "
        rf"got dtype {np.dtype(dtype).name}",
    ):
        layer.forward(x)


def test_x_nested_list_of_ints(cell, impl):
    layer = layer_for(cell, impl)
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        layer.forward(np.ones((T, B, I), int).tolist())


def test_float64_into_float32_layer_is_converted(cell, impl, rng):
    """float64 x, states, dy and dh_n into a float32 layer are converted: results are
    float32 and equal passing the float32 values."""
    case = case_for(cell, dtype="float32", lengths="unsorted")
    layer = make_layer(case, impl)
    inp = make_inputs(case, rng)
    want = run_case(layer, inp)
    got = run(
        layer,
        inp["x"].astype(np.float64),
        _cast(inp["hx"], np.float64),
        inp["dy"].astype(np.float64),
        _cast(inp["dhx"], np.float64),
        inp["lengths"],
    )
    assert_results_equal(got, want, "float64 inputs into a float32 layer")


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_narrower_float_into_float64_layer_is_converted(cell, impl, dtype, rng):
    case = case_for(cell, dtype="float64")
    layer = make_layer(case, impl)
    inp = make_inputs(case, rng)
    x = inp["x"].astype(dtype)
    want = run(layer, x.astype(np.float64), inp["hx"], inp["dy"], inp["dhx"])
    got = run(layer, x, inp["hx"], inp["dy"], inp["dhx"])
    assert_results_equal(got, want, f"{np.dtype(dtype).name} x into a float64 layer")


def _cast(s, d):
    return tuple(v.astype(d) for v in s) if isinstance(s, tuple) else s.astype(d)


def test_x_list_input_works(cell, impl, rng):
    case = case_for(cell)
    layer = make_layer(case, impl)
    inp = make_inputs(case, rng)
    want = run_case(layer, inp)
    got = run(layer, inp["x"].tolist(), inp["hx"], inp["dy"].tolist(), inp["dhx"])
    assert_results_equal(got, want, "nested lists vs arrays")


# ------------------------------------------------- memory layout of inputs
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("layout", ["strided", "transposed", "fortran", "negative"])
def test_non_contiguous_inputs(cell, impl, layout, batch_first, rng):
    """x, states, dy and dh_n as strided, transposed-view, Fortran-order or reversed
    views give exactly the answer of contiguous copies."""
    case = case_for(cell, batch_first=batch_first, lengths="unsorted")
    layer = make_layer(case, impl)
    inp = make_inputs(case, rng)
    want = run_case(layer, inp)
    odd = {k: _relayout(v, layout) for k, v in inp.items() if k != "lengths"}
    assert not odd["x"].flags.c_contiguous
    got = run(
        layer,
        odd["x"],
        odd["hx"],
        odd["dy"],
        odd["dhx"],
        lengths=_relayout(inp["lengths"], layout),
    )
    assert_results_equal(got, want, f"{layout} inputs vs contiguous")


def test_read_only_and_broadcast_inputs(cell, impl, rng):
    """Read-only arrays and zero-stride broadcasts are fine as inputs."""
    case = case_for(cell, lengths="unsorted")
    layer = make_layer(case, impl)
    inp = make_inputs(case, rng)
    inp["x"][:] = inp["x"][:, :1]  # every sequence gets sequence 0's input
    want = run_case(layer, inp)

    def frozen(a):
        if isinstance(a, tuple):
            return tuple(frozen(v) for v in a)
        a = a.copy()
        a.flags.writeable = False
        return a

    ro = {k: frozen(v) for k, v in inp.items()}
    assert_results_equal(run_case(layer, ro), want, "read-only inputs")
    x = np.broadcast_to(inp["x"][:, :1], inp["x"].shape)
    assert x.strides[1] == 0
    got = run(layer, x, inp["hx"], inp["dy"], inp["dhx"], lengths=inp["lengths"])
    assert_results_equal(got, want, "broadcast x")


def _relayout(a, layout):
    if a is None:
        return None
    if isinstance(a, tuple):
        return tuple(_relayout(v, layout) for v in a)
    if layout == "strided":  # every other element of a bigger buffer
        big = np.zeros((2 * a.shape[0],) + a.shape[1:], a.dtype)
        big[::2] = a
        v = big[::2]
    elif layout == "transposed":  # a transposed view of a transposed copy
        v = np.ascontiguousarray(a.T).T
    elif layout == "fortran":
        v = np.asfortranarray(a)
    else:  # negative strides
        v = np.ascontiguousarray(a[::-1])[::-1]
    assert np.array_equal(v, a)
    return v


# ------------------------------------------------------------------ states
def test_h0_wrong_shape(cell, impl, rng):
    layer = layer_for(cell, impl)
    inp = good(cell, rng)
    h0 = np.zeros((1, B, H), np.float32)  # L*D = 4 expected
    with pytest.raises(
        ValueError,
        match=rf"h0 must have shape \(4, {B}, {H}\), "
        rf"got \(1, {B}, {H}\)",
    ):
        layer.forward(inp["x"], state(cell, h0, np.zeros((4, B, H), np.float32)))


@pytest.mark.parametrize(
    "shape", [(4, B + 1, H), (4, B, H - 1), (4 * B, H), (4, B, H, 1)]
)
def test_h0_wrong_sizes(cell, impl, shape, rng):
    layer = layer_for(cell, impl)
    x = good(cell, rng)["x"]
    with pytest.raises(
        ValueError, match=r"h0 must have shape \(4, 3, 6\), got " + _re_shape(shape)
    ):
        layer.forward(
            x, state(cell, np.zeros(shape, np.float32), np.zeros((4, B, H), np.float32))
        )


def test_c0_wrong_shape():
    layer = make_layer(case_for("lstm"))
    x = np.zeros((T, B, I), np.float32)
    h0 = np.zeros((4, B, H), np.float32)
    with pytest.raises(
        ValueError,
        match=rf"c0 must have shape \(4, {B}, {H}\), "
        rf"got \(4, {B}, {H + 1}\)",
    ):
        layer.forward(x, (h0, np.zeros((4, B, H + 1), np.float32)))


def test_h0_not_float(cell, impl):
    layer = layer_for(cell, impl)
    x = np.zeros((T, B, I), np.float32)
    h0 = np.zeros((4, B, H), np.int64)
    with pytest.raises(TypeError, match="h0 must be a floating-point array"):
        layer.forward(x, state(cell, h0, np.zeros((4, B, H), np.float32)))


@pytest.mark.parametrize("hx", ["array", "triple", "single"], ids=str)
def test_lstm_state_not_a_pair(impl, hx):
    layer = make_layer(case_for("lstm"), impl)
    x = np.zeros((T, B, I), np.float32)
    h0 = np.zeros((4, B, H), np.float32)
    bad = {"array": h0, "triple": (h0, h0, h0), "single": (h0,)}[hx]
    with pytest.raises(TypeError, match=r"LSTM state must be a tuple \(h, c\)"):
        layer.forward(x, bad)


def test_lstm_dstate_not_a_pair(impl):
    layer = make_layer(case_for("lstm"), impl)
    layer.forward(np.zeros((T, B, I), np.float32))
    with pytest.raises(TypeError, match=r"LSTM state must be a tuple \(h, c\)"):
        layer.backward(None, np.zeros((4, B, H), np.float32))


# ----------------------------------------------------------------- lengths
@pytest.mark.parametrize(
    "bad, index", [([0, 2, 3], 0), ([4, 5, 1], 1), ([1, 2, -1], 2)]
)
def test_lengths_out_of_range(cell, impl, bad, index, rng):
    layer = layer_for(cell, impl)
    with pytest.raises(
        ValueError,
        match=rf"lengths must be in \[1, T={T}\], got "
        rf"lengths\[{index}\] = {bad[index]}",
    ):
        layer.forward(good(cell, rng)["x"], lengths=np.array(bad))


@pytest.mark.parametrize("bad", [[1, 2], [1, 2, 3, 4], [[1, 2, 3]], 3])
def test_lengths_wrong_size(cell, impl, bad, rng):
    layer = layer_for(cell, impl)
    with pytest.raises(
        ValueError,
        match=rf"lengths must have shape \({B},\), got " + _re_shape(np.shape(bad)),
    ):
        layer.forward(good(cell, rng)["x"], lengths=np.array(bad))


@pytest.mark.parametrize(
    "bad",
    [np.array([1.0, 2.0, 3.0]), [1.5, 2, 3], np.array([True, True, True])],
    ids=["f64", "list", "bool"],
)
def test_lengths_not_integer(cell, impl, bad, rng):
    layer = layer_for(cell, impl)
    with pytest.raises(TypeError, match=r"lengths must be an integer array, got dtype"):
        layer.forward(good(cell, rng)["x"], lengths=bad)


def test_lengths_valid_after_failure(cell, impl, rng):
    """A rejected call leaves the layer usable and drops no pending forward silently."""
    layer = layer_for(cell, impl)
    inp = good(cell, rng)
    with pytest.raises(ValueError):
        layer.forward(inp["x"], lengths=[0, 1, 1])
    y, _ = layer.forward(inp["x"], lengths=[1, 4, 2])
    assert not y[1:, 0].any() and y[:1, 0].any()


# ---------------------------------------------------------------- backward
def test_backward_without_forward(cell, impl):
    layer = layer_for(cell, impl)
    with pytest.raises(RuntimeError, match=r"backward\(\) needs a preceding forward"):
        layer.backward(None)


def test_second_backward(cell, impl, rng):
    layer = layer_for(cell, impl)
    inp = good(cell, rng)
    layer.forward(inp["x"], inp["hx"])
    layer.backward(inp["dy"], inp["dhx"])
    grads = {k: g.copy() for k, g in layer.grads.items()}
    with pytest.raises(RuntimeError, match=r"backward\(\) needs a preceding forward"):
        layer.backward(inp["dy"], inp["dhx"])
    for k, g in layer.grads.items():
        assert np.array_equal(g, grads[k]), f"failed backward changed grads[{k!r}]"


@pytest.mark.parametrize("batch_first", [False, True])
def test_dy_wrong_shape(cell, impl, batch_first, rng):
    layer = layer_for(cell, impl, batch_first=batch_first)
    inp = good(cell, rng, batch_first=batch_first)
    layer.forward(inp["x"])
    want = (B, T, 2 * H) if batch_first else (T, B, 2 * H)
    for bad in [(T, B, H), (T + 1, B, 2 * H), (T, B), want[::-1]]:
        with pytest.raises(
            ValueError,
            match=r"dy must have shape " + _re_shape(want) + r", got " + _re_shape(bad),
        ):
            layer.backward(np.zeros(bad, np.float32))
    layer.backward(
        np.zeros(want, np.float32)
    )  # a rejected dy keeps the forward pending


def test_dy_not_float(cell, impl, rng):
    layer = layer_for(cell, impl)
    inp = good(cell, rng)
    layer.forward(inp["x"])
    with pytest.raises(TypeError, match=r"dy must be a floating-point array"):
        layer.backward(inp["dy"].astype(np.int32))


def test_dh_n_wrong_shape(cell, impl, rng):
    layer = layer_for(cell, impl)
    inp = good(cell, rng)
    layer.forward(inp["x"])
    bad = np.zeros((2, B, H), np.float32)
    with pytest.raises(
        ValueError,
        match=rf"dh_n must have shape \(4, {B}, {H}\), "
        rf"got \(2, {B}, {H}\)",
    ):
        layer.backward(None, state(cell, bad, np.zeros((4, B, H), np.float32)))


def test_dc_n_wrong_shape(impl, rng):
    layer = make_layer(case_for("lstm"), impl)
    layer.forward(np.zeros((T, B, I), np.float32))
    good_h = np.zeros((4, B, H), np.float32)
    with pytest.raises(ValueError, match=rf"dc_n must have shape \(4, {B}, {H}\)"):
        layer.backward(None, (good_h, np.zeros((4, B + 1, H), np.float32)))


# ------------------------------------------------------------ state_dict
def _expect_unchanged(layer, before):
    after = layer.state_dict()
    assert list(after) == list(before)
    for k in before:
        assert np.array_equal(after[k], before[k]), f"{k} changed by a failed load"


def test_load_state_dict_missing_key(cell, impl):
    layer = layer_for(cell, impl)
    before = layer.state_dict()
    sd = {k: v + 1 for k, v in before.items()}
    del sd["bias_hh_l1_reverse"]
    with pytest.raises(KeyError, match=r"missing keys \['bias_hh_l1_reverse'\]"):
        layer.load_state_dict(sd)
    _expect_unchanged(layer, before)


def test_load_state_dict_extra_key(cell, impl):
    layer = layer_for(cell, impl)
    before = layer.state_dict()
    sd = {k: v + 1 for k, v in before.items()}
    sd["weight_ih_l2"] = np.zeros((3, 3), np.float32)
    with pytest.raises(KeyError, match=r"unexpected keys \['weight_ih_l2'\]"):
        layer.load_state_dict(sd)
    _expect_unchanged(layer, before)


def test_load_state_dict_wrong_shape(cell, impl):
    layer = layer_for(cell, impl)
    before = layer.state_dict()
    sd = {k: v + 1 for k, v in before.items()}
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    sd["weight_hh_l1_reverse"] = np.zeros((G * H, H + 1), np.float32)  # the last entry
    with pytest.raises(
        ValueError,
        match=rf"state_dict\['weight_hh_l1_reverse'\] must have "
        rf"shape \({G * H}, {H}\), got \({G * H}, {H + 1}\)",
    ):
        layer.load_state_dict(sd)
    _expect_unchanged(layer, before)


def test_load_state_dict_not_float(cell, impl):
    layer = layer_for(cell, impl)
    before = layer.state_dict()
    sd = {k: v + 1 for k, v in before.items()}
    sd["bias_ih_l1"] = sd["bias_ih_l1"].astype(np.int64)
    with pytest.raises(
        TypeError, match=r"state_dict\['bias_ih_l1'\] must be a floating"
    ):
        layer.load_state_dict(sd)
    _expect_unchanged(layer, before)


def test_load_state_dict_round_trip_and_takes_effect(cell, impl, rng):
    """A good load replaces every parameter (lists, float64 accepted) and the next
    forward uses them."""
    a = layer_for(cell, impl)
    src = layer_for(cell, impl)
    src.reset_parameters(99)
    sd = {
        k: v.astype(np.float64).tolist()
        if k.startswith("bias")
        else v.astype(np.float64)
        for k, v in src.state_dict().items()
    }
    a.load_state_dict(sd)
    _expect_unchanged(a, src.state_dict())
    inp = good(cell, rng)
    assert_results_equal(run_case(a, inp), run_case(src, inp), "loaded vs source layer")


def test_state_dict_is_a_copy(cell, impl):
    layer = layer_for(cell, impl)
    sd = layer.state_dict()
    before = {k: v.copy() for k, v in sd.items()}
    for v in sd.values():
        v += 1
    _expect_unchanged(layer, before)


# -------------------------------------------------------------- NaN / Inf
@pytest.mark.parametrize("nl", ["tanh", "relu", "sigmoid"])
def test_nan_in_x_propagates(cell, impl, nl, rng):
    """NaN in x[t, b] gives NaN in y from step t on (forward direction) for that
    sequence only; no exception, no crash; backward runs."""
    if cell != "rnn" and nl != "tanh":
        pytest.skip("nonlinearity only applies to RNN")
    case = case_for(cell, L=1, bidir=False, nonlinearity=nl)
    layer = make_layer(case, impl)
    inp = make_inputs(case, rng)
    x = inp["x"].copy()
    x[1, 2, 3] = np.nan
    res = run(layer, x, inp["hx"], inp["dy"], inp["dhx"])
    assert np.isnan(res["y"][1:, 2]).any(axis=-1).all(), "NaN did not reach y[1:, 2]"
    assert np.isfinite(res["y"][:1]).all(), "NaN leaked to earlier steps"
    assert np.isfinite(res["y"][:, :2]).all(), "NaN leaked into other sequences"
    assert np.isnan(res["h_n"][:, 2]).any() and np.isfinite(res["h_n"][:, :2]).all()


def test_nan_in_h0_propagates(cell, impl, rng):
    case = case_for(cell, L=1, bidir=False)
    layer = make_layer(case, impl)
    inp = make_inputs(case, rng)
    h0 = (inp["hx"][0] if cell == "lstm" else inp["hx"]).copy()
    h0[0, 1, 0] = np.nan
    res = run(
        layer,
        inp["x"],
        state(cell, h0, inp["hx"][1] if cell == "lstm" else None),
        inp["dy"],
        inp["dhx"],
    )
    assert np.isnan(res["y"][:, 1]).any(axis=-1).all()
    assert np.isfinite(res["y"][:, [0, 2]]).all()


def test_pm_inf_in_x_gives_nan(cell, impl, rng):
    """+Inf and -Inf in one input vector make inf - inf in the input projection: NaN
    in y for that sequence, not a crash, and not a clamped finite value."""
    case = case_for(cell, L=1, bidir=False)
    layer = make_layer(case, impl)
    layer.params["weight_ih_l0"][0, :2] = 0.5  # row 0 sees inf * 0.5 - inf * 0.5
    inp = make_inputs(case, rng)
    x = inp["x"].copy()
    x[2, 0, 0], x[2, 0, 1] = np.inf, -np.inf
    res = run(layer, x, inp["hx"], inp["dy"], inp["dhx"])
    assert np.isnan(res["y"][2:, 0]).any(), "inf - inf did not give NaN"
    assert np.isfinite(res["y"][:, 1:]).all(), "NaN leaked into other sequences"


@pytest.mark.parametrize("nl", ["tanh", "relu", "sigmoid"])
def test_inf_in_x_matches_reference(cell, nl, rng):
    """A single +Inf saturates the gates: kernel and reference agree on where NaN
    appears and on the finite values (activations at +-Inf are exact limits)."""
    if cell != "rnn" and nl != "tanh":
        pytest.skip("nonlinearity only applies to RNN")
    case = case_for(cell, L=2, bidir=True, dtype="float64", nonlinearity=nl)
    kern, ref = make_pair(case)
    inp = make_inputs(case, rng)
    x = inp["x"].copy()
    x[1, 1, 2] = np.inf
    with np.errstate(all="ignore"):
        want = run(ref, x, inp["hx"], inp["dy"], inp["dhx"])
    got = run(kern, x, inp["hx"], inp["dy"], inp["dhx"])
    for k in ("y", "h_n"):
        assert np.array_equal(np.isnan(got[k]), np.isnan(want[k])), (
            f"NaN pattern of {k}"
        )
    assert_results_close(
        {k: got[k] for k in ("y", "h_n")},
        {k: want[k] for k in ("y", "h_n")},
        "float64",
        what="+Inf in x: kernel vs reference",
    )


# ------------------------------------------------------------ constructor
@pytest.mark.parametrize(
    "kw, exc, match",
    [
        (
            {"hidden_size": 0},
            ValueError,
            r"hidden_size must be a positive integer, got 0",
        ),
        (
            {"hidden_size": -3},
            ValueError,
            r"hidden_size must be a positive integer, got -3",
        ),
        (
            {"hidden_size": 2.5},
            ValueError,
            r"hidden_size must be a positive integer, got 2.5",
        ),
        (
            {"hidden_size": True},
            ValueError,
            r"hidden_size must be a positive integer, got True",
        ),
        (
            {"input_size": 0},
            ValueError,
            r"input_size must be a positive integer, got 0",
        ),
        (
            {"num_layers": 0},
            ValueError,
            r"num_layers must be a positive integer, got 0",
        ),
        ({"dtype": "int32"}, TypeError, r"dtype must be float32 or float64, got int32"),
        (
            {"dtype": "float16"},
            TypeError,
            r"dtype must be float32 or float64, got float16",
        ),
        (
            {"dtype": "complex64"},
            TypeError,
            r"dtype must be float32 or float64, got complex64",
        ),
    ],
    ids=lambda v: (
        str(v) if not isinstance(v, dict) else ",".join(f"{k}={v[k]}" for k in v)
    ),
)
def test_bad_constructor_args(cell, impl, kw, exc, match):
    cls = layer_classes(impl)[cell]
    args = {"input_size": I, "hidden_size": H}
    args.update({k: v for k, v in kw.items() if k in args})
    rest = {k: v for k, v in kw.items() if k not in args}
    with pytest.raises(exc, match=match):
        cls(args["input_size"], args["hidden_size"], **rest)


@pytest.mark.parametrize("nl", ["foo", "Tanh", "", None])
def test_bad_nonlinearity(impl, nl):
    cls = layer_classes(impl)["rnn"]
    with pytest.raises(
        ValueError, match=r"nonlinearity must be one of .*got " + _re(nl)
    ):
        cls(I, H, nonlinearity=nl)


@pytest.mark.parametrize("dtype", ["float32", np.float64, np.dtype("float32")])
def test_good_dtype_spellings(cell, impl, dtype):
    layer = layer_classes(impl)[cell](I, H, dtype=dtype)
    assert layer.dtype == np.dtype(dtype)
    assert all(p.dtype == np.dtype(dtype) for p in layer.params.values())


def _re(v) -> str:
    return re.escape(repr(v))


def _re_shape(shape) -> str:
    return re.escape(str(tuple(shape)))


def test_failed_forward_does_not_break_layer(cell, impl, rng):
    """After any rejected call the layer still computes the same answers."""
    case = case_for(cell)
    layer = make_layer(case, impl)
    inp = make_inputs(case, rng)
    want = run_case(layer, inp)
    for bad in (
        np.zeros((T, B, I + 1), np.float32),
        np.zeros((T, B), np.float32),
        np.zeros((T, B, I), np.int32),
    ):
        with pytest.raises((ValueError, TypeError)):
            layer.forward(bad)
    assert_results_close(run_case(layer, inp), want, "float32", what="after failures")
