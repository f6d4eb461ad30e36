"""Sample and class weights, and ``validation_split``, for :func:`rnnkit.fit`.

Weights travel as a float loss mask (:mod:`rnnkit.losses`: a float mask weights
the entries, the mean divides by the sum of the weights, as ``torch.nn``'s
``weight=`` does), so every loss, metric and data path takes them unchanged.

Shapes
------
y (N, ...) targets; ``sample_weight`` (N,) or a prefix of y's shape ((N, T) for
per-step weights); ``class_weight`` a ``{class: weight}`` dict or a (C,) array;
the result is broadcastable as a mask of y's shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def weighted_mask(
    y: np.ndarray,
    mask: np.ndarray | None,
    sample_weight: Any = None,
    class_weight: Any = None,
) -> np.ndarray | None:
    """``mask * sample_weight * class_weight[y]`` as a float mask (None: no weights).

    Parameters
    ----------
    y : targets (N, ...): class ids, or floats in [0, 1] (binary: class 1 where
        ``y > 0.5``) for ``class_weight``.
    mask : the bool (or float) loss mask, or None.
    sample_weight : array-like (N,) or a prefix of y's shape, >= 0.
    class_weight : ``{class: weight}`` (missing classes weigh 1) or a (C,) array.

    Examples
    --------
    >>> weighted_mask(np.array([0, 1, 1]), None, [1.0, 2.0, 0.0], {1: 3.0}).tolist()
    [1.0, 6.0, 0.0]
    """
    if sample_weight is None and class_weight is None:
        return mask
    N = y.shape[0]
    w: np.ndarray = np.ones(y.shape[:1])
    if mask is not None:
        w = np.asarray(mask, dtype=np.float64)
    if sample_weight is not None:
        sw = np.asarray(sample_weight, dtype=np.float64)
        if sw.ndim == 0 or sw.shape != y.shape[: sw.ndim]:
            raise ValueError(
                f"sample_weight must have shape ({N},) or a prefix of the targets' "
                f"shape {y.shape}, got {sw.shape}"
            )
        if not np.all(np.isfinite(sw)) or (sw < 0).any():
            raise ValueError("sample_weight must be finite and >= 0")
        w = _times(w, sw)
    if class_weight is not None:
        if y.dtype.kind in "iu":
            cls = y.astype(np.int64)
        elif y.dtype.kind == "f":
            cls = (y > 0.5).astype(np.int64)
        else:
            raise TypeError(f"class_weight needs class targets, got dtype {y.dtype}")
        top = int(cls.max()) + 1 if cls.size else 0
        if isinstance(class_weight, Mapping):
            table = np.ones(
                max(top, 1 + max((int(k) for k in class_weight), default=0))
            )
            for k, v in class_weight.items():
                if int(k) < 0:
                    raise ValueError(f"class_weight has a negative class {k!r}")
                table[int(k)] = float(v)
        else:
            table = np.asarray(class_weight, dtype=np.float64).reshape(-1)
            if table.size < top:
                raise ValueError(
                    f"class_weight has {table.size} entries, but the targets have "
                    f"class {top - 1}"
                )
        if not np.all(np.isfinite(table)) or (table < 0).any():
            raise ValueError("class_weight must be finite and >= 0")
        # ignored entries (-100) keep weight 1: the loss leaves them out anyway
        w = _times(w, np.where(cls >= 0, table[np.clip(cls, 0, None)], 1.0))
    return w


def _times(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a * b`` for two prefix shapes of one shape (the shorter broadcast)."""
    if a.ndim < b.ndim:
        a, b = b, a
    return a * b.reshape(b.shape + (1,) * (a.ndim - b.ndim))


def split_validation(n: int, fraction: float) -> tuple[slice, slice]:
    """``(train rows, validation rows)``: the last ``fraction`` of the rows held
    out, before any shuffling (as Keras does).

    Examples
    --------
    >>> split_validation(10, 0.2)
    (slice(0, 8, None), slice(8, 10, None))
    """
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"validation_split must be in (0, 1), got {fraction!r}")
    k = int(round(n * float(fraction)))
    if k < 1 or k >= n:
        raise ValueError(
            f"validation_split={fraction} of {n} rows leaves "
            f"{n - k} for training and {k} for validation; both must be >= 1"
        )
    return slice(0, n - k), slice(n - k, n)
