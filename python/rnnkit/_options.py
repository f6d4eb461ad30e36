"""Layer options: their values, validation and masks (the fast path's own copy).

The options of issue 12 (``dropout``, ``recurrent_dropout``, ``zoneout``,
``layer_norm``, ``proj_size``, ``forget_bias``) as the layers
(:mod:`rnnkit.layers`) take them, and the one definition of how their masks are
drawn (:func:`draw_masks`) and laid out (:class:`Masks`), shared by the compiled
kernels and the NumPy reference. The equations of every option are specified in
:mod:`rnnkit.reference.options`, which re-exports these names.

Each mask takes one 64-bit key from one ``np.random.Generator`` (the layer's),
in the documented order, and its elements come from a counter-based generator
of (key, element index) in the compiled kernel :func:`rnnkit._core.bernoulli_`
(so they are the same for any thread count and any SIMD path, and cost a
fraction of a NumPy draw); masks are held in real time, indexed by the original
batch row: a mask means the same thing to every implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _cells, _core

__all__ = [
    "LN_EPS",
    "RATE_OPTIONS",
    "CellMasks",
    "Masks",
    "Options",
    "check_masks",
    "draw_masks",
    "keep_multiplier",
    "mask_key",
    "mask_rng",
    "zoneout_flags",
]

LN_EPS = 1e-5
"""The layer-norm epsilon (PyTorch's ``nn.LayerNorm`` default)."""

RATE_OPTIONS = ("dropout", "recurrent_dropout", "zoneout")


@dataclass(frozen=True)
class Options:
    """The option values of one layer, validated for its cell.

    Examples
    --------
    >>> Options(zoneout=0.1).validated("gru").steps
    True
    >>> Options(proj_size=2).validated("gru")
    Traceback (most recent call last):
    ...
    ValueError: proj_size is an option of LSTM only; gru does not take it (got 2)
    """

    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    zoneout: float = 0.0
    layer_norm: bool = False
    proj_size: int = 0
    forget_bias: float = 0.0

    def validated(self, cell: str, hidden_size: int | None = None) -> Options:
        """Checks every value for ``cell``; returns ``self``.

        Raises
        ------
        ValueError
            A rate outside [0, 1), an option the cell does not take, or
            ``proj_size`` outside [0, hidden_size).
        """
        spec = _cells.get(cell)
        for name in RATE_OPTIONS:
            p = getattr(self, name)
            if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)):
                raise TypeError(f"{name} must be a float in [0, 1), got {p!r}")
            if not 0.0 <= float(p) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p!r}")
        if not isinstance(self.layer_norm, (bool, np.bool_)):
            raise TypeError(f"layer_norm must be a bool, got {self.layer_norm!r}")
        p = self.proj_size
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 0:
            raise ValueError(f"proj_size must be a non-negative integer, got {p!r}")
        if hidden_size is not None and p >= hidden_size:
            raise ValueError(
                f"proj_size must be smaller than hidden_size={hidden_size}, got {p}"
            )
        for name, on in (
            ("layer_norm", bool(self.layer_norm)),
            ("proj_size", p != 0),
            ("forget_bias", self.forget_bias != 0),
        ):
            if on and name not in spec.options:
                owners = [
                    s.class_name for s in _cells.CELLS.values() if name in s.options
                ]
                raise ValueError(
                    f"{name} is an option of {' and '.join(owners)} only; "
                    f"{spec.name} does not take it (got {getattr(self, name)!r})"
                )
        return self

    @property
    def steps(self) -> bool:
        """True when some option changes the cell's step (the option-aware path)."""
        return bool(
            self.recurrent_dropout or self.zoneout or self.layer_norm or self.proj_size
        )

    @property
    def active(self) -> bool:
        """True when some option changes the forward (anything but ``forget_bias``)."""
        return self.steps or bool(self.dropout)

    def as_dict(self) -> dict[str, Any]:
        """The options that differ from the defaults, as constructor keywords."""
        out: dict[str, Any] = {}
        for name, default in (
            ("dropout", 0.0),
            ("recurrent_dropout", 0.0),
            ("zoneout", 0.0),
            ("layer_norm", False),
            ("proj_size", 0),
            ("forget_bias", 0.0),
        ):
            v = getattr(self, name)
            if v != default:
                out[name] = v
        return out


# ------------------------------------------------------------------ masks
@dataclass
class CellMasks:
    """The masks of one layer and direction, in real time.

    Attributes
    ----------
    recurrent : (B, S) multipliers 0 or 1/(1-p) on ``h_{t-1}`` before ``W_hh``.
    zoneout_h : (T, B, S) bool, True where ``h`` keeps its previous value.
    zoneout_c : (T, B, H) bool, the same for the LSTM's ``c``.
    """

    recurrent: np.ndarray | None = None
    zoneout_h: np.ndarray | None = None
    zoneout_c: np.ndarray | None = None


@dataclass
class Masks:
    """Every mask of one training forward of a stacked layer.

    Attributes
    ----------
    cells : one :class:`CellMasks` per layer and direction, index ``l*D + d``.
    dropout : per layer k < L-1, the (T, B, D*S) multipliers 0 or 1/(1-p) on its
        output (None without ``dropout``).

    Shapes
    ------
    See :class:`CellMasks`; T and B are the forward's, S = P or H.
    """

    cells: list[CellMasks] = field(default_factory=list)
    dropout: list[np.ndarray | None] = field(default_factory=list)


def mask_key(rng: np.random.Generator) -> int:
    """One mask's 64-bit key: ``int(rng.integers(0, 2**64, dtype=np.uint64))``.

    Examples
    --------
    >>> mask_key(np.random.default_rng(0)) == mask_key(np.random.default_rng(0))
    True
    """
    return int(rng.integers(0, 2**64, dtype=np.uint64))


def keep_multiplier(
    rng: np.random.Generator, shape: tuple[int, ...], p: float, dtype: Any
) -> np.ndarray:
    """Inverted-dropout multipliers: ``1/(1-p)`` where ``u >= p``, else 0.

    One key is drawn from ``rng`` (:func:`mask_key`); element i (C order) keeps
    its unit where ``u_i >= round(p 2**32)``, ``u_i`` the 32-bit uniform of the
    counter-based generator of (key, i) (:func:`rnnkit._core.bernoulli_`). The
    same draws for either layer dtype, any thread count and any SIMD path.

    Shapes
    ------
    out : ``shape``, of ``dtype`` (float32 or float64).

    Examples
    --------
    >>> m = keep_multiplier(np.random.default_rng(0), (2, 3), 0.5, np.float64)
    >>> sorted(set(m.ravel().tolist())) in ([0.0, 2.0], [0.0], [2.0])
    True
    """
    out = np.empty(shape, dtype=dtype)
    _core.bernoulli_(out, p, mask_key(rng), 1.0 / (1.0 - p))
    return out


def zoneout_flags(
    rng: np.random.Generator, shape: tuple[int, ...], p: float
) -> np.ndarray:
    """Zoneout flags: True (keep the previous value) where ``u_i < round(p 2**32)``.

    One key from ``rng`` (:func:`mask_key`), ``u_i`` as in :func:`keep_multiplier`.

    Shapes
    ------
    out : ``shape``, bool.

    Examples
    --------
    >>> zoneout_flags(np.random.default_rng(0), (2, 3), 0.0).any()
    np.False_
    """
    flags = np.empty(shape, dtype=bool)
    _core.bernoulli_(flags, p, mask_key(rng))
    return flags


def draw_masks(
    options: Options,
    rng: np.random.Generator,
    *,
    cell: str,
    T: int,
    B: int,
    H: int,
    num_layers: int,
    num_directions: int,
    dtype: Any,
) -> Masks:
    """Draws every mask of one training forward, in the documented order.

    Shapes
    ------
    See :class:`Masks`; S = ``options.proj_size`` or H.

    Examples
    --------
    >>> m = draw_masks(Options(recurrent_dropout=0.5), np.random.default_rng(0),
    ...                cell="gru", T=3, B=2, H=4, num_layers=1, num_directions=1,
    ...                dtype=np.float64)
    >>> m.cells[0].recurrent.shape, np.unique(m.cells[0].recurrent).tolist()
    ((2, 4), [0.0, 2.0])
    """
    S = options.proj_size or H
    paired = _cells.get(cell).has_cell_state
    out = Masks()
    for k in range(num_layers):
        for _ in range(num_directions):
            cm = CellMasks()
            if options.recurrent_dropout:
                cm.recurrent = keep_multiplier(
                    rng, (B, S), options.recurrent_dropout, dtype
                )
            if options.zoneout:
                cm.zoneout_h = zoneout_flags(rng, (T, B, S), options.zoneout)
                if paired:
                    cm.zoneout_c = zoneout_flags(rng, (T, B, H), options.zoneout)
            out.cells.append(cm)
        if k < num_layers - 1:
            out.dropout.append(
                keep_multiplier(rng, (T, B, num_directions * S), options.dropout, dtype)
                if options.dropout
                else None
            )
    return out


def mask_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """The layer's mask generator: a stream of its own, derived from ``seed``.

    An int seeds ``SeedSequence(seed).spawn(1)[0]`` (independent of the stream
    the parameters are drawn from), a generator gives a child (``spawn``), None
    fresh entropy.

    Examples
    --------
    >>> a, b = mask_rng(3), mask_rng(3)
    >>> bool(a.random() == b.random())
    True
    """
    if isinstance(seed, np.random.Generator):
        return seed.spawn(1)[0]
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])


def check_masks(
    masks: Any,
    options: Options,
    *,
    cell: str,
    T: int,
    B: int,
    H: int,
    num_layers: int,
    num_directions: int,
    dtype: Any,
) -> Masks:
    """Validates masks given to ``forward(masks=...)``; returns them, converted.

    Every mask the options need must be there with the shape of
    :func:`draw_masks` (dropout and recurrent masks become ``dtype``, C-contiguous;
    zoneout flags bool), and none that they do not.

    Raises
    ------
    TypeError
        ``masks`` is not a :class:`Masks`.
    ValueError
        A missing, unexpected or wrongly shaped mask, named by its place
        (``masks.cells[1].recurrent``).
    """
    if not isinstance(masks, Masks):
        raise TypeError(f"masks must be an rnnkit Masks, got {type(masks).__name__}")
    S = options.proj_size or H
    L, D = num_layers, num_directions
    paired = _cells.get(cell).has_cell_state
    if len(masks.cells) != L * D:
        raise ValueError(
            f"masks.cells must hold {L * D} CellMasks (one per layer and "
            f"direction), got {len(masks.cells)}"
        )
    if len(masks.dropout) != L - 1:
        raise ValueError(
            f"masks.dropout must hold {L - 1} entries (one per layer but the "
            f"last), got {len(masks.dropout)}"
        )

    def one(name: str, a: Any, on: bool, shape: tuple[int, ...], kind: Any) -> Any:
        if not on:
            if a is not None:
                raise ValueError(f"{name} must be None: its option is off")
            return None
        if a is None:
            raise ValueError(f"{name} is missing (shape {shape})")
        arr = np.asarray(a)
        if arr.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
        return np.ascontiguousarray(arr, dtype=kind)

    out = Masks()
    for i, cm in enumerate(masks.cells):
        pre = f"masks.cells[{i}]"
        out.cells.append(
            CellMasks(
                one(
                    pre + ".recurrent",
                    cm.recurrent,
                    bool(options.recurrent_dropout),
                    (B, S),
                    dtype,
                ),
                one(
                    pre + ".zoneout_h",
                    cm.zoneout_h,
                    bool(options.zoneout),
                    (T, B, S),
                    bool,
                ),
                one(
                    pre + ".zoneout_c",
                    cm.zoneout_c,
                    bool(options.zoneout) and paired,
                    (T, B, H),
                    bool,
                ),
            )
        )
    for k, m in enumerate(masks.dropout):
        out.dropout.append(
            one(f"masks.dropout[{k}]", m, bool(options.dropout), (T, B, D * S), dtype)
        )
    return out
