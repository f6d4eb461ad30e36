"""Shared fixtures, the one tolerance table of the test suite, and the torch gate.

Every comparison between two implementations (compiled kernels vs the NumPy
reference, rnnkit vs PyTorch, one SIMD path vs another) reads its tolerances
from ``TOL`` (by dtype and kind, via :func:`tol`) or, where a test compares
something else, from a named entry of ``NAMED_TOL`` (via :func:`named_tol`);
comparisons that must be exact (thread counts, memory layouts of the same input)
use ``np.array_equal`` instead.

PyTorch and the extras (onnx, onnxruntime, safetensors, mpi4py + mpiexec, tqdm)
are optional: their tests skip cleanly without them. With ``RNNKIT_REQUIRE_TORCH=1``
in the environment a torch that does not import is an error, and with
``RNNKIT_REQUIRE_EXTRAS=1`` (``.ci/run`` exports both) any test skipped for want of
an optional package or tool (torch included) fails the run.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

# TOL[dtype][kind] = (rtol, atol), checked elementwise as
# |actual - expected| <= atol + rtol * |expected|  (numpy.testing.assert_allclose).
#   "out":  forward results (y, h_n, c_n).
#   "grad": backward results (dx, dh0, dc0, parameter gradients); sums over
#           T*B terms and through time, so looser than the forward.
#   "step": single steps (``layer.stepper``) vs a whole-sequence forward of the
#           same layer, and one SIMD path's steps vs another's: the same kernels,
#           the state round-tripping through Python, so tighter than "out" in
#           float64 and within rounding of a short recurrence in float32.
TOL: dict[np.dtype, dict[str, tuple[float, float]]] = {
    np.dtype(np.float32): {
        "out": (1e-4, 1e-5),
        "grad": (1e-3, 1e-4),
        "step": (1e-5, 1e-5),
    },
    np.dtype(np.float64): {
        "out": (1e-10, 1e-12),
        "grad": (1e-9, 1e-11),
        "step": (1e-12, 1e-12),
    },
}

# Comparisons that are not "one implementation vs another in one dtype"; each says
# why it needs its own entry. (rtol, atol), as above.
NAMED_TOL: dict[str, tuple[float, float]] = {
    # The reference's forward in float32 vs the same problem in float64: the float32
    # rounding of inputs, weights and every step, not a kernel difference.
    "float32_vs_float64": (1e-5, 1e-5),
    # A stable sigmoid vs 1 / (1 + exp(-a)) in long double: a few ulps, relative,
    # down to the smallest normal number (the test adds finfo(dtype).tiny to atol).
    "sigmoid_vs_longdouble": (1e-6, 0.0),
    # The same float64 gradient added twice vs twice the gradient: one rounding.
    "accumulate_twice": (1e-12, 1e-14),
    # Gradients through a whole model (embedding, dropout, several layers, a loss)
    # vs centered differences: FD_TOL's rtol, ten times, for the longer chain.
    "fd_model": (1e-4, 1e-8),
    # Analytic float64 results vs the same formula in PyTorch (float64): rounding
    # of a different but equally exact order of operations.
    "torch_float64": (1e-10, 1e-14),
    # Optimizer trajectories (several steps, float64) vs the published update
    # equations written out in NumPy.
    "optim_float64": (1e-11, 1e-13),
    # The same optimizer trajectories vs torch.optim: its fused update formulas
    # round in another order, and the difference grows over the steps.
    "torch_optim_float64": (1e-10, 1e-12),
    # Learning-rate schedules vs torch.optim.lr_scheduler, which updates the rate
    # recursively (a product per step) where rnnkit uses the closed form.
    "torch_schedule": (1e-9, 1e-15),
    # A float64 result vs the same sums in another order (a NumPy formula, a
    # dense product, PyTorch's loss, chunks with the state carried): a few
    # roundings, relative only.
    "reordered_float64": (1e-12, 0.0),
    # Linear's float64 forward vs x @ W.T + b in NumPy: as reordered_float64, with
    # an absolute floor where the dot product cancels to near zero.
    "linear_float64": (1e-12, 1e-14),
    # CharLM.evaluate (float64; B streams, chunks, a leftover) vs one pass per
    # stream: the mean of ~100 log-softmax terms summed in another order.
    "lm_loss_float64": (1e-10, 0.0),
    # A model's loss and parameters after five Adam steps (float64) vs the NumPy
    # reference's (or, for the loss, PyTorch's): gradient rounding amplified by
    # Adam's division by sqrt(v).
    "trajectory_float64": (1e-9, 1e-12),
    # The parameters of that trajectory vs PyTorch's: its LSTM and Adam round in
    # another order, five steps of it in every parameter.
    "torch_trajectory": (1e-8, 1e-11),
    # A Sequential (float32) fed in two chunks with the state carried vs one
    # forward: the same kernels, a different time blocking of the products.
    "chunks_float32": (1e-5, 1e-6),
    # A float32 model trained on the same global batches split over 1 or 4 MPI
    # ranks: the gradient sums in another order, over a few dozen Adam steps.
    "ranks_float32": (1e-5, 1e-6),
    # A float32 result (one SGD update, a loss of extreme logits) vs its formula
    # in float64: a few float32 ulps (eps 1.2e-7), relative.
    "float32_ulps": (1e-6, 0.0),
    # float32 sums that cancel to zero (softmax - one-hot over the classes): an
    # absolute bound, a few ulps of the largest term (1).
    "float32_cancel": (0.0, 1e-6),
    # clip_grad_norm's results vs the exact norm: it divides by norm + 1e-6
    # (PyTorch's guard), and in float32 sums 1000 squares.
    "clip_norm": (1e-5, 0.0),
    # The norm of float32 gradients whose squares overflow, after clipping,
    # remeasured in float64: the test is that clipping lands near 1, not at inf.
    "clip_norm_float32": (1e-4, 0.0),
    # Frequencies of 20,000 seeded draws vs their probabilities: over four
    # standard errors (at most 0.0035).
    "sample_freq_20k": (0.0, 0.015),
    # Frequencies of 6,000 seeded draws: over four standard errors (0.0065).
    "sample_freq_6k": (0.0, 0.03),
    # An exported graph in onnxruntime vs rnnkit's forward, float32 (issue 13:
    # 1e-5 relative); other kernels, other summation orders.
    "onnxruntime_float32": (1e-5, 1e-6),
}

# The reference in float64 vs the reference's own centered finite differences
# (``_helpers.fd_derivative``, ``_helpers.fd_gradient``).
FD_TOL: dict[str, float] = {"eps": 1e-6, "rtol": 1e-5, "atol": 1e-7}

SEED = 20240611

#: Set by .ci/run: torch must import and no test may skip for want of it.
REQUIRE_TORCH = os.environ.get("RNNKIT_REQUIRE_TORCH", "") == "1"
#: Set by .ci/run: no test may skip for want of an optional package or tool.
REQUIRE_EXTRAS = os.environ.get("RNNKIT_REQUIRE_EXTRAS", "") == "1"
# What pytest.importorskip and the tests' own "missing tool" skips say.
_MISSING = ("could not import", "is not installed")


def tol(dtype: np.dtype | str | type, kind: str) -> tuple[float, float]:
    """(rtol, atol) for ``kind`` ("out", "grad" or "step") in ``dtype``."""
    return TOL[np.dtype(dtype)][kind]


def named_tol(name: str) -> tuple[float, float]:
    """(rtol, atol) of the named comparison ``name`` (a key of ``NAMED_TOL``)."""
    return NAMED_TOL[name]


# ------------------------------------------------------------------ torch gate
_torch_skips: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    if REQUIRE_TORCH:
        try:
            import torch  # noqa: F401
        except ImportError as e:
            raise pytest.UsageError(
                f"RNNKIT_REQUIRE_TORCH=1 but torch does not import: {e}"
            ) from e


def _note_torch_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    if not report.skipped:
        return
    why = str(report.longrepr)
    if (REQUIRE_TORCH and "'torch'" in why) or (
        REQUIRE_EXTRAS and any(m in why for m in _MISSING)
    ):
        _torch_skips.append(report.nodeid)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _note_torch_skip(report)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _note_torch_skip(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _torch_skips:
        print(
            f"\nRNNKIT_REQUIRE_TORCH/EXTRAS=1: {len(_torch_skips)} item(s) skipped "
            "for want of an optional package: " + ", ".join(_torch_skips[:5]),
            file=sys.stderr,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def rng() -> np.random.Generator:
    """A freshly seeded generator per test: the same inputs on every run."""
    return np.random.default_rng(SEED)


@pytest.fixture
def restore_config():
    """Restores the active SIMD path and thread count after the test.

    Also turns off the fall-back to one thread under contention for the test's
    duration: on a loaded machine it would quietly run an "8 threads" case on one,
    and the thread-count checks would stop exercising the threaded code."""
    import rnnkit as rk
    from rnnkit._config import get_adaptive_threads, set_adaptive_threads

    simd, threads, adaptive = (
        rk.get_simd(),
        rk.get_num_threads(),
        get_adaptive_threads(),
    )
    set_adaptive_threads(False)
    yield rk
    set_adaptive_threads(adaptive)
    rk.set_simd(simd)
    rk.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _no_config_leak():
    """Fails loudly if a test changed the SIMD path or thread count and did not
    restore it."""
    config = sys.modules.get("rnnkit._config")
    before = _snapshot(config)
    yield
    after = _snapshot(sys.modules.get("rnnkit._config") if config is None else config)
    if before is not None and after is not None and before != after:
        pytest.fail(f"test leaked a config change: {before} -> {after}")


def _snapshot(config) -> tuple[str, int] | None:
    if config is None:
        return None
    return (config.get_simd(), config.get_num_threads())
