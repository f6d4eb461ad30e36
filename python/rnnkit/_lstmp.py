"""The compiled projected LSTM (``proj_size=P``): runs a layer on ``_core.lstmp_*``.

The same protocol as :class:`rnnkit._backend.CoreBackend`, for an LSTM whose
``options.proj_size`` is P > 0 (PyTorch's LSTMP, ``h_t = W_hr (o_t ⊙ tanh c_t)``):
the kernels are asked for their workspace sizes, the reserve of a training forward
is kept on the layer (``layer._reserve``) for its backward, and scratch is a
per-thread buffer reused across calls. Weights are read by PyTorch's names
(``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``,
``weight_hr_l{k}``, suffix ``_reverse``) from ``layer._forward_params()`` in
training and ``layer.params`` at inference.

``layer`` is anything with ``cell``, ``num_layers``, ``bidirectional``,
``input_size``, ``hidden_size``, ``bias``, ``dtype``, ``params``, ``grads``,
``_forward_params()``, ``_reserve`` and ``options.proj_size`` (the fast LSTM and
``rnnkit.reference.LSTM`` both are). The layer has validated and converted every
array (time-major, C-contiguous, its dtype).

Masks (``recurrent_dropout``, ``zoneout``, ``dropout`` between layers; the contract
of :mod:`rnnkit.reference.options`) come as a :class:`~rnnkit.reference.options.Masks`
(or anything with ``cells`` and ``dropout`` alike) in a training forward and run
inside the fused steps; at inference ``options.zoneout`` gives the expectation.

Shapes
------
x (T, B, I), h0 (L*D, B, P), c0 (L*D, B, H), lengths (B,)
-> y (T, B, D*P), h_n (L*D, B, P), c_n (L*D, B, H).

Examples
--------
>>> import numpy as np
>>> from rnnkit import reference as ref
>>> layer = ref.LSTM(3, 8, proj_size=4, dtype="float64", seed=0)
>>> x = np.ones((5, 2, 3))
>>> h0, c0 = np.zeros((1, 2, 4)), np.zeros((1, 2, 8))
>>> y, h_n, c_n, ctx = forward(layer, x, h0, c0, None, True, None)
>>> dx, dh0, dc0 = backward(layer, ctx, np.ones_like(y), np.zeros_like(h_n),
...                         np.zeros_like(c_n))
>>> y.shape, h_n.shape, c_n.shape, dx.shape
((5, 2, 4), (1, 2, 4), (1, 2, 8), (5, 2, 3))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core
from ._workspace import DTYPE_NAMES as _DTYPE_NAMES
from ._workspace import kernel_masks
from ._workspace import reserve as _reserve
from ._workspace import scratch as _scratch
from ._workspace import weight_list as _weight_list

_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")


@dataclass
class LstmpCtx:
    """What a training :func:`forward` leaves for its :func:`backward`."""

    T: int
    B: int
    lengths: np.ndarray | None
    reserve: np.ndarray
    weights: list[np.ndarray | None]  # the forward's (a copy, see _forward_params)
    flags: dict[str, bool]  # which masks the forward took (they size the scratch)


def proj_size(layer: Any) -> int:
    """P of ``layer`` (0 without a projection)."""
    options = getattr(layer, "options", None)
    return int(getattr(options, "proj_size", 0) or 0)


def weight_list(layer: Any, store: Mapping[str, np.ndarray]) -> list[np.ndarray | None]:
    """[W_ih, W_hh, b_ih, b_hh, W_hr] per (layer, direction), biases None without
    bias, in the kernels' order ``l*D + d``."""
    return _weight_list(layer, store, _KINDS)


def _sizes(
    layer: Any, T: int, B: int
) -> tuple[str, int, int, int, int, int, int, bool, bool]:
    return (
        _DTYPE_NAMES[np.dtype(layer.dtype)],
        T,
        B,
        layer.input_size,
        layer.hidden_size,
        proj_size(layer),
        layer.num_layers,
        layer.bidirectional,
        layer.bias,
    )


def _workspace(
    layer: Any, T: int, B: int, mode: Any, flags: dict[str, bool]
) -> tuple[int, int]:
    """(reserve, scratch) bytes of a call with the masks ``flags`` names."""
    return _core.lstmp_workspace_size(
        *_sizes(layer, T, B),
        mode,
        rec_masks=flags["rec_masks"],
        zone_h=flags["zone_h"],
        zone_c=flags["zone_c"],
        drop_masks=flags["drop_masks"],
    )


def forward(
    layer: Any,
    x: np.ndarray,
    h0: np.ndarray,
    c0: np.ndarray,
    lengths: np.ndarray | None,
    train: bool,
    masks: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, LstmpCtx | None]:
    """Runs the projected LSTM ``layer`` over ``x``: ``(y, h_n, c_n, ctx)``.

    ``ctx`` (None at inference) is what :func:`backward` needs; ``masks`` (a
    training forward's, real time) may be None; inference takes none.

    Shapes
    ------
    See the module docstring.
    """
    T, B = x.shape[0], x.shape[1]
    mode = _core.Mode.TRAIN_FORWARD if train else _core.Mode.INFERENCE
    given = kernel_masks(masks, layer.dtype) if train else {}
    flags = {k: k in given for k in ("rec_masks", "zone_h", "zone_c", "drop_masks")}
    reserve_bytes, scratch_bytes = _workspace(layer, T, B, mode, flags)
    reserve = _reserve(layer, reserve_bytes) if train else None
    scratch = _scratch(scratch_bytes, np.dtype(np.uint8))
    weights = weight_list(layer, layer._forward_params() if train else layer.params)
    zoneout = float(getattr(layer.options, "zoneout", 0.0) or 0.0)
    y, hn, cn = _core.lstmp_forward(
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
        zoneout=0.0 if train else zoneout,
        **given,
    )
    ctx = None
    if train:
        assert reserve is not None
        ctx = LstmpCtx(T, B, lengths, reserve, weights, flags)
    return y, hn, cn, ctx


def backward(
    layer: Any,
    ctx: LstmpCtx,
    dy: np.ndarray,
    dh_n: np.ndarray,
    dc_n: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backpropagation through time for the training :func:`forward` that made
    ``ctx``: adds into ``layer.grads`` and returns ``(dx, dh0, dc0)``.

    Shapes
    ------
    dy (T, B, D*P), dh_n (L*D, B, P), dc_n (L*D, B, H)
    -> dx (T, B, I), dh0 (L*D, B, P), dc0 (L*D, B, H).
    """
    _, scratch_bytes = _workspace(layer, ctx.T, ctx.B, _core.Mode.BACKWARD, ctx.flags)
    scratch = _scratch(scratch_bytes, np.dtype(np.uint8))
    dx, dh0, dc0 = _core.lstmp_backward(
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
    )
    return dx, dh0, dc0
