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
from .rnn import rnn_backward, rnn_forward


class _ReferenceBackend:
    """The backend protocol of :class:`rnnkit.layers._Recurrent`, on :func:`forward`.

    ``forward(layer, x, h0, c0, lengths, train) -> (y, h_n, c_n, ctx)`` and
    ``backward(layer, ctx, dy, dh_n, dc_n) -> (dx, dh0, dc0)``, adding into
    ``layer.grads``. The layer has validated and converted every array already.
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


class RNN(layers.RNN):
    """:class:`rnnkit.RNN` computed by the NumPy reference."""

    _backend = _ReferenceBackend()


class LSTM(layers.LSTM):
    """:class:`rnnkit.LSTM` computed by the NumPy reference."""

    _backend = _ReferenceBackend()


class GRU(layers.GRU):
    """:class:`rnnkit.GRU` computed by the NumPy reference."""

    _backend = _ReferenceBackend()


# Checkpoints of models built from these layers record ``"reference": true``; they
# load once this package is imported (the fast path never imports it).
for _cls in (RNN, LSTM, GRU):
    _serial.register_reference(_cls)

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
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
