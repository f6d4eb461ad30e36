"""LSTM, one layer, one direction: forward and backward through time in NumPy.

What it computes (PyTorch's ``torch.nn.LSTM``), for t = 0 .. T-1::

    a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh        (h_{-1} = h0, c_{-1} = c0)
    i_t = σ(a_t[0:H])        input gate
    f_t = σ(a_t[H:2H])       forget gate
    g_t = tanh(a_t[2H:3H])   cell candidate
    o_t = σ(a_t[3H:4H])      output gate
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)
    y_t = h_t

Gate order i, f, g, o (PyTorch's): rows [0:H], [H:2H], [2H:3H], [3H:4H] of every
weight and bias. Dimension letters: T time, B batch, I input, H hidden, G = 4H gate
rows. Layouts: ``x`` (T, B, I) time-major, ``W_ih`` (4H, I), ``W_hh`` (4H, H),
biases (4H,).

How: ``W_ih x_t + b_ih + b_hh`` for all T steps is one GEMM, (T*B, I) @ (I, 4H),
into a (T, B, 4H) buffer that the time loop then turns, step by step and in place,
into the gate activations; per step there is one recurrent GEMM
``h_{t-1} @ W_hh.T``. In backward the weight gradients are one GEMM each over all
T*B rows.

What forward stores for backward: ``x`` (for ``dW_ih``); the activations
``i, f, g, o`` of every step (their derivatives are functions of the activations:
``σ' = s (1 - s)``, ``tanh' = 1 - g^2``); all states ``hs[0..T]`` and ``cs[0..T]``
(``hs[t]``, ``cs[t]`` are h_{t-1}, c_{t-1} of step t); and ``tanh(c_t)``, which
both ``do`` and ``dc`` need.

Padding (``mask``): where ``mask[t, b]`` is False, step t of row b is padding: the
state passes through unchanged (``h_t = h_{t-1}``, ``c_t = c_{t-1}``), ``y_t`` is
zero and ``dy_t`` is ignored. With a prefix mask (``t < length[b]``) this equals
running each row alone over its own length. Padding entries of ``x`` must be finite
(``dW_ih`` multiplies them by a zero gradient); :mod:`rnnkit.reference._stack`
zeroes them.

Contract of backward (llm.c / haste): it *adds* into ``dW_ih, dW_hh, db_ih, db_hh``
(zeroing them is the caller's job) and returns fresh ``dx``, ``dh0`` and ``dc0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._ops import sigmoid


@dataclass
class LSTMCache:
    """What :func:`lstm_backward` needs from :func:`lstm_forward`."""

    x: np.ndarray  # (T, B, I) input
    gates: np.ndarray  # (T, B, 4H) activations i, f, g, o
    hs: np.ndarray  # (T+1, B, H) hs[0] = h0, hs[t+1] = h_t
    cs: np.ndarray  # (T+1, B, H) cs[0] = c0, cs[t+1] = c_t
    tanh_cs: np.ndarray  # (T, B, H) tanh(c_t)
    W_ih: np.ndarray  # (4H, I)
    W_hh: np.ndarray  # (4H, H)
    has_bias: bool
    mask: np.ndarray | None  # (T, B) bool, True = real step


def lstm_forward(
    x: np.ndarray,
    h0: np.ndarray,
    c0: np.ndarray,
    W_ih: np.ndarray,
    W_hh: np.ndarray,
    b_ih: np.ndarray | None,
    b_hh: np.ndarray | None,
    *,
    mask: np.ndarray | None = None,
    train: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, LSTMCache | None]:
    """Runs the LSTM over ``x``; returns ``(y, h_n, c_n, cache)``.

    Parameters
    ----------
    x : input sequence, time-major; its dtype is the compute dtype.
    h0, c0 : initial hidden and cell state.
    W_ih, W_hh, b_ih, b_hh : weights in PyTorch's layout; biases may be None (zero).
    mask : optional bool, True where a step is real, False where it is padding.
    train : keep what :func:`lstm_backward` needs; ``cache`` is None otherwise.

    Shapes
    ------
    x (T, B, I), h0/c0 (B, H), W_ih (4H, I), W_hh (4H, H), b_ih/b_hh (4H,),
    mask (T, B) -> y (T, B, H), h_n (B, H), c_n (B, H). ``y`` may be a view of the
    cache: do not write into it before calling backward.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x, h0 = rng.standard_normal((5, 2, 3)), np.zeros((2, 4))
    >>> c0 = np.zeros((2, 4))
    >>> W_ih, W_hh = rng.standard_normal((16, 3)), rng.standard_normal((16, 4))
    >>> y, h_n, c_n, cache = lstm_forward(x, h0, c0, W_ih, W_hh, None, None)
    >>> y.shape, c_n.shape
    ((5, 2, 4), (2, 4))
    """
    T, B, I = x.shape
    H = W_hh.shape[1]
    dtype = x.dtype
    with np.errstate(over="ignore", invalid="ignore"):
        # a_t = W_ih x_t + b_ih + ... : all T steps in one GEMM, both biases folded in
        gates = np.matmul(x.reshape(T * B, I), W_ih.T).reshape(T, B, 4 * H)
        if b_ih is not None and b_hh is not None:
            gates += b_ih + b_hh
        hs = np.empty((T + 1, B, H), dtype=dtype)
        cs = np.empty((T + 1, B, H), dtype=dtype)
        tanh_cs = np.empty((T, B, H), dtype=dtype)
        hs[0] = h0
        cs[0] = c0
        hw = np.empty((B, 4 * H), dtype=dtype)  # W_hh h_{t-1}
        ig = np.empty((B, H), dtype=dtype)  # i_t * g_t
        pad = None if mask is None else ~mask[:, :, None]
        for t in range(T):
            a = gates[t]
            # a_t += W_hh h_{t-1}
            np.matmul(hs[t], W_hh.T, out=hw)
            a += hw
            # i, f = σ(.), g = tanh(.), o = σ(.)   (in place: a becomes the activations)
            sigmoid(a[:, : 2 * H], out=a[:, : 2 * H])
            np.tanh(a[:, 2 * H : 3 * H], out=a[:, 2 * H : 3 * H])
            sigmoid(a[:, 3 * H :], out=a[:, 3 * H :])
            i, f, g, o = np.split(a, 4, axis=1)  # views
            # c_t = f_t * c_{t-1} + i_t * g_t
            np.multiply(f, cs[t], out=cs[t + 1])
            np.multiply(i, g, out=ig)
            cs[t + 1] += ig
            # h_t = o_t * tanh(c_t)
            np.tanh(cs[t + 1], out=tanh_cs[t])
            np.multiply(o, tanh_cs[t], out=hs[t + 1])
            if pad is not None:  # padding: c_t = c_{t-1}, h_t = h_{t-1}
                np.copyto(cs[t + 1], cs[t], where=pad[t])
                np.copyto(hs[t + 1], hs[t], where=pad[t])
        y = hs[1:] if pad is None else np.where(pad, 0, hs[1:])
    h_n, c_n = hs[T].copy(), cs[T].copy()
    if not train:
        return y, h_n, c_n, None
    cache = LSTMCache(x, gates, hs, cs, tanh_cs, W_ih, W_hh, b_ih is not None, mask)
    return y, h_n, c_n, cache


def lstm_backward(
    cache: LSTMCache,
    dy: np.ndarray,
    dh_n: np.ndarray,
    dc_n: np.ndarray,
    dW_ih: np.ndarray,
    dW_hh: np.ndarray,
    db_ih: np.ndarray | None,
    db_hh: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backpropagation through time for :func:`lstm_forward`: ``(dx, dh0, dc0)``.

    Adds the parameter gradients into ``dW_ih, dW_hh, db_ih, db_hh`` (the biases
    may be None when the forward had none). ``dy`` at padding steps is ignored.

    Shapes
    ------
    dy (T, B, H), dh_n/dc_n (B, H), dW_ih (4H, I), dW_hh (4H, H), db_ih/db_hh (4H,)
    -> dx (T, B, I), dh0 (B, H), dc0 (B, H).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x, h0 = rng.standard_normal((5, 2, 3)), np.zeros((2, 4))
    >>> c0 = np.zeros((2, 4))
    >>> W_ih, W_hh = rng.standard_normal((16, 3)), rng.standard_normal((16, 4))
    >>> y, h_n, c_n, cache = lstm_forward(x, h0, c0, W_ih, W_hh, None, None)
    >>> dW_ih, dW_hh = np.zeros_like(W_ih), np.zeros_like(W_hh)
    >>> dx, dh0, dc0 = lstm_backward(cache, np.ones_like(y), np.zeros_like(h_n),
    ...                              np.zeros_like(c_n), dW_ih, dW_hh, None, None)
    >>> dx.shape, dc0.shape
    ((5, 2, 3), (2, 4))
    """
    x, gates, hs, cs, mask = cache.x, cache.gates, cache.hs, cache.cs, cache.mask
    W_ih, W_hh = cache.W_ih, cache.W_hh
    T, B, I = x.shape
    H = W_hh.shape[1]
    dtype = x.dtype
    with np.errstate(over="ignore", invalid="ignore"):
        dgates = np.empty((T, B, 4 * H), dtype=dtype)  # dL/da_t for every step
        dh = np.array(dh_n, dtype=dtype)  # dL/dh_t, carried backwards
        dc = np.array(dc_n, dtype=dtype)  # dL/dc_t, carried backwards
        dc_t = np.empty((B, H), dtype=dtype)  # dL/dc_t including the path through h_t
        dact = np.empty((B, 4 * H), dtype=dtype)  # derivative of each activation
        dh_prev = np.empty((B, H), dtype=dtype)
        for t in reversed(range(T)):
            a, da = gates[t], dgates[t]
            i, f, g, o = np.split(a, 4, axis=1)  # views
            di, df, dg, do = np.split(da, 4, axis=1)
            tanh_c = cache.tanh_cs[t]
            m = None if mask is None else mask[t][:, None]
            # y_t = h_t
            np.add(dh, dy[t], out=dh, where=True if m is None else m)
            # h_t = o_t * tanh(c_t)
            np.multiply(dh, tanh_c, out=do)
            np.multiply(tanh_c, tanh_c, out=dc_t)
            np.subtract(1, dc_t, out=dc_t)
            dc_t *= o
            dc_t *= dh
            dc_t += dc
            # c_t = f_t * c_{t-1} + i_t * g_t
            np.multiply(dc_t, g, out=di)
            np.multiply(dc_t, cs[t], out=df)
            np.multiply(dc_t, i, out=dg)
            # i, f, o = σ(.) -> σ' = s (1 - s);  g = tanh(.) -> tanh' = 1 - g^2
            np.subtract(1, a, out=dact)
            dact *= a
            dact_g = dact[:, 2 * H : 3 * H]
            np.multiply(g, g, out=dact_g)
            np.subtract(1, dact_g, out=dact_g)
            da *= dact
            # a_t = ... + W_hh h_{t-1} + ...
            if m is None:
                np.matmul(da, W_hh, out=dh)
                np.multiply(dc_t, f, out=dc)
            else:  # padding: h_t = h_{t-1}, c_t = c_{t-1}: dh, dc pass, da_t = 0
                np.copyto(da, 0, where=~m)
                np.matmul(da, W_hh, out=dh_prev)
                np.copyto(dh, dh_prev, where=m)
                dc_t *= f
                np.copyto(dc, dc_t, where=m)
        # a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh: one GEMM per weight, all steps
        da2 = dgates.reshape(T * B, 4 * H)
        dW_ih += da2.T @ x.reshape(T * B, I)
        dW_hh += da2.T @ hs[:T].reshape(T * B, H)
        if cache.has_bias:
            db = da2.sum(axis=0)
            db_ih += db
            db_hh += db
        dx = np.matmul(da2, W_ih).reshape(T, B, I)
    return dx, dh, dc
