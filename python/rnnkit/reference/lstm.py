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
    extras: CellExtras | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """Runs the LSTM over ``x``; returns ``(y, h_n, c_n, cache)``.

    Parameters
    ----------
    x : input sequence, time-major; its dtype is the compute dtype.
    h0, c0 : initial hidden and cell state.
    W_ih, W_hh, b_ih, b_hh : weights in PyTorch's layout; biases may be None (zero).
    mask : optional bool, True where a step is real, False where it is padding.
    train : keep what :func:`lstm_backward` needs; ``cache`` is None otherwise.
    extras : options of :mod:`rnnkit.reference.options` (projection, layer norm,
        recurrent dropout, zoneout; masks in this function's step order); None for
        the plain cell. Runs the step-by-step path (:func:`lstm_step`).

    Shapes
    ------
    x (T, B, I), h0/c0 (B, H), W_ih (4H, I), W_hh (4H, H), b_ih/b_hh (4H,),
    mask (T, B) -> y (T, B, H), h_n (B, H), c_n (B, H). With ``extras.W_hr`` (P, H):
    h0/h_n (B, P), W_hh (4H, P), y (T, B, P). ``y`` may be a view of the
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
    if extras is not None:
        return _lstm_forward_steps(
            x, h0, c0, W_ih, W_hh, b_ih, b_hh, mask, train, extras
        )
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
    cache: Any,
    dy: np.ndarray,
    dh_n: np.ndarray,
    dc_n: np.ndarray,
    dW_ih: np.ndarray,
    dW_hh: np.ndarray,
    db_ih: np.ndarray | None,
    db_hh: np.ndarray | None,
    dextra: ExtraGrads | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backpropagation through time for :func:`lstm_forward`: ``(dx, dh0, dc0)``.

    Adds the parameter gradients into ``dW_ih, dW_hh, db_ih, db_hh`` (the biases
    may be None when the forward had none). ``dy`` at padding steps is ignored.
    After a forward with ``extras``, ``dextra`` receives the option parameters'
    gradients (``W_hr``, layer-norm gains and bias).

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
    if isinstance(cache, LSTMStepsCache):
        return _lstm_backward_steps(
            cache, dy, dh_n, dc_n, dW_ih, dW_hh, db_ih, db_hh, dextra or ExtraGrads()
        )
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


# ------------------------------------------------------------------ options
# The option-aware path (recurrent dropout, zoneout, layer norm, projection; see
# rnnkit.reference.options for the equations): one function per step, forward and
# backward side by side. With every option off it computes exactly what the loop
# above computes, operation for operation.


@dataclass
class LSTMStep:
    """What :func:`lstm_step_backward` needs of one step of :func:`lstm_step`."""

    h_prev: np.ndarray  # (B, S) h_{t-1}
    c_prev: np.ndarray  # (B, H) c_{t-1}
    h_in: np.ndarray  # (B, S) R ⊙ h_{t-1}, the recurrent product's input
    act: np.ndarray  # (B, 4H) activations i, f, g, o
    tanh_c: np.ndarray  # (B, H) tanh(c̃_t), or tanh(LN(c̃_t)) with layer norm
    m: np.ndarray  # (B, H) o_t ⊙ tanh_c, the projection's input
    ln_h: LNCache | None  # LN of W_hh h_in
    ln_c: LNCache | None  # LN of c̃_t


def lstm_step(
    a: np.ndarray,
    h_prev: np.ndarray,
    c_prev: np.ndarray,
    W_hh: np.ndarray,
    ex: CellExtras,
    t: int,
    pad: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, LSTMStep]:
    """One LSTM step with options; ``a`` (B, 4H) holds the input side
    ``LN(W_ih x_t) + b_ih + b_hh`` and becomes the activations (in place).

    Returns ``(h_t, c_t, step)``; ``pad`` (B, 1) True where step t is padding.
    """
    H = W_hh.shape[0] // 4
    # h_in = R ⊙ h_{t-1}   (recurrent dropout)
    h_in = h_prev if ex.recurrent_mask is None else h_prev * ex.recurrent_mask
    # a_t = a_x + LN(W_hh h_in; γ_hh)   (+ b_hh, folded into a_x)
    hw = h_in @ W_hh.T
    ln_h = None
    if ex.ln_hh is not None:
        hw, ln_h = layer_norm(hw, ex.ln_hh)
    a += hw
    sigmoid(a[:, : 2 * H], out=a[:, : 2 * H])
    np.tanh(a[:, 2 * H : 3 * H], out=a[:, 2 * H : 3 * H])
    sigmoid(a[:, 3 * H :], out=a[:, 3 * H :])
    i, f, g, o = np.split(a, 4, axis=1)
    # c̃_t = f ⊙ c_{t-1} + i ⊙ g
    c_new = f * c_prev + i * g
    # h̃_t = W_hr (o ⊙ tanh(LN(c̃_t; γ_c, β_c)))   (LN and W_hr optional)
    ln_c = None
    cn = c_new
    if ex.ln_c_weight is not None:
        cn, ln_c = layer_norm(c_new, ex.ln_c_weight, ex.ln_c_bias)
    tanh_c = np.tanh(cn)
    m = o * tanh_c
    h_new = m if ex.W_hr is None else m @ ex.W_hr.T
    # zoneout: h_t = d ⊙ h_{t-1} + (1 - d) ⊙ h̃_t, c_t likewise (mean at inference)
    zh = None if ex.zoneout_h is None else ex.zoneout_h[t]
    zc = None if ex.zoneout_c is None else ex.zoneout_c[t]
    h = zoneout_forward(h_prev, h_new, zh, ex.zoneout, ex.train)
    c = zoneout_forward(c_prev, c_new, zc, ex.zoneout, ex.train)
    if pad is not None:  # padding: h_t = h_{t-1}, c_t = c_{t-1}
        h = np.where(pad, h_prev, h)
        c = np.where(pad, c_prev, c)
    return h, c, LSTMStep(h_prev, c_prev, h_in, a, tanh_c, m, ln_h, ln_c)


def lstm_step_backward(
    dh: np.ndarray,
    dc: np.ndarray,
    st: LSTMStep,
    W_hh: np.ndarray,
    ex: CellExtras,
    dex: ExtraGrads,
    t: int,
    real: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backward of :func:`lstm_step`: ``(da_x, da_h, dh̃, dh_{t-1}, dc_{t-1})``.

    ``dh``, ``dc`` are dL/dh_t (``dy_t`` included), dL/dc_t; ``da_x`` (B, 4H) is
    the gradient of the pre-activation (input side and biases), ``da_h`` of the
    recurrent product before its layer norm (for ``dW_hh``), ``dh̃`` of the
    projection's output (for ``dW_hr``). Adds into the LN gradients in ``dex``.
    ``real`` (B, 1) False where step t is padding.
    """
    H = W_hh.shape[0] // 4
    a = st.act
    i, f, g, o = np.split(a, 4, axis=1)
    if real is not None:  # padding rows take no part; their dh, dc pass below
        dh_r, dc_r = np.where(real, dh, 0), np.where(real, dc, 0)
    else:
        dh_r, dc_r = dh, dc
    # h_t = d ⊙ h_{t-1} + (1 - d) ⊙ h̃_t,  c_t = e ⊙ c_{t-1} + (1 - e) ⊙ c̃_t
    zh = None if ex.zoneout_h is None else ex.zoneout_h[t]
    zc = None if ex.zoneout_c is None else ex.zoneout_c[t]
    dh_new = dh_r if zh is None else np.where(zh, 0, dh_r)
    dc_new = dc_r if zc is None else np.where(zc, 0, dc_r)
    # h̃_t = W_hr m_t
    dm = dh_new if ex.W_hr is None else dh_new @ ex.W_hr
    # m_t = o ⊙ tanh(cn),  cn = LN(c̃_t)
    do = dm * st.tanh_c
    dcn = (1 - st.tanh_c * st.tanh_c) * o * dm
    if st.ln_c is not None:
        assert ex.ln_c_weight is not None and dex.ln_c_weight is not None
        dcn = layer_norm_backward(
            dcn, st.ln_c, ex.ln_c_weight, dex.ln_c_weight, dex.ln_c_bias
        )
    dc_t = dcn + dc_new
    # c̃_t = f ⊙ c_{t-1} + i ⊙ g
    di, df, dg = dc_t * g, dc_t * st.c_prev, dc_t * i
    # i, f, o = σ(.) -> s (1 - s);  g = tanh(.) -> 1 - g^2
    dact = (1 - a) * a
    dact[:, 2 * H : 3 * H] = 1 - g * g
    da = np.concatenate([di, df, dg, do], axis=1) * dact
    dc_prev = dc_t * f
    # a_t = ... + LN(W_hh h_in; γ_hh)
    dhw = da
    if st.ln_h is not None:
        assert ex.ln_hh is not None and dex.ln_hh is not None
        dhw = layer_norm_backward(da, st.ln_h, ex.ln_hh, dex.ln_hh)
    dh_prev = dhw @ W_hh
    if ex.recurrent_mask is not None:  # h_in = R ⊙ h_{t-1}
        dh_prev *= ex.recurrent_mask
    if zh is not None:
        dh_prev += np.where(zh, dh_r, 0)
    if zc is not None:
        dc_prev += np.where(zc, dc_r, 0)
    if real is not None:  # padding: h_t = h_{t-1}, c_t = c_{t-1}
        dh_prev = np.where(real, dh_prev, dh)
        dc_prev = np.where(real, dc_prev, dc)
    return da, dhw, dh_new, dh_prev, dc_prev


@dataclass
class LSTMStepsCache:
    """What :func:`lstm_backward` needs from an option-aware :func:`lstm_forward`."""

    x: np.ndarray  # (T, B, I)
    steps: list[LSTMStep]
    ln_x: LNCache | None  # LN of W_ih x over all steps
    W_ih: np.ndarray
    W_hh: np.ndarray
    has_bias: bool
    mask: np.ndarray | None
    extras: CellExtras


def _lstm_forward_steps(
    x: np.ndarray,
    h0: np.ndarray,
    c0: np.ndarray,
    W_ih: np.ndarray,
    W_hh: np.ndarray,
    b_ih: np.ndarray | None,
    b_hh: np.ndarray | None,
    mask: np.ndarray | None,
    train: bool,
    ex: CellExtras,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, LSTMStepsCache | None]:
    T, B, I = x.shape
    G = W_hh.shape[0]
    S = h0.shape[1]
    with np.errstate(over="ignore", invalid="ignore"):
        # a_x = LN(W_ih x_t; γ_ih) + b_ih + b_hh, all T steps in one GEMM
        xa = np.matmul(x.reshape(T * B, I), W_ih.T).reshape(T, B, G)
        ln_x = None
        if ex.ln_ih is not None:
            xa, ln_x = layer_norm(xa, ex.ln_ih)
        if b_ih is not None and b_hh is not None:
            xa += b_ih + b_hh
        y = np.empty((T, B, S), dtype=x.dtype)
        pad = None if mask is None else ~mask[:, :, None]
        h, c = h0, c0
        steps = []
        for t in range(T):
            h, c, st = lstm_step(
                xa[t], h, c, W_hh, ex, t, None if pad is None else pad[t]
            )
            y[t] = h if pad is None else np.where(pad[t], 0, h)
            steps.append(st)
    h_n, c_n = np.array(h), np.array(c)
    if not train:
        return y, h_n, c_n, None
    cache = LSTMStepsCache(x, steps, ln_x, W_ih, W_hh, b_ih is not None, mask, ex)
    return y, h_n, c_n, cache


def _lstm_backward_steps(
    cache: LSTMStepsCache,
    dy: np.ndarray,
    dh_n: np.ndarray,
    dc_n: np.ndarray,
    dW_ih: np.ndarray,
    dW_hh: np.ndarray,
    db_ih: np.ndarray | None,
    db_hh: np.ndarray | None,
    dex: ExtraGrads,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, ex, mask, W_ih, W_hh = cache.x, cache.extras, cache.mask, cache.W_ih, cache.W_hh
    T, B, I = x.shape
    G = W_hh.shape[0]
    with np.errstate(over="ignore", invalid="ignore"):
        da_x = np.empty((T, B, G), dtype=x.dtype)
        da_h = np.empty((T, B, G), dtype=x.dtype)
        dh_new = np.empty((T, B, dh_n.shape[1]), dtype=x.dtype)
        dh = np.array(dh_n, dtype=x.dtype)
        dc = np.array(dc_n, dtype=x.dtype)
        for t in reversed(range(T)):
            real = None if mask is None else mask[t][:, None]
            dh = np.where(True if real is None else real, dh + dy[t], dh)
            da_x[t], da_h[t], dh_new[t], dh, dc = lstm_step_backward(
                dh, dc, cache.steps[t], W_hh, ex, dex, t, real
            )
        # one GEMM per weight over all steps
        da2 = da_x.reshape(T * B, G)
        h_in = np.stack([st.h_in for st in cache.steps]).reshape(T * B, -1)
        dW_hh += da_h.reshape(T * B, G).T @ h_in
        if ex.W_hr is not None:
            assert dex.W_hr is not None
            m = np.stack([st.m for st in cache.steps]).reshape(T * B, -1)
            dW_hr = dh_new.reshape(T * B, -1).T @ m
            dex.W_hr += dW_hr
        if cache.has_bias:
            db = da2.sum(axis=0)
            db_ih += db
            db_hh += db
        dxw = da2
        if cache.ln_x is not None:
            assert ex.ln_ih is not None and dex.ln_ih is not None
            dxw = layer_norm_backward(da_x, cache.ln_x, ex.ln_ih, dex.ln_ih).reshape(
                T * B, G
            )
        dW_ih += dxw.T @ x.reshape(T * B, I)
        dx = np.matmul(dxw, W_ih).reshape(T, B, I)
    return dx, dh, dc
