"""Every cell (RNN tanh/relu/sigmoid, LSTM, GRU): compiled kernels vs the reference.

One suite for every cell in the registry (``rnnkit._cells.CELLS``): the compiled
layers (``rnnkit.RNN``, ...) against the NumPy reference (``rnnkit.reference.RNN``,
...) on every output and every gradient, float32 and float64, over layers x
directions x layouts x lengths x odd sizes; chunked and single-step runs;
variable-length semantics; every SIMD path and thread count; the inference path
and the layer protocol. Each test is parametrised over the cells (their
nonlinearities included, from the registry); what only one cell has (RNN's choice
of nonlinearity, LSTM's ``(h, c)`` state) is at the end. The shared machinery is in
``_helpers.py``. Adding a cell to the registry adds it here.
"""

from __future__ import annotations

import numpy as np
import pytest

import rnnkit as rk
from _helpers import (
    CELLS,
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

#: (cell, nonlinearity) for every cell and every nonlinearity it accepts.
CELL_VARIANTS = [(cell, nl) for cell in CELLS for nl in variants(cell)]


def small(cell: str, nl: str = "tanh", **kw) -> Case:
    base = {"T": 5, "B": 3, "I": 7, "H": 13, "dtype": "float64", "nonlinearity": nl}
    base.update(kw)
    return Case(cell, **base)


def per_cell(make) -> list:
    """``make(cell)`` -> cases, for every cell, as pytest params named by the case."""
    return params([case for cell in CELLS for case in make(cell)])


def per_variant(make) -> list:
    """``make(cell, nl)`` -> cases, for every (cell, nonlinearity)."""
    return params([case for cell, nl in CELL_VARIANTS for case in make(cell, nl)])


def variant_id(v: tuple[str, str]) -> str:
    cell, nl = v
    return cell if len(variants(cell)) == 1 else f"{cell}-{nl}"


# ------------------------------------------------------------------- parity
@pytest.mark.parametrize("case", per_cell(grid_cases))
def test_parity_grid(case, rng):
    check_parity(case, rng)


@pytest.mark.parametrize("case", per_cell(edge_cases))
def test_parity_edge_sizes(case, rng):
    check_parity(case, rng)


@pytest.mark.parametrize("case", per_cell(large_cases))
def test_parity_large(case, rng):
    check_parity(case, rng)


@pytest.mark.parametrize("case", per_cell(nobias_cases))
def test_parity_no_bias(case, rng):
    check_parity(case, rng)


@pytest.mark.parametrize("cell, nl", CELL_VARIANTS, ids=map(variant_id, CELL_VARIANTS))
def test_same_seed_same_params(cell, nl):
    check_same_seed(small(cell, nl, L=2, bidir=True))
    check_same_seed(small(cell, nl, dtype="float32"))


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # optional: the core suite needs only pytest
    given = None


if given is not None:

    @pytest.mark.parametrize("cell", CELLS)
    @settings(max_examples=25, deadline=None, derandomize=True)
    @given(data=st.data(), seed=st.integers(0, 2**32 - 1))
    def test_parity_random_configs(cell, data, seed):
        """Kernel vs reference on random small configurations (reproducible draws)."""
        case = data.draw(case_strategy(cell), label="case")
        check_parity(case, np.random.default_rng(seed))


# ------------------------------------------------- chunks and single steps
def chunk_cases(cell: str, nl: str) -> list[Case]:
    return [
        small(cell, nl, L=L, batch_first=bf, dtype=dt)
        for L in (1, 2)
        for bf in (False, True)
        for dt in ("float32", "float64")
    ]


@pytest.mark.parametrize("case", per_variant(chunk_cases))
def test_single_steps_equal_one_call(case, rng):
    check_chunks(case, rng, [1] * case.T)


@pytest.mark.parametrize("case", per_variant(chunk_cases))
@pytest.mark.parametrize("splits", [[2, 3], [4, 1]], ids=["2+3", "4+1"])
def test_two_chunks_equal_one_call(case, splits, rng):
    check_chunks(case, rng, splits)


# ------------------------------------------------------- variable lengths
def length_cases(cell: str, nl: str) -> list[Case]:
    cases = [
        small(cell, nl, T=6, B=5, L=L, bidir=bi, lengths=mode)
        for L in (1, 2)
        for bi in (False, True)
        for mode in ("unsorted", "short")
    ]
    return cases + [
        small(cell, nl, T=6, B=5, L=2, bidir=True, lengths="unsorted", dtype="float32")
    ]


@pytest.mark.parametrize("impl", ["kernel", "reference"])
@pytest.mark.parametrize("case", per_variant(length_cases))
def test_lengths_equal_each_sequence_alone(case, impl, rng):
    check_lengths_alone(case, rng, impl)


@pytest.mark.parametrize(
    "case",
    per_cell(
        lambda cell: [
            small(cell, L=2, bidir=True, lengths=None),
            small(cell, L=1, bidir=True, lengths="unsorted"),
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
def simd_cases(cell: str) -> list[Case]:
    cases = [
        Case(cell, 11, 9, 20, 67, 2, True, False, "unsorted", "float32", nl)
        for nl in variants(cell)
    ]
    return cases + [
        Case(cell, 11, 9, 20, 67, 1, False, True, None, "float64"),
        Case(cell, 3, 1, 7, 13, 2, True, False, None, "float32"),
        blocking_cases(cell)[0],
        # Many rows, small W_hh: threads can own blocks of batch rows (8 threads too).
        Case(cell, 5, 100, 6, 17, 2, True, False, "unsorted", "float32"),
        Case(cell, 4, 100, 6, 9, 1, False, True, "short", "float64"),
        # Few rows, big steps: threads own tiles of hidden units, a barrier per step.
        Case(cell, 4, 5, 9, 200, 2, True, False, "unsorted", "float32"),
    ]


@pytest.mark.parametrize("simd", rk.simd_paths())
@pytest.mark.parametrize("case", per_cell(simd_cases))
def test_simd_path_and_threads(case, simd, rng, restore_config):
    check_simd_threads(case, rng, restore_config, simd)


# ---------------------------------------------------------- layer protocol
def protocol_cases(cell: str) -> list[Case]:
    cases = [
        small(cell, nl, L=2, bidir=True, lengths="unsorted", dtype=dt)
        for nl in variants(cell)
        for dt in ("float32", "float64")
    ]
    return cases + [small(cell, batch_first=True, lengths="short")]


PROTOCOL_CASES = per_cell(protocol_cases)


@pytest.mark.parametrize("case", PROTOCOL_CASES)
def test_inference_path(case, rng):
    check_inference(case, rng)


@pytest.mark.parametrize("case", PROTOCOL_CASES)
def test_backward_accumulates_and_zero_grad(case, rng):
    check_accumulates(case, rng)


@pytest.mark.parametrize("case", PROTOCOL_CASES)
def test_no_side_effects(case, rng):
    check_no_side_effects(case, rng)


@pytest.mark.parametrize("case", PROTOCOL_CASES)
def test_shape_changes_between_calls(case, rng):
    check_shape_changes(case, rng)


@pytest.mark.parametrize("case", PROTOCOL_CASES)
def test_none_means_zeros(case, rng):
    check_none_defaults(case, rng)


@pytest.mark.parametrize("case", PROTOCOL_CASES)
def test_y_matches_h_n(case, rng):
    check_y_matches_h_n(case, rng)


@pytest.mark.parametrize("cell", CELLS)
def test_interleaved_layers(cell, rng):
    case = small(cell, L=2, bidir=True, lengths="unsorted", dtype="float32")
    check_interleaved(case, rng)


@pytest.mark.parametrize("cell", CELLS)
def test_concurrent_python_threads(cell, rng):
    check_concurrent(
        Case(cell, 11, 9, 20, 67, 2, True, False, "unsorted", "float32"), rng
    )


@pytest.mark.parametrize("cell", CELLS)
def test_long_sequence(cell, rng):
    """T=150: long time loops, large reserve buffers, state carried many steps."""
    case = small(cell, T=150, B=2, I=3, H=5, L=2, bidir=True, lengths="unsorted")
    check_parity(case, rng)


@pytest.mark.parametrize("cell", CELLS)
def test_call_is_forward(cell, rng):
    check_call_is_forward(small(cell, L=2, bidir=True), rng)


# -------------------------------------------------------------- RNN only
@pytest.mark.parametrize(
    "nl, lo, hi", [("tanh", -1, 1), ("relu", 0, np.inf), ("sigmoid", 0, 1)]
)
def test_rnn_nonlinearity_range(nl, lo, hi, rng):
    """Outputs lie in the range of the chosen nonlinearity (zeros past each end)."""
    case = small("rnn", nl, T=6, B=5, L=2, bidir=True, lengths="short", dtype="float32")
    res = run_case(make_layer(case), make_inputs(case, rng), backward=False)
    assert res["y"].min() >= min(lo, 0) and res["y"].max() <= hi
    if nl == "relu":
        assert (res["y"] > 1).any(), "relu outputs never exceed 1: is it really relu?"


# ------------------------------------------------------------- LSTM only
def test_lstm_state_as_list_or_tuple(rng):
    case = small("lstm", L=2, bidir=True)
    layer = make_layer(case)
    inputs = make_inputs(case, rng)
    want = run_case(layer, inputs)
    got = run_case(layer, dict(inputs, hx=list(inputs["hx"]), dhx=list(inputs["dhx"])))
    assert_results_equal(got, want, "state as list vs tuple")


def test_lstm_c_state_matters(rng):
    """c0 and dc_n reach the result (not silently ignored)."""
    case = small("lstm", L=2, bidir=True)
    layer = make_layer(case)
    inputs = make_inputs(case, rng)
    h0, c0 = inputs["hx"]
    dhn, dcn = inputs["dhx"]
    a = run_case(layer, inputs)
    b = run_case(layer, dict(inputs, hx=(h0, 0 * c0), dhx=(dhn, 0 * dcn)))
    assert not np.allclose(a["y"], b["y"]) and not np.allclose(a["dx"], b["dx"])
    assert not np.allclose(a["c_n"], a["h_n"])
