"""Python threads calling the kernels at once.

The bindings release the GIL around every kernel call, so Python threads really run
kernels in parallel, each as the master of its own OpenMP team. What is supported
(README, "Thread safety"):

- separate layers (any cells, dtypes, shapes) trained or run from separate threads;
- one layer shared by several threads for inference (``train=False``), and single-step
  generators (``layer.stepper()``) made from one shared layer, one per thread;

and each gives bitwise what the same calls give one at a time. Not supported:
training one layer from several threads at once (a training forward keeps what its
backward needs on the layer), or changing the SIMD path while calls are in flight
(a call then stops with a ValueError about its workspace, never a crash).

The per-cell suite (test_cells.py) runs ``_helpers.check_concurrent`` (three layers
of one cell); these tests mix cells and dtypes, share layers, oversubscribe the
cores and check that the GIL is released.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import rnnkit as rk
from _helpers import (
    Case,
    Results,
    assert_results_equal,
    make_inputs,
    make_layer,
    run_case,
)

# Different cells, dtypes, layouts, lengths; the "wide" ones are big enough that
# each call's OpenMP team has more than one thread (team.h, team_size).
MIXED = [
    Case("rnn", 6, 16, 32, 64, 1, False, False, None, "float32", "relu"),
    Case("lstm", 5, 4, 7, 13, 2, True, False, "unsorted", "float64"),
    Case("gru", 7, 12, 24, 72, 1, False, True, None, "float32"),
    Case("lstm", 8, 16, 32, 64, 1, False, False, "short", "float32"),
    Case("rnn", 4, 3, 5, 9, 3, True, False, "short", "float64", "sigmoid"),
    Case("gru", 3, 5, 6, 11, 2, False, False, None, "float64"),
]


def run_threads(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Runs work(0..n-1) in n threads released together; re-raises any error."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def body(j: int) -> None:
        try:
            barrier.wait()
            results[j] = work(j)
        except BaseException as e:  # noqa: BLE001 (re-raised below)
            errors.append(e)

    threads = [threading.Thread(target=body, args=(j,)) for j in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not any(th.is_alive() for th in threads), "a worker thread hung"
    if errors:
        raise errors[0]
    return results


def infer(layer, inputs: dict) -> Results:
    y, hn = layer.forward(
        inputs["x"], inputs["hx"], lengths=inputs["lengths"], train=False
    )
    out = {"y": np.array(y)}
    if layer.cell == "lstm":
        out["h_n"], out["c_n"] = np.array(hn[0]), np.array(hn[1])
    else:
        out["h_n"] = np.array(hn)
    return out


@pytest.mark.parametrize("kernel_threads", [1, 2])
def test_separate_layers_train_concurrently(kernel_threads, rng, restore_config):
    """Six layers of mixed cells and dtypes, forward + backward from six threads at
    once, three rounds each: bitwise the serial results."""
    rk.set_num_threads(kernel_threads)
    layers = [make_layer(c, seed=10 + j) for j, c in enumerate(MIXED)]
    inputs = [make_inputs(c, rng) for c in MIXED]
    want = [run_case(m, i) for m, i in zip(layers, inputs)]
    got = run_threads(
        len(MIXED), lambda j: [run_case(layers[j], inputs[j]) for _ in range(3)]
    )
    for j, rounds in enumerate(got):
        for k, res in enumerate(rounds):
            assert_results_equal(res, want[j], f"{MIXED[j]}: thread {j} round {k}")


def test_oversubscribed(rng, restore_config):
    """Eight Python threads, each with a 3-thread OpenMP team, on two cores."""
    rk.set_num_threads(3)
    cases = [MIXED[j % 4] for j in range(8)]
    layers = [make_layer(c, seed=j) for j, c in enumerate(cases)]
    inputs = [make_inputs(c, rng) for c in cases]
    want = [run_case(m, i) for m, i in zip(layers, inputs)]
    got = run_threads(8, lambda j: run_case(layers[j], inputs[j]))
    for j in range(8):
        assert_results_equal(got[j], want[j], f"{cases[j]}: thread {j}")


@pytest.mark.parametrize("case", [MIXED[1], MIXED[2], MIXED[3]], ids=str)
@pytest.mark.parametrize("kernel_threads", [1, 2])
def test_shared_layer_inference(case, kernel_threads, rng, restore_config):
    """One layer serving four threads (train=False), each with its own inputs and
    with one read-only input shared by all: bitwise the serial results."""
    rk.set_num_threads(kernel_threads)
    layer = make_layer(case, seed=3)
    own = [make_inputs(case, rng) for _ in range(4)]
    shared = make_inputs(case, rng)
    shared["x"].setflags(write=False)
    want_own = [infer(layer, i) for i in own]
    want_shared = infer(layer, shared)
    params = {k: v.copy() for k, v in layer.state_dict().items()}

    def work(j: int) -> list[Results]:
        out = []
        for _ in range(4):
            out.append(infer(layer, own[j]))
            out.append(infer(layer, shared))
        return out

    for j, rounds in enumerate(run_threads(4, work)):
        for k, res in enumerate(rounds):
            want = want_own[j] if k % 2 == 0 else want_shared
            assert_results_equal(res, want, f"{case}: thread {j} call {k}")
    for k, v in layer.state_dict().items():
        assert np.array_equal(v, params[k]), f"{k} changed by inference"


def test_shared_layer_inference_while_others_train(rng, restore_config):
    """Inference on a shared layer from two threads while two other threads train
    their own layers."""
    rk.set_num_threads(2)
    shared_case, train_case = MIXED[3], MIXED[2]
    shared = make_layer(shared_case, seed=1)
    trained = [make_layer(train_case, seed=s) for s in (2, 3)]
    si = [make_inputs(shared_case, rng) for _ in range(2)]
    ti = [make_inputs(train_case, rng) for _ in range(2)]
    want_s = [infer(shared, i) for i in si]
    want_t = [run_case(m, i) for m, i in zip(trained, ti)]

    def work(j: int) -> list[Results]:
        if j < 2:
            return [infer(shared, si[j]) for _ in range(4)]
        return [run_case(trained[j - 2], ti[j - 2]) for _ in range(2)]

    got = run_threads(4, work)
    for j in range(4):
        want = want_s[j] if j < 2 else want_t[j - 2]
        for k, res in enumerate(got[j]):
            assert_results_equal(res, want, f"thread {j} call {k}")


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_steppers_of_one_layer_in_threads(cell, rng, restore_config):
    """Each thread steps its own stepper made from one shared layer."""
    rk.set_num_threads(2)
    layer = make_layer(Case(cell, 1, 3, 24, 96, 2, dtype="float32"), seed=5)
    xs = [rng.standard_normal((6, 3, 24)).astype(np.float32) for _ in range(4)]

    def steps(j: int) -> np.ndarray:
        st = layer.stepper(batch_size=3)
        return np.stack([st.step(x) for x in xs[j]])

    want = [steps(j) for j in range(4)]
    got = run_threads(4, steps)
    for j in range(4):
        assert np.array_equal(got[j], want[j]), f"{cell} stepper in thread {j}"


def test_kernels_release_the_gil(rng, restore_config):
    """While one thread is inside a long kernel call, another Python thread keeps
    running: it makes a good share of the progress it makes alone. With the GIL
    held it would make almost none."""
    rk.set_num_threads(1)
    layer = rk.LSTM(128, 128, seed=0)
    x = rng.standard_normal((8, 32, 128)).astype(np.float32)
    t0 = time.perf_counter()
    layer.forward(x, train=False)
    per_step = (time.perf_counter() - t0) / x.shape[0]
    T = int(min(max(0.4 / max(per_step, 1e-6), 8), 4000))
    x = rng.standard_normal((T, 32, 128)).astype(np.float32)

    def spin(seconds: float) -> int:
        n, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            n += 1
        return n

    started, done = threading.Event(), threading.Event()
    span: list[float] = []

    def work() -> None:
        started.set()
        t = time.perf_counter()
        layer.forward(x, train=False)
        span.append(time.perf_counter() - t)
        done.set()

    th = threading.Thread(target=work)
    th.start()
    started.wait()
    ticks, t = 0, time.perf_counter()
    while not done.is_set():
        ticks += 1
    elapsed = time.perf_counter() - t
    th.join()
    alone = spin(0.1) / 0.1  # loop iterations per second without the kernel
    share = ticks / (alone * max(span[0], 1e-9))
    assert span[0] > 0.05, f"kernel call too short to judge ({span[0]:.3f}s)"
    assert share > 0.1, (
        f"the main thread ran {ticks} loop iterations in {elapsed:.3f}s while the "
        f"kernel ran {span[0]:.3f}s ({share:.1%} of its solo rate): the GIL looks held"
    )
