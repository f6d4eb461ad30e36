#!/usr/bin/env python3
"""Speed of rnnkit's RNN, LSTM and GRU against ``rnnkit.reference`` (NumPy) and torch.

One command runs the whole suite and writes the tables, the goals and a chart::

    python benchmarks/bench_rnn.py --out benchmarks/results

and ``--quick`` a small subset (two shapes, fewer samples) in a few minutes::

    python benchmarks/bench_rnn.py --quick --out /tmp/rnnkit-bench

Protocol (details and formulas in benchmarks/README.md):

* Every side runs in its own fresh subprocess of this script (``--side NAME``) with the
  same thread settings: ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and
  ``MKL_NUM_THREADS`` in the environment, plus ``rk.set_num_threads`` /
  ``torch.set_num_threads`` in the process. The NumPy side runs twice: with OpenBLAS's
  default kernels and with ``OPENBLAS_CORETYPE=SkylakeX`` (AVX-512), which must be set
  before NumPy is imported. Without AVX-512 that side is reported as n/a.
* Every answer is checked against ``rnnkit.reference`` in float64 (computed once, in
  its own subprocess) before it is timed; a wrong answer is reported and not timed.
* Per configuration: two untimed warm-up calls (the checked call is the first), then
  repeated samples (each sample averages enough calls to last ``--min-sample-ms``).
  The driver makes ``--passes`` (>= 2) passes over all sides, interleaved, and reports
  the best of the per-pass medians and the minimum over all samples.
* FLOPs per call: ``2*T*B*G*H*(I+H)`` forward (G = 1, 4, 3 for RNN, LSTM, GRU), three
  times that for training (forward + backward of every gradient, inputs and initial
  states included).
* The machine's peak is measured in the same run by ``rnnkit._core.fma_peak_gflops``
  (an FMA loop on all threads for the active SIMD path) when the core exposes it, else
  estimated from a large NumPy SGEMM (labelled as such).

Speed is never asserted: the goals table says met / NOT met and the exit status is 0.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as _dt
import gc
import io
import json
import math
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

# ----------------------------------------------------------------- the spec
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
CELLS = ("rnn", "lstm", "gru")
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
    f = 2.0 * c["T"] * c["B"] * GATES[c["cell"]] * c["H"] * (c["I"] + c["H"])
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
    G = GATES[cell]
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


# ------------------------------------------------------------------ the sides
class LayerSide:
    """rnnkit's layers or the NumPy reference (identical API)."""

    def __init__(self, module: Any, c: Config, weights: dict, dtype: str = "float32"):
        cls = {"rnn": module.RNN, "lstm": module.LSTM, "gru": module.GRU}[c["cell"]]
        self.lstm = c["cell"] == "lstm"
        self.dtype = np.dtype(dtype)
        self.layer = cls(c["I"], c["H"], dtype=dtype, seed=0)
        self.layer.load_state_dict(
            {k: v.astype(self.dtype) for k, v in weights.items()}
        )

    def _cast(self, a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.ascontiguousarray(a, dtype=self.dtype)

    def _state(self, h: Any, c: Any) -> Any:
        return (h, c) if self.lstm else h

    def _split(self, s: Any) -> tuple[Any, Any]:
        return (s[0], s[1]) if self.lstm else (s, None)

    def context(self, mode: str) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def run_once(self, mode: str, p: dict) -> dict[str, Any]:
        """One checked call; returns NumPy arrays named as in :func:`check_keys`."""
        L, cast = self.layer, self._cast
        s0 = self._state(cast(p["h0"]), cast(p["c0"]))
        if mode == "gen":  # the generation path: layer.stepper(), state kept inside
            st = L.stepper(batch_size=1, hx=s0)
            x = cast(p["x"])[0]
            for _ in range(GEN_CHECK_STEPS):
                x = st.step(x)
            h, c = st.get_state()
            return {"y": x[None], "h_n": h, "c_n": c}
        if mode == "infer":
            y, s = L.forward(cast(p["x"]), s0, train=False)
            h, c = self._split(s)
            return {"y": y, "h_n": h, "c_n": c}
        L.zero_grad()
        y, s = L.forward(cast(p["x"]), s0, train=True)
        dx, ds = L.backward(cast(p["dy"]), self._state(cast(p["dhn"]), cast(p["dcn"])))
        h, c = self._split(s)
        dh0, dc0 = self._split(ds)
        return {
            "y": y,
            "h_n": h,
            "c_n": c,
            "dx": dx,
            "dh0": dh0,
            "dc0": dc0,
            "dweight_hh_l0": L.grads["weight_hh_l0"].copy(),
        }

    def timed(self, mode: str, p: dict) -> Callable[[], Any]:
        """The call that is timed (parameter gradients accumulate across calls)."""
        L = self.layer
        x, s0 = p["x"], self._state(p["h0"], p["c0"])
        if mode == "infer":
            return lambda: L.forward(x, s0, train=False)
        if mode == "train":
            dy, ds = p["dy"], self._state(p["dhn"], p["dcn"])

            def step() -> Any:
                L.forward(x, s0, train=True)
                return L.backward(dy, ds)

            return step
        # generation: state carried inside the stepper, output fed back as input
        st = L.stepper(batch_size=1, hx=s0)
        carry = [x[0]]

        def gen() -> None:
            carry[0] = st.step(carry[0])

        return gen


class TorchSide:
    """torch.nn.RNN / LSTM / GRU with the same weights."""

    def __init__(self, c: Config, weights: dict, dtype: str = "float32"):
        import torch

        self.torch = torch
        self.lstm = c["cell"] == "lstm"
        cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
        self.dt = torch.float64 if dtype == "float64" else torch.float32
        self.mod = cls[c["cell"]](c["I"], c["H"]).to(self.dt)
        self.mod.load_state_dict(
            {k: torch.from_numpy(v.copy()) for k, v in weights.items()}
        )
        self.params = list(self.mod.parameters())
        self.i_whh = [n for n, _ in self.mod.named_parameters()].index("weight_hh_l0")

    def _t(self, a: np.ndarray | None, grad: bool = False) -> Any:
        if a is None:
            return None
        t = self.torch.from_numpy(np.ascontiguousarray(a)).to(self.dt)
        return t.requires_grad_() if grad else t

    def context(self, mode: str) -> contextlib.AbstractContextManager:
        if mode == "train":
            return contextlib.nullcontext()
        return self.torch.inference_mode()

    def _state(self, h: Any, c: Any) -> Any:
        return (h, c) if self.lstm else h

    def _train_fn(self, p: dict) -> Callable[[], Any]:
        x, h0, c0 = (
            self._t(p["x"], True),
            self._t(p["h0"], True),
            self._t(p["c0"], True),
        )
        dy, dhn, dcn = self._t(p["dy"]), self._t(p["dhn"]), self._t(p["dcn"])
        ins = [x, h0] + ([c0] if self.lstm else []) + self.params
        douts = [dy, dhn] + ([dcn] if self.lstm else [])
        state = self._state(h0, c0)

        def step() -> Any:
            y, s = self.mod(x, state)
            outs = [y, *s] if self.lstm else [y, s]
            return (y, s), self.torch.autograd.grad(outs, ins, douts)

        return step

    def run_once(self, mode: str, p: dict) -> dict[str, Any]:
        if mode == "train":
            (y, s), g = self._train_fn(p)()
            h, c = (s[0], s[1]) if self.lstm else (s, None)
            nl = 1 if self.lstm else 0
            out = {
                "y": y,
                "h_n": h,
                "c_n": c,
                "dx": g[0],
                "dh0": g[1],
                "dc0": g[2] if self.lstm else None,
                "dweight_hh_l0": g[2 + nl + self.i_whh],
            }
        else:
            with self.context(mode):
                s = self._state(self._t(p["h0"]), self._t(p["c0"]))
                if mode == "gen":
                    x = self._t(p["x"])
                    for _ in range(GEN_CHECK_STEPS):
                        x, s = self.mod(x, s)
                    y = x
                else:
                    y, s = self.mod(self._t(p["x"]), s)
            h, c = (s[0], s[1]) if self.lstm else (s, None)
            out = {"y": y, "h_n": h, "c_n": c}
        return {k: None if v is None else v.detach().numpy() for k, v in out.items()}

    def timed(self, mode: str, p: dict) -> Callable[[], Any]:
        if mode == "train":
            return self._train_fn(p)
        x, s0 = self._t(p["x"]), self._state(self._t(p["h0"]), self._t(p["c0"]))
        if mode == "infer":
            return lambda: self.mod(x, s0)
        carry = [x, s0]

        def gen() -> None:
            carry[0], carry[1] = self.mod(carry[0], carry[1])

        return gen


def openblas_info(set_threads: int | None = None) -> dict[str, Any]:
    """Core name / config of the OpenBLAS that NumPy loaded (via ctypes), best effort.

    With ``set_threads`` also calls ``openblas_set_num_threads``.
    """
    a = np.ones((4, 4), dtype=np.float32)
    a @ a  # make sure the BLAS is loaded
    info: dict[str, Any] = {}
    try:
        paths = {
            ln.split()[-1]
            for ln in Path("/proc/self/maps").read_text().splitlines()
            if "openblas" in ln.lower() and ln.split()[-1].startswith("/")
        }
    except OSError:
        return info
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pre, suf in (
            ("scipy_openblas", "64_"),
            ("openblas", "64_"),
            ("openblas", ""),
        ):
            fn = getattr(lib, f"{pre}_get_corename{suf}", None)
            if fn is None:
                continue
            fn.restype = ctypes.c_char_p
            info["corename"] = fn().decode()
            cfg = getattr(lib, f"{pre}_get_config{suf}", None)
            if cfg is not None:
                cfg.restype = ctypes.c_char_p
                info["config"] = cfg().decode()
            if set_threads is not None:
                st = getattr(lib, f"{pre}_set_num_threads{suf}", None)
                if st is not None:
                    st(ctypes.c_int(set_threads))
            gt = getattr(lib, f"{pre}_get_num_threads{suf}", None)
            if gt is not None:
                gt.restype = ctypes.c_int
                info["threads"] = int(gt())
            info["library"] = os.path.basename(path)
            return info
    return info


def side_setup(side: str, threads: int) -> dict[str, Any]:
    """Imports what ``side`` needs, fixes its thread count, returns versions etc."""
    info: dict[str, Any] = {
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    info["openblas"] = openblas_info(set_threads=threads)
    if side in (
        "rnnkit",
        "numpy",
        "numpy-skx",
        "ref",
        "mem:rnnkit",
        "mem:numpy",
        "peak",
    ):
        try:
            import rnnkit as rk

            info["rnnkit"] = getattr(rk, "__version__", "?")
            if hasattr(rk, "set_num_threads"):
                rk.set_num_threads(threads)
            for name in ("get_simd", "get_num_threads"):
                if hasattr(rk, name):
                    with contextlib.suppress(Exception):
                        info[name.removeprefix("get_")] = getattr(rk, name)()
            if side == "rnnkit" and hasattr(rk, "show_config"):
                buf = io.StringIO()
                with contextlib.redirect_stdout(buf):
                    ret = rk.show_config()
                info["show_config"] = ret if isinstance(ret, str) else buf.getvalue()
        except Exception as e:  # noqa: BLE001 - reported, the side fails later
            info["rnnkit_error"] = f"{type(e).__name__}: {e}"
    if side in ("torch", "mem:torch", "ref"):
        try:
            import torch

            torch.set_num_threads(threads)
            info["torch"] = torch.__version__
            info["torch_threads"] = torch.get_num_threads()
        except ImportError as e:
            info["torch_error"] = str(e)
    return info


def make_side(side: str, c: Config, weights: dict) -> Any:
    if side == "rnnkit":
        import rnnkit

        return LayerSide(rnnkit, c, weights)
    if side in ("numpy", "numpy-skx"):
        import rnnkit.reference

        return LayerSide(rnnkit.reference, c, weights)
    if side == "torch":
        return TorchSide(c, weights)
    raise ValueError(f"unknown side {side!r}")


# ------------------------------------------------------------------- timing
def measure(
    fn: Callable[[], Any], repeat: int, budget_s: float, min_sample_s: float
) -> tuple[list[float], int]:
    """Seconds per call: ``repeat`` samples (at least 3; stops early past ``budget_s``).

    One untimed warm-up call also sizes a sample: ``number`` calls, enough to last
    ``min_sample_s``; a sample is their mean. The garbage collector is off meanwhile.
    """
    t = time.perf_counter()
    fn()
    t1 = time.perf_counter() - t
    number = max(1, int(min_sample_s / max(t1, 1e-7)))
    samples: list[float] = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        while len(samples) < max(repeat, 3):
            t = time.perf_counter()
            for _ in range(number):
                fn()
            samples.append((time.perf_counter() - t) / number)
            if len(samples) >= 3 and time.perf_counter() - start > budget_s:
                break
    finally:
        if gc_was:
            gc.enable()
    return samples, number


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ workers
def worker_time(job: dict, result_path: Path) -> None:
    """``--side rnnkit|numpy|numpy-skx|torch``: check then time every configuration."""
    side, threads = job["side"], job["threads"]
    out: dict[str, Any] = {"side": side, "threads": threads, "results": {}}
    out["info"] = side_setup(side, threads)
    ref_dir = Path(job["ref_dir"])
    label = f"[{side} x{threads} pass {job['pass'] + 1}]"
    for c in job["configs"]:
        key = cfg_key(c)
        out["current"] = key  # left in the file if this configuration crashes
        result_path.write_text(json.dumps(out))
        res: dict[str, Any] = {}
        try:
            ref_file = ref_dir / f"{ref_key(c)}.npz"
            if not ref_file.exists():
                raise RuntimeError("no reference answer (the reference run failed)")
            p = make_problem(c)
            impl = make_side(side, c, p["weights"])
            ref = np.load(ref_file)
            got = impl.run_once(c["mode"], p)
            errs = {
                k: rel_err(got.get(k), ref[k]) if got.get(k) is not None else math.inf
                for k in check_keys(c)
            }
            res["check"] = errs
            bad = {k: e for k, e in errs.items() if not e <= TOL}
            if bad:
                res["status"] = "wrong"
                res["error"] = "check failed: " + ", ".join(
                    f"{k} rel err {e:.2g}" for k, e in bad.items()
                )
            else:
                fn = impl.timed(c["mode"], p)
                min_s = job["min_sample_s"] * (4 if c["mode"] == "gen" else 1)
                with impl.context(c["mode"]):
                    samples, number = measure(fn, job["repeat"], job["budget_s"], min_s)
                res.update(
                    status="ok",
                    samples=samples,
                    number=number,
                    median=float(np.median(samples)),
                    min=min(samples),
                )
        except Exception as e:  # noqa: BLE001 - recorded per configuration
            res = {"status": "error", "error": f"{type(e).__name__}: {e}"}
        out["results"][key] = res
        if res["status"] == "ok":
            gf = flops(c) / res["median"] / 1e9
            log(
                f"{label} {key}: {res['median'] * 1e3:.4g} ms (median of "
                f"{len(res['samples'])}x{res['number']}), {gf:.1f} GFLOP/s, "
                f"max rel err {max(res['check'].values()):.1g}"
            )
        else:
            log(f"{label} {key}: {res['status'].upper()} {res.get('error', '')}")
    out.pop("current", None)
    result_path.write_text(json.dumps(out))


def worker_ref(job: dict, result_path: Path) -> None:
    """``--side ref``: float64 answers of ``rnnkit.reference`` for every configuration.

    Falls back to torch in float64 (labelled) when the reference cannot be imported.
    """
    out: dict[str, Any] = {"side": "ref", "info": side_setup("ref", job["threads"])}
    try:
        from rnnkit import reference

        out["source"] = "rnnkit.reference (float64)"

        def make(c: Config, w: dict) -> Any:
            return LayerSide(reference, c, w, dtype="float64")
    except Exception as e:  # noqa: BLE001
        out["reference_error"] = f"{type(e).__name__}: {e}"
        import torch  # noqa: F401 - the fallback needs it; ImportError ends the run

        out["source"] = "torch (float64) - rnnkit.reference unavailable"
        log(f"[ref] rnnkit.reference unavailable ({e}); using torch float64")

        def make(c: Config, w: dict) -> Any:
            return TorchSide(c, w, dtype="float64")

    ref_dir = Path(job["ref_dir"])
    done: dict[str, str] = {}
    for c in job["configs"]:
        rk_ = ref_key(c)
        if rk_ in done:
            continue
        t = time.perf_counter()
        try:
            p = make_problem(c)
            # a training call yields the inference answer too (same y, h_n, c_n)
            mode = "gen" if c["mode"] == "gen" else "train"
            got = make(c, p["weights"]).run_once(mode, p)
            np.savez(
                ref_dir / f"{rk_}.npz",
                **{k: np.asarray(v) for k, v in got.items() if v is not None},
            )
            done[rk_] = "ok"
            log(f"[ref] {rk_}: {time.perf_counter() - t:.2f} s")
        except Exception as e:  # noqa: BLE001
            done[rk_] = f"{type(e).__name__}: {e}"
            log(f"[ref] {rk_}: ERROR {done[rk_]}")
    out["results"] = done
    result_path.write_text(json.dumps(out))


def sgemm_gflops(n: int, seconds: float) -> float:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.T.copy()
    a @ b
    best = math.inf
    stop = time.perf_counter() + seconds
    while True:
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
        if time.perf_counter() > stop:
            break
    return 2.0 * n**3 / best / 1e9


def worker_peak(job: dict, result_path: Path) -> None:
    """``--side peak``: FMA-loop peak of rnnkit's core, and a NumPy SGEMM estimate."""
    out: dict[str, Any] = {"side": "peak", "threads": job["threads"]}
    out["info"] = side_setup("peak", job["threads"])
    try:
        from rnnkit import _core

        probe = getattr(_core, "fma_peak_gflops", None)
        if probe is None:
            out["fma_error"] = "rnnkit._core has no fma_peak_gflops"
        else:
            out["fma_gflops"] = max(float(probe(job["seconds"])) for _ in range(3))
    except Exception as e:  # noqa: BLE001
        out["fma_error"] = f"{type(e).__name__}: {e}"
    out["sgemm_gflops"] = sgemm_gflops(job["sgemm_n"], 3 * job["seconds"])
    log(
        f"[peak x{job['threads']}] FMA loop: "
        f"{out.get('fma_gflops', out.get('fma_error'))}"
        f"; NumPy SGEMM {job['sgemm_n']}: {out['sgemm_gflops']:.1f} GFLOP/s"
    )
    result_path.write_text(json.dumps(out))


def _proc_status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_hwm() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def workspace_bytes(layer: Any, c: Config) -> tuple[int | None, str]:
    """Workspace a training step of ``layer`` needs, by the layer's own formula.

    ``layer.workspace_bytes(T, B, train=True)`` where the layer has it; else from
    ``rnnkit._core.workspace_size``: the reserve kept by the training forward plus the
    larger of the forward and backward scratch (one scratch buffer serves both).
    """
    T, B = c["T"], c["B"]
    if hasattr(layer, "workspace_bytes"):
        return int(layer.workspace_bytes(T, B, train=True)), "layer.workspace_bytes"
    try:
        from rnnkit import _core

        desc = (c["cell"], "float32", T, B, c["I"], c["H"], 1, False, True)
        r1, s1 = _core.workspace_size(*desc, 1)
        _, s2 = _core.workspace_size(*desc, 2)
        return int(r1 + max(s1, s2)), "_core.workspace_size: reserve + max(scratch)"
    except Exception as e:  # noqa: BLE001
        return None, f"n/a ({type(e).__name__}: {e})"


def worker_mem(job: dict, result_path: Path) -> None:
    """``--side mem``: peak RSS growth of one training step, in a fresh process.

    Thread pools and library buffers are initialized first: for NumPy and torch by a
    tiny step of the same cell; for rnnkit by a short ``fma_peak_gflops`` run (a tiny
    step would already grow rnnkit's shared scratch buffer, hiding part of the
    workspace). Then VmHWM is reset to the current RSS and the step runs; growth =
    VmHWM - RSS before. Twice: the first step (includes lazily allocated workspace)
    and the second.
    """
    c, target = job["config"], job["target"]
    out: dict[str, Any] = {"side": "mem", "target": target, "key": cfg_key(c)}
    out["info"] = side_setup("mem:" + target, job["threads"])
    try:
        probe = None
        if target == "rnnkit":
            from rnnkit import _core

            probe = getattr(_core, "fma_peak_gflops", None)
        if probe is not None:
            probe(0.02)
        else:
            small = dict(c, T=2, B=2)
            ps = make_problem(small)
            make_side(target, small, ps["weights"]).timed("train", ps)()
        p = make_problem(c)
        impl = make_side(target, c, p["weights"])
        fn = impl.timed("train", p)
        steps = []
        for _ in range(2):
            gc.collect()
            rss0 = _proc_status_kb("VmRSS")
            out["hwm_reset"] = _reset_hwm()
            hwm0 = _proc_status_kb("VmHWM")
            res = fn()
            hwm = _proc_status_kb("VmHWM")
            del res
            steps.append(1024 * (hwm - (rss0 if out["hwm_reset"] else max(rss0, hwm0))))
        out["step_bytes"] = steps
        if target == "rnnkit":
            out["workspace_bytes"], out["workspace_source"] = workspace_bytes(
                impl.layer, c
            )
    except Exception as e:  # noqa: BLE001
        out["error"] = f"{type(e).__name__}: {e}"
    result_path.write_text(json.dumps(out))


# ------------------------------------------------------------------- driver
def cpu_info() -> dict[str, Any]:
    info: dict[str, Any] = {"model": platform.processor() or "?", "flags": []}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["model"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                info["flags"] = sorted(
                    flags
                    & {
                        "avx",
                        "avx2",
                        "fma",
                        "avx512f",
                        "avx512bw",
                        "avx512vl",
                        "avx512_vnni",
                        "avx512_bf16",
                    }
                )
                break
        for key, name in (("cpu family", "family"), ("model\t", "model_number")):
            for line in text.splitlines():
                if line.startswith(key):
                    info[name] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["logical_cpus"] = os.cpu_count()
    return info


def git_rev(root: Path) -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def thread_env(threads: int, skx: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    for var in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "RNNKIT_NUM_THREADS",
    ):
        env[var] = str(threads)
    env.pop("OPENBLAS_CORETYPE", None)
    if skx:
        env["OPENBLAS_CORETYPE"] = "SkylakeX"
    return env


def run_worker(job: dict, tmp: Path, name: str, skx: bool = False) -> dict[str, Any]:
    """Runs this script as ``--side`` in a fresh process; returns its JSON result."""
    job_path, res_path = tmp / f"{name}.job.json", tmp / f"{name}.result.json"
    job_path.write_text(json.dumps(job))
    res_path.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--side",
        job["side"],
        "--job",
        str(job_path),
        "--result",
        str(res_path),
    ]
    rc = subprocess.run(
        cmd, env=thread_env(job["threads"], skx), check=False
    ).returncode
    res: dict[str, Any] = json.loads(res_path.read_text()) if res_path.exists() else {}
    if rc != 0:
        why = f"exit status {rc}"
        if rc < 0:
            with contextlib.suppress(ValueError):
                why = f"killed by {signal.Signals(-rc).name}"
        res["crash"] = why + (f" during {res['current']}" if "current" in res else "")
        log(f"[{name}] worker failed: {res['crash']}")
    return res


def parse_shape(s: str) -> tuple[int, int, int, int]:
    parts = s.lower().replace(",", "x").split("x")
    if len(parts) != 4 or not all(q.strip().isdigit() for q in parts):
        raise argparse.ArgumentTypeError(f"shape must be TxBxIxH, got {s!r}")
    T, B, I, H = (int(q) for q in parts)
    return T, B, I, H


def csv(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(s: str) -> list[str]:
        items = [q.strip() for q in s.split(",") if q.strip()]
        bad = [q for q in items if q not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"{bad} not in {list(choices)}")
        return items

    return parse


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description="Benchmark rnnkit RNN/LSTM/GRU against rnnkit.reference and torch.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/results"),
        help="folder for results.md, goals.md, results.json, bench_rnn.png",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="subset: shapes 100x32x128x256 and 200x16x64x64, fewer samples, "
        "memory for rnnkit only",
    )
    ap.add_argument("--cells", type=csv(CELLS), default=list(CELLS))
    ap.add_argument(
        "--shapes",
        type=parse_shape,
        nargs="+",
        default=None,
        metavar="TxBxIxH",
        help="default: the five shapes of the spec",
    )
    ap.add_argument("--modes", type=csv(MODES), default=list(MODES))
    ap.add_argument(
        "--gen-sizes",
        type=lambda s: [int(q) for q in s.split(",")],
        default=list(GEN_SIZES),
        help="H (= I) of the generation configs",
    )
    ap.add_argument("--sides", type=csv(SIDES), default=list(SIDES))
    ap.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="threads for every side (scaling compares 1 with this)",
    )
    ap.add_argument(
        "--passes", type=int, default=2, help="passes over all sides (>= 2)"
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="samples per configuration and pass (default 7, quick 3)",
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds per configuration and pass after 3 samples (default 3, quick 1)",
    )
    ap.add_argument(
        "--min-sample-ms",
        type=float,
        default=10.0,
        help="a sample averages enough calls to last this long (4x for generation)",
    )
    ap.add_argument(
        "--no-scaling", action="store_true", help="skip 1-thread rnnkit runs"
    )
    ap.add_argument(
        "--memory-sides",
        type=csv(("rnnkit", "numpy", "torch")),
        default=None,
        help="sides whose training-step memory is measured "
        "(default rnnkit,numpy,torch; quick rnnkit; '' for none)",
    )
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument(
        "--from-json",
        type=Path,
        metavar="RESULTS_JSON",
        help="only rewrite the tables, goals and chart from an earlier results.json",
    )
    # internal: one side in a fresh process
    ap.add_argument("--side", help=argparse.SUPPRESS)
    ap.add_argument("--job", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return ap


def has_avx512() -> bool:
    return "avx512f" in cpu_info()["flags"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.side:
        job = json.loads(args.job.read_text())
        worker = {"ref": worker_ref, "peak": worker_peak, "mem": worker_mem}
        worker.get(args.side, worker_time)(job, args.result)
        return 0

    if args.from_json:
        write_outputs(
            json.loads(args.from_json.read_text()), args.out, not args.no_plot
        )
        return 0
    shapes = args.shapes or list(QUICK_SHAPES if args.quick else SHAPES)
    repeat = args.repeat or (3 if args.quick else 7)
    budget = args.budget if args.budget is not None else (1.0 if args.quick else 3.0)
    passes = max(2, args.passes)
    mem_sides = (
        args.memory_sides
        if args.memory_sides is not None
        else (["rnnkit"] if args.quick else ["rnnkit", "numpy", "torch"])
    )
    if not args.sides or "rnnkit" not in args.sides:
        log("note: rnnkit side not selected; speedups and most goals will be n/a")
    N = args.threads
    configs = make_configs(args.cells, shapes, args.modes, args.gen_sizes)
    scale_cfgs = [
        c
        for c in configs
        if c["mode"] != "gen" and (c["T"], c["B"], c["I"], c["H"]) in LARGE_SHAPES
    ]
    do_scaling = not args.no_scaling and N > 1 and "rnnkit" in args.sides and scale_cfgs
    avx512 = has_avx512()

    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="rnnkit-bench-"))
    (tmp / "ref").mkdir()
    started = time.time()
    meta: dict[str, Any] = {
        "command": shlex.join(
            ["python", os.path.relpath(__file__)]
            + (sys.argv[1:] if argv is None else list(argv))
        ),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_info(),
        "threads": N,
        "passes": passes,
        "repeat": repeat,
        "budget_s": budget,
        "min_sample_ms": args.min_sample_ms,
        "tol": TOL,
        "platform": platform.platform(),
        "git": git_rev(Path(__file__).resolve().parents[1]),
        "loadavg_start": os.getloadavg(),
    }
    log(
        f"rnnkit benchmark: {len(configs)} configurations x sides {args.sides}, "
        f"{N} threads, {passes} passes; scratch {tmp}"
    )
    try:
        base = {
            "repeat": repeat,
            "budget_s": budget,
            "min_sample_s": args.min_sample_ms / 1e3,
            "ref_dir": str(tmp / "ref"),
        }
        ref = run_worker(dict(base, side="ref", threads=N, configs=configs), tmp, "ref")
        meta["reference"] = ref.get("source", "failed: " + ref.get("crash", "?"))
        if "reference_error" in ref:
            meta["reference_error"] = ref["reference_error"]

        runs: dict[str, list[dict]] = {}  # side name -> per-pass worker results
        peaks: dict[int, list[dict]] = {N: [], 1: []}
        plan: list[tuple[str, int, list[Config]]] = [
            (s, N, configs) for s in args.sides
        ]
        if do_scaling:
            plan.append(("rnnkit", 1, scale_cfgs))
        for p in range(passes):
            peak_threads = [N] + ([1] if do_scaling else [])
            for t in peak_threads:
                peaks[t].append(
                    run_worker(
                        {
                            "side": "peak",
                            "threads": t,
                            "seconds": 0.5,
                            "sgemm_n": 1024 if args.quick else 2048,
                        },
                        tmp,
                        f"peak{t}-{p}",
                    )
                )
            order = plan if p % 2 == 0 else plan[::-1]  # alternate, against drift
            for side, t, cfgs in order:
                name = side if t == N else f"{side}@{t}"
                if side == "numpy-skx" and not avx512:
                    continue
                job = dict(base, side=side, threads=t, configs=cfgs, **{"pass": p})
                runs.setdefault(name, []).append(
                    run_worker(job, tmp, f"{name}-{p}", skx=side == "numpy-skx")
                )

        memory: list[dict] = []
        mem_cfgs = [c for c in configs if c["mode"] == "train"]
        for c in mem_cfgs:
            for s in mem_sides:
                r = run_worker(
                    {"side": "mem", "threads": N, "target": s, "config": c},
                    tmp,
                    f"mem-{s}",
                )
                memory.append(
                    r
                    if "key" in r
                    else {"target": s, "key": cfg_key(c), "error": r.get("crash", "?")}
                )
                log(
                    f"[mem {s}] {cfg_key(c)}: "
                    + (
                        f"{r['step_bytes'][0] / 2**20:.1f} MiB"
                        if "step_bytes" in r
                        else str(r.get("error", r.get("crash")))
                    )
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    meta["loadavg_end"] = os.getloadavg()
    meta["elapsed_s"] = round(time.time() - started, 1)
    report = aggregate(configs, runs, peaks, memory, meta, N, avx512, args.sides)
    write_outputs(report, out_dir, plot=not args.no_plot)
    return 0


# ---------------------------------------------------------------- reporting
def aggregate(
    configs: list[Config],
    runs: dict[str, list[dict]],
    peaks: dict[int, list],
    memory: list[dict],
    meta: dict,
    N: int,
    avx512: bool,
    sides: list[str],
) -> dict[str, Any]:
    """Best of per-pass medians, min over all samples, one entry per (side, config)."""
    table: dict[str, dict[str, dict]] = {}
    infos: dict[str, dict] = {}
    for name, passes in runs.items():
        for r in passes:
            if r.get("info"):
                infos.setdefault(name, r["info"])
        cell: dict[str, dict] = {}
        for c in configs:
            k = cfg_key(c)
            per = [r.get("results", {}).get(k) for r in passes]
            oks = [q for q in per if q and q.get("status") == "ok"]
            bad = [q for q in per if q and q.get("status") != "ok"]
            if not any(per):
                crash = next((r["crash"] for r in passes if "crash" in r), None)
                if crash:
                    cell[k] = {"status": "error", "error": "worker crashed: " + crash}
                continue
            if bad and (not oks or any(q["status"] == "wrong" for q in bad)):
                q = next((q for q in bad if q["status"] == "wrong"), bad[0])
                where = f" (in {len(bad)} of {len(per)} passes)" if len(per) > 1 else ""
                cell[k] = {"status": q["status"], "error": q.get("error", "") + where}
                continue
            cell[k] = {
                "status": "ok",
                "median": min(q["median"] for q in oks),
                "min": min(q["min"] for q in oks),
                "pass_medians": [q["median"] for q in oks],
                "samples": [q["samples"] for q in oks],
                "check": oks[0].get("check", {}),
            }
        table[name] = cell
    if "numpy-skx" in sides and not avx512:
        table["numpy-skx"] = {
            cfg_key(c): {"status": "n/a", "error": "n/a (no AVX-512)"} for c in configs
        }

    def best(t: int, field: str) -> float | None:
        vals = [r[field] for r in peaks.get(t, []) if isinstance(r.get(field), float)]
        return max(vals) if vals else None

    peak = {
        t: {"fma": best(t, "fma_gflops"), "sgemm": best(t, "sgemm_gflops")}
        for t in peaks
        if peaks[t]
    }
    fma_err = next((r["fma_error"] for r in peaks.get(N, []) if "fma_error" in r), None)
    if peak.get(N, {}).get("fma"):
        peak_src = "rnnkit._core.fma_peak_gflops (FMA loop, active SIMD path)"
        peak_val = peak[N]["fma"]
    elif peak.get(N, {}).get("sgemm"):
        peak_src = f"NumPy SGEMM estimate (no FMA probe: {fma_err})"
        peak_val = peak[N]["sgemm"]
    else:
        peak_src, peak_val = "unavailable", None
    meta.update(peak_gflops=peak_val, peak_source=peak_src, peaks=peak)
    meta["versions"] = {}
    for name in ("rnnkit", "numpy", "numpy-skx", "torch"):
        info = infos.get(name, {})
        if info:
            meta["versions"][name] = {
                k: v for k, v in info.items() if k != "show_config"
            }
    meta["show_config"] = infos.get("rnnkit", {}).get("show_config")
    return {
        "meta": meta,
        "configs": configs,
        "table": table,
        "memory": memory,
        "sides": sides,
    }


def geomean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x and x > 0 and math.isfinite(x)]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


def shape_str(c: Config) -> str:
    if c["mode"] == "gen":
        return f"H={c['H']}"
    return f"{c['T']}x{c['B']}x{c['I']}x{c['H']}"


def entry(report: dict, side: str, c: Config) -> dict | None:
    return report["table"].get(side, {}).get(cfg_key(c))


def med(report: dict, side: str, c: Config) -> float | None:
    e = entry(report, side, c)
    return e["median"] if e and e.get("status") == "ok" else None


def speedup(report: dict, peer: str, c: Config) -> float | None:
    a, b = med(report, "rnnkit", c), med(report, peer, c)
    return b / a if a and b else None


def fmt_time(e: dict | None, unit: float) -> str:
    if e is None:
        return "—"
    if e.get("status") != "ok":
        return {"wrong": "WRONG", "n/a": "n/a"}.get(e["status"], "error")
    pm = e.get("pass_medians") or [e["median"]]
    noisy = " †" if max(pm) > SPREAD_WARN * min(pm) else ""
    return f"{e['median'] * unit:.4g} ({e['min'] * unit:.4g}){noisy}"


def fmt_x(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}x"


def render_tables(report: dict) -> str:
    meta, configs = report["meta"], report["configs"]
    peers = [s for s in ("numpy", "numpy-skx", "torch") if s in report["table"]]
    peak = meta.get("peak_gflops")
    L: list[str] = []
    L.append("# rnnkit benchmark\n")
    L.append(f"Command: `{meta['command']}`\n")
    L.append(configuration_md(report))
    L.append(
        "Times are ms per call, best of the per-pass medians (min over all samples in "
        "parentheses); speedup = peer median / rnnkit median (> 1: rnnkit is faster). "
        "FLOPs per call = 2·T·B·G·H·(I+H), ×3 for training; % peak against "
        f"{peak:.1f} GFLOP/s ({meta['peak_source']}). † marks a configuration "
        f"whose pass medians differ by more than {SPREAD_WARN}x (a noisy machine: "
        "rerun when idle).\n"
        if peak
        else "Peak: unavailable.\n"
    )
    for mode, title in (
        ("infer", "Inference (train=False)"),
        ("train", "Training (forward + backward, all gradients)"),
    ):
        cs = [c for c in configs if c["mode"] == mode]
        if not cs:
            continue
        L.append(f"## {title}\n")
        head = ["cell", "T×B×I×H", "GFLOP", "rnnkit ms", "GFLOP/s", "% peak"]
        head += [f"{SIDE_LABEL[p]} ms" for p in peers]
        head += [f"vs {SIDE_LABEL[p]}" for p in peers]
        L.append("| " + " | ".join(head) + " |")
        L.append("|" + "---|" * len(head))
        for c in cs:
            m = med(report, "rnnkit", c)
            gf = flops(c) / m / 1e9 if m else None
            row = [
                c["cell"],
                shape_str(c),
                f"{flops(c) / 1e9:.3g}",
                fmt_time(entry(report, "rnnkit", c), 1e3),
                f"{gf:.1f}" if gf else "—",
                f"{100 * gf / peak:.0f}%" if gf and peak else "—",
            ]
            row += [fmt_time(entry(report, p, c), 1e3) for p in peers]
            row += [fmt_x(speedup(report, p, c)) for p in peers]
            L.append("| " + " | ".join(row) + " |")
        for cell in dict.fromkeys(c["cell"] for c in cs):
            row = [f"**{cell} geomean**", "", "", "", "", ""]
            row += ["" for _ in peers]
            row += [
                fmt_x(
                    geomean(
                        [speedup(report, p, c) or 0 for c in cs if c["cell"] == cell]
                    )
                )
                for p in peers
            ]
            L.append("| " + " | ".join(row) + " |")
        L.append("")
    cs = [c for c in configs if c["mode"] == "gen"]
    if cs:
        L.append(
            "## Generation latency (B=1, T=1, I=H, state carried, Python call "
            "included)\n"
        )
        head = ["cell", "H", "rnnkit µs/step"] + [f"{SIDE_LABEL[p]} µs" for p in peers]
        head += [f"vs {SIDE_LABEL[p]}" for p in peers]
        L.append("| " + " | ".join(head) + " |")
        L.append("|" + "---|" * len(head))
        for c in cs:
            row = [c["cell"], str(c["H"]), fmt_time(entry(report, "rnnkit", c), 1e6)]
            row += [fmt_time(entry(report, p, c), 1e6) for p in peers]
            row += [fmt_x(speedup(report, p, c)) for p in peers]
            L.append("| " + " | ".join(row) + " |")
        L.append("")
    scal = scaling_rows(report)
    if scal:
        N = meta["threads"]
        pk = meta.get("peaks", {})
        pf = [(pk.get(N) or pk.get(str(N)) or {}), (pk.get(1) or pk.get("1") or {})]
        src = "fma" if pf[0].get("fma") and pf[1].get("fma") else "sgemm"
        p_sc = pf[0][src] / pf[1][src] if pf[0].get(src) and pf[1].get(src) else None
        L.append(f"## Thread scaling of rnnkit (1 vs {N} threads)\n")
        L.append(
            f"Peak probe ({src}) scales {p_sc:.2f}x from 1 to {N} threads on this "
            "machine.\n"
            if p_sc
            else ""
        )
        L.append(f"| mode | cell | T×B×I×H | 1 thread ms | {N} threads ms | speedup |")
        L.append("|---|---|---|---|---|---|")
        for c, e1, eN, s in scal:
            L.append(
                f"| {c['mode']} | {c['cell']} | {shape_str(c)} | {fmt_time(e1, 1e3)} "
                f"| {fmt_time(eN, 1e3)} | {fmt_x(s)} |"
            )
        L.append("")
    if report["memory"]:
        L.append("## Memory of one training step\n")
        L.append(
            "Growth of peak RSS (VmHWM, reset before the step) over the RSS "
            "before it, in a fresh process after a warm-up (thread pools, BLAS "
            "buffers; see README); first step "
            "(second step). Expected = workspace (`layer.workspace_bytes(T, B, "
            "train=True)`, or where the layer lacks it `_core.workspace_size`: the "
            "training reserve + the larger of forward and backward scratch) + "
            "the arrays the step returns (y, dx, h_n[, c_n], dh0[, dc0]).\n"
        )
        L.append(
            "| cell | T×B×I×H | side | measured MiB | workspace MiB | "
            "outputs MiB | measured / expected |"
        )
        L.append("|---|---|---|---|---|---|---|")
        bycfg = {cfg_key(c): c for c in configs}
        for m in report["memory"]:
            c = bycfg.get(m["key"])
            if c is None:
                continue
            if "step_bytes" not in m:
                L.append(
                    f"| {c['cell']} | {shape_str(c)} | {m['target']} | error: "
                    f"{m.get('error', '?')} | | | |"
                )
                continue
            s1, s2 = (b / 2**20 for b in m["step_bytes"])
            outb = output_bytes(c) / 2**20
            ws = m.get("workspace_bytes")
            wsm = ws / 2**20 if ws is not None else None
            ratio = s1 / (wsm + outb) if wsm is not None and wsm + outb > 0 else None
            L.append(
                f"| {c['cell']} | {shape_str(c)} | {m['target']} | {s1:.1f} ({s2:.1f}) "
                f"| {f'{wsm:.1f}' if wsm is not None else 'n/a'} | {outb:.1f} | "
                f"{f'{ratio:.2f}' if ratio else '—'} |"
            )
        L.append("")
    errs = [
        (s, k, e.get("error", ""))
        for s, t in report["table"].items()
        for k, e in t.items()
        if e.get("status") in ("error", "wrong")
    ]
    if errs:
        L.append("## Failures\n")
        for s, k, msg in errs:
            L.append(f"- {s} {k}: {msg}")
        L.append("")
    return "\n".join(L)


def output_bytes(c: Config) -> int:
    states = 4 if c["cell"] == "lstm" else 2
    return 4 * (c["T"] * c["B"] * (c["H"] + c["I"]) + states * c["B"] * c["H"])


def scaling_rows(
    report: dict,
) -> list[tuple[Config, dict | None, dict | None, float | None]]:
    one = report["table"].get("rnnkit@1")
    if not one:
        return []
    rows = []
    for c in report["configs"]:
        k = cfg_key(c)
        if k not in one:
            continue
        e1, eN = one.get(k), report["table"].get("rnnkit", {}).get(k)
        s = (
            e1["median"] / eN["median"]
            if e1 and eN and e1.get("status") == eN.get("status") == "ok"
            else None
        )
        rows.append((c, e1, eN, s))
    return rows


def configuration_md(report: dict) -> str:
    meta = report["meta"]
    v = meta.get("versions", {})
    rk_info = v.get("rnnkit", {})

    def ver(side: str, key: str) -> str:
        for s in (side, "rnnkit", "numpy", "torch"):
            if key in v.get(s, {}):
                return str(v[s][key])
        return "n/a"

    ob = next(
        (
            v[s]["openblas"]
            for s in ("numpy", "rnnkit", "torch")
            if v.get(s, {}).get("openblas")
        ),
        {},
    )
    ob_skx = v.get("numpy-skx", {}).get("openblas", {})
    skx_na = "n/a (no AVX-512)" if "avx512f" not in meta["cpu"]["flags"] else "n/a"
    rows = [
        ("date", meta["date"]),
        (
            "CPU",
            (
                f"{meta['cpu']['model']} (family {meta['cpu'].get('family', '?')}, "
                f"model {meta['cpu'].get('model_number', '?')}), "
                f"{meta['cpu']['logical_cpus']} "
                f"logical CPUs; flags: {' '.join(meta['cpu']['flags'])}"
            ),
        ),
        ("ISA (rk.get_simd())", str(rk_info.get("simd", "n/a"))),
        ("threads (every side)", str(meta["threads"])),
        ("rnnkit", f"{ver('rnnkit', 'rnnkit')} (git {meta['git']})"),
        ("numpy", ver("numpy", "numpy")),
        (
            "OpenBLAS (default / SkylakeX side)",
            (
                f"{ob.get('config', ob.get('corename', '?'))} / "
                f"{ob_skx.get('corename', skx_na)}"
            ),
        ),
        ("torch", ver("torch", "torch") if "torch" in v else "not run / not installed"),
        ("python", ver("numpy", "python")),
        ("platform", meta["platform"]),
        (
            "peak GFLOP/s",
            (
                f"{meta['peak_gflops']:.1f} — {meta['peak_source']}"
                if meta.get("peak_gflops")
                else "unavailable"
            ),
        ),
        ("reference", str(meta.get("reference"))),
        (
            "protocol",
            (
                f"{meta['passes']} passes, ≤{meta['repeat']} samples per config and "
                f"pass (≥3, budget {meta['budget_s']} s), samples ≥ "
                f"{meta['min_sample_ms']} ms, 2 warm-up calls, check tol {meta['tol']}"
            ),
        ),
        (
            "load average start / end",
            (
                f"{meta['loadavg_start'][0]:.2f} / "
                f"{meta.get('loadavg_end', [math.nan])[0]:.2f}"
            ),
        ),
        ("elapsed", f"{meta.get('elapsed_s', '?')} s"),
    ]
    s = "## Configuration\n\n| | |\n|---|---|\n"
    s += "\n".join(f"| {a} | {b} |" for a, b in rows) + "\n"
    if meta.get("show_config"):
        s += "\n<details><summary>rk.show_config()</summary>\n\n```\n"
        s += meta["show_config"].rstrip() + "\n```\n</details>\n"
    return s + "\n"


# ---------------------------------------------------------------------- goals
def goals(report: dict) -> list[tuple[str, str, str]]:
    """(goal, measured, status) per goal of the issue "Speed"."""
    configs, meta = report["configs"], report["meta"]
    rows: list[tuple[str, str, str]] = []
    present = set(report["table"])

    def judge(
        goal: str, cs: list[Config], peer: str, every: float | None, gm: float | None
    ) -> None:
        if not cs:
            rows.append((goal, "not run in this subset", "n/a"))
            return
        if peer not in present:
            rows.append((goal, f"{SIDE_LABEL[peer]} side not run", "n/a"))
            return
        first = entry(report, peer, cs[0])
        if first and first.get("status") == "n/a":
            rows.append((goal, first.get("error", "n/a"), "n/a"))
            return
        sp = [(c, speedup(report, peer, c)) for c in cs]
        have = [(c, s) for c, s in sp if s is not None]
        if not have:
            rows.append((goal, why_none(report, cs, peer), "n/a"))
            return
        parts, ok = [], True
        if every is not None:
            cmin, smin = min(have, key=lambda q: q[1])
            parts.append(f"min {smin:.2f}x ({cmin['cell']} {shape_str(cmin)})")
            ok &= smin >= every
        if gm is not None:
            g = geomean([s for _, s in have])
            parts.append(f"geomean {g:.2f}x")
            ok &= g is not None and g >= gm
        partial = (
            f"; partial: {len(have)}/{len(sp)} configs" if len(have) < len(sp) else ""
        )
        rows.append((goal, ", ".join(parts) + partial, "met" if ok else "NOT met"))

    def sel(mode: str, cells: tuple[str, ...]) -> list[Config]:
        return [c for c in configs if c["mode"] == mode and c["cell"] in cells]

    judge(
        "training vs torch, LSTM: >= 1.5x geomean and >= 1.1x every shape",
        sel("train", ("lstm",)),
        "torch",
        1.1,
        1.5,
    )
    for cell in ("gru", "rnn"):
        judge(
            f"training vs torch, {cell.upper()}: >= 3x geomean and >= 2x every shape",
            sel("train", (cell,)),
            "torch",
            2.0,
            3.0,
        )
    judge(
        "inference vs torch, LSTM: >= 1.0x every shape",
        sel("infer", ("lstm",)),
        "torch",
        1.0,
        None,
    )
    for cell in ("gru", "rnn"):
        judge(
            f"inference vs torch, {cell.upper()}: >= 3x geomean",
            sel("infer", (cell,)),
            "torch",
            None,
            3.0,
        )
    both = [c for c in configs if c["mode"] in ("infer", "train")]
    judge(
        "vs NumPy (OpenBLAS default), inference and training: >= 2x every shape and "
        ">= 4x geomean",
        both,
        "numpy",
        2.0,
        4.0,
    )
    judge(
        "vs NumPy (OpenBLAS SkylakeX), inference and training: >= 1.3x every shape",
        both,
        "numpy-skx",
        1.3,
        None,
    )

    peak = meta.get("peak_gflops")
    for cell in ("lstm", "gru"):
        goal = f"{cell.upper()} training at 35x128x1024x1024: >= 80% of peak"
        cs = [
            c
            for c in configs
            if c["mode"] == "train"
            and c["cell"] == cell
            and (c["T"], c["B"], c["I"], c["H"]) == (35, 128, 1024, 1024)
        ]
        m = med(report, "rnnkit", cs[0]) if cs else None
        if not cs:
            rows.append((goal, "not run in this subset", "n/a"))
        elif not m or not peak:
            rows.append((goal, "no valid timing" if not m else "no peak", "n/a"))
        else:
            frac = flops(cs[0]) / m / 1e9 / peak
            rows.append(
                (
                    goal,
                    (
                        f"{100 * frac:.0f}% of {peak:.0f} GFLOP/s "
                        f"({meta['peak_source'].split(' (')[0]})"
                    ),
                    "met" if frac >= 0.8 else "NOT met",
                )
            )

    def gen_goal(goal: str, cs: list[Config], limit_us: float) -> None:
        if not cs:
            rows.append((goal, "not run in this subset", "n/a"))
            return
        vals = [(c, med(report, "rnnkit", c)) for c in cs]
        have = [(c, v) for c, v in vals if v]
        if not have:
            rows.append((goal, why_none(report, cs), "n/a"))
            return
        cmax, vmax = max(have, key=lambda q: q[1])
        partial = f"; partial: {len(have)}/{len(vals)}" if len(have) < len(vals) else ""
        rows.append(
            (
                goal,
                f"max {vmax * 1e6:.2f} µs ({cmax['cell']})" + partial,
                "met" if vmax * 1e6 <= limit_us else "NOT met",
            )
        )

    gen_goal(
        "generation step <= 3 µs at H=128 (every cell)",
        [c for c in configs if c["mode"] == "gen" and c["H"] == 128],
        3.0,
    )
    gen_goal(
        "generation step <= 20 µs for LSTM at H=512",
        [
            c
            for c in configs
            if c["mode"] == "gen" and c["H"] == 512 and c["cell"] == "lstm"
        ],
        20.0,
    )

    N = meta["threads"]
    goal = f"scaling: {N} threads >= 1.85x one thread on the three large shapes"
    sc = scaling_rows(report)
    have = [(c, s) for c, _, _, s in sc if s is not None]
    if N != 2:
        goal += f" (goal is stated for 2 threads; run has {N})"
    if not sc:
        rows.append((goal, "not run (needs --threads > 1 and a large shape)", "n/a"))
    elif not have:
        rows.append((goal, why_none(report, [c for c, *_ in sc]), "n/a"))
    else:
        cmin, smin = min(have, key=lambda q: q[1])
        partial = f"; partial: {len(have)}/{len(sc)}" if len(have) < len(sc) else ""
        rows.append(
            (
                goal,
                f"min {smin:.2f}x ({cmin['mode']} {cmin['cell']} "
                f"{shape_str(cmin)})" + partial,
                "met" if smin >= 1.85 else "NOT met",
            )
        )
    return rows


def why_none(report: dict, cs: list[Config], peer: str | None = None) -> str:
    """Why no configuration in ``cs`` has valid timings (for the goals table)."""
    parts = []
    for side in ["rnnkit"] + ([peer] if peer else []):
        st = [(entry(report, side, c) or {}).get("status", "not run") for c in cs]
        counts = {k: st.count(k) for k in dict.fromkeys(st)}
        parts.append(
            f"{side} "
            + ", ".join(
                f"{'WRONG' if k == 'wrong' else k} {n}/{len(cs)}"
                for k, n in counts.items()
            )
        )
    return "no valid timings: " + "; ".join(parts)


def render_goals(report: dict) -> str:
    rows = goals(report)
    s = '# rnnkit speed goals (issue "Speed")\n\n'
    s += (
        f"Command: `{report['meta']['command']}` — {report['meta']['date']}, "
        f"{report['meta']['threads']} threads, "
        f"CPU {report['meta']['cpu']['model']}.\n\n"
    )
    s += "Speedup = peer time / rnnkit time. A goal judged on a subset says so.\n\n"
    s += "| goal | measured | status |\n|---|---|---|\n"
    s += "\n".join(
        f"| {g} | {m} | {'**' + st + '**' if st == 'NOT met' else st} |"
        for g, m, st in rows
    )
    met = sum(st == "met" for _, _, st in rows)
    judged = sum(st != "n/a" for _, _, st in rows)
    return s + f"\n\n{met} of {judged} judged goals met ({len(rows) - judged} n/a).\n"


# ----------------------------------------------------------------------- chart
def plot_chart(report: dict, path: Path) -> str | None:
    """Bar chart: GFLOP/s per side (inference, training), µs per generation step."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed (pip install matplotlib): no chart"
    configs = report["configs"]
    sides = [s for s in SIDES if s in report["table"]]
    colors = {
        "rnnkit": "#d62728",
        "numpy": "#1f77b4",
        "numpy-skx": "#17becf",
        "torch": "#ff7f0e",
    }
    panels = [
        m for m in ("infer", "train", "gen") if any(c["mode"] == m for c in configs)
    ]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(13, 4.2 * len(panels)), squeeze=False
    )
    peak = report["meta"].get("peak_gflops")
    for ax, mode in zip(axes[:, 0], panels):
        cs = [c for c in configs if c["mode"] == mode]
        w = 0.8 / max(len(sides), 1)
        for j, s in enumerate(sides):
            vals = []
            for c in cs:
                m = med(report, s, c)
                vals.append(
                    (m * 1e6 if mode == "gen" else flops(c) / m / 1e9) if m else 0
                )
            ax.bar(
                [i + (j - (len(sides) - 1) / 2) * w for i in range(len(cs))],
                vals,
                w,
                label=SIDE_LABEL[s],
                color=colors[s],
            )
        ax.set_xticks(range(len(cs)))
        ax.set_xticklabels([f"{c['cell']}\n{shape_str(c)}" for c in cs], fontsize=7)
        if mode == "gen":
            ax.set_ylabel("µs per step (lower is better)")
            ax.set_yscale("log")
            ax.set_title("Generation latency (B=1, T=1, I=H)")
        else:
            ax.set_ylabel("GFLOP/s (higher is better)")
            ax.set_title("Inference" if mode == "infer" else "Training (fwd + bwd)")
            if peak:
                ax.axhline(
                    peak, ls="--", color="k", lw=1, label=f"peak {peak:.0f} GFLOP/s"
                )
        missing = [
            f"{SIDE_LABEL[s]}: {st}"
            for s in sides
            for st in dict.fromkeys(
                (entry(report, s, c) or {}).get("status", "not run") for c in cs
            )
            if st != "ok"
        ]
        if missing:
            ax.text(
                0.01,
                0.98,
                "no bar = " + "; ".join(missing),
                fontsize=7,
                transform=ax.transAxes,
                va="top",
            )
        ax.set_ylim(top=ax.get_ylim()[1] * (3 if mode == "gen" else 1.25))
        ax.legend(fontsize=8, ncols=5, loc="upper right")
    m = report["meta"]
    fig.suptitle(
        f"rnnkit {m.get('versions', {}).get('rnnkit', {}).get('rnnkit', '')} — "
        f"{m['cpu']['model']}, {m['threads']} threads",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write_outputs(report: dict, out_dir: Path, plot: bool = True) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = render_tables(report)
    goals_md = render_goals(report)
    note = None
    if plot:
        note = plot_chart(report, out_dir / "bench_rnn.png")
        if note is None:
            tables += "\n![chart](bench_rnn.png)\n"
        else:
            tables += f"\n({note})\n"
    (out_dir / "results.md").write_text(tables)
    (out_dir / "goals.md").write_text(goals_md)
    (out_dir / "results.json").write_text(json.dumps(report, indent=1, default=str))
    print(tables)
    print(goals_md)
    print(
        f"wrote {out_dir / 'results.md'}, goals.md, results.json"
        + (", bench_rnn.png" if plot and note is None else "")
    )


if __name__ == "__main__":
    sys.exit(main())
