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
import datetime as _dt
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from rnnbench.chart import plot_chart
from rnnbench.problem import (
    GEN_SIZES,
    LARGE_SHAPES,
    MODES,
    QUICK_SHAPES,
    SHAPES,
    SIDES,
    TOL,
    Config,
    cfg_key,
    make_configs,
)
from rnnbench.report import aggregate, render_goals, render_tables
from rnnbench.workers import log, worker_mem, worker_peak, worker_ref, worker_time
from rnnkit import _cells
from rnnkit._sysinfo import cpu_info, has_avx512, thread_env


# ------------------------------------------------------------------- driver
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
        cmd, env=thread_env(job["threads"], skx=skx), check=False
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
    ap.add_argument(
        "--cells", type=csv(tuple(_cells.CELLS)), default=list(_cells.CELLS)
    )
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
