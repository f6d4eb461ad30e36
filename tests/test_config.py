"""Run-time configuration: SIMD path selection, thread count, show_config, and the
environment overrides (RNNKIT_SIMD, OMP_NUM_THREADS) read at import."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import rnnkit as rk

KNOWN_PATHS = ("avx512", "avx2", "generic")


def test_version():
    assert isinstance(rk.__version__, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", rk.__version__), rk.__version__


def test_simd_paths():
    paths = rk.simd_paths()
    assert isinstance(paths, list) and paths
    assert "generic" in paths
    assert paths[-1] == "generic", "generic is the fallback, listed last"
    assert set(paths) <= set(KNOWN_PATHS), paths
    assert len(set(paths)) == len(paths), paths
    # Best first: the order of KNOWN_PATHS restricted to what this machine has.
    assert paths == [p for p in KNOWN_PATHS if p in paths]


def test_simd_paths_match_cpu():
    """On Linux, the advertised paths are backed by the CPU's flags."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(
                re.search(r"^flags\s*:\s*(.*)$", f.read(), re.MULTILINE)
                .group(1)
                .split()
            )
    except (OSError, AttributeError):
        pytest.skip("no /proc/cpuinfo")
    paths = rk.simd_paths()
    if "avx2" in paths:
        assert {"avx2", "fma"} <= flags
    if "avx512" in paths:
        assert "avx512f" in flags
    if {"avx2", "fma"} <= flags:
        assert "avx2" in paths, "CPU has AVX2+FMA but the avx2 path is not offered"


def test_default_simd_is_best(restore_config):
    if os.environ.get("RNNKIT_SIMD"):
        pytest.skip("RNNKIT_SIMD is set in this environment")
    assert rk.get_simd() == rk.simd_paths()[0]


@pytest.mark.parametrize("path", rk.simd_paths())
def test_set_simd_round_trip(path, restore_config):
    rk.set_simd(path)
    assert rk.get_simd() == path


@pytest.mark.parametrize("bad", ["bogus", "", "AVX2 ", "sse"])
def test_set_simd_unknown(bad, restore_config):
    before = rk.get_simd()
    with pytest.raises(
        ValueError, match=re.escape(repr(bad)) + "|" + re.escape(bad or "''")
    ):
        rk.set_simd(bad)
    assert rk.get_simd() == before, "a rejected set_simd changed the active path"


def test_set_simd_error_lists_choices(restore_config):
    with pytest.raises(ValueError) as info:
        rk.set_simd("bogus")
    msg = str(info.value)
    assert "bogus" in msg
    assert all(p in msg for p in rk.simd_paths()), (
        f"message should list the choices: {msg}"
    )


@pytest.mark.parametrize("path", KNOWN_PATHS[:-1])
def test_set_simd_unsupported(path, restore_config):
    if path in rk.simd_paths():
        pytest.skip(f"this machine supports {path}")
    before = rk.get_simd()
    with pytest.raises(ValueError, match=path):
        rk.set_simd(path)
    assert rk.get_simd() == before


@pytest.mark.parametrize("n", [1, 2, 3])
def test_num_threads_round_trip(n, restore_config):
    rk.set_num_threads(n)
    assert rk.get_num_threads() == n


@pytest.mark.parametrize(
    "bad, exc", [(0, ValueError), (-1, ValueError), (True, TypeError), (2.0, TypeError)]
)
def test_num_threads_bad(bad, exc, restore_config):
    before = rk.get_num_threads()
    with pytest.raises(exc, match=re.escape(repr(bad)) + "|" + type(bad).__name__):
        rk.set_num_threads(bad)
    assert rk.get_num_threads() == before


def test_num_threads_default_positive():
    assert isinstance(rk.get_num_threads(), int) and rk.get_num_threads() >= 1


def test_show_config(capsys, restore_config):
    info = rk.show_config()
    out = capsys.readouterr().out
    assert isinstance(info, dict)
    assert rk.__version__ in out
    assert rk.get_simd() in out
    for p in rk.simd_paths():
        assert p in out
    assert str(rk.get_num_threads()) in out
    assert re.search(r"compiler", out, re.IGNORECASE), out
    assert re.search(r"flags", out, re.IGNORECASE), out
    # The dict carries the same facts.
    text = json.dumps(info, default=str)
    assert rk.__version__ in text and rk.get_simd() in text


def test_show_config_follows_changes(capsys, restore_config):
    rk.set_simd("generic")
    rk.set_num_threads(3)
    rk.show_config()
    out = capsys.readouterr().out
    assert "generic" in out and "3" in out


def _run_python(code: str, **env_changes: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    for k, v in env_changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )


def test_env_simd_generic():
    r = _run_python("import rnnkit as rk; print(rk.get_simd())", RNNKIT_SIMD="generic")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "generic"


@pytest.mark.parametrize("path", rk.simd_paths())
def test_env_simd_each_path(path):
    r = _run_python(
        "import rnnkit as rk; rk.show_config(); print(rk.get_simd())", RNNKIT_SIMD=path
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == path


def test_env_simd_unset_is_best():
    r = _run_python(
        "import rnnkit as rk; print(rk.get_simd(), rk.simd_paths()[0])",
        RNNKIT_SIMD=None,
    )
    assert r.returncode == 0, r.stderr
    got, best = r.stdout.split()
    assert got == best


@pytest.mark.parametrize("n", ["1", "3"])
def test_env_omp_num_threads(n):
    r = _run_python(
        "import rnnkit as rk; print(rk.get_num_threads())", OMP_NUM_THREADS=n
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == n


def test_env_generic_gives_same_answer_as_in_process(restore_config):
    """A process started with RNNKIT_SIMD=generic computes exactly what this process
    computes after set_simd("generic")."""
    code = (
        "import numpy as np, rnnkit as rk, sys\n"
        "m = rk.LSTM(5, 11, num_layers=2, bidirectional=True, seed=3)\n"
        "x = np.random.default_rng(0).standard_normal((6, 4, 5)).astype(np.float32)\n"
        "y, _ = m.forward(x)\n"
        "sys.stdout.write(y.tobytes().hex())\n"
    )
    r = _run_python(code, RNNKIT_SIMD="generic", OMP_NUM_THREADS="1")
    assert r.returncode == 0, r.stderr
    rk.set_simd("generic")
    m = rk.LSTM(5, 11, num_layers=2, bidirectional=True, seed=3)
    x = np.random.default_rng(0).standard_normal((6, 4, 5)).astype(np.float32)
    y, _ = m.forward(x)
    assert r.stdout == y.tobytes().hex()
