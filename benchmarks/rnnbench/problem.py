"""The problem of bench_rnn.py: configurations, FLOPs, seeded weights and inputs,
and the normwise check against the float64 reference."""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

from rnnkit import _cells

# ----------------------------------------------------------------- the spec
#: (T, B, I, H) of the issue "Speed", in its order.
SHAPES: tuple[tuple[int, int, int, int], ...] = (
    (100, 32, 128, 256),
    (50, 64, 512, 512),
    (35, 128, 1024, 1024),
    (1000, 1, 64, 128),
    (200, 16, 64, 64),
)
#: The three largest by FLOPs: thread scaling is measured (and judged) on these.
LARGE_SHAPES = ((100, 32, 128, 256), (50, 64, 512, 512), (35, 128, 1024, 1024))
QUICK_SHAPES = ((100, 32, 128, 256), (200, 16, 64, 64))
GEN_SIZES = (128, 512)  # generation: B = 1, T = 1, I = H
MODES = ("infer", "train", "gen")
SIDES = ("rnnkit", "numpy", "numpy-skx", "torch")
SIDE_LABEL = {
    "rnnkit": "rnnkit",
    "numpy": "NumPy (OpenBLAS default)",
    "numpy-skx": "NumPy (OpenBLAS SkylakeX)",
    "torch": "torch",
}
TOL = 1e-3  # normwise relative error allowed against the float64 reference
SPREAD_WARN = 1.25  # pass medians further apart than this are marked † (noisy)
GEN_CHECK_STEPS = 8  # generation check: this many carried steps, output fed back

Config = dict[str, Any]  # {"mode", "cell", "T", "B", "I", "H"}


def cfg_key(c: Config) -> str:
    return f"{c['mode']}/{c['cell']}/{c['T']}x{c['B']}x{c['I']}x{c['H']}"


def ref_key(c: Config) -> str:
    """Inference and training of one (cell, shape) share one reference answer."""
    if c["mode"] == "gen":
        return f"gen_{c['cell']}_{c['H']}"
    return f"{c['cell']}_{c['T']}x{c['B']}x{c['I']}x{c['H']}"


def flops(c: Config) -> float:
    """2*T*B*G*H*(I+H) for a forward pass, three times that for training."""
    G = _cells.get(c["cell"]).gates
    f = 2.0 * c["T"] * c["B"] * G * c["H"] * (c["I"] + c["H"])
    return 3.0 * f if c["mode"] == "train" else f


def make_configs(
    cells: list[str],
    shapes: list[tuple[int, ...]],
    modes: list[str],
    gen_sizes: list[int],
) -> list[Config]:
    out: list[Config] = []
    for mode in modes:
        for cell in cells:
            if mode == "gen":
                out += [
                    {"mode": mode, "cell": cell, "T": 1, "B": 1, "I": h, "H": h}
                    for h in gen_sizes
                ]
            else:
                out += [
                    {"mode": mode, "cell": cell, "T": T, "B": B, "I": I, "H": H}
                    for T, B, I, H in shapes
                ]
    return out


# ------------------------------------------------------------- the problem
def make_problem(c: Config) -> dict[str, Any]:
    """Weights (PyTorch names, Uniform(-1/sqrt(H), 1/sqrt(H))) and inputs, float32.

    Seeded by the configuration, so every side and the reference see the same numbers.
    """
    cell, T, B, I, H = c["cell"], c["T"], c["B"], c["I"], c["H"]
    G = _cells.get(cell).gates
    rng = np.random.default_rng(zlib.crc32(ref_key(c).encode()))
    k = 1.0 / math.sqrt(H)

    def u(shape: tuple[int, ...], a: float) -> np.ndarray:
        return rng.uniform(-a, a, size=shape).astype(np.float32)

    weights = {
        "weight_ih_l0": u((G * H, I), k),
        "weight_hh_l0": u((G * H, H), k),
        "bias_ih_l0": u((G * H,), k),
        "bias_hh_l0": u((G * H,), k),
    }
    return {
        "weights": weights,
        "x": u((T, B, I), 1.0),
        "h0": u((1, B, H), 0.5),
        "c0": u((1, B, H), 0.5) if cell == "lstm" else None,
        "dy": u((T, B, H), 1.0),
        "dhn": u((1, B, H), 1.0),
        "dcn": u((1, B, H), 1.0) if cell == "lstm" else None,
    }


def check_keys(c: Config) -> list[str]:
    keys = ["y", "h_n"] + (["c_n"] if c["cell"] == "lstm" else [])
    if c["mode"] == "train":
        keys += ["dx", "dh0"] + (["dc0"] if c["cell"] == "lstm" else [])
        keys += ["dweight_hh_l0"]
    return keys


def rel_err(a: Any, b: np.ndarray) -> float:
    """||a - b|| / ||b|| (Frobenius), in float64; inf on a shape mismatch."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    return float(np.linalg.norm(a - b) / max(float(np.linalg.norm(b)), 1e-30))
