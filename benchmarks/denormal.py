"""Denormal-heavy inputs: the kernels run at normal speed; the caller's FP state is
kept.

    python benchmarks/denormal.py                  # LSTM and GRU, float32, 1 thread
    python benchmarks/denormal.py --cells lstm --threads 2 --out denormal.json

Times a training step (forward + backward) and an inference forward of a layer with
zero biases on three inputs that differ only in scale:

- ``normal``: x and h0 ~ N(0, 1);
- ``underflow``: scaled by 1e-37 (float32) / 1e-305 (float64): the products with the
  weights fall into the subnormal range;
- ``denormal``: scaled so every input value is itself subnormal.

With zero biases the gates' pre-activations stay as small as the inputs, so in the
last two the cell state, the hidden state and the recurrent products are subnormal at
every step.

CPUs take a microcode assist (tens to a hundred cycles) for a subnormal operand or
result unless flush-to-zero (FTZ) and denormals-are-zero (DAZ) are set. The kernels
set both in their own threads for the length of a call and restore the caller's
MXCSR after (tests/test_properties.py checks the caller's side), so rnnkit's times
should be within noise of ``normal``. The NumPy reference (``rnnkit.reference``),
which runs without FTZ, is timed on the same inputs for contrast (``--no-reference``
skips it). Medians of ``--repeat`` runs, after one warm-up; threads fixed for both
sides (``--threads`` for rnnkit, OPENBLAS_NUM_THREADS=1). Timing is reported, never
asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

SCALES = {
    np.dtype(np.float32): {"normal": 1.0, "underflow": 1e-37, "denormal": 1e-40},
    np.dtype(np.float64): {"normal": 1.0, "underflow": 1e-305, "denormal": 1e-310},
}


def fp_state_ok() -> bool:
    """Denormal arithmetic in this (the calling) thread still gives denormals."""
    f32 = np.float32
    return bool(f32(1e-30) * f32(1e-10) != 0 and f32(1e-40) * f32(1e10) != 0)


def median_time(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def bench(
    cell: str, dtype: str, T: int, B: int, I: int, H: int, repeat: int, reference: bool
) -> list[dict]:
    import rnnkit as rk
    import rnnkit.reference as ref

    dt = np.dtype(dtype)
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((T, B, I)).astype(dt)
    h00 = rng.standard_normal((1, B, H)).astype(dt)
    dy = rng.standard_normal((T, B, H)).astype(dt)
    # Zero biases: with tiny inputs and states the gates' pre-activations stay tiny,
    # so c, h and every product of the recurrence stay in the subnormal range at
    # every step, not just the first.
    kern = getattr(rk, cell.upper())(I, H, seed=0, dtype=dtype)
    kern.load_state_dict(
        {
            k: (np.zeros_like(v) if k.startswith("bias") else v)
            for k, v in kern.state_dict().items()
        }
    )
    sides = {"rnnkit": kern}
    if reference:
        r = getattr(ref, cell.upper())(I, H, seed=0, dtype=dtype)
        r.load_state_dict(sides["rnnkit"].state_dict())
        sides["numpy reference"] = r
    rows = []
    for side, layer in sides.items():
        for kind, s in SCALES[dt].items():
            x = (x0 * dt.type(s)).astype(dt)
            h0 = (h00 * dt.type(s)).astype(dt)
            hx = (h0, h0.copy()) if cell == "lstm" else h0
            if kind == "denormal":
                assert np.all(np.abs(x[x != 0]) < np.finfo(dt).tiny)

            def train(layer=layer, x=x, hx=hx):
                layer.zero_grad()
                layer.forward(x, hx)
                layer.backward(dy)

            def infer(layer=layer, x=x, hx=hx):
                layer.forward(x, hx, train=False)

            rows.append(
                {
                    "side": side,
                    "cell": cell,
                    "dtype": dtype,
                    "input": kind,
                    "train_ms": median_time(train, repeat) * 1e3,
                    "infer_ms": median_time(infer, repeat) * 1e3,
                }
            )
            if not fp_state_ok():
                raise SystemExit(f"{side} {kind}: the caller's FP state changed")
    for r in rows:
        base = next(
            b for b in rows if b["side"] == r["side"] and b["input"] == "normal"
        )
        r["train_x"] = r["train_ms"] / base["train_ms"]
        r["infer_x"] = r["infer_ms"] / base["infer_ms"]
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", default="lstm,gru")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--shape", default="50x16x64x128", help="TxBxIxH")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    T, B, I, H = (int(v) for v in args.shape.split("x"))

    import rnnkit as rk
    from rnnkit import _sysinfo

    rk.set_num_threads(args.threads)
    _sysinfo.set_openblas_threads(1)
    print(
        f"denormal: rnnkit {rk.__version__}, simd {rk.get_simd()}, threads "
        f"{rk.get_num_threads()}, {args.dtype}, T×B×I×H = {args.shape}, median of "
        f"{args.repeat}; caller FP state ok before: {fp_state_ok()}"
    )
    rows = []
    for cell in args.cells.split(","):
        rows += bench(cell, args.dtype, T, B, I, H, args.repeat, not args.no_reference)
    print(
        f"\n{'side':16s} {'cell':4s} {'input':9s} {'train ms':>9s} {'× normal':>8s} "
        f"{'infer ms':>9s} {'× normal':>8s}"
    )
    for r in rows:
        print(
            f"{r['side']:16s} {r['cell']:4s} {r['input']:9s} {r['train_ms']:9.2f} "
            f"{r['train_x']:8.2f} {r['infer_ms']:9.2f} {r['infer_x']:8.2f}"
        )
    print(f"\ncaller FP state ok after: {fp_state_ok()}")
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
                    "rows": rows,
                },
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
