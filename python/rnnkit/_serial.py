"""The serialisation registry: module and model types by name, configs and shapes.

A checkpoint (:mod:`rnnkit.io`) records a model's architecture as JSON, ``{"type":
name, **constructor arguments}``, nested for models. This module turns objects
into such configs and back, and computes the parameter names and shapes a config
implies without allocating anything (so a loader can check a file first).

Where it sits, and why
----------------------
It is *below* both :mod:`rnnkit.io` and :mod:`rnnkit.models`, so neither has to
import the other to (de)serialise::

    _cells, layers, modules  <-  _serial  <-  io  <-  models

* Layers and blocks are below it, so it knows them directly: the recurrent
  layers through the cell registry (:mod:`rnnkit._cells`: ``"type"`` is the
  cell's ``class_name``, shapes are ``CellSpec.param_shapes``), the blocks
  through :data:`MODULE_TYPES` and their ``config_param_shapes``.
* Model types are above it: :mod:`rnnkit.models` registers each with
  :func:`register_model`, and each provides ``config()``, ``from_config(cfg)``
  and ``config_param_shapes(cfg)``. ``import rnnkit`` imports the models before
  anything can load a checkpoint.
* The NumPy reference layers (:mod:`rnnkit.reference`) are never imported by the
  fast path. That package registers its classes with :func:`register_reference`
  when it is imported; a config saying ``"reference": true`` builds only after
  that (otherwise :func:`module_from_config` raises a ``ValueError`` saying so).
  Their parameter shapes are the fast layers', so checking a file needs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from . import _cells
from .layers import _Recurrent
from .modules import Dropout, Embedding, Linear

__all__ = [
    "MODEL_TYPES",
    "MODULE_TYPES",
    "is_model",
    "model_from_config",
    "model_param_shapes",
    "module_config",
    "module_from_config",
    "module_param_shapes",
    "register_model",
    "register_reference",
    "register_wrapper",
    "wrap_loaded",
]

MODULE_TYPES: dict[str, Any] = {
    "Linear": Linear,
    "Embedding": Embedding,
    "Dropout": Dropout,
}
"""The non-recurrent building blocks by config name."""

MODEL_TYPES: dict[str, Any] = {}
"""Model classes by config name, filled by :func:`register_model`."""

REFERENCE_LAYERS: dict[str, type] = {}
"""NumPy-reference layer classes by class name, filled by :func:`register_reference`."""

_T = TypeVar("_T", bound=type)


def register_model(cls: _T) -> _T:
    """Class decorator: records a model class by name for :func:`model_from_config`."""
    MODEL_TYPES[cls.__name__] = cls
    return cls


def register_reference(cls: type) -> None:
    """Records a NumPy-reference layer class (``rnnkit.reference.LSTM``)."""
    REFERENCE_LAYERS[_cells.get(getattr(cls, "cell", "")).class_name] = cls


def is_model(obj: Any) -> bool:
    """Whether ``obj`` is an instance of a registered model type."""
    return isinstance(obj, tuple(MODEL_TYPES.values()))


def _positive(cfg: Mapping[str, Any], key: str) -> int:
    v = cfg.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{key} must be a positive integer, got {v!r}")
    return v


# ------------------------------------------------------------------ modules
def module_config(m: Any) -> dict[str, Any]:
    """The config of one module: ``{"type": name, **constructor arguments}`` (JSON).

    Parameters
    ----------
    m : a recurrent layer (fast or reference), ``Linear``, ``Embedding`` or ``Dropout``.

    Returns
    -------
    dict
        For a recurrent layer also ``"reference": True`` when it computes with the
        NumPy reference, ``"nonlinearity"`` when its cell offers a choice, and
        the layer options (``dropout``, ``zoneout``, ``proj_size``, ...) that
        differ from their defaults.

    Examples
    --------
    >>> import rnnkit as rk
    >>> module_config(rk.GRU(3, 4))["type"], module_config(rk.Dropout(0.1))
    ('GRU', {'type': 'Dropout', 'p': 0.1})
    """
    if isinstance(m, _Recurrent):
        spec = m.spec
        cfg: dict[str, Any] = {
            "type": spec.class_name,
            "input_size": m.input_size,
            "hidden_size": m.hidden_size,
            "num_layers": m.num_layers,
            "bias": m.bias,
            "batch_first": m.batch_first,
            "bidirectional": m.bidirectional,
            "dtype": m.dtype.name,
        }
        if len(spec.nonlinearities) > 1:
            cfg["nonlinearity"] = m.nonlinearity
        cfg.update(m.options.as_dict())  # layer options that differ from defaults
        ref = REFERENCE_LAYERS.get(spec.class_name)
        if ref is not None and isinstance(m, ref):
            cfg["reference"] = True
        return cfg
    if type(m) in MODULE_TYPES.values():
        return {"type": type(m).__name__, **m.config()}
    raise TypeError(f"cannot describe module of type {type(m).__name__}")


def module_from_config(cfg: Mapping[str, Any]) -> Any:
    """Builds a module (fresh parameters) from :func:`module_config` output.

    Raises
    ------
    ValueError
        An unknown type, a bad argument, or ``"reference": true`` before
        ``rnnkit.reference`` was imported.
    """
    cfg = dict(cfg)
    kind = cfg.pop("type", None)
    spec = _cells.BY_CLASS_NAME.get(kind) if isinstance(kind, str) else None
    if spec is not None:
        cls: Any = spec.layer_class
        if cfg.pop("reference", False):
            cls = REFERENCE_LAYERS.get(spec.class_name)
            if cls is None:
                raise ValueError(
                    f"the config asks for the NumPy reference {kind}; "
                    "import rnnkit.reference first"
                )
        return cls(**cfg)
    if kind in MODULE_TYPES:
        return MODULE_TYPES[kind](**cfg)
    raise ValueError(
        f"unknown module type {kind!r}; known: "
        f"{sorted(_cells.BY_CLASS_NAME) + sorted(MODULE_TYPES)}"
    )


def module_param_shapes(cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes a module config describes, without allocating.

    Examples
    --------
    >>> module_param_shapes({"type": "LSTM", "input_size": 3, "hidden_size": 2,
    ...                      "num_layers": 1, "bias": False})
    {'weight_ih_l0': (8, 3), 'weight_hh_l0': (8, 2)}
    """
    kind = cfg.get("type")
    spec = _cells.BY_CLASS_NAME.get(kind) if isinstance(kind, str) else None
    if spec is not None:
        return spec.param_shapes(
            _positive(cfg, "input_size"),
            _positive(cfg, "hidden_size"),
            _positive(cfg, "num_layers"),
            bool(cfg.get("bidirectional")),
            bool(cfg.get("bias", True)),
            proj_size=int(cfg.get("proj_size", 0)),
            layer_norm=bool(cfg.get("layer_norm", False)),
        )
    if kind in MODULE_TYPES:
        shapes: dict[str, tuple[int, ...]] = MODULE_TYPES[kind].config_param_shapes(cfg)
        return shapes
    raise ValueError(f"unknown module type {kind!r}")


# ------------------------------------------------------------------- models
def _model_type(cfg: Mapping[str, Any]) -> Any:
    kind = cfg.get("type")
    cls = MODEL_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown model type {kind!r}; known: {sorted(MODEL_TYPES)}")
    return cls


def model_from_config(cfg: Mapping[str, Any]) -> Any:
    """Builds a model (fresh parameters) from its ``config()``, by its ``"type"``."""
    return _model_type(cfg).from_config(cfg)


def model_param_shapes(cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """``state_dict`` keys and shapes of the model ``cfg`` describes (no allocation)."""
    shapes: dict[str, tuple[int, ...]] = _model_type(cfg).config_param_shapes(cfg)
    return shapes


WRAPPERS: dict[str, Any] = {}
"""Classes that wrap a loaded model, by the name in its ``meta["text"]["model"]``
(``"char-lm"``: :class:`rnnkit.CharLM`), filled by :func:`register_wrapper`."""


def register_wrapper(kind: str, from_model: Any) -> None:
    """Makes :func:`rnnkit.load` return ``from_model(model)`` for a checkpoint
    whose ``meta["text"]["model"]`` is ``kind`` (``rnnkit.text`` registers
    ``"char-lm"`` -> ``CharLM.from_model`` on import)."""
    WRAPPERS[kind] = from_model


def wrap_loaded(model: Any) -> Any:
    """``model``, or its registered wrapper (:func:`register_wrapper`)."""
    meta = getattr(model, "meta", None) or {}
    text = meta.get("text") if isinstance(meta, dict) else None
    kind = text.get("model") if isinstance(text, dict) else None
    fn = WRAPPERS.get(kind) if isinstance(kind, str) else None
    return model if fn is None else fn(model)
