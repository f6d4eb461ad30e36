"""The layer-normalised LSTM and GRU on the compiled kernels (``layer_norm=True``).

The equations are haste's LayerNormLSTM / LayerNormGRU, specified in
:mod:`rnnkit.reference.options`: layer norm over the whole G*H row of ``W_ih x``
and of ``W_hh h_{t-1}``, before the biases, with gains ``ln_weight_ih_l{k}``,
``ln_weight_hh_l{k}`` and no LN bias; the LSTM also normalises ``c`` on the way
to ``h`` with ``ln_weight_c_l{k}``, ``ln_bias_c_l{k}`` (the carried ``c`` is not
normalised).

This module is a backend in the protocol of :class:`rnnkit._backend.CoreBackend`::

    y, h_n, c_n, ctx = forward(layer, x, h0, c0, lengths, train, masks)
    dx, dh0, dc0 = backward(layer, ctx, dy, dh_n, dc_n)   # adds into layer.grads

``layer`` is anything with ``cell`` ("lstm" or "gru"), ``num_layers``,
``bidirectional``, ``input_size``, ``hidden_size``, ``bias``, ``dtype``,
``params``, ``grads``, ``_forward_params()``, ``_reserve`` and
``options.layer_norm``; the arrays are validated and converted already (time
major, the layer's dtype, C-contiguous), as the layers hand them to a backend.
A training forward keeps its reserve on ``layer._reserve`` (reused across
calls: a new training forward ends the previous one) and the weights it used
(a copy, ``layer._forward_params()``) in ``ctx``; scratch is per thread.

The mask options compose with layer norm inside the kernel: ``masks`` (a
training call's masks, as :class:`rnnkit.reference.options.Masks` holds them:
``cells[l*D + d]`` with ``recurrent`` (B, H), ``zoneout_h`` / ``zoneout_c``
(T, B, H) bool, and ``dropout[k]`` (T, B, D*H) for k < L-1, all in real time)
are handed to the kernel as the shared mask contract's lists and kept in
``ctx`` for backward; inference uses no mask and applies zoneout's expectation.
A training call of a layer with a rate > 0 needs its masks (the kernel draws
none).

Shapes
------
x (T, B, I), h0/c0 (L*D, B, H), lengths (B,) int64 or None
-> y (T, B, D*H), h_n/c_n (L*D, B, H) (c_n None for the GRU).

Examples
--------
>>> import numpy as np
>>> from rnnkit.reference import LSTM
>>> layer = LSTM(3, 4, layer_norm=True, dtype="float64", seed=0)
>>> x, h0 = np.ones((5, 2, 3)), np.zeros((1, 2, 4))
>>> y, h_n, c_n, ctx = forward(layer, x, h0, h0, None, True, None)
>>> y.shape, sorted(ctx.weights[k].shape for k in (4, 6))
((5, 2, 4), [(4,), (16,)])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core
from ._workspace import DTYPE_NAMES as _DTYPE_NAMES
from ._workspace import kernel_masks
from ._workspace import reserve as _reserve
from ._workspace import scratch as _scratch
from ._workspace import weight_list as _weight_list

KINDS = (
    "weight_ih",
    "weight_hh",
    "bias_ih",
    "bias_hh",
    "ln_weight_ih",
    "ln_weight_hh",
    "ln_weight_c",
    "ln_bias_c",
)
"""The kernels' 8 weight slots per layer and direction, as parameter prefixes."""

_RATES = ("dropout", "recurrent_dropout", "zoneout")


@dataclass
class LNContext:
    """What a training :func:`forward` leaves for :func:`backward`."""

    T: int
    B: int
    lengths: np.ndarray | None
    reserve: np.ndarray
    weights: list[np.ndarray | None]  # the forward's (a copy, _forward_params)
    masks: dict[str, Any]  # the mask lists of the call (keywords of _core.ln_*)


def weight_list(layer: Any, store: Any) -> list[np.ndarray | None]:
    """The kernels' weight list: :data:`KINDS` per (layer, direction), absent
    entries (biases without bias, the GRU's ``ln_*_c``) None."""
    return _weight_list(layer, store, KINDS)


def _check(layer: Any, train: bool, masks: Any) -> None:
    opts = getattr(layer, "options", None)
    if opts is None or not opts.layer_norm:
        raise ValueError("the layer-norm kernel needs a layer with layer_norm=True")
    if layer.cell not in ("lstm", "gru"):
        raise ValueError(f"layer_norm is an option of LSTM and GRU, got {layer.cell!r}")
    if getattr(opts, "proj_size", 0):
        raise NotImplementedError(
            "layer_norm with proj_size is not supported by the compiled kernel"
        )
    rates = [n for n in _RATES if getattr(opts, n, 0.0)]
    if train and rates and masks is None:
        raise ValueError(
            f"a training forward with {', '.join(rates)} needs its masks "
            "(the layer-norm kernel draws none)"
        )


def _sizes(layer: Any, T: int, B: int, mode: Any) -> tuple[int, int]:
    reserve, scratch = _core.ln_workspace_size(
        layer.cell,
        _DTYPE_NAMES[np.dtype(layer.dtype)],
        T,
        B,
        layer.input_size,
        layer.hidden_size,
        layer.num_layers,
        layer.bidirectional,
        layer.bias,
        mode,
    )
    return int(reserve), int(scratch)


def forward(
    layer: Any,
    x: np.ndarray,
    h0: np.ndarray,
    c0: np.ndarray | None,
    lengths: np.ndarray | None,
    train: bool,
    masks: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, LNContext | None]:
    """Runs the layer-norm LSTM/GRU ``layer`` over ``x`` on the kernels.

    Parameters
    ----------
    layer : the layer (see the module docstring for what it must provide).
    x, h0, c0, lengths : validated arrays (``c0`` None for the GRU).
    train : keep the reserve for :func:`backward` (weights from
        ``layer._forward_params()``); else inference on ``layer.params``.
    masks : the training call's masks (see the module docstring), or None.

    Returns
    -------
    y, h_n, c_n, ctx : ``ctx`` None at inference.

    Shapes
    ------
    x (T, B, I), h0/c0 (L*D, B, H) -> y (T, B, D*H), h_n/c_n (L*D, B, H).
    """
    _check(layer, train, masks)
    T, B = x.shape[0], x.shape[1]
    mode = _core.Mode.TRAIN_FORWARD if train else _core.Mode.INFERENCE
    reserve_bytes, scratch_bytes = _sizes(layer, T, B, mode)
    reserve = _reserve(layer, reserve_bytes) if train else None
    scratch = _scratch(scratch_bytes, np.dtype(np.uint8))
    weights = weight_list(layer, layer._forward_params() if train else layer.params)
    lists = kernel_masks(masks, layer.dtype) if train else {}
    y, hn, cn = _core.ln_forward(
        layer.cell,
        layer.num_layers,
        layer.bidirectional,
        x,
        h0,
        c0,
        weights,
        lengths,
        reserve,
        scratch,
        train,
        zoneout=float(getattr(layer.options, "zoneout", 0.0)),
        **lists,
    )
    ctx = None
    if train:
        assert reserve is not None
        ctx = LNContext(T, B, lengths, reserve, weights, lists)
    return y, hn, cn, ctx


def backward(
    layer: Any,
    ctx: LNContext,
    dy: np.ndarray,
    dh_n: np.ndarray,
    dc_n: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Backpropagation through time for the training :func:`forward` of ``ctx``.

    Adds every parameter gradient (the ``ln_*`` gains and bias included) into
    ``layer.grads`` and returns fresh ``(dx, dh0, dc0)`` (``dc0`` None for GRU).

    Shapes
    ------
    dy (T, B, D*H), dh_n/dc_n (L*D, B, H) -> dx (T, B, I), dh0/dc0 (L*D, B, H).
    """
    _, scratch_bytes = _sizes(layer, ctx.T, ctx.B, _core.Mode.BACKWARD)
    scratch = _scratch(scratch_bytes, np.dtype(np.uint8))
    dx, dh0, dc0 = _core.ln_backward(
        layer.cell,
        layer.num_layers,
        layer.bidirectional,
        layer.input_size,
        dy,
        dh_n,
        dc_n,
        ctx.weights,
        weight_list(layer, layer.grads),
        ctx.lengths,
        ctx.reserve,
        scratch,
        **ctx.masks,
    )
    return dx, dh0, dc0
