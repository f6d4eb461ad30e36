"""Sampling the next character: temperature, top-k, top-p (Gumbel-max)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        t = math.nan
    if isinstance(temperature, bool) or not (math.isfinite(t) and t >= 0.0):
        raise ValueError(
            f"temperature must be a finite number >= 0, got {temperature!r}"
        )
    if top_k is not None and (
        isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1
    ):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and not (0.0 < float(top_p) <= 1.0):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")


class Sampler:
    """Draws ids from ``softmax(logits / temperature)``, optionally truncated.

    Sampling is Gumbel-max: ``argmax(logits / temperature + g)`` with ``g`` standard
    Gumbel noise (``-log(-log(u))``, ``u`` uniform from ``rng``) is an exact draw
    from the softmax, and the argmax over a subset is an exact draw from the
    renormalised softmax of that subset, so truncation only picks the subset. The
    noise is drawn ``block`` rows at a time and pre-scaled by the temperature
    (``argmax(z / T + g) = argmax(z + T g)``): a plain draw is one addition and
    one argmax. Above temperature 1 the logits are divided instead (``T g``
    could overflow: at ``T = 1e308`` every id but the first would tie at inf).
    Logits that are NaN somewhere, or -inf everywhere, raise ``ValueError``
    (an argmax over them would emit id 0 forever).

    Parameters
    ----------
    temperature : divides the logits; 0 is greedy (argmax, first of ties).
    top_k : keep the k most likely ids (None: all).
    top_p : then keep the smallest set of the most likely ids whose
        probability reaches ``top_p`` (nucleus sampling; None or 1: all).
    rng : ``np.random.Generator``; a seed fixes every draw.

    Shapes
    ------
    ``sampler(logits)`` with logits (V,) -> an int in [0, V).
    """

    def __init__(
        self,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        rng: np.random.Generator | None = None,
        block: int = 256,
    ) -> None:
        _check_sampling(temperature, top_k, top_p)
        self.temperature = float(temperature)
        self._prescale = self.temperature <= 1.0  # T g cannot overflow
        self.top_k = None if top_k is None else int(top_k)
        self.top_p = None if top_p is None or top_p >= 1.0 else float(top_p)
        self.rng = rng if rng is not None else np.random.default_rng()
        self.block = int(block)
        self._g: np.ndarray | None = None
        self._i = 0

    def _noise(self, V: int) -> np.ndarray:
        """The next row of ``temperature * g`` (argmax(z/T + g) = argmax(z + T g))."""
        g = self._g
        if g is None or self._i == g.shape[0] or g.shape[1] != V:
            u = self.rng.random((self.block, V))
            with np.errstate(divide="ignore"):
                g = -np.log(-np.log(u))  # u = 0: -inf
            if self._prescale:
                g *= self.temperature
            self._g = g
            self._i = 0
        self._i += 1
        return g[self._i - 1]

    def __call__(self, logits: np.ndarray) -> int:
        z = logits if logits.ndim == 1 else logits.reshape(-1)
        top = z.max()
        if not top > -np.inf:  # NaN somewhere, or every logit -inf
            bad = int(np.argmax(np.isnan(z))) if np.isnan(top) else None
            raise ValueError(
                "logits must hold a finite maximum, got "
                + (f"NaN at index {bad}" if bad is not None else "-inf everywhere")
                + " (are the model's weights finite?)"
            )
        if self.temperature == 0.0:
            return int(z.argmax())
        g = self._noise(z.shape[0])
        if not self._prescale:
            z = z / self.temperature
        if self.top_k is None and self.top_p is None:
            return int((z + g).argmax())
        idx = self._candidates(z)
        return int(idx[(z[idx] + g[idx]).argmax()])

    def _candidates(self, z: np.ndarray) -> np.ndarray:
        """Ids that survive top-k, then top-p (any order)."""
        V = z.shape[0]
        idx = None
        if self.top_k is not None and self.top_k < V:
            idx = np.argpartition(z, V - self.top_k)[V - self.top_k :]
        if self.top_p is None:
            return np.arange(V) if idx is None else idx
        zz = z if idx is None else z[idx]
        order = np.argsort(-zz, kind="stable")  # most likely first
        t = self.temperature if self._prescale else 1.0  # z is already z / T
        c = np.cumsum(np.exp((zz[order] - zz[order[0]]) / t))
        n = int(np.searchsorted(c, self.top_p * c[-1])) + 1  # reaches top_p
        return order[:n] if idx is None else idx[order[:n]]


def sample_logits(
    logits: Any,
    rng: np.random.Generator,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> int:
    """One id drawn from ``softmax(logits / temperature)`` (see :class:`Sampler`).

    ``temperature == 0`` is greedy. ``top_k`` keeps the k most likely ids, then
    ``top_p`` the smallest set of them whose probability reaches ``top_p``; the
    rest is renormalised. Draws V uniform numbers from ``rng``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> sample_logits(np.array([0.0, 5.0, 1.0]), rng, temperature=0)
    1
    """
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    return Sampler(temperature, top_k, top_p, rng, block=1)(z)


__all__ = ["Sampler", "sample_logits"]
