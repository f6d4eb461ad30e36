"""Building blocks around the recurrent layers: Linear, Embedding, Dropout.

Every module follows the protocol of :mod:`rnnkit.layers`::

    y = module.forward(x, train=True)     # keeps what backward needs when train
    dx = module.backward(dy)              # adds into module.grads, returns dL/dx
    module.zero_grad()

and owns one flat parameter buffer ``_flat_params`` and one flat gradient buffer
``_flat_grads`` with named views ``params`` / ``grads`` (PyTorch's names:
``weight``, ``bias``), so :meth:`parameters` is one ``(param, grad)`` pair and an
optimizer updates everything in one pass. ``state_dict`` / ``load_state_dict``
copy in and out by name; ``config()`` returns the constructor arguments (JSON),
which is how checkpoints record the architecture.

All three act on the last axis and accept any leading shape, so the same
``Linear`` serves every time step of a (T, B, H) sequence or one (B, H) vector.

Shapes
------
Linear    x (..., I)  -> y (..., O)       weight (O, I), bias (O,)
Embedding ids (...)   -> y (..., E)       weight (V, E); ids are integers in [0, V)
Dropout   x (...)     -> y (...)          no parameters
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import _core
from ._ops import ACTIVATIONS
from ._params import ParamViews, _as_float_array, _check_shape, _Params


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return (
        seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    )


def _positive_int(name: str, v: Any) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def _float_dtype(dtype: str | np.dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


class Module(_Params):
    """Base of the parameterised building blocks: flat buffers and named views
    (:class:`rnnkit._params._Params`, shared with the layers and the models).

    Subclasses call :meth:`_allocate` with ``{name: shape}`` in storage order, the
    shapes :meth:`config_param_shapes` computes from the constructor arguments.
    """

    def config(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """The constructor arguments (JSON), which checkpoints record."""
        raise NotImplementedError

    @classmethod
    def config_param_shapes(
        cls, cfg: Mapping[str, Any]
    ) -> dict[str, tuple[int, ...]]:  # pragma: no cover - abstract
        """Parameter names and shapes that ``cls(**cfg)`` would allocate.

        Checkpoint loading checks the file against these before building anything.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        """``Linear(64, 2)``: the first two arguments by position, the others
        only where they differ from their defaults."""
        defaults = {
            k: p.default
            for k, p in inspect.signature(type(self).__init__).parameters.items()
        }
        args = []
        for i, (k, v) in enumerate(self.config().items()):
            if i < 2:
                args.append(repr(v))
            elif defaults.get(k, inspect.Parameter.empty) != v:
                args.append(f"{k}={v!r}")
        return f"{type(self).__name__}({', '.join(args)})"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)  # type: ignore[attr-defined]


class Linear(Module):
    """Dense layer ``y = act(x W^T + b)`` over the last axis.

    Parameters
    ----------
    in_features : int
        I, the features of the input's last axis.
    out_features : int
        O, the features of the output's last axis.
    bias : bool, default True
        Add ``b``; without it the ``"bias"`` key is absent.
    activation : {None, "tanh", "relu", "sigmoid"}, default None
        ``act``; None is the identity (for logits).
    dtype : {"float32", "float64"}, default "float32"
        Of the parameters, gradients and outputs.
    seed : int, np.random.Generator or None
        Source of the initial weights, U(-1/sqrt(I), 1/sqrt(I)) like
        ``torch.nn.Linear``.

    Shapes
    ------
    x (..., I) -> y (..., O); weight (O, I), bias (O,).

    Examples
    --------
    >>> import numpy as np
    >>> from rnnkit import Linear
    >>> fc = Linear(4, 3, seed=0)
    >>> y = fc.forward(np.ones((5, 2, 4), dtype=np.float32))   # every time step
    >>> dx = fc.backward(np.ones_like(y))                       # adds into fc.grads
    >>> y.shape, dx.shape
    ((5, 2, 3), (5, 2, 4))
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str | None = None,
        dtype: str | np.dtype = "float32",
        seed: int | np.random.Generator | None = None,
    ) -> None:
        self.in_features = _positive_int("in_features", in_features)
        self.out_features = _positive_int("out_features", out_features)
        if activation is not None and activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be None or one of {tuple(ACTIVATIONS)}, "
                f"got {activation!r}"
            )
        self.activation = activation
        self.bias = bool(bias)
        self.dtype = _float_dtype(dtype)
        self._allocate(self._shapes(self.in_features, self.out_features, self.bias))
        self.reset_parameters(seed)
        self._x: np.ndarray | None = None  # input (N, I), for dW and dx
        self._y: np.ndarray | None = None  # output (N, O), for the activation's grad
        self._lead: tuple[int, ...] = ()  # leading shape of the last input
        self._w: np.ndarray | None = None  # the forward's weight, for dx

    @staticmethod
    def _shapes(in_features: int, out_features: int, bias: bool) -> dict[str, Any]:
        shapes: dict[str, tuple[int, ...]] = {"weight": (out_features, in_features)}
        if bias:
            shapes["bias"] = (out_features,)
        return shapes

    @classmethod
    def config_param_shapes(cls, cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        """``{"weight": (O, I), "bias": (O,)}`` for a :meth:`config` (no allocation)."""
        return cls._shapes(
            _positive_int("in_features", cfg.get("in_features")),
            _positive_int("out_features", cfg.get("out_features")),
            bool(cfg.get("bias", True)),
        )

    def reset_parameters(self, seed: int | np.random.Generator | None = None) -> None:
        """Redraws weight and bias from U(-1/sqrt(I), 1/sqrt(I)) (``seed`` as above)."""
        rng = _rng(seed)
        k = 1.0 / np.sqrt(self.in_features)
        for p in self.params.values():
            p[...] = rng.uniform(-k, k, size=p.shape)

    def config(self) -> dict[str, Any]:
        """The constructor arguments (JSON), which checkpoints record."""
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias,
            "activation": self.activation,
            "dtype": self.dtype.name,
        }

    def forward(self, x: Any, train: bool = True) -> np.ndarray:
        """``y = act(x W^T + b)`` over the last axis.

        Parameters
        ----------
        x : array-like (..., I)
            Any leading shape; converted to the layer's dtype.
        train : bool
            Keep ``x`` and ``y`` for :meth:`backward`.

        Returns
        -------
        y : ndarray (..., O)
        """
        x = _as_float_array("x", x, self.dtype)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"x must have {self.in_features} features in its last axis, "
                f"got shape {x.shape}"
            )
        x2 = np.ascontiguousarray(x.reshape(-1, self.in_features))
        # y = act(x W^T + b): rnnkit's GEMM, bias and activation fused (linear.cpp)
        y2 = _core.linear_forward(
            x2,
            self.params["weight"],
            self.params["bias"] if self.bias else None,
            self.activation,
        )
        y = y2.reshape(x.shape[:-1] + (self.out_features,))
        self._x, self._y = (x2, y2) if train else (None, None)
        if train:  # backward uses this forward's weight, even if it changes between
            w = self.params["weight"]
            if self._w is None or self._w.shape != w.shape:
                self._w = np.empty_like(w)
            np.copyto(self._w, w)
        self._lead = x.shape[:-1]
        return y

    def backward(self, dy: Any) -> np.ndarray:
        """Adds ``dW``, ``db`` into ``grads`` for the last training :meth:`forward`.

        Parameters
        ----------
        dy : array-like (..., O)
            Gradient w.r.t. ``y``.

        Returns
        -------
        dx : ndarray (..., I), shaped like ``x``
        """
        x2, y2, w = self._x, self._y, self._w
        if x2 is None or y2 is None or w is None:
            raise RuntimeError(
                "Linear.backward() needs a preceding forward(x, train=True)"
            )
        lead = self._lead
        dy = _as_float_array("dy", dy, self.dtype)
        _check_shape("dy", dy, lead + (self.out_features,))
        # da = dy act'(y); dW += da^T x; db += sum da; dx = da W (linear.cpp)
        dx = _core.linear_backward(
            np.ascontiguousarray(dy.reshape(y2.shape)),
            x2,
            y2,
            w,  # the forward's weight
            self.grads["weight"],
            self.grads["bias"] if self.bias else None,
            self.activation,
            True,
        )
        self._x = self._y = None
        assert dx is not None  # need_dx
        return dx.reshape(lead + (self.in_features,))


class Embedding(Module):
    """Lookup table: token id ``v`` -> row ``weight[v]``; gradient by scatter-add.

    Parameters
    ----------
    num_embeddings : int
        V, the number of token ids (rows).
    embedding_dim : int
        E, the features of each row.
    padding_idx : int or None
        An id whose row starts at zero and receives no gradient (as in
        ``torch.nn.Embedding``).
    mask_zero : bool, default False
        Keras's option: the padding id (``padding_idx``, which defaults to 0 with
        it) marks padding, and a :class:`~rnnkit.Sequential` starting with this
        embedding derives ``lengths`` from it (:meth:`lengths`) whenever none are
        given, so right-padded batches need no extra argument.
    dtype : {"float32", "float64"}, default "float32"
        Of the table, its gradient and the outputs.
    seed : int, np.random.Generator or None
        Source of the initial rows, N(0, 1) like torch.

    Shapes
    ------
    ids (...) integers in [0, V) -> y (..., E); weight (V, E).
    An id outside [0, V) raises ``IndexError`` naming the id, its position and V.

    Examples
    --------
    >>> import numpy as np
    >>> from rnnkit import Embedding
    >>> emb = Embedding(10, 4, seed=0)
    >>> y = emb.forward(np.array([[1, 2, 3], [4, 5, 9]]))
    >>> emb.backward(np.ones_like(y))      # adds into emb.grads["weight"]
    >>> y.shape
    (2, 3, 4)
    >>> Embedding(10, 4, mask_zero=True).lengths([[5, 3, 0, 0], [1, 2, 3, 4]])
    array([2, 4])
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        dtype: str | np.dtype = "float32",
        seed: int | np.random.Generator | None = None,
        mask_zero: bool = False,
    ) -> None:
        self.num_embeddings = _positive_int("num_embeddings", num_embeddings)
        self.embedding_dim = _positive_int("embedding_dim", embedding_dim)
        self.mask_zero = bool(mask_zero)
        if mask_zero and padding_idx is None:
            padding_idx = 0
        if padding_idx is not None:
            if (
                not isinstance(padding_idx, (int, np.integer))
                or isinstance(padding_idx, bool)
                or not 0 <= padding_idx < self.num_embeddings
            ):
                raise ValueError(
                    f"padding_idx must be None or an int in [0, {self.num_embeddings}),"
                    f" got {padding_idx!r}"
                )
            padding_idx = int(padding_idx)
        self.padding_idx = padding_idx
        self.dtype = _float_dtype(dtype)
        self._allocate({"weight": (self.num_embeddings, self.embedding_dim)})
        self.reset_parameters(seed)
        self._ids: np.ndarray | None = None

    @classmethod
    def config_param_shapes(cls, cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        """``{"weight": (V, E)}`` for a :meth:`config` (no allocation)."""
        return {
            "weight": (
                _positive_int("num_embeddings", cfg.get("num_embeddings")),
                _positive_int("embedding_dim", cfg.get("embedding_dim")),
            )
        }

    def reset_parameters(self, seed: int | np.random.Generator | None = None) -> None:
        """Redraws the rows from N(0, 1), the padding row (if any) zero."""
        w = self.params["weight"]
        w[...] = _rng(seed).standard_normal(w.shape)
        if self.padding_idx is not None:
            w[self.padding_idx] = 0

    def config(self) -> dict[str, Any]:
        """The constructor arguments (JSON), which checkpoints record."""
        return {
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
            "padding_idx": self.padding_idx,
            "dtype": self.dtype.name,
            "mask_zero": self.mask_zero,
        }

    def lengths(self, ids: Any) -> np.ndarray:
        """Valid steps per row of right-padded ids: one past each row's last id
        that is not ``padding_idx``.

        Parameters
        ----------
        ids : integer array-like (B, T)

        Returns
        -------
        ndarray (B,) int64, each in [1, T].

        Raises
        ------
        ValueError
            No ``padding_idx``, ``ids`` not 2-D, or a row that is all padding
            (naming the row).
        """
        if self.padding_idx is None:
            raise ValueError("lengths from padding need Embedding(padding_idx=...)")
        arr = self.check_ids(ids)
        if arr.ndim != 2:
            raise ValueError(f"ids must be (B, T) to derive lengths, got {arr.shape}")
        real = arr != self.padding_idx
        has = real.any(axis=1)
        if not has.all():
            row = int(np.argmin(has))
            raise ValueError(
                f"ids row {row} is all padding (id {self.padding_idx}); every row "
                f"needs at least one token (ids shape {arr.shape})"
            )
        T = arr.shape[1]
        return (T - np.argmax(real[:, ::-1], axis=1)).astype(np.int64)

    def check_ids(self, ids: Any, name: str = "ids") -> np.ndarray:
        """Returns ``ids`` as an int64 array after checking them.

        Raises
        ------
        TypeError
            ``ids`` is not an integer array.
        IndexError
            An id is outside [0, V); the message names the id and its position.
        """
        arr = self._int_ids(ids, name)
        bad = (arr < 0) | (arr >= self.num_embeddings)
        if bad.any():
            pos = np.unravel_index(int(np.argmax(bad)), arr.shape)
            raise IndexError(
                f"{name} contains token id {int(arr[pos])} at position "
                f"{tuple(int(i) for i in pos)}, outside the vocabulary of size "
                f"{self.num_embeddings}"
            )
        return arr

    @staticmethod
    def _int_ids(ids: Any, name: str = "ids") -> np.ndarray:
        """``ids`` as int64 (``TypeError`` unless integers), not range-checked."""
        if hasattr(ids, "detach"):
            ids = ids.detach().cpu().numpy()
        arr = np.asarray(ids)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
        return arr.astype(np.int64, copy=False)

    def forward(self, ids: Any, train: bool = True) -> np.ndarray:
        """Gathers rows: ``y[...] = weight[ids[...]]``.

        Parameters
        ----------
        ids : integer array-like (...)
            Token ids in [0, V).
        train : bool
            Keep ``ids`` for :meth:`backward`.

        Returns
        -------
        y : ndarray (..., E)
        """
        ids = self._int_ids(ids)
        flat = np.ascontiguousarray(ids.reshape(-1))
        try:
            # the kernel refuses ids outside [0, V) (embedding.cpp)
            y = _core.embedding_forward(flat, self.params["weight"])
        except IndexError:
            self.check_ids(ids)  # the message with the id's position in ids
            raise
        self._ids = ids if train else None
        return y.reshape(ids.shape + (self.embedding_dim,))

    def backward(self, dy: Any) -> None:
        """Scatter-adds ``dy`` into ``grads["weight"]`` (ids are not differentiable)."""
        ids = self._ids
        if ids is None:
            raise RuntimeError(
                "Embedding.backward() needs a preceding forward(ids, train=True)"
            )
        dy = _as_float_array("dy", dy, self.dtype)
        _check_shape("dy", dy, ids.shape + (self.embedding_dim,))
        # dweight[v] += dy at every position holding v, in position order, the
        # padding row left out (embedding.cpp: deterministic, no atomics)
        _core.embedding_backward(
            np.ascontiguousarray(ids.reshape(-1)),
            np.ascontiguousarray(dy.reshape(-1, self.embedding_dim)),
            self.grads["weight"],
            -1 if self.padding_idx is None else self.padding_idx,
        )
        self._ids = None


class Dropout:
    """Inverted dropout: in training zero each entry with probability ``p`` and
    scale the survivors by ``1 / (1 - p)``; identity in inference (``train=False``).

    Parameters
    ----------
    p : float, default 0.5
        Drop probability, in [0, 1).
    seed : int, np.random.Generator or None
        Source of the masks (explicit, so runs reproduce).

    Shapes
    ------
    x (...) -> y (...). No parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from rnnkit import Dropout
    >>> drop = Dropout(0.5, seed=0)
    >>> y = drop.forward(np.ones((2, 1000), dtype=np.float32))
    >>> sorted(set(y.ravel().tolist()))       # dropped, or scaled by 1 / (1 - p)
    [0.0, 2.0]
    >>> bool((drop.forward(y, train=False) == y).all())
    True
    """

    def __init__(
        self, p: float = 0.5, seed: int | np.random.Generator | None = None
    ) -> None:
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"p must be in [0, 1), got {p}")
        self.p = p
        self.rng = _rng(seed)
        self.params = ParamViews()
        self.grads = ParamViews(kind="grads")
        self._mask: np.ndarray | None = None

    def config(self) -> dict[str, Any]:
        """The constructor arguments (JSON; the seed is not recorded)."""
        return {"p": self.p}

    @classmethod
    def config_param_shapes(cls, cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        """``{}``: dropout has no parameters."""
        return {}

    def forward(self, x: Any, train: bool = True) -> np.ndarray:
        """Zeros each entry with probability ``p`` and scales the rest (``train``);
        the identity when not training. Returns an array shaped like ``x``."""
        x = np.asarray(x)
        if not train or self.p == 0.0:
            self._mask = None
            return x
        u = self.rng.random(
            x.shape, dtype=np.float64 if x.dtype == np.float64 else np.float32
        )
        keep = np.greater_equal(u, self.p)
        self._mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.p))
        return x * self._mask

    def backward(self, dy: Any) -> np.ndarray:
        """``dy`` times the last training forward's mask (``dy`` if there was none)."""
        dy = np.asarray(dy)
        return dy if self._mask is None else dy * self._mask

    def zero_grad(self) -> None:
        """Nothing to zero (no parameters); part of the module protocol."""

    def parameters(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[]``: no (parameter, gradient) pairs."""
        return []

    def state_dict(self) -> dict[str, np.ndarray]:
        """``{}``: no parameters."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Accepts only an empty ``state`` (``KeyError`` otherwise)."""
        if len(state):
            raise KeyError(f"Dropout has no parameters, got keys {list(state)}")

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"

    __call__ = forward


__all__ = ["Dropout", "Embedding", "Linear", "Module"]
