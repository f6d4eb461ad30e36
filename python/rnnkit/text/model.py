"""The character language model, :class:`CharLM`: Embedding -> LSTM/GRU/RNN ->
Linear, trained by :func:`rnnkit.fit` on :class:`BPTTBatches`, written one
character at a time on the layers' single-step path."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .. import _cells, _serial
from .._ops import ACTIVATIONS
from ..io import load as _load
from ..models import Recurrent, Sequential
from ..modules import Dropout, Embedding, Linear
from ..optim import Adam
from ..train import History, TrainPosition
from ..train import fit as _fit
from .batching import BPTTBatches, eval_layout
from .sampling import Sampler, _check_sampling
from .vocab import UNK, UNKNOWN_POLICIES, Vocab

LN2 = math.log(2.0)


def _nll_sum(logits: np.ndarray, y: np.ndarray) -> float:
    """Sum over positions of ``-log softmax(logits)[y]`` (float64 accumulation)."""
    z = logits.reshape(-1, logits.shape[-1])
    t = y.reshape(-1)
    m = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - m).sum(axis=1, dtype=np.float64)) + m[:, 0]
    return float(np.sum(lse - z[np.arange(len(t)), t], dtype=np.float64))


def _bits(logs: Any) -> dict[str, float]:
    """The training loss in bits per character (it is in nats)."""
    return {"bpc": logs["loss"] / LN2}


def _rows(state: list[Any], sl: slice) -> list[Any]:
    """Rows ``sl`` of every recurrent layer's state (the batch axis is 1)."""
    return [
        tuple(s[:, sl] for s in st) if isinstance(st, tuple) else st[:, sl]
        for st in state
    ]


class CharLM:
    """Character-level language model: Embedding -> RNN/LSTM/GRU -> Linear.

    Parameters
    ----------
    vocab : the :class:`Vocab` (its size V is the input and output size).
    cell : ``"lstm"`` (default), ``"gru"`` or ``"rnn"`` (tanh).
    hidden_size : H.
    num_layers : L, stacked in one recurrent layer.
    embedding_dim : E. An embedding is a one-hot input times a learned matrix,
        stored as a lookup table; E < V makes it a cheaper factorisation.
    dtype : float32 (default) or float64.
    seed : int or ``np.random.Generator`` for the initial weights (and the
        recurrent layer's dropout/zoneout masks).
    **options : the recurrent layer's options (keyword-only): ``dropout``,
        ``recurrent_dropout``, ``zoneout``, ``layer_norm`` (LSTM, GRU),
        ``proj_size`` and ``forget_bias`` (LSTM); see :class:`rnnkit.LSTM`.
        With ``proj_size=P`` the output layer reads P features.

    Attributes
    ----------
    model : the :class:`rnnkit.Sequential` (``Embedding, LSTM, Linear``).
    vocab : the :class:`Vocab`.

    Shapes
    ------
    ids (B, T) -> logits (B, T, V); state per recurrent layer (L, B, H), for
    LSTM a tuple ``(h, c)``.

    Examples
    --------
    >>> vocab = Vocab.from_text("the cat sat on the mat. " * 20)
    >>> lm = CharLM(vocab, hidden_size=32, embedding_dim=8, seed=0)
    >>> h = lm.fit(vocab.encode("the cat sat on the mat. " * 20), epochs=30,
    ...            batch_size=4, seq_len=16, progress=False)
    >>> text = lm.generate_text("the ", 20, greedy=True)
    """

    def __init__(
        self,
        vocab: Vocab,
        cell: str = "lstm",
        hidden_size: int = 256,
        num_layers: int = 1,
        embedding_dim: int = 64,
        dtype: str | np.dtype = "float32",
        seed: int | np.random.Generator | None = 0,
        **options: Any,
    ) -> None:
        if not isinstance(vocab, Vocab):
            raise TypeError(f"vocab must be a Vocab, got {type(vocab).__name__}")
        if cell not in _cells.CELLS:  # the lower-case names only, as before
            raise ValueError(f"cell must be one of {tuple(_cells.CELLS)}, got {cell!r}")
        rng = (
            seed
            if isinstance(seed, np.random.Generator)
            else np.random.default_rng(seed)
        )
        V = len(vocab)
        rec = _cells.get(cell).layer_class(
            embedding_dim,
            hidden_size,
            num_layers=num_layers,
            dtype=dtype,
            seed=rng,
            **options,
        )
        model = Sequential(
            Embedding(V, embedding_dim, dtype=dtype, seed=rng),
            rec,
            Linear(rec.state_size, V, dtype=dtype, seed=rng),
        )
        self._attach(model, vocab)

    # ------------------------------------------------------------ plumbing
    def _attach(self, model: Any, vocab: Vocab) -> None:
        self.model, self.vocab = model, vocab
        tokens, meta = vocab.to_checkpoint()
        model.vocab = {**(model.vocab or {}), "chars": tokens}
        model.meta = {**(model.meta or {}), "text": {"model": "char-lm", **meta}}

    @classmethod
    def from_model(cls, model: Any) -> CharLM:
        """Wraps a loaded :class:`rnnkit.Sequential` whose ``vocab["chars"]`` holds
        the characters (as :meth:`save` writes): first layer Embedding(V, E), one
        or more recurrent layers (unidirectional), last layer Linear(., V)."""
        if not isinstance(model, Sequential):
            raise TypeError(f"a CharLM wraps a Sequential, got {type(model).__name__}")
        chars = (model.vocab or {}).get("chars")
        if not chars:
            raise ValueError(
                "the model has no character vocabulary (vocab['chars']); it was not "
                "saved by CharLM / rnnkit train"
            )
        unknown = ((model.meta or {}).get("text") or {}).get("unknown", "error")
        if unknown not in UNKNOWN_POLICIES or (
            unknown == "replace" and UNK not in chars
        ):
            unknown = "error"
        vocab = Vocab(chars, unknown="error")
        vocab.unknown = unknown  # the tokens already hold UNK if it was "replace"
        ls = model.layers
        V = len(vocab)
        ok = (
            model.input == "sequence"
            and model.output == "sequence"
            and isinstance(ls[0], Embedding)
            and ls[0].num_embeddings == V
            and isinstance(ls[-1], Linear)
            and ls[-1].out_features == V
            and any(isinstance(m, Recurrent) for m in ls)
            and all(isinstance(m, (Recurrent, Linear, Dropout)) for m in ls[1:])
            and not any(isinstance(m, Recurrent) and m.bidirectional for m in ls)
        )
        if not ok:
            raise ValueError(
                f"the model is not a character language model over {V} characters "
                f"(Embedding({V}, E), unidirectional recurrent layers, "
                f"Linear(., {V})): "
                f"{model!r}"
            )
        self = cls.__new__(cls)
        self._attach(model, vocab)
        return self

    @classmethod
    def load(cls, path: Any) -> CharLM:
        """Reads a checkpoint written by :meth:`save` (or ``rnnkit train``)."""
        loaded = _load(path)  # rk.load already wraps a char-model checkpoint
        return loaded if isinstance(loaded, cls) else cls.from_model(loaded)

    def save(self, path: Any, optimizer: Any = None, **meta: Any) -> None:
        """Writes the model, vocabulary, optimizer state and ``meta`` (JSON) to
        ``path`` (an rnnkit checkpoint; atomic)."""
        self.model.meta.update(meta)
        self.model.save(path, optimizer=optimizer)

    @property
    def recurrent(self) -> Any:
        """The (first) recurrent layer."""
        return self.model.recurrent_layers[0]

    @property
    def config(self) -> dict[str, Any]:
        rec = self.recurrent
        return {
            "cell": rec.cell,
            "hidden_size": rec.hidden_size,
            "num_layers": rec.num_layers,
            **rec.options.as_dict(),
            "embedding_dim": self.model.layers[0].embedding_dim,
            "vocab_size": len(self.vocab),
            "parameters": self.model.num_parameters,
        }

    def _ids(self, data: Any, name: str) -> np.ndarray:
        if isinstance(data, str):
            return self.vocab.encode(data)
        arr = np.asarray(data)
        if arr.dtype.kind not in "iu" or arr.ndim != 1:
            raise TypeError(
                f"{name} must be a str or a 1-D integer array of ids, got "
                f"{arr.dtype} {arr.shape}"
            )
        arr = arr.astype(np.int64, copy=False)
        if arr.size and (arr.min() < 0 or arr.max() >= len(self.vocab)):
            raise IndexError(
                f"{name} holds ids outside the vocabulary of size {len(self.vocab)}"
            )
        return arr

    # ------------------------------------------------------------ evaluate
    def evaluate(
        self, data: Any, batch_size: int = 32, seq_len: int = 256
    ) -> dict[str, float]:
        """Mean loss over every next-character prediction of ``data``.

        ``data`` is a str or ids; it is read as in :func:`eval_layout` (``batch_size``
        streams from zero states, chunks of ``seq_len``, the leftover continuing
        the last stream), inference path. Returns ``{"loss": nats per character,
        "bpc": bits per character, "chars": predictions scored}``.
        """
        ids = self._ids(data, "data")
        total = self._nll_total(ids, batch_size, seq_len)
        n = len(ids) - 1
        return {"loss": total / n, "bpc": total / n / LN2, "chars": float(n)}

    def _nll_total(
        self, ids: np.ndarray, batch_size: int, seq_len: int, share: Any = None
    ) -> float:
        """Summed loss of :meth:`evaluate`; ``share(B) -> (lo, hi)`` limits it to
        streams ``[lo, hi)`` (the leftover belongs to the share holding the last)."""
        x, y, xr, yr = eval_layout(ids, batch_size)
        B = x.shape[0]
        lo, hi = (0, B) if share is None else share(B)
        x, y = x[lo:hi], y[lo:hi]
        if hi < B:
            xr, yr = xr[:0], yr[:0]
        model, total, state = self.model, 0.0, None
        for a in range(0, x.shape[1] if hi > lo else 0, seq_len):
            logits = model.forward(x[:, a : a + seq_len], state=state, train=False)
            state = model.final_state
            total += _nll_sum(logits, y[:, a : a + seq_len])
        if len(xr):
            state = _rows(state, slice(-1, None)) if state is not None else None
            for a in range(0, len(xr), seq_len):
                logits = model.forward(
                    xr[None, a : a + seq_len], state=state, train=False
                )
                state = model.final_state
                total += _nll_sum(logits, yr[None, a : a + seq_len])
        return total

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        data: Any,
        *,
        val_data: Any = None,
        epochs: int | None = None,
        max_steps: int | None = None,
        max_time: float | None = None,
        batch_size: int = 32,
        seq_len: int = 100,
        optimizer: Any = None,
        lr: float | None = None,
        clip_norm: float | None = 5.0,
        eval_every: float | None = None,
        eval_every_steps: int | None = None,
        eval_batch_size: int = 32,
        start: TrainPosition | None = None,
        progress: Any = True,
        callback: Callable[..., Any] | None = None,
        should_stop: Callable[[], Any] | None = None,
        distributed: bool | Any = False,
        **deprecated: Any,
    ) -> History:
        """Trains on ``data`` with stateful truncated BPTT: :func:`rnnkit.fit` on
        :class:`BPTTBatches`; returns its :class:`~rnnkit.train.History`.

        Parameters
        ----------
        data, val_data : str or 1-D ids. ``val_data`` is evaluated whole
            (:meth:`evaluate`, ``eval_batch_size`` streams) at every evaluation.
        batch_size, seq_len : B streams, chunks of T characters (:class:`BPTTBatches`).
            The hidden state is carried from chunk to chunk within an epoch and
            reset to zeros at the start of each epoch (and of each call).
        optimizer : default ``self.model.optimizer`` when set (a resumed
            checkpoint), else ``Adam(lr=2e-3)``. ``lr``, if given, sets its rate.
        clip_norm : global gradient-norm clipping before each step (None: off).
        epochs, max_steps, max_time, eval_every, eval_every_steps, start,
        progress, callback, should_stop : as in :func:`rnnkit.fit` (the one place
            the options, the epoch count and the callback protocol
            ``callback(epoch, logs)`` are documented).
        distributed : True (or a :class:`rnnkit.distributed.World`): data-parallel
            over the MPI ranks; each rank trains on its contiguous share of the B
            streams (and carries their state), and evaluates its share of the
            validation streams. The result does not depend on the rank count.

        The history (and each callback's ``logs``) also has ``bpc`` and ``val_bpc``,
        the losses in bits per character (they are in nats), and ``chars_per_s``.
        ``time_budget=`` is the deprecated name of ``max_time``, and a callback
        taking one argument (``callback(logs)``, stopping on any true value) the
        deprecated protocol; both still work, with a ``DeprecationWarning``.
        """
        max_time, callback, budget_alias = _deprecated_fit_options(
            deprecated, max_time, callback
        )
        model = self.model
        train_ids = self._ids(data, "data")
        val_ids = None if val_data is None else self._ids(val_data, "val_data")
        if val_ids is not None and len(val_ids) < 2:
            val_ids = None
        source = BPTTBatches(train_ids, batch_size, seq_len)
        if optimizer is None:
            optimizer = getattr(model, "optimizer", None) or Adam(
                model, lr=2e-3 if lr is None else lr
            )
        if lr is not None:
            optimizer.lr = lr

        def validate(m: Any) -> dict[str, float]:
            if distributed is False or distributed is None:
                v = self.evaluate(val_ids, eval_batch_size, max(seq_len, 256))
                return {"loss": v["loss"], "bpc": v["bpc"]}
            from .. import distributed as dist

            assert val_ids is not None  # validate is passed only with val_ids
            world = dist.init() if distributed is True else distributed
            total = self._nll_total(
                val_ids,
                eval_batch_size,
                max(seq_len, 256),
                lambda n: dist.share(n, world),
            )
            loss = float(world.allreduce(np.array([total]))[0]) / (len(val_ids) - 1)
            return {"loss": loss, "bpc": loss / LN2}

        hist = _fit(
            model,
            "cross_entropy",
            optimizer,
            source,
            val_data=None if val_ids is None else validate,
            epochs=epochs,
            max_steps=max_steps,
            max_time=max_time,
            clip_norm=clip_norm,
            eval_every=eval_every,
            eval_every_steps=eval_every_steps,
            extra_logs=_bits,
            start=start,
            progress=progress,
            callback=callback,
            should_stop=should_stop,
            distributed=distributed,
        )
        if budget_alias and hist.stop_reason == "max_time":
            hist.stop_reason = "time_budget"  # what callers of the old name test
        return hist

    # ------------------------------------------------------------- generate
    def generate(
        self,
        prime: str = "",
        length: int = 500,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | np.random.Generator | None = None,
        greedy: bool = False,
    ) -> Iterator[str]:
        """Yields ``length`` characters that continue ``prime``, one at a time.

        Parameters
        ----------
        prime : the text to continue (not yielded). It is read once, in one
            inference pass over the sequence; its characters must be in the
            vocabulary (or are handled by its ``unknown`` policy). Empty: the
            model starts after a newline (if it knows one) from a zero state.
        length : characters to yield.
        temperature : divides the logits; lower is more conservative, 0 greedy.
        top_k, top_p : keep the k most likely characters / the smallest set
            reaching probability p (see :func:`sample_logits`).
        seed : int or ``np.random.Generator``; the same seed gives the same text.
        greedy : argmax at every step (same as ``temperature=0``).

        Each character costs one embedding row, one ``stepper.step`` per recurrent
        layer (weights packed once per call, state kept in C++), one small
        product for the logits and one draw: the prefix is never re-run.
        """
        if (
            isinstance(length, bool)
            or not isinstance(length, (int, np.integer))
            or length < 0
        ):
            raise ValueError(f"length must be a non-negative integer, got {length!r}")
        _check_sampling(temperature, top_k, top_p)
        temp = 0.0 if greedy else float(temperature)
        rng = (
            seed
            if isinstance(seed, np.random.Generator)
            else np.random.default_rng(seed)
        )
        ids = self.vocab.encode(prime)
        if len(ids) == 0:
            start = "\n" if "\n" in self.vocab else self.vocab.tokens[0]
            ids = np.array([self.vocab.index(start)], dtype=np.int64)
        return self._generate(ids, int(length), temp, top_k, top_p, rng)

    def _plan(self) -> list[Any]:
        """Per-step operations after the embedding: ``("rnn", stepper)`` or
        ``("linear", (W, b, activation))``; weights copied (packed) once."""
        plan: list[Any] = []
        for m in self.model.layers[1:]:
            if isinstance(m, Recurrent):
                plan.append(("rnn", m.stepper(1)))
            elif isinstance(m, Linear):
                w = m.params[
                    "weight"
                ].copy()  # (O, I): y = W x, a matrix-vector product
                b = m.params["bias"].copy() if m.bias else None
                act = ACTIVATIONS[m.activation] if m.activation else None
                plan.append(("linear", (w, b, act)))
        return plan

    def _generate(
        self,
        ids: np.ndarray,
        length: int,
        temp: float,
        top_k: int | None,
        top_p: float | None,
        rng: np.random.Generator,
    ) -> Iterator[str]:
        if length == 0:
            return
        model = self.model
        emb = model.layers[0].params["weight"].copy()  # (V, E)
        plan = self._plan()
        sample = Sampler(temp, top_k, top_p, rng)
        # the prime, once, on the sequence path; its final states start the steppers
        logits = model.forward(ids[None], train=False)[0, -1]
        rec = iter(model.final_state)
        for kind, op in plan:
            if kind == "rnn":
                st = next(rec)
                h, c = st if isinstance(st, tuple) else (st, None)
                op.set_state(h, c)
        tokens = self.vocab.tokens
        if len(plan) == 2 and plan[0][0] == "rnn" and plan[1][0] == "linear":
            # the usual Embedding -> recurrent -> Linear: the loop unrolled
            step = plan[0][1].step
            w, b, act = plan[1][1]
            for i in range(length):
                k = sample(logits)
                yield tokens[k]
                if i + 1 == length:
                    break
                logits = w.dot(step(emb[k : k + 1])[0])
                if b is not None:
                    logits += b
                if act is not None:
                    act(logits, out=logits)
            return
        for i in range(length):
            k = sample(logits)
            yield tokens[k]
            if i + 1 == length:
                break
            x = emb[k]
            for kind, op in plan:
                if kind == "rnn":
                    x = op.step(x[None])[0]
                else:
                    w, b, act = op
                    x = w.dot(x)
                    if b is not None:
                        x += b
                    if act is not None:
                        act(x, out=x)
            logits = x

    def generate_text(self, prime: str = "", length: int = 500, **kw: Any) -> str:
        """``"".join(self.generate(prime, length, **kw))``: the continuation only."""
        return "".join(self.generate(prime, length, **kw))

    def __repr__(self) -> str:
        c = self.config
        return (
            f"CharLM({c['cell']}, hidden_size={c['hidden_size']}, "
            f"num_layers={c['num_layers']}, embedding_dim={c['embedding_dim']}, "
            f"vocab={len(self.vocab)}, parameters={c['parameters']:,})"
        )


__all__ = ["CharLM"]


_serial.register_wrapper("char-lm", CharLM.from_model)  # rk.load -> CharLM


def _deprecated_fit_options(
    kw: dict[str, Any], max_time: float | None, callback: Any
) -> tuple[float | None, Any, bool]:
    """Maps the old keywords of ``CharLM.fit`` onto :func:`rnnkit.fit`'s, warning."""
    budget = "time_budget" in kw
    if budget:
        if max_time is not None:
            raise TypeError("pass max_time or time_budget (deprecated), not both")
        warnings.warn(
            "CharLM.fit(time_budget=) is deprecated; use max_time=",
            DeprecationWarning,
            stacklevel=3,
        )
        max_time = kw.pop("time_budget")
    if kw:
        raise TypeError(f"CharLM.fit() got unexpected keyword(s) {sorted(kw)}")
    if callback is not None and _positional_arity(callback) == 1:
        warnings.warn(
            "CharLM.fit(callback=) with one argument, callback(logs), is deprecated; "
            "use callback(epoch, logs), which stops training by returning True",
            DeprecationWarning,
            stacklevel=3,
        )
        old = callback

        def callback(epoch: int, logs: dict[str, Any]) -> bool:
            return bool(old(logs))  # the old protocol: any true value stops

    return max_time, callback, budget


def _positional_arity(fn: Callable[..., Any]) -> int | None:
    """How many positional arguments ``fn`` takes (None: any number, or unknown)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    n = 0
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return n
