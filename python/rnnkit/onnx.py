"""ONNX export: rnnkit models as inference graphs that onnxruntime (or any ONNX
runtime) runs without rnnkit.

    import rnnkit as rk
    rk.onnx.export(model, "model.onnx")      # a layer, Sequential, CharLM
    rk.onnx.export(seq2seq, "m.onnx")        # m.encoder.onnx, m.decoder.onnx

Needs the ``onnx`` package (``pip install "rnnkit[onnx]"``, which also installs
onnxruntime to run the graphs); the graph is written with ``onnx.helper`` only,
no PyTorch involved.

The graph
---------
Recurrent layers become ONNX's own ``LSTM``, ``GRU`` and ``RNN`` operators, one
node per layer of a stack (both directions in one node, ``direction=
"bidirectional"``), with the weights converted from PyTorch's gate order:

=====  ==============  ===========  =========================================
cell   rnnkit/PyTorch  ONNX         notes
=====  ==============  ===========  =========================================
LSTM   i, f, g, o      i, o, f, c   no peepholes
GRU    r, z, n         z, r, h      ``linear_before_reset=1`` (PyTorch's GRU)
RNN    h               h            ``activations`` Tanh, Relu or Sigmoid
=====  ==============  ===========  =========================================

``W`` and ``R`` are (D, G*H, in) and (D, G*H, H); ``B`` holds ``b_ih`` then
``b_hh`` (D, 2*G*H). ONNX's ``Y`` (T, D, B, H) is transposed and reshaped to
rnnkit's (T, B, D*H); the per-layer ``Y_h`` / ``Y_c`` (D, B, H) are concatenated
into rnnkit's final states (L*D, B, H). ``Embedding`` is a ``Gather`` (token ids
int64), ``Linear`` a ``MatMul`` + ``Add`` (+ its activation), ``Dropout`` the
identity (inference).

Inputs and outputs, in this order (batch and time axes dynamic; the first input
is in the model's own layout and dtype):

``x``
    A layer: (T, B, I), or (B, T, I) with ``batch_first``. A ``Sequential``:
    batch-first (B, T, I) floats or (B, T) int64 token ids; with
    ``input="vector"`` (B, I) or (B,).
``lengths`` (B,) int64, optional
    Valid steps per row (rnnkit's ``lengths``: padded steps output zeros and
    leave the state alone; the reverse direction starts at each row's own last
    step), passed to every recurrent node as ``sequence_lens``. It defaults to
    "every row has all T steps", so a caller may leave it out; values above T
    are clipped to T. Only for sequence input, and left out with
    ``export(..., lengths=False)``.
``steps`` (1,) int64, ``input="vector"`` only
    Steps to run; defaults to the model's ``steps`` (required when it has none).
``h0``, ``c0`` (L*D, B, H), optional
    Initial states (``c0`` for LSTM); zeros when not fed. A ``Sequential`` with
    several recurrent layers has ``h0_0``, ``c0_0``, ``h0_1``, ... one pair per
    recurrent layer, in order.

Outputs: ``output`` (what ``forward(..., train=False)`` returns), then ``h_n``
(and ``c_n``) — or ``h_n_0``, ``c_n_0``, ... — the final states of each
recurrent layer, to feed back as ``h0`` / ``c0`` to continue a sequence.

The optional inputs are *overridable initializers* (an ONNX graph input with a
default value of batch 1, broadcast with ``Expand``): onnxruntime lists them in
``session.get_overridable_initializers()`` rather than ``get_inputs()``, and
feeding them by name replaces the default.

``EncoderDecoder`` writes two graphs next to each other: ``<stem>.encoder.onnx``
(the encoder ``Sequential``: ``src``, ``lengths`` -> ``output`` and its final
states) and ``<stem>.decoder.onnx`` (the decoder ``Sequential`` run on a (B, T)
slice of target ids, usually one step: ids, ``h0`` [, ``c0``] -> logits and
final states). The encoder's last recurrent layer's final state is the
decoder's first ``h0`` / ``c0`` (as :meth:`rnnkit.EncoderDecoder.forward` hands it
over); feed each step's final states back for the next step.

Every file carries ``metadata_props``: ``rnnkit.config`` (the architecture as in
a checkpoint), ``rnnkit.vocab`` and ``rnnkit.meta`` (JSON), ``rnnkit.version``,
so a server needs nothing else (a ``CharLM``'s characters are
``json.loads(props["rnnkit.vocab"])["chars"]``).

Shapes
------
T steps, B batch, I input features, H hidden, D directions, L layers, G gates.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _cells
from ._atomic import write_atomic
from ._config import __version__
from .layers import _Recurrent
from .models import EncoderDecoder, Sequential
from .modules import Dropout, Embedding, Linear

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "export", "to_onnx"]

DEFAULT_OPSET = 17
"""The opset written when ``opset`` is None (onnxruntime >= 1.12 runs it)."""
MIN_OPSET = 14
"""The oldest opset the graphs are valid in (LSTM/GRU/RNN-14, Reshape-14)."""

# ONNX's gate order, by the names of rnnkit's cell registry (PyTorch's order).
_ONNX_GATES = {"lstm": ("i", "o", "f", "g"), "gru": ("z", "r", "n"), "rnn": ("h",)}
_ONNX_OP = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
_ACT = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid"}
_BIG = np.iinfo(np.int64).max // 2  # "all steps", clipped to T in the graph


def _onnx() -> Any:
    try:
        import onnx  # the top-level package (absolute import)
    except ImportError as e:
        raise ImportError(
            "rnnkit.onnx needs the onnx package: pip install 'rnnkit[onnx]' "
            "(onnx + onnxruntime)"
        ) from e
    return onnx


class _Graph:
    """Nodes, initializers, inputs and outputs of one graph being built."""

    def __init__(self, onnx: Any, dtype: np.dtype) -> None:
        self.onnx, self.h = onnx, onnx.helper
        self.dtype = np.dtype(dtype)
        self.elem = self.h.np_dtype_to_tensor_dtype(self.dtype)
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.inputs: list[Any] = []
        self.outputs: list[Any] = []
        self._n = 0

    def name(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def const(self, value: Any, base: str = "c", dtype: Any = None) -> str:
        arr = np.asarray(value, dtype=dtype if dtype is not None else self.dtype)
        name = self.name(base)
        self.inits.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def ints(self, values: Sequence[int], base: str = "shape") -> str:
        return self.const(np.asarray(values, dtype=np.int64), base, np.int64)

    def op(self, op_type: str, inputs: Sequence[str], n_out: int = 1, **attrs: Any):
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(self.h.make_node(op_type, list(inputs), outs, **attrs))
        return outs[0] if n_out == 1 else outs

    def input(self, name: str, elem: int, shape: Sequence[Any]) -> str:
        self.inputs.append(self.h.make_tensor_value_info(name, elem, list(shape)))
        return name

    def optional_input(
        self, name: str, default: np.ndarray, shape: Sequence[Any]
    ) -> str:
        """A graph input with a default value (an overridable initializer)."""
        elem = self.h.np_dtype_to_tensor_dtype(default.dtype)
        self.inputs.append(self.h.make_tensor_value_info(name, elem, list(shape)))
        self.inits.append(self.onnx.numpy_helper.from_array(default, name))
        return name

    def output(self, value: str, name: str, elem: int, shape: Sequence[Any]) -> None:
        self.nodes.append(self.h.make_node("Identity", [value], [name]))
        self.outputs.append(self.h.make_tensor_value_info(name, elem, list(shape)))

    def dim(self, value: str, axis: int) -> str:
        """(1,) int64: ``value.shape[axis]``."""
        shape = self.op("Shape", [value])  # (Shape's start/end need opset 15)
        return self.op("Slice", [shape, self.ints([axis]), self.ints([axis + 1])])


# ------------------------------------------------------------------ recurrent
def _stack(layer: _Recurrent, l: int, kind: str) -> np.ndarray:
    """(D, G*H, ·) weights or (D, 2*G*H) biases of layer ``l`` in ONNX gate order."""
    spec, H = layer.spec, layer.hidden_size
    perm = [spec.gate_names.index(g) for g in _ONNX_GATES[spec.name]]

    def reorder(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a[j * H : (j + 1) * H] for j in perm], axis=0)

    out = []
    for d in range(layer.num_directions):
        s = _cells.suffix(l, d)
        p = layer.params
        if kind == "B":
            out.append(
                np.concatenate([reorder(p["bias_ih" + s]), reorder(p["bias_hh" + s])])
            )
        else:
            out.append(reorder(p[("weight_ih" if kind == "W" else "weight_hh") + s]))
    return np.ascontiguousarray(np.stack(out))


def _check_exportable(layer: _Recurrent) -> None:
    """ONNX's LSTM/GRU/RNN operators have no projection, layer norm or zoneout
    (whose inference output differs from the plain cell's); dropout and recurrent
    dropout act in training only and export as the plain cell."""
    o = layer.options
    for name in ("proj_size", "layer_norm", "zoneout"):
        if getattr(o, name):
            raise ValueError(
                f"cannot export {layer!r} to ONNX: the {layer.spec.class_name} "
                f"operator has no {name} (got {name}={getattr(o, name)!r})"
            )


def _recurrent(
    g: _Graph,
    layer: _Recurrent,
    x: str,
    batch: str,
    seq_lens: str | None,
    state_names: tuple[str, str],
    tag: str,
) -> tuple[str, str, str | None]:
    """Adds ``layer`` run on time-major ``x`` (T, B, F); returns y (T, B, D*H),
    h_n and c_n (L*D, B, H; c_n None without a cell state)."""
    _check_exportable(layer)
    spec = layer.spec
    L, D, H = layer.num_layers, layer.num_directions, layer.hidden_size
    lstm = spec.has_cell_state
    full = g.op("Concat", [g.ints([L * D]), batch, g.ints([H])], axis=0)
    zero = np.zeros((L * D, 1, H), dtype=g.dtype)
    state_shape = [L * D, "batch", H]
    h0 = g.op("Expand", [g.optional_input(state_names[0], zero, state_shape), full])
    c0 = (
        g.op("Expand", [g.optional_input(state_names[1], zero, state_shape), full])
        if lstm
        else None
    )
    attrs: dict[str, Any] = {
        "hidden_size": H,
        "direction": "bidirectional" if D == 2 else "forward",
    }
    if spec.name == "gru":
        attrs["linear_before_reset"] = 1
    if spec.name == "rnn":
        attrs["activations"] = [_ACT[layer.nonlinearity]] * D
    hs, cs = [], []
    y = x
    for l in range(L):
        lo, hi = g.ints([l * D]), g.ints([(l + 1) * D])
        axis0 = g.ints([0])
        ins = [
            y,
            g.const(_stack(layer, l, "W"), f"{tag}_W_l{l}"),
            g.const(_stack(layer, l, "R"), f"{tag}_R_l{l}"),
            g.const(_stack(layer, l, "B"), f"{tag}_B_l{l}") if layer.bias else "",
            seq_lens or "",
            g.op("Slice", [h0, lo, hi, axis0]),
        ]
        if lstm:
            assert c0 is not None
            ins.append(g.op("Slice", [c0, lo, hi, axis0]))
        outs = g.op(_ONNX_OP[spec.name], ins, n_out=3 if lstm else 2, **attrs)
        y4, yh = outs[0], outs[1]
        hs.append(yh)
        if lstm:
            cs.append(outs[2])
        # (T, D, B, H) -> (T, B, D, H) -> (T, B, D*H)
        y = g.op(
            "Reshape", [g.op("Transpose", [y4], perm=[0, 2, 1, 3]), g.ints([0, 0, -1])]
        )
    hn = hs[0] if L == 1 else g.op("Concat", hs, axis=0)
    cn = (cs[0] if L == 1 else g.op("Concat", cs, axis=0)) if lstm else None
    return y, hn, cn


def _lengths(g: _Graph, x_tm: str, batch: str) -> str:
    """The optional ``lengths`` input as int32 ``sequence_lens`` (B,), clipped to T."""
    lengths = g.optional_input("lengths", np.array([_BIG], dtype=np.int64), ["batch"])
    T = g.dim(x_tm, 0)
    clipped = g.op("Min", [g.op("Expand", [lengths, batch]), T])
    return g.op("Cast", [clipped], to=g.onnx.TensorProto.INT32)


def _linear(g: _Graph, m: Linear, x: str, tag: str) -> str:
    y = g.op("MatMul", [x, g.const(np.ascontiguousarray(m.params["weight"].T), tag)])
    if m.bias:
        y = g.op("Add", [y, g.const(m.params["bias"], f"{tag}_bias")])
    if m.activation is not None:
        y = g.op(_ACT[m.activation], [y])
    return y


def _state_names(k: int, many: bool) -> tuple[str, str, str, str]:
    s = f"_{k}" if many else ""
    return f"h0{s}", f"c0{s}", f"h_n{s}", f"c_n{s}"


# ---------------------------------------------------------------- the graphs
def _layer_graph(g: _Graph, layer: _Recurrent, lengths: bool) -> None:
    H, D = layer.hidden_size, layer.num_directions
    dims = ["batch", "time"] if layer.batch_first else ["time", "batch"]
    x = g.input("x", g.elem, dims + [layer.input_size])
    x_tm = g.op("Transpose", [x], perm=[1, 0, 2]) if layer.batch_first else x
    batch = g.dim(x_tm, 1)
    seq = _lengths(g, x_tm, batch) if lengths else None
    h0, c0, hn_name, cn_name = _state_names(0, False)
    y, hn, cn = _recurrent(g, layer, x_tm, batch, seq, (h0, c0), "rec")
    if layer.batch_first:
        y = g.op("Transpose", [y], perm=[1, 0, 2])
    g.output(y, "output", g.elem, dims + [D * H])
    state = [layer.num_layers * D, "batch", H]
    g.output(hn, hn_name, g.elem, state)
    if cn is not None:
        g.output(cn, cn_name, g.elem, state)


def _sequential_graph(
    g: _Graph, model: Sequential, lengths: bool, steps: int | None
) -> None:
    layers = model.layers
    seq_in = model.input == "sequence"
    first = layers[0]
    ids = isinstance(first, Embedding)
    if seq_in:
        shape: list[Any] = ["batch", "time"]
    else:
        shape = ["batch"]
    if not ids:
        shape.append(_in_features(model))
    x = g.input("x", g.onnx.TensorProto.INT64 if ids else g.elem, shape)
    batch = g.dim(x, 0)
    if seq_in:
        h = g.op("Transpose", [x], perm=[1, 0] if ids else [1, 0, 2])  # time-major
    else:
        h = x
    seq_lens = _lengths(g, h, batch) if (lengths and seq_in) else None
    T_steps: str | None = None
    if not seq_in:
        n = steps if steps is not None else model.steps
        if n is None:
            T_steps = g.input("steps", g.onnx.TensorProto.INT64, [1])
        else:
            default = np.array([n], dtype=np.int64)
            T_steps = g.optional_input("steps", default, [1])
    many = len(model._rec) > 1
    finals: list[tuple[str, str, str | None, _Recurrent]] = []
    is_seq = seq_in
    last_out = model.output == "last"
    out_dim: Any = None
    for i, m in enumerate(layers):
        tag = f"l{i}"
        if isinstance(m, _Recurrent):
            if not is_seq:
                assert T_steps is not None
                ones = g.ints([1, 1])
                h = g.op(
                    "Expand",
                    [
                        g.op("Unsqueeze", [h, g.ints([0])]),
                        g.op("Concat", [T_steps, ones], axis=0),
                    ],
                )
                is_seq = True
            k = len(finals)
            h0, c0, hn_name, cn_name = _state_names(k, many)
            y, hn, cn = _recurrent(g, m, h, batch, seq_lens, (h0, c0), tag)
            finals.append((hn_name, hn, cn, m))
            D, H = m.num_directions, m.hidden_size
            out_dim = D * H
            if i == model._rec[-1] and last_out:
                # the top layer's final state, both directions: (D, B, H) -> (B, D*H)
                top = g.op(
                    "Slice",
                    [
                        hn,
                        g.ints([(m.num_layers - 1) * D]),
                        g.ints([m.num_layers * D]),
                        g.ints([0]),
                    ],
                )
                h = g.op(
                    "Reshape",
                    [g.op("Transpose", [top], perm=[1, 0, 2]), g.ints([0, -1])],
                )
                is_seq = False
            else:
                h = y
        elif isinstance(m, Embedding):
            h = g.op("Gather", [g.const(m.params["weight"], f"{tag}_weight"), h])
            out_dim = m.embedding_dim
        elif isinstance(m, Linear):
            h = _linear(g, m, h, f"{tag}_weight")
            out_dim = m.out_features
        elif isinstance(m, Dropout):
            pass  # inference: the identity
        else:  # pragma: no cover - Sequential admits nothing else
            raise TypeError(f"cannot export layer {type(m).__name__}")
    if is_seq:
        h = g.op("Transpose", [h], perm=[1, 0, 2])  # batch-first
        g.output(h, "output", g.elem, ["batch", "time", out_dim])
    else:
        g.output(h, "output", g.elem, ["batch", out_dim])
    for hn_name, hn, cn, m in finals:
        state = [m.num_layers * m.num_directions, "batch", m.hidden_size]
        g.output(hn, hn_name, g.elem, state)
        if cn is not None:
            g.output(cn, hn_name.replace("h_n", "c_n", 1), g.elem, state)


def _in_features(model: Sequential) -> int:
    first = model.layers[0]
    if isinstance(first, Linear):
        return first.in_features
    if isinstance(first, _Recurrent):
        return first.input_size
    for m in model.layers:  # Dropout first: the next sized layer decides
        if isinstance(m, Linear):
            return m.in_features
        if isinstance(m, _Recurrent):
            return m.input_size
    raise ValueError("cannot tell the model's input size")  # pragma: no cover


def _finish(g: _Graph, name: str, opset: int, model: Any, doc: str) -> Any:
    onnx = g.onnx
    graph = g.h.make_graph(g.nodes, name, g.inputs, g.outputs, initializer=g.inits)
    proto = g.h.make_model(
        graph,
        opset_imports=[g.h.make_opsetid("", opset)],
        producer_name="rnnkit",
        producer_version=__version__,
        doc_string=doc,
    )
    # IR version of the opset, not the newest the onnx package knows, so that
    # older runtimes load the file
    proto.ir_version = min(onnx.IR_VERSION, 8 if opset <= 17 else onnx.IR_VERSION)
    props = {
        "rnnkit.version": __version__,
        "rnnkit.config": json.dumps(_config(model)),
        "rnnkit.vocab": json.dumps(getattr(model, "vocab", None) or {}),
        "rnnkit.meta": json.dumps(getattr(model, "meta", None) or {}),
    }
    g.h.set_model_props(proto, props)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _config(model: Any) -> Any:
    if isinstance(model, _Recurrent):
        from ._serial import module_config

        return module_config(model)
    return model.config()


def _check_opset(opset: int | None) -> int:
    if opset is None:
        return DEFAULT_OPSET
    if not isinstance(opset, int) or isinstance(opset, bool) or opset < MIN_OPSET:
        raise ValueError(f"opset must be an int >= {MIN_OPSET}, got {opset!r}")
    return opset


def to_onnx(
    model: Any,
    *,
    opset: int | None = None,
    lengths: bool = True,
    steps: int | None = None,
    dtype: Any = None,
) -> Any:
    """The inference graph of ``model`` as an ``onnx.ModelProto`` (not written).

    Parameters
    ----------
    model : RNN, LSTM, GRU, Sequential, EncoderDecoder or CharLM
        What to convert (its current weights are copied into the graph).
    opset : int, optional
        ONNX opset; default :data:`DEFAULT_OPSET`, at least :data:`MIN_OPSET`.
    lengths : bool, default True
        Give sequence-input graphs the optional ``lengths`` input.
    steps : int, optional
        Default steps for ``input="vector"`` models (else the model's ``steps``).
    dtype : {None, "float32", "float64"}
        Of the graph's weights, float inputs and outputs; None means the model's.
        onnxruntime's CPU ``LSTM``/``GRU``/``RNN`` kernels run float32 only, so a
        float64 model meant for onnxruntime is exported with ``dtype="float32"``.

    Returns
    -------
    onnx.ModelProto, or ``(encoder, decoder)`` for an ``EncoderDecoder``
        Checked with ``onnx.checker.check_model(full_check=True)``.

    Raises
    ------
    ImportError
        The ``onnx`` package is missing (``pip install 'rnnkit[onnx]'``).
    TypeError
        ``model`` is of a kind that cannot be exported.

    Examples
    --------
    >>> import rnnkit as rk
    >>> proto = rk.onnx.to_onnx(rk.GRU(3, 4, seed=0))
    >>> [i.name for i in proto.graph.input], [o.name for o in proto.graph.output]
    (['x', 'lengths', 'h0'], ['output', 'h_n'])
    """
    onnx = _onnx()
    opset = _check_opset(opset)
    if not isinstance(steps, (int, type(None))) or (steps is not None and steps < 1):
        raise ValueError(f"steps must be a positive int or None, got {steps!r}")
    from .text.model import CharLM

    if isinstance(model, CharLM):
        model = model.model
    if isinstance(model, EncoderDecoder):
        enc = to_onnx(model.encoder, opset=opset, lengths=lengths, dtype=dtype)
        dec = to_onnx(model.decoder, opset=opset, lengths=False, dtype=dtype)
        for part in (enc, dec):  # the whole model's vocabularies in both files
            onnx.helper.set_model_props(
                part,
                {
                    **{p.key: p.value for p in part.metadata_props},
                    "rnnkit.vocab": json.dumps(model.vocab or {}),
                    "rnnkit.meta": json.dumps(model.meta or {}),
                },
            )
        return enc, dec
    if dtype is not None and np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"dtype must be None, float32 or float64, got {dtype!r}")
    if isinstance(model, _Recurrent):
        g = _Graph(onnx, model.dtype if dtype is None else dtype)
        _layer_graph(g, model, lengths)
        doc = f"rnnkit {model!r}"
    elif isinstance(model, Sequential):
        g = _Graph(onnx, model.dtype if dtype is None else dtype)
        _sequential_graph(g, model, lengths, steps)
        doc = f"rnnkit {model!r}"
    else:
        raise TypeError(
            "model must be an RNN, LSTM, GRU, Sequential, EncoderDecoder or "
            f"CharLM, got {type(model).__name__}"
        )
    return _finish(g, "rnnkit", opset, model, doc)


def _atomic_write(path: str, data: bytes) -> None:
    def write(f: Any) -> None:
        f.write(data)

    write_atomic(path, write)


def export(
    model: Any,
    path: Any,
    *,
    opset: int | None = None,
    lengths: bool = True,
    steps: int | None = None,
    dtype: Any = None,
) -> list[str]:
    """Writes the inference graph of ``model`` to ``path`` (atomically).

    Parameters
    ----------
    model : RNN, LSTM, GRU, Sequential, EncoderDecoder or CharLM
        See the module docstring for the graph's inputs and outputs.
    path : str or os.PathLike
        The ``.onnx`` file. An ``EncoderDecoder`` writes ``<stem>.encoder.onnx``
        and ``<stem>.decoder.onnx`` instead (``<stem>`` is ``path`` without its
        ``.onnx`` suffix).
    opset, lengths, steps, dtype
        As for :func:`to_onnx`.

    Returns
    -------
    list of str
        The files written.

    Shapes
    ------
    As the model's ``forward``: see the module docstring.

    Examples
    --------
    >>> import os, tempfile, rnnkit as rk
    >>> model = rk.Sequential(rk.Embedding(10, 4, seed=0), rk.LSTM(4, 8, seed=1),
    ...                       rk.Linear(8, 10, seed=2))
    >>> out = os.path.join(tempfile.mkdtemp(), "m.onnx")
    >>> rk.onnx.export(model, out) == [out]
    True
    """
    path = os.fspath(path)
    proto = to_onnx(model, opset=opset, lengths=lengths, steps=steps, dtype=dtype)
    if isinstance(proto, tuple):
        stem = path[: -len(".onnx")] if path.endswith(".onnx") else path
        paths = [f"{stem}.encoder.onnx", f"{stem}.decoder.onnx"]
        for p, part in zip(paths, proto):
            _atomic_write(p, part.SerializeToString())
        return paths
    _atomic_write(path, proto.SerializeToString())
    return [path]
