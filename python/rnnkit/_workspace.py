"""What every compiled backend (fused, layer-norm, projected) hands its kernels.

Memory: a kernel call asks ``_core`` for its workspace sizes; the *reserve*
(what a training forward keeps for its backward) lives on the layer, the
*scratch* (free between calls) is one buffer per thread, grown on demand and
reused. Arguments: the weight list of a layer in the kernels' order, and a
call's option masks as the mask contract's keyword lists.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from . import _cells

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


def weight_list(
    layer: Any, store: Any, kinds: tuple[str, ...]
) -> list[np.ndarray | None]:
    """``store[kind + suffix]`` for each of ``kinds`` per (layer, direction), in
    the kernels' order ``l*D + d``; absent entries (biases without bias, the
    GRU's LayerNorm ``c`` gains) None.

    Examples
    --------
    >>> weight_list(type("L", (), {"bidirectional": False, "num_layers": 1})(),
    ...             {"weight_ih_l0": 1}, ("weight_ih", "bias_ih"))
    [1, None]
    """
    D = 2 if layer.bidirectional else 1
    return [
        store.get(kind + _cells.suffix(k, d))
        for k in range(layer.num_layers)
        for d in range(D)
        for kind in kinds
    ]


def kernel_masks(masks: Any, dtype: Any) -> dict[str, list[Any]]:
    """A call's option masks as the mask contract's keywords of ``_core``:
    ``rec_masks`` (the cells' ``recurrent``), ``zone_h`` / ``zone_c`` (their
    zoneout flags, bool as uint8 views) and ``drop_masks`` (``dropout``), each
    only when some entry is given; ``masks`` is a
    :class:`~rnnkit._options.Masks` (or anything with ``cells`` and
    ``dropout``) or None. Real masks come as C-contiguous ``dtype`` arrays.

    Examples
    --------
    >>> kernel_masks(None, np.float32)
    {}
    """
    if masks is None:
        return {}
    dt = np.dtype(dtype)

    def real(a: Any) -> np.ndarray | None:
        return None if a is None else np.ascontiguousarray(a, dtype=dt)

    def flags(a: Any) -> np.ndarray | None:
        if a is None:
            return None
        a = np.ascontiguousarray(a)
        return a.view(np.uint8) if a.dtype == np.bool_ else a.astype(np.uint8)

    cells = list(getattr(masks, "cells", None) or [])
    out: dict[str, list[Any]] = {
        "rec_masks": [real(getattr(c, "recurrent", None)) for c in cells],
        "zone_h": [flags(getattr(c, "zoneout_h", None)) for c in cells],
        "zone_c": [flags(getattr(c, "zoneout_c", None)) for c in cells],
        "drop_masks": [real(a) for a in (getattr(masks, "dropout", None) or [])],
    }
    return {k: v for k, v in out.items() if any(a is not None for a in v)}
