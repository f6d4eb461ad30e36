"""Optimizers, gradient clipping and learning-rate schedules, in place on flat buffers.

Ordered by complexity, as in micrograd/tinygrad: :class:`SGD` (momentum, Nesterov,
weight decay), :class:`Adagrad`, :class:`RMSprop`, :class:`Adam`, :class:`AdamW`.
Each follows its published update with PyTorch's conventions (``torch.optim``),
and the tests check each one step by step against a plain NumPy transcription of
the paper's equations and, when it is importable, against ``torch.optim``.

Protocol (micrograd's)::

    opt = Adam(model, lr=1e-3)        # anything with .parameters(), or a list of
    opt.zero_grad()                   #   (param, grad) array pairs
    ...backward...
    clip_grad_norm(model, 1.0)        # optional
    opt.step()

No step allocates: every optimizer keeps its state (``slots``: moments,
momentum buffers) in the layout of the parameters it was given, and an update
is one fused pass of a compiled kernel (``csrc/optim.cpp``, on rnnkit's
threads) over the whole flat parameter buffer of a model (one pair). The NumPy
transcription the kernels are tested against is :mod:`rnnkit.reference.blocks`.

Learning rate: ``opt.lr`` is the base rate; a ``schedule`` maps the number of
steps taken so far (0 on the first step) to a factor, and ``opt.last_lr`` is
the rate the last step used. Schedules are pure functions of the step count, so
saving ``step_count`` with the optimizer state restores them exactly.

Frozen tensors (``layer.trainable = False``, ``model.freeze(name)``) of a model
passed as ``params`` are asked for at every step: their gradients are zeroed
(clipping and norms leave them out too), and their values and optimizer state
are put back after the update, so neither weight decay nor momentum moves them.

Shapes
------
Every ``(param, grad)`` pair: two C-contiguous, writeable float arrays of one
shape and dtype; state arrays have the same shape and dtype.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any, Callable

import numpy as np

from . import _core
from ._checks import Checked, flag, integer, real

Pairs = list[tuple[np.ndarray, np.ndarray]]


def _nonneg(name: str, v: Any) -> float:
    return real(name, v, low=0.0)


def _unit(name: str, v: Any) -> float:
    return real(name, v, low=0.0, high=1.0)


def _betas(name: str, v: Any) -> tuple[float, float]:
    try:
        b1, b2 = v
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair (beta1, beta2), got {v!r}") from None
    return (
        real(f"{name}[0]", b1, low=0.0, high=1.0, high_open=True),
        real(f"{name}[1]", b2, low=0.0, high=1.0, high_open=True),
    )


def _pairs(params: Any) -> Pairs:
    """(param, grad) pairs from a model/layer (``.parameters()``) or a list of pairs."""
    if hasattr(params, "parameters"):
        params = params.parameters()
    try:
        pairs = [tuple(pg) for pg in params]
    except TypeError:
        raise TypeError(
            "params must have .parameters() or be a list of (param, grad) pairs, "
            f"got {type(params).__name__}"
        ) from None
    out: Pairs = []
    for i, pg in enumerate(pairs):
        if len(pg) != 2:
            raise TypeError(f"params[{i}] must be a (param, grad) pair")
        p, g = pg
        for name, a in (("param", p), ("grad", g)):
            if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float64):
                raise TypeError(
                    f"params[{i}] {name} must be a float numpy array (float32 or "
                    f"float64), got {getattr(a, 'dtype', type(a).__name__)}"
                )
            if not a.flags.c_contiguous or not a.flags.writeable:
                raise ValueError(
                    f"params[{i}] {name} must be C-contiguous and writeable "
                    "(the update is done in place)"
                )
        if p.shape != g.shape or p.dtype != g.dtype:
            raise ValueError(
                f"params[{i}]: param {p.dtype}{p.shape} and grad {g.dtype}{g.shape} "
                "must have the same shape and dtype"
            )
        out.append((p.reshape(-1), g.reshape(-1)))
    return out


def _frozen(params: Any) -> list[slice]:
    """The frozen ranges of a model's flat pair (``_Params.frozen_spans``)."""
    spans = getattr(params, "frozen_spans", None)
    return [slice(a, b) for a, b in spans()] if callable(spans) else []


def _zero_frozen(params: Any) -> None:
    """Zeros the gradients of frozen tensors: they take no part in clipping or
    norms, and an update sees a zero gradient there."""
    spans = _frozen(params)
    if spans:
        g = _pairs(params)[0][1]
        for sl in spans:
            g[sl] = 0


# ------------------------------------------------------------------ schedules
class Schedule:
    """A learning-rate factor as a pure function of the step count (0-based).

    An optimizer's rate at step ``t`` is ``lr * schedule(t)``. Subclasses implement
    :meth:`factor`; their constructor arguments are their :meth:`config`.
    """

    def factor(self, step: int) -> float:  # pragma: no cover - abstract
        """The factor of step ``step`` (0 for the first step)."""
        raise NotImplementedError

    def __call__(self, step: int) -> float:
        return self.factor(step)

    def config(self) -> dict[str, Any]:
        """``{"type": name, **arguments}`` (JSON), see :func:`schedule_from_config`."""
        return _schedule_config(self) or {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class StepDecay(Schedule):
    """``gamma ** (step // step_size)`` (``torch.optim.lr_scheduler.StepLR``).

    Parameters
    ----------
    step_size : int
        Steps between two decays (>= 1).
    gamma : float, default 0.1
        Factor applied at each decay.

    Examples
    --------
    >>> [StepDecay(2, gamma=0.5)(t) for t in range(5)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    def __init__(self, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = integer("step_size", step_size, low=1)
        self.gamma = _nonneg("gamma", gamma)

    def factor(self, step: int) -> float:
        """``gamma ** (step // step_size)``."""
        return self.gamma ** (step // self.step_size)


class ExponentialDecay(Schedule):
    """``gamma ** step`` (``torch.optim.lr_scheduler.ExponentialLR``).

    Parameters
    ----------
    gamma : float
        Factor applied at every step.

    Examples
    --------
    >>> [ExponentialDecay(0.5)(t) for t in range(4)]
    [1.0, 0.5, 0.25, 0.125]
    """

    def __init__(self, gamma: float) -> None:
        self.gamma = _nonneg("gamma", gamma)

    def factor(self, step: int) -> float:
        """``gamma ** step``."""
        return self.gamma**step


class CosineDecay(Schedule):
    """Half a cosine from 1 down to ``min_factor`` over ``total_steps``, then flat
    (``CosineAnnealingLR`` with ``eta_min = min_factor * lr``).

    Parameters
    ----------
    total_steps : int
        Steps from 1 to ``min_factor`` (>= 1).
    min_factor : float, default 0.0
        The final factor.

    Examples
    --------
    >>> [round(CosineDecay(4, min_factor=0.2)(t), 3) for t in range(6)]
    [1.0, 0.883, 0.6, 0.317, 0.2, 0.2]
    """

    def __init__(self, total_steps: int, min_factor: float = 0.0) -> None:
        self.total_steps = integer("total_steps", total_steps, low=1)
        self.min_factor = _nonneg("min_factor", min_factor)

    def factor(self, step: int) -> float:
        """``min + (1 - min) (1 + cos(pi min(step, total) / total)) / 2``."""
        s = min(step, self.total_steps)
        cos = (1.0 + math.cos(math.pi * s / self.total_steps)) / 2.0
        return self.min_factor + (1.0 - self.min_factor) * cos


class LinearWarmup(Schedule):
    """``(step + 1) / warmup_steps`` for the first ``warmup_steps`` steps, then
    ``after`` (another schedule, counted from the end of the warm-up) or 1.

    Parameters
    ----------
    warmup_steps : int
        Length of the linear ramp (>= 1).
    after : Schedule or None
        The schedule after the ramp, its step 0 being the first step after it.

    Examples
    --------
    >>> [LinearWarmup(2, after=ExponentialDecay(0.5))(t) for t in range(5)]
    [0.5, 1.0, 1.0, 0.5, 0.25]
    """

    def __init__(self, warmup_steps: int, after: Schedule | None = None) -> None:
        warmup_steps = integer("warmup_steps", warmup_steps, low=1)
        if after is not None and not isinstance(after, Schedule):
            raise TypeError(
                f"after must be a Schedule or None, got {type(after).__name__}"
            )
        self.warmup_steps, self.after = int(warmup_steps), after

    def factor(self, step: int) -> float:
        """The ramp's factor, or ``after``'s at ``step - warmup_steps``."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return (
            1.0 if self.after is None else self.after.factor(step - self.warmup_steps)
        )


SCHEDULES: dict[str, type[Schedule]] = {
    c.__name__: c for c in (StepDecay, ExponentialDecay, CosineDecay, LinearWarmup)
}


def schedule_from_config(cfg: Mapping[str, Any] | None) -> Schedule | None:
    """Rebuilds a schedule from :meth:`Schedule.config` output (checkpoints).

    Parameters
    ----------
    cfg : mapping or None
        ``{"type": name, **arguments}``, ``after`` nested the same way; None
        gives None.

    Examples
    --------
    >>> schedule_from_config(StepDecay(10, gamma=0.5).config())
    StepDecay(step_size=10, gamma=0.5)
    """
    if cfg is None:
        return None
    cfg = dict(cfg)
    kind = cfg.pop("type", None)
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule type {kind!r}; known: {sorted(SCHEDULES)}")
    if "after" in cfg:
        cfg["after"] = schedule_from_config(cfg["after"])
    return SCHEDULES[kind](**cfg)


def _schedule_config(s: Any) -> dict[str, Any] | None:
    if s is None:
        return None
    if not isinstance(s, Schedule):
        return None
    cfg: dict[str, Any] = {"type": type(s).__name__}
    for k, v in vars(s).items():
        cfg[k] = _schedule_config(v) if isinstance(v, Schedule) or k == "after" else v
    return cfg


# ----------------------------------------------------------------- optimizers
class Optimizer:
    """Base class: parameter pairs, state slots, scratch buffers, the step count.

    Subclasses set ``slots`` (names of per-parameter state arrays) and implement
    ``_update(i, p, g, lr)`` for the flat pair ``i``.

    Parameters
    ----------
    params : model, layer or list of (param, grad) pairs
        Anything with ``.parameters()`` (one flat pair for a model), or the pairs
        themselves: C-contiguous, writeable float arrays, updated in place.
    lr : float
        The base learning rate (>= 0).
    schedule : Schedule, callable or None
        Maps the step count (0-based) to a factor of ``lr``; only
        :class:`Schedule` instances are saved in checkpoints.

    Attributes
    ----------
    state : dict of str to list of ndarray
        Per-slot state arrays, one per pair.
    step_count : int
        Steps taken.
    last_lr : float
        The rate the last step used.
    """

    slots: tuple[str, ...] = ()
    lr = Checked(_nonneg)

    def __init__(
        self,
        params: Any,
        lr: float,
        schedule: Schedule | Callable[[int], float] | None = None,
    ) -> None:
        self.lr = lr
        self.pairs = _pairs(params)
        self._source = params  # asked for its frozen tensors at every step
        self.schedule = schedule
        self.step_count = 0
        self.last_lr = self.lr
        self.state: dict[str, list[np.ndarray]] = {
            s: [np.zeros_like(p) for p, _ in self.pairs] for s in self.slots
        }

    def get_lr(self, step: int | None = None) -> float:
        """The learning rate of step ``step`` (default: the next one)."""
        step = self.step_count if step is None else step
        if self.schedule is None:
            return self.lr
        factor = self.schedule(step)
        try:
            lr = self.lr * float(factor)
        except (TypeError, ValueError):
            lr = math.nan
        if not (math.isfinite(lr) and lr >= 0.0):
            raise ValueError(
                f"schedule {self.schedule!r} gave factor {factor!r} at step {step}: "
                f"the rate lr * factor must be a finite number >= 0"
            )
        return lr

    def step(self) -> None:
        """One update of every parameter from its gradient, in place."""
        lr = self.get_lr()
        self.last_lr = lr
        self.step_count += 1
        # frozen tensors: zero gradient, and their values and state put back
        # after the update (so no weight decay or momentum moves them either)
        frozen = _frozen(self._source) if len(self.pairs) == 1 else []
        _zero_frozen(self._source)
        held = [(sl, [a[sl].copy() for a in self._arrays(0)]) for sl in frozen]
        for i, (p, g) in enumerate(self.pairs):
            self._update(i, p, g, lr)
        for sl, saved in held:
            for a, v in zip(self._arrays(0), saved):
                a[sl] = v

    def _arrays(self, i: int) -> list[np.ndarray]:
        """Pair ``i``'s parameter and state arrays (what a frozen range keeps)."""
        return [self.pairs[i][0]] + [arrs[i] for arrs in self.state.values()]

    def _update(
        self, i: int, p: np.ndarray, g: np.ndarray, lr: float
    ) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Sets the gradient of every pair to zero."""
        for _, g in self.pairs:
            g.fill(0)

    # ---------------------------------------------------------------- state
    def config(self) -> dict[str, Any]:
        """Type, constructor arguments and schedule (JSON), for checkpoints."""
        cfg = {"type": type(self).__name__, "lr": self.lr, **self._hparams()}
        cfg["schedule"] = _schedule_config(self.schedule)
        if self.schedule is not None and cfg["schedule"] is None:
            warnings.warn(
                f"{type(self).__name__}.config(): the schedule {self.schedule!r} is "
                "not one of rnnkit.optim.SCHEDULES and is not saved",
                stacklevel=2,
            )
        return cfg

    def _hparams(self) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        """``{"config", "step_count", "slots": {name: [arrays]}}`` (copies)."""
        return {
            "config": self.config(),
            "step_count": self.step_count,
            "slots": {s: [a.copy() for a in arrs] for s, arrs in self.state.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores the step count and state slots (hyperparameters are kept).

        Checks slot names, counts, shapes and dtypes before writing anything.
        """
        slots = state.get("slots", {})
        if sorted(slots) != sorted(self.slots):
            raise KeyError(
                f"{type(self).__name__} state must have slots {sorted(self.slots)}, "
                f"got {sorted(slots)}"
            )
        for s in self.slots:
            arrs = slots[s]
            if len(arrs) != len(self.pairs):
                raise ValueError(
                    f"slot {s!r} must have {len(self.pairs)} arrays, got {len(arrs)}"
                )
            for j, (a, mine) in enumerate(zip(arrs, self.state[s])):
                a = np.asarray(a)
                if a.dtype != mine.dtype or a.size != mine.size:
                    raise ValueError(
                        f"slot {s!r}[{j}] must be {mine.dtype} with {mine.size} "
                        f"elements, got {a.dtype} with {a.size}"
                    )
        step = state.get("step_count", 0)
        if (
            not isinstance(step, (int, np.integer))
            or isinstance(step, bool)
            or step < 0
        ):
            raise ValueError(f"step_count must be a non-negative int, got {step!r}")
        for s in self.slots:
            for a, mine in zip(slots[s], self.state[s]):
                mine[...] = np.asarray(a).reshape(mine.shape)
        self.step_count = int(step)

    def __repr__(self) -> str:
        args = ", ".join(
            f"{k}={v!r}" for k, v in {"lr": self.lr, **self._hparams()}.items()
        )
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, Nesterov momentum and weight decay.

    Update (PyTorch's; Sutskever et al. 2013 for Nesterov), with ``g`` the gradient::

        g = g + weight_decay * p
        b = g                                  (first step)
        b = momentum * b + (1 - dampening) * g (later steps)
        d = g + momentum * b  if nesterov  else  b       (d = g without momentum)
        p = p - lr * d

    Parameters
    ----------
    params : model, layer or list of (param, grad) pairs
        What to update (see :class:`Optimizer`).
    lr : float, default 0.01
        Learning rate.
    momentum : float, default 0.0
        Momentum factor; 0 keeps no momentum buffer.
    dampening : float, default 0.0
        Dampening of the momentum's new gradient.
    nesterov : bool, default False
        Nesterov momentum (needs ``momentum > 0`` and ``dampening = 0``).
    weight_decay : float, default 0.0
        L2 penalty added to the gradient.
    schedule : Schedule, callable or None
        Factor of ``lr`` per step (see :class:`Optimizer`).

    Examples
    --------
    >>> import numpy as np
    >>> p, g = np.ones(3), np.full(3, 0.5)
    >>> SGD([(p, g)], lr=0.1).step()
    >>> p.tolist()
    [0.95, 0.95, 0.95]
    """

    momentum = Checked(_nonneg)
    dampening = Checked(_unit)
    nesterov = Checked(flag)
    weight_decay = Checked(_nonneg)

    def __init__(
        self,
        params: Any,
        lr: float = 0.01,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        schedule: Any = None,
    ) -> None:
        self.momentum, self.dampening = momentum, dampening
        self.nesterov, self.weight_decay = nesterov, weight_decay
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(
                "nesterov needs momentum > 0 and dampening = 0, got "
                f"momentum={momentum!r}, dampening={dampening!r}"
            )
        self.slots = ("momentum_buffer",) if self.momentum else ()
        super().__init__(params, lr, schedule)

    def _hparams(self) -> dict[str, Any]:
        return {
            "momentum": self.momentum,
            "dampening": self.dampening,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }

    def _update(self, i: int, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        buf = self.state["momentum_buffer"][i] if self.momentum else None
        _core.optim_step(
            "sgd",
            p,
            g,
            [buf],
            lr,
            weight_decay=self.weight_decay,
            momentum=self.momentum,
            dampening=self.dampening,
            nesterov=self.nesterov,
            first=self.step_count == 1,
        )


class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011)::

    g = g + weight_decay * p
    s = s + g^2                           (s starts at initial_accumulator_value)
    p = p - lr / (1 + (t - 1) lr_decay) * g / (sqrt(s) + eps)

    Parameters
    ----------
    params : model, layer or list of (param, grad) pairs
        What to update (see :class:`Optimizer`).
    lr : float, default 0.01
        Learning rate.
    lr_decay : float, default 0.0
        Decay of the rate with the step count ``t``.
    weight_decay : float, default 0.0
        L2 penalty added to the gradient.
    initial_accumulator_value : float, default 0.0
        Start value of the sum of squares ``s``.
    eps : float, default 1e-10
        Added to the denominator.
    schedule : Schedule, callable or None
        Factor of ``lr`` per step (see :class:`Optimizer`).

    Examples
    --------
    >>> import numpy as np
    >>> p, g = np.ones(2), np.array([1.0, -2.0])
    >>> Adagrad([(p, g)], lr=0.1).step()
    >>> p.round(6).tolist()
    [0.9, 1.1]
    """

    slots = ("sum",)
    lr_decay = Checked(_nonneg)
    weight_decay = Checked(_nonneg)
    initial_accumulator_value = Checked(_nonneg)
    eps = Checked(_nonneg)

    def __init__(
        self,
        params: Any,
        lr: float = 0.01,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        schedule: Any = None,
    ) -> None:
        self.lr_decay, self.weight_decay = lr_decay, weight_decay
        self.initial_accumulator_value, self.eps = initial_accumulator_value, eps
        super().__init__(params, lr, schedule)
        for s in self.state["sum"]:
            s.fill(self.initial_accumulator_value)

    def _hparams(self) -> dict[str, Any]:
        return {
            "lr_decay": self.lr_decay,
            "weight_decay": self.weight_decay,
            "initial_accumulator_value": self.initial_accumulator_value,
            "eps": self.eps,
        }

    def _update(self, i: int, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        clr = lr / (1.0 + (self.step_count - 1) * self.lr_decay)
        _core.optim_step(
            "adagrad",
            p,
            g,
            [self.state["sum"][i]],
            clr,
            weight_decay=self.weight_decay,
            eps=self.eps,
        )


class RMSprop(Optimizer):
    """RMSprop (Hinton, lecture 6e; centered variant of Graves 2013)::

    g = g + weight_decay * p
    v = alpha v + (1 - alpha) g^2
    m = alpha m + (1 - alpha) g                  (centered only)
    r = sqrt(v - m^2) + eps  if centered  else  sqrt(v) + eps
    b = momentum b + g / r;  p = p - lr b        (momentum > 0)
    p = p - lr g / r                             (momentum = 0)

    Parameters
    ----------
    params : model, layer or list of (param, grad) pairs
        What to update (see :class:`Optimizer`).
    lr : float, default 0.01
        Learning rate.
    alpha : float, default 0.99
        Smoothing constant of the averages.
    eps : float, default 1e-8
        Added to the denominator.
    weight_decay : float, default 0.0
        L2 penalty added to the gradient.
    momentum : float, default 0.0
        Momentum factor; 0 keeps no momentum buffer.
    centered : bool, default False
        Divide by the estimated variance instead of the second moment.
    schedule : Schedule, callable or None
        Factor of ``lr`` per step (see :class:`Optimizer`).

    Examples
    --------
    >>> import numpy as np
    >>> p, g = np.ones(2), np.array([1.0, -1.0])
    >>> RMSprop([(p, g)], lr=0.01).step()
    >>> p.round(4).tolist()
    [0.9, 1.1]
    """

    alpha = Checked(_unit)
    eps = Checked(_nonneg)
    weight_decay = Checked(_nonneg)
    momentum = Checked(_nonneg)
    centered = Checked(flag)

    def __init__(
        self,
        params: Any,
        lr: float = 0.01,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        schedule: Any = None,
    ) -> None:
        self.alpha, self.eps = alpha, eps
        self.weight_decay, self.momentum = weight_decay, momentum
        self.centered = centered
        self.slots = (
            ("square_avg",)
            + (("momentum_buffer",) if self.momentum else ())
            + (("grad_avg",) if self.centered else ())
        )
        super().__init__(params, lr, schedule)

    def _hparams(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
            "centered": self.centered,
        }

    def _update(self, i: int, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        st = self.state
        _core.optim_step(
            "rmsprop",
            p,
            g,
            [
                st["square_avg"][i],
                st["momentum_buffer"][i] if self.momentum else None,
                st["grad_avg"][i] if self.centered else None,
            ],
            lr,
            weight_decay=self.weight_decay,
            eps=self.eps,
            momentum=self.momentum,
            alpha=self.alpha,
            centered=self.centered,
        )


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), with an L2 penalty ``weight_decay`` added to the
    gradient (``torch.optim.Adam``; see :class:`AdamW` for decoupled decay)::

        g = g + weight_decay * p
        m = beta1 m + (1 - beta1) g
        v = beta2 v + (1 - beta2) g^2
        v_max = max(v_max, v)                              (amsgrad only)
        p = p - lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)

    Parameters
    ----------
    params : model, layer or list of (param, grad) pairs
        What to update (see :class:`Optimizer`).
    lr : float, default 1e-3
        Learning rate.
    betas : (float, float), default (0.9, 0.999)
        ``beta1, beta2``, decay rates of the moment estimates, each in [0, 1).
    eps : float, default 1e-8
        Added to the denominator.
    weight_decay : float, default 0.0
        L2 penalty added to the gradient.
    amsgrad : bool, default False
        Use the running maximum of ``v`` (Reddi et al. 2018).
    schedule : Schedule, callable or None
        Factor of ``lr`` per step (see :class:`Optimizer`).

    Examples
    --------
    >>> import numpy as np, rnnkit as rk
    >>> model = rk.Sequential(rk.Linear(3, 1, seed=0))
    >>> opt = Adam(model, lr=0.1)
    >>> before = model.state_dict()["0.weight"]
    >>> model.grads["0.weight"][...] = 1.0
    >>> opt.step()          # the first Adam step moves every weight by about lr
    >>> np.allclose(before - model.state_dict()["0.weight"], 0.1)
    True
    """

    _decoupled = False
    betas = Checked(_betas)
    eps = Checked(_nonneg)
    weight_decay = Checked(_nonneg)
    amsgrad = Checked(flag)

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        schedule: Any = None,
    ) -> None:
        self.betas, self.eps = betas, eps
        self.weight_decay, self.amsgrad = weight_decay, amsgrad
        self.slots = ("exp_avg", "exp_avg_sq") + (
            ("max_exp_avg_sq",) if self.amsgrad else ()
        )
        super().__init__(params, lr, schedule)

    def _hparams(self) -> dict[str, Any]:
        return {
            "betas": list(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "amsgrad": self.amsgrad,
        }

    def _update(self, i: int, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        st = self.state
        b1, b2 = self.betas
        t = self.step_count
        _core.optim_step(
            "adam",
            p,
            g,
            [
                st["exp_avg"][i],
                st["exp_avg_sq"][i],
                st["max_exp_avg_sq"][i] if self.amsgrad else None,
            ],
            lr,
            weight_decay=self.weight_decay,
            eps=self.eps,
            beta1=b1,
            beta2=b2,
            bc1=1.0 - b1**t,
            bc2=1.0 - b2**t,
            amsgrad=self.amsgrad,
            decoupled=self._decoupled,
        )


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019)::

    p = p - lr * weight_decay * p,  then the Adam update without L2 in g.

    Parameters
    ----------
    params, lr, betas, eps, amsgrad, schedule
        As for :class:`Adam`.
    weight_decay : float, default 0.01
        Decoupled decay: the parameters shrink by ``lr * weight_decay`` per step.

    Examples
    --------
    >>> import numpy as np
    >>> p, g = np.ones(2), np.zeros(2)
    >>> AdamW([(p, g)], lr=0.1, weight_decay=0.5).step()   # zero gradient: decay only
    >>> p.tolist()
    [0.95, 0.95]
    """

    _decoupled = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        amsgrad: bool = False,
        schedule: Any = None,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, schedule)


OPTIMIZERS: dict[str, type[Optimizer]] = {
    c.__name__: c for c in (SGD, Adagrad, RMSprop, Adam, AdamW)
}


def optimizer_from_config(params: Any, cfg: Mapping[str, Any]) -> Optimizer:
    """Rebuilds an optimizer on ``params`` from :meth:`Optimizer.config` output.

    Parameters
    ----------
    params : model, layer or list of (param, grad) pairs
        What the new optimizer updates.
    cfg : mapping
        ``{"type": name, "lr": ..., **hyperparameters, "schedule": ...}``.

    Examples
    --------
    >>> import numpy as np
    >>> pairs = [(np.ones(2), np.zeros(2))]
    >>> optimizer_from_config(pairs, SGD(pairs, lr=0.5, momentum=0.9).config())
    SGD(lr=0.5, momentum=0.9, dampening=0.0, nesterov=False, weight_decay=0.0)
    """
    cfg = dict(cfg)
    kind = cfg.pop("type", None)
    if kind not in OPTIMIZERS:
        raise ValueError(
            f"unknown optimizer type {kind!r}; known: {sorted(OPTIMIZERS)}"
        )
    cfg["schedule"] = schedule_from_config(cfg.get("schedule"))
    if "betas" in cfg:
        cfg["betas"] = tuple(cfg["betas"])
    return OPTIMIZERS[kind](params, **cfg)


# ------------------------------------------------------------------- clipping
def grad_norm(params: Any) -> float:
    """Global L2 norm of all gradients (one pass per pair, no allocation).

    Parameters
    ----------
    params : model, layer or list of (param, grad) pairs

    Returns
    -------
    float
        ``sqrt(sum of g**2)`` over every gradient, without overflow.

    Examples
    --------
    >>> import numpy as np
    >>> grad_norm([(np.zeros(2), np.array([3.0, 4.0]))])
    5.0
    """
    grads = [g for _, g in _pairs(params)]
    # sum of squares in double, blocks added in a fixed order (optim.cpp)
    total = sum(float(_core.sum_squares(g)) for g in grads)
    if math.isinf(total):  # the squares overflowed (float64): rescale by the largest
        m = max(float(np.max(np.abs(g))) for g in grads)
        if math.isfinite(m) and m > 0:
            return m * math.sqrt(
                sum(float(_core.sum_squares(g, 1.0 / m)) for g in grads)
            )
    return math.sqrt(total)


def clip_grad_norm(params: Any, max_norm: float, eps: float = 1e-6) -> float:
    """Rescales all gradients together when their global norm exceeds ``max_norm``.

    The factor is ``max_norm / (norm + eps)``, as in
    ``torch.nn.utils.clip_grad_norm_``. A NaN norm leaves the gradients as they are.

    Parameters
    ----------
    params : model, layer or list of (param, grad) pairs
    max_norm : float
        The largest global L2 norm allowed (> 0).
    eps : float, default 1e-6
        Added to the norm in the factor.

    Returns
    -------
    float
        The global norm before clipping.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.array([3.0, 4.0])
    >>> clip_grad_norm([(np.zeros(2), g)], 1.0)
    5.0
    >>> g.round(4).tolist()
    [0.6, 0.8]
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    _zero_frozen(params)
    norm = grad_norm(params)
    coef = max_norm / (norm + eps)
    if coef < 1.0:
        for _, g in _pairs(params):
            _core.scale_(g, coef)
    return norm


def clip_grad_value(params: Any, clip_value: float) -> None:
    """Clamps every gradient entry to ``[-clip_value, clip_value]`` in place.

    Parameters
    ----------
    params : model, layer or list of (param, grad) pairs
    clip_value : float
        The largest absolute value allowed (> 0).

    Examples
    --------
    >>> import numpy as np
    >>> g = np.array([-3.0, 0.5, 2.0])
    >>> clip_grad_value([(np.zeros(3), g)], 1.0)
    >>> g.tolist()
    [-1.0, 0.5, 1.0]
    """
    if not clip_value > 0:
        raise ValueError(f"clip_value must be > 0, got {clip_value}")
    _zero_frozen(params)
    for _, g in _pairs(params):
        np.clip(g, -clip_value, clip_value, out=g)


__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "CosineDecay",
    "ExponentialDecay",
    "LinearWarmup",
    "Optimizer",
    "RMSprop",
    "Schedule",
    "StepDecay",
    "clip_grad_norm",
    "clip_grad_value",
    "grad_norm",
    "optimizer_from_config",
    "schedule_from_config",
]
