"""The ``rnnkit`` command: ``rnnkit demo``, ``rnnkit config``, ``rnnkit bench``."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

import numpy as np


def _best_time(fn, repeat: int = 5) -> float:
    fn()  # warm-up: first touch of workspaces, weight packing
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def demo(args: argparse.Namespace) -> int:
    """Forward + backward of an LSTM on the kernels and on the NumPy reference."""
    import rnnkit as rk
    from rnnkit import reference

    rk.show_config()
    T, B, I, H = args.T, args.B, args.I, args.H
    print(f"\nLSTM(input_size={I}, hidden_size={H}), x of shape (T={T}, B={B}, I={I}), "
          "float32")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    fast = rk.LSTM(I, H, seed=0)
    slow = reference.LSTM(I, H, seed=0)

    def step(layer):
        def run():
            layer.zero_grad()
            y, _ = layer.forward(x)
            layer.backward(dy)
            return y
        return run

    y_fast, y_slow = step(fast)(), step(slow)()
    dw = max(float(np.max(np.abs(fast.grads[k] - slow.grads[k]))) for k in fast.grads)
    print(f"max |y_kernel - y_numpy|      = {float(np.max(np.abs(y_fast - y_slow))):.2e}")
    print(f"max |dW_kernel - dW_numpy|    = {dw:.2e}")
    t_fast, t_slow = _best_time(step(fast)), _best_time(step(slow), repeat=2)
    flops = 3 * 2 * T * B * 4 * H * (I + H)
    print(f"training step (forward + backward): rnnkit {t_fast * 1e3:.1f} ms "
          f"({flops / t_fast / 1e9:.0f} GFLOP/s), NumPy reference {t_slow * 1e3:.1f} ms "
          f"({flops / t_slow / 1e9:.0f} GFLOP/s): {t_slow / t_fast:.1f}x")
    return 0


def config(args: argparse.Namespace) -> int:
    import rnnkit as rk

    rk.show_config()
    return 0


def bench(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from rnnkit import bench as bench_mod

    return int(bench_mod.main(list(rest)) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rnnkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="forward/backward of an LSTM vs the NumPy reference")
    p.add_argument("--T", type=int, default=50)
    p.add_argument("--B", type=int, default=64)
    p.add_argument("--I", type=int, default=256)
    p.add_argument("--H", type=int, default=256)
    sub.add_parser("config", help="print version, SIMD path, threads and build flags")
    sub.add_parser("bench", help="a quick benchmark (rnnkit bench --help)", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        return bench(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return {"demo": demo, "config": config}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
