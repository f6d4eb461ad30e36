"""NumPy reference of the kernels around the recurrent layers.

The specification that ``tests/test_step_kernels.py`` checks the compiled block
kernels (``csrc/linear.cpp``, ``xent.cpp``, ``embedding.cpp``, ``optim.cpp``)
against, written as plainly as NumPy allows: the dense layer, softmax
cross-entropy, the embedding gather and scatter-add, the global gradient norm
and the optimizer updates of :mod:`rnnkit.optim` (PyTorch's semantics), each a
pure function of arrays (the updates work in place, like the kernels).

Shapes
------
linear: x (N, I), weight (O, I), bias (O,) -> y (N, O).
cross_entropy: logits (N, C), targets (N,), valid (N,) bool -> loss, dlogits (N, C).
embedding: ids (N,) in [0, V), weight (V, E) -> y (N, E).
updates: flat p, g and state slots (n,) of one dtype.

Examples
--------
>>> import numpy as np
>>> from rnnkit.reference import blocks
>>> y = blocks.linear_forward(np.ones((2, 3)), np.ones((4, 3)), np.zeros(4), None)
>>> y.tolist()[0]
[3.0, 3.0, 3.0, 3.0]
"""

from __future__ import annotations

import math

import numpy as np

from .._ops import ACTIVATIONS, activation_grad


# ---------------------------------------------------------------- Linear
def linear_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, activation: str | None
) -> np.ndarray:
    """``y = act(x W^T + b)`` for x (N, I), weight (O, I), bias (O,) or None."""
    y = x @ weight.T
    if bias is not None:
        y += bias
    if activation is not None:
        with np.errstate(over="ignore"):
            ACTIVATIONS[activation](y, out=y)
    return y


def linear_backward(
    dy: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    weight: np.ndarray,
    dweight: np.ndarray,
    dbias: np.ndarray | None,
    activation: str | None,
) -> np.ndarray:
    """Adds ``dW = da^T x``, ``db = sum da`` (``da = dy act'(y)``); returns ``da W``."""
    da = dy
    if activation is not None:
        da = activation_grad(dy, y, activation, out=np.empty_like(y))
    dweight += da.T @ x
    if dbias is not None:
        dbias += da.sum(axis=0)
    return da @ weight


# ---------------------------------------------------------- cross-entropy
def cross_entropy(
    logits: np.ndarray, targets: np.ndarray, valid: np.ndarray, mean: bool
) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy of the rows where ``valid``; ``(loss, dlogits)``.

    ``loss = sum(nll) / n`` (``mean``, n rows that count) or ``sum(nll)``;
    ``dlogits = (softmax - onehot) / n`` (or without ``/ n``) on the rows that
    count, zero elsewhere. Stable: shifted by each row's maximum.
    """
    z2 = logits
    n = int(valid.sum())
    t1 = np.where(valid, targets, 0)
    rows = np.arange(z2.shape[0])
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        p = z2 - z2.max(axis=1, keepdims=True)
        shifted_t = p[rows, t1]
        np.exp(p, out=p)
        s = p.sum(axis=1)
        nll = np.log(s) - shifted_t
        total = float(np.sum(nll[valid], dtype=np.float64))
        p /= s[:, None]
        p[rows, t1] -= 1
        p *= valid[:, None]
    scale = 1.0 / n if (mean and n) else 1.0
    if scale != 1.0:
        p *= z2.dtype.type(scale)
    return (total * scale if n else 0.0), p


# -------------------------------------------------------------- Embedding
def embedding_forward(ids: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``y[n] = weight[ids[n]]``."""
    return weight[ids]


def embedding_backward(
    ids: np.ndarray, dy: np.ndarray, dweight: np.ndarray, padding_idx: int | None
) -> None:
    """``dweight[ids[n]] += dy[n]``, positions holding ``padding_idx`` left out."""
    if padding_idx is not None:
        keep = ids != padding_idx
        ids, dy = ids[keep], dy[keep]
    np.add.at(dweight, ids, dy)


# ------------------------------------------------------------ clipping
def grad_norm(grads: list[np.ndarray]) -> float:
    """Global L2 norm of flat gradients, rescaled when the squares overflow."""
    total = 0.0
    with np.errstate(over="ignore"):
        for g in grads:
            total += float(np.dot(g.astype(np.float64), g.astype(np.float64)))
    if math.isinf(total):
        m = max(float(np.max(np.abs(g))) for g in grads)
        if math.isfinite(m):
            s = sum(float(np.sum(np.square(g / m), dtype=np.float64)) for g in grads)
            return m * math.sqrt(s)
    return math.sqrt(total)


# ------------------------------------------------------------ optimizers
def _decayed(p: np.ndarray, g: np.ndarray, wd: float) -> np.ndarray:
    return g if wd == 0.0 else p * p.dtype.type(wd) + g


def sgd(
    p: np.ndarray,
    g: np.ndarray,
    buf: np.ndarray | None,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    first: bool = False,
) -> None:
    """SGD (``torch.optim.SGD``), ``first`` on the step that sets the buffer to g."""
    f = p.dtype.type
    d = _decayed(p, g, weight_decay)
    if momentum:
        assert buf is not None
        if first:
            buf[...] = d
        else:
            buf *= f(momentum)
            buf += d * f(1.0 - dampening) if dampening else d
        d = buf * f(momentum) + d if nesterov else buf
    p += d * f(-lr)


def adagrad(
    p: np.ndarray,
    g: np.ndarray,
    s: np.ndarray,
    lr: float,
    weight_decay: float = 0.0,
    eps: float = 1e-10,
) -> None:
    """Adagrad (``torch.optim.Adagrad``); ``lr`` already decayed for this step."""
    d = _decayed(p, g, weight_decay)
    s += d * d
    p += d / (np.sqrt(s) + p.dtype.type(eps)) * p.dtype.type(-lr)


def rmsprop(
    p: np.ndarray,
    g: np.ndarray,
    v: np.ndarray,
    buf: np.ndarray | None,
    m: np.ndarray | None,
    lr: float,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
) -> None:
    """RMSprop (``torch.optim.RMSprop``), centered and momentum variants."""
    f = p.dtype.type
    d = _decayed(p, g, weight_decay)
    v *= f(alpha)
    v += d * d * f(1.0 - alpha)
    if centered:
        assert m is not None
        m *= f(alpha)
        m += d * f(1.0 - alpha)
        r = np.sqrt(v - m * m)
    else:
        r = np.sqrt(v)
    q = d / (r + f(eps))
    if momentum:
        assert buf is not None
        buf *= f(momentum)
        buf += q
        q = buf
    p += q * f(-lr)


def adam(
    p: np.ndarray,
    g: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    vmax: np.ndarray | None,
    lr: float,
    step: int,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    decoupled: bool = False,
) -> None:
    """Adam / AdamW (``decoupled``) at step ``step`` (1 for the first)."""
    f = p.dtype.type
    if decoupled:
        p *= f(1.0 - lr * weight_decay)
        d = g
    else:
        d = _decayed(p, g, weight_decay)
    m *= f(beta1)
    m += d * f(1.0 - beta1)
    v *= f(beta2)
    v += d * d * f(1.0 - beta2)
    if amsgrad:
        assert vmax is not None
        np.maximum(vmax, v, out=vmax)
        v = vmax
    bc1, bc2 = 1.0 - beta1**step, 1.0 - beta2**step
    p += m / (np.sqrt(v) * f(1.0 / math.sqrt(bc2)) + f(eps)) * f(-lr / bc1)


__all__ = [
    "adagrad",
    "adam",
    "cross_entropy",
    "embedding_backward",
    "embedding_forward",
    "grad_norm",
    "linear_backward",
    "linear_forward",
    "rmsprop",
    "sgd",
]
