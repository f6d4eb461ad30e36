"""Data-parallel training over MPI: time per step split into compute and all-reduce.

One command (needs ``pip install 'rnnkit[mpi]'``)::

    python benchmarks/bench_mpi.py --out benchmarks/results/mpi

launches ``mpiexec -n 1`` and ``mpiexec -n 2`` (one thread per rank,
``OMP_NUM_THREADS=1``) on two models, float32:

- ``char``: the ``rnnkit train`` model (Embedding 65x64, LSTM 256, Linear 256x65),
  32 streams of 100 characters per rank, cross-entropy, Adam, clip 5;
- ``lstm2x512``: Sequential(LSTM(512, 512), LSTM(512, 512), Linear(512, 512)),
  T = 50, 32 rows per rank, MSE, Adam (two recurrent leaves: two overlap groups);

each with the non-blocking per-layer-group reduction (``overlap``) and one blocking
``Allreduce`` after the backward pass (``blocking``). Weak scaling: every rank keeps
its batch, so 2 ranks process twice the characters per step; ``--strong`` also
runs the global batch of one rank split over two. It reports the median step,
the compute and all-reduce parts, items/s, the speed-up of 2 ranks over 1 and the
gradient bytes per step, then a scaling model for 8-64 nodes (``scaling_model``).
Writes ``results.md`` and ``results.json`` to ``--out``. About a minute on an idle
machine; ``--steps 3 --warmup 1`` for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent

NETWORKS = {  # name: (bandwidth bytes/s per link, latency s per message)
    "10GbE": (1.25e9, 25e-6),
    "25GbE": (3.1e9, 15e-6),
    "IB-HDR100": (12.0e9, 2e-6),
}
NODES = (8, 16, 32, 64)


# --------------------------------------------------------------------- worker
def _build(name: str, rows: int, seed: int = 0) -> tuple[Any, Any, str, str]:
    import rnnkit as rk

    if name == "char":
        V, T = 65, 100
        model = rk.Sequential(
            rk.Embedding(V, 64, seed=seed),
            rk.LSTM(64, 256, seed=seed),
            rk.Linear(256, V, seed=seed),
        )
        ids = np.random.default_rng(seed).integers(0, V, rows * T * 8 + 1)
        source = rk.text.BPTTBatches(ids, rows, T)
        return model, source, "cross_entropy", "chars"
    if name == "lstm2x512":
        T, F = 50, 512
        model = rk.Sequential(
            rk.LSTM(F, 512, seed=seed),
            rk.LSTM(512, 512, seed=seed),
            rk.Linear(512, F, seed=seed),
        )
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((rows * 8, T, F)).astype(np.float32)
        y = rng.standard_normal((rows * 8, T, F)).astype(np.float32)
        batches = [
            rk.train.Batch((x[i : i + rows],), y[i : i + rows], items=rows * T)
            for i in range(0, len(x), rows)
        ]
        return model, _ListSource(batches), "mse", "timesteps"
    raise ValueError(f"unknown model {name!r}")


class _ListSource:
    unit = "timesteps"

    def __init__(self, batches: list[Any]) -> None:
        self._b = batches

    def __len__(self) -> int:
        return len(self._b)

    def batches(self, epoch: int, start: int = 0) -> Any:
        yield from self._b[start:]


def worker(args: argparse.Namespace) -> int:
    import rnnkit as rk
    from rnnkit import distributed as dist

    world = dist.init()
    rows = args.rows * world.size  # the global batch: --rows per rank
    model, source, loss, unit = _build(args.model, rows)
    opt = rk.Adam(model, lr=1e-3)
    fit = dist.DistributedFit(
        model, opt, source, rk.losses.get_loss(loss), overlap=args.overlap == "overlap"
    )
    times, state, n = [], None, 0
    comp0 = red0 = 0.0
    while n < args.warmup + args.steps:
        for b in fit.source.batches(0):
            if n == args.warmup:
                comp0, red0 = fit.compute_seconds, fit.reduce_seconds
            t0 = time.perf_counter()
            carry = state if b.carry is True else None
            _, _, items, dt = fit.step(
                b.xs, b.y, None, None, carry, 5.0, None, n, b.rows, b.items or b.rows
            )
            wall = time.perf_counter() - t0
            state = model.final_state
            if n >= args.warmup:
                times.append(max(wall, dt))
            n += 1
            if n >= args.warmup + args.steps:
                break
    steps = len(times)
    rec = {
        "model": args.model,
        "ranks": world.size,
        "mode": args.overlap,
        "rows_per_rank": fit.source.rows,
        "global_rows": rows,
        "unit": unit,
        "items_per_step": int(items),
        "step_s": statistics.median(times),
        "compute_s": (fit.compute_seconds - comp0) / steps,
        "allreduce_s": (fit.reduce_seconds - red0) / steps,
        "grad_bytes": fit.bytes_per_step,
        "parameters": int(model.num_parameters),
    }
    rec["items_per_s"] = rec["items_per_step"] / rec["step_s"]
    # the slowest rank's compute sets the pace
    comp = world.allreduce(np.array([rec["compute_s"]]), op="max")
    rec["compute_s_slowest"] = float(comp[0])
    if world.is_root:
        print(json.dumps(rec), flush=True)
    return 0


# ----------------------------------------------------------------- the model
def scaling_model(
    compute_s: float,
    rows: int,
    grad_bytes: int,
    bandwidth: float,
    latency: float,
    p: int,
) -> dict[str, float]:
    """Expected efficiency of p nodes with a ring all-reduce, no overlap.

    A ring all-reduce of S bytes over p nodes sends and receives
    ``2 (p - 1) / p * S`` bytes per node in ``2 (p - 1)`` messages:
    ``t_ar = 2 (p - 1) (S / (p B) + a)``. With the compute time per row ``c``
    (``compute_s / rows``, measured on one rank) and b rows per node, the
    efficiency is ``b c / (b c + t_ar)``; it stays above 90 % from
    ``b >= 9 t_ar / c`` rows per node. Overlap hides up to the backward time of
    the earlier layers on top of this (not counted: a lower bound).
    """
    t_ar = 2 * (p - 1) * (grad_bytes / (p * bandwidth) + latency)
    c = compute_s / rows
    eff = compute_s / (compute_s + t_ar)
    return {
        "allreduce_s": t_ar,
        "efficiency": eff,
        "rows_for_90": int(np.ceil(9 * t_ar / c)),
    }


# --------------------------------------------------------------------- driver
def _mpiexec() -> str:
    local = Path(sys.executable).with_name("mpiexec")
    return str(local) if local.exists() else "mpiexec"


def _run(n: int, model: str, mode: str, a: argparse.Namespace, strong: bool) -> Any:
    env = dict(os.environ)
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[v] = "1"
    rows = a.rows if not strong else a.rows // n
    cmd = [_mpiexec(), "-n", str(n), sys.executable, __file__, "--worker"]
    cmd += ["--model", model, "--overlap", mode, "--rows", str(rows)]
    cmd += ["--steps", str(a.steps), "--warmup", str(a.warmup)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    rec["scaling"] = "strong" if strong else "weak"
    return rec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(HERE / "results" / "mpi"))
    p.add_argument("--models", default="char,lstm2x512")
    p.add_argument("--rows", type=int, default=32, help="rows (streams) per rank")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--strong", action="store_true", help="also strong scaling")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--overlap", default="overlap", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        return worker(a)
    from rnnkit import _sysinfo

    recs = []
    for model in a.models.split(","):
        for mode in ("overlap", "blocking"):
            for strong in (False, True) if a.strong else (False,):
                for n in (1, 2):
                    recs.append(_run(n, model, mode, a, strong))
                    r = recs[-1]
                    print(
                        f"{model:10s} {r['scaling']:6s} {mode:8s} {n} rank(s): "
                        f"step {r['step_s'] * 1e3:7.1f} ms = compute "
                        f"{r['compute_s'] * 1e3:7.1f} + all-reduce "
                        f"{r['allreduce_s'] * 1e3:6.2f} ms, "
                        f"{r['items_per_s']:,.0f} {r['unit']}/s",
                        flush=True,
                    )
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# MPI data-parallel training (benchmarks/bench_mpi.py)",
        "",
        f"Command: `python benchmarks/bench_mpi.py {' '.join(argv or sys.argv[1:])}`",
        f"CPU: {_sysinfo.cpu_model()}; 1 thread per rank; float32; Adam; "
        f"{a.steps} timed steps after {a.warmup} warm-up (median).",
        "",
        "| model | scaling | reduce | ranks | rows/rank | step ms | compute ms "
        "| all-reduce ms | items/s | speed-up | grad bytes/step |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = {}
    for r in recs:
        key = (r["model"], r["scaling"], r["mode"])
        if r["ranks"] == 1:
            base[key] = r["items_per_s"]
        r["speedup"] = r["items_per_s"] / base[key]
        lines.append(
            f"| {r['model']} | {r['scaling']} | {r['mode']} | {r['ranks']} | "
            f"{r['rows_per_rank']} | {r['step_s'] * 1e3:.1f} | "
            f"{r['compute_s'] * 1e3:.1f} | {r['allreduce_s'] * 1e3:.2f} | "
            f"{r['items_per_s']:,.0f} {r['unit']} | {r['speedup']:.2f}x | "
            f"{r['grad_bytes']:,} |"
        )
    lines += [
        "",
        "All-reduce: from the end of this rank's backward pass to the completed "
        "reduction, so it includes waiting for a slower rank. Speed-up: items/s of "
        "2 ranks over 1 (goal: >= 1.8x, weak scaling). Bytes per step: the "
        "gradient buffer each rank contributes; a ring all-reduce sends and receives "
        "2 (p-1)/p of it per rank.",
        "",
        "## Scaling model (ring all-reduce, no overlap counted)",
        "",
        "Efficiency = b c / (b c + t_ar), t_ar = 2 (p-1) (S / (p BW) + latency); "
        "c = measured compute per row on one rank, S = gradient bytes, b = rows per "
        "node as measured. `rows >= 90%`: rows per node for 90 % efficiency.",
        "",
        "| model | network | nodes | t_ar ms | efficiency | rows >= 90% |",
        "|---|---|---|---|---|---|",
    ]
    model_rows = []
    for r in recs:
        if r["ranks"] != 1 or r["mode"] != "blocking" or r["scaling"] != "weak":
            continue
        for net, (bw, lat) in NETWORKS.items():
            for nodes in NODES:
                m = scaling_model(
                    r["compute_s"], r["rows_per_rank"], r["grad_bytes"], bw, lat, nodes
                )
                model_rows.append({"model": r["model"], "network": net, **m})
                lines.append(
                    f"| {r['model']} | {net} | {nodes} | {m['allreduce_s'] * 1e3:.2f} "
                    f"| {m['efficiency']:.1%} | {m['rows_for_90']} |"
                )
    (out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "results.json").write_text(
        json.dumps({"runs": recs, "scaling_model": model_rows}, indent=1),
        encoding="utf-8",
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
