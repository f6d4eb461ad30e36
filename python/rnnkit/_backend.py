"""The compiled backend: runs a layer's forward/backward on rnnkit._core.

The layers (:mod:`rnnkit.layers`) validate and convert every array, then hand it to
a *backend*; this one asks the kernels for their workspace sizes, owns the memory
(a per-layer reserve kept from a training forward for its backward, and a
per-thread scratch buffer reused across calls) and calls ``_core``. Layers with
``layer_norm`` or ``proj_size`` run on their own kernels, through the adapters
:mod:`rnnkit._layernorm` and :mod:`rnnkit._lstmp` (the same protocol). It imports
only those, so the layers import it at their top.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _core, _layernorm, _lstmp
from ._workspace import DTYPE_NAMES as _DTYPE_NAMES
from ._workspace import kernel_masks
from ._workspace import reserve as _reserve
from ._workspace import scratch as _scratch


@dataclass
class _Ctx:
    """What a training forward leaves for its backward."""

    T: int
    B: int
    lengths: np.ndarray | None
    reserve: np.ndarray | None
    weights: list[np.ndarray | None]  # the forward's (a copy, see _forward_params)
    masks: dict[str, Any] = field(default_factory=dict)  # the forward's, see _masks


def _masks(layer: Any, train: bool) -> dict[str, Any]:
    """The option masks of this call as ``_core`` keywords (the mask contract,
    :func:`rnnkit._workspace.kernel_masks`); only in training
    (``layer._call_masks``, drawn or checked by the layer)."""
    m = layer._call_masks if train else None
    return kernel_masks(m, layer.dtype)


def _sizes(layer: Any, T: int, B: int, mode: Any, masks: dict[str, Any]) -> Any:
    """``workspace_size`` of a call with these option masks."""
    return _core.workspace_size(
        *_desc(layer, T, B),
        mode,
        recurrent_dropout="rec_masks" in masks,
        zoneout="zone_h" in masks,
        dropout="drop_masks" in masks,
    )


_Desc = tuple[str, str, int, int, int, int, int, bool, bool]


def _desc(layer: Any, T: int, B: int) -> _Desc:
    return (
        layer.cell,
        _DTYPE_NAMES[layer.dtype],
        T,
        B,
        layer.input_size,
        layer.hidden_size,
        layer.num_layers,
        layer.bidirectional,
        layer.bias,
    )


class CoreBackend:
    """Adapter between the layer protocol and the kernels' argument lists."""

    def forward(
        self,
        layer: Any,
        x: np.ndarray,
        h0: np.ndarray,
        c0: np.ndarray | None,
        lengths: np.ndarray | None,
        train: bool,
    ):
        own = _own_kernel(layer)
        if own is not None:
            masks = layer._call_masks if train else None
            return own.forward(layer, x, h0, c0, lengths, train, masks)
        T, B = x.shape[0], x.shape[1]
        mode = _core.Mode.TRAIN_FORWARD if train else _core.Mode.INFERENCE
        masks = _masks(layer, train)
        reserve_bytes, scratch_bytes = _sizes(layer, T, B, mode, masks)
        reserve = _reserve(layer, reserve_bytes) if train else None
        scratch = _scratch(scratch_bytes, np.dtype(np.uint8))
        weights = layer._weight_list(layer._forward_params() if train else layer.params)
        y, hn, cn = _core.forward(
            layer.cell,
            layer.nonlinearity,
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
            zoneout=float(layer.options.zoneout),
            **masks,
        )
        ctx = _Ctx(T, B, lengths, reserve, weights, masks) if train else None
        return y, hn, cn, ctx

    def stepper(self, layer: Any, batch_size: int) -> Any:
        """The compiled single-step generator (see ``_Recurrent.stepper``)."""
        cls = _core.Stepper32 if layer.dtype == np.float32 else _core.Stepper64
        return cls(
            layer.cell,
            layer.nonlinearity,
            layer.num_layers,
            batch_size,
            layer._weight_list(layer.params),
            zoneout=float(layer.options.zoneout),
        )

    def backward(
        self,
        layer: Any,
        ctx: _Ctx,
        dy: np.ndarray,
        dhn: np.ndarray,
        dcn: np.ndarray | None,
    ):
        own = _own_kernel(layer)
        if own is not None:
            return own.backward(layer, ctx, dy, dhn, dcn)
        assert ctx.reserve is not None, "a training forward always keeps a reserve"
        _, scratch_bytes = _sizes(layer, ctx.T, ctx.B, _core.Mode.BACKWARD, ctx.masks)
        scratch = _scratch(scratch_bytes, np.dtype(np.uint8))
        return _core.backward(
            layer.cell,
            layer.nonlinearity,
            layer.num_layers,
            layer.bidirectional,
            layer.input_size,
            dy,
            dhn,
            dcn,
            ctx.weights,
            layer._weight_list(layer.grads),
            ctx.lengths,
            ctx.reserve,
            scratch,
            **ctx.masks,
        )


def _own_kernel(layer: Any) -> Any:
    """The adapter module of a layer whose cell variant has its own kernel
    (``layer_norm``: :mod:`._layernorm`, ``proj_size``: :mod:`._lstmp`), or None
    for the fused cell kernels of ``_core.forward``."""
    o = layer.options
    if o.layer_norm:
        return _layernorm
    if o.proj_size:
        return _lstmp
    return None
