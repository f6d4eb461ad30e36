"""Recurrent layers: RNN, LSTM and GRU with PyTorch's math, names and shapes.

Each layer owns one flat parameter buffer and one flat gradient buffer with
named views (``params`` / ``grads``, see :mod:`rnnkit._params`), runs its compute
on a *backend* (the compiled kernels, :mod:`rnnkit._backend`, by default; the NumPy
reference for ``rnnkit.reference.*``, which sets its own), and follows a tiny
protocol::

    y, h_n = layer.forward(x, h0, lengths=None, train=True)
    dx, dh0 = layer.backward(dy, dh_n)      # adds into layer.grads
    layer.zero_grad()

What differs between the cells (gate count, state kind, accepted nonlinearities,
parameter names and shapes) comes from the cell registry :mod:`rnnkit._cells`;
each layer class registers itself there with :func:`rnnkit._cells.register`.

Shapes (PyTorch's): ``x`` is (T, B, I), or (B, T, I) with ``batch_first``;
``y`` is (T, B, D*S); states are (L*D, B, S) with index ``l*D + d``, S = H (or
``proj_size``), the LSTM's ``c`` (L*D, B, H).

Layer options (issue 12; equations in :mod:`rnnkit.reference.options`), keyword
only: ``dropout``, ``recurrent_dropout``, ``zoneout`` (all cells), ``layer_norm``
(LSTM, GRU), ``proj_size`` and ``forget_bias`` (LSTM). Their masks are drawn by
:func:`rnnkit._options.draw_masks` from the layer's own generator (from its
``seed``), ``forward(rng=)`` or given as ``forward(masks=)``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import _cells
from ._backend import CoreBackend
from ._checks import flag
from ._options import CellMasks, Masks, Options, check_masks, draw_masks, mask_rng
from ._params import _as_float_array, _check_shape, _Params

__all__ = ["GRU", "LSTM", "RNN"]


class _Recurrent(_Params):
    """Stacked, optionally bidirectional recurrent layer (base of RNN, LSTM, GRU).

    Subclasses are registered with :func:`rnnkit._cells.register`, which sets
    :attr:`cell`; everything cell-specific is read from :attr:`spec`.
    """

    cell: str = ""
    """The cell's registry key (``"lstm"``), set by :func:`rnnkit._cells.register`."""
    _backend: Any = CoreBackend()  # the compiled kernels; rnnkit.reference overrides

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
        for name, v in (
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
        ):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        bias = flag("bias", bias)
        batch_first = flag("batch_first", batch_first)
        bidirectional = flag("bidirectional", bidirectional)
        self.spec = _cells.get(self.cell)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        if nonlinearity not in self.spec.nonlinearities:
            raise ValueError(
                f"nonlinearity must be one of {self.spec.nonlinearities}, "
                f"got {nonlinearity!r}"
            )
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if bidirectional else 1
        self.nonlinearity = nonlinearity
        self.gates = self.spec.gates
        self.options = Options(
            dropout, recurrent_dropout, zoneout, layer_norm, proj_size, forget_bias
        ).validated(self.cell, self.hidden_size)
        if self.options.forget_bias and not self.bias:
            raise ValueError(f"forget_bias={forget_bias!r} needs bias=True")
        # S, the size of h and of each direction's output (proj_size or H)
        self.state_size = self.options.proj_size or self.hidden_size
        # the masks of the last training forward (None: inference or no rate)
        self.last_masks: Masks | None = None
        self._call_masks: Masks | None = None  # the masks of the forward running
        # (row0, rows, global rows, global steps) in data-parallel training
        # (rnnkit.distributed): masks are drawn for the global batch and this rank
        # keeps its rows
        self._mask_rows: tuple[int, int, int, int] | None = None

        self._allocate(  # PyTorch's names, in its order; option tensors after each
            self.spec.param_shapes(
                self.input_size,
                self.hidden_size,
                self.num_layers,
                self.bidirectional,
                self.bias,
                proj_size=self.options.proj_size,
                layer_norm=self.options.layer_norm,
            )
        )
        self.reset_parameters(seed)
        self._mask_rng = mask_rng(seed)  # after the parameters: their stream is apart
        self._ctx: Any = None  # what backward needs; set by a training forward
        self._ctx_thread = 0  # the thread that ran that forward
        self._reserve: np.ndarray | None = None  # kernel workspace kept for backward
        self._snapshot: tuple[np.ndarray, dict[str, np.ndarray]] | None = None
        self._busy = threading.Lock()  # held by a training forward / backward

    # ----------------------------------------------------------------- params
    def _weight_list(self, store: dict[str, np.ndarray]) -> list[np.ndarray | None]:
        """[W_ih, W_hh, b_ih, b_hh] per (layer, direction), biases None without bias.

        Read from ``store`` at every call (only the names are computed once), so
        whatever the views hold now is what the kernels see.
        """
        names = self.__dict__.get("_weight_names")
        if names is None:
            names = [
                kind + _cells.suffix(layer, d)
                for layer in range(self.num_layers)
                for d in range(self.num_directions)
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            ]
            self._weight_names = names
        return [store.get(k) for k in names]

    def _forward_params(self) -> Mapping[str, np.ndarray]:
        """The weights a training forward computes with: a copy, kept for its
        backward, so that ``load_state_dict`` or an in-place edit between the two
        cannot give a gradient that matches neither the old nor the new weights.

        One buffer per layer, reused (a new training forward ends the previous
        one); the views follow ``params``' storage order in the flat buffer.
        """
        flat = self._flat_params
        snap = self._snapshot
        if snap is None or snap[0].shape != flat.shape:
            buf = np.empty_like(flat)
            views, off = {}, 0
            for name, p in self.params.items():
                views[name] = buf[off : off + p.size].reshape(p.shape)
                off += p.size
            snap = self._snapshot = (buf, views)
        np.copyto(snap[0], flat)
        return snap[1]

    def __getstate__(self) -> dict[str, Any]:
        # pickle / deepcopy: the weights and settings; no lock, no pending backward
        state = super().__getstate__()
        state.update(_busy=None, _ctx=None, _ctx_thread=0, _snapshot=None)
        state.update(last_masks=None, _call_masks=None)  # a forward's, not the layer's
        state.update(_reserve=None, _mask_rows=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("_mask_rows", None)
        super().__setstate__(state)
        self._busy = threading.Lock()

    def _enter(self, what: str) -> None:
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(
                f"{type(self).__name__}.{what}() called while another thread is in "
                "a training forward/backward of the same layer: one layer's pending "
                "backward state cannot be shared; give each thread its own layer "
                "(inference, train=False, may be shared)"
            )

    def reset_parameters(self, seed: int | np.random.Generator | None = None) -> None:
        """Draws every parameter from U(-1/sqrt(H), 1/sqrt(H)), as PyTorch does.

        Every weight and bias (and ``weight_hr``) is drawn in storage order;
        layer-norm gains are set to 1 and biases to 0; then ``forget_bias`` is
        added to the forget-gate rows [H:2H] of every ``bias_ih``.

        Parameters
        ----------
        seed : int, np.random.Generator or None
            Source of the random numbers; the parameters are drawn in PyTorch's
            storage order. None draws fresh entropy.
        """
        rng = (
            seed
            if isinstance(seed, np.random.Generator)
            else np.random.default_rng(seed)
        )
        H = self.hidden_size
        k = 1.0 / np.sqrt(H)
        fb = self.options.forget_bias
        for name, p in self.params.items():
            if name.startswith("ln_weight"):
                p[...] = 1
            elif name.startswith("ln_bias"):
                p[...] = 0
            else:
                p[...] = rng.uniform(-k, k, size=p.shape)
                if fb and name.startswith("bias_ih"):
                    p[H : 2 * H] += fb

    # ---------------------------------------------------------------- compute
    def _check_forward(self, x: Any, hx: Any, lengths: Any) -> tuple[Any, ...]:
        x = _as_float_array("x", x, self.dtype)
        # the layout rule (README "Data layout") and the caller's shape, in every error
        layout = "(B, T, I)" if self.batch_first else "(T, B, I)"
        rule = f"x shape {x.shape}; layers are time-major unless batch_first=True"
        if x.ndim != 3:
            raise ValueError(
                f"x must be 3-D {layout}, got ndim {x.ndim} shape {x.shape} ({rule})"
            )
        if self.batch_first:
            x = np.ascontiguousarray(x.transpose(1, 0, 2))
        T, B, I = x.shape
        if I != self.input_size:
            raise ValueError(
                f"x must have input size {self.input_size} in its last axis, got {I} "
                f"({rule}, {layout})"
            )
        if T == 0 or B == 0:
            raise ValueError(
                f"x must have T >= 1 and B >= 1, got T={T}, B={B} ({rule}, {layout})"
            )
        LD = self.num_layers * self.num_directions
        h0, c0 = self._split_state("h0", hx)
        h0 = self._check_state("h0", h0, (LD, B, self.state_size))
        c0 = (
            self._check_state("c0", c0, (LD, B, self.hidden_size))
            if self.spec.has_cell_state
            else None
        )
        if lengths is not None:
            lengths = self._check_lengths(lengths, T, B)
        return x, h0, c0, lengths

    def _split_state(self, name: str, hx: Any) -> tuple[Any, Any]:
        if not self.spec.has_cell_state:
            return hx, None
        if hx is None:
            return None, None
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(
                f"{self.spec.class_name} state must be a tuple (h, c) or None, "
                f"got {type(hx).__name__}"
            )
        return hx[0], hx[1]

    def _check_state(self, name: str, s: Any, shape: tuple[int, ...]) -> np.ndarray:
        if s is None:
            return np.zeros(shape, dtype=self.dtype)
        arr = _as_float_array(name, s, self.dtype)
        _check_shape(name, arr, shape)
        return arr

    @staticmethod
    def _check_lengths(lengths: Any, T: int, B: int) -> np.ndarray:
        if hasattr(lengths, "detach"):
            lengths = lengths.detach().cpu().numpy()
        arr = np.asarray(lengths)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"lengths must be an integer array, got dtype {arr.dtype}")
        if arr.shape != (B,):
            raise ValueError(f"lengths must have shape ({B},), got {arr.shape}")
        bad = (arr < 1) | (arr > T)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"lengths must be in [1, T={T}], got lengths[{i}] = {int(arr[i])}"
            )
        return np.ascontiguousarray(arr, dtype=np.int64)

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
        """Runs the layer over a sequence.

        Parameters
        ----------
        x : array-like, (T, B, I), or (B, T, I) with ``batch_first``
            The input sequence; any other float dtype is converted to the layer's
            dtype (integer, boolean and complex arrays raise ``TypeError``).
        hx : array-like (L*D, B, H), for LSTM a tuple ``(h0, c0)``, or None
            The initial state, index ``l*D + d``; None means zeros.
        lengths : int array-like (B,), optional
            Valid steps per row, ``1 <= lengths[b] <= T``, in any order. Steps past
            a row's end leave its state unchanged and output zeros; the reverse
            direction starts at each row's own last step.
        train : bool
            Keep what :meth:`backward` needs (True) or run the inference path
            (deterministic: no mask; zoneout uses its expectation).
        rng : np.random.Generator, optional, keyword-only
            Draw this call's masks (``dropout``, ``recurrent_dropout``,
            ``zoneout``, training only) from ``rng`` instead of the layer's own
            generator.
        masks : rnnkit._options.Masks, optional, keyword-only
            Use these masks (real time, the layout of
            :func:`rnnkit._options.draw_masks`, e.g. another layer's
            :attr:`last_masks`) instead of drawing.

        Returns
        -------
        y : ndarray (T, B, D*S), or (B, T, D*S) with ``batch_first``
            The top layer's output at every step, forward direction in
            ``[..., :S]``, reverse in ``[..., S:]`` (S = ``proj_size`` or H).
        h_n : ndarray (L*D, B, S), for LSTM a tuple ``(h_n, c_n)``
            The final state of every layer and direction (``c_n`` (L*D, B, H)).

        Examples
        --------
        >>> import numpy as np, rnnkit as rk
        >>> gru = rk.GRU(3, 5, num_layers=2, seed=0)
        >>> y, h_n = gru.forward(np.zeros((7, 2, 3)), lengths=[7, 4])
        >>> y.shape, h_n.shape
        ((7, 2, 5), (2, 2, 5))
        """
        x, h0, c0, lengths = self._check_forward(x, hx, lengths)
        if not train:
            if self._ctx_thread == threading.get_ident():
                self._ctx = None  # this thread's pending backward ends here
            self.last_masks = None
            y, hn, cn, _ = self._backend.forward(self, x, h0, c0, lengths, False)
        else:
            self._enter("forward")
            try:
                self._ctx = None
                self._call_masks = self._masks_for(x.shape[0], x.shape[1], rng, masks)
                y, hn, cn, ctx = self._backend.forward(self, x, h0, c0, lengths, True)
                self._ctx, self._ctx_thread = ctx, threading.get_ident()
                self.last_masks = self._call_masks
            finally:
                self._call_masks = None
                self._busy.release()
        if self.batch_first:
            y = y.transpose(1, 0, 2)
        return (y, (hn, cn)) if self.spec.has_cell_state else (y, hn)

    __call__ = forward

    def _masks_for(
        self, T: int, B: int, rng: np.random.Generator | None, masks: Masks | None
    ) -> Masks | None:
        """The masks of one training forward: given (checked), or drawn."""
        o = self.options
        if not (o.dropout or o.recurrent_dropout or o.zoneout):
            if masks is not None:
                check_masks(  # only empty masks fit a layer without rates
                    masks,
                    o,
                    cell=self.cell,
                    T=T,
                    B=B,
                    H=self.hidden_size,
                    num_layers=self.num_layers,
                    num_directions=self.num_directions,
                    dtype=self.dtype,
                )
            return None
        kw = dict(
            cell=self.cell,
            T=T,
            B=B,
            H=self.hidden_size,
            num_layers=self.num_layers,
            num_directions=self.num_directions,
            dtype=self.dtype,
        )
        if masks is not None:
            return check_masks(masks, o, **kw)  # type: ignore[arg-type]
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy Generator, got {type(rng).__name__}")
        window = self._mask_rows
        if window is None:
            return draw_masks(o, rng or self._mask_rng, **kw)  # type: ignore[arg-type]
        # data-parallel training: this rank's rows (and steps) of the masks of the
        # global batch, which may be longer than this rank's trimmed share
        row0, rows, global_rows, global_steps = window
        if rows != B:
            raise ValueError(
                f"distributed masks are drawn for {rows} rows of {global_rows}, "
                f"got a batch of {B}"
            )
        kw.update(B=global_rows, T=max(T, global_steps))
        full = draw_masks(o, rng or self._mask_rng, **kw)  # type: ignore[arg-type]
        return _mask_rows_of(full, row0, rows, T)

    def backward(self, dy: Any, dhx: Any = None) -> tuple[np.ndarray, Any]:
        """Backpropagation through time for the last training :meth:`forward`.

        Adds the parameter gradients into ``self.grads`` (call :meth:`zero_grad`
        between steps). Each training forward allows exactly one backward.

        Parameters
        ----------
        dy : array-like shaped like ``y``, or None
            Gradient of the loss w.r.t. the output; None means zeros.
        dhx : array-like (L*D, B, S), for LSTM a tuple ``(dh_n, dc_n)``, or None
            Gradient w.r.t. the final state (``dc_n`` (L*D, B, H)); None: zeros.

        Returns
        -------
        dx : ndarray shaped like ``x``
            Gradient w.r.t. the input.
        dh0 : ndarray (L*D, B, H), for LSTM a tuple ``(dh0, dc0)``
            Gradient w.r.t. the initial state.

        Raises
        ------
        RuntimeError
            No training forward is pending.

        Examples
        --------
        >>> import numpy as np, rnnkit as rk
        >>> lstm = rk.LSTM(3, 4, seed=0)
        >>> y, (h_n, c_n) = lstm.forward(np.ones((6, 2, 3)))
        >>> dx, (dh0, dc0) = lstm.backward(np.ones_like(y))
        >>> dx.shape, lstm.grads["weight_hh_l0"].shape
        ((6, 2, 3), (16, 4))
        """
        self._enter("backward")
        try:
            return self._backward(dy, dhx)
        finally:
            self._busy.release()

    def _backward(self, dy: Any, dhx: Any) -> tuple[np.ndarray, Any]:
        ctx = self._ctx
        if ctx is None:
            raise RuntimeError(
                "backward() needs a preceding forward(..., train=True); none is "
                "pending (no forward yet, an inference forward, or backward already "
                "called)"
            )
        if self._ctx_thread != threading.get_ident():
            raise RuntimeError(
                f"{type(self).__name__}.backward(): the pending training forward was "
                "run by another thread (two threads training one layer); give each "
                "thread its own layer"
            )
        T, B = ctx.T, ctx.B
        DH = self.num_directions * self.state_size
        y_shape = (B, T, DH) if self.batch_first else (T, B, DH)
        if dy is None:
            dy = np.zeros((T, B, DH), dtype=self.dtype)
        else:
            dy = _as_float_array("dy", dy, self.dtype)
            _check_shape("dy", dy, y_shape)
            if self.batch_first:
                dy = np.ascontiguousarray(dy.transpose(1, 0, 2))
        lstm = self.spec.has_cell_state
        LD = self.num_layers * self.num_directions
        dhn, dcn = self._split_state("dh_n", dhx)
        dhn = self._check_state("dh_n", dhn, (LD, B, self.state_size))
        dcn = (
            self._check_state("dc_n", dcn, (LD, B, self.hidden_size)) if lstm else None
        )
        self._ctx = None
        dx, dh0, dc0 = self._backend.backward(self, ctx, dy, dhn, dcn)
        if self.batch_first:
            dx = dx.transpose(1, 0, 2)
        return (dx, (dh0, dc0)) if lstm else (dx, dh0)

    def stepper(self, batch_size: int = 1, hx: Any = None) -> Any:
        """A generator of single steps, for sampling and streaming.

        The weights are packed once, when the stepper is made (make a new one after
        changing them), and the state is carried inside between calls, so a step
        costs one fused product per layer and nothing else. Unidirectional layers
        only.

        Parameters
        ----------
        batch_size : int
            B, the rows of every step's input.
        hx : array-like (L, B, H), for LSTM a tuple ``(h0, c0)``, or None
            The initial state; None means zeros.

        Returns
        -------
        stepper
            ``st.step(x)`` takes x (B, I) and returns the top layer's new state
            (B, H); ``st.get_state()`` returns ``(h, c)`` (c None except LSTM),
            shapes (L, B, H); ``st.set_state(h, c=None)`` replaces it.

        Examples
        --------
        >>> import numpy as np, rnnkit as rk
        >>> lstm = rk.LSTM(3, 4, num_layers=2, seed=0)
        >>> st = lstm.stepper(batch_size=1)
        >>> for _ in range(5):
        ...     h = st.step(np.ones((1, 3), dtype=np.float32))
        >>> h.shape, st.get_state()[1].shape
        ((1, 4), (2, 1, 4))
        """
        if self.bidirectional:
            raise ValueError(
                "stepper() needs a unidirectional layer, got bidirectional=True"
            )
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, (int, np.integer))
            or batch_size < 1
        ):
            raise ValueError(
                f"batch_size must be a positive integer, got {batch_size!r}"
            )
        make = getattr(self._backend, "stepper", None)
        o = self.options
        if o.layer_norm or o.proj_size:
            make = None  # no compiled stepper: steps through forward(T=1)
        st = make(self, int(batch_size)) if make else _PyStepper(self, int(batch_size))
        if hx is not None:
            shape = (self.num_layers, int(batch_size), self.hidden_size)
            h0, c0 = self._split_state("hx", hx)
            h0 = self._check_state("h0", h0, (*shape[:2], self.state_size))
            c0 = (
                self._check_state("c0", c0, shape) if self.spec.has_cell_state else None
            )
            st.set_state(h0, c0)
        return st

    def extra_repr(self) -> str:
        """The constructor arguments that differ from the defaults, as in ``repr``."""
        s = f"{self.input_size}, {self.hidden_size}"
        if len(self.spec.nonlinearities) > 1:
            s += f", nonlinearity={self.nonlinearity!r}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.bidirectional:
            s += ", bidirectional=True"
        s += "".join(f", {k}={v!r}" for k, v in self.options.as_dict().items())
        return s + f", dtype={self.dtype.name}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


def _mask_rows_of(m: Masks, row0: int, rows: int, T: int) -> Masks:
    """Rows ``[row0, row0 + rows)`` of every mask (batch axis 0 of the recurrent
    masks, 1 of the per-step ones) and the first T steps, contiguous."""
    sl = slice(row0, row0 + rows)

    def rows_of(a: np.ndarray | None, per_step: bool) -> np.ndarray | None:
        if a is None:
            return None
        return np.ascontiguousarray(a[:T, sl] if per_step else a[sl])

    cells = [
        CellMasks(
            recurrent=rows_of(c.recurrent, False),
            zoneout_h=rows_of(c.zoneout_h, True),
            zoneout_c=rows_of(c.zoneout_c, True),
        )
        for c in m.cells
    ]
    return Masks(cells=cells, dropout=[rows_of(d, True) for d in m.dropout])


class _PyStepper:
    """Single steps through ``forward`` (for backends without a fused stepper)."""

    def __init__(self, layer: _Recurrent, batch_size: int) -> None:
        self._layer, self.batch_size = layer, batch_size
        shape = (layer.num_layers, batch_size, layer.hidden_size)
        self._h = np.zeros((*shape[:2], layer.state_size), layer.dtype)
        self._c = np.zeros(shape, layer.dtype) if layer.spec.has_cell_state else None

    def step(self, x: Any) -> np.ndarray:
        layer = self._layer
        x = _as_float_array("x", x, layer.dtype)
        _check_shape("x", x, (self.batch_size, layer.input_size))
        lstm = layer.spec.has_cell_state
        hx = (self._h, self._c) if lstm else self._h
        xs = x[:, None] if layer.batch_first else x[None]
        y, state = layer.forward(xs, hx, train=False)
        self._h, self._c = state if lstm else (state, None)
        return self._h[-1].copy()

    def get_state(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self._h.copy(), None if self._c is None else self._c.copy()

    def set_state(self, h: np.ndarray, c: np.ndarray | None = None) -> None:
        self._h = np.array(h, dtype=self._layer.dtype)
        if self._c is not None:
            self._c = np.array(c, dtype=self._layer.dtype)


@_cells.register("rnn")
class RNN(_Recurrent):
    """Elman RNN, ``torch.nn.RNN``'s math, parameter names and shapes.

    For each layer and direction, at every step t::

        h_t = σ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),   σ ∈ {tanh, relu, sigmoid}

    Parameters
    ----------
    input_size : int
        I, the features of each step of ``x``.
    hidden_size : int
        H, the features of the state ``h`` (and of each direction's output).
    num_layers : int, default 1
        L, recurrent layers stacked; layer k > 0 reads layer k-1's output (D*H).
    nonlinearity : {"tanh", "relu", "sigmoid"}, default "tanh"
        σ above.
    bias : bool, default True
        Use ``b_ih`` and ``b_hh``; without them the bias keys are absent.
    batch_first : bool, default False
        ``x`` and ``y`` are (B, T, ·) instead of (T, B, ·); states are not affected.
    bidirectional : bool, default False
        Add a reverse direction (D = 2) that runs each row from its last valid
        step to its first; outputs are concatenated on the last axis.
    dtype : {"float32", "float64"}, default "float32"
        Of the parameters, gradients, outputs and states.
    seed : int, np.random.Generator or None
        Source of the initial parameters, U(-1/sqrt(H), 1/sqrt(H)) drawn in
        PyTorch's storage order, and of the option masks (a stream of its own);
        None draws fresh entropy.
    dropout : float in [0, 1), default 0, keyword-only
        PyTorch's: in training, the output of every layer but the last is
        multiplied by a fresh Bernoulli(1-p)/(1-p) mask (T, B, D*S).
    recurrent_dropout : float in [0, 1), default 0, keyword-only
        Variational dropout (Gal & Ghahramani; Keras's name): one mask (B, S) per
        training forward, layer and direction on ``h_{t-1}`` where it enters
        ``W_hh``, the same at every step.
    zoneout : float in [0, 1), default 0, keyword-only
        Zoneout (Krueger et al.): in training each unit keeps its previous value
        with this probability, a fresh mask per step; at inference the
        expectation ``p h_{t-1} + (1-p) h~_t``.

    Attributes
    ----------
    params, grads : dict of str to ndarray
        Named views into one flat parameter / gradient buffer, PyTorch's names:
        ``weight_ih_l{k}`` (H, I or D*H), ``weight_hh_l{k}`` (H, H),
        ``bias_ih_l{k}`` (H,), ``bias_hh_l{k}`` (H,), ``_reverse`` for d = 1;
        the options' tensors (``weight_hr_l{k}``, ``ln_*``) after each layer
        and direction's four.
    options : rnnkit._options.Options
        The option values (frozen); ``state_size`` is S = ``proj_size`` or H.
    last_masks : rnnkit._options.Masks or None
        The masks of the last training forward (real time, per layer and
        direction); None after inference or without a rate.

    Shapes
    ------
    x : (T, B, I), or (B, T, I) with ``batch_first``
    h0, h_n : (L*D, B, H), index ``l*D + d``
    y : (T, B, D*H), or (B, T, D*H) with ``batch_first``
    lengths : (B,) integers in [1, T]

    Methods
    -------
    forward(x, hx=None, lengths=None, train=True) -> (y, h_n)
    backward(dy, dhx=None) -> (dx, dh0), adding into ``grads``
    stepper(batch_size=1, hx=None) -> single-step generator
    zero_grad(), parameters(), state_dict(), load_state_dict(state)

    Examples
    --------
    >>> import numpy as np, rnnkit as rk
    >>> rnn = rk.RNN(8, 16, num_layers=2, nonlinearity="relu", seed=0)
    >>> x = np.ones((5, 3, 8), dtype=np.float32)
    >>> y, h_n = rnn.forward(x)
    >>> dx, dh0 = rnn.backward(np.ones_like(y))
    >>> y.shape, h_n.shape, dx.shape
    ((5, 3, 16), (2, 3, 16), (5, 3, 8))
    """

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
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            bidirectional,
            dtype,
            seed,
            nonlinearity,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            zoneout=zoneout,
        )


@_cells.register("lstm")
class LSTM(_Recurrent):
    """Long short-term memory, ``torch.nn.LSTM``'s math, gate order, names and shapes.

    For each layer and direction, at every step t, with the gates in PyTorch's
    order ``i, f, g, o`` (rows ``[0:H]``, ``[H:2H]``, ``[2H:3H]``, ``[3H:4H]``)::

        i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)
        f = sigmoid(W_if x + b_if + W_hf h + b_hf)
        g = tanh(W_ig x + b_ig + W_hg h + b_hg)
        o = sigmoid(W_io x + b_io + W_ho h + b_ho)
        c' = f * c + i * g
        h' = o * tanh(c')

    The state is a pair ``(h, c)`` everywhere a state goes in or comes out.

    Parameters
    ----------
    input_size : int
        I, the features of each step of ``x``.
    hidden_size : int
        H, the features of ``h`` and ``c`` (and of each direction's output).
    num_layers : int, default 1
        L, recurrent layers stacked; layer k > 0 reads layer k-1's output (D*H).
    bias : bool, default True
        Use ``b_ih`` and ``b_hh``; without them the bias keys are absent.
    batch_first : bool, default False
        ``x`` and ``y`` are (B, T, ·) instead of (T, B, ·); states are not affected.
    bidirectional : bool, default False
        Add a reverse direction (D = 2) that runs each row from its last valid
        step to its first; outputs are concatenated on the last axis.
    dtype : {"float32", "float64"}, default "float32"
        Of the parameters, gradients, outputs and states.
    seed : int, np.random.Generator or None
        Source of the initial parameters, U(-1/sqrt(H), 1/sqrt(H)) drawn in
        PyTorch's storage order, and of the option masks (a stream of its own);
        None draws fresh entropy.
    nonlinearity : {"tanh"}, default "tanh"
        Accepted for a uniform constructor; the LSTM's activations are fixed.
    dropout : float in [0, 1), default 0, keyword-only
        PyTorch's: in training, the output of every layer but the last is
        multiplied by a fresh Bernoulli(1-p)/(1-p) mask (T, B, D*S).
    recurrent_dropout : float in [0, 1), default 0, keyword-only
        Variational dropout (Gal & Ghahramani; Keras's name): one mask (B, S) per
        training forward, layer and direction on ``h_{t-1}`` where it enters
        ``W_hh``, the same at every step.
    zoneout : float in [0, 1), default 0, keyword-only
        Zoneout (Krueger et al.): in training each unit keeps its previous value
        with this probability, a fresh mask per step (h and c, each its own); at
        inference the expectation ``p h_{t-1} + (1-p) h~_t``.
    layer_norm : bool, default False, keyword-only
        Layer normalisation (Ba et al.; haste's LayerNormLSTM): ``LN(W_ih x;
        γ_ih)`` and ``LN(W_hh h; γ_hh)`` before the biases, and ``h_t = o_t *
        tanh(LN(c_t; γ_c, β_c))``; gains and bias ``ln_*`` in ``params``.
        Equations: :mod:`rnnkit.reference.options`.
    proj_size : int, default 0, keyword-only
        P > 0: PyTorch's LSTMP, ``h_t = W_hr (o_t * tanh c_t)`` with
        ``weight_hr_l{k}`` (P, H); ``h``, ``y`` and the next layer's input are P
        (D*P) wide, ``c`` stays H.
    forget_bias : float, default 0, keyword-only
        Added to the forget-gate rows [H:2H] of every ``bias_ih`` at
        initialisation (Jozefowicz et al.); needs ``bias=True``.

    Attributes
    ----------
    params, grads : dict of str to ndarray
        Named views into one flat parameter / gradient buffer, PyTorch's names:
        ``weight_ih_l{k}`` (4H, I or D*H), ``weight_hh_l{k}`` (4H, H),
        ``bias_ih_l{k}`` (4H,), ``bias_hh_l{k}`` (4H,), ``_reverse`` for d = 1;
        the options' tensors (``weight_hr_l{k}``, ``ln_*``) after each layer
        and direction's four.
    options : rnnkit._options.Options
        The option values (frozen); ``state_size`` is S = ``proj_size`` or H.
    last_masks : rnnkit._options.Masks or None
        The masks of the last training forward (real time, per layer and
        direction); None after inference or without a rate.

    Shapes
    ------
    x : (T, B, I), or (B, T, I) with ``batch_first``
    (h0, c0), (h_n, c_n) : each (L*D, B, H), index ``l*D + d``
    y : (T, B, D*H), or (B, T, D*H) with ``batch_first``
    lengths : (B,) integers in [1, T]

    Methods
    -------
    forward(x, hx=None, lengths=None, train=True) -> (y, (h_n, c_n))
    backward(dy, dhx=None) -> (dx, (dh0, dc0)), adding into ``grads``
    stepper(batch_size=1, hx=None) -> single-step generator
    zero_grad(), parameters(), state_dict(), load_state_dict(state)

    Examples
    --------
    >>> import numpy as np, rnnkit as rk
    >>> lstm = rk.LSTM(8, 16, bidirectional=True, seed=0)
    >>> x = np.ones((5, 3, 8), dtype=np.float32)
    >>> y, (h_n, c_n) = lstm.forward(x)
    >>> dx, (dh0, dc0) = lstm.backward(np.ones_like(y))   # adds into lstm.grads
    >>> y.shape, h_n.shape, dx.shape
    ((5, 3, 32), (2, 3, 16), (5, 3, 8))
    >>> sorted(lstm.state_dict())[:2]
    ['bias_hh_l0', 'bias_hh_l0_reverse']

    With options (masks drawn from ``seed``; ``train=False`` draws none):

    >>> reg = rk.LSTM(8, 16, num_layers=2, dropout=0.2, recurrent_dropout=0.25,
    ...               zoneout=0.1, seed=0)
    >>> y, (h_n, c_n) = reg.forward(x)
    >>> m = reg.last_masks
    >>> m.cells[0].recurrent.shape, m.cells[1].zoneout_c.shape, m.dropout[0].shape
    ((3, 16), (5, 3, 16), (5, 3, 16))
    >>> y2, _ = reg.forward(x, masks=m)        # the same masks again: the same y
    >>> bool((y2 == y).all())
    True
    """


@_cells.register("gru")
class GRU(_Recurrent):
    """Gated recurrent unit, ``torch.nn.GRU``'s math, gate order, names and shapes.

    For each layer and direction, at every step t, with the gates in PyTorch's
    order ``r, z, n`` (rows ``[0:H]``, ``[H:2H]``, ``[2H:3H]``) and the reset gate
    applied after the recurrent product::

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h

    Parameters
    ----------
    input_size : int
        I, the features of each step of ``x``.
    hidden_size : int
        H, the features of the state ``h`` (and of each direction's output).
    num_layers : int, default 1
        L, recurrent layers stacked; layer k > 0 reads layer k-1's output (D*H).
    bias : bool, default True
        Use ``b_ih`` and ``b_hh``; without them the bias keys are absent.
    batch_first : bool, default False
        ``x`` and ``y`` are (B, T, ·) instead of (T, B, ·); states are not affected.
    bidirectional : bool, default False
        Add a reverse direction (D = 2) that runs each row from its last valid
        step to its first; outputs are concatenated on the last axis.
    dtype : {"float32", "float64"}, default "float32"
        Of the parameters, gradients, outputs and states.
    seed : int, np.random.Generator or None
        Source of the initial parameters, U(-1/sqrt(H), 1/sqrt(H)) drawn in
        PyTorch's storage order, and of the option masks (a stream of its own);
        None draws fresh entropy.
    nonlinearity : {"tanh"}, default "tanh"
        Accepted for a uniform constructor; the GRU's activations are fixed.
    dropout : float in [0, 1), default 0, keyword-only
        PyTorch's: in training, the output of every layer but the last is
        multiplied by a fresh Bernoulli(1-p)/(1-p) mask (T, B, D*S).
    recurrent_dropout : float in [0, 1), default 0, keyword-only
        Variational dropout (Gal & Ghahramani; Keras's name): one mask (B, S) per
        training forward, layer and direction on ``h_{t-1}`` where it enters
        ``W_hh``, the same at every step.
    zoneout : float in [0, 1), default 0, keyword-only
        Zoneout (Krueger et al.): in training each unit keeps its previous value
        with this probability, a fresh mask per step; at inference the
        expectation ``p h_{t-1} + (1-p) h~_t``.
    layer_norm : bool, default False, keyword-only
        Layer normalisation (Ba et al.; haste's LayerNormGRU): ``LN(W_ih x; γ_ih)`` and
        ``LN(W_hh h; γ_hh)`` before the biases; gains ``ln_weight_*``
        in ``params``. Equations: :mod:`rnnkit.reference.options`.

    Attributes
    ----------
    params, grads : dict of str to ndarray
        Named views into one flat parameter / gradient buffer, PyTorch's names:
        ``weight_ih_l{k}`` (3H, I or D*H), ``weight_hh_l{k}`` (3H, H),
        ``bias_ih_l{k}`` (3H,), ``bias_hh_l{k}`` (3H,), ``_reverse`` for d = 1;
        the options' tensors (``weight_hr_l{k}``, ``ln_*``) after each layer
        and direction's four.
    options : rnnkit._options.Options
        The option values (frozen); ``state_size`` is S = ``proj_size`` or H.
    last_masks : rnnkit._options.Masks or None
        The masks of the last training forward (real time, per layer and
        direction); None after inference or without a rate.

    Shapes
    ------
    x : (T, B, I), or (B, T, I) with ``batch_first``
    h0, h_n : (L*D, B, H), index ``l*D + d``
    y : (T, B, D*H), or (B, T, D*H) with ``batch_first``
    lengths : (B,) integers in [1, T]

    Methods
    -------
    forward(x, hx=None, lengths=None, train=True) -> (y, h_n)
    backward(dy, dhx=None) -> (dx, dh0), adding into ``grads``
    stepper(batch_size=1, hx=None) -> single-step generator
    zero_grad(), parameters(), state_dict(), load_state_dict(state)

    Examples
    --------
    >>> import numpy as np, rnnkit as rk
    >>> gru = rk.GRU(8, 16, batch_first=True, seed=0)
    >>> x = np.ones((3, 5, 8), dtype=np.float32)          # (B, T, I)
    >>> y, h_n = gru.forward(x, lengths=[5, 2, 4])
    >>> dx, dh0 = gru.backward(np.ones_like(y))
    >>> y.shape, h_n.shape, dx.shape
    ((3, 5, 16), (1, 3, 16), (3, 5, 8))
    """

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
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            bidirectional,
            dtype,
            seed,
            nonlinearity,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            zoneout=zoneout,
            layer_norm=layer_norm,
        )
