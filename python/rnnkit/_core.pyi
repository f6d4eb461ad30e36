"""Type stub of ``rnnkit._core``, the compiled kernels (built from csrc/bindings.cpp).

Private: use the Python API in :mod:`rnnkit`. Names follow the kernels: arrays are
time-major, ``(T, B, I)`` in and ``(T, B, D*H)`` out; ``weights`` holds four
entries per (layer, direction) in PyTorch's order ``weight_ih, weight_hh, bias_ih,
bias_hh`` (the biases ``None`` without bias). Every array is checked for dtype,
shape and C-contiguity; the kernels write into ``dweights``, ``reserve`` and
``scratch`` in place.
"""

from typing import Any, ClassVar

import numpy as np

__version__: str

class Mode:
    """What a kernel call does; it decides the workspace size."""

    INFERENCE: ClassVar[Mode]
    TRAIN_FORWARD: ClassVar[Mode]
    BACKWARD: ClassVar[Mode]
    __members__: ClassVar[dict[str, Mode]]

    def __init__(self, value: int) -> None: ...
    def __eq__(self, other: object) -> bool: ...
    def __ne__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...
    def __int__(self) -> int: ...
    def __index__(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...

def workspace_size(
    cell: str,
    dtype: str,
    T: int,
    B: int,
    I: int,
    H: int,
    num_layers: int,
    bidirectional: bool,
    bias: bool,
    mode: Mode,
    *,
    recurrent_dropout: bool = False,
    zoneout: bool = False,
    dropout: bool = False,
) -> tuple[int, int]:
    """Bytes of (reserve, scratch) for a call of ``mode`` (active SIMD path); the
    keywords say which option masks the call passes (rec_masks, zone_h,
    drop_masks)."""

def forward(
    cell: str,
    nonlinearity: str,
    num_layers: int,
    bidirectional: bool,
    x: np.ndarray,
    h0: np.ndarray,
    c0: np.ndarray | None,
    weights: list[np.ndarray | None],
    lengths: np.ndarray | None,
    reserve: np.ndarray | None,
    scratch: np.ndarray,
    train: bool,
    *,
    rec_masks: list[np.ndarray] | None = None,
    zone_h: list[np.ndarray] | None = None,
    zone_c: list[np.ndarray] | None = None,
    drop_masks: list[np.ndarray] | None = None,
    zoneout: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Runs the stacked layer over x (T, B, I); returns (y, h_n, c_n or None).

    Option masks (training only, real time, original batch rows): rec_masks L*D
    (B, H) of x's dtype, zone_h / zone_c L*D uint8 (T, B, H), drop_masks L-1
    (T, B, D*H) of x's dtype; zoneout: the rate used at inference.
    """

def backward(
    cell: str,
    nonlinearity: str,
    num_layers: int,
    bidirectional: bool,
    input_size: int,
    dy: np.ndarray,
    dh_n: np.ndarray,
    dc_n: np.ndarray | None,
    weights: list[np.ndarray | None],
    dweights: list[np.ndarray | None],
    lengths: np.ndarray | None,
    reserve: np.ndarray,
    scratch: np.ndarray,
    *,
    rec_masks: list[np.ndarray] | None = None,
    zone_h: list[np.ndarray] | None = None,
    zone_c: list[np.ndarray] | None = None,
    drop_masks: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """BPTT for the training forward that filled reserve (with its option masks);
    adds into dweights.

    Returns (dx, dh0, dc0 or None).
    """

class Stepper32:
    """One float32 step at a time (generation); weights packed at construction."""

    def __init__(
        self,
        cell: str,
        nonlinearity: str,
        num_layers: int,
        batch_size: int,
        weights: list[np.ndarray | None],
        *,
        zoneout: float = 0.0,
    ) -> None:
        """``zoneout``: the layer's rate; each step then blends its expectation."""
    def step(self, x: np.ndarray) -> np.ndarray:
        """x (B, I) -> y (B, H), the top layer's new state; the state advances."""
    def get_state(self) -> tuple[np.ndarray, np.ndarray | None]: ...
    def set_state(self, h: np.ndarray, c: np.ndarray | None = None) -> None: ...
    @property
    def simd(self) -> str: ...
    @property
    def batch_size(self) -> int: ...

class Stepper64:
    """One float64 step at a time (generation); weights packed at construction."""

    def __init__(
        self,
        cell: str,
        nonlinearity: str,
        num_layers: int,
        batch_size: int,
        weights: list[np.ndarray | None],
        *,
        zoneout: float = 0.0,
    ) -> None:
        """``zoneout``: the layer's rate; each step then blends its expectation."""
    def step(self, x: np.ndarray) -> np.ndarray:
        """x (B, I) -> y (B, H), the top layer's new state; the state advances."""
    def get_state(self) -> tuple[np.ndarray, np.ndarray | None]: ...
    def set_state(self, h: np.ndarray, c: np.ndarray | None = None) -> None: ...
    @property
    def simd(self) -> str: ...
    @property
    def batch_size(self) -> int: ...

def simd_paths() -> list[str]:
    """SIMD paths this build contains and this CPU runs, best first."""

def compiled_simd_paths() -> list[str]: ...
def get_simd() -> str: ...
def set_simd(name: str) -> None: ...
def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def set_adaptive_threads(on: bool) -> None: ...
def get_adaptive_threads() -> bool: ...
def contention_trips() -> int: ...
def fma_peak_gflops(seconds: float = 0.2) -> float:
    """GFLOP/s of an FMA loop on all threads with the active SIMD path (float32)."""

def gemm_gflops(
    M: int, N: int, K: int, trans_a: bool = False, trans_b: bool = False, reps: int = 3
) -> float:
    """GFLOP/s of the kernels' float32 GEMM alone (benchmarks and tuning)."""

def build_info() -> dict[str, Any]: ...

# The kernels around the recurrent layers (csrc/blocks.h); float32 or float64,
# arrays the kernels write taken as they are (C-contiguous, writeable).
def linear_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, activation: str | None
) -> np.ndarray:
    """y = act(x W^T + b): x (N, I), weight (O, I), bias (O,) or None -> y (N, O)."""

def linear_backward(
    dy: np.ndarray,
    x: np.ndarray,
    y: np.ndarray | None,
    weight: np.ndarray,
    dweight: np.ndarray,
    dbias: np.ndarray | None,
    activation: str | None,
    need_dx: bool = True,
) -> np.ndarray | None:
    """Adds dW = da^T x and db = sum da (da = dy act'(y)); returns dx = da W."""

def cross_entropy(
    logits: np.ndarray,
    targets: np.ndarray,
    mask: np.ndarray | None,
    ignore_index: int | None,
    mean: bool,
    out: np.ndarray | None = None,
) -> tuple[float, int, np.ndarray]:
    """Softmax cross-entropy of logits (N, C): (loss, rows that count, dlogits)."""

def embedding_forward(ids: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """y[n] = weight[ids[n]]: ids (N,) int64 in [0, V) (IndexError otherwise)."""

def embedding_backward(
    ids: np.ndarray, dy: np.ndarray, dweight: np.ndarray, padding_idx: int = -1
) -> None:
    """dweight[ids[n]] += dy[n] in position order, rows of padding_idx left out."""

def optim_step(
    kind: str,
    param: np.ndarray,
    grad: np.ndarray,
    slots: list[np.ndarray | None],
    lr: float,
    weight_decay: float = 0.0,
    eps: float = 0.0,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    first: bool = False,
    alpha: float = 0.0,
    centered: bool = False,
    beta1: float = 0.0,
    beta2: float = 0.0,
    bc1: float = 1.0,
    bc2: float = 1.0,
    amsgrad: bool = False,
    decoupled: bool = False,
) -> None:
    """One optimizer update in place over a flat (param, grad) pair and its slots."""

def sum_squares(x: np.ndarray, scale: float = 1.0) -> float:
    """sum((x * scale)**2) in double, the same for any thread count."""

def scale_(x: np.ndarray, s: float) -> None:
    """x *= s in place over a flat buffer."""

# The dropout family's random masks (csrc/masks.cpp): element i of out from a
# counter-based generator of (key, i) only: u_{2j}, u_{2j+1} = the low and high
# 32 bits of SplitMix64's finaliser of key + (j + 1) * 0x9E3779B97F4A7C15, against
# thr = round(p 2**32).

def bernoulli_(out: np.ndarray, p: float, key: int, value: float = 1.0) -> None:
    """Fills a C-contiguous writeable ``out`` in place: uint8/bool out gets 1 where
    u_i < thr (zoneout flags, probability p; value must be 1), float32/float64 out
    gets ``value`` where u_i >= thr, else 0 (inverted-dropout multipliers, value =
    1/(1-p)). The same bits for any thread count, SIMD path or array size; p in
    [0, 1], key in [0, 2**64)."""

# The layer-normalised LSTM / GRU (csrc/layernorm.cpp; rnnkit._layernorm).
# weights / dweights: 8 entries per (layer, direction), l*D + d: weight_ih,
# weight_hh, bias_ih, bias_hh (None without bias), ln_weight_ih, ln_weight_hh,
# ln_weight_c, ln_bias_c (the last two None for the GRU).

def ln_workspace_size(
    cell: str,
    dtype: str,
    T: int,
    B: int,
    I: int,
    H: int,
    num_layers: int,
    bidirectional: bool,
    bias: bool,
    mode: Mode,
) -> tuple[int, int]:
    """Bytes of (reserve, scratch) for a layer-norm call of ``mode``."""

def ln_forward(
    cell: str,
    num_layers: int,
    bidirectional: bool,
    x: np.ndarray,
    h0: np.ndarray,
    c0: np.ndarray | None,
    weights: list[np.ndarray | None],
    lengths: np.ndarray | None,
    reserve: np.ndarray | None,
    scratch: np.ndarray,
    train: bool,
    rec_masks: list[np.ndarray | None] | None = None,
    zone_h: list[np.ndarray | None] | None = None,
    zone_c: list[np.ndarray | None] | None = None,
    drop_masks: list[np.ndarray | None] | None = None,
    zoneout: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Runs the layer-norm LSTM/GRU over x (T, B, I); returns (y, h_n, c_n or None).

    Masks (training only; None entries allowed) as in the shared mask contract:
    rec_masks L*D (B, H), zone_h / zone_c L*D uint8 (T, B, H), drop_masks L-1
    (T, B, D*H); zoneout's p is used at inference.
    """

def ln_backward(
    cell: str,
    num_layers: int,
    bidirectional: bool,
    input_size: int,
    dy: np.ndarray,
    dh_n: np.ndarray,
    dc_n: np.ndarray | None,
    weights: list[np.ndarray | None],
    dweights: list[np.ndarray | None],
    lengths: np.ndarray | None,
    reserve: np.ndarray,
    scratch: np.ndarray,
    rec_masks: list[np.ndarray | None] | None = None,
    zone_h: list[np.ndarray | None] | None = None,
    zone_c: list[np.ndarray | None] | None = None,
    drop_masks: list[np.ndarray | None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """BPTT for the layer-norm training forward that filled reserve (given the
    same masks); adds into dweights (ln_* included). Returns (dx, dh0, dc0 or
    None)."""

# The projected LSTM (proj_size=P; csrc/lstmp.h): weights are 5 per (layer,
# direction): weight_ih, weight_hh (4H, P), bias_ih, bias_hh, weight_hr (P, H).
def lstmp_workspace_size(
    dtype: str,
    T: int,
    B: int,
    I: int,
    H: int,
    P: int,
    num_layers: int,
    bidirectional: bool,
    bias: bool,
    mode: Mode,
    rec_masks: bool = False,
    zone_h: bool = False,
    zone_c: bool = False,
    drop_masks: bool = False,
) -> tuple[int, int]:
    """Bytes of (reserve, scratch) of a projected-LSTM call of ``mode``; the flags
    say which masks the training forward takes."""

def lstmp_forward(
    num_layers: int,
    bidirectional: bool,
    x: np.ndarray,
    h0: np.ndarray,
    c0: np.ndarray,
    weights: list[np.ndarray | None],
    lengths: np.ndarray | None,
    reserve: np.ndarray | None,
    scratch: np.ndarray,
    train: bool,
    rec_masks: list[np.ndarray | None] | None = None,
    zone_h: list[np.ndarray | None] | None = None,
    zone_c: list[np.ndarray | None] | None = None,
    drop_masks: list[np.ndarray | None] | None = None,
    zoneout: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs the stacked projected LSTM over x (T, B, I): (y, h_n, c_n).

    y (T, B, D*P), h_n (L*D, B, P), c_n (L*D, B, H). Masks (training only, real
    time): rec_masks L*D of (B, P), zone_h L*D uint8 (T, B, P), zone_c L*D uint8
    (T, B, H), drop_masks L-1 of (T, B, D*P); zoneout is the inference expectation.
    """

def lstmp_backward(
    num_layers: int,
    bidirectional: bool,
    input_size: int,
    dy: np.ndarray,
    dh_n: np.ndarray,
    dc_n: np.ndarray,
    weights: list[np.ndarray | None],
    dweights: list[np.ndarray | None],
    lengths: np.ndarray | None,
    reserve: np.ndarray,
    scratch: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BPTT for the projected-LSTM training forward that filled reserve; adds into
    dweights and returns (dx, dh0, dc0)."""
