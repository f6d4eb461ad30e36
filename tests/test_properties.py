"""Property-based tests (hypothesis) across all three cells, and the caller's
floating-point state.

The per-cell suite (test_cells.py) already draws random small configurations of one
cell on the default SIMD path and thread count (``test_parity_random_configs``, via
``_helpers.case_strategy``). These tests reuse that strategy and add what it leaves
fixed: every SIMD path this CPU runs, thread counts (with shapes large enough that
the kernels really split the work), arbitrary per-row lengths, denormal and large
input scales, a SIMD switch between forward and backward, and random chunkings of
the time axis. Draws are derandomized, so a failure reproduces on every run.


The last part checks that a kernel call leaves the calling thread's MXCSR as it was
(the kernels set flush-to-zero and denormals-are-zero in their own threads only):
denormal arithmetic in Python still gives denormals after forward, backward and
single steps, on every path and thread count.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import rnnkit as rk
from _helpers import (
    CELLS,
    Case,
    assert_results_close,
    assert_results_equal,
    case_strategy,
    check_chunks,
    check_parity,
    make_inputs,
    make_layer,
    make_pair,
    run_case,
)

hypothesis = pytest.importorskip("hypothesis")
given, settings, st = hypothesis.given, hypothesis.settings, hypothesis.strategies

PROPS = settings(max_examples=60, deadline=None, derandomize=True, print_blob=True)

# The kernels use one thread for calls under 2**20 multiply-adds (recurrent.h,
# team_size); "wide" draws are above it so that 2 and 3 threads really split work.
WIDE = {"T": (6, 10), "B": (9, 24), "I": (8, 40), "H": (33, 72)}


class _Config:
    """Saves the SIMD path and thread count, restores them on exit."""

    def __enter__(self):
        self.saved = rk.get_simd(), rk.get_num_threads()
        return self

    def __exit__(self, *exc):
        rk.set_simd(self.saved[0])
        rk.set_num_threads(self.saved[1])


# Found by the property test below: the reference's sigmoid went wrong for
# LSTM float32 with hidden_size 1 and batch > 1 (np.negative in place on a (B, 1)
# column view, a NumPy 2.4 bug); the kernels were right.
@pytest.mark.parametrize("T, B, I", [(1, 2, 1), (3, 7, 8)])
def test_lstm_float32_hidden_1(T, B, I, rng):
    check_parity(Case("lstm", T, B, I, 1, dtype="float32"), rng)


@st.composite
def configs(draw, wide_ok: bool = True) -> Case:
    """A random Case of any cell: the per-cell strategy's small shapes (sizes 1 and
    odd sizes included), sometimes replaced by shapes wide enough for threads."""
    cell = draw(st.sampled_from(CELLS))
    case = draw(case_strategy(cell))
    if wide_ok and draw(st.integers(0, 3)) == 0:
        sizes = {k: draw(st.integers(*r)) for k, r in WIDE.items()}
        case = dataclasses.replace(case, L=min(case.L, 2), **sizes)
    return case


@st.composite
def lengths_for(draw, case: Case) -> np.ndarray | None:
    """None, or arbitrary per-row lengths in 1..T (any order, repeats allowed)."""
    if case.lengths is None:
        return None
    return np.array(
        draw(st.lists(st.integers(1, case.T), min_size=case.B, max_size=case.B)),
        dtype=np.int64,
    )


def _scaled(inputs: dict, case: Case, scale: str) -> dict:
    """Inputs with x and the initial state rescaled: 'denormal' puts every value in
    the subnormal range of the dtype, 'large' saturates the gates."""
    if scale == "normal":
        return inputs
    dt = np.dtype(case.dtype)
    factor = np.finfo(dt).tiny / 4 if scale == "denormal" else 40.0

    def f(a):
        if a is None:
            return None
        if isinstance(a, tuple):
            return tuple(f(v) for v in a)
        return (a * dt.type(factor)).astype(dt)

    out = dict(inputs)
    out["x"], out["hx"] = f(inputs["x"]), f(inputs["hx"])
    if scale == "denormal":
        assert np.any((out["x"] != 0) & (np.abs(out["x"]) < np.finfo(dt).tiny))
    return out


@PROPS
@given(
    data=st.data(),
    case=configs(),
    simd=st.sampled_from(rk.simd_paths()),
    threads=st.sampled_from([1, 2, 3]),
    scale=st.sampled_from(["normal", "normal", "denormal", "large"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_config_path_and_threads_matches_reference(
    data, case, simd, threads, scale, seed
):
    """Forward and backward of a random configuration, on a random SIMD path and
    thread count, agree with the NumPy reference: y, final states, dx, dh0 (dc0)
    and every parameter gradient; and bitwise with the same path on one thread."""
    rng = np.random.default_rng(seed)
    inputs = _scaled(make_inputs(case, rng), case, scale)
    lengths = data.draw(lengths_for(case), label="lengths")
    if lengths is not None:
        inputs["lengths"] = lengths
    kern, ref = make_pair(case)
    want = run_case(ref, inputs)
    with _Config():
        rk.set_simd(simd)
        rk.set_num_threads(threads)
        got = run_case(kern, inputs)
        rk.set_num_threads(1)
        one = run_case(kern, inputs) if threads != 1 else got
    what = f"{case} simd={simd} threads={threads} scale={scale}"
    assert_results_equal(got, one, what=f"{what} vs 1 thread")
    if scale == "large" and case.dtype == "float32":
        # Saturated gates: 1 - tanh(a)**2 and s * (1 - s) cancel, so float32
        # gradients of any two summation orders differ past the table's
        # tolerance. The forward is well conditioned; gradients must be finite.
        for key, value in got.items():
            assert np.isfinite(value).all() or not np.isfinite(want[key]).all(), key
        got = {k: v for k, v in got.items() if not k.startswith("d")}
        want = {k: want[k] for k in got}
    assert_results_close(got, want, case.dtype, what=f"{what} vs reference")


@settings(max_examples=15, deadline=None, derandomize=True, print_blob=True)
@given(
    case=configs(wide_ok=False),
    paths=st.tuples(st.sampled_from(rk.simd_paths()), st.sampled_from(rk.simd_paths())),
    seed=st.integers(0, 2**32 - 1),
)
def test_simd_switch_between_forward_and_backward(case, paths, seed):
    """What a training forward keeps for backward does not depend on the SIMD path:
    forward on one path, set_simd, backward on another, still the reference's
    gradients."""
    rng = np.random.default_rng(seed)
    inputs = make_inputs(case, rng)
    kern, ref = make_pair(case)
    want = run_case(ref, inputs)
    with _Config():
        rk.set_simd(paths[0])
        kern.zero_grad()
        kern.forward(inputs["x"], inputs["hx"], lengths=inputs["lengths"])
        rk.set_simd(paths[1])
        dx, _ = kern.backward(inputs["dy"], inputs["dhx"])
    got = {"dx": np.array(dx)}
    got.update({"d" + k: np.array(g) for k, g in kern.grads.items()})
    assert_results_close(
        got,
        {k: want[k] for k in got},
        case.dtype,
        what=f"{case}: forward on {paths[0]}, backward on {paths[1]}",
    )


@settings(max_examples=15, deadline=None, derandomize=True, print_blob=True)
@given(data=st.data(), case=configs(wide_ok=False), seed=st.integers(0, 2**32 - 1))
def test_random_chunks_equal_one_call(data, case, seed):
    """Splitting the sequence anywhere (state carried forward, state gradient
    carried backward) gives one call's outputs and gradients."""
    case = dataclasses.replace(case, bidir=False, lengths=None, T=max(case.T, 2))
    cuts = data.draw(
        st.lists(st.integers(1, case.T - 1), unique=True, max_size=3), label="cuts"
    )
    bounds = [0, *sorted(cuts), case.T]
    splits = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
    check_chunks(case, np.random.default_rng(seed), splits)


@settings(max_examples=15, deadline=None, derandomize=True, print_blob=True)
@given(case=configs(), seed=st.integers(0, 2**32 - 1))
def test_inference_equals_training_forward(case, seed):
    """train=False returns exactly the training forward's y and final states."""
    rng = np.random.default_rng(seed)
    layer = make_layer(case)
    inputs = make_inputs(case, rng)
    train = run_case(layer, inputs, backward=False)
    y, hn = layer.forward(
        inputs["x"], inputs["hx"], lengths=inputs["lengths"], train=False
    )
    infer = {"y": np.array(y)}
    if case.cell == "lstm":
        infer["h_n"], infer["c_n"] = np.array(hn[0]), np.array(hn[1])
    else:
        infer["h_n"] = np.array(hn)
    assert_results_equal(infer, train, f"{case}: train=False vs train=True")


# ------------------------------------------------- the caller's floating-point state
def _fp_state() -> dict[str, bool]:
    """What this thread's MXCSR does to denormals, observed from Python.

    FTZ (flush to zero) makes a denormal *result* zero; DAZ (denormals are zero)
    makes a denormal *operand* zero. Python floats and NumPy scalars compute with
    SSE in the calling thread, so both show here.
    """
    f32, f64 = np.float32, np.float64
    return {
        "f32 result denormal (no FTZ)": bool(f32(1e-30) * f32(1e-10) != 0),
        "f32 operand denormal (no DAZ)": bool(f32(1e-40) * f32(1e10) != 0),
        "f64 result denormal (no FTZ)": bool(f64(1e-300) * f64(1e-15) != 0),
        "f64 operand denormal (no DAZ)": bool(f64(1e-310) * f64(1e10) != 0),
        "python float denormal": (1e-300 * 1e-15) != 0.0 and (1e-310 * 1e10) != 0.0,
        "array op denormal": bool(
            (np.full(64, 1e-40, np.float32) * np.float32(1e10)).all()
        ),
        "round to nearest": bool(
            f32(1) + f32(2.0**-24) == f32(1) and f32(1) + f32(3 * 2.0**-25) > f32(1)
        ),
    }


def _denormal_inputs(case: Case, rng: np.random.Generator) -> dict:
    return _scaled(make_inputs(case, rng), case, "denormal")


FP_CASES = [
    Case("lstm", 4, 2, 5, 7, 2, True, False, "unsorted", "float32"),
    Case("gru", 3, 3, 4, 6, 1, False, False, None, "float64"),
    Case("rnn", 3, 2, 3, 5, 1, False, False, None, "float32", "relu"),
    # wide enough for a multi-threaded team
    Case("lstm", 8, 16, 32, 64, 1, False, False, None, "float32"),
]


def test_fp_state_probe_sees_denormals():
    """The probe itself: in a normal Python process every check holds."""
    state = _fp_state()
    assert all(state.values()), state


@pytest.mark.parametrize("case", FP_CASES, ids=str)
@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_calls_leave_caller_fp_state(case, threads, rng, restore_config):
    before = _fp_state()
    assert all(before.values()), before
    for simd in rk.simd_paths():
        rk.set_simd(simd)
        rk.set_num_threads(threads)
        layer = make_layer(case)
        inputs = _denormal_inputs(case, rng)
        run_case(layer, inputs)
        assert _fp_state() == before, f"after forward+backward on {simd}/{threads}"
        layer.forward(inputs["x"], inputs["hx"], train=False)
        assert _fp_state() == before, f"after inference on {simd}/{threads}"
        if not case.bidir:
            stepper = layer.stepper(case.B)
            stepper.step(inputs["x"][0])
            assert _fp_state() == before, f"after stepper.step on {simd}/{threads}"


def test_fp_state_of_other_python_threads_unchanged(rng, restore_config):
    """Kernels called from one Python thread leave another thread's state alone,
    and the worker's own state is intact after its call."""
    import threading

    case = FP_CASES[-1]
    layer = make_layer(case)
    inputs = _denormal_inputs(case, rng)
    seen: dict[str, dict[str, bool]] = {}
    rk.set_num_threads(2)

    def work() -> None:
        run_case(layer, inputs)
        seen["worker"] = _fp_state()

    th = threading.Thread(target=work)
    th.start()
    seen["main during"] = _fp_state()
    th.join()
    seen["main after"] = _fp_state()
    for who, state in seen.items():
        assert all(state.values()), (who, state)


@pytest.mark.parametrize("case", FP_CASES[:3], ids=str)
def test_denormal_inputs_match_reference(case, rng, restore_config):
    """Flushing denormals inside the kernels changes results by at most the size of
    a denormal: within tolerance of the reference, which keeps them."""
    kern, ref = make_pair(case)
    inputs = _denormal_inputs(case, rng)
    want = run_case(ref, inputs)
    for simd in rk.simd_paths():
        rk.set_simd(simd)
        assert_results_close(
            run_case(kern, inputs), want, case.dtype, what=f"denormal inputs, {simd}"
        )
