"""Layer options of the reference: regularisers and cell variants, specified in NumPy.

The specification of issue 12 (stage 1: the reference; the fused kernels follow).
Every option below is a keyword of the reference layers ``rnnkit.reference.RNN /
LSTM / GRU`` (and, later, of the fast layers with the same names), composes with
stacking, bidirectional layers, lengths, ``batch_first``, carried state and both
dtypes, and has its backward here. Letters: T time, B batch, I input, H hidden,
G gate rows per unit (1, 4, 3), P projection, S = P if ``proj_size`` else H (the
size of ``h`` and of each direction's output), L layers, D directions.

Options
-------
``dropout=p`` (all cells; PyTorch's): the output of every layer but the last,
    (T, B, D*S), is multiplied by ``M / (1 - p)`` with ``M ~ Bernoulli(1 - p)``
    elementwise (inverted dropout), in training only; the next layer reads the
    result. Backward multiplies the gradient by the same factor.

``recurrent_dropout=p`` (all cells; Keras's name, Gal & Ghahramani's variational
    dropout): one mask ``R`` (B, S) per forward call, layer and direction, entries
    ``Bernoulli(1 - p) / (1 - p)``, the same at every step, on the state entering
    the recurrent product only::

        W_hh h_{t-1}   becomes   W_hh (R ⊙ h_{t-1})

    Everything else (the GRU's ``z ⊙ h_{t-1}``, the carried state, the outputs)
    sees the unmasked ``h_{t-1}``. One mask serves all gates (the "tied" variant).

``zoneout=p`` (all cells; Krueger et al., haste's semantics): in training every
    unit keeps its previous value with probability p, by a fresh mask per step::

        h_t = d_t ⊙ h_{t-1} + (1 - d_t) ⊙ h̃_t,      d_t ~ Bernoulli(p), (B, S)

    where h̃_t is the cell's ordinary new state. The LSTM zones out ``c`` too, with
    its own mask ``e_t`` (B, H): ``c_t = e_t ⊙ c_{t-1} + (1 - e_t) ⊙ c̃_t``, and, as
    in the paper, ``h̃_t = o_t ⊙ tanh(c̃_t)`` reads the *new* cell value c̃_t. At
    inference (``train=False``) the masks are replaced by their expectation:
    ``h_t = p h_{t-1} + (1 - p) h̃_t`` (and the same for c). ``y_t = h_t``.

``layer_norm=True`` (LSTM, GRU; haste's LayerNormLSTM / LayerNormGRU): layer
    normalisation ``LN(v; γ, β) = γ ⊙ (v - mean(v)) / sqrt(var(v) + eps) + β``
    over the whole G*H row (all gates together; ``var`` is the biased variance,
    ``eps`` = :data:`LN_EPS`), on the two matrix products *before* the biases, with
    a gain and no LN bias (the cell's biases play that part)::

        a_x = LN(W_ih x_t; γ_ih) + b_ih        a_h = LN(W_hh h_{t-1}; γ_hh) + b_hh

    after which the cell runs as usual on ``a_x + a_h`` (LSTM) or on its three
    blocks (GRU: ``r, z = σ(a_x + a_h)``, ``n = tanh(a_x[n] + r ⊙ a_h[n])``). The
    LSTM also normalises its cell state on the way to the output, with gain and
    bias: ``h_t = o_t ⊙ tanh(LN(c_t; γ_c, β_c))``; the carried ``c_t`` is not
    normalised. Parameters (per layer and direction, suffix ``_l{k}[_reverse]``),
    initialised to ones (gains) and zeros (bias):

    ========================  =======  =====================================
    ``ln_weight_ih_l{k}``     (G*H,)   γ_ih
    ``ln_weight_hh_l{k}``     (G*H,)   γ_hh
    ``ln_weight_c_l{k}``      (H,)     γ_c (LSTM)
    ``ln_bias_c_l{k}``        (H,)     β_c (LSTM)
    ========================  =======  =====================================

``proj_size=P`` (LSTM; PyTorch's LSTMP, ``0 < P < H``): ``h_t = W_hr (o_t ⊙
    tanh c_t)`` with ``weight_hr_l{k}`` (P, H); ``h`` and each direction's output
    have size P, ``weight_hh`` is (4H, P), layer k > 0 reads D*P features; ``c``
    keeps size H. States: ``h0/h_n`` (L*D, B, P), ``c0/c_n`` (L*D, B, H).
    Initialised as every other weight, U(-1/sqrt(H), 1/sqrt(H)) in PyTorch's
    storage order (``weight_hr`` after the biases of its layer and direction).

``forget_bias=b`` (LSTM, initialisation only; Jozefowicz et al., haste): after
    the ordinary initialisation, ``b`` is added to the forget-gate rows [H:2H] of
    every ``bias_ih_l{k}`` (so the effective forget bias ``b_ih + b_hh`` is centred
    on ``b``). The default 0 is PyTorch's initialisation; needs ``bias=True``.

Order inside a step (one layer, one direction), all options on::

    h_in = R ⊙ h_{t-1}                       recurrent dropout
    a_h  = LN(W_hh h_in; γ_hh) + b_hh        layer norm (else W_hh h_in + b_hh)
    ...  the cell's gates and new state h̃_t (c̃_t), projection last
    h_t  = zoneout(h_{t-1}, h̃_t)             zoneout (c_t likewise)
    padding: where step t of row b is padding, h_t = h_{t-1}, c_t = c_{t-1}, y_t = 0

Randomness
----------
Masks are drawn only by a training forward with some p > 0; ``train=False`` draws
nothing and is deterministic. :func:`draw_masks` draws from one
``np.random.Generator`` in a fixed order: for k in 0..L-1, for d in 0..D-1, the
recurrent mask, then the zoneout mask of h, then of c; after layer k's
directions, if k < L-1, the dropout mask of its output. Each mask takes one
key ``key = int(g.integers(0, 2**64, dtype=np.uint64))``, and its element i (C
order over the mask's shape) one 32-bit uniform ``u_i`` of a counter-based
generator of (key, i) alone, two per 64-bit hash (``j = i // 2``)::

    z   = key + (j + 1) * 0x9E3779B97F4A7C15                    (mod 2**64)
    z   = (z ^ z >> 30) * 0xBF58476D1CE4E5B9                     (mod 2**64)
    z   = (z ^ z >> 27) * 0x94D049BB133111EB                     (mod 2**64)
    x_j = z ^ z >> 31                                            (SplitMix64)
    u_i = x_j mod 2**32 for even i,  x_j >> 32 for odd i

compared with ``thr = round(p * 2**32)``: ``u_i >= thr`` keeps a unit for
dropout (multiplier ``1/(1-p)``), ``u_i < thr`` zones it out, whatever the layer
dtype, thread count or SIMD path. The drawing code is :mod:`rnnkit._options`
(the fast path's, on the kernel :func:`rnnkit._core.bernoulli_`), re-exported
here. The layer's generator is
``np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])`` for an int
seed, a child (``Generator.spawn``) of a generator seed, fresh entropy for None;
``forward(..., rng=g)`` uses ``g`` for one call and ``forward(..., masks=m)``
uses given masks (a :class:`Masks`). Every mask is held in *real* time (index t of
the input, not the reverse direction's step index) and in the layer's layout, so
that one set of masks means the same thing to every implementation.

Contract for the fused kernels (stage 2)
----------------------------------------
* Masks are inputs, not kernel state: the layer draws them (the same
  :func:`draw_masks`, in the fast-path module :mod:`rnnkit._options`, one key per
  mask from the layer's generator and the counter-based generator above —
  independent of the thread count) and passes them in; the layer keeps them as
  ``layer.last_masks`` so a test can hand the very same masks to the reference.
  Dropout and recurrent dropout masks are passed as the multipliers ``0`` or
  ``1/(1-p)`` in the compute dtype; zoneout masks as booleans (uint8).
* What forward stores for backward, per layer and direction, beyond the plain
  cell's: the masks (backward reads them, never redraws); with recurrent dropout
  ``h_in`` for ``dW_hh`` (or ``h`` and the mask, recomputed); with zoneout the
  cell's new state before zoneout (RNN: ``act'`` needs h̃; LSTM: c̃ for the tanh);
  with layer norm the normalised rows ``v̂`` and ``1/sqrt(var + eps)`` of the
  input product (T, B, G*H) and the recurrent product (T, B, G*H) and, for the
  LSTM, of ``c`` (T, B, H); with a projection ``m_t = o_t ⊙ tanh(·)`` (T, B, H)
  for ``dW_hr``. Between layers, the dropout mask of each layer's output.
* Backward adds into every parameter gradient, including ``weight_hr`` and the
  ``ln_*`` gains and bias, and overwrites ``dx``, ``dh0``, ``dc0``, as today.
* The option-aware step path here is written one step per function
  (``<cell>_step`` / ``<cell>_step_backward`` in :mod:`.rnn`, :mod:`.lstm`,
  :mod:`.gru`); with every option off it equals the plain cell bit for bit, so a
  kernel that fuses an option keeps the plain path's results when it is off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._options import (
    LN_EPS,
    RATE_OPTIONS,
    CellMasks,
    Masks,
    Options,
    check_masks,
    draw_masks,
    keep_multiplier,
    mask_key,
    mask_rng,
    zoneout_flags,
)

__all__ = [
    "EXTRA_NAMES",
    "LN_EPS",
    "RATE_OPTIONS",
    "CellExtras",
    "CellMasks",
    "ExtraGrads",
    "LNCache",
    "Masks",
    "Options",
    "check_masks",
    "draw_masks",
    "keep_multiplier",
    "layer_norm",
    "layer_norm_backward",
    "mask_key",
    "mask_rng",
    "zoneout_flags",
    "zoneout_forward",
]


# ------------------------------------------------------------- layer norm
@dataclass
class LNCache:
    """What :func:`layer_norm_backward` needs: ``v̂`` and ``1/sqrt(var + eps)``."""

    vhat: np.ndarray  # (..., N)
    rstd: np.ndarray  # (..., 1)


def layer_norm(
    v: np.ndarray, gain: np.ndarray, bias: np.ndarray | None = None
) -> tuple[np.ndarray, LNCache]:
    """``γ ⊙ (v - mean) / sqrt(var + eps) + β`` over the last axis.

    Shapes
    ------
    v (..., N), gain/bias (N,) -> (..., N).

    Examples
    --------
    >>> out, _ = layer_norm(np.array([[1.0, 2.0, 3.0]]), np.ones(3))
    >>> np.round(out, 4)
    array([[-1.2247,  0.    ,  1.2247]])
    """
    mu = v.mean(axis=-1, keepdims=True)
    xc = v - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + LN_EPS)
    vhat = xc * rstd
    out = vhat * gain
    if bias is not None:
        out += bias
    return out, LNCache(vhat, rstd)


def layer_norm_backward(
    dout: np.ndarray,
    cache: LNCache,
    gain: np.ndarray,
    dgain: np.ndarray,
    dbias: np.ndarray | None = None,
) -> np.ndarray:
    """Backward of :func:`layer_norm`: adds into ``dgain`` (and ``dbias``), returns dv.

    ``dv = rstd (dv̂ - mean(dv̂) - v̂ mean(dv̂ ⊙ v̂))`` with ``dv̂ = dout ⊙ γ``.

    Shapes
    ------
    dout (..., N), gain (N,) -> dv (..., N).
    """
    N = dout.shape[-1]
    flat = dout.reshape(-1, N)
    dgain += (flat * cache.vhat.reshape(-1, N)).sum(axis=0)
    if dbias is not None:
        dbias += flat.sum(axis=0)
    dvhat = dout * gain
    m1 = dvhat.mean(axis=-1, keepdims=True)
    m2 = (dvhat * cache.vhat).mean(axis=-1, keepdims=True)
    result: np.ndarray = cache.rstd * (dvhat - m1 - cache.vhat * m2)
    return result


# ------------------------------------------------------------ cell extras
@dataclass
class CellExtras:
    """One layer and direction's option parameters and masks, for a cell's step.

    ``W_hr`` (P, H) with ``proj_size``; the ``ln_*`` arrays with ``layer_norm``;
    the masks in the *cell's own step order* (the stack reverses them for the
    reverse direction); ``zoneout`` the rate (used at inference).
    """

    train: bool = True
    W_hr: np.ndarray | None = None
    ln_ih: np.ndarray | None = None
    ln_hh: np.ndarray | None = None
    ln_c_weight: np.ndarray | None = None
    ln_c_bias: np.ndarray | None = None
    zoneout: float = 0.0
    recurrent_mask: np.ndarray | None = None
    zoneout_h: np.ndarray | None = None
    zoneout_c: np.ndarray | None = None

    @property
    def layer_norm(self) -> bool:
        return self.ln_ih is not None


@dataclass
class ExtraGrads:
    """Destinations of the option parameters' gradients (added into), or None."""

    W_hr: np.ndarray | None = None
    ln_ih: np.ndarray | None = None
    ln_hh: np.ndarray | None = None
    ln_c_weight: np.ndarray | None = None
    ln_c_bias: np.ndarray | None = None


def zoneout_forward(
    prev: np.ndarray, new: np.ndarray, keep: np.ndarray | None, p: float, train: bool
) -> np.ndarray:
    """Zoneout: ``d ⊙ prev + (1 - d) ⊙ new`` in training (``keep`` = d), and
    ``p prev + (1 - p) new`` at inference."""
    if train:
        if keep is None:
            return new
        return np.where(keep, prev, new)
    if not p:
        return new
    out: np.ndarray = p * prev + (1 - p) * new
    return out


EXTRA_NAMES = {
    "W_hr": "weight_hr",
    "ln_ih": "ln_weight_ih",
    "ln_hh": "ln_weight_hh",
    "ln_c_weight": "ln_weight_c",
    "ln_c_bias": "ln_bias_c",
}
"""Field of :class:`CellExtras` / :class:`ExtraGrads` -> parameter name prefix."""
