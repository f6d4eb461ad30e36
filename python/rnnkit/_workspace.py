"""Kernel memory shared by every backend: the per-thread scratch buffer.

A kernel call asks ``_core`` for its workspace sizes; the *reserve* (what a
training forward keeps for its backward) lives on the layer, the *scratch*
(free between calls) is one buffer per thread, grown on demand and reused.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

_tls = threading.local()

# dtype.name is a Python-level property, slow next to a one-step kernel
DTYPE_NAMES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


def scratch(nbytes: int, dtype: np.dtype) -> np.ndarray:
    """This thread's scratch buffer as ``nbytes`` of ``dtype`` (grown on demand).

    Examples
    --------
    >>> scratch(64, np.dtype(np.float32)).shape
    (16,)
    """
    buf = getattr(_tls, "scratch", None)
    if buf is None or buf.nbytes < nbytes:
        buf = np.empty(max(nbytes, 1 << 16) // 8 + 1, dtype=np.float64)
        _tls.scratch = buf
    n = nbytes // dtype.itemsize
    return buf.view(dtype)[:n]


def reserve(layer: Any, nbytes: int) -> np.ndarray:
    """The layer's reserve of at least ``nbytes``: reused across calls (a new
    training forward ends the previous one), grown on demand."""
    buf: np.ndarray | None = layer._reserve
    if buf is None or buf.nbytes < nbytes:
        buf = np.empty(nbytes, dtype=np.uint8)
        layer._reserve = buf
    return buf
