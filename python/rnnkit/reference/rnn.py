"""Elman RNN, one layer, one direction: forward and backward through time in NumPy.

What it computes (PyTorch's ``torch.nn.RNN``), for t = 0 .. T-1::

    a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh        (h_{-1} = h0)
    h_t = act(a_t)                                     act in {tanh, relu, sigmoid}
    y_t = h_t

Dimension letters: T time, B batch, I input, H hidden; one gate block (G = 1).
Layouts: ``x`` (T, B, I) time-major, ``W_ih`` (H, I), ``W_hh`` (H, H), biases (H,).

How: ``W_ih x_t + b_ih + b_hh`` for all T steps is one GEMM, (T*B, I) @ (I, H); the
time loop does only the recurrent GEMM ``h_{t-1} @ W_hh.T`` and the activation. In
backward the weight gradients are again one GEMM each over all T*B rows.

What forward stores for backward: ``x`` (for ``dW_ih``) and every state
``hs[0..T]``: ``hs[t]`` is the h_{t-1} of step t (recurrent product, ``dW_hh``) and
``hs[t+1]`` gives ``act'(a_t)`` from the output alone (``1 - h^2``, ``h (1 - h)``,
``h > 0``), so the pre-activations are not kept.

Padding (``mask``): where ``mask[t, b]`` is False, step t of row b is padding: the
state passes through unchanged (``h_t = h_{t-1}``), ``y_t`` is zero and ``dy_t`` is
ignored. With a prefix mask (``t < length[b]``) this equals running each row alone
over its own length. Padding entries of ``x`` must be finite (``dW_ih`` multiplies
them by a zero gradient); :mod:`rnnkit.reference._stack` zeroes them.

Contract of backward (llm.c / haste): it *adds* into ``dW_ih, dW_hh, db_ih, db_hh``
(zeroing them is the caller's job) and returns fresh ``dx`` and ``dh0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._ops import ACTIVATIONS, activation_grad
from .options import CellExtras, ExtraGrads, zoneout_forward


@dataclass
class RNNCache:
    """What :func:`rnn_backward` needs from :func:`rnn_forward`."""

    x: np.ndarray  # (T, B, I) input
    hs: np.ndarray  # (T+1, B, H) states, hs[0] = h0, hs[t+1] = h_t
    W_ih: np.ndarray  # (H, I)
    W_hh: np.ndarray  # (H, H)
    has_bias: bool
    nonlinearity: str
    mask: np.ndarray | None  # (T, B) bool, True = real step


def rnn_forward(
    x: np.ndarray,
    h0: np.ndarray,
    W_ih: np.ndarray,
    W_hh: np.ndarray,
    b_ih: np.ndarray | None,
    b_hh: np.ndarray | None,
    *,
    nonlinearity: str = "tanh",
    mask: np.ndarray | None = None,
    train: bool = True,
    extras: CellExtras | None = None,
) -> tuple[np.ndarray, np.ndarray, Any]:
    """Runs the RNN over ``x``; returns ``(y, h_n, cache)``.

    Parameters
    ----------
    x : input sequence, time-major; its dtype is the compute dtype.
    h0 : initial state.
    W_ih, W_hh, b_ih, b_hh : weights in PyTorch's layout; biases may be None (zero).
    nonlinearity : ``"tanh"``, ``"relu"`` or ``"sigmoid"``.
    mask : optional bool, True where a step is real, False where it is padding.
    train : keep what :func:`rnn_backward` needs; ``cache`` is None otherwise.
    extras : options of :mod:`rnnkit.reference.options` (masks in this function's
        step order); None for the plain cell. Runs :func:`rnn_step` per step.

    Shapes
    ------
    x (T, B, I), h0 (B, H), W_ih (H, I), W_hh (H, H), b_ih/b_hh (H,), mask (T, B)
    -> y (T, B, H), h_n (B, H). ``y`` may be a view of the cache: do not write into
    it before calling backward.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x, h0 = rng.standard_normal((5, 2, 3)), np.zeros((2, 4))
    >>> W_ih, W_hh = rng.standard_normal((4, 3)), rng.standard_normal((4, 4))
    >>> y, h_n, cache = rnn_forward(x, h0, W_ih, W_hh, None, None)
    >>> y.shape, bool(np.all(y[-1] == h_n))
    ((5, 2, 4), True)
    """
    if extras is not None:
        return _rnn_forward_steps(
            x, h0, W_ih, W_hh, b_ih, b_hh, nonlinearity, mask, train, extras
        )
    T, B, I = x.shape
    H = W_hh.shape[1]
    act = ACTIVATIONS[nonlinearity]
    with np.errstate(over="ignore", invalid="ignore"):
        # a_t = W_ih x_t + b_ih + ... : all T steps in one GEMM, both biases folded in
        a = np.matmul(x.reshape(T * B, I), W_ih.T).reshape(T, B, H)
        if b_ih is not None and b_hh is not None:
            a += b_ih + b_hh
        hs = np.empty((T + 1, B, H), dtype=x.dtype)
        hs[0] = h0
        hw = np.empty((B, H), dtype=x.dtype)  # W_hh h_{t-1}
        pad = None if mask is None else ~mask[:, :, None]
        for t in range(T):
            # a_t += W_hh h_{t-1}
            np.matmul(hs[t], W_hh.T, out=hw)
            a[t] += hw
            # h_t = act(a_t)
            act(a[t], out=hs[t + 1])
            if pad is not None:  # padding: h_t = h_{t-1}
                np.copyto(hs[t + 1], hs[t], where=pad[t])
        y = hs[1:] if pad is None else np.where(pad, 0, hs[1:])
    h_n = hs[T].copy()
    if not train:
        return y, h_n, None
    cache = RNNCache(x, hs, W_ih, W_hh, b_ih is not None, nonlinearity, mask)
    return y, h_n, cache


def rnn_backward(
    cache: Any,
    dy: np.ndarray,
    dh_n: np.ndarray,
    dW_ih: np.ndarray,
    dW_hh: np.ndarray,
    db_ih: np.ndarray | None,
    db_hh: np.ndarray | None,
    dextra: ExtraGrads | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Backpropagation through time for :func:`rnn_forward`; returns ``(dx, dh0)``.

    Adds the parameter gradients into ``dW_ih, dW_hh, db_ih, db_hh`` (the biases
    may be None when the forward had none). ``dy`` at padding steps is ignored.

    Shapes
    ------
    dy (T, B, H), dh_n (B, H), dW_ih (H, I), dW_hh (H, H), db_ih/db_hh (H,)
    -> dx (T, B, I), dh0 (B, H).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x, h0 = rng.standard_normal((5, 2, 3)), np.zeros((2, 4))
    >>> W_ih, W_hh = rng.standard_normal((4, 3)), rng.standard_normal((4, 4))
    >>> y, h_n, cache = rnn_forward(x, h0, W_ih, W_hh, None, None)
    >>> dW_ih, dW_hh = np.zeros_like(W_ih), np.zeros_like(W_hh)
    >>> dx, dh0 = rnn_backward(cache, np.ones_like(y), np.zeros_like(h_n),
    ...                        dW_ih, dW_hh, None, None)
    >>> dx.shape, dh0.shape
    ((5, 2, 3), (2, 4))
    """
    if isinstance(cache, RNNStepsCache):  # the RNN's options have no parameters
        return _rnn_backward_steps(cache, dy, dh_n, dW_ih, dW_hh, db_ih, db_hh)
    x, hs, W_ih, W_hh, mask = cache.x, cache.hs, cache.W_ih, cache.W_hh, cache.mask
    T, B, I = x.shape
    H = W_hh.shape[1]
    dtype = x.dtype
    with np.errstate(over="ignore", invalid="ignore"):
        da = np.empty((T, B, H), dtype=dtype)  # dL/da_t for every step
        dh = np.array(dh_n, dtype=dtype)  # dL/dh_t, carried backwards
        dh_prev = np.empty((B, H), dtype=dtype)
        for t in reversed(range(T)):
            m = None if mask is None else mask[t][:, None]
            # y_t = h_t
            np.add(dh, dy[t], out=dh, where=True if m is None else m)
            # h_t = act(a_t)
            activation_grad(dh, hs[t + 1], cache.nonlinearity, out=da[t])
            # a_t = ... + W_hh h_{t-1} + ...
            if m is None:
                np.matmul(da[t], W_hh, out=dh)
            else:  # padding: h_t = h_{t-1}, so dh passes through and da_t = 0
                np.copyto(da[t], 0, where=~m)
                np.matmul(da[t], W_hh, out=dh_prev)
                np.copyto(dh, dh_prev, where=m)
        # a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh: one GEMM per weight, all steps
        da2 = da.reshape(T * B, H)
        dW_ih += da2.T @ x.reshape(T * B, I)
        dW_hh += da2.T @ hs[:T].reshape(T * B, H)
        if cache.has_bias:
            db = da2.sum(axis=0)
            db_ih += db
            db_hh += db
        dx = np.matmul(da2, W_ih).reshape(T, B, I)
    return dx, dh


# ------------------------------------------------------------------ options
# The option-aware path (recurrent dropout, zoneout; see rnnkit.reference.options):
# one function per step. With every option off it computes exactly what the loop
# above computes.


@dataclass
class RNNStep:
    """What :func:`rnn_step_backward` needs of one step of :func:`rnn_step`."""

    h_in: np.ndarray  # (B, H) R ⊙ h_{t-1}
    h_new: np.ndarray  # (B, H) h̃_t = act(a_t), before zoneout


def rnn_step(
    a: np.ndarray,
    h_prev: np.ndarray,
    W_hh: np.ndarray,
    nonlinearity: str,
    ex: CellExtras,
    t: int,
    pad: np.ndarray | None,
) -> tuple[np.ndarray, RNNStep]:
    """One RNN step with options; ``a`` (B, H) holds ``W_ih x_t + b_ih + b_hh``
    (added into in place). Returns ``(h_t, step)``."""
    # h_in = R ⊙ h_{t-1};  a_t += W_hh h_in
    h_in = h_prev if ex.recurrent_mask is None else h_prev * ex.recurrent_mask
    a += h_in @ W_hh.T
    # h̃_t = act(a_t); zoneout; padding keeps h_{t-1}
    h_new = ACTIVATIONS[nonlinearity](a, out=np.empty_like(a))
    zh = None if ex.zoneout_h is None else ex.zoneout_h[t]
    h = zoneout_forward(h_prev, h_new, zh, ex.zoneout, ex.train)
    if pad is not None:
        h = np.where(pad, h_prev, h)
    return h, RNNStep(h_in, h_new)


def rnn_step_backward(
    dh: np.ndarray,
    st: RNNStep,
    W_hh: np.ndarray,
    nonlinearity: str,
    ex: CellExtras,
    t: int,
    real: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Backward of :func:`rnn_step`: ``(da_t, dh_{t-1})`` from dL/dh_t."""
    dh_r = dh if real is None else np.where(real, dh, 0)
    zh = None if ex.zoneout_h is None else ex.zoneout_h[t]
    dh_new = dh_r if zh is None else np.where(zh, 0, dh_r)
    # h̃_t = act(a_t)
    da = np.empty_like(dh_new)
    activation_grad(dh_new, st.h_new, nonlinearity, out=da)
    # a_t = ... + W_hh (R ⊙ h_{t-1})
    dh_prev = da @ W_hh
    if ex.recurrent_mask is not None:
        dh_prev *= ex.recurrent_mask
    if zh is not None:
        dh_prev += np.where(zh, dh_r, 0)
    if real is not None:
        dh_prev = np.where(real, dh_prev, dh)
    return da, dh_prev


@dataclass
class RNNStepsCache:
    """What :func:`rnn_backward` needs from an option-aware :func:`rnn_forward`."""

    x: np.ndarray
    steps: list[RNNStep]
    W_ih: np.ndarray
    W_hh: np.ndarray
    has_bias: bool
    nonlinearity: str
    mask: np.ndarray | None
    extras: CellExtras


def _rnn_forward_steps(
    x: np.ndarray,
    h0: np.ndarray,
    W_ih: np.ndarray,
    W_hh: np.ndarray,
    b_ih: np.ndarray | None,
    b_hh: np.ndarray | None,
    nonlinearity: str,
    mask: np.ndarray | None,
    train: bool,
    ex: CellExtras,
) -> tuple[np.ndarray, np.ndarray, RNNStepsCache | None]:
    T, B, I = x.shape
    H = W_hh.shape[0]
    with np.errstate(over="ignore", invalid="ignore"):
        a = np.matmul(x.reshape(T * B, I), W_ih.T).reshape(T, B, H)
        if b_ih is not None and b_hh is not None:
            a += b_ih + b_hh
        y = np.empty((T, B, H), dtype=x.dtype)
        pad = None if mask is None else ~mask[:, :, None]
        h = h0
        steps = []
        for t in range(T):
            h, st = rnn_step(
                a[t], h, W_hh, nonlinearity, ex, t, None if pad is None else pad[t]
            )
            y[t] = h if pad is None else np.where(pad[t], 0, h)
            steps.append(st)
    h_n = np.array(h)
    if not train:
        return y, h_n, None
    cache = RNNStepsCache(
        x, steps, W_ih, W_hh, b_ih is not None, nonlinearity, mask, ex
    )
    return y, h_n, cache


def _rnn_backward_steps(
    cache: RNNStepsCache,
    dy: np.ndarray,
    dh_n: np.ndarray,
    dW_ih: np.ndarray,
    dW_hh: np.ndarray,
    db_ih: np.ndarray | None,
    db_hh: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    x, mask, W_ih, W_hh = cache.x, cache.mask, cache.W_ih, cache.W_hh
    T, B, I = x.shape
    H = W_hh.shape[0]
    with np.errstate(over="ignore", invalid="ignore"):
        da = np.empty((T, B, H), dtype=x.dtype)
        dh = np.array(dh_n, dtype=x.dtype)
        for t in reversed(range(T)):
            real = None if mask is None else mask[t][:, None]
            dh = np.where(True if real is None else real, dh + dy[t], dh)
            da[t], dh = rnn_step_backward(
                dh, cache.steps[t], W_hh, cache.nonlinearity, cache.extras, t, real
            )
        da2 = da.reshape(T * B, H)
        h_in = np.stack([st.h_in for st in cache.steps]).reshape(T * B, H)
        dW_ih += da2.T @ x.reshape(T * B, I)
        dW_hh += da2.T @ h_in
        if cache.has_bias:
            db = da2.sum(axis=0)
            db_ih += db
            db_hh += db
        dx = np.matmul(da2, W_ih).reshape(T, B, I)
    return dx, dh
