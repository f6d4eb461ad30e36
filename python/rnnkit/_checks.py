"""Argument checks shared by every public entry point: real numbers, integers, flags.

One place for the rule "validate where a value is set, naming it": the optimizers
(constructor and attribute assignment, through :class:`Checked`), the schedules,
``fit``, ``CharLM.fit``, the layers' constructors and the command line all call
these, and a checkpoint's loader reaches the same checks through the
constructors, so :func:`rnnkit.save` can never write what :func:`rnnkit.load`
refuses.

Each check returns the value converted (``float``, ``int``, ``bool``) or raises
``TypeError`` (wrong kind: a string, a bool where a number is expected) or
``ValueError`` (NaN, infinity, out of range), the message naming the argument and
showing what the caller passed.

Examples
--------
>>> real("lr", 0.5, low=0)
0.5
>>> real("lr", float("nan"), low=0)
Traceback (most recent call last):
...
ValueError: lr must be a finite number >= 0, got nan
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import numpy as np

__all__ = ["Checked", "flag", "integer", "real"]


def _range_text(
    low: float | None, high: float | None, low_open: bool, high_open: bool
) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(parts)


def real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float in the given range, or an error naming ``name``.

    ``low_open`` / ``high_open`` exclude the bound itself. Strings, bools and
    anything else that is not a real number raise ``TypeError``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (numbers.Real, np.floating, np.integer)
    ):
        raise TypeError(
            f"{name} must be a real number, got {type(value).__name__} {value!r}"
        )
    v = float(value)
    bad = not math.isfinite(v)
    if low is not None:
        bad = bad or (v <= low if low_open else v < low)
    if high is not None:
        bad = bad or (v >= high if high_open else v > high)
    if bad:
        rng = _range_text(low, high, low_open, high_open)
        raise ValueError(
            f"{name} must be a finite number{' ' + rng if rng else ''}, got {value!r}"
        )
    return v


def integer(
    name: str, value: Any, *, low: int | None = None, high: int | None = None
) -> int:
    """``value`` as an int in ``[low, high]``; floats (even ``3.0``) and bools are
    refused with ``TypeError``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (numbers.Integral, np.integer)
    ):
        raise TypeError(
            f"{name} must be an integer, got {type(value).__name__} {value!r}"
        )
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(
            f"{name} must be an integer {_range_text(low, high, False, False)}, "
            f"got {value!r}"
        )
    return v


def flag(name: str, value: Any) -> bool:
    """``value`` as a bool: only ``True``/``False`` (and NumPy's) pass; ``"no"``,
    ``1`` and None raise ``TypeError`` instead of silently becoming True/False."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"{name} must be True or False, got {type(value).__name__} {value!r}"
        )
    return bool(value)


class Checked:
    """A data descriptor that runs ``check(name, value)`` on every assignment.

    Used for hyperparameters, so ``opt.lr = -1`` fails where it is written instead
    of in the checkpoint loader later.

    Examples
    --------
    >>> class Opt:
    ...     lr = Checked(lambda n, v: real(n, v, low=0))
    >>> o = Opt(); o.lr = 2
    >>> o.lr
    2.0
    >>> o.lr = -1
    Traceback (most recent call last):
    ...
    ValueError: lr must be a finite number >= 0, got -1
    """

    def __init__(self, check: Callable[[str, Any], Any]) -> None:
        self.check = check
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        try:
            return obj.__dict__[self.name]
        except KeyError:
            raise AttributeError(self.name) from None

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = self.check(self.name, value)
