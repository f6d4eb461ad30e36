"""GRU, one layer, one direction: forward and backward through time in NumPy.

What it computes (PyTorch's ``torch.nn.GRU``), for t = 0 .. T-1::

    r_t  = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)    reset gate   (h_{-1} = h0)
    z_t  = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)    update gate
    hn_t = W_hn h_{t-1} + b_hn
    n_t  = tanh(W_in x_t + b_in + r_t * hn_t)           candidate
    h_t  = (1 - z_t) * n_t + z_t * h_{t-1}  =  n_t + z_t * (h_{t-1} - n_t)
    y_t  = h_t

Gate order r, z, n (PyTorch's): rows [0:H], [H:2H], [2H:3H] of every weight and
bias. The reset gate multiplies the recurrent product *after* the matrix product,
so ``b_hn`` stays inside ``r_t * (...)`` and cannot be folded into ``b_in``.
Dimension letters: T time, B batch, I input, H hidden, G = 3H gate rows. Layouts:
``x`` (T, B, I) time-major, ``W_ih`` (3H, I), ``W_hh`` (3H, H), biases (3H,).

How: ``W_ih x_t + b_ih`` (plus ``b_hr, b_hz``) for all T steps is one GEMM,
(T*B, I) @ (I, 3H), into a (T, B, 3H) buffer that the time loop turns, step by
step and in place, into the activations r, z, n; per step there is one recurrent
GEMM ``h_{t-1} @ W_hh.T``. ``h_t`` is computed as ``n + z (h - n)``, the form
PyTorch's CPU kernel uses. In backward the weight gradients are one GEMM each over
all T*B rows.

What forward stores for backward: ``x`` (for ``dW_ih``); the activations
``r, z, n`` of every step; ``hn_t`` (``dr`` needs it); all states ``hs[0..T]``
(``hs[t]`` is h_{t-1} of step t).

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

import numpy as np

from .._ops import sigmoid


@dataclass
class GRUCache:
    """What :func:`gru_backward` needs from :func:`gru_forward`."""

    x: np.ndarray  # (T, B, I) input
    gates: np.ndarray  # (T, B, 3H) activations r, z, n
    hns: np.ndarray  # (T, B, H) hn_t = W_hn h_{t-1} + b_hn
    hs: np.ndarray  # (T+1, B, H) hs[0] = h0, hs[t+1] = h_t
    W_ih: np.ndarray  # (3H, I)
    W_hh: np.ndarray  # (3H, H)
    has_bias: bool
    mask: np.ndarray | None  # (T, B) bool, True = real step


def gru_forward(
    x: np.ndarray,
    h0: np.ndarray,
    W_ih: np.ndarray,
    W_hh: np.ndarray,
    b_ih: np.ndarray | None,
    b_hh: np.ndarray | None,
    *,
    mask: np.ndarray | None = None,
    train: bool = True,
) -> tuple[np.ndarray, np.ndarray, GRUCache | None]:
    """Runs the GRU over ``x``; returns ``(y, h_n, cache)``.

    Parameters
    ----------
    x : input sequence, time-major; its dtype is the compute dtype.
    h0 : initial state.
    W_ih, W_hh, b_ih, b_hh : weights in PyTorch's layout; biases may be None (zero).
    mask : optional bool, True where a step is real, False where it is padding.
    train : keep what :func:`gru_backward` needs; ``cache`` is None otherwise.

    Shapes
    ------
    x (T, B, I), h0 (B, H), W_ih (3H, I), W_hh (3H, H), b_ih/b_hh (3H,), mask (T, B)
    -> y (T, B, H), h_n (B, H). ``y`` may be a view of the cache: do not write into
    it before calling backward.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x, h0 = rng.standard_normal((5, 2, 3)), np.zeros((2, 4))
    >>> W_ih, W_hh = rng.standard_normal((12, 3)), rng.standard_normal((12, 4))
    >>> y, h_n, cache = gru_forward(x, h0, W_ih, W_hh, None, None)
    >>> y.shape
    (5, 2, 4)
    """
    T, B, I = x.shape
    H = W_hh.shape[1]
    dtype = x.dtype
    with np.errstate(over="ignore", invalid="ignore"):
        # W_i{r,z,n} x_t + b_i{r,z,n} (+ b_h{r,z}): all T steps in one GEMM
        gates = np.matmul(x.reshape(T * B, I), W_ih.T).reshape(T, B, 3 * H)
        if b_ih is not None and b_hh is not None:
            gates += b_ih
            gates[:, :, : 2 * H] += b_hh[: 2 * H]
        hns = np.empty((T, B, H), dtype=dtype)
        hs = np.empty((T + 1, B, H), dtype=dtype)
        hs[0] = h0
        hw = np.empty((B, 3 * H), dtype=dtype)  # W_hh h_{t-1}
        tmp = np.empty((B, H), dtype=dtype)
        pad = None if mask is None else ~mask[:, :, None]
        for t in range(T):
            a = gates[t]
            rz = a[:, : 2 * H]
            r, z, n = np.split(a, 3, axis=1)  # views
            np.matmul(hs[t], W_hh.T, out=hw)
            # r_t, z_t = σ(W_i{r,z} x_t + b_i{r,z} + W_h{r,z} h_{t-1} + b_h{r,z})
            rz += hw[:, : 2 * H]
            sigmoid(rz, out=rz)
            # hn_t = W_hn h_{t-1} + b_hn
            if b_hh is None:
                hns[t] = hw[:, 2 * H :]
            else:
                np.add(hw[:, 2 * H :], b_hh[2 * H :], out=hns[t])
            # n_t = tanh(W_in x_t + b_in + r_t * hn_t)
            np.multiply(r, hns[t], out=tmp)
            n += tmp
            np.tanh(n, out=n)
            # h_t = n_t + z_t * (h_{t-1} - n_t)
            np.subtract(hs[t], n, out=tmp)
            tmp *= z
            np.add(n, tmp, out=hs[t + 1])
            if pad is not None:  # padding: h_t = h_{t-1}
                np.copyto(hs[t + 1], hs[t], where=pad[t])
        y = hs[1:] if pad is None else np.where(pad, 0, hs[1:])
    h_n = hs[T].copy()
    if not train:
        return y, h_n, None
    cache = GRUCache(x, gates, hns, hs, W_ih, W_hh, b_ih is not None, mask)
    return y, h_n, cache


def gru_backward(
    cache: GRUCache,
    dy: np.ndarray,
    dh_n: np.ndarray,
    dW_ih: np.ndarray,
    dW_hh: np.ndarray,
    db_ih: np.ndarray | None,
    db_hh: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Backpropagation through time for :func:`gru_forward`; returns ``(dx, dh0)``.

    Adds the parameter gradients into ``dW_ih, dW_hh, db_ih, db_hh`` (the biases
    may be None when the forward had none). ``dy`` at padding steps is ignored.

    Shapes
    ------
    dy (T, B, H), dh_n (B, H), dW_ih (3H, I), dW_hh (3H, H), db_ih/db_hh (3H,)
    -> dx (T, B, I), dh0 (B, H).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x, h0 = rng.standard_normal((5, 2, 3)), np.zeros((2, 4))
    >>> W_ih, W_hh = rng.standard_normal((12, 3)), rng.standard_normal((12, 4))
    >>> y, h_n, cache = gru_forward(x, h0, W_ih, W_hh, None, None)
    >>> dW_ih, dW_hh = np.zeros_like(W_ih), np.zeros_like(W_hh)
    >>> dx, dh0 = gru_backward(cache, np.ones_like(y), np.zeros_like(h_n),
    ...                        dW_ih, dW_hh, None, None)
    >>> dx.shape, dh0.shape
    ((5, 2, 3), (2, 4))
    """
    x, gates, hns, hs, mask = cache.x, cache.gates, cache.hns, cache.hs, cache.mask
    W_ih, W_hh = cache.W_ih, cache.W_hh
    T, B, I = x.shape
    H = W_hh.shape[1]
    dtype = x.dtype
    with np.errstate(over="ignore", invalid="ignore"):
        # Pre-activation gradients on the input side, [dr, dz, dn] (dn w.r.t. W_in x),
        # and on the recurrent side, [dr, dz, dhn] (dhn = dn * r, w.r.t. W_hn h).
        dgx = np.empty((T, B, 3 * H), dtype=dtype)
        dgh = np.empty((T, B, 3 * H), dtype=dtype)
        dh = np.array(dh_n, dtype=dtype)  # dL/dh_t, carried backwards
        dh_prev = np.empty((B, H), dtype=dtype)
        dhw = np.empty((B, H), dtype=dtype)  # dgh_t W_hh
        dn = np.empty((B, H), dtype=dtype)
        tmp = np.empty((B, 2 * H), dtype=dtype)
        for t in reversed(range(T)):
            a, dax, dah = gates[t], dgx[t], dgh[t]
            rz, drz = a[:, : 2 * H], dax[:, : 2 * H]
            r, z, n = np.split(a, 3, axis=1)  # views
            dr, dz, dan = np.split(dax, 3, axis=1)
            m = None if mask is None else mask[t][:, None]
            # y_t = h_t
            np.add(dh, dy[t], out=dh, where=True if m is None else m)
            # h_t = n_t + z_t * (h_{t-1} - n_t)   -> dn, dz, and dh_{t-1} = dh * z + ...
            np.subtract(1, z, out=dn)
            dn *= dh
            np.subtract(hs[t], n, out=dz)
            dz *= dh
            np.multiply(dh, z, out=dh_prev)
            # n_t = tanh(W_in x_t + b_in + r_t * hn_t)
            np.multiply(n, n, out=dan)
            np.subtract(1, dan, out=dan)
            dan *= dn
            np.multiply(dan, hns[t], out=dr)
            # hn_t = W_hn h_{t-1} + b_hn   (reached through r_t * hn_t)
            np.multiply(dan, r, out=dah[:, 2 * H :])
            # r_t, z_t = σ(...) -> σ' = s (1 - s)
            np.subtract(1, rz, out=tmp)
            tmp *= rz
            drz *= tmp
            dah[:, : 2 * H] = drz
            # r_t, z_t, hn_t = ... W_hh h_{t-1} ...
            if m is None:
                np.matmul(dah, W_hh, out=dh)
                dh += dh_prev
            else:  # padding: h_t = h_{t-1}, so dh passes through and the gates get 0
                np.copyto(dax, 0, where=~m)
                np.copyto(dah, 0, where=~m)
                np.matmul(dah, W_hh, out=dhw)
                dh_prev += dhw
                np.copyto(dh, dh_prev, where=m)
        # W_ih x_t + b_ih, W_hh h_{t-1} + b_hh: one GEMM per weight, all steps
        dgx2, dgh2 = dgx.reshape(T * B, 3 * H), dgh.reshape(T * B, 3 * H)
        dW_ih += dgx2.T @ x.reshape(T * B, I)
        dW_hh += dgh2.T @ hs[:T].reshape(T * B, H)
        if cache.has_bias:
            db_ih += dgx2.sum(axis=0)
            db_hh += dgh2.sum(axis=0)
        dx = np.matmul(dgx2, W_ih).reshape(T, B, I)
    return dx, dh
