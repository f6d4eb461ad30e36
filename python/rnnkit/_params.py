"""The parameter base every rnnkit module and model shares: flat buffers, named views.

One flat parameter buffer and one flat gradient buffer of the same layout, with named
views into both (llm.c style), so an optimizer updates everything in one pass and a
gradient norm is one reduction. The recurrent layers (:mod:`rnnkit.layers`), the
blocks (:mod:`rnnkit.modules`) and the models (:mod:`rnnkit.models`) all derive from
:class:`_Params`; a model re-points its layers' views into one buffer of its own.

Also the two input checks every forward and ``load_state_dict`` uses:
:func:`_as_float_array` and :func:`_check_shape`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def _as_float_array(name: str, value: Any, dtype: np.dtype) -> np.ndarray:
    """Checks the kind of ``value`` and returns it as a C-contiguous ``dtype`` array.

    Integer, boolean, complex and object arrays are rejected with ``TypeError``;
    any other floating dtype is converted to the layer's dtype. Torch tensors are
    detached and copied to the CPU first.
    """
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind != "f":
        raise TypeError(
            f"{name} must be a floating-point array ({dtype.name}), "
            f"got dtype {arr.dtype}"
        )
    return np.ascontiguousarray(arr, dtype=dtype)


def _check_shape(name: str, arr: np.ndarray, expected: tuple[int, ...]) -> None:
    """Raises ``ValueError`` naming ``name`` unless ``arr.shape == expected``."""
    if arr.shape != expected:
        raise ValueError(f"{name} must have shape {expected}, got {arr.shape}")


class _Params:
    """One flat parameter buffer and one flat gradient buffer, same layout, with
    named views ``params`` / ``grads`` into them.

    Subclasses either call :meth:`_allocate` (layers, blocks) or set
    ``_flat_params``, ``_flat_grads``, ``params`` and ``grads`` themselves (models,
    whose views are their layers' views, prefixed with the layer's name).
    """

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
            self.params[name] = self._flat_params[offset : offset + n].reshape(shape)
            self.grads[name] = self._flat_grads[offset : offset + n].reshape(shape)
            offset += n

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
