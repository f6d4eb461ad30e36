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
from .._params import ParamViews, _as_float_array, _check_shape
from ._stack import StackCache, backward, forward
from .gru import gru_backward, gru_forward
from .lstm import lstm_backward, lstm_forward
from .options import CellMasks, Masks, Options, mask_rng
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
            options=layer.options,
            masks=layer._call_masks,
            rng=layer._call_rng or layer._mask_rng,
        )
        layer.last_masks = None if cache is None else cache.masks
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

    def stepper(self, layer: Any, batch_size: int) -> Any:
        return _Stepper(layer, batch_size)


class _Stepper(layers._PyStepper):
    """Single inference steps through ``forward``; ``h`` is P wide with a projection."""

    def __init__(self, layer: Any, batch_size: int) -> None:
        super().__init__(layer, batch_size)
        S = layer.options.proj_size or layer.hidden_size
        self._h = np.zeros((layer.num_layers, batch_size, S), layer.dtype)


class _WithOptions:
    """The layer options of :mod:`.options` on a reference layer (mixed in first).

    Keyword-only arguments after the layer's own; see the classes below. The
    option tensors (``weight_hr_l{k}``, ``ln_*``) join ``params``/``grads`` after
    each layer and direction's four PyTorch tensors.
    """

    options: Options
    last_masks: Masks | None
    _mask_rng: np.random.Generator
    _call_rng: np.random.Generator | None = None
    _call_masks: Masks | None = None
    # the base class's attributes this mixin reads
    cell: str
    hidden_size: int
    num_layers: int
    num_directions: int
    batch_first: bool
    bias: bool
    spec: Any
    dtype: np.dtype
    params: ParamViews
    _ctx: Any

    def _set_options(self, options: Options) -> None:
        """Before the base constructor: the options decide the tensors it allocates."""
        self.options = options.validated(self.cell)
        self.last_masks = None

    def _options_ready(self, seed: int | np.random.Generator | None) -> None:
        """After the base constructor: the checks that need H, and the mask stream."""
        self.options.validated(self.cell, self.hidden_size)
        if self.options.forget_bias and not self.bias:
            raise ValueError(
                f"forget_bias={self.options.forget_bias!r} needs bias=True"
            )
        self._mask_rng = mask_rng(seed)

    def _allocate(self, shapes: Any) -> None:
        """Allocates the PyTorch tensors plus the option tensors, in storage order."""
        o = self.options
        if o.proj_size or o.layer_norm:
            shapes = self.spec.param_shapes(
                self.input_size,  # type: ignore[attr-defined]
                self.hidden_size,
                self.num_layers,
                self.num_directions == 2,
                self.bias,
                proj_size=o.proj_size,
                layer_norm=o.layer_norm,
            )
        super()._allocate(shapes)  # type: ignore[misc]

    def reset_parameters(self, seed: int | np.random.Generator | None = None) -> None:
        """PyTorch's U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias (and
        ``weight_hr``), drawn in storage order; layer-norm gains 1, biases 0; then
        ``forget_bias`` added to the forget-gate rows [H:2H] of every ``bias_ih``.
        """
        rng = (
            seed
            if isinstance(seed, np.random.Generator)
            else np.random.default_rng(seed)
        )
        k = 1.0 / np.sqrt(self.hidden_size)
        H = self.hidden_size
        for name, p in self.params.items():
            if name.startswith("ln_weight"):
                p[...] = 1
            elif name.startswith("ln_bias"):
                p[...] = 0
            else:
                p[...] = rng.uniform(-k, k, size=p.shape)
                if name.startswith("bias_ih") and self.options.forget_bias:
                    p[H : 2 * H] += self.options.forget_bias

    def _check_state(self, name: str, s: Any, shape: tuple[int, ...]) -> np.ndarray:
        if self.options.proj_size and name in ("h0", "dh_n", "hx"):
            shape = (*shape[:-1], self.options.proj_size)
        return super()._check_state(name, s, shape)  # type: ignore[misc]

    def forward(
        self,
        x: Any,
        hx: Any = None,
        lengths: Any = None,
        train: bool = True,
        *,
        rng: np.random.Generator | None = None,
        masks: Masks | None = None,
    ) -> tuple[np.ndarray, Any]:
        """The layer's forward (see :meth:`rnnkit.layers._Recurrent.forward`), with
        the options' masks drawn from the layer's own generator, from ``rng`` for
        this call, or given as ``masks`` (real time, :class:`~.options.Masks`);
        the masks used are kept as :attr:`last_masks` (None at inference).
        """
        self._call_rng, self._call_masks = rng, masks
        try:
            return super().forward(x, hx, lengths, train)  # type: ignore[misc]
        finally:
            self._call_rng = self._call_masks = None

    __call__ = forward

    def backward(self, dy: Any, dhx: Any = None) -> tuple[np.ndarray, Any]:
        """The layer's backward (see :meth:`rnnkit.layers._Recurrent.backward`);
        with a projection ``dy`` is shaped like ``y`` (D*P wide) and ``dh_n`` is
        (L*D, B, P)."""
        P = self.options.proj_size
        ctx = self._ctx
        if not P or ctx is None:
            return super().backward(dy, dhx)  # type: ignore[misc]
        T, B, D = ctx.T, ctx.B, self.num_directions
        y_shape = (B, T, D * P) if self.batch_first else (T, B, D * P)
        if dy is None:
            dy = np.zeros((T, B, D * P), dtype=self.dtype)
        else:
            dy = _as_float_array("dy", dy, self.dtype)
            _check_shape("dy", dy, y_shape)
            if self.batch_first:
                dy = np.ascontiguousarray(dy.transpose(1, 0, 2))
        c_shape = (self.num_layers * D, B, self.hidden_size)
        dhn, dcn = self._split_state("dh_n", dhx)  # type: ignore[attr-defined]
        dhn = self._check_state("dh_n", dhn, c_shape)  # P wide, see _check_state
        dcn = self._check_state("dc_n", dcn, c_shape)
        self._ctx = None
        dx, dh0, dc0 = self._backend.backward(self, ctx, dy, dhn, dcn)  # type: ignore[attr-defined]
        if self.batch_first:
            dx = dx.transpose(1, 0, 2)
        return dx, (dh0, dc0)

    def extra_repr(self) -> str:
        s: str = super().extra_repr()  # type: ignore[misc]
        extra = "".join(f", {k}={v!r}" for k, v in self.options.as_dict().items())
        return s.replace(
            f", dtype={self.dtype.name}", f"{extra}, dtype={self.dtype.name}"
        )


_OPTIONS_DOC = """
    Options (keyword-only; the equations are in :mod:`rnnkit.reference.options`):
    ``dropout`` (every layer's output but the last, training only, PyTorch's),
    ``recurrent_dropout`` (one mask per forward, layer and direction on ``h_{t-1}``
    before ``W_hh``), ``zoneout`` (units keep their previous value with this
    probability in training; the expectation at inference), each a float in
    [0, 1), default 0. ``forward(..., rng=g)`` or ``forward(..., masks=m)``
    replaces the layer's own mask generator for one call; ``last_masks`` holds the
    masks of the last training forward.
"""


class RNN(_WithOptions, layers.RNN):
    """:class:`rnnkit.RNN` computed by the NumPy reference, with the layer options.

    Examples
    --------
    >>> rnn = RNN(3, 4, num_layers=2, dropout=0.5, recurrent_dropout=0.25, seed=0)
    >>> y, h_n = rnn.forward(np.ones((6, 2, 3), dtype=np.float32))
    >>> len(rnn.last_masks.dropout), rnn.last_masks.cells[1].recurrent.shape
    (1, (2, 4))
    """

    _backend = _ReferenceBackend()

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        bidirectional: bool = False,
        dtype: str | np.dtype = "float32",
        seed: int | np.random.Generator | None = None,
        *,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
    ) -> None:
        self._set_options(Options(dropout, recurrent_dropout, zoneout))
        layers.RNN.__init__(
            self,
            input_size,
            hidden_size,
            num_layers,
            nonlinearity,
            bias,
            batch_first,
            bidirectional,
            dtype,
            seed,
        )
        self._options_ready(seed)


class LSTM(_WithOptions, layers.LSTM):
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

    _backend = _ReferenceBackend()

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        bidirectional: bool = False,
        dtype: str | np.dtype = "float32",
        seed: int | np.random.Generator | None = None,
        nonlinearity: str = "tanh",
        *,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
        layer_norm: bool = False,
        proj_size: int = 0,
        forget_bias: float = 0.0,
    ) -> None:
        self._set_options(
            Options(
                dropout, recurrent_dropout, zoneout, layer_norm, proj_size, forget_bias
            )
        )
        layers.LSTM.__init__(
            self,
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            bidirectional,
            dtype,
            seed,
            nonlinearity,
        )
        self._options_ready(seed)


class GRU(_WithOptions, layers.GRU):
    """:class:`rnnkit.GRU` computed by the NumPy reference, with the layer options.

    Beyond RNN's options: ``layer_norm`` (haste's LayerNormGRU: the input and
    recurrent products, before the biases).

    Examples
    --------
    >>> gru = GRU(3, 4, layer_norm=True, zoneout=0.1, seed=0)
    >>> sorted(k for k in gru.params if k.startswith("ln_"))
    ['ln_weight_hh_l0', 'ln_weight_ih_l0']
    """

    _backend = _ReferenceBackend()

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        bidirectional: bool = False,
        dtype: str | np.dtype = "float32",
        seed: int | np.random.Generator | None = None,
        nonlinearity: str = "tanh",
        *,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
        layer_norm: bool = False,
    ) -> None:
        self._set_options(Options(dropout, recurrent_dropout, zoneout, layer_norm))
        layers.GRU.__init__(
            self,
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            bidirectional,
            dtype,
            seed,
            nonlinearity,
        )
        self._options_ready(seed)


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
