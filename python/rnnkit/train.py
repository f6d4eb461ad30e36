"""The training loop, ``fit``: batches from a data source, epochs or a step/time
budget, evaluation at the end of each epoch and at intervals, state carried across
chunks (truncated BPTT), a resume position, progress, early stopping, a history of
metrics and an optional loss-curve PNG. Everything that trains calls it:
:meth:`rnnkit.text.CharLM.fit`, ``rnnkit train`` and the examples.

    history = rk.fit(model, "cross_entropy", rk.Adam(model, lr=3e-3),
                     (x, y, lengths), val_data=(xv, yv, lv), epochs=20,
                     batch_size=64, metrics=["accuracy"], early_stopping=3)
    history["val_accuracy"][-1]

Data
----
In-memory data is batch-first: ``(x, y)``, ``(x, y, lengths)`` or a dict with
keys ``x``, ``y`` and optionally ``lengths`` and ``mask``; every array is sliced
along axis 0. ``x`` may be a tuple of arrays, passed positionally to
``model.forward`` (for :class:`~rnnkit.EncoderDecoder`: ``(src, tgt_in)``).
``lengths`` goes to ``model.forward(..., lengths=...)``; for a many-to-many
``Sequential`` each batch is trimmed to its longest row and, without an explicit
``mask``, the loss is masked to the valid steps.

Anything else that trains implements :class:`DataSource` (the extension point):
``len(source)`` batches per epoch and ``source.batches(epoch, start)`` yielding
:class:`Batch` objects. A batch says which of its rows continue the rows of the
batch before (``Batch.carry``); for those rows the model's final state after the
previous step is the initial state of this one (truncated BPTT: the state is a
plain input, no gradient flows back into the earlier chunk).
:class:`rnnkit.text.BPTTBatches` is such a source.

A custom loop needs none of this: ``model.zero_grad()``, ``out = model.forward(...)``,
``loss, d = rk.losses.cross_entropy(out, y)``, ``model.backward(d)``,
``optimizer.step()`` -- which is all :func:`train_step` does.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol, TextIO, runtime_checkable

import numpy as np

from . import metrics as _metrics
from ._checks import integer, real
from ._weights import split_validation, weighted_mask
from .callbacks import as_callback
from .losses import get_loss, length_mask
from .metrics import METRICS, accuracy
from .models import Sequential
from .optim import clip_grad_norm, clip_grad_value


# ----------------------------------------------------------------------- data
@dataclass
class _Data:
    xs: tuple[np.ndarray, ...]
    y: np.ndarray
    lengths: np.ndarray | None
    mask: np.ndarray | None

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    def take(self, idx: Any) -> _Data:
        return _Data(
            tuple(x[idx] for x in self.xs),
            self.y[idx],
            None if self.lengths is None else self.lengths[idx],
            None if self.mask is None else self.mask[idx],
        )


def _as_data(data: Any, name: str) -> _Data:
    if isinstance(data, Mapping):
        extra = set(data) - {"x", "y", "lengths", "mask"}
        if extra or "x" not in data or "y" not in data:
            raise ValueError(
                f"{name} dict must have keys 'x', 'y' and optionally "
                f"'lengths', 'mask'; got {sorted(data)}"
            )
        x, y, lengths, mask = (
            data["x"],
            data["y"],
            data.get("lengths"),
            data.get("mask"),
        )
    elif isinstance(data, (tuple, list)) and len(data) in (2, 3):
        x, y = data[0], data[1]
        lengths, mask = (data[2] if len(data) == 3 else None), None
    else:
        raise TypeError(
            f"{name} must be (x, y), (x, y, lengths) or a dict, got "
            f"{type(data).__name__}"
        )
    xs = (
        tuple(np.asarray(a) for a in x)
        if isinstance(x, (tuple, list))
        else (np.asarray(x),)
    )
    d = _Data(
        xs,
        np.asarray(y),
        None if lengths is None else np.asarray(lengths),
        None if mask is None else np.asarray(mask, dtype=bool),
    )
    for label, a in [(f"x[{i}]", a) for i, a in enumerate(d.xs)] + [
        ("lengths", d.lengths),
        ("mask", d.mask),
    ]:
        if a is not None and (a.ndim == 0 or a.shape[0] != d.n):
            raise ValueError(
                f"{name}: {label} has {a.shape[0] if a.ndim else 0} rows, y has {d.n}"
            )
    if d.n == 0:
        raise ValueError(f"{name} is empty")
    return d


def _prepare(
    model: Any,
    xs: tuple[np.ndarray, ...],
    y: np.ndarray,
    lengths: np.ndarray | None,
    mask: np.ndarray | None,
) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Trims a Sequential batch to its longest row; derives the loss mask (and
    the lengths, from an ``Embedding(mask_zero=True)``)."""
    if lengths is None and isinstance(model, Sequential):
        lengths = model.padding_lengths(xs[0])
    if (
        isinstance(model, Sequential)
        and model.input == "sequence"
        and lengths is not None
    ):
        T = int(lengths.max())
        xs = (xs[0][:, :T],) + xs[1:]
        if model.output == "sequence":
            y = y[:, :T]
            if mask is None:
                mask = length_mask(lengths, T)
            else:
                mask = mask[:, :T] if mask.ndim > 1 else mask
                if mask.dtype.kind == "f":  # weights: padding still left out
                    mask = mask.reshape(mask.shape + (1,) * (2 - mask.ndim))
                    mask = mask * length_mask(lengths, T)
    return xs, y, lengths, mask


def _forward(
    model: Any,
    xs: tuple[np.ndarray, ...],
    lengths: Any,
    train: bool,
    state: Any = None,
) -> Any:
    kw: dict[str, Any] = {"train": train}
    if lengths is not None:
        kw["lengths"] = lengths
    if state is not None:
        kw["state"] = state
    return model.forward(*xs, **kw)


def _metric_fns(metrics: Any) -> dict[str, Any]:
    return _metrics.get_all(metrics)


def evaluate(
    model: Any, loss: Any, data: Any, batch_size: int = 256, metrics: Any = None
) -> dict[str, float]:
    """Inference-mode loss and metrics over all of ``data``.

    Parameters
    ----------
    model : the model, as for :func:`fit`.
    loss : a loss name or callable, as for :func:`fit`.
    data : in-memory batch-first data: ``(x, y)``, ``(x, y, lengths)`` or a dict
        (module docstring).
    batch_size : rows per inference forward.
    metrics : names, :class:`rnnkit.metrics.Metric` objects or callables (see
        :mod:`rnnkit.metrics`); each accumulated over the whole data, then
        reduced once (perplexity, F1 and RMSE are exact, not batch means).

    Returns
    -------
    dict
        ``{"loss": mean loss (batches weighted by rows), **metric results}``.

    Examples
    --------
    >>> import numpy as np, rnnkit as rk
    >>> model = rk.Sequential(rk.GRU(3, 8, seed=0), rk.Linear(8, 2, seed=1),
    ...                       output="last")
    >>> x, y = np.ones((10, 4, 3)), np.zeros(10, dtype=int)
    >>> sorted(rk.evaluate(model, "cross_entropy", (x, y), metrics=["accuracy"]))
    ['accuracy', 'loss']
    """
    loss_fn = get_loss(loss)
    fns = _metric_fns(metrics)
    for m in fns.values():
        m.reset()
    d = data if isinstance(data, _Data) else _as_data(data, "data")
    total = 0.0
    for a in range(0, d.n, batch_size):
        b = d.take(slice(a, a + batch_size))
        xs, y, lengths, mask = _prepare(model, b.xs, b.y, b.lengths, b.mask)
        out = _forward(model, xs, lengths, train=False)
        value, _ = loss_fn(out, y, mask)
        total += value * b.n
        for m in fns.values():
            m.update(out, y, mask)
    return {"loss": total / d.n, **_metrics.results(fns)}


# ---------------------------------------------------------------- data sources
@dataclass
class Batch:
    """One training step's data, as a :class:`DataSource` yields it.

    Attributes
    ----------
    xs : the positional inputs of ``model.forward`` (usually one array).
    y : the targets, B rows.
    lengths, mask : optional (B,) valid steps per row / loss mask (see the module
        docstring).
    carry : which rows continue the rows of the previous batch: False (none: every
        row starts from a zero state), True (all) or a bool array (B,). For a row
        that continues, the model's final state after the previous step is this
        step's initial state (detached: truncated BPTT).
    items : what the throughput counts (``DataSource.unit``); 0 means B rows.

    Shapes
    ------
    ``xs[i]`` and ``y`` (B, ...); ``carry`` (B,) when an array.
    """

    xs: tuple[np.ndarray, ...]
    y: np.ndarray
    lengths: np.ndarray | None = None
    mask: np.ndarray | None = None
    carry: bool | np.ndarray = False
    items: int = 0

    @property
    def rows(self) -> int:
        return int(self.y.shape[0])


@runtime_checkable
class DataSource(Protocol):
    """What :func:`fit` trains on: ``len(source)`` batches per epoch, in order.

    ``batches(epoch, start)`` yields the :class:`Batch` objects of epoch ``epoch``
    (0-based), from batch index ``start`` on (``0 <= start < len(source)``). It
    must be a deterministic function of ``(epoch, start)``, so that a run resumed
    from a :class:`TrainPosition` sees exactly the batches the interrupted run
    would have seen. ``unit`` names what :attr:`Batch.items` counts (``"examples"``,
    ``"chars"``); the history's throughput key is ``f"{unit}_per_s"``.

    Sources that carry state (``Batch.carry``) keep the batch size B fixed. With
    ``fit(..., distributed=True)`` a source yields the global batches on every rank
    and each rank trains on its contiguous share of their rows (streams):
    :class:`rnnkit.distributed.ShardedSource`.
    """

    unit: str

    def __len__(self) -> int: ...

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]: ...


class _ArraySource:
    """In-memory batch-first data as a :class:`DataSource`: rows shuffled per
    epoch (the permutations drawn in epoch order from ``rng``, so epoch ``e``
    always gets the same one), batches of ``batch_size`` rows, no carried state."""

    unit = "examples"

    def __init__(
        self, data: _Data, batch_size: int, shuffle: bool, rng: np.random.Generator
    ) -> None:
        self.data, self.batch_size, self.shuffle, self.rng = (
            data,
            batch_size,
            shuffle,
            rng,
        )
        self._epoch, self._perm = -1, np.arange(data.n)

    def __len__(self) -> int:
        return math.ceil(self.data.n / self.batch_size)

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return self._perm
        if epoch < self._epoch:
            raise ValueError(f"epoch {epoch} asked after epoch {self._epoch}")
        while self._epoch < epoch:  # replayed from epoch 0: resuming is exact
            self._perm = self.rng.permutation(self.data.n)
            self._epoch += 1
        return self._perm

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        order, B = self._order(epoch), self.batch_size
        for j in range(start, len(self)):
            b = self.data.take(order[j * B : (j + 1) * B])
            yield Batch(b.xs, b.y, b.lengths, b.mask)


def _carried(state: Any, carry: Any, rows: int) -> Any:
    """The initial state of a step: ``state`` (the previous final state) for the
    rows that carry, zeros for the others; None when no row carries."""
    if state is None or carry is False or carry is None:
        return None
    keep = None if carry is True else np.asarray(carry, dtype=bool)
    if keep is not None and not keep.any():
        return None

    def rows_of(s: np.ndarray) -> np.ndarray:
        if s.shape[1] != rows:
            raise ValueError(
                f"a batch of {rows} rows carries a state of {s.shape[1]} rows; a "
                "source that carries state must keep the batch size"
            )
        if keep is None or keep.all():
            return s
        return s * keep.reshape(1, -1, *([1] * (s.ndim - 2))).astype(s.dtype)

    return [
        tuple(rows_of(t) for t in st) if isinstance(st, tuple) else rows_of(st)
        for st in state
    ]


# ------------------------------------------------------------------- position
@dataclass(init=False)
class TrainPosition:
    """Where training is: the next batch to read and what was done so far.

    :func:`fit` returns it as ``history.position`` and continues from it with
    ``start=``; ``rnnkit train`` saves it in a checkpoint's
    ``meta["train"]["position"]`` (:func:`dataclasses.asdict`). A resumed stateful
    source starts the resumed epoch from a zero state (the carried state is not
    saved; it costs one chunk of context per stream).

    ``chunk`` and ``chars`` are the deprecated names of ``batch`` and ``items``.
    """

    epoch: int  # epochs completed
    batch: int  # next batch of the current epoch
    steps: int  # optimizer steps
    items: int  # training items read (the source's unit)
    seconds: float  # training time (evaluation, callbacks and progress excluded)

    def __init__(
        self,
        epoch: int = 0,
        batch: int = 0,
        steps: int = 0,
        items: int = 0,
        seconds: float = 0.0,
        *,
        chunk: int | None = None,
        chars: int | None = None,
    ) -> None:
        if chunk is not None:
            _renamed("TrainPosition(chunk=)", "batch")
            batch = chunk
        if chars is not None:
            _renamed("TrainPosition(chars=)", "items")
            items = chars
        self.epoch, self.batch, self.steps = int(epoch), int(batch), int(steps)
        self.items, self.seconds = int(items), float(seconds)

    @property
    def chunk(self) -> int:
        _renamed("TrainPosition.chunk", "batch")
        return self.batch

    @chunk.setter
    def chunk(self, value: int) -> None:
        _renamed("TrainPosition.chunk", "batch")
        self.batch = value

    @property
    def chars(self) -> int:
        _renamed("TrainPosition.chars", "items")
        return self.items

    def copy(self) -> TrainPosition:
        return TrainPosition(**asdict(self))

    @classmethod
    def from_dict(cls, d: Any) -> TrainPosition:
        """From :func:`dataclasses.asdict` output (also the older ``chunk`` /
        ``chars`` keys); missing or invalid entries are 0."""
        if not isinstance(d, dict):
            return cls()
        old = {"batch": "chunk", "items": "chars"}
        kw: dict[str, Any] = {}
        for f in fields(cls):
            v = d.get(f.name, d.get(old.get(f.name, ""), 0))
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0:
                kw[f.name] = float(v) if f.name == "seconds" else int(v)
        return cls(**kw)


def _renamed(old: str, new: str, stacklevel: int = 3) -> None:
    warnings.warn(
        f"{old} is deprecated; use {new}", DeprecationWarning, stacklevel=stacklevel
    )


# -------------------------------------------------------------------- history
class History(dict):
    """What :func:`fit` measured: a dict of lists, one entry per evaluation.

    Keys: ``loss`` (mean training loss since the previous evaluation, batches
    weighted by rows), ``val_loss`` and ``val_<metric>`` (with ``val_data``), any
    ``extra_logs``, ``lr``, ``time`` (training seconds so far), ``step``
    (optimizer steps so far), ``epoch`` (epochs completed, a float: 1.0 at the end
    of the first, 1.5 half way through the second) and ``<unit>_per_s``
    (training throughput since the previous evaluation). The lists read as
    attributes too (``history.val_loss``).

    Attributes
    ----------
    steps : optimizer steps in this call.
    stop_reason : ``"epochs"``, ``"max_steps"``, ``"max_time"``, ``"interrupted"``,
        ``"callback"``, ``"early_stopping"`` or ``"non-finite loss"``.
    best_epoch : with early stopping, the 0-based epoch of the best score (None).
    position : the :class:`TrainPosition` to resume from.
    """

    steps: int = 0
    stop_reason: str = ""
    best_epoch: int | None = None
    position: TrainPosition

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.position = TrainPosition()

    def __getattr__(self, name: str) -> list[Any]:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"History has no {name!r}; it has {sorted(self)}"
            ) from None

    def as_dict(self) -> dict[str, Any]:
        """The lists plus ``steps``, ``stop_reason``, ``best_epoch`` and
        ``position`` (a dict): JSON-ready."""
        return {
            **{k: list(v) for k, v in self.items()},
            "steps": self.steps,
            "stop_reason": self.stop_reason,
            "best_epoch": self.best_epoch,
            "position": asdict(self.position),
        }


# ------------------------------------------------------------------- progress
_UNIT_ABBREV = {"examples": "ex"}


class _TextBar:
    """Plain-text progress: an updating line on a terminal, one line per
    evaluation else."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0.0

    def update(
        self, label: str, done: int, total: int, loss: float, rate: float, unit: str
    ) -> None:
        now = time.perf_counter()
        if not self.tty or now - self._last < 0.1:
            return
        self._last = now
        width = 20
        fill = int(width * done / max(total, 1))
        self.stream.write(
            f"\r{label} [{'#' * fill}{'.' * (width - fill)}] {done}/{total}"
            f" loss {loss:.4f} {rate:,.0f} {unit}/s "
        )
        self.stream.flush()

    def end(self, line: str) -> None:
        self.stream.write(
            ("\r" if self.tty else "") + line + (" " * 8 if self.tty else "") + "\n"
        )
        self.stream.flush()


class _TqdmBar:
    def __init__(self) -> None:
        from tqdm.auto import tqdm  # optional; a widget in notebooks

        self.tqdm = tqdm
        self.bar: Any = None
        self.label = ""

    def update(
        self, label: str, done: int, total: int, loss: float, rate: float, unit: str
    ) -> None:
        if self.bar is not None and self.label != label:
            self.bar.close()
            self.bar = None
        if self.bar is None:
            self.bar = self.tqdm(total=total, desc=label, leave=False, unit="batch")
            self.label = label
        self.bar.n = done
        self.bar.set_postfix(loss=f"{loss:.4f}", **{f"{unit}_s": f"{rate:,.0f}"})

    def end(self, line: str) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.tqdm.write(line)


class _Silent:
    def update(self, *args: Any) -> None:
        pass

    def end(self, line: str) -> None:
        pass


def _bar(progress: Any) -> Any:
    if progress is False or progress is None:
        return _Silent()
    if progress == "tqdm":
        try:
            return _TqdmBar()
        except ImportError:
            warnings.warn(
                "tqdm is not installed; using the plain-text progress bar", stacklevel=3
            )
            return _TextBar()
    if progress is True:
        return _TextBar()
    if hasattr(progress, "write"):
        return _TextBar(progress)
    raise ValueError(
        f"progress must be True, False, 'tqdm' or a stream, got {progress!r}"
    )


# --------------------------------------------------------------- early stop
@dataclass
class EarlyStopping:
    """Stops when ``monitor`` has not improved by ``min_delta`` for ``patience``
    epochs; ``restore_best`` puts back the weights of the best epoch.

    ``mode="auto"`` minimises names containing "loss" and maximises the others.
    """

    patience: int = 5
    monitor: str = "val_loss"
    mode: str = "auto"
    min_delta: float = 0.0
    restore_best: bool = True

    def sign(self) -> float:
        mode = self.mode
        if mode == "auto":
            mode = "min" if "loss" in self.monitor else "max"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto', got {self.mode!r}")
        return 1.0 if mode == "min" else -1.0


def _stopper(early_stopping: Any, has_val: bool) -> EarlyStopping | None:
    if isinstance(early_stopping, bool):
        raise TypeError("early_stopping must be a patience (int) or EarlyStopping")
    if isinstance(early_stopping, int):
        return _stopper(EarlyStopping(patience=early_stopping), has_val)
    s: EarlyStopping | None = early_stopping
    if s is not None and not has_val and s.monitor.startswith("val_"):
        s = EarlyStopping(
            s.patience, s.monitor[4:], s.mode, s.min_delta, s.restore_best
        )
    return s


# ----------------------------------------------------------------------- step
def train_step(
    model: Any,
    loss_fn: Callable[..., tuple[float, Any]],
    optimizer: Any,
    xs: tuple[np.ndarray, ...],
    y: np.ndarray,
    lengths: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    state: Any = None,
    clip_norm: float | None = None,
    clip_value: float | None = None,
) -> float:
    """One optimizer step: forward, loss, backward, clipping, update; the loss.

    ``state`` (one entry per recurrent layer, or None for zeros) is the initial
    state; afterwards ``model.final_state`` holds the final one. A non-finite loss
    is returned before the backward pass, and nothing is updated.

    Raises
    ------
    ValueError
        ``optimizer`` does not update ``model``'s parameters (say, it was built on
        a layer before the layer was composed into the model, which moved the
        layer's parameters into the model's buffer): the step would train nothing.
    """
    check_optimizer(model, optimizer)
    model.zero_grad()
    out = _forward(model, xs, lengths, True, state)
    value, dout = loss_fn(out, y, mask)
    if not math.isfinite(value):  # stop before the update spreads it
        return float(value)
    model.backward(dout)
    if clip_norm is not None:
        clip_grad_norm(model, clip_norm)
    if clip_value is not None:
        clip_grad_value(model, clip_value)
    optimizer.step()
    return float(value)


def check_optimizer(model: Any, optimizer: Any) -> None:
    """Raises ``ValueError`` unless ``optimizer`` updates every parameter buffer of
    ``model`` (an optimizer without ``pairs`` is not an rnnkit one: not checked).

    Examples
    --------
    >>> import rnnkit as rk
    >>> lstm = rk.LSTM(3, 4)
    >>> opt = rk.Adam(lstm)                          # built on the bare layer ...
    >>> model = rk.Sequential(lstm, rk.Linear(4, 2))  # ... which then moves
    >>> check_optimizer(model, opt)                 # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: optimizer does not update this model's parameters ...
    """
    pairs = getattr(optimizer, "pairs", None)
    if pairs is None or not hasattr(model, "parameters"):
        return
    mine = [p for p, _ in model.parameters()]
    theirs = [p for p, _ in pairs]
    if not all(any(np.may_share_memory(p, q) for q in theirs) for p in mine):
        raise ValueError(
            "optimizer does not update this model's parameters (it was built "
            "before the model was composed, or on another model); building a "
            "model moves its layers' parameters into one buffer: make the "
            "optimizer from the model, e.g. Adam(model)"
        )


def _opt_int(name: str, v: Any, low: int = 1) -> int | None:
    return None if v is None else integer(name, v, low=low)


def _opt_pos(name: str, v: Any) -> float | None:
    return None if v is None else real(name, v, low=0.0, low_open=True)


# ------------------------------------------------------------------------ fit
Callback = Callable[[int, dict[str, Any]], Any]


def fit(
    model: Any,
    loss: Any,
    optimizer: Any,
    data: Any,
    *,
    val_data: Any = None,
    validation_split: float | None = None,
    sample_weight: Any = None,
    class_weight: Any = None,
    epochs: int | None = None,
    batch_size: int = 32,
    max_steps: int | None = None,
    max_time: float | None = None,
    shuffle: bool = True,
    seed: int | np.random.Generator | None = 0,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    metrics: Iterable[Any] | Mapping[str, Callable[..., float]] | None = None,
    eval_every: float | None = None,
    eval_every_steps: int | None = None,
    extra_logs: Callable[[Mapping[str, float]], Mapping[str, float]] | None = None,
    early_stopping: int | EarlyStopping | None = None,
    start: TrainPosition | None = None,
    progress: Any = True,
    plot: str | None = None,
    callback: Callback | Sequence[Callback] | None = None,
    should_stop: Callable[[], Any] | None = None,
    distributed: bool | Any = False,
) -> History:
    """Trains ``model`` with ``optimizer`` on ``loss``; returns a :class:`History`.

    Parameters
    ----------
    model : an rnnkit model (``Sequential``, ``EncoderDecoder``) or anything with
        ``forward(*x, [lengths=], [state=], train=)``, ``backward(dout)``,
        ``zero_grad()`` (and ``final_state`` for a source that carries state).
    loss : a name (``"cross_entropy"``, ``"bce_with_logits"``, ``"mse"``) or a
        callable ``(output, target, mask) -> (loss, doutput)``.
    optimizer : an :mod:`rnnkit.optim` optimizer over the model's parameters;
        it is attached as ``model.optimizer`` so ``model.save`` stores it.
    data : in-memory batch-first data (see the module docstring), cut into
        batches of ``batch_size`` rows, reshuffled each epoch when ``shuffle``
        (``np.random.default_rng(seed)``); or a :class:`DataSource`, which makes
        its own batches (``batch_size``, ``shuffle`` and ``seed`` then unused).
    val_data : in-memory data, evaluated whole (:func:`evaluate`, with
        ``metrics``) at each evaluation; or a callable ``model -> dict`` whose
        items are logged with a ``val_`` prefix.
    validation_split : instead of ``val_data``, hold out this fraction of the
        in-memory ``data`` (its last rows, before shuffling, as Keras does).
    sample_weight : (N,) weights of the rows of in-memory ``data`` (or a prefix of
        the targets' shape, (N, T) per step); the loss becomes the weighted mean.
    class_weight : ``{class: weight}`` or a (C,) array, for class targets (binary
        float targets: classes 0 and 1); multiplies ``sample_weight``. Both travel
        as a float loss mask (:mod:`rnnkit.losses`).
    epochs : train until this many epochs are completed (counting those before
        ``start``); default 1, or no limit when ``max_steps`` or ``max_time`` is
        given.
    max_steps : optimizer steps in this call.
    max_time : seconds of training in this call (the steps only: evaluation,
        callbacks and progress excluded); stops after the step that reaches it.
    clip_norm, clip_value : gradient clipping before each step (global L2 norm,
        then per-entry value).
    metrics : names (``"accuracy"``, ``"top5_accuracy"``, ``"perplexity"``,
        ``"bits_per_char"``, ``"mae"``, ``"rmse"``, ``"f1"``, ...),
        :class:`rnnkit.metrics.Metric` objects or callables
        ``(output, target, mask) -> float``, or a dict of them (see
        :mod:`rnnkit.metrics`), evaluated on in-memory ``val_data``.
    eval_every, eval_every_steps : also evaluate every this many training
        seconds / optimizer steps (on the clocks of the position, so a resumed
        run keeps the schedule). Evaluations always happen at the end of each
        epoch and at the end of training (if steps were taken since the last).
    extra_logs : ``logs -> dict`` of quantities derived at each evaluation and
        logged with them (``CharLM`` adds bits per character this way).
    early_stopping : patience in epochs (monitoring ``val_loss``, or ``loss``
        without validation data), or an :class:`EarlyStopping`; checked at the
        end of each epoch and of training.
    start : a :class:`TrainPosition` (``history.position`` of an earlier call) to
        continue from: the same epoch and batch, counters going on.
    progress : True (plain-text bar on stderr), False, ``"tqdm"`` or a stream; one
        line per evaluation.
    plot : path of a PNG loss curve, written at the end (needs matplotlib).
    callback : ``callback(epoch, logs)`` after each evaluation, or a list of
        them (:mod:`rnnkit.callbacks`: ``ModelCheckpoint``,
        ``ReduceLROnPlateau``); returning True (exactly) stops training (see
        below).
    should_stop : polled after every step; a true value stops training with
        ``stop_reason == "interrupted"`` (a Ctrl-C flag, say).
    distributed : True (or a :class:`rnnkit.distributed.World`): data-parallel
        over the ranks of the MPI job (:mod:`rnnkit.distributed`): each rank
        trains on its contiguous share of every global batch, gradients are
        reduced before clipping, the loss and validation over the ranks; progress
        is shown by rank 0 only. With one process it is ordinary training.

    Epochs and the callback protocol
    --------------------------------
    An epoch is one pass over the source's batches. ``epoch`` as passed to the
    callback is the 0-based index of the epoch the evaluation belongs to (the one
    just finished, at the end of an epoch); progress lines name it counting from 1
    (``"epoch 3/10"`` is index 2); ``logs["epoch"]`` and ``history["epoch"]``
    count epochs completed (3.0 after that third epoch, 2.5 half way through it),
    as does ``TrainPosition.epoch`` (an int). ``logs`` holds this evaluation's
    entries of the history (floats) plus ``event`` (``"epoch"``, ``"interval"``
    or ``"end"``) and ``position`` (a :class:`TrainPosition` copy: where to
    resume from). The callback may save a checkpoint, record a curve, or stop
    training by returning True.

    Carried state
    -------------
    Between the batches of one epoch the model's final state feeds the next batch
    for the rows its ``Batch.carry`` names; each epoch (and each call) starts from
    zeros.

    Returns
    -------
    :class:`History`.
    """
    loss_fn = get_loss(loss)
    batch_size = integer("batch_size", batch_size, low=1)
    epochs = _opt_int("epochs", epochs)
    max_steps = _opt_int("max_steps", max_steps)
    eval_every_steps = _opt_int("eval_every_steps", eval_every_steps)
    max_time = _opt_pos("max_time", max_time)
    eval_every = _opt_pos("eval_every", eval_every)
    clip_norm = _opt_pos("clip_norm", clip_norm)
    clip_value = _opt_pos("clip_value", clip_value)
    check_optimizer(model, optimizer)
    if isinstance(data, DataSource):
        if (validation_split, sample_weight, class_weight) != (None, None, None):
            raise ValueError(
                "validation_split, sample_weight and class_weight need in-memory data"
            )
        source: Any = data
    else:
        rng = (
            seed
            if isinstance(seed, np.random.Generator)
            else np.random.default_rng(seed)
        )
        arrays = _as_data(data, "data")
        arrays.mask = weighted_mask(arrays.y, arrays.mask, sample_weight, class_weight)
        if validation_split is not None:
            if val_data is not None:
                raise ValueError("give val_data or validation_split, not both")
            keep, held = split_validation(arrays.n, validation_split)
            arrays, val_data = arrays.take(keep), arrays.take(held)
        source = _ArraySource(arrays, batch_size, shuffle, rng)
    nb = len(source)
    if nb < 1:
        raise ValueError("data has no batches")
    unit = getattr(source, "unit", "examples")
    rate_key = f"{unit}_per_s"
    validate: Callable[[Any], Mapping[str, float]] | None
    if val_data is None or callable(val_data):
        validate = val_data
    else:
        val = (
            val_data if isinstance(val_data, _Data) else _as_data(val_data, "val_data")
        )
        fns = _metric_fns(metrics)
        eval_batch = max(batch_size, 256)

        def validate(m: Any) -> Mapping[str, float]:
            return evaluate(m, loss_fn, val, eval_batch, fns)

    stopper = _stopper(early_stopping, validate is not None)
    sign = stopper.sign() if stopper is not None else 1.0
    if epochs is None:
        epochs = 1 if max_steps is None and max_time is None else sys.maxsize
    dist = None
    if distributed is not False and distributed is not None:
        from .distributed import DistributedFit

        world = None if distributed is True else distributed
        dist = DistributedFit(model, optimizer, source, loss_fn, world, should_stop)
        source, should_stop = dist.source, dist.stop_requested
        if not dist.world.is_root:
            progress = False
        if val_data is not None and not callable(val_data):
            keys = ["loss", *fns]

            def validate(m: Any) -> Mapping[str, float]:
                def part(d: _Data) -> Mapping[str, float]:
                    return evaluate(m, loss_fn, d, eval_batch, fns)

                return dist.evaluate(part, val, eval_batch, keys)

    bar = _bar(progress)
    if hasattr(model, "optimizer"):
        model.optimizer = optimizer
    callback = as_callback(callback, model, optimizer)
    if isinstance(loss, str) and isinstance(getattr(model, "meta", None), dict):
        model.meta["loss"] = loss  # predict_proba picks softmax or sigmoid by it
    pos = start.copy() if start is not None else TrainPosition()
    if pos.batch >= nb:
        pos.epoch, pos.batch = pos.epoch + 1, 0
    hist = History()
    hist.position = pos
    best, best_params, bad_epochs = math.inf, None, 0
    t_train, steps0 = 0.0, pos.steps  # training seconds and steps before this call
    since = {"loss": 0.0, "rows": 0, "items": 0, "t": 0.0}  # since the last eval
    next_t = _next_multiple(pos.seconds, eval_every)
    next_s = _next_multiple(pos.steps, eval_every_steps)
    total = f"/{epochs}" if epochs < sys.maxsize else ""
    stop = ""

    def do_eval(event: str, index: int) -> bool:
        """Evaluates, records, reports; True when training should stop."""
        nonlocal next_t, next_s, best, best_params, bad_epochs, stop
        logs: dict[str, Any] = {
            "loss": since["loss"] / since["rows"] if since["rows"] else math.nan
        }
        if validate is not None:
            logs.update({f"val_{k}": float(v) for k, v in validate(model).items()})
        if extra_logs is not None:
            logs.update({k: float(v) for k, v in extra_logs(dict(logs)).items()})
        dt = t_train - since["t"]
        logs["lr"] = float(getattr(optimizer, "last_lr", math.nan))
        logs["time"] = pos.seconds
        logs["step"] = pos.steps
        logs["epoch"] = pos.epoch + pos.batch / nb
        logs[rate_key] = since["items"] / dt if dt > 0 else math.nan
        for k, v in logs.items():
            hist.setdefault(k, []).append(v)
        since.update(loss=0.0, rows=0, items=0, t=t_train)
        next_t = _next_multiple(pos.seconds, eval_every)
        next_s = _next_multiple(pos.steps, eval_every_steps)
        label = f"epoch {index + 1}{total}" + (
            f" ({pos.batch / nb:.0%})" if event == "interval" else ""
        )
        shown = " ".join(
            f"{k} {v:.4g}"
            for k, v in logs.items()
            if k not in ("lr", "time", "step", "epoch", rate_key)
        )
        bar.end(
            f"{label} step {pos.steps} {pos.seconds:.1f}s | {shown} | "
            f"{logs[rate_key]:,.0f} {_UNIT_ABBREV.get(unit, unit)}/s"
        )
        halt = False
        if stopper is not None and event != "interval":
            if stopper.monitor not in logs:
                raise ValueError(
                    f"early_stopping monitors {stopper.monitor!r}, which is "
                    f"not among {sorted(logs)}"
                )
            score = sign * logs[stopper.monitor]
            if score < best - stopper.min_delta:
                best, bad_epochs, hist.best_epoch = score, 0, index
                if stopper.restore_best:
                    best_params = [p.copy() for p, _ in model.parameters()]
            else:
                bad_epochs += 1
                if bad_epochs >= stopper.patience and not stop:
                    stop, halt = "early_stopping", True
        if callback is not None:
            logs["event"], logs["position"] = event, pos.copy()
            if callback(index, logs) is True and not stop:
                stop = "callback"
                halt = True
        return halt

    index = pos.epoch  # 0-based: the epoch being trained
    while pos.epoch < epochs and not stop:
        state = None
        index = pos.epoch
        for batch in source.batches(pos.epoch, pos.batch):
            xs, y, lengths, mask = _prepare(
                model, batch.xs, batch.y, batch.lengths, batch.mask
            )
            init = _carried(state, batch.carry, batch.rows)
            t0 = time.perf_counter()
            rows, items = batch.rows, batch.items or batch.rows
            if dist is not None:
                value, rows, items, dt = dist.step(
                    xs, y, lengths, mask, init, clip_norm, clip_value, pos.steps,
                    rows, items,
                )  # fmt: skip
            else:
                value = train_step(
                    model,
                    loss_fn,
                    optimizer,
                    xs,
                    y,
                    lengths,
                    mask,
                    init,
                    clip_norm,
                    clip_value,
                )
                dt = time.perf_counter() - t0
            since["loss"] += value * rows
            since["rows"] += rows
            if not math.isfinite(value):
                stop = "non-finite loss"
                break
            state = getattr(model, "final_state", None)
            t_train += dt
            pos.seconds += dt
            pos.steps += 1
            pos.batch += 1
            pos.items += items
            since["items"] += items
            rate = since["items"] / max(t_train - since["t"], 1e-9)
            bar.update(
                f"epoch {index + 1}{total}",
                pos.batch,
                nb,
                since["loss"] / since["rows"],
                rate,
                _UNIT_ABBREV.get(unit, unit),
            )
            if max_time is not None and t_train >= max_time:
                stop = "max_time"
            elif max_steps is not None and pos.steps - steps0 >= max_steps:
                stop = "max_steps"
            elif should_stop is not None and should_stop():
                stop = "interrupted"
            if stop:
                break
            due = pos.seconds >= next_t or pos.steps >= next_s
            if due and pos.batch < nb and do_eval("interval", index):
                break
        if pos.batch >= nb:
            pos.epoch, pos.batch = pos.epoch + 1, 0
            if since["rows"]:
                do_eval("epoch", index)
    if since["rows"]:
        do_eval("end", index)
    if stopper is not None and stopper.restore_best and best_params is not None:
        for (p, _), saved in zip(model.parameters(), best_params):
            p[...] = saved
    hist.steps, hist.stop_reason = pos.steps - steps0, stop or "epochs"
    if dist is not None:
        dist.close()
    if plot is not None:
        plot_history(hist, plot)
    return hist


def _next_multiple(now: float, every: float | None) -> float:
    """The first multiple of ``every`` after ``now`` (inf without ``every``); always
    later than ``now``, even where ``now / every`` loses the + 1 to rounding."""
    if not every:
        return math.inf
    q = now / every
    nxt = (math.floor(q) + 1) * every if math.isfinite(q) else now
    return nxt if nxt > now else math.nextafter(now, math.inf)


def plot_history(history: Mapping[str, list[float]], path: str) -> bool:
    """Saves the loss curves (``loss``, ``val_loss``) as a PNG at ``path``.

    Needs matplotlib (an optional extra); without it, warns and returns False.
    """
    try:
        from matplotlib.figure import Figure  # no pyplot: leaves the backend alone
    except ImportError:
        warnings.warn(
            "matplotlib is not installed; no loss curve written", stacklevel=2
        )
        return False
    fig = Figure(figsize=(5, 3.2))
    ax = fig.subplots()
    for key in ("loss", "val_loss"):
        if history.get(key):
            ax.plot(
                range(1, len(history[key]) + 1), history[key], marker="o", label=key
            )
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


__all__ = [
    "METRICS",
    "Batch",
    "DataSource",
    "EarlyStopping",
    "History",
    "TrainPosition",
    "accuracy",
    "evaluate",
    "fit",
    "plot_history",
    "train_step",
]
