"""Callbacks for :func:`rnnkit.fit`: checkpoints of the best and the last model, and
a learning rate reduced when a metric stops improving.

There is one callback protocol, ``fit``'s: ``callback(epoch, logs)`` after each
evaluation (``logs`` has the history's entries, ``event`` -- ``"epoch"``,
``"interval"`` or ``"end"`` -- and ``position``); returning True stops training.
``fit(callback=...)`` takes one callable or a list of them. A callback that also
has ``bind(model, optimizer)`` is told what it trains before the first step:
that is how :class:`ModelCheckpoint` knows what to save and
:class:`ReduceLROnPlateau` which rate to lower. :class:`rnnkit.EarlyStopping`
is ``fit(early_stopping=...)`` (it restores the best weights) and stays in
:mod:`rnnkit.train`.

Examples
--------
>>> import os, tempfile, numpy as np, rnnkit as rk
>>> d = tempfile.mkdtemp()
>>> model = rk.Sequential(rk.GRU(3, 8, seed=0), rk.Linear(8, 2, seed=1),
...                       output="last")
>>> x = np.random.default_rng(0).standard_normal((64, 5, 3))
>>> y = (x[:, 0, 0] > 0).astype(int)
>>> ckpt = rk.ModelCheckpoint(best=os.path.join(d, "best.rk"),
...                           last=os.path.join(d, "last.rk"))
>>> plateau = rk.ReduceLROnPlateau(factor=0.5, patience=1)
>>> hist = rk.fit(model, "cross_entropy", rk.Adam(model, lr=1e-2), (x, y),
...               validation_split=0.25, epochs=3, progress=False,
...               callback=[ckpt, plateau])
>>> type(rk.load(ckpt.best)).__name__, ckpt.best_epoch is not None
('Sequential', True)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

_MINIMISED = ("loss", "perplexity", "bits", "bpc", "mae", "mse", "rmse", "error")


def monitor_sign(monitor: str, mode: str = "auto") -> float:
    """+1 when ``monitor`` is minimised, -1 when maximised.

    ``mode="auto"`` minimises losses and errors (names containing ``loss``,
    ``perplexity``, ``bits``, ``bpc``, ``mae``, ``mse``, ``rmse``, ``error``) and
    maximises everything else (accuracy, F1, ...).

    Examples
    --------
    >>> monitor_sign("val_loss"), monitor_sign("val_accuracy")
    (1.0, -1.0)
    """
    if mode == "auto":
        mode = "min" if any(k in monitor for k in _MINIMISED) else "max"
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
    return 1.0 if mode == "min" else -1.0


class _Monitor:
    """Tracks the best value of ``logs[monitor]`` (sign-adjusted)."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        self.monitor, self.mode, self.min_delta = monitor, mode, float(min_delta)
        self.sign = monitor_sign(monitor, mode)
        self.best = math.inf  # sign * value

    def value(self, logs: dict[str, Any], who: str) -> float:
        if self.monitor not in logs:
            known = sorted(k for k in logs if k not in ("event", "position"))
            raise ValueError(
                f"{who} monitors {self.monitor!r}, which is not among the logs "
                f"{known} (validation metrics need val_data or validation_split)"
            )
        return float(logs[self.monitor])

    def improved(self, v: float) -> bool:
        """Records ``v``; True when it beats the best by more than min_delta."""
        score = self.sign * v
        if math.isfinite(score) and score < self.best - self.min_delta:
            self.best = score
            return True
        return False


class ModelCheckpoint:
    """Saves the model (and its optimizer) after evaluations: the best so far by
    ``monitor`` to ``best``, the latest to ``last``. Each write is atomic (a
    temporary file renamed over the path, :func:`rnnkit.save`), so an interrupted
    run never leaves a torn checkpoint.

    Parameters
    ----------
    best : path or None
        Written whenever ``monitor`` improves (Keras's ``save_best_only=True``).
    last : path or None
        Written after every evaluation in ``events``.
    monitor : str, default "val_loss"
        A key of the logs (``"loss"`` without validation data, ``"val_accuracy"``).
    mode : {"auto", "min", "max"}
        See :func:`monitor_sign`.
    min_delta : float
        How much better than the best a value must be.
    events : sequence of str, default ("epoch", "end")
        Which evaluations count; add ``"interval"`` to also save at the
        ``eval_every`` evaluations within an epoch.
    model : model or None
        What to save; None means the model ``fit`` trains (``bind``).

    Attributes
    ----------
    best_value, best_epoch : the best monitored value and its 0-based epoch.

    Each saved model's ``meta["checkpoint"]`` records ``epoch`` (0-based),
    ``step``, ``monitor``, ``value`` and ``position`` (the
    :class:`rnnkit.train.TrainPosition` as a dict, for ``fit(start=...)``).
    ``rk.load(path)`` reads it back (a :class:`rnnkit.CharLM` for a char model).
    """

    def __init__(
        self,
        best: str | os.PathLike[str] | None = None,
        last: str | os.PathLike[str] | None = None,
        *,
        monitor: str = "val_loss",
        mode: str = "auto",
        min_delta: float = 0.0,
        events: Sequence[str] = ("epoch", "end"),
        model: Any = None,
    ) -> None:
        if best is None and last is None:
            raise ValueError("ModelCheckpoint needs a path: best=..., last=... or both")
        bad = set(events) - {"epoch", "interval", "end"}
        if bad:
            raise ValueError(
                f"events must be among 'epoch', 'interval', 'end', got {sorted(bad)}"
            )
        self.best = None if best is None else os.fspath(best)
        self.last = None if last is None else os.fspath(last)
        self.events = tuple(events)
        self._monitor = _Monitor(monitor, mode, min_delta)
        self.model = model
        self.best_value: float | None = None
        self.best_epoch: int | None = None

    def bind(self, model: Any, optimizer: Any) -> None:
        """Called by :func:`rnnkit.fit` before training: the model to save."""
        if self.model is None:
            self.model = model

    def _save(self, path: str, epoch: int, logs: dict[str, Any], value: Any) -> None:
        from dataclasses import asdict, is_dataclass

        pos = logs.get("position")
        self.model.meta["checkpoint"] = {
            "epoch": int(epoch),
            "step": int(logs.get("step", 0)),
            "monitor": self._monitor.monitor,
            "value": None if value is None or not math.isfinite(value) else value,
            "position": asdict(pos) if is_dataclass(pos) else None,  # type: ignore[arg-type]
        }
        self.model.save(path)

    def __call__(self, epoch: int, logs: dict[str, Any]) -> None:
        if self.model is None:
            raise RuntimeError(
                "ModelCheckpoint has no model: pass it to fit(callback=...) or "
                "ModelCheckpoint(model=...)"
            )
        if logs.get("event", "epoch") not in self.events:
            return
        value = None
        if self.best is not None:
            value = self._monitor.value(logs, "ModelCheckpoint")
            if self._monitor.improved(value):
                self.best_value, self.best_epoch = value, int(epoch)
                self._save(self.best, epoch, logs, value)
        if self.last is not None:
            v = logs.get(self._monitor.monitor) if value is None else value
            self._save(self.last, epoch, logs, None if v is None else float(v))

    def __repr__(self) -> str:
        return (
            f"ModelCheckpoint(best={self.best!r}, last={self.last!r}, "
            f"monitor={self._monitor.monitor!r})"
        )


class ReduceLROnPlateau:
    """Multiplies the optimizer's base rate ``lr`` by ``factor`` when ``monitor``
    has not improved for ``patience`` evaluations (Keras's and
    ``torch.optim.lr_scheduler.ReduceLROnPlateau``).

    It changes ``optimizer.lr``, the base rate that any ``schedule`` multiplies,
    so it composes with warm-up or cosine schedules, and a checkpoint saves the
    reduced rate with the optimizer.

    Parameters
    ----------
    monitor : str, default "val_loss"
    factor : float, default 0.1
        In (0, 1).
    patience : int, default 10
        Evaluations without improvement before a reduction.
    mode : {"auto", "min", "max"}
        See :func:`monitor_sign`.
    min_delta : float, default 1e-4
        Improvements smaller than this do not count.
    cooldown : int, default 0
        Evaluations after a reduction before counting again.
    min_lr : float, default 0.0
        The rate never goes below this.
    events : sequence of str, default ("epoch",)
        Which evaluations count (add ``"interval"`` for a time-budgeted run whose
        epochs are long).
    optimizer : optimizer or None
        None means the one ``fit`` uses (``bind``).

    Attributes
    ----------
    reductions : list of (step, new lr)
        When it lowered the rate.

    Examples
    --------
    >>> import numpy as np
    >>> from rnnkit import SGD
    >>> opt = SGD([(np.zeros(1), np.zeros(1))], lr=1.0)
    >>> r = ReduceLROnPlateau(factor=0.5, patience=2, optimizer=opt)
    >>> for v in [1.0, 1.0, 1.0, 1.0, 1.0]:
    ...     r(0, {"val_loss": v, "event": "epoch", "step": 0})
    >>> opt.lr
    0.25
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
        events: Sequence[str] = ("epoch",),
        optimizer: Any = None,
    ) -> None:
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        if int(patience) < 0 or int(cooldown) < 0:
            raise ValueError("patience and cooldown must be >= 0")
        if min_lr < 0:
            raise ValueError(f"min_lr must be >= 0, got {min_lr}")
        self._monitor = _Monitor(monitor, mode, min_delta)
        self.factor, self.patience = float(factor), int(patience)
        self.cooldown, self.min_lr = int(cooldown), float(min_lr)
        self.events = tuple(events)
        self.optimizer = optimizer
        self.wait, self._cool = 0, 0
        self.reductions: list[tuple[int, float]] = []

    def bind(self, model: Any, optimizer: Any) -> None:
        """Called by :func:`rnnkit.fit` before training: the optimizer to adjust."""
        if self.optimizer is None:
            self.optimizer = optimizer

    def __call__(self, epoch: int, logs: dict[str, Any]) -> None:
        if logs.get("event", "epoch") not in self.events:
            return
        if self.optimizer is None:
            raise RuntimeError("ReduceLROnPlateau has no optimizer")
        v = self._monitor.value(logs, "ReduceLROnPlateau")
        if self._cool > 0:
            self._cool -= 1
            self.wait = 0
        if self._monitor.improved(v):
            self.wait = 0
            return
        if self._cool > 0:
            return
        self.wait += 1
        if self.wait >= self.patience:
            lr = max(self.optimizer.lr * self.factor, self.min_lr)
            if lr < self.optimizer.lr:
                self.optimizer.lr = lr
                self.reductions.append((int(logs.get("step", 0)), lr))
            self.wait, self._cool = 0, self.cooldown

    def __repr__(self) -> str:
        return (
            f"ReduceLROnPlateau(monitor={self._monitor.monitor!r}, "
            f"factor={self.factor}, patience={self.patience})"
        )


Callback = Callable[[int, dict[str, Any]], Any]


def as_callback(callback: Any, model: Any, optimizer: Any) -> Callback | None:
    """One callable from what ``fit(callback=...)`` takes: None, a callable or a
    list of callables; each with a ``bind`` method is bound to ``model`` and
    ``optimizer`` first. The combined callback calls every one in order and
    returns True when any did."""
    if callback is None:
        return None
    cbs = list(callback) if isinstance(callback, (list, tuple)) else [callback]
    for i, cb in enumerate(cbs):
        if not callable(cb):
            raise TypeError(
                f"callback[{i}] must be callable(epoch, logs), got {type(cb).__name__}"
            )
        bind = getattr(cb, "bind", None)
        if callable(bind):
            bind(model, optimizer)
    if len(cbs) == 1:
        return cbs[0]

    def combined(epoch: int, logs: dict[str, Any]) -> bool:
        stop = False
        for cb in cbs:
            stop = (cb(epoch, logs) is True) or stop
        return stop

    return combined


__all__ = ["ModelCheckpoint", "ReduceLROnPlateau", "as_callback", "monitor_sign"]
