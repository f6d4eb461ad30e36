"""GRU: compiled kernels vs the NumPy reference.

Per-cell checks of the compiled kernels (``rnnkit.GRU``) against the NumPy
reference (``rnnkit.reference.GRU``): every output and every gradient, float32
and float64, over layers x directions x layouts x lengths x odd sizes; chunked
and single-step runs; variable-length semantics; every SIMD path and thread
count; the inference path. The shared machinery is in ``_helpers.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import rnnkit as rk
from _helpers import (
    Case,
    assert_results_equal,
    blocking_cases,
    case_strategy,
    check_accumulates,
    check_call_is_forward,
    check_chunks,
    check_concurrent,
    check_inference,
    check_interleaved,
    check_lengths_alone,
    check_no_side_effects,
    check_none_defaults,
    check_parity,
    check_same_seed,
    check_shape_changes,
    check_simd_threads,
    check_y_matches_h_n,
    edge_cases,
    grid_cases,
    large_cases,
    make_inputs,
    make_layer,
    nobias_cases,
    params,
    run_case,
    variants,
)

CELL = "gru"
NLS = variants(CELL)  # RNN: tanh, relu, sigmoid; LSTM/GRU: the cell's own gates


def small(nl: str = "tanh", **kw) -> Case:
    base = {"T": 5, "B": 3, "I": 7, "H": 13, "dtype": "float64", "nonlinearity": nl}
    base.update(kw)
    return Case(CELL, **base)


# ------------------------------------------------------------------- parity
@pytest.mark.parametrize("case", params(grid_cases(CELL)))
def test_parity_grid(case, rng):
    check_parity(case, rng)


@pytest.mark.parametrize("case", params(edge_cases(CELL)))
def test_parity_edge_sizes(case, rng):
    check_parity(case, rng)


@pytest.mark.parametrize("case", params(large_cases(CELL)))
def test_parity_large(case, rng):
    check_parity(case, rng)


@pytest.mark.parametrize("case", params(nobias_cases(CELL)))
def test_parity_no_bias(case, rng):
    check_parity(case, rng)


@pytest.mark.parametrize("nl", NLS)
def test_same_seed_same_params(nl):
    check_same_seed(small(nl, L=2, bidir=True))
    check_same_seed(small(nl, dtype="float32"))


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # optional: the core suite needs only pytest
    given = None


if given is not None:

    @settings(max_examples=25, deadline=None, derandomize=True)
    @given(case=case_strategy(CELL), seed=st.integers(0, 2**32 - 1))
    def test_parity_random_configs(case, seed):
        """Kernel vs reference on random small configurations (reproducible draws)."""
        check_parity(case, np.random.default_rng(seed))


# ------------------------------------------------- chunks and single steps
CHUNK_CASES = [
    small(nl, L=L, batch_first=bf, dtype=dt)
    for nl in NLS
    for L in (1, 2)
    for bf in (False, True)
    for dt in ("float32", "float64")
]


@pytest.mark.parametrize("case", params(CHUNK_CASES))
def test_single_steps_equal_one_call(case, rng):
    check_chunks(case, rng, [1] * case.T)


@pytest.mark.parametrize("case", params(CHUNK_CASES))
@pytest.mark.parametrize("splits", [[2, 3], [4, 1]], ids=["2+3", "4+1"])
def test_two_chunks_equal_one_call(case, splits, rng):
    check_chunks(case, rng, splits)


# ------------------------------------------------------- variable lengths
LENGTH_CASES = [
    small(nl, T=6, B=5, L=L, bidir=bi, lengths=mode, dtype=dt)
    for nl in NLS
    for L in (1, 2)
    for bi in (False, True)
    for mode in ("unsorted", "short")
    for dt in ("float64",)
]
LENGTH_CASES += [
    small(nl, T=6, B=5, L=2, bidir=True, lengths="unsorted", dtype="float32")
    for nl in NLS
]


@pytest.mark.parametrize("impl", ["kernel", "reference"])
@pytest.mark.parametrize("case", params(LENGTH_CASES))
def test_lengths_equal_each_sequence_alone(case, impl, rng):
    check_lengths_alone(case, rng, impl)


@pytest.mark.parametrize(
    "case",
    params(
        [
            small(L=2, bidir=True, lengths=None),
            small(L=1, bidir=True, lengths="unsorted"),
        ]
    ),
)
def test_full_lengths_equal_no_lengths(case, rng):
    """lengths == T for every sequence is the same as no lengths (list, int32 too)."""
    layer = make_layer(case)
    inputs = dict(make_inputs(case, rng), lengths=None)
    want = run_case(layer, inputs)
    for lengths in (
        np.full(case.B, case.T),
        np.full(case.B, case.T, np.int32),
        [case.T] * case.B,
    ):
        got = run_case(layer, dict(inputs, lengths=lengths))
        assert_results_equal(got, want, f"lengths={lengths!r} vs None")


# ------------------------------------------------- SIMD paths and threads
SIMD_CASES = [
    Case(CELL, 11, 9, 20, 67, 2, True, False, "unsorted", "float32", nl) for nl in NLS
]
SIMD_CASES += [
    Case(CELL, 11, 9, 20, 67, 1, False, True, None, "float64"),
    Case(CELL, 3, 1, 7, 13, 2, True, False, None, "float32"),
    blocking_cases(CELL)[0],
    # Many rows, small W_hh: threads can own blocks of batch rows (for 8 threads too).
    Case(CELL, 5, 100, 6, 17, 2, True, False, "unsorted", "float32"),
    Case(CELL, 4, 100, 6, 9, 1, False, True, "short", "float64"),
    # Few rows, big steps: threads own tiles of hidden units, a barrier per step.
    Case(CELL, 4, 5, 9, 200, 2, True, False, "unsorted", "float32"),
]


@pytest.mark.parametrize("simd", rk.simd_paths())
@pytest.mark.parametrize("case", params(SIMD_CASES))
def test_simd_path_and_threads(case, simd, rng, restore_config):
    check_simd_threads(case, rng, restore_config, simd)


# ---------------------------------------------------------- layer protocol
PROTOCOL_CASES = [
    small(nl, L=2, bidir=True, lengths="unsorted", dtype=dt)
    for nl in NLS
    for dt in ("float32", "float64")
]
PROTOCOL_CASES += [small(batch_first=True, lengths="short")]


@pytest.mark.parametrize("case", params(PROTOCOL_CASES))
def test_inference_path(case, rng):
    check_inference(case, rng)


@pytest.mark.parametrize("case", params(PROTOCOL_CASES))
def test_backward_accumulates_and_zero_grad(case, rng):
    check_accumulates(case, rng)


@pytest.mark.parametrize("case", params(PROTOCOL_CASES))
def test_no_side_effects(case, rng):
    check_no_side_effects(case, rng)


@pytest.mark.parametrize("case", params(PROTOCOL_CASES))
def test_shape_changes_between_calls(case, rng):
    check_shape_changes(case, rng)


@pytest.mark.parametrize("case", params(PROTOCOL_CASES))
def test_none_means_zeros(case, rng):
    check_none_defaults(case, rng)


def test_interleaved_layers(rng):
    check_interleaved(small(L=2, bidir=True, lengths="unsorted", dtype="float32"), rng)


def test_concurrent_python_threads(rng):
    check_concurrent(
        Case(CELL, 11, 9, 20, 67, 2, True, False, "unsorted", "float32"), rng
    )


def test_long_sequence(rng):
    """T=150: long time loops, large reserve buffers, state carried many steps."""
    check_parity(small(T=150, B=2, I=3, H=5, L=2, bidir=True, lengths="unsorted"), rng)


def test_call_is_forward(rng):
    check_call_is_forward(small(L=2, bidir=True), rng)


@pytest.mark.parametrize("case", params(PROTOCOL_CASES))
def test_y_matches_h_n(case, rng):
    check_y_matches_h_n(case, rng)
