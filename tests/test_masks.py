"""The dropout family's random masks: the counter-based kernel ``_core.bernoulli_``
and the drawing rule of ``rnnkit._options`` (keep_multiplier, zoneout_flags,
draw_masks) built on it.

Element i of a mask is a function of (key, i) only: checked bit for bit against a
NumPy transcription of the generator, on every SIMD path and thread count, for
prefixes of longer draws; rates within a binomial bound; bad input named.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import rnnkit as rk
from rnnkit import _core
from rnnkit._options import (
    Options,
    draw_masks,
    keep_multiplier,
    mask_key,
    zoneout_flags,
)

U64 = np.uint64


def _bits(key: int, n: int) -> np.ndarray:
    """u_i for i < n, in NumPy uint64 arithmetic: x_j = SplitMix64's finaliser of
    key + (j + 1) * 0x9E3779B97F4A7C15 (mod 2**64); u_{2j} its low 32 bits,
    u_{2j+1} its high 32 bits."""
    j = np.arange(1, (n + 1) // 2 + 1, dtype=U64)
    with np.errstate(over="ignore"):
        z = U64(key) + j * U64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> U64(30))) * U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> U64(27))) * U64(0x94D049BB133111EB)
        z = z ^ (z >> U64(31))
    u = np.empty(2 * z.size, dtype=U64)
    u[0::2], u[1::2] = z & U64(0xFFFFFFFF), z >> U64(32)
    return u[:n]


def _thr(p: float) -> int:
    return int(np.floor(p * 2**32 + 0.5))


def _flags(n: int, p: float, key: int) -> np.ndarray:
    out = np.empty(n, np.uint8)
    _core.bernoulli_(out, p, key)
    return out


def _mult(n: int, p: float, key: int, dtype: str, value: float) -> np.ndarray:
    out = np.empty(n, dtype)
    _core.bernoulli_(out, p, key, value)
    return out


# The sizes: a few elements (no second thread, a SIMD tail), odd sizes around
# the threading threshold and the chunk, and one with several chunks per thread.
SIZES = [1, 2, 7, 257, 4095, 65_537, 200_003]
RATES = [0.0, 1e-9, 0.1, 0.5, 0.9, 1.0 - 1e-9, 1.0]
KEYS = [0, 1, 0x0123456789ABCDEF, 2**64 - 1]


# --------------------------------------------------------- the exact bits
@pytest.mark.parametrize("p", RATES)
@pytest.mark.parametrize("key", KEYS)
def test_flags_are_the_generator_below_threshold(p, key):
    n = 10_007
    want = (_bits(key, n) < U64(_thr(p))).astype(np.uint8)
    np.testing.assert_array_equal(_flags(n, p, key), want)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("p", RATES)
def test_multipliers_are_value_at_or_above_threshold(dtype, p):
    n, key = 10_007, 0xDEADBEEF
    value = 1.0 / (1.0 - p) if p < 1 else 3.0
    want = np.where(_bits(key, n) >= U64(_thr(p)), np.asarray(value, dtype), 0)
    got = _mult(n, p, key, dtype, value)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, want.astype(dtype))


def test_p_zero_and_one_are_exact():
    n = 100_003
    assert not _flags(n, 0.0, 5).any()
    assert _flags(n, 1.0, 5).all()
    assert (_mult(n, 0.0, 5, "float32", 1.0) == 1).all()
    assert not _mult(n, 1.0, 5, "float64", 2.0).any()


def test_bool_out_equals_uint8_out():
    n, key = 70_001, 99
    b = np.empty(n, bool)
    _core.bernoulli_(b, 0.3, key)
    np.testing.assert_array_equal(b.view(np.uint8), _flags(n, 0.3, key))


def test_any_shape_is_its_flat_c_order():
    key = 1234
    a = np.empty((5, 7, 13), np.float32)
    _core.bernoulli_(a, 0.25, key, 4 / 3)
    np.testing.assert_array_equal(a.ravel(), _mult(a.size, 0.25, key, "float32", 4 / 3))
    _core.bernoulli_(np.empty((0, 3), np.uint8), 0.5, key)  # empty: nothing to do


# ------------------------------------------------------------ statistics
@pytest.mark.parametrize("p", [1e-4, 0.1, 0.5, 0.9, 0.999])
def test_rates_within_binomial_bound(p):
    n = 1 << 22
    for key in (7, 2**63 + 11):
        rate = _flags(n, p, key).mean(dtype=np.float64)
        # 5 sigma of a Bernoulli mean over n draws
        assert abs(rate - p) < 5 * np.sqrt(p * (1 - p) / n), (key, rate)
        kept = (_mult(n, p, key, "float32", 1 / (1 - p)) != 0).mean(dtype=np.float64)
        assert abs(kept - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n), (key, kept)


def test_different_keys_give_independent_masks():
    """Masks of nearby keys share no more elements than chance: P(agree) = 1/2 at
    p = 1/2, within 5 sigma over n draws."""
    n = 1 << 20
    masks = {k: _flags(n, 0.5, k) for k in (0, 1, 2, 2**32, 2**63, 2**64 - 1)}
    keys = sorted(masks)
    for a in keys:
        for b in keys:
            if a < b:
                agree = (masks[a] == masks[b]).mean(dtype=np.float64)
                assert abs(agree - 0.5) < 5 * np.sqrt(0.25 / n), (a, b, agree)


def test_neighbouring_elements_are_uncorrelated():
    n = 1 << 20
    u = _mult(n, 0.5, 31337, "float64", 1.0)
    for lag in (1, 2, 8, 16, 64):
        c = np.corrcoef(u[:-lag], u[lag:])[0, 1]
        assert abs(c) < 5 / np.sqrt(n), (lag, c)


# ------------------------------------------------- independence of the run
@pytest.mark.filterwarnings("ignore:set_num_threads.*more threads:RuntimeWarning")
@pytest.mark.parametrize("n", SIZES)
def test_every_simd_path_and_thread_count_bitwise(n, restore_config):
    key = 0x5EED
    want = {
        "u8": (_bits(key, n) < U64(_thr(0.3))).astype(np.uint8),
        "f32": np.where(_bits(key, n) >= U64(_thr(0.3)), np.float32(1 / 0.7), 0),
        "f64": np.where(_bits(key, n) >= U64(_thr(0.3)), 1 / 0.7, 0.0),
    }
    for path in rk.simd_paths():
        rk.set_simd(path)
        for threads in (1, 2, 3):
            rk.set_num_threads(threads)
            got = {
                "u8": _flags(n, 0.3, key),
                "f32": _mult(n, 0.3, key, "float32", 1 / 0.7),
                "f64": _mult(n, 0.3, key, "float64", 1 / 0.7),
            }
            for k in want:
                np.testing.assert_array_equal(
                    got[k],
                    want[k].astype(got[k].dtype),
                    err_msg=f"{path} {threads} {k}",
                )


def test_each_simd_path_from_the_environment(tmp_path):
    """RNNKIT_SIMD=<path> in a fresh process (2 threads) draws the same bits."""
    code = (
        "import sys, numpy as np, rnnkit as rk; from rnnkit import _core\n"
        "assert rk.get_simd() == sys.argv[2], rk.get_simd()\n"
        "a = np.empty(100_003, np.uint8); _core.bernoulli_(a, 0.2, 77)\n"
        "b = np.empty(100_003, np.float32); _core.bernoulli_(b, 0.2, 78, 1.25)\n"
        "np.savez(sys.argv[1], a=a, b=b)\n"
    )
    want_a = _flags(100_003, 0.2, 77)
    want_b = _mult(100_003, 0.2, 78, "float32", 1.25)
    for path in rk.simd_paths():
        f = tmp_path / f"{path}.npz"
        env = dict(os.environ, RNNKIT_SIMD=path, OMP_NUM_THREADS="2")
        r = subprocess.run(
            [sys.executable, "-c", code, str(f), path],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        got = np.load(f)
        np.testing.assert_array_equal(got["a"], want_a, err_msg=path)
        np.testing.assert_array_equal(got["b"], want_b, err_msg=path)


def test_a_prefix_of_a_longer_draw_is_the_shorter_draw():
    key = 2**64 - 12345
    long = _flags(300_001, 0.4, key)
    for n in (1, 15, 16, 17, 4096, 65_536, 100_000):
        np.testing.assert_array_equal(_flags(n, 0.4, key), long[:n], err_msg=str(n))
    longf = _mult(300_001, 0.4, key, "float32", 2.5)
    np.testing.assert_array_equal(_mult(999, 0.4, key, "float32", 2.5), longf[:999])


def test_python_int_and_numpy_integer_keys_agree():
    key = 2**63 + 5
    np.testing.assert_array_equal(
        _flags(999, 0.5, np.uint64(key)), _flags(999, 0.5, key)
    )
    np.testing.assert_array_equal(_flags(999, 0.5, np.int64(3)), _flags(999, 0.5, 3))


# ------------------------------------------------------------ bad input
def test_bad_out():
    with pytest.raises(TypeError, match="out must be a numpy array, got list"):
        _core.bernoulli_([0, 0], 0.5, 1)
    for dt in ("int32", "float16", "complex64", "int8", "uint16"):
        with pytest.raises(TypeError, match=f"out must have dtype uint8, bool, .*{dt}"):
            _core.bernoulli_(np.empty(4, dt), 0.5, 1)
    with pytest.raises(TypeError, match="out must have dtype"):
        _core.bernoulli_(np.empty(4, ">f8"), 0.5, 1)  # not native byte order
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        _core.bernoulli_(np.empty(8, np.float32)[::2], 0.5, 1)
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        _core.bernoulli_(np.empty((3, 4), np.uint8, order="F"), 0.5, 1)
    ro = np.empty(4, np.float64)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writeable"):
        _core.bernoulli_(ro, 0.5, 1)


def test_bad_p():
    out = np.empty(4, np.uint8)
    for p in (-0.1, 1.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
            _core.bernoulli_(out, p, 1)
    for p in ("0.5", True, None, 1j):
        with pytest.raises(TypeError, match="p must be a real number"):
            _core.bernoulli_(out, p, 1)


def test_bad_key():
    out = np.empty(4, np.uint8)
    for key in (-1, 2**64, -(2**70)):
        with pytest.raises(ValueError, match=r"key must be in \[0, 2\*\*64\)"):
            _core.bernoulli_(out, 0.5, key)
    for key in (1.5, "3", True, None, np.float64(2)):
        with pytest.raises(TypeError, match=r"key must be an int in \[0, 2\*\*64\)"):
            _core.bernoulli_(out, 0.5, key)


def test_bad_value():
    with pytest.raises(ValueError, match="value must be 1 for flags"):
        _core.bernoulli_(np.empty(4, np.uint8), 0.5, 1, 2.0)
    with pytest.raises(ValueError, match="value must be finite"):
        _core.bernoulli_(np.empty(4, np.float32), 0.5, 1, 1e39)
    with pytest.raises(ValueError, match="value must be finite"):
        _core.bernoulli_(np.empty(4, np.float64), 0.5, 1, float("nan"))
    with pytest.raises(TypeError, match="value must be a real number"):
        _core.bernoulli_(np.empty(4, np.float64), 0.5, 1, "2")


# ----------------------------------------------- the drawing rule of _options
def test_keep_multiplier_and_zoneout_flags_follow_the_rule():
    p, shape = 0.35, (6, 4, 9)
    g, keys = np.random.default_rng(8), np.random.default_rng(8)
    m = keep_multiplier(g, shape, p, np.float64)
    z = zoneout_flags(g, shape, p)
    k1, k2 = (int(keys.integers(0, 2**64, dtype=np.uint64)) for _ in range(2))
    n = int(np.prod(shape))
    np.testing.assert_array_equal(
        m.ravel(), np.where(_bits(k1, n) >= U64(_thr(p)), 1 / (1 - p), 0.0)
    )
    assert z.dtype == np.bool_ and z.shape == shape
    np.testing.assert_array_equal(z.ravel(), _bits(k2, n) < U64(_thr(p)))
    # one key per mask, nothing else drawn from the generator
    assert g.integers(0, 2**64, dtype=np.uint64) == keys.integers(
        0, 2**64, dtype=np.uint64
    )
    assert mask_key(np.random.default_rng(8)) == k1


def test_multiplier_is_the_same_draw_in_either_dtype():
    m32 = keep_multiplier(np.random.default_rng(2), (50, 7), 0.2, np.float32)
    m64 = keep_multiplier(np.random.default_rng(2), (50, 7), 0.2, np.float64)
    np.testing.assert_array_equal(m32 != 0, m64 != 0)
    assert m32.dtype == np.float32 and m64.dtype == np.float64


def test_draw_masks_takes_one_key_per_mask_in_the_documented_order():
    """For k in 0..L-1, d in 0..D-1: recurrent, zoneout h, zoneout c; then the
    dropout mask of layer k's output (k < L-1)."""
    T, B, H, L, D, p = 4, 3, 5, 3, 2, 0.3
    opts = Options(dropout=p, recurrent_dropout=p, zoneout=p)
    m = draw_masks(
        opts,
        np.random.default_rng(42),
        cell="lstm",
        T=T,
        B=B,
        H=H,
        num_layers=L,
        num_directions=D,
        dtype=np.float32,
    )
    keys = np.random.default_rng(42)
    thr = U64(_thr(p))

    def nxt(shape: tuple[int, ...]) -> np.ndarray:
        k = int(keys.integers(0, 2**64, dtype=np.uint64))
        return _bits(k, int(np.prod(shape))).reshape(shape)

    for k in range(L):
        for d in range(D):
            cm = m.cells[k * D + d]
            want_r = np.where(nxt((B, H)) >= thr, np.float32(1 / (1 - p)), 0)
            np.testing.assert_array_equal(cm.recurrent, want_r.astype(np.float32))
            np.testing.assert_array_equal(cm.zoneout_h, nxt((T, B, H)) < thr)
            np.testing.assert_array_equal(cm.zoneout_c, nxt((T, B, H)) < thr)
        if k < L - 1:
            want_d = np.where(nxt((T, B, D * H)) >= thr, np.float32(1 / (1 - p)), 0)
            np.testing.assert_array_equal(m.dropout[k], want_d.astype(np.float32))


def test_layer_masks_independent_of_threads_and_simd(restore_config):
    x = np.random.default_rng(0).standard_normal((30, 40, 3)).astype(np.float32)
    seen = []
    for path in rk.simd_paths():
        rk.set_simd(path)
        for threads in (1, 2):
            rk.set_num_threads(threads)
            layer = rk.LSTM(3, 64, num_layers=2, dropout=0.2, zoneout=0.1, seed=5)
            layer.forward(x)
            m = layer.last_masks
            seen.append(
                np.concatenate(
                    [m.dropout[0].ravel()]
                    + [c.zoneout_h.ravel() for c in m.cells]
                    + [c.zoneout_c.ravel() for c in m.cells]
                )
            )
    for s in seen[1:]:
        np.testing.assert_array_equal(s, seen[0])
