"""Thread policy and short calls: the default thread count, bitwise identical results
for 1/2/3/8 threads on every SIMD path (the direct path of calls of a few steps of a
few rows included), and edits of the weights taking effect on the very next call.

The direct path (forward on ``B * T <= 8`` row-steps) reads the caller's unpacked
weights; these tests pin it the way ``test_cells.py`` pins the packed path.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import rnnkit as rk
from _helpers import (
    CELLS,
    Case,
    assert_results_equal,
    check_simd_threads,
    make_inputs,
    make_layer,
    params,
    run_case,
)
from rnnkit._config import (
    default_num_threads,
    get_adaptive_threads,
    physical_cores,
    set_adaptive_threads,
)


@pytest.fixture
def fixed_teams():
    """Every call really runs the team its size asks for: no fallback to one thread
    after contention (which this shared test machine may show at any time)."""
    was = get_adaptive_threads()
    set_adaptive_threads(False)
    yield
    set_adaptive_threads(was)


def direct_cases(cell: str) -> list[Case]:
    """Calls of at most 8 row-steps; H odd, and large enough for a team of threads."""
    return [
        Case(cell, 1, 1, 19, 37, dtype="float64"),
        Case(cell, 1, 1, 19, 300, dtype="float32"),
        Case(cell, 1, 2, 64, 512, dtype="float32"),
        Case(cell, 4, 2, 5, 33, 2, True, False, "unsorted", "float64"),
        Case(cell, 2, 3, 9, 130, 1, False, True, "short", "float32"),
        Case(cell, 8, 1, 3, 17, 2, False, False, None, "float32"),
    ]


def packed_cases(cell: str) -> list[Case]:
    """Just past the direct path's bound, and a batch-parallel shape."""
    return [
        Case(cell, 3, 3, 7, 45, dtype="float64"),
        Case(cell, 9, 1, 8, 70, 2, True, False, "unsorted", "float32"),
        Case(cell, 3, 64, 16, 64, dtype="float32"),
    ]


@pytest.mark.parametrize("simd", rk.simd_paths())
@pytest.mark.parametrize(
    "case", params([c for cell in CELLS for c in direct_cases(cell)])
)
def test_direct_path_threads_bitwise(case, simd, rng, restore_config, fixed_teams):
    check_simd_threads(case, rng, restore_config, simd, threads=(1, 2, 3, 8))


@pytest.mark.parametrize("simd", rk.simd_paths())
@pytest.mark.parametrize(
    "case", params([c for cell in CELLS for c in packed_cases(cell)])
)
def test_packed_path_threads_bitwise(case, simd, rng, restore_config, fixed_teams):
    check_simd_threads(case, rng, restore_config, simd, threads=(1, 2, 3, 8))


def _edit_cases() -> list[Case]:
    return [
        Case(cell, T, 2, 6, 21, dtype="float64")
        for cell in CELLS
        for T in (1, 20)  # direct path, packed path
    ]


def _fresh_copy(layer):
    """A new layer of the same class with the given layer's parameters."""
    other = type(layer)(
        layer.input_size,
        layer.hidden_size,
        num_layers=layer.num_layers,
        seed=99,
        dtype=layer.dtype,
    )
    other.load_state_dict(layer.state_dict())
    return other


@pytest.mark.parametrize("case", params(_edit_cases()))
def test_edits_take_effect_on_the_next_call(case, rng):
    """In-place edits of params views, load_state_dict and an optimizer step change
    the very next forward, bitwise as a fresh layer holding the new weights."""
    layer = make_layer(case)
    inputs = make_inputs(case, rng)

    def y_of(lay):
        return np.array(lay.forward(inputs["x"], inputs["hx"], train=False)[0])

    before = y_of(layer)
    layer.params["weight_hh_l0"][...] *= 0.5
    layer.params["bias_ih_l0"][:3] += 0.25
    after_edit = y_of(layer)
    assert not np.array_equal(after_edit, before), "an in-place edit was not seen"
    assert np.array_equal(after_edit, y_of(_fresh_copy(layer)))

    state = {k: v * 0.75 for k, v in layer.state_dict().items()}
    layer.load_state_dict(state)
    after_load = y_of(layer)
    assert not np.array_equal(after_load, after_edit), "load_state_dict was not seen"
    assert np.array_equal(after_load, y_of(_fresh_copy(layer)))

    run_case(layer, inputs)  # fills grads
    rk.optim.SGD(layer, lr=0.1).step()
    after_step = y_of(layer)
    assert not np.array_equal(after_step, after_load), "an optimizer step was not seen"
    assert np.array_equal(after_step, y_of(_fresh_copy(layer)))


@pytest.mark.parametrize("cell", CELLS)
def test_direct_and_packed_paths_agree(cell, rng):
    """T=1 calls (direct) chained step by step give the packed path's T=6 call."""
    case = Case(cell, 6, 1, 5, 40, L=2, dtype="float64")
    layer = make_layer(case)
    inputs = make_inputs(case, rng)
    whole = run_case(layer, inputs, backward=False)
    hx = inputs["hx"]
    ys = []
    for t in range(case.T):
        y, hx = layer.forward(inputs["x"][t : t + 1], hx, train=False)
        ys.append(y[0])
    np.testing.assert_allclose(np.stack(ys), whole["y"], rtol=1e-12, atol=1e-12)


def test_training_forward_of_one_step_backpropagates(rng):
    """The direct path's training forward leaves what backward needs: T=1 and T=3
    calls agree with the reference on every gradient (via run_case/check_simd)."""
    for cell in CELLS:
        case = Case(cell, 1, 1, 4, 9, dtype="float64")
        inputs = make_inputs(case, rng)
        a = run_case(make_layer(case), inputs)
        b = run_case(make_layer(case, impl="reference"), inputs)
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-9, atol=1e-11, err_msg=k)
        assert_results_equal(a, run_case(make_layer(case), inputs), what=cell)


# ------------------------------------------------------------ thread policy
def _threads_in_child(env: dict[str, str], affinity: set[int] | None = None) -> int:
    code = "import rnnkit as rk; print(rk.get_num_threads())"
    if affinity is not None:
        code = f"import os; os.sched_setaffinity(0, {sorted(affinity)!r}); " + code
    full = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_NUM_THREADS", "RNNKIT_NUM_THREADS")
    }
    full.update(env)
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=full,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


def test_default_is_physical_cores():
    assert _threads_in_child({}) == physical_cores()


def test_default_follows_the_affinity_mask():
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no sched_setaffinity on this platform")
    cpu = min(os.sched_getaffinity(0))
    assert _threads_in_child({}, {cpu}) == 1


@pytest.mark.parametrize(
    "env,want",
    [
        ({"OMP_NUM_THREADS": "3"}, 3),
        ({"OMP_NUM_THREADS": "5,2"}, 5),
        ({"RNNKIT_NUM_THREADS": "2", "OMP_NUM_THREADS": "7"}, 2),
        ({"OMP_NUM_THREADS": "zero"}, None),
    ],
)
def test_default_respects_environment(env, want):
    got = _threads_in_child(env)
    assert got == (physical_cores() if want is None else want)


def test_default_num_threads_in_process(monkeypatch):
    monkeypatch.delenv("RNNKIT_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert default_num_threads() == 4
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_num_threads() == physical_cores()


def test_adaptive_threads_switch_and_results(rng, restore_config):
    """Turning the contention fallback off and on keeps results bitwise; the switch
    round-trips (restore_config turns it off for the tests)."""
    set_adaptive_threads(True)
    assert get_adaptive_threads() is True
    case = Case("lstm", 6, 4, 8, 200, 2, True, False, "unsorted", "float32")
    inputs = make_inputs(case, rng)
    restore_config.set_num_threads(3)
    on = run_case(make_layer(case), inputs)
    set_adaptive_threads(False)
    try:
        assert get_adaptive_threads() is False
        off = run_case(make_layer(case), inputs)
    finally:
        set_adaptive_threads(False)  # restore_config puts back what it found
    assert_results_equal(on, off, what="adaptive on vs off")


def test_adaptive_threads_on_by_default():
    import subprocess
    import sys

    code = "import rnnkit._config as c; print(c.get_adaptive_threads())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "True"


_OVERSUBSCRIBED = """
import os, warnings
import numpy as np
import rnnkit as rk
from rnnkit._config import set_adaptive_threads
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one CPU for two threads
warnings.simplefilter("ignore")  # set_num_threads warns: more threads than cores
rng = np.random.default_rng(0)
x = rng.standard_normal((200, 4, 64)).astype(np.float32)
def run(n):
    rk.set_num_threads(n)  # also resets what the fall-back has seen
    set_adaptive_threads(True)
    layer = rk.LSTM(64, 256, seed=0)
    ys = [layer.forward(x)[0] for _ in range(4)]
    return ys, rk._core.contention_trips()
one, trips1 = run(1)
two, trips2 = run(2)
assert trips1 == 0, trips1
assert all((a == b).all() for a, b in zip(one, two)), "results changed"
print(trips2)
"""


def test_oversubscribed_team_is_seen_as_contended():
    """Two threads on one CPU: each is off its core about half the call, which the
    fall-back must see (a scheduling fact, not a timing); results stay bitwise."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _OVERSUBSCRIBED],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip().splitlines()[-1]) >= 1
