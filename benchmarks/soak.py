"""Soak: many forward/backward calls of a small layer keep resident memory flat.

    python benchmarks/soak.py                      # 10,000 calls per cell, all cells
    python benchmarks/soak.py --cells lstm --calls 100000 --out soak.json

Each call is a training forward + backward + zero_grad on a small layer (2 layers,
bidirectional, H=48), with the sequence length, batch size and per-row lengths drawn at
random every call, so the workspaces and the per-thread scratch grow, shrink and are
reused; every 10th call is an inference forward, every 100th makes a single-step
generator and steps it 5 times; the first calls use the largest shapes. Resident memory
(``/proc/self/statm``) is sampled every ``--every`` calls after a warm-up (the first
``--warmup`` calls: buffers reach their largest size and the allocator settles). RSS
moves between a few levels as buffers are freed and made again, so "growth" is the peak
RSS of the second half of the samples minus that of the first half; a leak of 100 bytes
a call adds ~0.5 MB to it over 10,000 calls. Verdict: growth under ``--tolerance-mb``
(default 1 MB), else exit status 1.

Threads are fixed (``--threads``, default 1) for the kernels and 1 for OpenBLAS.
Prints one line per sample and a summary, and writes JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def soak(cell: str, calls: int, every: int, warmup: int, seed: int) -> dict:
    import rnnkit as rk

    cls = {"rnn": rk.RNN, "lstm": rk.LSTM, "gru": rk.GRU}[cell]
    I, H = 24, 48
    layer = cls(I, H, num_layers=2, bidirectional=True, seed=seed)
    uni = cls(I, H, num_layers=2, seed=seed + 1)
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((32, 16, I)).astype(np.float32)
    dys = rng.standard_normal((32, 16, 2 * H)).astype(np.float32)
    samples: list[tuple[int, float]] = []
    base = None
    t0 = time.perf_counter()
    for i in range(1, calls + 1):
        if i <= 3:  # the largest shapes first: buffers reach their final size
            T, B = 32, 16
        else:
            T, B = int(rng.integers(1, 33)), int(rng.integers(1, 17))
        lengths = rng.integers(1, T + 1, size=B) if i % 3 == 0 else None
        x = xs[:T, :B]
        if i % 10 == 0:
            layer.forward(x, lengths=lengths, train=False)
        else:
            layer.zero_grad()
            layer.forward(x, lengths=lengths)
            layer.backward(dys[:T, :B])
        if i % 100 == 0 or i == 1:
            st = uni.stepper(batch_size=B)
            for t in range(5):
                st.step(xs[t % 32, :B])
        if i == warmup:
            base = rss_mb()
            samples.append((i, base))
        elif i > warmup and i % every == 0:
            samples.append((i, rss_mb()))
            print(f"  {cell:4s} call {i:7d}: RSS {samples[-1][1]:8.2f} MB", flush=True)
    seconds = time.perf_counter() - t0
    if base is None:
        raise SystemExit("--calls must exceed --warmup")
    end = samples[-1][1]
    peak = max(r for _, r in samples)
    # RSS moves between a few levels as buffers are freed and made again; a leak
    # raises the level itself, so compare the peaks of the two halves.
    half = len(samples) // 2
    growth = max(r for _, r in samples[half:]) - max(r for _, r in samples[:half])
    # least-squares slope over the post-warm-up samples, MB per 1000 calls
    n = np.array([s[0] for s in samples], dtype=float)
    r = np.array([s[1] for s in samples])
    slope = float(np.polyfit(n, r, 1)[0] * 1000) if len(samples) > 2 else 0.0
    return {
        "cell": cell,
        "calls": calls,
        "seconds": round(seconds, 2),
        "us_per_call": round(seconds / calls * 1e6, 1),
        "rss_after_warmup_mb": round(base, 2),
        "rss_end_mb": round(end, 2),
        "rss_peak_mb": round(peak, 2),
        "growth_mb": round(growth, 2),
        "end_minus_warm_mb": round(end - base, 2),
        "slope_mb_per_1000_calls": round(slope, 4),
        "samples": samples,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", default="rnn,lstm,gru")
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tolerance-mb", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()

    import rnnkit as rk
    from rnnkit import _sysinfo

    rk.set_num_threads(args.threads)
    _sysinfo.set_openblas_threads(1)
    start = rss_mb()
    print(
        f"soak: rnnkit {rk.__version__}, simd {rk.get_simd()}, threads "
        f"{rk.get_num_threads()}, {args.calls} calls per cell; RSS at start "
        f"{start:.2f} MB"
    )
    results = [
        soak(c, args.calls, args.every, args.warmup, args.seed)
        for c in args.cells.split(",")
    ]
    ok = True
    print(
        f"\n{'cell':5s} {'calls':>7s} {'us/call':>8s} {'RSS warm':>9s} "
        f"{'RSS end':>8s} {'growth':>7s} {'MB/1k calls':>11s}"
    )
    for r in results:
        bad = r["growth_mb"] > args.tolerance_mb
        ok &= not bad
        print(
            f"{r['cell']:5s} {r['calls']:7d} {r['us_per_call']:8.1f} "
            f"{r['rss_after_warmup_mb']:9.2f} {r['rss_end_mb']:8.2f} "
            f"{r['growth_mb']:+7.2f} {r['slope_mb_per_1000_calls']:+11.4f}"
            + ("  LEAK?" if bad else "")
        )
    verdict = "flat" if ok else f"GREW by more than {args.tolerance_mb} MB"
    print(f"soak: RSS {verdict} (process start {start:.2f} MB, end {rss_mb():.2f} MB)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(
                {
                    "command": " ".join(sys.argv),
                    "rnnkit": rk.__version__,
                    "simd": rk.get_simd(),
                    "threads": rk.get_num_threads(),
                    "cpu": _sysinfo.cpu_model(),
                    "numpy": np.__version__,
                    "machine": _sysinfo.machine_info(),
                    "tolerance_mb": args.tolerance_mb,
                    "rss_process_start_mb": round(start, 2),
                    "ok": ok,
                    "results": results,
                },
                f,
                indent=1,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
