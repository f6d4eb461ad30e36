"""Recurrent layers: RNN, LSTM and GRU with PyTorch's math, names and shapes.

Each layer owns one flat parameter buffer and one flat gradient buffer with
named views (``params`` / ``grads``), runs its compute on a *backend* (the
compiled kernels in ``rnnkit._core`` by default, the NumPy reference for
``rnnkit.reference.*``), and follows a tiny protocol::

    y, h_n = layer.forward(x, h0, lengths=None, train=True)
    dx, dh0 = layer.backward(dy, dh_n)      # adds into layer.grads
    layer.zero_grad()

Shapes (PyTorch's): ``x`` is (T, B, I), or (B, T, I) with ``batch_first``;
``y`` is (T, B, D*H); states are (L*D, B, H) with index ``l*D + d``.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping

import numpy as np

_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
_NONLINEARITIES = ("tanh", "relu", "sigmoid")
_tls = threading.local()


def _scratch(nbytes: int, dtype: np.dtype) -> np.ndarray:
    """Per-thread scratch buffer, grown on demand and reused across calls."""
    buf = getattr(_tls, "scratch", None)
    if buf is None or buf.nbytes < nbytes:
        buf = np.empty(max(nbytes, 1 << 16) // 8 + 1, dtype=np.float64)
        _tls.scratch = buf
    n = nbytes // dtype.itemsize
    return buf.view(dtype)[:n]


def _as_float_array(name: str, value: Any, dtype: np.dtype) -> np.ndarray:
    """Checks the kind of ``value`` and returns it as a C-contiguous ``dtype`` array.

    Integer, boolean, complex and object arrays are rejected with ``TypeError``;
    any other floating dtype is converted to the layer's dtype.
    """
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind != "f":
        raise TypeError(
            f"{name} must be a floating-point array ({dtype.name}), got dtype {arr.dtype}"
        )
    return np.ascontiguousarray(arr, dtype=dtype)


def _check_shape(name: str, arr: np.ndarray, expected: tuple[int, ...]) -> None:
    if arr.shape != expected:
        raise ValueError(f"{name} must have shape {expected}, got {arr.shape}")


class _Params:
    """One flat parameter buffer and one flat gradient buffer, same layout, with
    named views (llm.c style): optimizers update everything in one pass. Shared by
    the recurrent layers and the blocks in ``rnnkit.modules``."""

    dtype: np.dtype
    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    _flat_params: np.ndarray
    _flat_grads: np.ndarray

    def _allocate(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Allocates both buffers for ``{name: shape}`` in storage order."""
        total = sum(int(np.prod(s)) for s in shapes.values())
        self._flat_params = np.zeros(total, dtype=self.dtype)
        self._flat_grads = np.zeros(total, dtype=self.dtype)
        self.params, self.grads = {}, {}
        offset = 0
        for name, shape in shapes.items():
            n = int(np.prod(shape))
            self.params[name] = self._flat_params[offset:offset + n].reshape(shape)
            self.grads[name] = self._flat_grads[offset:offset + n].reshape(shape)
            offset += n

    def zero_grad(self) -> None:
        self._flat_grads.fill(0)

    def parameters(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(parameter, gradient) pairs: one flat pair covering every tensor."""
        return [(self._flat_params, self._flat_grads)]

    def state_dict(self) -> dict[str, np.ndarray]:
        return {name: p.copy() for name, p in self.params.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copies ``state`` into the parameters; accepts array-likes and torch tensors.

        Every entry is checked before anything is written: missing or unexpected
        keys raise ``KeyError``, wrong shapes ``ValueError``, non-float values
        ``TypeError``. On error the parameters are unchanged.
        """
        missing = [k for k in self.params if k not in state]
        extra = [k for k in state if k not in self.params]
        if missing or extra:
            raise KeyError(
                f"state_dict does not match {type(self).__name__}: "
                f"missing keys {missing}, unexpected keys {extra}"
            )
        staged = {}
        for name, p in self.params.items():
            arr = _as_float_array(f"state_dict[{name!r}]", state[name], self.dtype)
            _check_shape(f"state_dict[{name!r}]", arr, p.shape)
            staged[name] = arr
        for name, arr in staged.items():
            self.params[name][...] = arr


class _Recurrent(_Params):
    """Stacked, optionally bidirectional recurrent layer (base of RNN, LSTM, GRU)."""

    cell: str = ""
    _backend: Any = None  # set below to the compiled backend; reference overrides

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
    ) -> None:
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size),
                        ("num_layers", num_layers)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        if nonlinearity not in _NONLINEARITIES:
            raise ValueError(
                f"nonlinearity must be one of {_NONLINEARITIES}, got {nonlinearity!r}"
            )
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if bidirectional else 1
        self.nonlinearity = nonlinearity
        self.gates = _GATES[self.cell]

        self._allocate(self._param_shapes())  # PyTorch's names, in its order
        self.reset_parameters(seed)
        self._ctx: Any = None  # what backward needs; set by a training forward
        self._reserve: np.ndarray | None = None  # kernel workspace kept for backward

    # ----------------------------------------------------------------- params
    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        G, H = self.gates, self.hidden_size
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else H * self.num_directions
            for suffix in self._suffixes(layer):
                shapes["weight_ih" + suffix] = (G * H, in_size)
                shapes["weight_hh" + suffix] = (G * H, H)
                if self.bias:
                    shapes["bias_ih" + suffix] = (G * H,)
                    shapes["bias_hh" + suffix] = (G * H,)
        return shapes

    def _suffixes(self, layer: int) -> list[str]:
        return [f"_l{layer}" + ("_reverse" if d else "") for d in range(self.num_directions)]

    def _weight_list(self, store: dict[str, np.ndarray]) -> list[np.ndarray | None]:
        """[W_ih, W_hh, b_ih, b_hh] per (layer, direction), biases None without bias."""
        out: list[np.ndarray | None] = []
        for layer in range(self.num_layers):
            for s in self._suffixes(layer):
                out += [store["weight_ih" + s], store["weight_hh" + s],
                        store.get("bias_ih" + s), store.get("bias_hh" + s)]
        return out

    def reset_parameters(self, seed: int | np.random.Generator | None = None) -> None:
        """Uniform(-1/sqrt(H), 1/sqrt(H)) for every parameter, in PyTorch's order."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        k = 1.0 / np.sqrt(self.hidden_size)
        for name, p in self.params.items():
            p[...] = rng.uniform(-k, k, size=p.shape)

    # ---------------------------------------------------------------- compute
    def _check_forward(self, x: Any, hx: Any, lengths: Any):
        x = _as_float_array("x", x, self.dtype)
        if x.ndim != 3:
            layout = "(B, T, I)" if self.batch_first else "(T, B, I)"
            raise ValueError(f"x must be 3-D {layout}, got ndim {x.ndim} shape {x.shape}")
        if self.batch_first:
            x = np.ascontiguousarray(x.transpose(1, 0, 2))
        T, B, I = x.shape
        if I != self.input_size:
            raise ValueError(f"x must have input size {self.input_size} in its last axis, got {I}")
        if T == 0 or B == 0:
            raise ValueError(f"x must have T >= 1 and B >= 1, got T={T}, B={B}")
        state_shape = (self.num_layers * self.num_directions, B, self.hidden_size)
        h0, c0 = self._split_state("h0", hx)
        h0 = self._check_state("h0", h0, state_shape)
        c0 = self._check_state("c0", c0, state_shape) if self.cell == "lstm" else None
        if lengths is not None:
            lengths = self._check_lengths(lengths, T, B)
        return x, h0, c0, lengths

    def _split_state(self, name: str, hx: Any) -> tuple[Any, Any]:
        if self.cell != "lstm":
            return hx, None
        if hx is None:
            return None, None
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"LSTM state must be a tuple (h, c) or None, got {type(hx).__name__}")
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

    def forward(self, x: Any, hx: Any = None, lengths: Any = None, train: bool = True):
        """Runs the layer over a sequence.

        Parameters
        ----------
        x : array, (T, B, I) or (B, T, I) with ``batch_first``
            Input; another float dtype is converted to the layer's dtype.
        hx : initial state (L*D, B, H), for LSTM a tuple ``(h0, c0)``; None = zeros.
        lengths : optional int array (B,), 1 <= lengths[b] <= T, any order.
            Steps past a sequence's end leave its state unchanged and output zeros.
        train : keep what ``backward`` needs (True) or run the inference path.

        Returns
        -------
        y : (T, B, D*H) (or (B, T, D*H)), and ``h_n`` (L*D, B, H) — for LSTM ``(h_n, c_n)``.
        """
        x, h0, c0, lengths = self._check_forward(x, hx, lengths)
        self._ctx = None
        y, hn, cn, ctx = self._backend.forward(self, x, h0, c0, lengths, bool(train))
        if train:
            self._ctx = ctx
        if self.batch_first:
            y = y.transpose(1, 0, 2)
        return (y, (hn, cn)) if self.cell == "lstm" else (y, hn)

    __call__ = forward

    def backward(self, dy: Any, dhx: Any = None):
        """Backpropagation through time for the last training ``forward``.

        Adds parameter gradients into ``self.grads``; returns ``dx`` (shaped like
        ``x``) and ``dh0`` (for LSTM ``(dh0, dc0)``). ``dy`` or ``dhx`` may be None
        (zeros). Each training forward allows exactly one backward.
        """
        ctx = self._ctx
        if ctx is None:
            raise RuntimeError(
                "backward() needs a preceding forward(..., train=True); none is pending "
                "(no forward yet, an inference forward, or backward already called)"
            )
        T, B = ctx.T, ctx.B
        y_shape = (B, T, self.num_directions * self.hidden_size) if self.batch_first \
            else (T, B, self.num_directions * self.hidden_size)
        if dy is None:
            dy = np.zeros((T, B, y_shape[2]), dtype=self.dtype)
        else:
            dy = _as_float_array("dy", dy, self.dtype)
            _check_shape("dy", dy, y_shape)
            if self.batch_first:
                dy = np.ascontiguousarray(dy.transpose(1, 0, 2))
        state_shape = (self.num_layers * self.num_directions, B, self.hidden_size)
        dhn, dcn = self._split_state("dh_n", dhx)
        dhn = self._check_state("dh_n", dhn, state_shape)
        dcn = self._check_state("dc_n", dcn, state_shape) if self.cell == "lstm" else None
        self._ctx = None
        dx, dh0, dc0 = self._backend.backward(self, ctx, dy, dhn, dcn)
        if self.batch_first:
            dx = dx.transpose(1, 0, 2)
        return (dx, (dh0, dc0)) if self.cell == "lstm" else (dx, dh0)

    def stepper(self, batch_size: int = 1, hx: Any = None) -> Any:
        """A generator of single steps: ``y = st.step(x)`` with x (B, I) -> y (B, H).

        The weights are packed once, when the stepper is made (make a new one after
        changing them), and the state (initially ``hx`` or zeros) is carried inside
        between calls, so a step costs one fused product per layer and nothing else.
        ``st.get_state()`` returns ``(h, c)`` (c None except LSTM), shapes (L, B, H);
        ``st.set_state(h, c=None)`` replaces it. Unidirectional layers only.

        Examples
        --------
        >>> st = lstm.stepper(batch_size=1)
        >>> for _ in range(100):
        ...     h = st.step(x)          # (1, H): the top layer's new state
        """
        if self.bidirectional:
            raise ValueError("stepper() needs a unidirectional layer, got bidirectional=True")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        make = getattr(self._backend, "stepper", None)
        st = make(self, int(batch_size)) if make else _PyStepper(self, int(batch_size))
        if hx is not None:
            shape = (self.num_layers, int(batch_size), self.hidden_size)
            h0, c0 = self._split_state("hx", hx)
            h0 = self._check_state("h0", h0, shape)
            c0 = self._check_state("c0", c0, shape) if self.cell == "lstm" else None
            st.set_state(h0, c0)
        return st

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.cell == "rnn":
            s += f", nonlinearity={self.nonlinearity!r}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s + f", dtype={self.dtype.name}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class _PyStepper:
    """Single steps through ``forward`` (for backends without a fused stepper)."""

    def __init__(self, layer: _Recurrent, batch_size: int) -> None:
        self._layer, self.batch_size = layer, batch_size
        shape = (layer.num_layers, batch_size, layer.hidden_size)
        self._h = np.zeros(shape, layer.dtype)
        self._c = np.zeros(shape, layer.dtype) if layer.cell == "lstm" else None

    def step(self, x: Any) -> np.ndarray:
        layer = self._layer
        x = _as_float_array("x", x, layer.dtype)
        _check_shape("x", x, (self.batch_size, layer.input_size))
        hx = (self._h, self._c) if layer.cell == "lstm" else self._h
        xs = x[:, None] if layer.batch_first else x[None]
        y, state = layer.forward(xs, hx, train=False)
        self._h, self._c = state if layer.cell == "lstm" else (state, None)
        return self._h[-1].copy()

    def get_state(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self._h.copy(), None if self._c is None else self._c.copy()

    def set_state(self, h: np.ndarray, c: np.ndarray | None = None) -> None:
        self._h = np.array(h, dtype=self._layer.dtype)
        if self._c is not None:
            self._c = np.array(c, dtype=self._layer.dtype)


def _core_backend() -> Any:
    from ._backend import CoreBackend

    return CoreBackend()


_Recurrent._backend = _core_backend()


class RNN(_Recurrent):
    """Elman RNN: ``h' = σ(W_ih x + b_ih + W_hh h + b_hh)``, σ ∈ {tanh, relu, sigmoid}."""

    cell = "rnn"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 bidirectional: bool = False, dtype: str | np.dtype = "float32",
                 seed: int | np.random.Generator | None = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first,
                         bidirectional, dtype, seed, nonlinearity)


class LSTM(_Recurrent):
    """LSTM with PyTorch's gate order ``i, f, g, o``; state is a tuple ``(h, c)``."""

    cell = "lstm"


class GRU(_Recurrent):
    """GRU with PyTorch's gate order ``r, z, n``:
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``."""

    cell = "gru"
