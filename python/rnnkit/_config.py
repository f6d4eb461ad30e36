"""Run-time configuration: SIMD path, threads, build report."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

from . import _core

try:
    __version__: str = metadata.version("rnnkit")
except metadata.PackageNotFoundError:  # running from a source tree
    __version__ = _core.__version__


def simd_paths() -> list[str]:
    """SIMD paths this build contains and this CPU runs, best first."""
    return list(_core.simd_paths())


def get_simd() -> str:
    """The active SIMD path ('avx512', 'avx2' or 'generic')."""
    return str(_core.get_simd())


def set_simd(name: str) -> None:
    """Selects a SIMD path for every later kernel call (ValueError if unsupported).

    The environment variable ``RNNKIT_SIMD`` does the same when the module loads.
    """
    _core.set_simd(name)


def get_num_threads() -> int:
    """Threads the kernels use (default: OpenMP's, i.e. ``OMP_NUM_THREADS`` or cores)."""
    return int(_core.get_num_threads())


def set_num_threads(n: int) -> None:
    """Sets the number of threads the kernels use (n >= 1)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    _core.set_num_threads(n)


def show_config(print_fn: Any = print) -> dict[str, Any]:
    """Prints and returns the version, SIMD paths, threads, compiler and flags."""
    info = dict(_core.build_info())
    requested = os.environ.get("RNNKIT_SIMD", "")
    cfg: dict[str, Any] = {
        "version": __version__,
        "simd_active": get_simd(),
        "simd_available": simd_paths(),
        "simd_compiled": list(_core.compiled_simd_paths()),
        "simd_requested": requested or None,
        "threads": get_num_threads(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        **info,
    }
    lines = [f"rnnkit {cfg['version']}"]
    lines.append(f"  SIMD path      : {cfg['simd_active']}"
                 + (f" (RNNKIT_SIMD={requested})" if requested else ""))
    lines.append(f"  available      : {', '.join(cfg['simd_available'])}")
    lines.append(f"  compiled       : {', '.join(cfg['simd_compiled'])}")
    lines.append(f"  threads        : {cfg['threads']} (OpenMP {cfg['openmp']})")
    lines.append(f"  compiler       : {cfg['compiler']}")
    lines.append(f"  flags          : {cfg['cxx_flags']}")
    lines.append(f"  per-ISA flags  : {cfg['isa_flags']}")
    lines.append(f"  machine        : {cfg['machine']}, Python {cfg['python']}")
    if print_fn is not None:
        print_fn("\n".join(lines))
    return cfg
