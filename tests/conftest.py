"""Shared fixtures and the one tolerance table of the test suite.

Every comparison between two implementations (compiled kernels vs the NumPy
reference, rnnkit vs PyTorch, one SIMD path vs another) reads its tolerances
from ``TOL``; comparisons that must be exact (thread counts, memory layouts of
the same input) use ``np.array_equal`` instead.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

# TOL[dtype][kind] = (rtol, atol), checked elementwise as
# |actual - expected| <= atol + rtol * |expected|  (numpy.testing.assert_allclose).
#   "out":  forward results (y, h_n, c_n).
#   "grad": backward results (dx, dh0, dc0, parameter gradients); sums over
#           T*B terms and through time, so looser than the forward.
TOL: dict[np.dtype, dict[str, tuple[float, float]]] = {
    np.dtype(np.float32): {"out": (1e-4, 1e-5), "grad": (1e-3, 1e-4)},
    np.dtype(np.float64): {"out": (1e-10, 1e-12), "grad": (1e-9, 1e-11)},
}

# The reference in float64 vs the reference's own centered finite differences.
FD_TOL: dict[str, float] = {"eps": 1e-6, "rtol": 1e-5, "atol": 1e-7}

SEED = 20240611


def tol(dtype: np.dtype | str | type, kind: str) -> tuple[float, float]:
    """(rtol, atol) for ``kind`` ("out" or "grad") in ``dtype``."""
    return TOL[np.dtype(dtype)][kind]


@pytest.fixture
def rng() -> np.random.Generator:
    """A freshly seeded generator per test: every test sees the same inputs on every run."""
    return np.random.default_rng(SEED)


@pytest.fixture
def restore_config():
    """Restores the active SIMD path and thread count after the test."""
    import rnnkit as rk

    simd, threads = rk.get_simd(), rk.get_num_threads()
    yield rk
    rk.set_simd(simd)
    rk.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _no_config_leak():
    """Fails loudly if a test changed the SIMD path or thread count and did not restore it."""
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
