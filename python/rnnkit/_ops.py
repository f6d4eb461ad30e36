"""Elementwise helpers shared by the fast path (modules, text) and the reference cells.

Every function writes into ``out`` (which may be its input) and returns it, so the
cells run their time loops without allocating. Call them under
``np.errstate(over="ignore", invalid="ignore")`` (each cell function does): NaN and
Inf then propagate the way NumPy arithmetic does, silently.
"""

from __future__ import annotations

import numpy as np


def sigmoid(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Logistic function: ``out <- 1 / (1 + exp(-a))``.

    Accurate for every input: where ``exp(-a)`` overflows (a < -88 in float32,
    a < -709 in float64) the result is ``1 / inf = 0``, which is the correctly
    rounded value; the overflow flag this raises is ignored by the caller's
    ``np.errstate``. One transcendental per element (``np.exp`` is several times
    cheaper than ``np.tanh`` in float64, so ``(1 + tanh(a / 2)) / 2`` would be slower).
    """
    # np.multiply, not np.negative: NumPy 2.4's in-place negative reads a float32
    # column view (B, 1) with strides (4H*4, 4) as if it were contiguous.
    np.multiply(a, -1, out=out)
    np.exp(out, out=out)
    out += 1
    return np.reciprocal(out, out=out)


def tanh(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Hyperbolic tangent: ``out <- tanh(a)``."""
    return np.tanh(a, out=out)


def relu(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out <- max(a, 0)``; NaN stays NaN (``np.maximum`` propagates it)."""
    return np.maximum(a, 0, out=out)


ACTIVATIONS = {"tanh": tanh, "relu": relu, "sigmoid": sigmoid}
"""Activations by the name ``torch.nn.RNN(nonlinearity=...)`` uses."""


def activation_grad(
    dh: np.ndarray, h: np.ndarray, name: str, out: np.ndarray
) -> np.ndarray:
    """Gradient through ``h = act(a)``, written from the *output* ``h``.

    ``out <- dh * act'(a)`` with ``tanh' = 1 - h^2``, ``sigmoid' = h (1 - h)`` and
    ``relu' = (a > 0) = (h > 0)``, so the forward pass never stores ``a``.
    ``out`` must not alias ``dh`` or ``h``.
    """
    if name == "tanh":
        np.multiply(h, h, out=out)
        np.subtract(1, out, out=out)
    elif name == "sigmoid":
        np.subtract(1, h, out=out)
        out *= h
    elif name == "relu":
        np.greater(h, 0, out=out)  # bool -> float: 1.0 / 0.0
    else:
        raise ValueError(
            f"nonlinearity must be one of {tuple(ACTIVATIONS)}, got {name!r}"
        )
    out *= dh
    return out
