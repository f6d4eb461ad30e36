"""Models: layers composed so that ``backward`` is written once, here.

:class:`Sequential` chains modules (``Embedding``, ``Linear``, ``Dropout`` and the
recurrent layers) into the common RNN shapes, chosen by two arguments:

==================  ======================  =========================================
shape               arguments               output
==================  ======================  =========================================
many-to-many        (defaults)              (B, T, O): every step
many-to-one         ``output="last"``       (B, O): the top recurrent layer's state
                                            at each row's last valid step
                                            (``lengths``), both directions
one-to-many         ``input="vector"``,     (B, T, O): the input vector (after the
                    ``steps=T``             layers before the first recurrent one)
                                            is fed at each of the T steps
one-to-one          ``input="vector"``,     (B, O)
                    ``output="last"``,
                    ``steps=1``
==================  ======================  =========================================

:class:`EncoderDecoder` joins two ``Sequential`` models: the encoder's final
state starts the decoder (teacher forcing in training, :meth:`greedy_decode`
for inference).

Protocol (the layers' one)::

    out = model.forward(x, lengths=None, train=True)   # batch-first (B, T, ...)
    dx = model.backward(dout)                          # adds into every layer's grads
    model.zero_grad(); model.parameters()              # one flat (param, grad) pair

Escape hatch: ``model.layers`` are ordinary layers; a custom loop may call each
``forward`` / ``backward`` itself and still use one optimizer on ``model``.

Models are batch-first at their boundary (inputs ``(B, T, ...)`` or ``(B, ...)``,
token ids ``(B, T)``); inside, sequences are time-major ``(T, B, ...)`` as the
kernels want. All parameters of a model live in one flat buffer (and the
gradients in a second one): the model re-points each layer's named views into it,
so an optimizer update or a gradient-norm is one pass over all parameters.
Build optimizers *after* composing: composing moves the layers' parameters into
the model's buffer (an optimizer made earlier would update the old one), and a
layer belongs to one model at a time.

Shapes
------
B batch, T steps, I input features, H hidden, D directions, O outputs, V vocab.
``lengths`` (B,) ints in [1, T]; states as the layers have them, (L*D, B, H).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import _serial
from ._checks import integer
from ._params import ParamViews, _as_float_array, _check_shape, _Params
from ._serial import (
    model_from_config,
    model_param_shapes,
    module_config,
    module_from_config,
    module_param_shapes,
)
from .io import save as _save
from .layers import _Recurrent
from .modules import Dropout, Embedding, Linear

Recurrent = _Recurrent
"""The base class of every recurrent layer (``isinstance(m, Recurrent)``)."""


def _short(m: Any) -> str:
    """A layer's repr without the default dtype (for tables)."""
    return repr(m).replace(", dtype=float32", "").replace(", dtype='float32'", "")


def _sequential_config(cfg: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    layers = cfg.get("layers")
    if not isinstance(layers, list):
        raise TypeError("Sequential config must have a list 'layers'")
    for i, c in enumerate(layers):
        if not isinstance(c, Mapping):
            raise TypeError(f"layer {i} config must be an object")
    return layers


def _parts_config(cfg: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    parts = cfg.get("encoder"), cfg.get("decoder")
    for name, part in zip(("encoder", "decoder"), parts):
        if not isinstance(part, Mapping):
            raise TypeError(f"EncoderDecoder config must have an object {name!r}")
    return parts  # type: ignore[return-value]


# -------------------------------------------------------------- flat buffers
def _offset(view: np.ndarray, base: np.ndarray) -> int:
    """Element offset of a C-contiguous ``view`` inside the 1-D ``base``."""
    off, rem = divmod(view.ctypes.data - base.ctypes.data, base.itemsize)
    if rem or off < 0 or off + view.size > base.size or not view.flags.c_contiguous:
        raise RuntimeError(
            "parameter view is not a contiguous slice of its flat buffer"
        )
    return off


def _adopt(m: Any, P: np.ndarray, G: np.ndarray) -> None:
    """Moves module ``m``'s flat buffers into ``P`` / ``G`` (same size), copying the
    values and re-pointing its named views ``params`` / ``grads``."""
    old_p, old_g = m._flat_params, m._flat_grads
    P[...] = old_p
    G[...] = old_g
    for views, old, new in ((m.params, old_p, P), (m.grads, old_g, G)):
        offsets = {name: _offset(v, old) for name, v in views.items()}
        for name, v in list(views.items()):
            off = offsets[name]
            dict.__setitem__(views, name, new[off : off + v.size].reshape(v.shape))
    m._flat_params, m._flat_grads = P, G


def _leaves(m: Any) -> list[Any]:
    return m._leaves() if isinstance(m, Model) else [m]


class Model(_Params):
    """Base of :class:`Sequential` and :class:`EncoderDecoder`.

    Built on the parameter base every module shares (:class:`rnnkit._params._Params`):
    one flat parameter buffer and one flat gradient buffer for every layer of the
    model, with named views ``params`` / ``grads`` whose keys are
    ``"<module>.<param>"`` (``"1.weight_ih_l0"``, ``"encoder.0.weight"``), so
    :meth:`parameters`, :meth:`zero_grad`, :meth:`state_dict` and
    :meth:`load_state_dict` are the layers' own. Adds ``config`` (the architecture
    as JSON) and :meth:`save`.

    Attributes
    ----------
    vocab : dict of str to list of str
        Named vocabularies saved with the model.
    meta : dict
        JSON-serialisable metadata saved with the model (e.g. normalisation).
    optimizer : optimizer or None
        The optimizer :func:`rnnkit.fit` or :func:`rnnkit.load` attached;
        :meth:`save` stores its state too.
    dtype : np.dtype
        The dtype of every layer.
    """

    vocab: dict[str, list[str]]
    meta: dict[str, Any]
    optimizer: Any

    def _children(self) -> list[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _leaves(self) -> list[Any]:
        return [leaf for c in self._children() for leaf in _leaves(c)]

    def _init_common(self) -> None:
        self.vocab, self.meta, self.optimizer = {}, {}, None
        leaves = self._leaves()
        ids = [id(m) for m in leaves]
        if len(set(ids)) != len(ids):
            raise ValueError(
                "a module appears twice in the model; share it explicitly "
                "in a custom loop instead"
            )
        # A layer's parameters live in its model's flat buffer, so a layer (or a
        # model) can belong to one model at a time: a second one would re-point
        # its views and leave the first model's buffer stale.
        for c in self._children():
            ref = getattr(c, "_rk_owner", None)
            owner = ref() if ref is not None else None
            if owner is not None and owner is not self:
                raise ValueError(
                    f"{type(c).__name__} already belongs to another model; build a new "
                    "layer (or copy it with load_state_dict) to use it in a second one"
                )
        for c in self._children():
            c._rk_owner = weakref.ref(self)
        dtypes = {m.dtype for m in leaves if hasattr(m, "dtype")}
        if len(dtypes) > 1:
            raise TypeError(
                f"all layers of a model must have one dtype, got "
                f"{sorted(d.name for d in dtypes)}"
            )
        self.dtype = dtypes.pop() if dtypes else np.dtype(np.float32)
        self._bind()

    def __setstate__(self, state: dict[str, Any]) -> None:
        # pickle / deepcopy copy the model's flat buffers and each layer's views
        # apart: point the layers back into the model's buffers (the ones an
        # optimizer copied with the model holds), and own them again
        super().__setstate__(state)
        P, G = self.__dict__.get("_flat_params"), self.__dict__.get("_flat_grads")
        if P is not None and G is not None:
            self._bind(P, G)
            for c in self._children():
                c._rk_owner = weakref.ref(self)

    def _bind(self, P: np.ndarray | None = None, G: np.ndarray | None = None) -> None:
        """One flat parameter buffer and one gradient buffer for every leaf (new
        ones, or ``P`` / ``G`` of the right size, which take the leaves' values)."""
        owners = [m for m in self._leaves() if getattr(m, "params", None)]
        total = sum(m._flat_params.size for m in owners)
        if P is None or G is None or P.size != total or G.size != total:
            P = np.empty(total, dtype=self.dtype)
            G = np.empty(total, dtype=self.dtype)
        off = 0
        spans: dict[int, tuple[int, int]] = {}
        for m in owners:
            n = m._flat_params.size
            _adopt(m, P[off : off + n], G[off : off + n])
            spans[id(m)] = (off, off + n)
            off += n
        self._flat_params, self._flat_grads = P, G
        # nested models (EncoderDecoder's parts) see their own slice
        for c in self._children():
            if isinstance(c, Model):
                span = [spans[id(m)] for m in c._leaves() if id(m) in spans]
                a, b = (span[0][0], span[-1][1]) if span else (0, 0)
                c._flat_params, c._flat_grads = P[a:b], G[a:b]
        self._collect_views()

    def _collect_views(self) -> None:
        """``params`` / ``grads``: the layers' views, keyed ``"<module>.<param>"``."""
        modules = self.named_modules()
        self.params = ParamViews(
            {f"{k}.{n}": v for k, m in modules for n, v in m.params.items()}
        )
        self.grads = ParamViews(
            {f"{k}.{n}": v for k, m in modules for n, v in m.grads.items()}, "grads"
        )
        for c in self._children():
            if isinstance(c, Model):
                c._collect_views()

    @property
    def num_parameters(self) -> int:
        """The number of scalar parameters of the model."""
        return int(self._flat_params.size)

    def named_modules(self) -> list[tuple[str, Any]]:  # pragma: no cover - abstract
        """``(name, module)`` for every leaf module, names as in ``state_dict`` keys."""
        raise NotImplementedError

    def _owners(self) -> list[tuple[str, Any]]:
        return [(f"{k}.", m) for k, m in self.named_modules()]

    def config(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """The architecture as JSON: ``{"type": ..., ...}`` (checkpoints store it)."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Model:  # pragma: no cover
        """A model of this type (fresh parameters) from :meth:`config` output."""
        raise NotImplementedError

    @classmethod
    def config_param_shapes(
        cls, cfg: Mapping[str, Any]
    ) -> dict[str, tuple[int, ...]]:  # pragma: no cover - abstract
        """``state_dict`` keys and shapes the config ``cfg`` implies (no allocation)."""
        raise NotImplementedError

    def save(self, path: Any, optimizer: Any = None) -> None:
        """Writes a checkpoint (see :mod:`rnnkit.io`).

        Parameters
        ----------
        path : str or os.PathLike
            The file to write; written atomically (complete or untouched).
        optimizer : optimizer or None
            Whose state to store with the weights; None means ``self.optimizer``.

        Examples
        --------
        >>> import os, tempfile, rnnkit as rk
        >>> model = rk.Sequential(rk.GRU(3, 4, seed=0), rk.Linear(4, 2, seed=1))
        >>> path = os.path.join(tempfile.mkdtemp(), "m.npz")
        >>> model.save(path)
        >>> sorted(rk.load(path).state_dict()) == sorted(model.state_dict())
        True
        """
        _save(path, self, optimizer=optimizer)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)  # type: ignore[attr-defined]


def _top_state(m: Any, hn: Any) -> np.ndarray:
    """(B, D*H): the top layer's final state of both directions (h for LSTM)."""
    h = hn[0] if m.spec.has_cell_state else hn
    D, top = m.num_directions, (m.num_layers - 1) * m.num_directions
    return h[top] if D == 1 else np.concatenate([h[top + d] for d in range(D)], axis=-1)


@_serial.register_model
class Sequential(Model):
    """Modules applied in order, with the RNN shape chosen by ``input`` / ``output``.

    Parameters
    ----------
    *layers : modules: ``Embedding`` (first only), ``Linear``, ``Dropout``,
        ``RNN``/``LSTM``/``GRU`` (from :mod:`rnnkit` or :mod:`rnnkit.reference`).
    input : ``"sequence"`` (x is (B, T, I) or token ids (B, T)) or ``"vector"``
        (x is (B, I) or ids (B,), fed at every step of the first recurrent layer).
    output : ``"sequence"`` (every step) or ``"last"`` (the last recurrent layer's
        final state, i.e. its output at each row's last valid step; with
        ``bidirectional`` the forward and reverse final states, concatenated).
    steps : default number of steps for ``input="vector"``.

    Shapes
    ------
    sequence in: x (B, T, I) float or (B, T) ids, lengths (B,)
    vector in: x (B, I) float or (B,) ids
    -> (B, T, O) for ``output="sequence"``, (B, O) for ``output="last"``.

    Examples
    --------
    >>> import rnnkit as rk
    >>> model = rk.Sequential(rk.Embedding(20, 8, seed=0), rk.LSTM(8, 16, seed=1),
    ...                       rk.Linear(16, 2, seed=2), output="last")
    >>> ids, lengths = np.ones((4, 7), dtype=np.int64), np.array([7, 3, 5, 1])
    >>> logits = model.forward(ids, lengths=lengths)            # (4, 2)
    >>> loss, dlogits = rk.losses.cross_entropy(logits, np.array([0, 1, 1, 0]))
    >>> _ = model.backward(dlogits)                             # fills the grads
    """

    def __init__(
        self,
        *layers: Any,
        input: str = "sequence",
        output: str = "sequence",
        steps: int | None = None,
    ) -> None:
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        if not layers:
            raise ValueError("Sequential needs at least one layer")
        if input not in ("sequence", "vector"):
            raise ValueError(f"input must be 'sequence' or 'vector', got {input!r}")
        if output not in ("sequence", "last"):
            raise ValueError(f"output must be 'sequence' or 'last', got {output!r}")
        for i, m in enumerate(layers):
            if not isinstance(m, (Recurrent, Linear, Embedding, Dropout)):
                raise TypeError(
                    f"layer {i} must be an rnnkit module, got {type(m).__name__}"
                )
            if isinstance(m, Embedding) and i != 0:
                raise ValueError(f"Embedding must be the first layer, found at {i}")
        self.layers = list(layers)
        self._rec = [i for i, m in enumerate(self.layers) if isinstance(m, Recurrent)]
        if output == "last" and not self._rec:
            raise ValueError("output='last' needs a recurrent layer")
        if steps is not None:
            steps = integer("steps", steps, low=1)
        self.input, self.output, self.steps = input, output, steps
        self._init_common()
        self.final_state: list[Any] = []
        self.initial_state_grad: list[Any] = []
        self._trace: dict[str, Any] | None = None

    def _children(self) -> list[Any]:
        return self.layers

    def named_modules(self) -> list[tuple[str, Any]]:
        """``(str(i), layer)`` for every layer, in order."""
        return [(str(i), m) for i, m in enumerate(self.layers)]

    def config(self) -> dict[str, Any]:
        """``{"type": "Sequential", "layers": [...], "input", "output", "steps"}``."""
        return {
            "type": "Sequential",
            "layers": [module_config(m) for m in self.layers],
            "input": self.input,
            "output": self.output,
            "steps": self.steps,
            **({"frozen": self.frozen} if self.frozen else {}),
        }

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Sequential:
        """A Sequential (fresh parameters) from :meth:`config` output."""
        model = cls(
            *[module_from_config(c) for c in _sequential_config(cfg)],
            input=cfg.get("input", "sequence"),
            output=cfg.get("output", "sequence"),
            steps=cfg.get("steps"),
        )
        frozen = cfg.get("frozen", [])
        if not isinstance(frozen, list) or not all(isinstance(n, str) for n in frozen):
            raise TypeError("Sequential config 'frozen' must be a list of names")
        model.freeze(*frozen) if frozen else None
        return model

    @classmethod
    def config_param_shapes(cls, cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        """``{"<i>.<param>": shape}`` for :meth:`config` output (no allocation)."""
        return {
            f"{i}.{name}": shape
            for i, c in enumerate(_sequential_config(cfg))
            for name, shape in module_param_shapes(c).items()
        }

    def padding_lengths(self, x: Any) -> np.ndarray | None:
        """``lengths`` derived from the padding id when the first layer is an
        ``Embedding(mask_zero=True)`` (see :meth:`rnnkit.Embedding.lengths`), else
        None. :meth:`forward`, :meth:`predict` and :func:`rnnkit.fit` call it
        whenever no ``lengths`` are given."""
        first = self.layers[0]
        if self.input != "sequence" or not getattr(first, "mask_zero", False):
            return None
        return first.lengths(x)

    @property
    def recurrent_layers(self) -> list[Any]:
        """The recurrent layers, in order."""
        return [self.layers[i] for i in self._rec]

    def forward(
        self,
        x: Any,
        lengths: Any = None,
        state: Sequence[Any] | None = None,
        steps: int | None = None,
        train: bool = True,
    ) -> np.ndarray:
        """Runs every layer; keeps what :meth:`backward` needs when ``train``.

        Parameters
        ----------
        x : array-like, batch-first
            (B, T, I) floats or (B, T) token ids for ``input="sequence"``; (B, I)
            or (B,) for ``input="vector"``.
        lengths : int array-like (B,), optional
            Valid steps per row (sequence input only).
        state : list, optional
            One initial state per recurrent layer (None entries mean zeros).
        steps : int, optional
            Number of steps for ``input="vector"`` (default ``self.steps``).
        train : bool
            Training (keep caches, dropout on) or inference.

        Returns
        -------
        ndarray
            (B, T, O) for ``output="sequence"``, (B, O) for ``output="last"``.

        After the call ``self.final_state`` holds each recurrent layer's final
        state, ready to pass as ``state`` to continue the sequence.

        Examples
        --------
        >>> import numpy as np, rnnkit as rk
        >>> model = rk.Sequential(rk.LSTM(3, 4, seed=0), rk.Linear(4, 2, seed=1))
        >>> x = np.ones((2, 6, 3), dtype=np.float32)
        >>> a = model.forward(x[:, :4], train=False)
        >>> b = model.forward(x[:, 4:], state=model.final_state, train=False)
        >>> bool(np.allclose(b, model.forward(x, train=False)[:, 4:], atol=1e-6))
        True
        """
        seq = self.input == "sequence"
        h = x if isinstance(x, np.ndarray) else np.asarray(x)
        if seq:
            if h.ndim < 2:
                raise ValueError(
                    f"x must be batch-first (B, T, ...), got shape {h.shape}"
                )
            if lengths is None:
                lengths = self.padding_lengths(h)
            h = h.swapaxes(0, 1)  # time-major (T, B, ...)
        elif lengths is not None:
            raise ValueError("lengths applies to input='sequence' only")
        T = steps if steps is not None else self.steps
        if state is not None and len(state) != len(self._rec):
            raise ValueError(
                f"state must have {len(self._rec)} entries (one per "
                f"recurrent layer), got {len(state)}"
            )
        final: list[Any] = []
        expand_at = None
        for i, m in enumerate(self.layers):
            if isinstance(m, Recurrent):
                k = len(final)
                if not seq:
                    if T is None:
                        raise ValueError(
                            "input='vector' needs steps (argument or "
                            "Sequential(steps=...))"
                        )
                    h = np.broadcast_to(h, (T,) + h.shape)  # the vector at every step
                    seq, expand_at = True, i
                hx = None if state is None else state[k]
                try:
                    y, hn = m.forward(
                        h.swapaxes(0, 1) if m.batch_first else h,
                        hx,
                        lengths=lengths,
                        train=train,
                    )
                except ValueError as e:  # name the caller's (batch-first) shape
                    raise ValueError(
                        f"layer {i} {m!r}: {e}; the Sequential's x has shape "
                        f"{np.shape(x)}, batch-first (B, T, ...) as models take it"
                    ) from None
                final.append(hn)
                if i == self._rec[-1] and self.output == "last":
                    h, seq = _top_state(m, hn), False
                else:
                    h = y.swapaxes(0, 1) if m.batch_first else y
            else:
                h = m.forward(h, train=train)
        self.final_state = final
        out = np.ascontiguousarray(h.swapaxes(0, 1)) if seq else np.asarray(h)
        self._trace = (
            {
                "expand_at": expand_at,
                "seq_out": seq,
                "out_shape": out.shape,
                "out_dtype": out.dtype,
            }
            if train
            else None
        )
        return out

    def backward(self, dout: Any, dstate: Sequence[Any] | None = None) -> Any:
        """Backpropagates through every layer of the last training forward.

        Adds into every layer's ``grads`` (one flat buffer, ``self.grads``).

        Parameters
        ----------
        dout : array-like shaped like the output, or None
            Gradient of the loss w.r.t. the output; None means zeros.
        dstate : list, optional
            One gradient per recurrent layer's final state.

        Returns
        -------
        ndarray or None
            ``dx``, batch-first like ``x``; None for token ids. The gradients
            w.r.t. the initial states are left in ``self.initial_state_grad``.
        """
        tr = self._trace
        if tr is None:
            raise RuntimeError("backward() needs a preceding forward(..., train=True)")
        self._trace = None
        if dout is None:
            d = np.zeros(tr["out_shape"], dtype=tr["out_dtype"])
        else:
            d = _as_float_array("dout", dout, self.dtype)
            _check_shape("dout", d, tr["out_shape"])
        if tr["seq_out"]:
            d = d.swapaxes(0, 1)
        if dstate is not None and len(dstate) != len(self._rec):
            raise ValueError(
                f"dstate must have {len(self._rec)} entries, got {len(dstate)}"
            )
        dinit: list[Any] = [None] * len(self._rec)
        k = len(self._rec)
        for i in reversed(range(len(self.layers))):
            m = self.layers[i]
            if isinstance(m, Recurrent):
                k -= 1
                dhx = None if dstate is None else dstate[k]
                if i == self._rec[-1] and self.output == "last":
                    dhx, dy = self._dstate_from_top(m, d, dhx), None
                else:
                    dy = d.swapaxes(0, 1) if m.batch_first else d
                dx, dinit[k] = m.backward(dy, dhx)
                d = dx.swapaxes(0, 1) if m.batch_first else dx
                if i == tr["expand_at"]:
                    d = d.sum(axis=0)  # the vector was fed at every step
            else:
                d = m.backward(d)
        self.initial_state_grad = dinit
        if d is None:
            return None
        return d.swapaxes(0, 1) if self.input == "sequence" else d

    def _dstate_from_top(self, m: Any, d: np.ndarray, dhx: Any) -> Any:
        """Gradient w.r.t. the layer's final state from that of its top state."""
        L, D, H = m.num_layers, m.num_directions, m.state_size
        B = d.shape[0]
        lstm = m.spec.has_cell_state
        given = (dhx[0] if lstm else dhx) if dhx is not None else None
        dh = np.zeros((L * D, B, H), dtype=self.dtype)
        if given is not None:
            dh += given
        top = (L - 1) * D
        for j in range(D):
            dh[top + j] += d[:, j * H : (j + 1) * H]
        if lstm:
            return (dh, None if dhx is None else dhx[1])
        return dh

    def predict(
        self, x: Any, lengths: Any = None, batch_size: int = 256, **kw: Any
    ) -> np.ndarray:
        """Inference forward in batches of ``batch_size`` rows; outputs concatenated.

        Parameters
        ----------
        x, lengths : as for :meth:`forward`
            Each batch is trimmed to its longest row; sequence outputs are padded
            back with zeros to ``x``'s T.
        batch_size : int, default 256
            Rows per forward.
        **kw
            Passed to :meth:`forward` (``state``, ``steps``).

        Returns
        -------
        ndarray
            The outputs of every row, as :meth:`forward` would give them.

        Examples
        --------
        >>> import numpy as np, rnnkit as rk
        >>> model = rk.Sequential(rk.GRU(3, 4, seed=0), output="last")
        >>> model.predict(np.ones((10, 5, 3)), batch_size=4).shape
        (10, 4)
        """
        x = np.asarray(x)
        if lengths is None:
            lengths = self.padding_lengths(x)
        outs = []
        for a in range(0, x.shape[0], batch_size):
            lb = None if lengths is None else np.asarray(lengths)[a : a + batch_size]
            xb = x[a : a + batch_size]
            if lb is not None and self.input == "sequence":
                xb = xb[:, : int(lb.max())]  # trim padding past the longest row
            out = self.forward(xb, lengths=lb, train=False, **kw)
            if (
                self.output == "sequence"
                and lb is not None
                and out.ndim >= 2
                and out.shape[1] < x.shape[1]
            ):
                pad = np.zeros(
                    (out.shape[0], x.shape[1] - out.shape[1]) + out.shape[2:],
                    dtype=out.dtype,
                )
                out = np.concatenate([out, pad], axis=1)
            outs.append(out)
        return np.concatenate(outs, axis=0)

    def predict_proba(
        self,
        x: Any,
        lengths: Any = None,
        batch_size: int = 256,
        activation: str = "auto",
        **kw: Any,
    ) -> np.ndarray:
        """:meth:`predict`, then probabilities: softmax over the last axis, or a
        sigmoid for binary logits.

        Parameters
        ----------
        x, lengths, batch_size, **kw : as for :meth:`predict`.
        activation : {"auto", "softmax", "sigmoid"}
            ``"auto"`` uses the loss :func:`rnnkit.fit` trained with
            (``meta["loss"]``: a sigmoid after ``"bce_with_logits"``, a softmax
            after ``"cross_entropy"``); without one, a softmax when the last axis
            has more than one entry, else a sigmoid.

        Returns
        -------
        ndarray shaped like :meth:`predict`'s output.

        Examples
        --------
        >>> import numpy as np, rnnkit as rk
        >>> model = rk.Sequential(rk.GRU(3, 4, seed=0), rk.Linear(4, 5, seed=1),
        ...                       output="last")
        >>> p = model.predict_proba(np.ones((2, 6, 3)))
        >>> p.shape, np.allclose(p.sum(axis=-1), 1.0)
        ((2, 5), True)
        """
        from .losses import sigmoid, softmax

        out = self.predict(x, lengths=lengths, batch_size=batch_size, **kw)
        if activation == "auto":
            loss = self.meta.get("loss")
            if loss in ("bce_with_logits", "binary_cross_entropy_with_logits"):
                activation = "sigmoid"
            elif loss == "cross_entropy" or out.shape[-1] > 1:
                activation = "softmax"
            else:
                activation = "sigmoid"
        if activation == "softmax":
            return softmax(out)
        if activation == "sigmoid":
            return sigmoid(out)
        raise ValueError(
            f"activation must be 'auto', 'softmax' or 'sigmoid', got {activation!r}"
        )

    def summary(self, print_fn: Any = print) -> str:
        """Keras's table: each layer, its output shape and parameter count, then
        the totals (trainable and frozen).

        Output shapes are batch-first, ``B`` and ``T`` standing for the batch and
        the steps. Returns the table and passes it to ``print_fn`` (None: only
        return it).

        Examples
        --------
        >>> import rnnkit as rk
        >>> model = rk.Sequential(rk.Embedding(20, 8, seed=0), rk.LSTM(8, 16, seed=1),
        ...                       rk.Linear(16, 2, seed=2), output="last")
        >>> print(model.summary(print_fn=None))      # doctest: +NORMALIZE_WHITESPACE
        Sequential(input='sequence', output='last')
        layer                           output shape         params
        ---------------------------------------------------------------
        0  Embedding(20, 8)             (B, T, 8)               160
        1  LSTM(8, 16)                  (B, 16)               1,664
        2  Linear(16, 2)                (B, 2)                   34
        ---------------------------------------------------------------
        total 1,858 parameters (trainable 1,858, frozen 0), float32
        """
        rows = []
        seq = self.input == "sequence"
        feat: Any = "I"
        for i, m in enumerate(self.layers):
            if isinstance(m, Embedding):
                feat = m.embedding_dim
            elif isinstance(m, Linear):
                feat = m.out_features
            elif isinstance(m, Recurrent):
                feat = m.state_size * m.num_directions
                seq = not (i == self._rec[-1] and self.output == "last")
            shape = f"(B, T, {feat})" if seq else f"(B, {feat})"
            n = sum(int(v.size) for v in getattr(m, "params", {}).values())
            frozen = sum(int(m.params[k].size) for k in getattr(m, "_frozen", ()))
            name = _short(m)
            mark = (
                " (frozen)"
                if n and frozen == n
                else (" (part frozen)" if frozen else "")
            )
            rows.append((f"{i:<3}{name}{mark}", shape, n))
        total = self.num_parameters
        frozen_total = sum(b - a for a, b in self.frozen_spans())
        head = f"Sequential(input={self.input!r}, output={self.output!r}"
        head += f", steps={self.steps})" if self.steps is not None else ")"
        width = max(32, max(len(r[0]) for r in rows) + 2)
        line = "-" * (width + 31)
        out = [head, f"{'layer':<{width}}{'output shape':<15}{'params':>16}", line]
        out += [f"{a:<{width}}{b:<15}{c:>16,}" for a, b, c in rows]
        out += [
            line,
            f"total {total:,} parameters (trainable {total - frozen_total:,}, "
            f"frozen {frozen_total:,}), {self.dtype.name}",
        ]
        text = "\n".join(out)
        if print_fn is not None:
            print_fn(text)
        return text

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({i}): {m!r}" for i, m in enumerate(self.layers))
        frozen = f", frozen={self.frozen}" if self.frozen else ""
        return (
            f"Sequential(input={self.input!r}, output={self.output!r}, "
            f"steps={self.steps!r}{frozen}, parameters={self.num_parameters:,})"
            f"{inner}\n)"
        )


@_serial.register_model
class EncoderDecoder(Model):
    """Sequence-to-sequence: the encoder's final state starts the decoder.

    Parameters
    ----------
    encoder : ``Sequential`` over the source (usually Embedding + recurrent layers);
        its last recurrent layer's final state is handed over.
    decoder : ``Sequential`` over the target, ``output="sequence"``, whose first
        recurrent layer has the same cell, hidden size and layers x directions.

    Shapes
    ------
    src (B, S) ids, tgt_in (B, T) ids (target shifted right, starting with BOS),
    lengths (B,) source lengths -> logits (B, T, V).

    Examples
    --------
    >>> import rnnkit as rk
    >>> enc = rk.Sequential(rk.Embedding(30, 8, seed=0), rk.GRU(8, 32, seed=1))
    >>> dec = rk.Sequential(rk.Embedding(12, 8, seed=2), rk.GRU(8, 32, seed=3),
    ...                     rk.Linear(32, 12, seed=4))
    >>> model = rk.EncoderDecoder(enc, dec)
    >>> logits = model.forward(np.ones((2, 5), int), np.ones((2, 4), int))
    >>> logits.shape
    (2, 4, 12)
    """

    def __init__(self, encoder: Sequential, decoder: Sequential) -> None:
        if not isinstance(encoder, Sequential) or not isinstance(decoder, Sequential):
            raise TypeError("encoder and decoder must be Sequential models")
        if not encoder._rec or not decoder._rec:
            raise ValueError("encoder and decoder each need a recurrent layer")
        if decoder.output != "sequence" or decoder.input != "sequence":
            raise ValueError(
                "the decoder must have input='sequence', output='sequence'"
            )
        e, d = encoder.layers[encoder._rec[-1]], decoder.layers[decoder._rec[0]]
        es = (
            e.spec.has_cell_state,
            e.num_layers * e.num_directions,
            e.hidden_size,
            e.state_size,
        )
        ds = (
            d.spec.has_cell_state,
            d.num_layers * d.num_directions,
            d.hidden_size,
            d.state_size,
        )
        if es != ds:
            raise ValueError(
                f"the encoder's final state ({e!r}) must fit the decoder's initial "
                f"state ({d!r}): same LSTM-ness, layers x directions, hidden size "
                "and projection size"
            )
        self.encoder, self.decoder = encoder, decoder
        self._init_common()

    def _children(self) -> list[Any]:
        return [self.encoder, self.decoder]

    def named_modules(self) -> list[tuple[str, Any]]:
        """``("encoder.<i>", layer)`` then ``("decoder.<i>", layer)``."""
        return [
            (f"{part}.{name}", m)
            for part, sub in (("encoder", self.encoder), ("decoder", self.decoder))
            for name, m in sub.named_modules()
        ]

    def config(self) -> dict[str, Any]:
        """``{"type": "EncoderDecoder", "encoder": {...}, "decoder": {...}}``."""
        return {
            "type": "EncoderDecoder",
            "encoder": self.encoder.config(),
            "decoder": self.decoder.config(),
        }

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> EncoderDecoder:
        """An EncoderDecoder (fresh parameters) from :meth:`config` output."""
        e, d = (model_from_config(part) for part in _parts_config(cfg))
        if not isinstance(e, Sequential) or not isinstance(d, Sequential):
            raise TypeError("EncoderDecoder parts must be Sequential models")
        return cls(e, d)

    @classmethod
    def config_param_shapes(cls, cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        """``{"encoder.<i>.<param>": shape, "decoder...": ...}`` (no allocation)."""
        return {
            f"{name}.{key}": shape
            for name, part in zip(("encoder", "decoder"), _parts_config(cfg))
            for key, shape in model_param_shapes(part).items()
        }

    def _dec_state(self, s: Any) -> list[Any]:
        return [s] + [None] * (len(self.decoder._rec) - 1)

    def forward(
        self, src: Any, tgt_in: Any, lengths: Any = None, train: bool = True
    ) -> np.ndarray:
        """Teacher-forced decoder logits from the source and the target prefix.

        Parameters
        ----------
        src : array-like (B, S)
            Source token ids (or features, as the encoder takes them).
        tgt_in : array-like (B, T)
            Target shifted right (starting with BOS).
        lengths : int array-like (B,), optional
            Source lengths.
        train : bool
            Keep what :meth:`backward` needs.

        Returns
        -------
        logits : ndarray (B, T, V)
        """
        self.encoder.forward(src, lengths=lengths, train=train)
        return self.decoder.forward(
            tgt_in, state=self._dec_state(self.encoder.final_state[-1]), train=train
        )

    def backward(self, dlogits: Any) -> None:
        """Backpropagates through the decoder, then the encoder via the handed state.

        Parameters
        ----------
        dlogits : array-like (B, T, V)
            Gradient of the loss w.r.t. the logits of the last training forward.
        """
        self.decoder.backward(dlogits)
        ds = self.decoder.initial_state_grad[0]
        dstate = [None] * (len(self.encoder._rec) - 1) + [ds]
        self.encoder.backward(None, dstate=dstate)

    def greedy_decode(
        self, src: Any, bos: int, eos: int, max_len: int, lengths: Any = None
    ) -> np.ndarray:
        """Greedy decoding: feed BOS, then each step's argmax, until EOS or ``max_len``.

        Parameters
        ----------
        src : array-like (B, S)
            Source token ids.
        bos, eos : int
            Begin- and end-of-sequence ids of the target vocabulary.
        max_len : int
            Most steps decoded.
        lengths : int array-like (B,), optional
            Source lengths.

        Returns
        -------
        ndarray (B, n), int64
            n <= max_len ids, without BOS; after a row's EOS its remaining entries
            are EOS.
        """
        src = np.asarray(src)
        self.encoder.forward(src, lengths=lengths, train=False)
        state = self._dec_state(self.encoder.final_state[-1])
        B = src.shape[0]
        ids = np.full((B, 1), bos, dtype=np.int64)
        done = np.zeros(B, dtype=bool)
        out = []
        for _ in range(max_len):
            logits = self.decoder.forward(ids, state=state, train=False)
            state = self.decoder.final_state
            nxt = np.argmax(logits[:, -1], axis=-1).astype(np.int64)
            nxt[done] = eos
            out.append(nxt)
            done |= nxt == eos
            ids = nxt[:, None]
            if done.all():
                break
        return np.stack(out, axis=1) if out else np.zeros((B, 0), dtype=np.int64)

    def __repr__(self) -> str:
        return (
            f"EncoderDecoder(\n encoder={self.encoder!r},\n decoder={self.decoder!r})"
        )


__all__ = [
    "EncoderDecoder",
    "Model",
    "Sequential",
    "model_from_config",
    "model_param_shapes",
    "module_config",
    "module_from_config",
    "module_param_shapes",
]
