"""A ``fit`` loop: batches, epochs or a step/time budget, validation, progress,
early stopping, a history of metrics and an optional loss-curve PNG.

    history = rk.fit(model, "cross_entropy", rk.Adam(model, lr=3e-3),
                     (x, y, lengths), val_data=(xv, yv, lv), epochs=20,
                     batch_size=64, metrics=["accuracy"], early_stopping=3)
    history["val_accuracy"][-1]

Data is batch-first: ``(x, y)``, ``(x, y, lengths)`` or a dict with keys ``x``,
``y`` and optionally ``lengths`` and ``mask``; every array is sliced along axis 0.
``x`` may be a tuple of arrays, passed positionally to ``model.forward`` (for
:class:`~rnnkit.EncoderDecoder`: ``(src, tgt_in)``). ``lengths`` goes to
``model.forward(..., lengths=...)``; for a many-to-many ``Sequential`` each batch
is trimmed to its longest row and, without an explicit ``mask``, the loss is
masked to the valid steps.

A custom loop needs none of this: ``model.zero_grad()``, ``out = model.forward(...)``,
``loss, d = rk.losses.cross_entropy(out, y)``, ``model.backward(d)``,
``optimizer.step()``.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from .losses import get_loss, length_mask
from .optim import clip_grad_norm, clip_grad_value


# -------------------------------------------------------------------- metrics
def accuracy(
    output: Any, target: Any, mask: Any = None, ignore_index: int | None = -100
) -> float:
    """Fraction of correct predictions among the entries that count.

    Integer targets: ``argmax(output, -1) == target`` (``output`` (..., C) logits),
    leaving out ``ignore_index`` and ``mask == False``. Float targets (binary):
    ``(output > 0) == (target > 0.5)`` with ``output`` logits of the same shape.
    """
    out, t = np.asarray(output), np.asarray(target)
    if t.dtype.kind in "iu":
        correct = np.argmax(out, axis=-1) == t
        valid = np.ones(t.shape, bool) if ignore_index is None else t != ignore_index
    else:
        correct = (out > 0) == (t > 0.5)
        valid = np.ones(t.shape, bool)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        valid = valid & m.reshape(m.shape + (1,) * (valid.ndim - m.ndim))
    n = int(valid.sum())
    return float((correct & valid).sum()) / n if n else 0.0


METRICS: dict[str, Callable[..., float]] = {"accuracy": accuracy}


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
    model: Any, b: _Data
) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Trims a Sequential batch to its longest row; derives the loss mask."""
    from .models import Sequential

    xs, y, lengths, mask = b.xs, b.y, b.lengths, b.mask
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
                mask = mask[:, :T]
    return xs, y, lengths, mask


def _forward(model: Any, xs: tuple[np.ndarray, ...], lengths: Any, train: bool) -> Any:
    if lengths is None:
        return model.forward(*xs, train=train)
    return model.forward(*xs, lengths=lengths, train=train)


def _metric_fns(metrics: Any) -> dict[str, Callable[..., float]]:
    if metrics is None:
        return {}
    if isinstance(metrics, Mapping):
        return dict(metrics)
    out = {}
    for m in metrics:
        if isinstance(m, str):
            if m not in METRICS:
                raise ValueError(f"unknown metric {m!r}; known: {sorted(METRICS)}")
            out[m] = METRICS[m]
        else:
            out[getattr(m, "__name__", "metric")] = m
    return out


def evaluate(
    model: Any, loss: Any, data: Any, batch_size: int = 256, metrics: Any = None
) -> dict[str, float]:
    """Inference-mode loss and metrics over ``data`` (batch means weighted by rows)."""
    loss_fn = get_loss(loss)
    fns = _metric_fns(metrics)
    d = data if isinstance(data, _Data) else _as_data(data, "data")
    sums = {"loss": 0.0, **{k: 0.0 for k in fns}}
    for a in range(0, d.n, batch_size):
        b = d.take(slice(a, a + batch_size))
        xs, y, lengths, mask = _prepare(model, b)
        out = _forward(model, xs, lengths, train=False)
        value, _ = loss_fn(out, y, mask)
        rows = b.n
        sums["loss"] += value * rows
        for k, fn in fns.items():
            sums[k] += fn(out, y, mask) * rows
    return {k: v / d.n for k, v in sums.items()}


# ------------------------------------------------------------------- progress
class _TextBar:
    """Plain-text progress: an updating line on a terminal, one line per epoch else."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0.0

    def update(
        self, epoch: str, done: int, total: int, loss: float, rate: float
    ) -> None:
        now = time.perf_counter()
        if not self.tty or now - self._last < 0.1:
            return
        self._last = now
        width = 20
        fill = int(width * done / max(total, 1))
        self.stream.write(
            f"\r{epoch} [{'#' * fill}{'.' * (width - fill)}] {done}/{total}"
            f" loss {loss:.4f} {rate:,.0f} ex/s "
        )
        self.stream.flush()

    def end(self, line: str) -> None:
        self.stream.write(
            ("\r" if self.tty else "") + line + (" " * 8 if self.tty else "") + "\n"
        )
        self.stream.flush()


class _TqdmBar:
    def __init__(self) -> None:
        import tqdm  # type: ignore[import-untyped]  # optional

        self.tqdm = tqdm.tqdm
        self.bar: Any = None

    def update(
        self, epoch: str, done: int, total: int, loss: float, rate: float
    ) -> None:
        if self.bar is None:
            self.bar = self.tqdm(total=total, desc=epoch, leave=False, unit="batch")
        self.bar.n = done
        self.bar.set_postfix(loss=f"{loss:.4f}", ex_s=f"{rate:,.0f}", refresh=True)

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


class History(dict):
    """Per-epoch metrics (``history["loss"]``, ``["val_loss"]``, ...) plus
    ``steps``, ``stop_reason`` and ``best_epoch`` (0-based, or None)."""

    steps: int = 0
    stop_reason: str = ""
    best_epoch: int | None = None


# ------------------------------------------------------------------------ fit
def fit(
    model: Any,
    loss: Any,
    optimizer: Any,
    data: Any,
    *,
    val_data: Any = None,
    epochs: int = 1,
    batch_size: int = 32,
    max_steps: int | None = None,
    max_time: float | None = None,
    shuffle: bool = True,
    seed: int | np.random.Generator | None = 0,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    metrics: Iterable[Any] | Mapping[str, Callable[..., float]] | None = None,
    early_stopping: int | EarlyStopping | None = None,
    progress: Any = True,
    plot: str | None = None,
    callback: Callable[[int, dict[str, float]], Any] | None = None,
) -> History:
    """Trains ``model`` with ``optimizer`` on ``loss``; returns a :class:`History`.

    Parameters
    ----------
    model : an rnnkit model (``Sequential``, ``EncoderDecoder``) or anything with
        ``forward(*x, [lengths=], train=)``, ``backward(dout)``, ``zero_grad()``.
    loss : a name (``"cross_entropy"``, ``"bce_with_logits"``, ``"mse"``) or a
        callable ``(output, target, mask) -> (loss, doutput)``.
    optimizer : an :mod:`rnnkit.optim` optimizer over the model's parameters;
        it is attached as ``model.optimizer`` so ``model.save`` stores it.
    data, val_data : batch-first data (see the module docstring).
    epochs : passes over ``data``; ``max_steps`` (optimizer steps) and
        ``max_time`` (seconds) stop earlier, at the end of the current step.
    shuffle, seed : reshuffle each epoch with ``np.random.default_rng(seed)``.
    clip_norm, clip_value : gradient clipping before each step (global L2 norm,
        then per-entry value).
    metrics : names in :data:`METRICS` (``"accuracy"``) or a dict of callables
        ``(output, target, mask) -> float``, evaluated on ``val_data`` each epoch.
    early_stopping : patience in epochs (monitoring ``val_loss``, or ``loss``
        without validation data), or an :class:`EarlyStopping`.
    progress : True (plain-text bar on stderr), False, ``"tqdm"`` or a stream.
    plot : path of a PNG loss curve, written at the end (needs matplotlib).
    callback : called as ``callback(epoch, logs)`` after each epoch; returning
        True stops training.

    Returns
    -------
    History: lists per epoch of ``loss`` (mean training loss), ``val_loss`` and
    ``val_<metric>`` (with ``val_data``), ``lr``, ``time`` (s) and
    ``examples_per_s``.
    """
    loss_fn = get_loss(loss)
    train = _as_data(data, "data")
    val = None if val_data is None else _as_data(val_data, "val_data")
    fns = _metric_fns(metrics)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    stopper: EarlyStopping | None
    if isinstance(early_stopping, bool):
        raise TypeError("early_stopping must be a patience (int) or EarlyStopping")
    if isinstance(early_stopping, int):
        stopper = EarlyStopping(patience=early_stopping)
    else:
        stopper = early_stopping
    if stopper is not None and val is None and stopper.monitor.startswith("val_"):
        stopper = EarlyStopping(
            stopper.patience,
            stopper.monitor[4:],
            stopper.mode,
            stopper.min_delta,
            stopper.restore_best,
        )
    sign = stopper.sign() if stopper is not None else 1.0
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    bar = _bar(progress)
    if hasattr(model, "optimizer"):
        model.optimizer = optimizer
    hist = History()
    best, best_params, bad_epochs = math.inf, None, 0
    t_start = time.perf_counter()
    steps = 0
    nb = math.ceil(train.n / batch_size)
    stop = ""
    for epoch in range(epochs):
        t0 = time.perf_counter()
        order = rng.permutation(train.n) if shuffle else np.arange(train.n)
        total, seen = 0.0, 0
        label = f"epoch {epoch + 1}/{epochs}"
        for j in range(nb):
            b = train.take(order[j * batch_size : (j + 1) * batch_size])
            xs, y, lengths, mask = _prepare(model, b)
            model.zero_grad()
            out = _forward(model, xs, lengths, train=True)
            value, dout = loss_fn(out, y, mask)
            total += value * b.n
            seen += b.n
            if not math.isfinite(value):  # stop before the update spreads it
                stop = "non-finite loss"
                break
            model.backward(dout)
            if clip_norm is not None:
                clip_grad_norm(model, clip_norm)
            if clip_value is not None:
                clip_grad_value(model, clip_value)
            optimizer.step()
            steps += 1
            elapsed = time.perf_counter() - t0
            bar.update(label, j + 1, nb, total / seen, seen / max(elapsed, 1e-9))
            if max_steps is not None and steps >= max_steps:
                stop = "max_steps"
            elif max_time is not None and time.perf_counter() - t_start >= max_time:
                stop = "max_time"
            if stop:
                break
        elapsed = time.perf_counter() - t0
        logs = {"loss": total / seen}
        if val is not None:
            logs.update(
                {
                    f"val_{k}": v
                    for k, v in evaluate(
                        model, loss_fn, val, max(batch_size, 256), fns
                    ).items()
                }
            )
        logs["lr"] = float(getattr(optimizer, "last_lr", math.nan))
        logs["time"] = elapsed
        logs["examples_per_s"] = seen / max(elapsed, 1e-9)
        for k, v in logs.items():
            hist.setdefault(k, []).append(v)
        bar.end(
            f"{label} "
            + " ".join(
                f"{k} {v:.4g}"
                for k, v in logs.items()
                if k not in ("time", "examples_per_s", "lr")
            )
            + f" | {elapsed:.1f}s {logs['examples_per_s']:,.0f} ex/s"
        )
        if stopper is not None:
            if stopper.monitor not in logs:
                raise ValueError(
                    f"early_stopping monitors {stopper.monitor!r}, which is "
                    f"not among {sorted(logs)}"
                )
            score = sign * logs[stopper.monitor]
            if score < best - stopper.min_delta:
                best, bad_epochs, hist.best_epoch = score, 0, epoch
                if stopper.restore_best:
                    best_params = [p.copy() for p, _ in model.parameters()]
            else:
                bad_epochs += 1
                if bad_epochs >= stopper.patience and not stop:
                    stop = "early_stopping"
        if callback is not None and callback(epoch, logs) is True and not stop:
            stop = "callback"
        if stop:
            break
    if stopper is not None and stopper.restore_best and best_params is not None:
        for (p, _), saved in zip(model.parameters(), best_params):
            p[...] = saved
    hist.steps, hist.stop_reason = steps, stop or "epochs"
    if plot is not None:
        plot_history(hist, plot)
    return hist


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
    "EarlyStopping",
    "History",
    "accuracy",
    "evaluate",
    "fit",
    "plot_history",
]
