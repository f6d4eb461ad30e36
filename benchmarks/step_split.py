"""Where a char-LM training step spends its time: recurrent kernels vs the rest.

Embedding 64 -> LSTM 256 -> Linear -> cross-entropy, Adam, clip 5; B=32, T=100,
V=65, float32, written with rnnkit's public API the way ``fit`` runs it. Prints
wall and process-CPU milliseconds per step for the whole step and for each part
(best of ``--steps`` after one warm-up step).

    python benchmarks/step_split.py --threads 2 --steps 20
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import rnnkit as rk


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--cell", default="LSTM")
    args = ap.parse_args()
    rk.set_num_threads(args.threads)
    B, T, V, E, H = 32, 100, 65, 64, 256
    rng = np.random.default_rng(0)
    emb = rk.Embedding(V, E, seed=1)
    rnn = getattr(rk, args.cell)(E, H, batch_first=True, seed=2)
    fc = rk.Linear(H, V, seed=3)
    model = rk.Sequential(emb, rnn, fc)
    opt = rk.Adam(model, lr=2e-3)
    x = rng.integers(0, V, (B, T))
    y = rng.integers(0, V, (B, T))
    parts = ["embedding", "recurrent", "linear", "loss", "clip+optim"]
    best = {p: float("inf") for p in parts + ["step"]}
    cpu = {p: float("inf") for p in parts + ["step"]}
    for it in range(args.steps + 1):
        w: dict[str, float] = {}
        c: dict[str, float] = {}

        def tick(name, fn, *a, w=w, c=c):
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn(*a)
            w[name] = w.get(name, 0.0) + time.perf_counter() - t0
            c[name] = c.get(name, 0.0) + time.process_time() - c0
            return out

        model.zero_grad()
        e = tick("embedding", emb.forward, x)
        h = tick("recurrent", lambda v: rnn.forward(v)[0], e)
        z = tick("linear", fc.forward, h)
        loss, dz = tick("loss", rk.losses.cross_entropy, z, y)
        dh = tick("linear", fc.backward, dz)
        de = tick("recurrent", lambda d: rnn.backward(d)[0], dh)
        tick("embedding", emb.backward, de)
        tick("clip+optim", lambda: (rk.clip_grad_norm(model, 5.0), opt.step()))
        if it == 0:
            continue
        for p in parts:
            best[p] = min(best[p], w[p])
            cpu[p] = min(cpu[p], c[p])
        best["step"] = min(best["step"], sum(w.values()))
        cpu["step"] = min(cpu["step"], sum(c.values()))
    print(
        f"{args.cell} B={B} T={T} H={H} V={V} threads={args.threads} "
        f"simd={rk.get_simd()}  (best of {args.steps}, ms: wall / cpu)"
    )
    for p in parts + ["step"]:
        print(f"  {p:12s} {1e3 * best[p]:8.2f} / {1e3 * cpu[p]:8.2f}")
    print(f"  chars/s      {B * T / best['step']:.0f}")


if __name__ == "__main__":
    main()
