"""The parameter base every rnnkit module and model shares: flat buffers, named views.

One flat parameter buffer and one flat gradient buffer of the same layout, with named
views into both (llm.c style), so an optimizer updates everything in one pass and a
gradient norm is one reduction. The recurrent layers (:mod:`rnnkit.layers`), the
blocks (:mod:`rnnkit.modules`) and the models (:mod:`rnnkit.models`) all derive from
:class:`_Params`; a model re-points its layers' views into one buffer of its own.

Freezing lives here too: ``module.trainable = False`` (Keras) or
``module.freeze("weight_ih_l0")`` (one tensor, PyTorch's ``requires_grad_(False)``)
marks tensors as frozen; :meth:`_Params.frozen_spans` gives their element ranges
in the flat buffer, which the optimizers and clipping of :mod:`rnnkit.optim`
leave alone (gradients zeroed, no update, no weight decay, no state).

Also the two input checks every forward and ``load_state_dict`` uses:
:func:`_as_float_array` and :func:`_check_shape`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def _from_torch(name: str, value: Any, dtype: np.dtype) -> Any:
    """A torch tensor as a NumPy array (detached, on the CPU); bfloat16 and half are
    widened to ``dtype``; meta tensors (no data) are refused naming ``name``."""
    t = value.detach()
    if getattr(t, "is_meta", False) or str(getattr(t, "device", "")) == "meta":
        raise TypeError(
            f"{name} is a torch tensor on the 'meta' device, which holds no data"
        )
    if str(getattr(t, "dtype", "")) in ("torch.bfloat16", "torch.float16"):
        t = t.double() if dtype == np.float64 else t.float()
    try:
        return t.cpu().numpy()
    except (TypeError, RuntimeError) as e:
        raise TypeError(
            f"{name}: cannot read torch tensor of dtype {t.dtype} ({e})"
        ) from None


def _as_float_array(name: str, value: Any, dtype: np.dtype) -> np.ndarray:
    """Checks the kind of ``value`` and returns it as a C-contiguous ``dtype`` array.

    Integer, boolean, complex and object arrays are rejected with ``TypeError``;
    any other floating dtype is converted to the layer's dtype (the shape is kept,
    a 0-d input stays 0-d). Torch tensors are detached and copied to the CPU
    first.
    """
    if hasattr(value, "detach"):  # torch.Tensor
        value = _from_torch(name, value, dtype)
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise TypeError(f"{name} must be a floating-point array: {e}") from None
    if arr.dtype.kind != "f":
        raise TypeError(
            f"{name} must be a floating-point array ({dtype.name}), "
            f"got dtype {arr.dtype}"
        )
    return arr.astype(dtype, order="C", copy=False)


def _check_shape(name: str, arr: np.ndarray, expected: tuple[int, ...]) -> None:
    """Raises ``ValueError`` naming ``name`` unless ``arr.shape == expected``."""
    if arr.shape != expected:
        raise ValueError(f"{name} must have shape {expected}, got {arr.shape}")


class ParamViews(dict[str, np.ndarray]):
    """``params`` / ``grads``: named views into a flat buffer, read-only as a mapping.

    Replacing an entry would detach it from the flat buffer the optimizer updates
    (the model would compute and save the new array while the optimizer trains
    the old one), so item assignment, deletion and ``update`` raise ``TypeError``;
    set values in place instead: ``params[name][...] = value``, or
    ``load_state_dict``.

    Examples
    --------
    >>> import numpy as np, rnnkit as rk
    >>> gru = rk.GRU(2, 3, seed=0)
    >>> gru.params["bias_hh_l0"][...] = 0.0        # in place: fine
    >>> gru.params["bias_hh_l0"] = np.zeros(9)     # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: params['bias_hh_l0'] cannot be replaced: ...
    """

    def __init__(self, items: Any = (), kind: str = "params") -> None:
        super().__init__(items)
        self._kind = kind

    def __reduce__(self) -> Any:
        return (type(self), (dict(self), self._kind))

    def _refuse(self, key: Any = None, *args: Any, **kw: Any) -> Any:
        what = f"{self._kind}[{key!r}]" if isinstance(key, str) else self._kind
        raise TypeError(
            f"{what} cannot be replaced: its entries are views into the flat "
            f"buffer the optimizer updates; set values in place with "
            f"{self._kind}[name][...] = value"
            + (", or use load_state_dict(state)" if self._kind == "params" else "")
        )

    __delitem__ = setdefault = pop = _refuse

    def __setitem__(self, key: Any, value: Any) -> None:
        # ``views[k] += g`` adds in place and stores the same array back: allowed
        if dict.get(self, key) is not value:
            self._refuse(key)

    def update(self, *args: Any, **kw: Any) -> None:
        self._refuse()

    def popitem(self) -> Any:
        self._refuse()

    def clear(self) -> None:
        self._refuse()

    def __ior__(self, other: Any) -> Any:  # type: ignore[misc]
        self._refuse()


class _Params:
    """One flat parameter buffer and one flat gradient buffer, same layout, with
    named views ``params`` / ``grads`` into them.

    Subclasses either call :meth:`_allocate` (layers, blocks) or set
    ``_flat_params``, ``_flat_grads``, ``params`` and ``grads`` themselves (models,
    whose views are their layers' views, prefixed with the layer's name).
    """

    dtype: np.dtype
    _flat_params: np.ndarray
    _flat_grads: np.ndarray

    @property
    def params(self) -> ParamViews:
        """Named views into the flat parameter buffer (entries cannot be replaced)."""
        return self.__dict__["_param_views"]

    @params.setter
    def params(self, views: ParamViews) -> None:
        self.__dict__["_param_views"] = self._views("params", views)

    @property
    def grads(self) -> ParamViews:
        """Named views into the flat gradient buffer (entries cannot be replaced)."""
        return self.__dict__["_grad_views"]

    @grads.setter
    def grads(self, views: ParamViews) -> None:
        self.__dict__["_grad_views"] = self._views("grads", views)

    @staticmethod
    def _views(kind: str, views: Any) -> ParamViews:
        if not isinstance(views, ParamViews):
            raise AttributeError(
                f"{kind} cannot be replaced (it names views into the flat buffer the "
                f"optimizer updates); set values in place with {kind}[name][...] = "
                "value" + (" or load_state_dict(state)" if kind == "params" else "")
            )
        return views

    def __getstate__(self) -> dict[str, Any]:
        # pickle / deepcopy: not the weak link to the model that owns the module
        # (a copy is owned by the model copied with it, or by none)
        state = self.__dict__.copy()
        state.pop("_rk_owner", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # pickle / deepcopy copy every view on its own: point them back into the
        # flat buffers, or the optimizer would train arrays forward never reads
        self.__dict__.update(state)
        for key, flat in (
            ("_param_views", "_flat_params"),
            ("_grad_views", "_flat_grads"),
        ):
            views, buf = self.__dict__.get(key), self.__dict__.get(flat)
            if not isinstance(views, ParamViews) or buf is None:
                continue
            new, off = {}, 0
            for name, v in views.items():
                new[name] = buf[off : off + v.size].reshape(v.shape)
                off += v.size
            if off == buf.size:
                self.__dict__[key] = ParamViews(new, views._kind)

    def _allocate(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Allocates both buffers for ``{name: shape}`` in storage order."""
        total = sum(int(np.prod(s, dtype=object)) for s in shapes.values())
        try:
            self._flat_params = np.zeros(total, dtype=self.dtype)
            self._flat_grads = np.zeros(total, dtype=self.dtype)
        except (MemoryError, ValueError) as e:
            gib = total * self.dtype.itemsize * 2 / 2**30
            raise MemoryError(
                f"{type(self).__name__} with these sizes needs {total:,} parameters "
                f"({gib:,.1f} GiB for parameters and gradients), which cannot be "
                f"allocated ({e}); shapes: {dict(shapes)}"
            ) from None
        params, grads = {}, {}
        offset = 0
        for name, shape in shapes.items():
            n = int(np.prod(shape))
            params[name] = self._flat_params[offset : offset + n].reshape(shape)
            grads[name] = self._flat_grads[offset : offset + n].reshape(shape)
            offset += n
        self.params, self.grads = ParamViews(params), ParamViews(grads, "grads")

    # ------------------------------------------------------------- freezing
    _frozen: frozenset[str] = frozenset()  # names of frozen tensors (a leaf's own)

    def _owners(self) -> list[tuple[str, Any]]:
        """``(key prefix, leaf)`` pairs whose ``_frozen`` sets hold the flags."""
        return [("", self)]

    @property
    def frozen(self) -> list[str]:
        """The names (``params`` keys) of the frozen tensors, in storage order."""
        return [
            f"{pre}{n}"
            for pre, m in self._owners()
            for n in getattr(m, "params", {})
            if n in getattr(m, "_frozen", ())
        ]

    @property
    def trainable(self) -> bool:
        """False when any tensor is frozen; setting it freezes or unfreezes all.

        Frozen tensors keep their values through optimizer steps (gradient
        zeroed, no weight decay, no optimizer state), are left out of gradient
        clipping, and the flags are saved in checkpoints of a model.
        """
        return not self.frozen

    @trainable.setter
    def trainable(self, value: bool) -> None:
        if value:
            self.unfreeze()
        else:
            self.freeze()

    def _set_frozen(self, names: tuple[str, ...], frozen: bool) -> None:
        owners = self._owners()
        picked: list[tuple[Any, str]] = []
        for name in names:
            hits = [
                (m, n)
                for pre, m in owners
                for n in getattr(m, "params", {})
                if f"{pre}{n}" == name or pre.startswith(f"{name}.")
            ]
            if not hits:
                known = [f"{pre}{n}" for pre, m in owners for n in m.params]
                raise KeyError(
                    f"{type(self).__name__} has no parameter (or module) {name!r}; "
                    f"it has {known}"
                )
            picked += hits
        if not names:
            picked = [(m, n) for _, m in owners for n in getattr(m, "params", {})]
        for m, n in picked:
            flags = set(getattr(m, "_frozen", ()))
            if frozen:
                flags.add(n)
            else:
                flags.discard(n)
            m._frozen = frozenset(flags)

    def freeze(self, *names: str) -> None:
        """Freezes the named tensors (``params`` keys, or a module's key such as
        ``"0"`` for a model's first layer); no names: every tensor.

        Examples
        --------
        >>> import rnnkit as rk
        >>> model = rk.Sequential(rk.Embedding(10, 4, seed=0), rk.GRU(4, 8, seed=1))
        >>> model.freeze("0")                  # the embedding keeps its weights
        >>> model.frozen, model.layers[0].trainable
        (['0.weight'], False)
        """
        self._set_frozen(names, True)

    def unfreeze(self, *names: str) -> None:
        """Undoes :meth:`freeze` for the named tensors (no names: all)."""
        self._set_frozen(names, False)

    def frozen_spans(self) -> list[tuple[int, int]]:
        """``[(start, stop), ...]``: the frozen elements of the flat parameter
        buffer (``parameters()[0]``), merged, in order; ``[]`` when all train."""
        base = self._flat_params
        spans: list[tuple[int, int]] = []
        for name in self.frozen:
            v = self.params[name]
            a = (v.ctypes.data - base.ctypes.data) // base.itemsize
            if spans and spans[-1][1] == a:
                spans[-1] = (spans[-1][0], a + v.size)
            else:
                spans.append((a, a + v.size))
        return sorted(spans)

    def zero_grad(self) -> None:
        """Sets every gradient to zero (``backward`` adds into them)."""
        self._flat_grads.fill(0)

    def parameters(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The ``(parameter, gradient)`` pairs an optimizer updates.

        Returns
        -------
        list of (ndarray, ndarray)
            One pair: the flat parameter buffer and the flat gradient buffer, which
            cover every tensor (``params`` and ``grads`` are views into them).
        """
        return [(self._flat_params, self._flat_grads)]

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter by name (PyTorch's names, in its order).

        Returns
        -------
        dict of str to ndarray
            ``{name: copy}``, e.g. ``"weight_ih_l0"`` for a layer or
            ``"1.weight_ih_l0"`` for layer 1 of a model. Loadable into PyTorch with
            ``module.load_state_dict({k: torch.from_numpy(v) ...})``.
        """
        return {name: p.copy() for name, p in self.params.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copies ``state`` into the parameters; accepts array-likes and torch tensors.

        Parameters
        ----------
        state : mapping of str to array-like
            Exactly the keys of :meth:`state_dict`, each with its shape; any
            floating dtype (converted to this module's dtype).

        Raises
        ------
        KeyError
            Missing or unexpected keys.
        ValueError
            A wrong shape.
        TypeError
            A non-float value.

        Every entry is checked before anything is written: on error the
        parameters are unchanged.
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
