"""Run-time configuration: SIMD path, threads, build report."""

from __future__ import annotations

import os
import platform
import warnings
from importlib import metadata
from typing import Any

from . import _core

try:
    __version__: str = metadata.version("rnnkit")
except metadata.PackageNotFoundError:  # running from a source tree
    __version__ = _core.__version__


def simd_paths() -> list[str]:
    """SIMD paths this build contains and this CPU runs, best first.

    Returns
    -------
    list of str
        E.g. ``["avx512", "avx2", "generic"]``; ``"generic"`` (the scalar path)
        is always there.

    Examples
    --------
    >>> import rnnkit as rk
    >>> "generic" in rk.simd_paths()
    True
    """
    return list(_core.simd_paths())


def get_simd() -> str:
    """The active SIMD path (``"avx512"``, ``"avx2"`` or ``"generic"``).

    Examples
    --------
    >>> import rnnkit as rk
    >>> rk.get_simd() in rk.simd_paths()
    True
    """
    return str(_core.get_simd())


def set_simd(name: str) -> None:
    """Selects the SIMD path every later kernel call uses.

    The environment variable ``RNNKIT_SIMD`` does the same when the module loads.
    Results are bitwise identical for any thread count on one path, not across
    paths.

    Parameters
    ----------
    name : str
        One of :func:`simd_paths`.

    Raises
    ------
    ValueError
        This build or this CPU does not have ``name``.

    Examples
    --------
    >>> import rnnkit as rk
    >>> before = rk.get_simd()
    >>> rk.set_simd("generic"); rk.get_simd()
    'generic'
    >>> rk.set_simd(before)
    """
    _core.set_simd(name)


def _env_threads(name: str) -> int | None:
    """The first count of a thread variable (``OMP_NUM_THREADS=4,2`` -> 4), if valid."""
    value = os.environ.get(name, "").split(",")[0].strip()
    return int(value) if value.isdigit() and int(value) >= 1 else None


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (its affinity mask).

    Hyperthreads of one core count once (Linux: ``/sys/devices/system/cpu``
    topology); where that cannot be read, every allowed CPU counts.

    Examples
    --------
    >>> import os
    >>> from rnnkit._config import physical_cores
    >>> 1 <= physical_cores() <= (os.cpu_count() or 1)
    True
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        topo = f"/sys/devices/system/cpu/cpu{cpu}/topology/"
        try:
            with open(topo + "physical_package_id") as f:
                package = f.read().strip()
            with open(topo + "core_id") as f:
                cores.add((package, f.read().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


def default_num_threads() -> int:
    """The thread count the kernels start with.

    ``RNNKIT_NUM_THREADS``, else ``OMP_NUM_THREADS`` (its first entry), else the
    physical cores of the affinity mask (:func:`physical_cores`): a second
    hyperthread of a core adds nothing to these kernels but contention.

    Examples
    --------
    >>> from rnnkit._config import default_num_threads
    >>> default_num_threads() >= 1
    True
    """
    for name in ("RNNKIT_NUM_THREADS", "OMP_NUM_THREADS"):
        n = _env_threads(name)
        if n is not None:
            return n
    return physical_cores()


def get_num_threads() -> int:
    """Threads the kernels use at most (default :func:`default_num_threads`).

    Each call uses as many of them as its size pays for: one for a single small
    step, all of them for a large batch.

    Examples
    --------
    >>> import rnnkit as rk
    >>> rk.get_num_threads() >= 1
    True
    """
    return int(_core.get_num_threads())


def set_num_threads(n: int) -> None:
    """Sets the number of threads the kernels use.

    Parameters
    ----------
    n : int
        Threads, >= 1. Results do not depend on it (threads own disjoint outputs).

    Raises
    ------
    TypeError
        ``n`` is not an int.
    ValueError
        ``n < 1``.

    Warns
    -----
    RuntimeWarning
        In a child forked from a process that allowed 2+ threads, ``n > 1`` is
        ignored (OpenMP's threads do not survive ``fork``; the child keeps one).
        ``n`` is above the cores this process may use: the kernels' threads then
        wait on each other at every time step's barrier, and a call can take 50 to
        100 times as long as with one thread per core. The setting is still
        applied; ``RNNKIT_NUM_THREADS`` / ``OMP_NUM_THREADS`` above the core
        count get the same warning at import.

    Examples
    --------
    >>> import rnnkit as rk
    >>> before = rk.get_num_threads()
    >>> rk.set_num_threads(1); rk.get_num_threads()
    1
    >>> rk.set_num_threads(before)
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n (threads) must be >= 1, got {n}")
    if _Fork.pinned and n > 1:
        warnings.warn(
            f"set_num_threads({n}) ignored: this process was forked from one that "
            "ran the kernels with several OpenMP threads, which do not survive fork; "
            "it keeps one thread (use the 'spawn' or 'forkserver' start method "
            "for threaded workers)",
            RuntimeWarning,
            stacklevel=2,
        )
        return
    if n > 1:
        _Fork.threaded = True
    cores = _usable_cores()
    if n > cores:
        warnings.warn(
            f"set_num_threads({n}): more threads than the {cores} core(s) this "
            "process may use; the kernels synchronise at every time step, so "
            f"oversubscribed threads make each call much slower (use <= {cores})",
            RuntimeWarning,
            stacklevel=2,
        )
    _core.set_num_threads(n)


def set_adaptive_threads(on: bool) -> None:
    """Whether a call falls back to one thread after contention was seen.

    On by default. A call whose threads were off their cores (descheduled for
    another process, or more threads than cores) for more than an eighth of the
    call's thread time makes the next calls run on one thread; a team is tried
    again after 16 calls, then 32, ... up to 1024 while the contention lasts.
    The measure is each thread's wall time minus its CPU time, so uneven work
    on a quiet machine (a thread waiting at a barrier on its own core) does not
    count. Results do not change (they are bitwise the same for any thread
    count); off, every call uses the threads its size pays for.
    :func:`set_num_threads` forgets what was seen;
    ``rnnkit._core.contention_trips()`` counts the contended calls since.

    Parameters
    ----------
    on : bool

    Examples
    --------
    >>> from rnnkit._config import get_adaptive_threads, set_adaptive_threads
    >>> set_adaptive_threads(True); get_adaptive_threads()
    True
    >>> set_adaptive_threads(False)
    """
    _core.set_adaptive_threads(bool(on))


def get_adaptive_threads() -> bool:
    """Whether contention makes calls fall back to one thread (see
    :func:`set_adaptive_threads`)."""
    return bool(_core.get_adaptive_threads())


def _usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _check_environment() -> None:
    """Warns once, at import, when ``RNNKIT_SIMD`` names no path this machine runs,
    or OpenMP would start more threads than there are usable cores
    (the kernels then use the best path; before, nothing said so)."""
    requested = os.environ.get("RNNKIT_SIMD", "")
    if requested and requested not in simd_paths():
        compiled = list(_core.compiled_simd_paths())
        why = (
            "this CPU cannot run it"
            if requested in compiled
            else f"it is not one of {compiled}"
        )
        warnings.warn(
            f"RNNKIT_SIMD={requested!r} ignored ({why}); using {get_simd()!r}",
            RuntimeWarning,
            stacklevel=2,
        )
    threads, cores = get_num_threads(), _usable_cores()
    if threads > cores:
        warnings.warn(
            f"rnnkit will run up to {threads} kernel threads (RNNKIT_NUM_THREADS / "
            f"OMP_NUM_THREADS) on {cores} usable core(s): "
            f"oversubscribed threads make each call much slower; see "
            "rnnkit.set_num_threads",
            RuntimeWarning,
            stacklevel=2,
        )


def show_config(print_fn: Any = print) -> dict[str, Any]:
    """Prints and returns the version, SIMD paths, threads, compiler and flags.

    Parameters
    ----------
    print_fn : callable or None, default print
        Receives the report as one string; None prints nothing.

    Returns
    -------
    dict
        ``version``, ``simd_active``, ``simd_available``, ``simd_compiled``,
        ``simd_requested``, ``threads``, ``machine``, ``python`` and the build's
        ``compiler``, ``cxx_flags``, ``isa_flags``, ``openmp``.

    Examples
    --------
    >>> import rnnkit as rk
    >>> cfg = rk.show_config(print_fn=None)
    >>> cfg["version"] == rk.__version__, cfg["simd_active"] == rk.get_simd()
    (True, True)
    """
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
    lines.append(
        f"  SIMD path      : {cfg['simd_active']}"
        + (f" (RNNKIT_SIMD={requested})" if requested else "")
    )
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


class _Fork:
    """Fork bookkeeping: the kernels' OpenMP (libgomp) threads do not survive
    ``fork``, and in a child a parallel region of 2+ threads waits forever for the
    parent's. Which kernels ran threaded is not known here (layers, blocks,
    losses and optimizers all call ``_core``), so any process that could have
    started a team (it allowed 2+ threads at some point) marks itself, and its
    forked children run on one thread."""

    threaded = False  # this process allowed 2+ threads at some point
    pinned = False  # this process is such a child: the kernels keep one thread


def _after_fork_in_child() -> None:
    """``os.register_at_fork`` hook (see :class:`_Fork`)."""
    if _Fork.threaded or _core.get_num_threads() > 1:
        _Fork.threaded = _Fork.pinned = True
        _core.set_num_threads(1)


_core.set_num_threads(default_num_threads())
_Fork.threaded = get_num_threads() > 1
_check_environment()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
