"""Metrics for :func:`rnnkit.fit` and :func:`rnnkit.evaluate`: accumulated over a
whole data set, then reduced once.

A metric is exact over the data, not a mean of per-batch values: perplexity is
``exp`` of the mean cross-entropy over every token that counts, F1 comes from the
confusion counts of every batch, RMSE is the root of the mean square over every
entry. Each follows a three-call protocol (Keras's stateful metrics)::

    m = rk.metrics.F1()
    m.reset()
    for out, y, mask in batches:
        m.update(out, y, mask)     # outputs are the model's: logits, or predictions
    m.result()                     # a float, or a dict of floats (per class)

``fit(metrics=...)`` and ``evaluate(metrics=...)`` take a list of names (see
:data:`METRICS`), :class:`Metric` objects and plain callables
``fn(output, target, mask) -> float`` (averaged over batches, weighted by rows), or
a dict ``{name: metric or callable}``. A metric whose result is a dict logs one
entry per key (``val_precision_0``, ``val_precision_1``, ...).

================================  ==============================================
name                              what
================================  ==============================================
``accuracy``                      argmax == target (integer targets), or
                                  ``(logit > 0) == (target > 0.5)`` (float targets)
``top_k_accuracy``, ``top3_...``  target among the k largest logits (k = 5, 3, ...)
``perplexity``                    ``exp(mean cross-entropy)``, in nats
``bits_per_char`` (``bpc``)       mean cross-entropy / ln 2
``mae``, ``mse``, ``rmse``        regression errors over every entry
``precision``, ``recall``, ``f1`` macro averages over the classes seen;
                                  ``Precision(average=None)`` etc. give one
                                  value per class, ``average="micro"`` pools them
================================  ==============================================

Masks follow the losses (:mod:`rnnkit.losses`): ``mask`` is the output's leading
shape (or a prefix of it); False (or a weight of 0) leaves an entry out, and a
float mask weights the entries. Integer targets equal to ``ignore_index`` (-100)
are left out too.

Shapes
------
Classification: output (..., C) logits, target (...) ints in [0, C); binary:
output (...) logits, target (...) floats in [0, 1]. Regression: output and target
(...) of one shape.

Examples
--------
>>> import numpy as np
>>> from rnnkit import metrics
>>> logits = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]])
>>> m = metrics.get("f1")
>>> m.update(logits, np.array([0, 1, 1]))
>>> round(m.result(), 4)          # classes 0, 1, 2: F1 1, 2/3, 0
0.5556
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Union

import numpy as np

MetricResult = Union[float, dict[str, float]]


def _weights(mask: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Per-entry weights (float64, ``shape``) from a bool / float mask or None."""
    if mask is None:
        return np.ones(shape)
    m = np.asarray(mask)
    if m.shape != shape[: m.ndim]:
        raise ValueError(
            f"mask must have shape {shape} or a prefix of it, got {m.shape}"
        )
    m = m.astype(np.float64).reshape(m.shape + (1,) * (len(shape) - m.ndim))
    return np.broadcast_to(m, shape)


def _class_targets(
    output: Any, target: Any, mask: Any, ignore_index: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(predicted class, target class, weight, number of classes), flat.

    Integer targets: ``output`` (..., C) logits. Float targets (binary): ``output``
    logits of the target's shape, two classes.
    """
    out, t = np.asarray(output), np.asarray(target)
    if t.dtype.kind in "iu":
        if out.shape[:-1] != t.shape:
            raise ValueError(
                f"output must have shape target.shape + (C,) = {t.shape} + (C,), "
                f"got {out.shape}"
            )
        pred, C = np.argmax(out, axis=-1), out.shape[-1]
        w = _weights(mask, t.shape).copy()
        if ignore_index is not None:
            w[t == ignore_index] = 0.0
        tc = np.where(w > 0, t, 0)
    else:
        if out.shape != t.shape:
            raise ValueError(
                f"output must have the target's shape {t.shape} (binary), "
                f"got {out.shape}"
            )
        pred, tc, C = (out > 0).astype(np.int64), (t > 0.5).astype(np.int64), 2
        w = _weights(mask, t.shape)
    return pred.reshape(-1), tc.reshape(-1).astype(np.int64), w.reshape(-1), C


class Metric:
    """Base of the accumulating metrics: :meth:`reset`, :meth:`update`, :meth:`result`.

    Subclasses set ``name`` (the history key, ``val_<name>``).
    """

    name = "metric"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:  # pragma: no cover - abstract
        """Forgets every update."""
        raise NotImplementedError

    def update(
        self, output: Any, target: Any, mask: Any = None
    ) -> None:  # pragma: no cover - abstract
        """Adds one batch (``output`` as the model gives it: logits or predictions)."""
        raise NotImplementedError

    def result(self) -> MetricResult:  # pragma: no cover - abstract
        """The metric over every batch since :meth:`reset` (NaN before any)."""
        raise NotImplementedError

    def __call__(self, output: Any, target: Any, mask: Any = None) -> MetricResult:
        """The metric of one batch alone (resets first)."""
        self.reset()
        self.update(output, target, mask)
        return self.result()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class _Ratio(Metric):
    """sum(weight * value) / sum(weight), then :meth:`_finish`."""

    def reset(self) -> None:
        self.total, self.count = 0.0, 0.0

    def _add(self, values: np.ndarray, w: np.ndarray) -> None:
        self.total += float(np.sum(values * w, dtype=np.float64))
        self.count += float(np.sum(w, dtype=np.float64))

    def _finish(self, mean: float) -> float:
        return mean

    def result(self) -> float:
        return self._finish(self.total / self.count) if self.count else math.nan


class Accuracy(_Ratio):
    """Fraction of correct predictions among the entries that count.

    Integer targets: ``argmax(output, -1) == target``; float targets (binary):
    ``(output > 0) == (target > 0.5)``.

    Examples
    --------
    >>> import numpy as np
    >>> Accuracy()(np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([0, 1]))
    0.5
    """

    name = "accuracy"

    def __init__(self, ignore_index: int | None = -100) -> None:
        self.ignore_index = ignore_index
        super().__init__()

    def update(self, output: Any, target: Any, mask: Any = None) -> None:
        pred, t, w, _ = _class_targets(output, target, mask, self.ignore_index)
        self._add((pred == t).astype(np.float64), w)


class TopKAccuracy(_Ratio):
    """Fraction of entries whose target is among the ``k`` largest logits.

    Examples
    --------
    >>> import numpy as np
    >>> TopKAccuracy(2)(np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]]), np.array([1, 2]))
    0.5
    """

    def __init__(self, k: int = 5, ignore_index: int | None = -100) -> None:
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        self.k, self.ignore_index = int(k), ignore_index
        self.name = f"top{self.k}_accuracy"
        super().__init__()

    def update(self, output: Any, target: Any, mask: Any = None) -> None:
        out, t = np.asarray(output), np.asarray(target)
        if t.dtype.kind not in "iu" or out.shape[:-1] != t.shape:
            raise ValueError(
                "top-k accuracy needs integer targets (...) and logits (..., C); got "
                f"target {t.dtype}{t.shape}, output {out.shape}"
            )
        C = out.shape[-1]
        w = _weights(mask, t.shape).copy()
        if self.ignore_index is not None:
            w[t == self.ignore_index] = 0.0
        tc = np.clip(np.where(w > 0, t, 0), 0, C - 1)
        # the target is in the top k when fewer than k logits are larger
        mine = np.take_along_axis(out, tc[..., None], axis=-1)
        larger = (out > mine).sum(axis=-1)
        self._add((larger < self.k).astype(np.float64), w)

    def __repr__(self) -> str:
        return f"TopKAccuracy(k={self.k})"


class _CrossEntropyMean(_Ratio):
    """Mean softmax cross-entropy (nats) over the entries that count."""

    def __init__(self, ignore_index: int | None = -100) -> None:
        self.ignore_index = ignore_index
        super().__init__()

    def update(self, output: Any, target: Any, mask: Any = None) -> None:
        z = np.asarray(output, dtype=np.float64)
        t = np.asarray(target)
        if t.dtype.kind not in "iu" or z.shape[:-1] != t.shape:
            raise ValueError(
                f"{self.name} needs integer targets (...) and logits (..., C); got "
                f"target {t.dtype}{t.shape}, output {z.shape}"
            )
        w = _weights(mask, t.shape).copy()
        if self.ignore_index is not None:
            w[t == self.ignore_index] = 0.0
        tc = np.clip(np.where(w > 0, t, 0), 0, z.shape[-1] - 1)
        zmax = z.max(axis=-1, keepdims=True)
        logz = np.log(np.exp(z - zmax).sum(axis=-1)) + zmax[..., 0]
        nll = logz - np.take_along_axis(z, tc[..., None], axis=-1)[..., 0]
        self._add(nll, w)


class Perplexity(_CrossEntropyMean):
    """``exp`` of the mean cross-entropy (nats) over every token that counts.

    Examples
    --------
    >>> import numpy as np
    >>> round(Perplexity()(np.zeros((4, 10)), np.arange(4)), 6)   # uniform over 10
    10.0
    """

    name = "perplexity"

    def _finish(self, mean: float) -> float:
        return math.exp(mean) if mean < 709.0 else math.inf


class BitsPerChar(_CrossEntropyMean):
    """Mean cross-entropy in bits (``nats / ln 2``): bits per character for a
    character model, bits per token in general.

    Examples
    --------
    >>> import numpy as np
    >>> round(BitsPerChar()(np.zeros((4, 8)), np.arange(4)), 6)    # uniform over 8
    3.0
    """

    name = "bits_per_char"

    def _finish(self, mean: float) -> float:
        return mean / math.log(2.0)


class _Regression(_Ratio):
    def update(self, output: Any, target: Any, mask: Any = None) -> None:
        x = np.asarray(output, dtype=np.float64)
        y = np.asarray(target, dtype=np.float64)
        if x.shape != y.shape:
            raise ValueError(
                f"{self.name}: target must have the output's shape {x.shape}, "
                f"got {y.shape}"
            )
        self._add(self._per(x - y), _weights(mask, x.shape))

    def _per(self, r: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class MAE(_Regression):
    """Mean absolute error over every entry that counts.

    Examples
    --------
    >>> import numpy as np
    >>> MAE()(np.array([1.0, 3.0]), np.array([0.0, 0.0]))
    2.0
    """

    name = "mae"

    def _per(self, r: np.ndarray) -> np.ndarray:
        return np.abs(r)


class MSE(_Regression):
    """Mean squared error over every entry that counts.

    Examples
    --------
    >>> import numpy as np
    >>> MSE()(np.array([1.0, 3.0]), np.array([0.0, 0.0]))
    5.0
    """

    name = "mse"

    def _per(self, r: np.ndarray) -> np.ndarray:
        return r * r


class RMSE(MSE):
    """Root of the mean squared error over every entry that counts (not a mean of
    per-batch roots).

    Examples
    --------
    >>> import numpy as np
    >>> RMSE()(np.array([6.0, 8.0]), np.array([0.0, 0.0]))     # sqrt((36 + 64) / 2)
    7.0710678118654755
    """

    name = "rmse"

    def _finish(self, mean: float) -> float:
        return math.sqrt(mean)


_AVERAGES = ("macro", "micro", None)


class _Confusion(Metric):
    """Per-class true-positive, false-positive and false-negative counts."""

    kind = ""

    def __init__(
        self, average: str | None = "macro", ignore_index: int | None = -100
    ) -> None:
        if average not in _AVERAGES:
            raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")
        self.average, self.ignore_index = average, ignore_index
        self.name = self.kind if average != "micro" else f"{self.kind}_micro"
        super().__init__()

    def reset(self) -> None:
        self.tp = np.zeros(0)
        self.fp = np.zeros(0)
        self.fn = np.zeros(0)

    def _grow(self, C: int) -> None:
        if C > self.tp.size:
            pad = C - self.tp.size
            self.tp, self.fp, self.fn = (np.pad(a, (0, pad)) for a in self._counts())

    def _counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.tp, self.fp, self.fn

    def update(self, output: Any, target: Any, mask: Any = None) -> None:
        pred, t, w, C = _class_targets(output, target, mask, self.ignore_index)
        self._grow(C)
        hit = pred == t
        self.tp += np.bincount(t, weights=w * hit, minlength=C)[:C]
        self.fp += np.bincount(pred, weights=w * ~hit, minlength=C)[:C]
        self.fn += np.bincount(t, weights=w * ~hit, minlength=C)[:C]

    @staticmethod
    def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(b > 0, a / np.where(b > 0, b, 1), 0.0)

    def _scores(self, tp: Any, fp: Any, fn: Any) -> Any:
        p, r = self._div(tp, tp + fp), self._div(tp, tp + fn)
        f = self._div(2 * p * r, p + r)
        return {"precision": p, "recall": r, "f1": f}[self.kind]

    def result(self) -> MetricResult:
        tp, fp, fn = self._counts()
        if not tp.size:
            return math.nan
        if self.average == "micro":
            return float(self._scores(*(np.array([a.sum()]) for a in (tp, fp, fn)))[0])
        s = self._scores(tp, fp, fn)
        if self.average is None:
            return {f"{self.kind}_{c}": float(v) for c, v in enumerate(s)}
        seen = (tp + fp + fn) > 0  # classes that occurred as target or prediction
        return float(s[seen].mean()) if seen.any() else math.nan

    def __repr__(self) -> str:
        return f"{type(self).__name__}(average={self.average!r})"


class Precision(_Confusion):
    """``tp / (tp + fp)`` per class; ``average="macro"`` (mean over the classes
    seen), ``"micro"`` (pooled counts) or None (one value per class:
    ``precision_0``, ``precision_1``, ...).

    Examples
    --------
    >>> import numpy as np
    >>> Precision(average=None)(np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([0, 1]))
    {'precision_0': 0.5, 'precision_1': 0.0}
    """

    kind = "precision"


class Recall(_Confusion):
    """``tp / (tp + fn)`` per class; ``average`` as for :class:`Precision`.

    Examples
    --------
    >>> import numpy as np
    >>> Recall(average=None)(np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([0, 1]))
    {'recall_0': 1.0, 'recall_1': 0.0}
    """

    kind = "recall"


class F1(_Confusion):
    """Harmonic mean of precision and recall per class; ``average`` as for
    :class:`Precision` (``"macro"``: the mean of the per-class F1).

    Examples
    --------
    >>> import numpy as np
    >>> F1()(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1]))
    1.0
    """

    kind = "f1"


class MeanOf(Metric):
    """A plain callable ``fn(output, target, mask) -> float`` as a metric: the mean
    of its per-batch values, weighted by the rows of each batch.

    Examples
    --------
    >>> import numpy as np
    >>> def max_logit(out, y, mask):
    ...     return float(np.max(out))
    >>> m = MeanOf(max_logit)
    >>> m.update(np.ones((1, 2)), np.zeros(1, int)); m.update(np.zeros((3, 2)), None)
    >>> m.result(), m.name
    (0.25, 'max_logit')
    """

    def __init__(self, fn: Callable[..., float], name: str | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"a metric must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = str(name or getattr(fn, "__name__", "metric"))
        super().__init__()

    def reset(self) -> None:
        self.total, self.rows = 0.0, 0

    def update(self, output: Any, target: Any, mask: Any = None) -> None:
        n = int(np.shape(output)[0]) if np.ndim(output) else 1
        self.total += float(self.fn(output, target, mask)) * n
        self.rows += n

    def result(self) -> float:
        return self.total / self.rows if self.rows else math.nan

    def __repr__(self) -> str:
        return f"MeanOf({self.name})"


def accuracy(
    output: Any, target: Any, mask: Any = None, ignore_index: int | None = -100
) -> float:
    """Fraction of correct predictions among the entries that count (one batch).

    Integer targets: ``argmax(output, -1) == target`` (``output`` (..., C) logits),
    leaving out ``ignore_index`` and ``mask == False``. Float targets (binary):
    ``(output > 0) == (target > 0.5)`` with ``output`` logits of the same shape.
    0.0 when nothing counts.

    Examples
    --------
    >>> import numpy as np
    >>> accuracy(np.array([[2.0, 0.0], [0.0, 2.0]]), np.array([0, 0]))
    0.5
    """
    r = Accuracy(ignore_index)(output, target, mask)
    return 0.0 if isinstance(r, float) and math.isnan(r) else float(r)  # type: ignore[arg-type]


METRICS: dict[str, Callable[[], Metric]] = {
    "accuracy": Accuracy,
    "top_k_accuracy": TopKAccuracy,
    "perplexity": Perplexity,
    "bits_per_char": BitsPerChar,
    "bpc": BitsPerChar,
    "mae": MAE,
    "mse": MSE,
    "rmse": RMSE,
    "precision": Precision,
    "recall": Recall,
    "f1": F1,
}
"""Metric names ``fit`` / ``evaluate`` accept, each a factory of a fresh
:class:`Metric`; ``"top<k>_accuracy"`` (``"top3_accuracy"``) is also accepted."""

_TOP_K = re.compile(r"top_?(\d+)_accuracy")


def get(metric: Any) -> Metric:
    """A fresh :class:`Metric` from a name, a :class:`Metric` (returned as is) or a
    callable ``fn(output, target, mask) -> float`` (wrapped in :class:`MeanOf`).

    Examples
    --------
    >>> get("top3_accuracy")
    TopKAccuracy(k=3)
    """
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        if metric in METRICS:
            m = METRICS[metric]()
            m.name = metric if metric != "top_k_accuracy" else m.name
            return m
        k = _TOP_K.fullmatch(metric)
        if k:
            return TopKAccuracy(int(k.group(1)))
        raise ValueError(
            f"unknown metric {metric!r}; known: {sorted(METRICS)} and 'top<k>_accuracy'"
        )
    if callable(metric):
        return MeanOf(metric)
    raise TypeError(
        f"a metric must be a name, a Metric or a callable, got {type(metric).__name__}"
    )


def get_all(metrics: Iterable[Any] | Mapping[str, Any] | None) -> dict[str, Metric]:
    """``{name: Metric}`` from what ``fit(metrics=...)`` takes (see the module
    docstring); names must be unique.

    Examples
    --------
    >>> sorted(get_all(["accuracy", "f1"]))
    ['accuracy', 'f1']
    """
    if metrics is None:
        return {}
    out: dict[str, Metric] = {}
    if isinstance(metrics, Mapping):
        items = [(str(k), v) for k, v in metrics.items()]
    elif isinstance(metrics, (str, Metric)) or callable(metrics):
        raise TypeError(
            "metrics must be a list (or dict) of metrics, e.g. metrics=['accuracy']"
        )
    else:
        items = [(None, v) for v in metrics]  # type: ignore[misc]
    for key, v in items:
        if isinstance(v, Metric) or isinstance(v, str):
            m = get(v)
        else:
            m = MeanOf(v, key) if key else get(v)
        name = key or m.name
        if name in out:
            raise ValueError(f"metric name {name!r} appears twice")
        out[name] = m
    return out


def results(metrics: Mapping[str, Metric]) -> dict[str, float]:
    """Every metric's result, dict results flattened into their keys."""
    out: dict[str, float] = {}
    for name, m in metrics.items():
        r = m.result()
        if isinstance(r, Mapping):
            out.update({k: float(v) for k, v in r.items()})
        else:
            out[name] = float(r)
    return out


__all__ = [
    "MAE",
    "METRICS",
    "MSE",
    "RMSE",
    "Accuracy",
    "BitsPerChar",
    "F1",
    "MeanOf",
    "Metric",
    "Perplexity",
    "Precision",
    "Recall",
    "TopKAccuracy",
    "accuracy",
    "get",
    "get_all",
    "results",
]
