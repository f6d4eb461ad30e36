"""Pure-NumPy reference implementation of rnnkit's RNN, LSTM and GRU.

The specification the tests check the compiled kernels against, the NumPy baseline
the benchmarks time, and the version to read to learn the math. Same math, names,
shapes and API as :mod:`rnnkit.layers` (PyTorch's), vectorized over the batch: per
layer and direction one input GEMM over all time steps, one recurrent GEMM per
step, and one GEMM per weight gradient over all steps in backward.

Two ways in:

* Layer classes, drop-in for ``rnnkit.RNN/LSTM/GRU`` (same constructor, parameters,
  ``forward``/``backward``/``zero_grad``), computing in NumPy::

      >>> import numpy as np
      >>> from rnnkit import reference as ref
      >>> lstm = ref.LSTM(8, 16, seed=0)
      >>> y, (h_n, c_n) = lstm.forward(np.ones((5, 2, 8), dtype=np.float32))
      >>> dx, (dh0, dc0) = lstm.backward(np.ones_like(y))   # adds into lstm.grads
      >>> y.shape, dx.shape
      ((5, 2, 16), (5, 2, 8))

* Layer options (:mod:`.options`, issue 12): ``dropout=``, ``recurrent_dropout=``,
  ``zoneout=`` on all three cells, ``layer_norm=`` on LSTM and GRU, ``proj_size=``
  and ``forget_bias=`` on LSTM; masks from the layer's seed, ``forward(rng=)`` or
  ``forward(masks=)``, the ones used kept as ``layer.last_masks``::

      >>> lstm = ref.LSTM(8, 16, proj_size=4, zoneout=0.1, layer_norm=True, seed=0)
      >>> y, (h_n, c_n) = lstm.forward(np.ones((5, 2, 8), dtype=np.float32))
      >>> y.shape, h_n.shape, c_n.shape, lstm.last_masks.cells[0].zoneout_h.shape
      ((5, 2, 4), (1, 2, 4), (1, 2, 16), (5, 2, 4))

* The functional API on plain arrays and a dict of PyTorch-named parameters:
  :func:`forward` / :func:`backward` (stacked, bidirectional, lengths), and per
  cell the single-layer, single-direction ``<cell>_forward`` / ``<cell>_backward``
  in :mod:`.rnn`, :mod:`.lstm`, :mod:`.gru`.

Shapes
------
x (T, B, I) time-major, y (T, B, D*H), states (L*D, B, H) with index ``l*D + d``,
lengths (B,). Letters: T time, B batch, I input, H hidden, L layers, D directions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _serial, layers
from ._stack import StackCache, backward, forward
from .gru import gru_backward, gru_forward
from .lstm import lstm_backward, lstm_forward
from .options import CellMasks, Masks, Options
from .rnn import rnn_backward, rnn_forward


class _ReferenceBackend:
    """The backend protocol of :class:`rnnkit.layers._Recurrent`, on :func:`forward`.

    ``forward(layer, x, h0, c0, lengths, train) -> (y, h_n, c_n, ctx)`` and
    ``backward(layer, ctx, dy, dh_n, dc_n) -> (dx, dh0, dc0)``, adding into
    ``layer.grads``. The layer has validated and converted every array already,
    and drawn (or checked) the masks of a training forward (``layer._call_masks``).
    """

    name = "numpy"

    def forward(
        self,
        layer: Any,
        x: np.ndarray,
        h0: np.ndarray,
        c0: np.ndarray | None,
        lengths: np.ndarray | None,
        train: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, StackCache | None]:
        y, h_n, c_n, cache = forward(
            layer.cell,
            x,
            h0,
            c0,
            layer._forward_params() if train else layer.params,
            num_layers=layer.num_layers,
            bidirectional=layer.bidirectional,
            nonlinearity=layer.nonlinearity,
            lengths=lengths,
            train=train,
            options=layer.options,
            masks=layer._call_masks,
            rng=layer._mask_rng,
        )
        return y, h_n, c_n, cache  # cache has .T and .B

    def backward(
        self,
        layer: Any,
        ctx: StackCache,
        dy: np.ndarray,
        dh_n: np.ndarray,
        dc_n: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        return backward(ctx, dy, dh_n, dc_n, layer.grads)


class _Reference:
    """Mixed in first: makes a fast layer class compute with the NumPy reference.

    Everything else (constructor, options, masks, checks) is the fast layer's.
    """

    _backend = _ReferenceBackend()


_OPTIONS_DOC = """
    The layer options are the fast layer's (keyword-only; the equations are in
    :mod:`rnnkit.reference.options`): ``dropout``, ``recurrent_dropout``,
    ``zoneout`` (all cells), ``layer_norm`` (LSTM, GRU), ``proj_size`` and
    ``forget_bias`` (LSTM). ``forward(..., rng=g)`` or ``forward(..., masks=m)``
    replaces the layer's own mask generator for one call; ``last_masks`` holds the
    masks of the last training forward.
"""


class RNN(_Reference, layers.RNN):
    """:class:`rnnkit.RNN` computed by the NumPy reference, with the layer options.

    Examples
    --------
    >>> rnn = RNN(3, 4, num_layers=2, dropout=0.5, recurrent_dropout=0.25, seed=0)
    >>> y, h_n = rnn.forward(np.ones((6, 2, 3), dtype=np.float32))
    >>> len(rnn.last_masks.dropout), rnn.last_masks.cells[1].recurrent.shape
    (1, (2, 4))
    """


class LSTM(_Reference, layers.LSTM):
    """:class:`rnnkit.LSTM` computed by the NumPy reference, with the layer options.

    Beyond RNN's options: ``layer_norm`` (haste's LayerNormLSTM: the input and
    recurrent products and the cell state on its way to the output), ``proj_size``
    (PyTorch's LSTMP, ``h_t = W_hr (o_t ⊙ tanh c_t)``, h is P wide) and
    ``forget_bias`` (added to the forget rows of ``bias_ih`` at initialisation).

    Examples
    --------
    >>> lstm = LSTM(3, 8, proj_size=2, bidirectional=True, seed=0)
    >>> y, (h_n, c_n) = lstm.forward(np.ones((5, 2, 3), dtype=np.float32))
    >>> y.shape, h_n.shape, c_n.shape, lstm.params["weight_hr_l0"].shape
    ((5, 2, 4), (2, 2, 2), (2, 2, 8), (2, 8))
    """


class GRU(_Reference, layers.GRU):
    """:class:`rnnkit.GRU` computed by the NumPy reference, with the layer options.

    Beyond RNN's options: ``layer_norm`` (haste's LayerNormGRU: the input and
    recurrent products, before the biases).

    Examples
    --------
    >>> gru = GRU(3, 4, layer_norm=True, zoneout=0.1, seed=0)
    >>> sorted(k for k in gru.params if k.startswith("ln_"))
    ['ln_weight_hh_l0', 'ln_weight_ih_l0']
    """


for _c in (RNN, LSTM, GRU):
    _c.__doc__ = (_c.__doc__ or "") + _OPTIONS_DOC


# Checkpoints of models built from these layers record ``"reference": true``; they
# load once this package is imported (the fast path never imports it).
for _cls in (RNN, LSTM, GRU):
    _serial.register_reference(_cls)

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "CellMasks",
    "Masks",
    "Options",
    "StackCache",
    "backward",
    "forward",
    "gru_backward",
    "gru_forward",
    "lstm_backward",
    "lstm_forward",
    "rnn_backward",
    "rnn_forward",
]
