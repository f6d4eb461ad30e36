"""Machine information and thread settings, for the benchmarks and ``rnnkit bench``.

One place for what every benchmark records (CPU model and SIMD flags from
``/proc/cpuinfo``, rnnkit's active SIMD path and thread count, library versions,
OpenBLAS's core and threads, threadpoolctl's view when it is installed) and for
pinning every side to the same thread count (``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``, ``RNNKIT_NUM_THREADS`` in a child's
environment; ``openblas_set_num_threads`` in this process). Private: the
benchmarks import it, the library's fast path does not. Everything is best effort:
a fact that cannot be read is left out (or ``"?"``), never an error.

Example
-------
>>> from rnnkit import _sysinfo
>>> env = _sysinfo.thread_env(2)  # for subprocess.run(..., env=env)
>>> env["OMP_NUM_THREADS"]
'2'
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Environment variables that fix a thread count, for every runtime a side may load.
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "RNNKIT_NUM_THREADS",
)

#: The /proc/cpuinfo flags that matter to the kernels' SIMD paths.
SIMD_FLAGS = frozenset(
    {
        "avx",
        "avx2",
        "fma",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512_vnni",
        "avx512_bf16",
    }
)


# --------------------------------------------------------------------- the CPU
def _cpuinfo_text() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_info() -> dict[str, Any]:
    """The first CPU of ``/proc/cpuinfo``: model name, SIMD flags, family, model.

    Returns
    -------
    dict with ``model`` (str), ``flags`` (sorted SIMD flags), ``family`` and
    ``model_number`` (str, where listed) and ``logical_cpus`` (int or None).
    """
    info: dict[str, Any] = {"model": platform.processor() or "?", "flags": []}
    fields = {"model name": "model", "cpu family": "family", "model": "model_number"}
    seen: set[str] = set()
    for line in _cpuinfo_text().splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep:
            if info.get("flags"):
                break  # the end of the first processor's block
            continue
        if key == "flags":
            info["flags"] = sorted(set(value.split()) & SIMD_FLAGS)
        elif key in fields and key not in seen:
            seen.add(key)
            info[fields[key]] = value.strip()
    info["logical_cpus"] = os.cpu_count()
    return info


def cpu_model() -> str:
    """The CPU's model name (``platform.processor()`` or ``"?"`` without /proc)."""
    return str(cpu_info()["model"])


def has_avx512() -> bool:
    """True when the CPU lists ``avx512f`` (OpenBLAS's SkylakeX kernels need it)."""
    return "avx512f" in cpu_info()["flags"]


# --------------------------------------------------------------------- OpenBLAS
def _openblas_libs() -> list[str]:
    """Paths of the OpenBLAS libraries mapped into this process."""
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    return sorted(
        {
            ln.split()[-1]
            for ln in maps
            if "openblas" in ln.lower() and ln.split()[-1].startswith("/")
        }
    )


_OPENBLAS_PREFIXES = (("scipy_openblas", "64_"), ("openblas", "64_"), ("openblas", ""))


def openblas_info(set_threads: int | None = None) -> dict[str, Any]:
    """Core name, configuration and threads of the OpenBLAS NumPy loaded (ctypes).

    Parameters
    ----------
    set_threads : also call ``openblas_set_num_threads(set_threads)`` (OpenBLAS
        reads ``OPENBLAS_NUM_THREADS`` only when it is loaded).

    Returns
    -------
    dict with ``corename``, ``config``, ``threads`` and ``library`` where found;
    empty when NumPy does not use OpenBLAS.
    """
    import numpy as np

    a = np.ones((4, 4), dtype=np.float32)
    a @ a  # make sure the BLAS is loaded
    info: dict[str, Any] = {}
    for path in _openblas_libs():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pre, suf in _OPENBLAS_PREFIXES:
            fn = getattr(lib, f"{pre}_get_corename{suf}", None)
            if fn is None:
                continue
            fn.restype = ctypes.c_char_p
            info["corename"] = fn().decode()
            cfg = getattr(lib, f"{pre}_get_config{suf}", None)
            if cfg is not None:
                cfg.restype = ctypes.c_char_p
                info["config"] = cfg().decode()
            if set_threads is not None:
                st = getattr(lib, f"{pre}_set_num_threads{suf}", None)
                if st is not None:
                    st(ctypes.c_int(set_threads))
            gt = getattr(lib, f"{pre}_get_num_threads{suf}", None)
            if gt is not None:
                gt.restype = ctypes.c_int
                info["threads"] = int(gt())
            info["library"] = os.path.basename(path)
            return info
    return info


def set_openblas_threads(n: int) -> None:
    """Sets OpenBLAS's thread count in this process (best effort)."""
    openblas_info(set_threads=n)


# ----------------------------------------------------------------- thread pools
def thread_env(
    threads: int, base: Mapping[str, str] | None = None, skx: bool = False
) -> dict[str, str]:
    """A child process's environment with every runtime fixed to ``threads``.

    Parameters
    ----------
    threads : the thread count for OpenMP, OpenBLAS, MKL and rnnkit.
    base : the environment to start from (default: this process's).
    skx : set ``OPENBLAS_CORETYPE=SkylakeX`` (else it is removed).
    """
    env = dict(os.environ if base is None else base)
    for var in THREAD_VARS:
        env[var] = str(threads)
    env.pop("OPENBLAS_CORETYPE", None)
    if skx:
        env["OPENBLAS_CORETYPE"] = "SkylakeX"
    return env


def pin_threads(threads: int) -> dict[str, Any]:
    """Fixes this process's thread counts: rnnkit, OpenBLAS and (when already
    imported) torch; returns what each reports afterwards."""
    import rnnkit as rk

    rk.set_num_threads(threads)
    out: dict[str, Any] = {"rnnkit": rk.get_num_threads()}
    out["openblas"] = openblas_info(set_threads=threads).get("threads")
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
        out["torch"] = torch.get_num_threads()
    return out


def threadpool_info() -> list[dict[str, Any]] | None:
    """threadpoolctl's view of the loaded thread pools (None when not installed)."""
    try:
        from threadpoolctl import threadpool_info as info
    except ImportError:
        return None
    return [
        {k: p.get(k) for k in ("user_api", "internal_api", "num_threads", "version")}
        for p in info()
    ]


# ------------------------------------------------------------------- everything
def versions() -> dict[str, str]:
    """Python, NumPy and rnnkit versions, and torch's when it is already imported."""
    import numpy as np

    import rnnkit as rk

    out = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "rnnkit": rk.__version__,
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = str(torch.__version__)
    return out


def machine_info() -> dict[str, Any]:
    """What a benchmark result records about where it ran.

    Returns
    -------
    dict: ``cpu`` (:func:`cpu_info`), ``simd`` (rnnkit's active path), ``threads``
    (rnnkit's count), ``versions`` (:func:`versions`), ``thread_env`` (the
    ``THREAD_VARS`` set in the environment), ``openblas`` (:func:`openblas_info`),
    ``threadpools`` (:func:`threadpool_info`, None without threadpoolctl),
    ``platform``.
    """
    import rnnkit as rk

    info: dict[str, Any] = {
        "cpu": cpu_info(),
        "simd": "?",
        "threads": None,
        "versions": versions(),
        "thread_env": {v: os.environ[v] for v in THREAD_VARS if v in os.environ},
        "openblas": openblas_info(),
        "threadpools": threadpool_info(),
        "platform": platform.platform(),
    }
    with contextlib.suppress(Exception):
        info["simd"] = rk.get_simd()
        info["threads"] = rk.get_num_threads()
    return info


def summary_line(threads: int | None = None, torch_note: str = "not loaded") -> str:
    """One line: rnnkit version and SIMD path, NumPy (and torch), threads, CPU.

    ``torch_note`` is printed after "torch" when torch is not imported.
    """
    import rnnkit as rk

    v = versions()
    simd = rk.get_simd()
    line = f"rnnkit {v['rnnkit']} ({simd}), numpy {v['numpy']}"
    line += f", torch {v['torch']}" if "torch" in v else f", torch {torch_note}"
    n = rk.get_num_threads() if threads is None else threads
    return line + f"; {n} threads; {cpu_model()}"
