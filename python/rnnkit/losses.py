"""Losses with their gradients: ``loss, doutput = fn(output, target, ...)``.

Each function returns the scalar loss (a Python float, accumulated in float64)
and the gradient of that loss with respect to ``output`` (same shape and dtype
as ``output``), ready for ``model.backward``. Padding is left out with ``mask``
(True = counts) and, for cross-entropy, also with ``ignore_index``. A float
``mask`` weights the entries (sample and class weights, as ``fit(sample_weight=,
class_weight=)`` pass them); a 0/1 float mask is the same as a bool one.
``reduction="mean"`` divides by the number of entries that count, or by the sum
of their weights (PyTorch's convention, as for ``weight=`` in ``torch.nn``),
``"sum"`` does not; a batch in which nothing counts has loss 0 and a zero
gradient.

================================  =============================================
:func:`cross_entropy`             softmax cross-entropy over the last axis
                                  (fused, stable log-softmax), integer targets
:func:`binary_cross_entropy_with_logits`  sigmoid + BCE, stable for any logit
:func:`mse`                       mean squared error
================================  =============================================

The classes :class:`CrossEntropyLoss`, :class:`BCEWithLogitsLoss` and
:class:`MSELoss` hold the options, are called the same way, and are what
:func:`rnnkit.fit` takes.

Shapes
------
cross_entropy: output (..., C) logits, target (...) ints in [0, C), mask (...).
bce / mse: output (...), target (...) same shape, mask (...) or a prefix of it
(e.g. (B, T) for a (B, T, F) output), broadcast over the trailing axes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core

_REDUCTIONS = ("mean", "sum")


def _float(name: str, x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
    return arr


def _mask(mask: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """``mask`` broadcastable to ``shape`` (prefix shapes allowed): bool, or float64
    weights for a float mask."""
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.dtype != np.bool_:
        if m.dtype.kind not in "iuf":
            raise TypeError(
                f"mask must be a boolean (or float weight) array, got dtype {m.dtype}"
            )
        if m.dtype.kind == "f":
            if not np.all(np.isfinite(m)) or (m < 0).any():
                raise ValueError("a float mask (weights) must be finite and >= 0")
            m = m.astype(np.float64, copy=False)
        else:
            m = m != 0
    if m.shape != shape[: m.ndim]:
        raise ValueError(
            f"mask must have shape {shape} or a prefix of it, got {m.shape}"
        )
    return m.reshape(m.shape + (1,) * (len(shape) - m.ndim))


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def length_mask(lengths: Any, T: int) -> np.ndarray:
    """(B, T) bool mask, True at the real steps ``t < lengths[b]`` (batch-first).

    Parameters
    ----------
    lengths : int array-like (B,)
        Valid steps per row.
    T : int
        Steps of the padded batch.

    Examples
    --------
    >>> length_mask([3, 1], 4).astype(int).tolist()
    [[1, 1, 1, 0], [1, 0, 0, 0]]
    """
    lengths = np.asarray(lengths)
    return np.arange(T)[None, :] < lengths[:, None]


def softmax(logits: Any, axis: int = -1) -> np.ndarray:
    """Probabilities from logits: ``exp(z - max z) / sum exp(z - max z)`` along
    ``axis`` (stable for any finite logits; the dtype is kept).

    Shapes
    ------
    logits (..., C) -> probabilities (..., C), summing to 1 along ``axis``.

    Examples
    --------
    >>> softmax(np.array([[0.0, 0.0], [0.0, np.log(3.0)]])).round(4).tolist()
    [[0.5, 0.5], [0.25, 0.75]]
    """
    z = _float("logits", logits)
    with np.errstate(over="ignore", invalid="ignore"):
        p = np.exp(z - z.max(axis=axis, keepdims=True))
        p /= p.sum(axis=axis, keepdims=True)
    return p


def sigmoid(logits: Any) -> np.ndarray:
    """``1 / (1 + exp(-x))``, elementwise, without overflow warnings (binary
    probabilities from logits; the dtype is kept).

    Examples
    --------
    >>> sigmoid(np.array([0.0, 1000.0, -1000.0])).tolist()
    [0.5, 1.0, 0.0]
    """
    z = _float("logits", logits)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def cross_entropy(
    logits: Any,
    targets: Any,
    *,
    mask: Any = None,
    ignore_index: int | None = -100,
    reduction: str = "mean",
) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy ``-log softmax(logits)[target]`` with its gradient.

    Parameters
    ----------
    logits : float array (..., C), unnormalised scores.
    targets : int array (...), class ids in [0, C) (or ``ignore_index``).
    mask : optional bool array (...), False = padding, left out.
    ignore_index : targets equal to it are left out (PyTorch's -100); None = none.
    reduction : ``"mean"`` over the entries that count, or ``"sum"``.

    Returns
    -------
    loss : float; dlogits : (..., C), ``(softmax - onehot) / n`` on entries that
    count, zero elsewhere.

    The log-softmax is fused and shifted by the row maximum, so any finite
    logits give a finite loss. A target outside [0, C) raises ``IndexError``.

    Examples
    --------
    >>> loss, d = cross_entropy(np.zeros((2, 3)), np.array([0, 2]))
    >>> round(loss, 4), d.shape       # log(3)
    (1.0986, (2, 3))
    """
    _check_reduction(reduction)
    z = _float("logits", logits)
    if z.ndim < 1:
        raise ValueError(f"logits must have a class axis, got shape {z.shape}")
    C = z.shape[-1]
    t = np.asarray(
        targets.detach().cpu().numpy() if hasattr(targets, "detach") else targets
    )
    if t.dtype.kind not in "iu":
        raise TypeError(f"targets must be an integer array, got dtype {t.dtype}")
    if t.shape != z.shape[:-1]:
        raise ValueError(f"targets must have shape {z.shape[:-1]}, got {t.shape}")
    t = t.astype(np.int64, copy=False)
    m = _mask(mask, t.shape)
    if m is not None and m.dtype != np.bool_:
        return _weighted_cross_entropy(z, t, m, ignore_index, reduction)
    t1 = np.ascontiguousarray(t.reshape(-1))
    m1 = None if m is None else np.ascontiguousarray(np.broadcast_to(m, t.shape))
    work = z if z.dtype in (np.float32, np.float64) else z.astype(np.float32)
    z2 = np.ascontiguousarray(work.reshape(-1, C))
    try:
        # max-shifted log-softmax, loss and gradient in one sweep per row (xent.cpp)
        loss, _, d = _core.cross_entropy(
            z2,
            t1,
            None if m1 is None else m1.reshape(-1),
            ignore_index,
            reduction == "mean",
        )
    except IndexError:
        _bad_target(t, m, ignore_index, C)
        raise
    return float(loss), d.astype(z.dtype, copy=False).reshape(z.shape)


def _valid(t: np.ndarray, m: np.ndarray | None, ignore_index: int | None) -> np.ndarray:
    """The entries that count: not ``ignore_index``, and inside the mask."""
    valid = np.ones(t.shape, dtype=bool) if ignore_index is None else t != ignore_index
    if m is not None:
        valid &= np.broadcast_to(m != 0, t.shape)
    return valid


def _bad_target(
    t: np.ndarray, m: np.ndarray | None, ignore_index: int | None, C: int
) -> None:
    """Raises the ``IndexError`` naming the first target outside [0, C) that counts."""
    bad = _valid(t, m, ignore_index) & ((t < 0) | (t >= C))
    if bad.any():
        pos = np.unravel_index(int(np.argmax(bad)), t.shape)
        raise IndexError(
            f"targets contains class {int(t[pos])} at position "
            f"{tuple(int(i) for i in pos)}, outside [0, {C}) for logits with C={C}"
        )


def _weighted_cross_entropy(
    z: np.ndarray,
    t: np.ndarray,
    m: np.ndarray,
    ignore_index: int | None,
    reduction: str,
) -> tuple[float, np.ndarray]:
    """Cross-entropy with float weights per entry (``fit``'s sample/class weights).

    The loss is the weighted sum, divided by the sum of the weights for "mean"
    (PyTorch's rule). NumPy, not the kernel: the kernel takes a 0/1 mask, and
    weighted runs are the exception, not the hot path of ``fit``.
    """
    C = z.shape[-1]
    _bad_target(t, m, ignore_index, C)
    valid = _valid(t, m, ignore_index)
    weight = np.where(valid, np.broadcast_to(m, t.shape), 0.0).reshape(-1)
    n = float(weight.sum())
    z2 = z.reshape(-1, C)
    t1 = np.where(valid, t, 0).reshape(-1)
    rows = np.arange(z2.shape[0])
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        # log softmax(z)_c = (z_c - max z) - log sum_k exp(z_k - max z)
        p = z2 - z2.max(axis=1, keepdims=True)
        shifted_t = p[rows, t1]
        np.exp(p, out=p)
        s = p.sum(axis=1)
        nll = np.log(s) - shifted_t  # -log softmax(z)[t]
        # dL/dz = weight * (softmax(z) - onehot(t))
        p /= s[:, None]
        p[rows, t1] -= 1
        total = float(np.sum(np.where(weight > 0, nll, 0.0) * weight, dtype=np.float64))
        p *= weight.astype(p.dtype)[:, None]
    scale = 1.0 / n if (reduction == "mean" and n) else 1.0
    if scale != 1.0:
        p *= z.dtype.type(scale)
    return (total * scale if n else 0.0), p.reshape(z.shape)


def binary_cross_entropy_with_logits(
    logits: Any,
    targets: Any,
    *,
    mask: Any = None,
    reduction: str = "mean",
) -> tuple[float, np.ndarray]:
    """``-(y log σ(x) + (1 - y) log(1 - σ(x)))`` with its gradient ``σ(x) - y``.

    Written as ``max(x, 0) - x y + log1p(exp(-|x|))``, finite for every finite
    ``x``. ``targets`` are floats in [0, 1] (soft labels allowed).

    Parameters
    ----------
    logits : float array-like (...)
        Pre-sigmoid scores ``x``.
    targets : float array-like, shaped like ``logits``
        Labels ``y`` in [0, 1].
    mask : bool array-like or None
        True where an entry counts; the output's shape or a prefix of it.
    reduction : {"mean", "sum"}, default "mean"
        Divide by the number of entries that count, or not.

    Returns
    -------
    loss : float
        The reduced loss, accumulated in float64.
    dlogits : ndarray shaped like ``logits``
        Gradient of ``loss`` w.r.t. ``logits``, in its dtype.

    Shapes
    ------
    logits (...), targets (...) same shape, mask (...) or a prefix -> dlogits (...).

    Examples
    --------
    >>> loss, d = binary_cross_entropy_with_logits(np.zeros(4), np.ones(4))
    >>> round(loss, 4), d.tolist()    # log(2), (0.5 - 1) / 4
    (0.6931, [-0.125, -0.125, -0.125, -0.125])
    """
    _check_reduction(reduction)
    x = _float("logits", logits)
    y = _float("targets", targets)
    if y.shape != x.shape:
        raise ValueError(f"targets must have shape {x.shape}, got {y.shape}")
    m = _mask(mask, x.shape)
    with np.errstate(over="ignore"):
        per = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
        d = 1.0 / (1.0 + np.exp(-x)) - y
    d = d.astype(x.dtype, copy=False)
    return _reduce(per, d, m, reduction)


def mse(
    output: Any,
    target: Any,
    *,
    mask: Any = None,
    reduction: str = "mean",
) -> tuple[float, np.ndarray]:
    """Mean squared error ``(output - target)^2``, gradient ``2 (output - target)``.

    Parameters
    ----------
    output : float array-like (...)
        Predictions.
    target : float array-like, shaped like ``output``
        Targets.
    mask : bool array-like or None
        True where an entry counts; the output's shape or a prefix of it.
    reduction : {"mean", "sum"}, default "mean"
        Divide by the number of entries that count, or not.

    Returns
    -------
    loss : float
        The reduced loss, accumulated in float64.
    doutput : ndarray shaped like ``output``
        Gradient of ``loss`` w.r.t. ``output``, in its dtype.

    Shapes
    ------
    output (...), target (...) same shape, mask (...) or a prefix -> doutput (...).

    Examples
    --------
    >>> loss, d = mse(np.array([1.0, 3.0]), np.array([0.0, 0.0]))
    >>> loss, d.tolist()
    (5.0, [1.0, 3.0])
    """
    _check_reduction(reduction)
    x = _float("output", output)
    y = _float("target", target)
    if y.shape != x.shape:
        raise ValueError(f"target must have shape {x.shape}, got {y.shape}")
    r = x - y.astype(x.dtype, copy=False)
    m = _mask(mask, x.shape)
    return _reduce(r * r, 2 * r, m, reduction)


def _reduce(
    per: np.ndarray, d: np.ndarray, m: np.ndarray | None, reduction: str
) -> tuple[float, np.ndarray]:
    n: float
    """Masks and reduces an elementwise loss ``per`` and its gradient ``d``."""
    if m is None:
        n = per.size
        total = float(np.sum(per, dtype=np.float64))
    else:
        w = np.broadcast_to(m, per.shape)
        if m.dtype == np.bool_:
            n = int(w.sum())
            total = float(np.sum(per, where=w, dtype=np.float64))
            d = d * m
        else:  # weights
            n = float(w.sum())
            total = float(np.sum(np.where(w > 0, per, 0.0) * w, dtype=np.float64))
            d = d * m.astype(d.dtype)
    if reduction == "mean" and n:
        d *= d.dtype.type(1.0 / n)
        total /= n
    return (total if n else 0.0), d


class _Loss:
    name = ""
    reduction = "mean"

    def config(self) -> dict[str, Any]:
        """The constructor arguments."""
        return {"reduction": self.reduction}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class CrossEntropyLoss(_Loss):
    """:func:`cross_entropy` with its options bound: ``loss, d = ce(logits, t, m)``.

    Parameters
    ----------
    ignore_index : int or None, default -100
        Targets equal to it do not count.
    reduction : {"mean", "sum"}, default "mean"

    Examples
    --------
    >>> import numpy as np
    >>> ce = CrossEntropyLoss(reduction="sum")
    >>> loss, d = ce(np.zeros((2, 4)), np.array([1, -100]))
    >>> round(loss, 4), d.shape          # log(4): only the first row counts
    (1.3863, (2, 4))
    """

    name = "cross_entropy"

    def __init__(
        self, ignore_index: int | None = -100, reduction: str = "mean"
    ) -> None:
        _check_reduction(reduction)
        self.ignore_index, self.reduction = ignore_index, reduction

    def config(self) -> dict[str, Any]:
        """The constructor arguments."""
        return {"ignore_index": self.ignore_index, "reduction": self.reduction}

    def __call__(
        self, logits: Any, targets: Any, mask: Any = None
    ) -> tuple[float, np.ndarray]:
        return cross_entropy(
            logits,
            targets,
            mask=mask,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


class BCEWithLogitsLoss(_Loss):
    """:func:`binary_cross_entropy_with_logits` with its options bound.

    Parameters
    ----------
    reduction : {"mean", "sum"}, default "mean"

    Examples
    --------
    >>> import numpy as np
    >>> loss, d = BCEWithLogitsLoss()(np.zeros(3), np.ones(3))
    >>> round(loss, 4)
    0.6931
    """

    name = "bce_with_logits"

    def __init__(self, reduction: str = "mean") -> None:
        _check_reduction(reduction)
        self.reduction = reduction

    def __call__(
        self, logits: Any, targets: Any, mask: Any = None
    ) -> tuple[float, np.ndarray]:
        return binary_cross_entropy_with_logits(
            logits, targets, mask=mask, reduction=self.reduction
        )


class MSELoss(_Loss):
    """:func:`mse` with its options bound.

    Parameters
    ----------
    reduction : {"mean", "sum"}, default "mean"

    Examples
    --------
    >>> import numpy as np
    >>> MSELoss(reduction="sum")(np.array([1.0, 2.0]), np.zeros(2))[0]
    5.0
    """

    name = "mse"

    def __init__(self, reduction: str = "mean") -> None:
        _check_reduction(reduction)
        self.reduction = reduction

    def __call__(
        self, output: Any, target: Any, mask: Any = None
    ) -> tuple[float, np.ndarray]:
        return mse(output, target, mask=mask, reduction=self.reduction)


LOSSES: dict[str, type[_Loss]] = {
    "cross_entropy": CrossEntropyLoss,
    "bce_with_logits": BCEWithLogitsLoss,
    "mse": MSELoss,
}


def get_loss(loss: Any) -> Any:
    """A loss object from a name in :data:`LOSSES` or a callable (returned as is).

    Parameters
    ----------
    loss : str or callable
        ``"cross_entropy"``, ``"bce_with_logits"``, ``"mse"``, or any callable
        ``loss(output, target, mask) -> (float, doutput)``.

    Examples
    --------
    >>> get_loss("mse")
    MSELoss(reduction='mean')
    """
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(
                f"loss must be one of {tuple(LOSSES)} or a callable, got {loss!r}"
            )
        return LOSSES[loss]()
    if not callable(loss):
        raise TypeError(f"loss must be a name or a callable, got {type(loss).__name__}")
    return loss


__all__ = [
    "LOSSES",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "MSELoss",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "get_loss",
    "length_mask",
    "mse",
    "sigmoid",
    "softmax",
]
