"""Quick speed check behind ``rnnkit bench``: rnnkit vs its NumPy reference and torch.

A small, in-process subset of ``benchmarks/bench_rnn.py`` (the full suite, which runs
every side in a fresh process and writes tables, goals and a chart). Here, per cell:
inference and training at one shape and a generation step, every side checked against
``rnnkit.reference`` in float64 before it is timed, median of repeated samples after a
warm-up, all sides on the same thread count.

Example
-------
>>> from rnnkit.bench import main
>>> main(["--cells", "lstm", "--threads", "1"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import time
from typing import Any, Callable

import numpy as np

from . import _cells, _sysinfo

_TOL = 1e-3  # normwise relative error against the float64 reference


def _shape(s: str) -> tuple[int, int, int, int]:
    parts = s.lower().split("x")
    if len(parts) != 4 or not all(q.isdigit() for q in parts):
        raise argparse.ArgumentTypeError(f"shape must be TxBxIxH, got {s!r}")
    T, B, I, H = (int(q) for q in parts)
    return T, B, I, H


def _fmt_time(t: float | None, unit: float, us: str) -> str:
    return f"{f'{t * unit:.4g} {us}' if t else '—':>13}"


def _median_seconds(fn: Callable[[], Any], repeat: int, min_sample_s: float) -> float:
    """Median seconds per call over ``repeat`` samples after one warm-up call."""
    t = time.perf_counter()
    fn()
    number = max(1, int(min_sample_s / max(time.perf_counter() - t, 1e-7)))
    samples = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            t = time.perf_counter()
            for _ in range(number):
                fn()
            samples.append((time.perf_counter() - t) / number)
    finally:
        if gc_was:
            gc.enable()
    return float(np.median(samples))


def _problem(
    cell: str, T: int, B: int, I: int, H: int, seed: int = 0
) -> dict[str, Any]:
    G, k = _cells.get(cell).gates, 1.0 / math.sqrt(H)
    rng = np.random.default_rng(seed)

    def u(shape: tuple[int, ...], a: float) -> np.ndarray:
        return rng.uniform(-a, a, size=shape).astype(np.float32)

    return {
        "weights": {
            "weight_ih_l0": u((G * H, I), k),
            "weight_hh_l0": u((G * H, H), k),
            "bias_ih_l0": u((G * H,), k),
            "bias_hh_l0": u((G * H,), k),
        },
        "x": u((T, B, I), 1.0),
        "h0": u((1, B, H), 0.5),
        "c0": u((1, B, H), 0.5),
        "dy": u((T, B, H), 1.0),
        "dhn": u((1, B, H), 1.0),
        "dcn": u((1, B, H), 1.0),
    }


class _Side:
    """Runs one cell on rnnkit, the NumPy reference (same API) or torch."""

    def __init__(
        self,
        kind: str,
        module: Any,
        cell: str,
        I: int,
        H: int,
        weights: dict[str, np.ndarray],
        dtype: str = "float32",
    ) -> None:
        self.kind, self.lstm = kind, _cells.get(cell).has_cell_state
        self.np_dtype = np.dtype(dtype)
        if kind == "torch":
            self.torch = module
            self.mod = getattr(module.nn, _cells.get(cell).class_name)(I, H)
            self.mod.load_state_dict(
                {k: module.from_numpy(v.copy()) for k, v in weights.items()}
            )
        else:
            cls = getattr(module, _cells.get(cell).class_name)
            self.layer = cls(I, H, dtype=dtype, seed=0)
            self.layer.load_state_dict(weights)

    def _arr(self, a: np.ndarray, grad: bool = False) -> Any:
        if self.kind == "torch":
            t = self.torch.from_numpy(a)
            return t.requires_grad_() if grad else t
        return a.astype(self.np_dtype)

    def _st(self, h: Any, c: Any) -> Any:
        return (h, c) if self.lstm else h

    def call(self, mode: str, p: dict[str, Any]) -> tuple[Callable[[], Any], Callable]:
        """(timed call, collect) where collect() returns the checked arrays."""
        x, h0, c0 = (self._arr(p[k], mode == "train") for k in ("x", "h0", "c0"))
        s0 = self._st(h0, c0)
        last: dict[str, Any] = {}
        if mode == "gen":
            last.update(y=x, s=s0)
        if self.kind == "torch":
            torch, mod = self.torch, self.mod
            if mode == "train":
                ins = [x, h0] + ([c0] if self.lstm else []) + list(mod.parameters())
                douts = [torch.from_numpy(p[k]) for k in ("dy", "dhn", "dcn")]
                douts = douts if self.lstm else douts[:2]
                names = [n for n, _ in mod.named_parameters()]
                i_w = 2 + self.lstm + names.index("weight_hh_l0")

                def fn() -> None:
                    y, s = mod(x, s0)
                    g = torch.autograd.grad(
                        [y, *s] if self.lstm else [y, s], ins, douts
                    )
                    last.update(y=y, s=s, dx=g[0], dW=g[i_w])

            elif mode == "infer":

                def fn() -> None:
                    with torch.inference_mode():
                        last["y"], last["s"] = mod(x, s0)

            else:

                def fn() -> None:
                    with torch.inference_mode():
                        last["y"], last["s"] = mod(last["y"], last["s"])

        else:
            L = self.layer
            if mode == "train":
                dy = self._arr(p["dy"])
                ds = self._st(self._arr(p["dhn"]), self._arr(p["dcn"]))

                def fn() -> None:
                    last["y"], last["s"] = L.forward(x, s0, train=True)
                    last["dx"], _ = L.backward(dy, ds)
                    last["dW"] = L.grads["weight_hh_l0"]

            elif mode == "infer":

                def fn() -> None:
                    last["y"], last["s"] = L.forward(x, s0, train=False)

            else:  # generation: the stepper keeps the state, output fed back
                st = L.stepper(batch_size=1, hx=s0)
                last["x"], last["st"] = x[0], st

                def fn() -> None:
                    last["x"] = st.step(last["x"])

        def collect() -> dict[str, np.ndarray]:
            if "st" in last:  # generation with the stepper
                h, c = last["st"].get_state()
                last["y"], last["s"] = last["x"][None], ((h, c) if self.lstm else h)
            out = {"y": last["y"], "h_n": last["s"][0] if self.lstm else last["s"]}
            if mode == "train":
                out.update(dx=last["dx"], dweight_hh_l0=last["dW"])
            return {
                k: v.detach().numpy() if hasattr(v, "detach") else np.array(v)
                for k, v in out.items()
            }

        return fn, collect

    def checked(self, mode: str, p: dict[str, Any]) -> tuple[Callable[[], Any], dict]:
        """Runs once (8 steps for generation) and returns (timed call, answers)."""
        if self.kind != "torch":
            self.layer.zero_grad()
        fn, collect = self.call(mode, p)
        for _ in range(8 if mode == "gen" else 1):
            fn()
        return fn, collect()


def main(argv: list[str] | None = None) -> int:
    """``rnnkit bench``: prints a small table of times, GFLOP/s and speedups."""
    import rnnkit as rk
    from rnnkit import reference

    ap = argparse.ArgumentParser(
        prog="rnnkit bench",
        description="Quick speed check of rnnkit against rnnkit.reference (NumPy) and "
        "torch. The full suite: python benchmarks/bench_rnn.py --out DIR",
    )
    ap.add_argument("--cells", default="rnn,lstm,gru", help="comma-separated subset")
    ap.add_argument(
        "--shape",
        type=_shape,
        default=(100, 32, 128, 256),
        metavar="TxBxIxH",
        help="shape of inference and training",
    )
    ap.add_argument("--gen-size", type=int, default=128, help="H (= I) of generation")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for every side (default: rnnkit's current count)",
    )
    ap.add_argument("--repeat", type=int, default=5, help="samples per measurement")
    ap.add_argument(
        "--no-torch", action="store_true", help="skip torch even if installed"
    )
    args = ap.parse_args(argv)
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    bad = [c for c in cells if c not in _cells.CELLS]
    if bad:
        ap.error(f"--cells must be among {','.join(_cells.CELLS)}, got {bad}")

    threads = args.threads or rk.get_num_threads()
    rk.set_num_threads(threads)
    _sysinfo.set_openblas_threads(threads)
    torch: Any = None
    if not args.no_torch:
        try:
            import torch as _torch

            _torch.set_num_threads(threads)
            torch = _torch
        except ImportError:
            torch = None

    print(_sysinfo.summary_line(threads, torch_note="not installed"))
    peers = ["numpy"] + (["torch"] if torch else [])
    head = f"{'mode':<6}{'cell':<6}{'shape':<16}{'rnnkit':>13}{'GFLOP/s':>9}" + "".join(
        f"{p:>13}{'x' + p:>9}" for p in peers
    )
    print(head)
    print("-" * len(head))
    T, B, I, H = args.shape
    failed = False
    for mode in ("infer", "train", "gen"):
        for cell in cells:
            t_, b_, i_, h_ = (
                (1, 1, args.gen_size, args.gen_size) if mode == "gen" else (T, B, I, H)
            )
            p = _problem(cell, t_, b_, i_, h_)
            ref = _Side("numpy", reference, cell, i_, h_, p["weights"], "float64")
            _, want = ref.checked(mode, p)
            sides = {
                "rnnkit": _Side("rnnkit", rk, cell, i_, h_, p["weights"]),
                "numpy": _Side("numpy", reference, cell, i_, h_, p["weights"]),
            }
            if torch:
                sides["torch"] = _Side("torch", torch, cell, i_, h_, p["weights"])
            times: dict[str, float | None] = {}
            for name, side in sides.items():
                fn, got = side.checked(mode, p)
                errs = [
                    float(np.linalg.norm(np.asarray(got[k], np.float64) - want[k]))
                    / max(float(np.linalg.norm(want[k])), 1e-30)
                    for k in want
                ]
                if not max(errs) <= _TOL:
                    print(
                        f"  {name} {mode} {cell}: WRONG answer (max rel err "
                        f"{max(errs):.2g}); not timed"
                    )
                    times[name], failed = None, True
                    continue
                ctx = (
                    torch.inference_mode()
                    if name == "torch" and mode != "train"
                    else contextlib.nullcontext()
                )
                with ctx:
                    times[name] = _median_seconds(
                        fn, args.repeat, 0.05 if mode == "gen" else 0.01
                    )
            fl = (
                2.0
                * t_
                * b_
                * _cells.get(cell).gates
                * h_
                * (i_ + h_)
                * (3 if mode == "train" else 1)
            )
            unit, us = (1e6, "µs") if mode == "gen" else (1e3, "ms")
            rt = times["rnnkit"]

            line = f"{mode:<6}{cell:<6}{f'{t_}x{b_}x{i_}x{h_}':<16}"
            line += _fmt_time(rt, unit, us)
            line += f"{fl / rt / 1e9:>9.1f}" if rt else f"{'—':>9}"
            for name in peers:
                tp = times.get(name)
                line += _fmt_time(tp, unit, us)
                line += f"{f'{tp / rt:.2f}x' if tp and rt else '—':>9}"
            print(line)
    print(
        "x<peer> = peer time / rnnkit time (> 1: rnnkit is faster). Medians of "
        f"{args.repeat} samples; the full suite: python benchmarks/bench_rnn.py"
    )
    return 1 if failed else 0
