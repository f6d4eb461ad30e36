"""The cell registry: everything rnnkit knows about a recurrent cell, written once.

Every other module (layers, models, checkpoints, the reference, the benchmarks, the
text model, the CLI) asks this one for a cell's gate count, state kind, accepted
nonlinearities and PyTorch parameter names and shapes. Adding a cell is one entry
here, a kernel (``csrc/<cell>.cpp`` + the C++ cell list in ``csrc/cells.h``), a
reference (``rnnkit/reference/<cell>.py``) and an entry in the shared test suite.

Names are PyTorch's: ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
``bias_hh_l{k}``, with ``_reverse`` for the backward direction; ``weight_ih`` is
(G*H, I) for the first layer and (G*H, D*H) above it, ``weight_hh`` is (G*H, H).

Cell options (issue 12) add tensors per layer and direction, after the four above:
``weight_hr_l{k}`` (P, H) with ``proj_size=P`` (PyTorch's LSTMP; then ``h`` has size
P, ``weight_hh`` is (G*H, P) and layer k > 0 reads D*P features), and with
``layer_norm=True`` the layer-norm gains ``ln_weight_ih_l{k}`` (G*H,),
``ln_weight_hh_l{k}`` (G*H,) and, for a cell with a cell state,
``ln_weight_c_l{k}`` (H,) and ``ln_bias_c_l{k}`` (H,). The equations are in
:mod:`rnnkit.reference.options`; :attr:`CellSpec.options` lists what a cell takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CellSpec:
    """What one cell is: its names, its gate rows and its state.

    Attributes
    ----------
    name : the cell's key, lower case (``"lstm"``); also the C++ name.
    class_name : the layer class and ``torch.nn`` module name (``"LSTM"``).
    gates : gate rows per hidden unit, G (weights have G*H rows).
    gate_names : the gates in PyTorch's order (``("i", "f", "g", "o")``).
    has_cell_state : True when the state is a pair ``(h, c)`` (LSTM).
    nonlinearities : the values ``nonlinearity=`` accepts; the first is the default.
        Cells with fixed activations accept only ``("tanh",)``.
    options : the cell-specific layer options it takes (``"layer_norm"``,
        ``"proj_size"``, ``"forget_bias"``); ``dropout``, ``recurrent_dropout`` and
        ``zoneout`` are common to every cell.
    """

    name: str
    class_name: str
    gates: int
    gate_names: tuple[str, ...]
    has_cell_state: bool
    nonlinearities: tuple[str, ...] = ("tanh",)
    options: tuple[str, ...] = ()
    cls: list[Any] = field(default_factory=list, compare=False, repr=False)

    @property
    def layer_class(self) -> type:
        """The layer class registered for this cell (``rnnkit.LSTM``)."""
        if not self.cls:
            raise LookupError(f"no layer class registered for cell {self.name!r}")
        return self.cls[0]

    def param_shapes(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        bias: bool = True,
        *,
        proj_size: int = 0,
        layer_norm: bool = False,
    ) -> dict[str, tuple[int, ...]]:
        """PyTorch's parameter names and shapes, in its storage order.

        Parameters
        ----------
        input_size, hidden_size : int
            I and H.
        num_layers : int, default 1
            L.
        bidirectional : bool, default False
            D = 2 adds the ``_reverse`` tensors of every layer.
        bias : bool, default True
            Without it the ``bias_*`` names are absent.
        proj_size : int, default 0
            P > 0 adds ``weight_hr`` (P, H) and makes ``h`` P wide (cells whose
            :attr:`options` include ``"proj_size"``).
        layer_norm : bool, default False
            Adds the ``ln_*`` gains (and the cell-state bias) of the module
            docstring (cells whose :attr:`options` include ``"layer_norm"``).

        Raises
        ------
        ValueError
            ``proj_size`` or ``layer_norm`` for a cell that does not take it.

        Examples
        --------
        >>> get("gru").param_shapes(5, 2, bias=False)
        {'weight_ih_l0': (6, 5), 'weight_hh_l0': (6, 2)}
        >>> get("lstm").param_shapes(3, 4, proj_size=2, bias=False)
        {'weight_ih_l0': (16, 3), 'weight_hh_l0': (16, 2), 'weight_hr_l0': (2, 4)}
        """
        for name, on in (("proj_size", proj_size), ("layer_norm", layer_norm)):
            if on and name not in self.options:
                raise ValueError(f"cell {self.name!r} does not take {name}")
        G, H = self.gates, hidden_size
        S = proj_size or H  # the size of h
        D = 2 if bidirectional else 1
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else D * S
            for direction in range(D):
                s = suffix(layer, direction)
                shapes["weight_ih" + s] = (G * H, in_size)
                shapes["weight_hh" + s] = (G * H, S)
                if bias:
                    shapes["bias_ih" + s] = (G * H,)
                    shapes["bias_hh" + s] = (G * H,)
                if proj_size:
                    shapes["weight_hr" + s] = (proj_size, H)
                if layer_norm:
                    shapes["ln_weight_ih" + s] = (G * H,)
                    shapes["ln_weight_hh" + s] = (G * H,)
                    if self.has_cell_state:
                        shapes["ln_weight_c" + s] = (H,)
                        shapes["ln_bias_c" + s] = (H,)
        return shapes


def suffix(layer: int, direction: int) -> str:
    """PyTorch's parameter-name suffix: ``_l{layer}``, ``_reverse`` for direction 1.

    Examples
    --------
    >>> suffix(0, 0), suffix(2, 1)
    ('_l0', '_l2_reverse')
    """
    return f"_l{layer}" + ("_reverse" if direction else "")


CELLS: dict[str, CellSpec] = {
    spec.name: spec
    for spec in (
        CellSpec("rnn", "RNN", 1, ("h",), False, ("tanh", "relu", "sigmoid")),
        CellSpec(
            "lstm",
            "LSTM",
            4,
            ("i", "f", "g", "o"),
            True,
            options=("layer_norm", "proj_size", "forget_bias"),
        ),
        CellSpec("gru", "GRU", 3, ("r", "z", "n"), False, options=("layer_norm",)),
    )
}
"""Every cell by name, in the order the C++ cell list gives them."""

BY_CLASS_NAME: dict[str, CellSpec] = {s.class_name: s for s in CELLS.values()}


def get(name: str) -> CellSpec:
    """The spec of cell ``name`` (``"lstm"``, or the class name ``"LSTM"``).

    Raises
    ------
    ValueError
        An unknown cell; the message lists the known ones.

    Examples
    --------
    >>> get("LSTM").gates, get("lstm").has_cell_state, get("rnn").nonlinearities
    (4, True, ('tanh', 'relu', 'sigmoid'))
    """
    spec = CELLS.get(name) or BY_CLASS_NAME.get(name)
    if spec is None:
        raise ValueError(f"cell must be one of {sorted(CELLS)}, got {name!r}")
    return spec


def register(name: str) -> Any:
    """Class decorator: makes ``cls`` the (fast-path) layer class of cell ``name``.

    Records the class as ``CELLS[name].layer_class`` and sets ``cls.cell = name``,
    so the class names its cell once, in the decorator. Subclasses that compute the
    same cell another way (``rnnkit.reference.LSTM``) inherit ``cell`` and are not
    registered here.

    Examples
    --------
    >>> import rnnkit as rk
    >>> get("lstm").layer_class is rk.LSTM, rk.LSTM.cell
    (True, 'lstm')
    """

    def deco(cls: type) -> type:
        spec = CELLS[name]
        spec.cls[:] = [cls]
        setattr(cls, "cell", spec.name)  # noqa: B010 - any class, not only layers
        return cls

    return deco
