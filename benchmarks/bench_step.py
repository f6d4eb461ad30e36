"""Single-step latency, and calls under contention.

Latency (default): for each cell (RNN tanh, LSTM, GRU) and H = I in ``--sizes``
(128, 512), B=1, float32: ``layer.forward(x[T=1], train=False)`` and
``layer.stepper().step(x)`` of rnnkit, ``forward`` of the NumPy reference
(``rnnkit.reference``), and torch's ``nn.LSTM/GRU/RNN`` on one step under
``no_grad`` (when torch is installed). Median of ``--repeat`` timings of
``--number`` calls each, in µs, with the thread count of every side set to
``--threads`` (default: physical cores).

Contention (``--contention``): a busy process (a pure-Python spin loop) is pinned
to one CPU, then each configuration of ``--contention-shapes`` (T x B x I x H,
training forward + backward of an LSTM) runs with 1 thread and with ``--threads``
threads, each in a fresh process; the ratio t(N threads) / t(1 thread) is the
figure of merit (the issue's goal: <= 1.5x with a busy process on one of two
cores). Each configuration also runs on the quiet machine first (no busy
process), so the table shows what the contention fall-back costs where there is
no contention; ``trips`` counts the calls the kernels saw as contended
(``rnnkit._core.contention_trips``): it should be 0 on the quiet machine.
Process CPU time is recorded too.

Commands (the coordinator's runs, a minute or two each)::

    python benchmarks/bench_step.py --out benchmarks/results
    python benchmarks/bench_step.py --contention --out benchmarks/results

Smoke runs::

    python benchmarks/bench_step.py --sizes 16 --repeat 2 --number 20 --out /tmp/s
    python benchmarks/bench_step.py --contention --contention-shapes 5x2x8x16 \
        --repeat 2 --out /tmp/s

Writes ``step.md`` / ``step.json`` (or ``contention.md`` / ``contention.json``)
into ``--out``, atomically.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CELLS = ("rnn", "lstm", "gru")


def _timeit(f: Callable[[], Any], number: int, repeat: int) -> float:
    """Median over ``repeat`` runs of the mean µs of ``number`` calls of f."""
    for _ in range(max(3, number // 10)):
        f()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            f()
        samples.append((time.perf_counter() - t0) / number * 1e6)
    return statistics.median(samples)


def latency(args: argparse.Namespace) -> list[dict[str, Any]]:
    from rnnkit import _sysinfo

    torch: Any = None
    if "torch" in args.sides:
        with contextlib.suppress(ImportError):
            import torch  # type: ignore[no-redef]
    _sysinfo.pin_threads(args.threads)
    rows = []
    for cell in args.cells.split(","):
        for H in (int(s) for s in args.sizes.split(",")):
            rows.append(_latency_row(cell, H, args, torch))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _latency_row(cell: str, H: int, args: argparse.Namespace, torch: Any) -> dict:
    import numpy as np

    import rnnkit as rk
    from rnnkit import reference

    fast = getattr(rk, cell.upper())(H, H, seed=0)
    slow = getattr(reference, cell.upper())(H, H, seed=0)
    x = np.random.default_rng(0).standard_normal((1, 1, H)).astype(np.float32)
    st = fast.stepper(1)
    row: dict[str, Any] = {"cell": cell, "H": H}
    n, r = args.number, args.repeat
    if "rnnkit" in args.sides:
        row["rnnkit_forward"] = _timeit(lambda: fast.forward(x, train=False), n, r)
        row["rnnkit_stepper"] = _timeit(lambda: st.step(x[0]), n, r)
    if "numpy" in args.sides:
        row["numpy_forward"] = _timeit(lambda: slow.forward(x, train=False), n, r)
    if torch is not None:
        tm = rk.to_torch(fast).eval()
        xt = torch.from_numpy(x)
        with torch.no_grad():
            row["torch_forward"] = _timeit(lambda: tm(xt), n, r)
    return row


def latency_table(rows: list[dict[str, Any]]) -> str:
    cols = ["rnnkit_forward", "rnnkit_stepper", "numpy_forward", "torch_forward"]
    out = [
        "| cell | H | "
        + " | ".join(c.replace("_", " ") + " µs" for c in cols)
        + " | numpy / rnnkit forward |",
        "|---|---|" + "---|" * (len(cols) + 1),
    ]
    for r in rows:
        vals = [f"{r[c]:.1f}" if c in r else "-" for c in cols]
        ratio = (
            f"{r['numpy_forward'] / r['rnnkit_forward']:.2f}x"
            if "numpy_forward" in r and "rnnkit_forward" in r
            else "-"
        )
        out.append(f"| {r['cell']} | {r['H']} | " + " | ".join(vals) + f" | {ratio} |")
    return "\n".join(out)


# -------------------------------------------------------------- contention
def _busy(cpu: int) -> subprocess.Popen:
    code = (
        "import os\n"
        f"os.sched_setaffinity(0, {{{cpu}}})\n"
        "x = 0\n"
        "while True:\n"
        "    x += 1\n"
    )
    return subprocess.Popen([sys.executable, "-c", code])


def contention_worker(shape: str, threads: int, repeat: int) -> dict[str, Any]:
    import numpy as np

    import rnnkit as rk

    rk.set_num_threads(threads)
    T, B, I, H = (int(v) for v in shape.split("x"))
    layer = rk.LSTM(I, H, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    dy = np.ones((T, B, H), np.float32)

    def once() -> None:
        layer.forward(x)
        layer.backward(dy)

    once()
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        once()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {
        "shape": shape,
        "threads": threads,
        "wall_ms": 1e3 * statistics.median(wall),
        "cpu_ms": 1e3 * statistics.median(cpu),
        "trips": int(rk._core.contention_trips()),
        "adaptive": rk._config.get_adaptive_threads(),
    }


def _worker_run(shape: str, n: int, repeat: int) -> dict[str, Any]:
    cmd = [
        sys.executable, __file__, "--contention-worker", shape,
        "--threads", str(n), "--repeat", str(repeat),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    res: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return res


def contention(args: argparse.Namespace) -> list[dict[str, Any]]:
    cpus = sorted(os.sched_getaffinity(0))
    rows = []
    for shape in args.contention_shapes.split(","):
        quiet = {n: _worker_run(shape, n, args.repeat) for n in (1, args.threads)}
        busy = _busy(cpus[-1])
        try:
            time.sleep(0.5)
            loaded = {n: _worker_run(shape, n, args.repeat) for n in (1, args.threads)}
        finally:
            busy.kill()
            busy.wait()
        row = {
            "shape": shape,
            "busy_cpu": cpus[-1],
            "quiet_one": quiet[1],
            "quiet_many": quiet[args.threads],
            "one": loaded[1],
            "many": loaded[args.threads],
            "quiet_ratio": quiet[args.threads]["wall_ms"] / quiet[1]["wall_ms"],
            "ratio": loaded[args.threads]["wall_ms"] / loaded[1]["wall_ms"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def contention_table(rows: list[dict[str, Any]], threads: int) -> str:
    n = threads
    out = [
        f"| LSTM T×B×I×H (fwd+bwd) | quiet: 1 / {n} threads ms | busy core: 1 / {n} "
        f"threads ms | busy ratio {n}t/1t | quiet ratio | trips quiet / busy "
        f"| CPU ms busy (1 / {n}) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['shape']} | {r['quiet_one']['wall_ms']:.2f} / "
            f"{r['quiet_many']['wall_ms']:.2f} | {r['one']['wall_ms']:.2f} / "
            f"{r['many']['wall_ms']:.2f} | {r['ratio']:.2f}x | "
            f"{r['quiet_ratio']:.2f}x | {r['quiet_many']['trips']} / "
            f"{r['many']['trips']} | {r['one']['cpu_ms']:.2f} / "
            f"{r['many']['cpu_ms']:.2f} |"
        )
    return "\n".join(out)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cells", default=",".join(CELLS))
    p.add_argument("--sizes", default="128,512", help="H (= I), comma-separated")
    p.add_argument("--sides", default="rnnkit,numpy,torch")
    p.add_argument("--threads", type=int, default=None, help="default: physical cores")
    p.add_argument("--number", type=int, default=200, help="calls per timing")
    p.add_argument("--repeat", type=int, default=7, help="timings (median)")
    p.add_argument("--contention", action="store_true")
    p.add_argument(
        "--contention-shapes", default="100x32x128x256,200x16x64x64,20x1x256x256"
    )
    p.add_argument("--contention-worker", help=argparse.SUPPRESS)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    from rnnkit._config import physical_cores

    if args.threads is None:
        args.threads = max(2, physical_cores()) if args.contention else physical_cores()
    if args.contention_worker:
        res = contention_worker(args.contention_worker, args.threads, args.repeat)
        print(json.dumps(res))
        return 0
    from rnnkit import _sysinfo

    cmdline = " ".join(sys.argv[1:] if argv is None else argv)
    head = (
        f"Machine: {_sysinfo.summary_line(args.threads)}\n\n"
        f"Command: `python benchmarks/bench_step.py {cmdline}`\n\n"
    )
    if args.contention:
        rows = contention(args)
        name = "contention"
        md = (
            f"# Under contention: a busy process pinned to one CPU\n\n{head}"
            + contention_table(rows, args.threads)
            + "\n"
        )
    else:
        rows = latency(args)
        name = "step"
        md = (
            f"# Single-step latency (B=1, float32, {args.threads} threads)\n\n{head}"
            + latency_table(rows)
            + "\n"
        )
    out_dir = Path(args.out)
    _write(out_dir / f"{name}.md", md)
    info = _sysinfo.machine_info()
    _write(
        out_dir / f"{name}.json",
        json.dumps({"args": vars(args), "machine": info, "rows": rows}, indent=1),
    )
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
