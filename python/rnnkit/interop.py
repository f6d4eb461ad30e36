"""PyTorch interop: :func:`to_torch` builds the equivalent ``torch.nn`` module with
the same weights; :func:`from_torch` goes back.

    tm = rk.to_torch(model)             # torch.nn.Module, same forward contract
    model = rk.from_torch(tm)           # an rnnkit model with the same weights

PyTorch is optional (rnnkit never imports it on its own); these two functions
import it when called and raise an ``ImportError`` saying how to install it.

What maps to what
-----------------
==========================  ==================================================
rnnkit                      torch
==========================  ==================================================
``RNN``, ``LSTM``, ``GRU``  ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` (same
                            arguments; ``RNN(nonlinearity="sigmoid")`` has no
                            torch equivalent and is refused)
``Linear``                  :class:`TorchLinear` (a ``torch.nn.Linear`` that
                            also applies rnnkit's ``activation``)
``Embedding``, ``Dropout``  ``torch.nn.Embedding`` / ``torch.nn.Dropout``
``Sequential``              :class:`TorchSequential`: a ``torch.nn.Sequential``
                            (children named ``0``, ``1``, ... so ``state_dict``
                            keys are rnnkit's) whose ``forward(x, lengths=None,
                            state=None, steps=None)`` is ``Sequential.forward``'s:
                            batch-first, ``input``/``output``/``steps``, variable
                            lengths through packed sequences, ``final_state``
``EncoderDecoder``          :class:`TorchEncoderDecoder`: ``encoder`` and
                            ``decoder`` children, ``forward(src, tgt_in,
                            lengths=None)``
``CharLM``                  its model
==========================  ==================================================

:func:`from_torch` also takes a plain ``torch.nn.Sequential`` of those blocks (as
``rk.Sequential`` with the default modes). ``dropout`` between stacked layers and
``proj_size`` (LSTMP) move both ways; rnnkit's ``recurrent_dropout``, ``zoneout``
and ``layer_norm`` have no torch equivalent and are refused by :func:`to_torch`.
Weights are copied both ways, exactly (``float32`` or ``float64``).

(``TorchSequential`` and friends exist once torch is imported:
``rk.interop.torch_classes()``.)
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from . import _cells
from .layers import _Recurrent
from .models import EncoderDecoder, Sequential
from .modules import Dropout, Embedding, Linear

__all__ = ["from_torch", "to_torch", "torch_classes"]


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            "rnnkit.to_torch / from_torch need PyTorch: pip install torch"
        ) from e
    return torch


@functools.cache
def torch_classes() -> dict[str, Any]:
    """``{"TorchLinear", "TorchSequential", "TorchEncoderDecoder"}``, defined on
    first use (they subclass torch's modules, so torch must be importable)."""
    torch = _torch()
    nn = torch.nn
    Linear_: Any = nn.Linear
    Sequential_: Any = nn.Sequential
    Module_: Any = nn.Module
    acts = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}

    class TorchLinear(Linear_):
        """``torch.nn.Linear`` followed by rnnkit's ``activation`` (None: none)."""

        def __init__(self, *args: Any, activation: str | None = None, **kw: Any):
            super().__init__(*args, **kw)
            self.activation = activation

        def forward(self, x: Any) -> Any:
            y = super().forward(x)
            return y if self.activation is None else acts[self.activation](y)

        def extra_repr(self) -> str:
            return super().extra_repr() + f", activation={self.activation!r}"

    rec_types = (nn.RNN, nn.LSTM, nn.GRU)

    def top_state(m: Any, hn: Any) -> Any:
        h = hn[0] if isinstance(m, nn.LSTM) else hn
        D = 2 if m.bidirectional else 1
        top = (m.num_layers - 1) * D
        return torch.cat([h[top + d] for d in range(D)], dim=-1)

    class TorchSequential(Sequential_):
        """rnnkit's :class:`~rnnkit.Sequential` in torch: same layers, names,
        forward contract (``forward(x, lengths=None, state=None, steps=None)``,
        batch-first, ``final_state`` after each call)."""

        def __init__(
            self,
            *layers: Any,
            input: str = "sequence",
            output: str = "sequence",
            steps: int | None = None,
        ) -> None:
            super().__init__(*layers)
            self.input, self.output, self.steps = input, output, steps
            self.final_state: list[Any] = []

        def forward(
            self,
            x: Any,
            lengths: Any = None,
            state: Any = None,
            steps: int | None = None,
        ) -> Any:
            mods = list(self)
            rec = [i for i, m in enumerate(mods) if isinstance(m, rec_types)]
            seq = self.input == "sequence"
            h = x.transpose(0, 1) if seq else x
            T = steps if steps is not None else self.steps
            if lengths is not None:
                lengths = torch.as_tensor(lengths).to("cpu", torch.int64)
            final: list[Any] = []
            for i, m in enumerate(mods):
                if isinstance(m, rec_types):
                    if not seq:
                        h, seq = h.expand(T, *h.shape), True
                    hx = None if state is None else state[len(final)]
                    inp = h.transpose(0, 1) if m.batch_first else h
                    if lengths is None:
                        y, hn = m(inp, hx)
                    else:
                        packed = nn.utils.rnn.pack_padded_sequence(
                            inp,
                            lengths,
                            batch_first=m.batch_first,
                            enforce_sorted=False,
                        )
                        out, hn = m(packed, hx)
                        y, _ = nn.utils.rnn.pad_packed_sequence(
                            out, batch_first=m.batch_first, total_length=h.shape[0]
                        )
                    final.append(hn)
                    if i == rec[-1] and self.output == "last":
                        h, seq = top_state(m, hn), False
                    else:
                        h = y.transpose(0, 1) if m.batch_first else y
                else:
                    h = m(h)
            self.final_state = final
            return h.transpose(0, 1) if seq else h

        def extra_repr(self) -> str:
            return f"input={self.input!r}, output={self.output!r}, steps={self.steps!r}"

    class TorchEncoderDecoder(Module_):
        """rnnkit's :class:`~rnnkit.EncoderDecoder` in torch: the encoder's last
        recurrent layer's final state starts the decoder's first."""

        def __init__(self, encoder: Any, decoder: Any) -> None:
            super().__init__()
            self.encoder, self.decoder = encoder, decoder

        def forward(self, src: Any, tgt_in: Any, lengths: Any = None) -> Any:
            self.encoder(src, lengths=lengths)
            n = sum(isinstance(m, rec_types) for m in self.decoder)
            state = [self.encoder.final_state[-1]] + [None] * (n - 1)
            return self.decoder(tgt_in, state=state)

    return {
        "TorchLinear": TorchLinear,
        "TorchSequential": TorchSequential,
        "TorchEncoderDecoder": TorchEncoderDecoder,
    }


def _tdtype(torch: Any, dtype: np.dtype) -> Any:
    return torch.float64 if np.dtype(dtype) == np.float64 else torch.float32


def _load_into(torch: Any, tm: Any, m: Any) -> Any:
    tm.load_state_dict(
        {k: torch.from_numpy(np.array(v)) for k, v in m.state_dict().items()}
    )
    return tm


def _module_to_torch(torch: Any, m: Any) -> Any:
    nn, C = torch.nn, torch_classes()
    if isinstance(m, _Recurrent):
        kw: dict[str, Any] = {
            "num_layers": m.num_layers,
            "bias": m.bias,
            "batch_first": m.batch_first,
            "bidirectional": m.bidirectional,
            "dtype": _tdtype(torch, m.dtype),
        }
        if len(m.spec.nonlinearities) > 1:
            if m.nonlinearity not in ("tanh", "relu"):
                raise ValueError(
                    f"torch.nn.RNN has no nonlinearity {m.nonlinearity!r} "
                    "(tanh or relu only)"
                )
            kw["nonlinearity"] = m.nonlinearity
        opts = m.options
        for name in ("recurrent_dropout", "zoneout", "layer_norm"):
            if getattr(opts, name):
                raise ValueError(
                    f"torch.nn.{m.spec.class_name} has no {name} (this layer has "
                    f"{name}={getattr(opts, name)!r}); PyTorch has dropout and "
                    "proj_size only"
                )
        if opts.dropout:
            kw["dropout"] = opts.dropout
        if opts.proj_size:
            kw["proj_size"] = opts.proj_size
        tm = getattr(nn, m.spec.class_name)(m.input_size, m.hidden_size, **kw)
    elif isinstance(m, Linear):
        tm = C["TorchLinear"](
            m.in_features,
            m.out_features,
            bias=m.bias,
            activation=m.activation,
            dtype=_tdtype(torch, m.dtype),
        )
    elif isinstance(m, Embedding):
        tm = nn.Embedding(
            m.num_embeddings,
            m.embedding_dim,
            padding_idx=m.padding_idx,
            dtype=_tdtype(torch, m.dtype),
        )
    elif isinstance(m, Dropout):
        return nn.Dropout(m.p)
    else:
        raise TypeError(f"cannot convert {type(m).__name__} to torch")
    return _load_into(torch, tm, m)


def to_torch(model: Any) -> Any:
    """The ``torch.nn`` module equivalent to ``model``, carrying its weights.

    Parameters
    ----------
    model : RNN, LSTM, GRU, Linear, Embedding, Dropout, Sequential,
        EncoderDecoder or CharLM
        See the module docstring for what each becomes.

    Returns
    -------
    torch.nn.Module
        In training mode, as torch builds modules; call ``.eval()`` for
        inference (dropout off).

    Raises
    ------
    ImportError
        PyTorch is not installed.
    ValueError
        A block with no torch equivalent (``RNN(nonlinearity="sigmoid")``).

    Shapes
    ------
    As the rnnkit model's ``forward``.

    Examples
    --------
    >>> import numpy as np, torch, rnnkit as rk
    >>> model = rk.Sequential(rk.Embedding(10, 4, seed=0), rk.GRU(4, 8, seed=1),
    ...                       rk.Linear(8, 3, seed=2), output="last")
    >>> tm = rk.to_torch(model).eval()
    >>> ids = np.array([[1, 2, 3], [4, 5, 6]])
    >>> a = model.forward(ids, train=False)
    >>> b = tm(torch.from_numpy(ids)).detach().numpy()
    >>> bool(np.allclose(a, b, atol=1e-5))
    True
    """
    torch = _torch()
    from .text.model import CharLM

    if isinstance(model, CharLM):
        model = model.model
    C = torch_classes()
    if isinstance(model, Sequential):
        return C["TorchSequential"](
            *[_module_to_torch(torch, m) for m in model.layers],
            input=model.input,
            output=model.output,
            steps=model.steps,
        )
    if isinstance(model, EncoderDecoder):
        return C["TorchEncoderDecoder"](
            to_torch(model.encoder), to_torch(model.decoder)
        )
    return _module_to_torch(torch, model)


def _np_dtype(torch: Any, t: Any, what: str) -> str:
    if t.dtype == torch.float32:
        return "float32"
    if t.dtype == torch.float64:
        return "float64"
    raise TypeError(f"{what} must be float32 or float64, got {t.dtype}")


def _module_from_torch(torch: Any, tm: Any, where: str) -> Any:
    nn = torch.nn
    if isinstance(tm, (nn.RNN, nn.LSTM, nn.GRU)):
        kind = next(k for k in ("LSTM", "GRU", "RNN") if isinstance(tm, getattr(nn, k)))
        spec = _cells.BY_CLASS_NAME[kind]
        kw: dict[str, Any] = {
            "num_layers": tm.num_layers,
            "bias": tm.bias,
            "batch_first": tm.batch_first,
            "bidirectional": tm.bidirectional,
            "dtype": _np_dtype(torch, tm.weight_ih_l0, where),
        }
        if spec.name == "rnn":
            kw["nonlinearity"] = tm.nonlinearity
        if tm.dropout:
            kw["dropout"] = float(tm.dropout)
        if getattr(tm, "proj_size", 0):
            kw["proj_size"] = int(tm.proj_size)
        m: Any = spec.layer_class(tm.input_size, tm.hidden_size, **kw)
    elif isinstance(tm, nn.Linear):
        m = Linear(
            tm.in_features,
            tm.out_features,
            bias=tm.bias is not None,
            activation=getattr(tm, "activation", None),
            dtype=_np_dtype(torch, tm.weight, where),
        )
    elif isinstance(tm, nn.Embedding):
        if tm.max_norm is not None:
            raise ValueError(f"{where}: Embedding max_norm has no rnnkit equivalent")
        m = Embedding(
            tm.num_embeddings,
            tm.embedding_dim,
            padding_idx=tm.padding_idx,
            dtype=_np_dtype(torch, tm.weight, where),
        )
    elif isinstance(tm, nn.Dropout):
        return Dropout(tm.p)
    else:
        raise TypeError(
            f"{where}: cannot convert torch module {type(tm).__name__} (RNN, LSTM, "
            "GRU, Linear, Embedding, Dropout, Sequential of them)"
        )
    m.load_state_dict({k: v.detach().cpu() for k, v in tm.state_dict().items()})
    return m


def from_torch(module: Any) -> Any:
    """The rnnkit model or layer equivalent to a torch module, with its weights.

    Parameters
    ----------
    module : torch.nn.Module
        ``RNN``/``LSTM``/``GRU``, ``Linear``, ``Embedding``, ``Dropout``, a
        ``torch.nn.Sequential`` of them, or what :func:`to_torch` returns.

    Returns
    -------
    layer, Sequential or EncoderDecoder

    Raises
    ------
    TypeError
        A module of another kind (named with its position).
    ValueError
        Options rnnkit does not have (``max_norm`` on an embedding).

    Examples
    --------
    >>> import torch, rnnkit as rk
    >>> tm = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.LSTM(4, 8))
    >>> rk.from_torch(tm).layers[1]
    LSTM(4, 8, dtype=float32)
    """
    torch = _torch()
    C = torch_classes()
    if isinstance(module, C["TorchEncoderDecoder"]):
        return EncoderDecoder(from_torch(module.encoder), from_torch(module.decoder))
    if isinstance(module, torch.nn.Sequential):
        layers = [
            _module_from_torch(torch, m, f"layer {i}") for i, m in enumerate(module)
        ]
        if isinstance(module, C["TorchSequential"]):
            return Sequential(
                *layers, input=module.input, output=module.output, steps=module.steps
            )
        return Sequential(*layers)
    return _module_from_torch(torch, module, "module")
