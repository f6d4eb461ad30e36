"""Where a kernel call spends its time, by part, from a ``perf record`` profile.

For each configuration (cell, T x B x I x H, mode) a fresh process runs the layer
``--iters`` times under ``perf record`` (Linux perf, CPU-clock samples of all
threads), and the samples are grouped into: the forward and backward time loops,
the GEMMs (input projection, dx, weight gradients: ``gemm_panels`` and its
micro-kernel, which has no symbol in the stripped module), the kernel (scheduler,
``sched_yield``: threads waiting at a barrier past their spin), NumPy's BLAS
threads, Python and the rest. Shares are of all samples of the run, so they add
to 100 % of the CPU time of every thread.

    python benchmarks/perf_split.py --threads 2                       # the grid shapes
    python benchmarks/perf_split.py --cells lstm --shapes 100x32x64x256 --modes train

Needs ``perf`` on PATH (and permission to profile); prints one table.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

SHAPES = ("100x32x128x256", "50x64x512x512", "35x128x1024x1024", "1000x1x64x128",
          "200x16x64x64")  # fmt: skip
PARTS = ("loop fwd", "loop bwd", "GEMM", "waiting", "BLAS thr", "python", "other")

_CHILD = """
import sys, numpy as np, rnnkit as rk
cell, mode, T, B, I, H, th, n = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:9])
rk.set_num_threads(th)
layer = getattr(rk, cell.upper())(I, H, seed=0)
x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
for _ in range(n):
    if mode == "train":
        y, _ = layer.forward(x)
        layer.backward(np.ones_like(y))
    else:
        layer.forward(x, train=False)
"""


def _part(dso: str, sym: str) -> str:
    if "time_loop_forward" in sym or "time_loop_direct" in sym:
        return "loop fwd"
    if "time_loop_backward" in sym:
        return "loop bwd"
    if "_core" in dso and ("gemm" in sym or sym.startswith("0x")):
        return "GEMM"
    if dso.startswith("[kernel"):
        return "waiting"
    if "blas" in sym.lower() or "openblas" in dso:
        return "BLAS thr"
    if "python" in dso:
        return "python"
    return "other"


def profile(cell: str, shape: str, mode: str, threads: int, iters: int) -> dict:
    T, B, I, H = (int(v) for v in shape.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "perf.data"
        script = Path(tmp) / "child.py"
        script.write_text(_CHILD)
        cmd = [sys.executable, str(script), cell, mode, str(T), str(B), str(I), str(H)]
        cmd += [str(threads), str(iters)]
        subprocess.run(
            ["perf", "record", "-q", "-o", str(data), "--", *cmd],
            check=True,
            capture_output=True,
        )
        rep = subprocess.run(
            [
                "perf",
                "report",
                "-i",
                str(data),
                "--no-children",
                "--sort",
                "dso,symbol",
                "-q",
                "-g",
                "none",
            ],  # fmt: skip
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    shares = dict.fromkeys(PARTS, 0.0)
    for line in rep.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*?)\s*$", line)
        if m:
            shares[_part(m.group(2), m.group(3))] += float(m.group(1))
    return shares


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="lstm,gru,rnn")
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES))
    ap.add_argument("--modes", default="train,infer")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--iters", type=int, default=0, help="default: by size")
    args = ap.parse_args(argv)
    print(f"| cell | T×B×I×H | mode | {' | '.join(PARTS)} |")
    print("|---|---|---|" + "---|" * len(PARTS))
    for mode in args.modes.split(","):
        for cell in args.cells.split(","):
            for shape in args.shapes:
                T, B, I, H = (int(v) for v in shape.split("x"))
                G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
                flops = 2 * T * B * G * H * (I + H) * (3 if mode == "train" else 1)
                iters = args.iters or max(5, int(6e11 / flops))  # a few seconds
                s = profile(cell, shape, mode, args.threads, iters)
                cols = " | ".join(f"{s[p]:.0f} %" for p in PARTS)
                print(f"| {cell} | {shape} | {mode} | {cols} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
