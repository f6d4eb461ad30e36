#!/usr/bin/env python3
"""Runs the installed rnnkit on emulated CPUs without AVX-512, and without AVX at all.

    python tools/cpu_probe.py --qemu [--python PYTHON]     # the CPU matrix (qemu-user)
    python tools/cpu_probe.py --expect generic              # the probe itself

``--qemu`` starts the probe under ``qemu-x86_64 -cpu MODEL`` (Debian's ``qemu-user``)
for each model below, with PYTHON (default: this interpreter) and whatever rnnkit it
imports. QEMU's emulated CPU reports only the model's features, and QEMU raises
SIGILL on any instruction the model lacks (AVX on Nehalem; AVX-512 on Haswell, which
QEMU 7 cannot emulate at all), so a run proves that the dispatcher picks the right
path and that nothing on that path, in the dispatcher or in the bindings uses more.

    Nehalem  (SSE4.2, no AVX)        expects paths ['generic']
    Haswell  (AVX2 + FMA, no AVX-512) expects paths ['avx2', 'generic']

The probe checks ``rnnkit.simd_paths()``, then runs forward + backward of each cell
(float32 and float64, 1 and 2 threads, bidirectional, variable lengths) on every
path it has against the NumPy reference. Exit status 0 when every model passes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

MODELS = {"Nehalem": ["generic"], "Haswell": ["avx2", "generic"]}


def probe(expect: list[str]) -> int:
    import numpy as np

    import rnnkit as rk
    import rnnkit.reference as ref

    paths = rk.simd_paths()
    print(f"  simd_paths {paths} (expected {expect})")
    if paths != expect:
        return 1
    rng = np.random.default_rng(0)
    worst = 0.0
    for simd in paths:
        rk.set_simd(simd)
        for threads in (1, 2):
            rk.set_num_threads(threads)
            for cell in ("RNN", "LSTM", "GRU"):
                for dtype in ("float32", "float64"):
                    kw = {
                        "num_layers": 2,
                        "bidirectional": True,
                        "seed": 1,
                        "dtype": dtype,
                    }
                    m = getattr(rk, cell)(6, 19, **kw)
                    r = getattr(ref, cell)(6, 19, **kw)
                    r.load_state_dict(m.state_dict())
                    x = rng.standard_normal((5, 4, 6)).astype(dtype)
                    lengths = [5, 2, 4, 1]
                    dy = rng.standard_normal((5, 4, 38)).astype(dtype)
                    y, _ = m.forward(x, lengths=lengths)
                    dx, _ = m.backward(dy)
                    ry, _ = r.forward(x, lengths=lengths)
                    rdx, _ = r.backward(dy)
                    err = max(
                        float(np.abs(y - ry).max()),
                        float(np.abs(dx - rdx).max()),
                        *(
                            float(np.abs(m.grads[k] - r.grads[k]).max())
                            for k in m.grads
                        ),
                    )
                    tol = 1e-3 if dtype == "float32" else 1e-9
                    worst = max(worst, err / tol)
                    if not err <= tol:
                        print(f"  {simd} {threads}t {cell} {dtype}: error {err:.3g}")
                        return 1
    print(
        f"  every path, cell, dtype, thread count matches the reference "
        f"(worst error {worst:.2g} x tolerance)"
    )
    return 0


def matrix(python: str) -> int:
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        print("cpu_probe: qemu-x86_64 not found (apt-get install qemu-user)")
        return 2
    env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="1")
    env.pop("RNNKIT_SIMD", None)
    failed = []
    for model, expect in MODELS.items():
        print(f"cpu_probe: {model}")
        t = time.perf_counter()
        r = subprocess.run(
            [
                qemu,
                "-cpu",
                model,
                python,
                os.path.abspath(__file__),
                "--expect",
                ",".join(expect),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        out = r.stdout + "\n".join(
            line
            for line in r.stderr.splitlines()
            if "TCG doesn't support requested feature" not in line
        )
        print(out.rstrip())
        print(f"  exit {r.returncode} in {time.perf_counter() - t:.1f} s")
        if r.returncode != 0:
            failed.append(model)
    print("cpu_probe: " + (f"FAILED on {failed}" if failed else "OK on every model"))
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--qemu", action="store_true", help="run the CPU matrix")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--expect", help="comma-separated simd_paths() to expect")
    args = ap.parse_args()
    if args.qemu:
        return matrix(args.python)
    return probe(args.expect.split(",") if args.expect else [])


if __name__ == "__main__":
    sys.exit(main())
