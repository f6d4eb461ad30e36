"""Stacked, bidirectional, variable-length layers built from the single-layer cells.

Shared by all three cells (:mod:`.rnn`, :mod:`.lstm`, :mod:`.gru`), which each run one
layer in one direction. This module adds, exactly as ``torch.nn.RNN/LSTM/GRU`` do:

* Stacking: layer k's input is layer k-1's output, (T, B, D*H), with the forward
  direction in ``[..., :H]`` and the reverse direction in ``[..., H:]``.
* Bidirectional (D = 2): the reverse direction runs from the end of each sequence
  to its start. It is the same cell fed a time-reversed copy of its input; its
  outputs (and, in backward, ``dy`` and ``dx``) are reversed the same way.
* Lengths: row b has ``lengths[b]`` real steps, any order. The cells take a mask
  ``mask[t, b] = t < lengths[b]`` and carry the state unchanged through padding, so
  ``h_n`` is the state at each row's own last step and outputs there are zero. The
  reverse direction reverses each row within its own length, ``s -> lengths[b]-1-s``
  for ``s < lengths[b]`` (padding stays in place), which maps real steps onto real
  steps: the same mask serves both directions, and the reversal is its own inverse.
  Padding entries of ``x`` are zeroed once, so whatever they hold never reaches a
  gradient.
* States ``h0, c0, h_n, c_n`` are (L*D, B, H) with index ``l*D + d``.
* Options (:mod:`.options`): ``dropout`` between layers is applied here, on each
  layer's output (T, B, D*S) but the last's, in training; the per-step options
  (recurrent dropout, zoneout, layer norm, projection) are handed to the cells as
  :class:`~.options.CellExtras`, with the masks drawn here (real time) and reversed
  for the reverse direction like its input. With a projection, h and every
  output have size S = P: ``h0/h_n`` (L*D, B, P), y (T, B, D*P).

Parameters use PyTorch's names: ``weight_ih_l{k}``, ``weight_hh_l{k}``,
``bias_ih_l{k}``, ``bias_hh_l{k}``, with suffix ``_reverse`` for d = 1; without bias
the bias keys are absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _cells
from .gru import gru_backward, gru_forward
from .lstm import lstm_backward, lstm_forward
from .options import (
    EXTRA_NAMES,
    CellExtras,
    ExtraGrads,
    Masks,
    Options,
    draw_masks,
)
from .rnn import rnn_backward, rnn_forward


@dataclass
class StackCache:
    """What :func:`backward` needs from a training :func:`forward`."""

    cell: str
    T: int
    B: int
    H: int
    input_size: int
    num_layers: int
    num_directions: int
    dtype: np.dtype
    mask: np.ndarray | None  # (T, B) bool, True = real step; None = no lengths
    rev: np.ndarray | None  # (T, B) time index of reverse step s; None = T-1-s
    cells: list[Any] = field(default_factory=list)  # cell caches, index l*D + d
    S: int = 0  # size of h and of each direction's output: P with a projection, else H
    options: Options = field(default_factory=Options)
    masks: Masks | None = None  # the masks this forward drew (or was given)


def _reverse_time(a: np.ndarray, rev: np.ndarray | None) -> np.ndarray:
    """Reverses each row of ``a`` (T, B, ...) in time within its own length.

    ``rev`` (T, B) holds the source time index of each step; None means full
    length, a plain ``a[::-1]`` (a view). The map is an involution, so the same
    call undoes it.
    """
    if rev is None:
        return a[::-1]
    return a[rev, np.arange(a.shape[1])]


def forward(
    cell: str,
    x: np.ndarray,
    h0: np.ndarray,
    c0: np.ndarray | None,
    params: Mapping[str, np.ndarray],
    *,
    num_layers: int,
    bidirectional: bool,
    nonlinearity: str = "tanh",
    lengths: np.ndarray | None = None,
    train: bool = True,
    options: Options | None = None,
    masks: Masks | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, StackCache | None]:
    """Runs a stacked, optionally bidirectional RNN / LSTM / GRU over ``x``.

    Parameters
    ----------
    cell : ``"rnn"``, ``"lstm"`` or ``"gru"``.
    x : input, time-major, float32 or float64; its dtype is the compute dtype
        (states and parameters are converted to it).
    h0 : initial hidden state; ``c0`` the initial cell state for ``"lstm"``, else None.
    params : PyTorch-named weights (see the module docstring).
    num_layers, bidirectional : the stack's shape, L and D = 1 + bidirectional.
    nonlinearity : ``"tanh"``, ``"relu"`` or ``"sigmoid"`` (``"rnn"`` only).
    lengths : optional int (B,), 1 <= lengths[b] <= T, any order.
    train : keep what :func:`backward` needs; ``cache`` is None otherwise. Also
        selects the options' training behaviour (masks) or inference (none).
    options : the layer options (:class:`~.options.Options`); None = plain cell.
        ``params`` must hold the tensors they add (``weight_hr``, ``ln_*``).
    masks : the masks of a training forward (:class:`~.options.Masks`, real time);
        None draws them from ``rng`` (needed when a rate is > 0 in training).
    rng : the generator masks are drawn from (:func:`~.options.draw_masks`).

    Returns
    -------
    y, h_n, c_n, cache : ``c_n`` is None unless the cell has a cell state (LSTM);
        ``cache.masks`` holds the masks used.

    Shapes
    ------
    x (T, B, I), h0 (L*D, B, S), c0 (L*D, B, H), lengths (B,)
    -> y (T, B, D*S), h_n (L*D, B, S), c_n (L*D, B, H); S = P or H.

    Examples
    --------
    >>> from rnnkit.reference import LSTM, forward
    >>> layer = LSTM(3, 4, num_layers=2, bidirectional=True, dtype="float64", seed=0)
    >>> x, h0 = np.ones((5, 2, 3)), np.zeros((4, 2, 4))
    >>> y, h_n, c_n, cache = forward("lstm", x, h0, h0, layer.params,
    ...                              num_layers=2, bidirectional=True)
    >>> y.shape, h_n.shape
    ((5, 2, 8), (4, 2, 4))
    """
    if cell not in _cells.CELLS:
        raise ValueError(f"cell must be one of {tuple(_cells.CELLS)}, got {cell!r}")
    paired = _cells.CELLS[cell].has_cell_state  # state (h, c)
    opts = (options or Options()).validated(cell)
    x = np.asarray(x)
    if x.ndim != 3 or x.dtype not in (np.float32, np.float64):
        raise ValueError(
            f"x must be a 3-D float32/float64 array, got {x.dtype} {x.shape}"
        )
    dtype = x.dtype
    T, B, I = x.shape
    L, D = num_layers, 2 if bidirectional else 1
    G = _cells.CELLS[cell].gates
    H, S = params["weight_hh_l0"].shape[0] // G, params["weight_hh_l0"].shape[1]
    if S != (opts.proj_size or H):
        raise ValueError(
            f"weight_hh_l0 must have {opts.proj_size or H} columns "
            f"(proj_size={opts.proj_size}), got {S}"
        )
    h0 = _state("h0", h0, (L * D, B, S), dtype)
    c0 = _state("c0", c0, (L * D, B, H), dtype) if paired else None
    mask = rev = None
    if lengths is not None:
        lengths = np.asarray(lengths, dtype=np.int64)
        if lengths.shape != (B,) or np.any((lengths < 1) | (lengths > T)):
            raise ValueError(f"lengths must have shape ({B},) and values in [1, {T}]")
        t = np.arange(T)[:, None]
        mask = t < lengths  # (T, B)
        rev = np.where(mask, lengths - 1 - t, t)
        x = np.where(mask[:, :, None], x, 0)  # padding never reaches a GEMM

    rates = opts.dropout or opts.recurrent_dropout or opts.zoneout
    if not train or not rates:
        masks = None
    elif masks is None:
        if rng is None:
            raise ValueError(
                "a training forward with dropout, recurrent_dropout or zoneout "
                "needs masks= or rng="
            )
        masks = draw_masks(
            opts,
            rng,
            cell=cell,
            T=T,
            B=B,
            H=H,
            num_layers=L,
            num_directions=D,
            dtype=dtype,
        )
    cache = StackCache(cell, T, B, H, I, L, D, dtype, mask, rev, [], S, opts, masks)
    h_n = np.empty((L * D, B, S), dtype=dtype)
    c_n = np.empty((L * D, B, H), dtype=dtype) if paired else None
    layer_in = x
    for k in range(L):
        y = np.empty((T, B, D * S), dtype=dtype)
        for d in range(D):
            j, s = k * D + d, _cells.suffix(k, d)
            cc: Any  # the cell's cache
            W_ih, W_hh, b_ih, b_hh = _weights(params, s, dtype)
            ex = _extras(opts, params, s, dtype, train, masks, j, d, rev)
            if d == 0:
                xd = layer_in
            else:
                xd = np.ascontiguousarray(_reverse_time(layer_in, rev))
            if cell == "lstm":  # one branch per cell: their signatures differ
                assert c0 is not None and c_n is not None
                yd, h_n[j], c_n[j], cc = lstm_forward(
                    xd,
                    h0[j],
                    c0[j],
                    W_ih,
                    W_hh,
                    b_ih,
                    b_hh,
                    mask=mask,
                    train=train,
                    extras=ex,
                )
            elif cell == "gru":
                yd, h_n[j], cc = gru_forward(
                    xd, h0[j], W_ih, W_hh, b_ih, b_hh, mask=mask, train=train, extras=ex
                )
            else:
                yd, h_n[j], cc = rnn_forward(
                    xd,
                    h0[j],
                    W_ih,
                    W_hh,
                    b_ih,
                    b_hh,
                    nonlinearity=nonlinearity,
                    mask=mask,
                    train=train,
                    extras=ex,
                )
            y[:, :, d * S : (d + 1) * S] = yd if d == 0 else _reverse_time(yd, rev)
            cache.cells.append(cc)
        layer_in = y
        if masks is not None and k < L - 1 and masks.dropout[k] is not None:
            layer_in = y * masks.dropout[k]  # dropout between layers
    return layer_in, h_n, c_n, (cache if train else None)


def backward(
    cache: StackCache,
    dy: np.ndarray,
    dh_n: np.ndarray,
    dc_n: np.ndarray | None,
    grads: Mapping[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Backpropagation through time for :func:`forward`.

    Adds every parameter gradient into ``grads[name]`` in place (same names and
    shapes as ``params``; zeroing them is the caller's job) and returns
    ``(dx, dh0, dc0)``, ``dc0`` None unless the cell is ``"lstm"``. ``dy`` at
    padding steps is ignored; ``dx`` there is zero.

    Shapes
    ------
    dy (T, B, D*H), dh_n/dc_n (L*D, B, H) -> dx (T, B, I), dh0/dc0 (L*D, B, H).

    Examples
    --------
    >>> from rnnkit.reference import GRU, forward, backward
    >>> layer = GRU(3, 4, dtype="float64", seed=0)
    >>> x, h0 = np.ones((5, 2, 3)), np.zeros((1, 2, 4))
    >>> y, h_n, _, cache = forward("gru", x, h0, None, layer.params,
    ...                            num_layers=1, bidirectional=False)
    >>> dx, dh0, _ = backward(cache, np.ones_like(y), np.zeros_like(h_n), None,
    ...                       layer.grads)
    >>> dx.shape, float(abs(layer.grads["weight_ih_l0"]).sum()) > 0
    ((5, 2, 3), True)
    """
    T, B, H, dtype = cache.T, cache.B, cache.H, cache.dtype
    L, D, rev = cache.num_layers, cache.num_directions, cache.rev
    S = cache.S or H
    lstm = _cells.CELLS[cache.cell].has_cell_state
    state_shape, c_shape = (L * D, B, S), (L * D, B, H)
    dout = np.asarray(dy, dtype=dtype)
    if dout.shape != (T, B, D * S):
        raise ValueError(f"dy must have shape {(T, B, D * S)}, got {dout.shape}")
    dh_n = _state("dh_n", dh_n, state_shape, dtype)
    dc_n = _state("dc_n", dc_n, c_shape, dtype) if lstm else None
    dh0 = np.empty(state_shape, dtype=dtype)
    dc0 = np.empty(c_shape, dtype=dtype) if lstm else None
    masks = cache.masks
    for k in reversed(range(L)):
        if masks is not None and k < L - 1 and masks.dropout[k] is not None:
            dout = dout * masks.dropout[k]  # dropout between layers
        dxs = []
        for d in range(D):
            j, s = k * D + d, _cells.suffix(k, d)
            cc = cache.cells[j]
            dex = ExtraGrads(**{f: grads.get(n + s) for f, n in EXTRA_NAMES.items()})
            dyd = dout[:, :, d * S : (d + 1) * S]
            if d == 1:
                dyd = _reverse_time(dyd, rev)
            dW = (
                grads["weight_ih" + s],
                grads["weight_hh" + s],
                grads.get("bias_ih" + s),
                grads.get("bias_hh" + s),
            )
            if cache.cell == "lstm":
                assert dc_n is not None and dc0 is not None
                dxd, dh0[j], dc0[j] = lstm_backward(
                    cc, dyd, dh_n[j], dc_n[j], *dW, dextra=dex
                )
            elif cache.cell == "gru":
                dxd, dh0[j] = gru_backward(cc, dyd, dh_n[j], *dW, dextra=dex)
            else:
                dxd, dh0[j] = rnn_backward(cc, dyd, dh_n[j], *dW)
            dxs.append(dxd if d == 0 else _reverse_time(dxd, rev))
        dout = dxs[0]  # layer k's dx: the sum over both directions
        for dxd in dxs[1:]:
            dout += dxd
    return dout, dh0, dc0


def _weights(
    params: Mapping[str, np.ndarray], suffix: str, dtype: np.dtype
) -> list[Any]:
    """[W_ih, W_hh, b_ih, b_hh] of one layer and direction as ``dtype``, or None."""
    out: list[Any] = []
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        p = params.get(name + suffix)
        out.append(None if p is None else np.asarray(p, dtype=dtype))
    return out


def _extras(
    opts: Options,
    params: Mapping[str, np.ndarray],
    suffix: str,
    dtype: np.dtype,
    train: bool,
    masks: Masks | None,
    j: int,
    d: int,
    rev: np.ndarray | None,
) -> CellExtras | None:
    """One layer and direction's :class:`CellExtras`, or None for the plain cell.

    The zoneout masks (real time) are reversed for the reverse direction, so the
    cell reads them in its own step order.
    """
    if not opts.steps:
        return None
    arrays: dict[str, Any] = {}
    for f, name in EXTRA_NAMES.items():
        wanted = (f == "W_hr" and opts.proj_size) or (
            f != "W_hr" and opts.layer_norm and (name + suffix) in params
        )
        if f in ("ln_ih", "ln_hh") and opts.layer_norm and name + suffix not in params:
            raise ValueError(f"layer_norm=True needs params[{name + suffix!r}]")
        if f == "W_hr" and opts.proj_size and name + suffix not in params:
            raise ValueError(f"proj_size needs params[{name + suffix!r}]")
        arrays[f] = np.asarray(params[name + suffix], dtype=dtype) if wanted else None
    ex = CellExtras(train=train, zoneout=float(opts.zoneout), **arrays)
    if masks is not None:
        cm = masks.cells[j]
        ex.recurrent_mask = cm.recurrent
        for f in ("zoneout_h", "zoneout_c"):
            m = getattr(cm, f)
            if m is not None and d == 1:
                m = _reverse_time(m, rev)
            setattr(ex, f, m)
    return ex


def _state(name: str, s: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if s is None:
        raise ValueError(f"{name} must be an array of shape {shape}, got None")
    arr = np.asarray(s, dtype=dtype)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    return arr
