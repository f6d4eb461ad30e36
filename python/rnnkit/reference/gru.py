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
from typing import Any

import numpy as np

from .._ops import sigmoid
from .options import (
    CellExtras,
    ExtraGrads,
    LNCache,
    layer_norm,
    layer_norm_backward,
    zoneout_forward,
)


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
    extras: CellExtras | None = None,
) -> tuple[np.ndarray, np.ndarray, Any]:
    """Runs the GRU over ``x``; returns ``(y, h_n, cache)``.

    Parameters
    ----------
    x : input sequence, time-major; its dtype is the compute dtype.
    h0 : initial state.
    W_ih, W_hh, b_ih, b_hh : weights in PyTorch's layout; biases may be None (zero).
    mask : optional bool, True where a step is real, False where it is padding.
    train : keep what :func:`gru_backward` needs; ``cache`` is None otherwise.
    extras : options of :mod:`rnnkit.reference.options` (masks in this function's
        step order); None for the plain cell. Runs :func:`gru_step` per step.

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
    if extras is not None:
        return _gru_forward_steps(x, h0, W_ih, W_hh, b_ih, b_hh, mask, train, extras)
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
    cache: Any,
    dy: np.ndarray,
    dh_n: np.ndarray,
    dW_ih: np.ndarray,
    dW_hh: np.ndarray,
    db_ih: np.ndarray | None,
    db_hh: np.ndarray | None,
    dextra: ExtraGrads | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Backpropagation through time for :func:`gru_forward`; returns ``(dx, dh0)``.

    Adds the parameter gradients into ``dW_ih, dW_hh, db_ih, db_hh`` (the biases
    may be None when the forward had none). ``dy`` at padding steps is ignored.
    After a forward with ``extras``, ``dextra`` receives the layer-norm gains'
    gradients.

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
    if isinstance(cache, GRUStepsCache):
        return _gru_backward_steps(
            cache, dy, dh_n, dW_ih, dW_hh, db_ih, db_hh, dextra or ExtraGrads()
        )
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


# ------------------------------------------------------------------ options
# The option-aware path (recurrent dropout, zoneout, layer norm; see
# rnnkit.reference.options for the equations): one function per step, forward and
# backward side by side. With every option off it computes exactly what the loop
# above computes, operation for operation.


@dataclass
class GRUStep:
    """What :func:`gru_step_backward` needs of one step of :func:`gru_step`."""

    h_prev: np.ndarray  # (B, H) h_{t-1}
    h_in: np.ndarray  # (B, H) R ⊙ h_{t-1}
    act: np.ndarray  # (B, 3H) activations r, z, n
    hn: np.ndarray  # (B, H) a_h[n] = LN(W_hh h_in)[n] + b_hn
    ln_h: LNCache | None  # LN of W_hh h_in


def gru_step(
    a: np.ndarray,
    h_prev: np.ndarray,
    W_hh: np.ndarray,
    b_hn: np.ndarray | None,
    ex: CellExtras,
    t: int,
    pad: np.ndarray | None,
) -> tuple[np.ndarray, GRUStep]:
    """One GRU step with options; ``a`` (B, 3H) holds the input side
    ``LN(W_ih x_t) + b_ih (+ b_hr, b_hz)`` and becomes the activations (in place).

    Returns ``(h_t, step)``; ``pad`` (B, 1) True where step t is padding.
    """
    H = W_hh.shape[0] // 3
    # h_in = R ⊙ h_{t-1}   (recurrent dropout)
    h_in = h_prev if ex.recurrent_mask is None else h_prev * ex.recurrent_mask
    # a_h = LN(W_hh h_in; γ_hh)   (+ b_hh: b_hr, b_hz folded into a_x)
    hw = h_in @ W_hh.T
    ln_h = None
    if ex.ln_hh is not None:
        hw, ln_h = layer_norm(hw, ex.ln_hh)
    rz = a[:, : 2 * H]
    r, z, n = np.split(a, 3, axis=1)
    # r, z = σ(a_x[r, z] + a_h[r, z])
    rz += hw[:, : 2 * H]
    sigmoid(rz, out=rz)
    # n = tanh(a_x[n] + r ⊙ (a_h[n] + b_hn))
    hn = hw[:, 2 * H :] if b_hn is None else hw[:, 2 * H :] + b_hn
    n += r * hn
    np.tanh(n, out=n)
    # h̃_t = n + z ⊙ (h_{t-1} - n)   (z multiplies the unmasked h_{t-1})
    h_new = n + (h_prev - n) * z
    zh = None if ex.zoneout_h is None else ex.zoneout_h[t]
    h = zoneout_forward(h_prev, h_new, zh, ex.zoneout, ex.train)
    if pad is not None:  # padding: h_t = h_{t-1}
        h = np.where(pad, h_prev, h)
    return h, GRUStep(h_prev, h_in, a, np.array(hn), ln_h)


def gru_step_backward(
    dh: np.ndarray,
    st: GRUStep,
    W_hh: np.ndarray,
    ex: CellExtras,
    dex: ExtraGrads,
    t: int,
    real: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backward of :func:`gru_step`: ``(da_x, da_h, dhw, dh_{t-1})``.

    ``dh`` is dL/dh_t (``dy_t`` included); ``da_x`` (B, 3H) the gradient of the
    input side (and ``b_ih``), ``da_h`` of the recurrent side after its layer norm
    (``b_hh``), ``dhw`` before it (``dW_hh``). ``real`` (B, 1) False at padding.
    """
    H = W_hh.shape[0] // 3
    a = st.act
    rz = a[:, : 2 * H]
    r, z, n = np.split(a, 3, axis=1)
    dh_r = dh if real is None else np.where(real, dh, 0)
    # zoneout: h_t = d ⊙ h_{t-1} + (1 - d) ⊙ h̃_t
    zh = None if ex.zoneout_h is None else ex.zoneout_h[t]
    dh_new = dh_r if zh is None else np.where(zh, 0, dh_r)
    # h̃_t = n + z ⊙ (h_{t-1} - n)
    dn = (1 - z) * dh_new
    dz = (st.h_prev - n) * dh_new
    dh_prev = dh_new * z
    # n = tanh(a_x[n] + r ⊙ hn)
    dan = (1 - n * n) * dn
    dr = dan * st.hn
    dhn = dan * r
    # r, z = σ(.) -> s (1 - s)
    drz = np.concatenate([dr, dz], axis=1) * ((1 - rz) * rz)
    da_x = np.concatenate([drz, dan], axis=1)
    da_h = np.concatenate([drz, dhn], axis=1)
    dhw = da_h
    if st.ln_h is not None:
        assert ex.ln_hh is not None and dex.ln_hh is not None
        dhw = layer_norm_backward(da_h, st.ln_h, ex.ln_hh, dex.ln_hh)
    dh_in = dhw @ W_hh
    if ex.recurrent_mask is not None:  # h_in = R ⊙ h_{t-1}
        dh_in *= ex.recurrent_mask
    dh_prev = dh_in + dh_prev
    if zh is not None:
        dh_prev += np.where(zh, dh_r, 0)
    if real is not None:  # padding: h_t = h_{t-1}
        dh_prev = np.where(real, dh_prev, dh)
    return da_x, da_h, dhw, dh_prev


@dataclass
class GRUStepsCache:
    """What :func:`gru_backward` needs from an option-aware :func:`gru_forward`."""

    x: np.ndarray
    steps: list[GRUStep]
    ln_x: LNCache | None
    W_ih: np.ndarray
    W_hh: np.ndarray
    has_bias: bool
    mask: np.ndarray | None
    extras: CellExtras


def _gru_forward_steps(
    x: np.ndarray,
    h0: np.ndarray,
    W_ih: np.ndarray,
    W_hh: np.ndarray,
    b_ih: np.ndarray | None,
    b_hh: np.ndarray | None,
    mask: np.ndarray | None,
    train: bool,
    ex: CellExtras,
) -> tuple[np.ndarray, np.ndarray, GRUStepsCache | None]:
    T, B, I = x.shape
    G = W_hh.shape[0]
    H = G // 3
    with np.errstate(over="ignore", invalid="ignore"):
        # a_x = LN(W_ih x_t; γ_ih) + b_ih (+ b_hr, b_hz), all T steps in one GEMM
        xa = np.matmul(x.reshape(T * B, I), W_ih.T).reshape(T, B, G)
        ln_x = None
        if ex.ln_ih is not None:
            xa, ln_x = layer_norm(xa, ex.ln_ih)
        b_hn = None
        if b_ih is not None and b_hh is not None:
            xa += b_ih
            xa[:, :, : 2 * H] += b_hh[: 2 * H]
            b_hn = b_hh[2 * H :]
        y = np.empty((T, B, H), dtype=x.dtype)
        pad = None if mask is None else ~mask[:, :, None]
        h = h0
        steps = []
        for t in range(T):
            h, st = gru_step(
                xa[t], h, W_hh, b_hn, ex, t, None if pad is None else pad[t]
            )
            y[t] = h if pad is None else np.where(pad[t], 0, h)
            steps.append(st)
    h_n = np.array(h)
    if not train:
        return y, h_n, None
    return y, h_n, GRUStepsCache(x, steps, ln_x, W_ih, W_hh, b_ih is not None, mask, ex)


def _gru_backward_steps(
    cache: GRUStepsCache,
    dy: np.ndarray,
    dh_n: np.ndarray,
    dW_ih: np.ndarray,
    dW_hh: np.ndarray,
    db_ih: np.ndarray | None,
    db_hh: np.ndarray | None,
    dex: ExtraGrads,
) -> tuple[np.ndarray, np.ndarray]:
    x, ex, mask, W_ih, W_hh = cache.x, cache.extras, cache.mask, cache.W_ih, cache.W_hh
    T, B, I = x.shape
    G = W_hh.shape[0]
    with np.errstate(over="ignore", invalid="ignore"):
        dgx = np.empty((T, B, G), dtype=x.dtype)
        dgh = np.empty((T, B, G), dtype=x.dtype)
        dhw = np.empty((T, B, G), dtype=x.dtype)
        dh = np.array(dh_n, dtype=x.dtype)
        for t in reversed(range(T)):
            real = None if mask is None else mask[t][:, None]
            dh = np.where(True if real is None else real, dh + dy[t], dh)
            dgx[t], dgh[t], dhw[t], dh = gru_step_backward(
                dh, cache.steps[t], W_hh, ex, dex, t, real
            )
        dgx2, dgh2 = dgx.reshape(T * B, G), dgh.reshape(T * B, G)
        h_in = np.stack([st.h_in for st in cache.steps]).reshape(T * B, -1)
        dW_hh += dhw.reshape(T * B, G).T @ h_in
        if cache.has_bias:
            db_ih += dgx2.sum(axis=0)
            db_hh += dgh2.sum(axis=0)
        dxw = dgx2
        if cache.ln_x is not None:
            assert ex.ln_ih is not None and dex.ln_ih is not None
            dxw = layer_norm_backward(dgx, cache.ln_x, ex.ln_ih, dex.ln_ih).reshape(
                T * B, G
            )
        dW_ih += dxw.T @ x.reshape(T * B, I)
        dx = np.matmul(dxw, W_ih).reshape(T, B, I)
    return dx, dh
