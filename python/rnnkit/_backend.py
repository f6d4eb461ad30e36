"""The compiled backend: runs a layer's forward/backward on rnnkit._core.

The layers (:mod:`rnnkit.layers`) validate and convert every array, then hand it to
a *backend*; this one asks the kernels for their workspace sizes, owns the memory
(a per-layer reserve kept from a training forward for its backward, and a
per-thread scratch buffer reused across calls) and calls ``_core``. It imports
nothing else of the package, so the layers import it at their top.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _core

_tls = threading.local()


def _scratch(nbytes: int, dtype: np.dtype) -> np.ndarray:
    """Per-thread scratch buffer, grown on demand and reused across calls."""
    buf = getattr(_tls, "scratch", None)
    if buf is None or buf.nbytes < nbytes:
        buf = np.empty(max(nbytes, 1 << 16) // 8 + 1, dtype=np.float64)
        _tls.scratch = buf
    n = nbytes // dtype.itemsize
    return buf.view(dtype)[:n]


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
    """The option masks of this call as ``_core`` keywords (the mask contract):
    ``rec_masks``, ``zone_h``, ``zone_c`` (bool as uint8 views), ``drop_masks``;
    only those of options that are on, only in training (``layer._call_masks``,
    drawn or checked by the layer)."""
    m = layer._call_masks if train else None
    if m is None:
        return {}
    o = layer.options
    out: dict[str, Any] = {}
    if o.recurrent_dropout:
        out["rec_masks"] = [cm.recurrent for cm in m.cells]
    if o.zoneout:
        out["zone_h"] = [cm.zoneout_h.view(np.uint8) for cm in m.cells]
        if layer.spec.has_cell_state:
            out["zone_c"] = [cm.zoneout_c.view(np.uint8) for cm in m.cells]
    if o.dropout and layer.num_layers > 1:
        out["drop_masks"] = list(m.dropout)
    return out


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


# dtype.name is a Python-level property, slow next to a one-step kernel
_DTYPE_NAMES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


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
        if layer.options.layer_norm or layer.options.proj_size:
            return self.pending_forward(layer, x, h0, c0, lengths, train)
        T, B = x.shape[0], x.shape[1]
        mode = _core.Mode.TRAIN_FORWARD if train else _core.Mode.INFERENCE
        masks = _masks(layer, train)
        reserve_bytes, scratch_bytes = _sizes(layer, T, B, mode, masks)
        reserve = None
        if train:
            # reused across calls: a new training forward ends the previous one
            reserve = layer._reserve
            if reserve is None or reserve.nbytes < reserve_bytes:
                reserve = np.empty(reserve_bytes, dtype=np.uint8)
                layer._reserve = reserve
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

    # ------------------------------------------------------------------ HOOK
    # layer_norm / proj_size (issue 12): the layers accept them and allocate their
    # tensors (``ln_*``, ``weight_hr`` in params/grads, storage order); their fused
    # kernels are separate ``_core`` entry points (LayerNorm: helper i12c,
    # projection: helper i12b). The coordinator replaces these two methods with
    # the calls into them (same signature and return values as forward/backward).
    def pending_forward(
        self,
        layer: Any,
        x: np.ndarray,
        h0: np.ndarray,
        c0: np.ndarray | None,
        lengths: np.ndarray | None,
        train: bool,
    ) -> Any:
        """Forward of a layer with ``layer_norm`` or ``proj_size`` (HOOK)."""
        raise NotImplementedError(_pending_message(layer))

    def pending_backward(
        self,
        layer: Any,
        ctx: Any,
        dy: np.ndarray,
        dhn: np.ndarray,
        dcn: np.ndarray | None,
    ) -> Any:
        """Backward of a layer with ``layer_norm`` or ``proj_size`` (HOOK)."""
        raise NotImplementedError(_pending_message(layer))

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
        if layer.options.layer_norm or layer.options.proj_size:
            return self.pending_backward(layer, ctx, dy, dhn, dcn)
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


def _pending_message(layer: Any) -> str:
    on = [k for k in ("layer_norm", "proj_size") if getattr(layer.options, k)]
    return (
        f"{layer.spec.class_name}({', '.join(on)}=...): the fused kernel is pending "
        "(issue 12: layer_norm / proj_size kernel pending); the NumPy reference "
        f"rnnkit.reference.{layer.spec.class_name} computes it meanwhile"
    )
