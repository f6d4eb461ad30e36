"""End-to-end training of a character-level language model: rnnkit vs torch.

The model a user would write: Embedding(V, 64) -> LSTM/GRU/RNN -> Linear(H, V),
softmax cross-entropy, Adam (lr 2e-3), gradient-norm clipping at 5, batches of
B=32 sequences of T=100 characters cut from the bundled text. Both sides start
from identical weights (rnnkit's, handed to torch with ``rk.to_torch``), see the
same batches in the same order, and run in their own fresh process with the same
thread count (rnnkit: ``RNNKIT_NUM_THREADS``; torch: ``torch.set_num_threads``).
NumPy's BLAS is left as a user gets it: no OpenBLAS/OMP variables are set.

Reported per configuration: characters/s (after ``--warmup`` steps), the mean loss
of the last 10 steps and the loss after the last step, for each side, and the
ratio rnnkit/torch.

Command (the coordinator's run; a few minutes on 2 cores)::

    python benchmarks/bench_e2e.py --repeat 3 --out benchmarks/results

Smoke run::

    python benchmarks/bench_e2e.py --steps 3 --warmup 1 --configs lstm-256 --batch 4 \
        --seq-len 16 --out /tmp/e2e

Writes ``e2e.md`` (a table and the machine) and ``e2e.json`` (everything) into
``--out`` (``e2e_avx2.*`` with ``--simd avx2``); files are written atomically.
``--repeat N`` runs each side N times, alternating which goes first, and reports
medians and the median paired ratio: this VM's speed drifts by tens of percent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: name -> (cell, hidden size, layers)
CONFIGS: dict[str, tuple[str, int, int]] = {
    "lstm-256": ("lstm", 256, 1),
    "gru-256": ("gru", 256, 1),
    "rnn-256": ("rnn", 256, 1),
    "lstm-512x2": ("lstm", 512, 2),
    "gru-512x2": ("gru", 512, 2),
    "rnn-512x2": ("rnn", 512, 2),
}
EMBED = 64
LR = 2e-3
CLIP = 5.0
SEED = 0


def _text() -> str:
    import rnnkit

    path = Path(rnnkit.__file__).parent / "data" / "war_and_peace_opening.txt"
    return path.read_text(encoding="utf-8")


def _batches(steps: int, B: int, T: int) -> tuple[Any, Any, int]:
    """(steps*B, T) inputs and targets (next characters), and the vocabulary size;
    windows start at fixed pseudo-random offsets of the text (seed 0)."""
    import numpy as np

    text = _text()
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in text], dtype=np.int64)
    rng = np.random.default_rng(SEED)
    starts = rng.integers(0, len(ids) - T - 1, size=steps * B)
    x = np.stack([ids[s : s + T] for s in starts])
    y = np.stack([ids[s + 1 : s + T + 1] for s in starts])
    return x, y, len(chars)


def _model(cell: str, H: int, L: int, V: int) -> Any:
    import rnnkit as rk

    rec = {"lstm": rk.LSTM, "gru": rk.GRU, "rnn": rk.RNN}[cell]
    return rk.Sequential(
        rk.Embedding(V, EMBED, seed=SEED),
        rec(EMBED, H, num_layers=L, batch_first=True, seed=SEED + 1),
        rk.Linear(H, V, seed=SEED + 2),
    )


def worker(side: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One side of one configuration, in this (fresh) process."""
    import numpy as np

    import rnnkit as rk
    from rnnkit import _sysinfo

    cell, H, L = CONFIGS[name]
    steps, B, T = args.steps + args.warmup, args.batch, args.seq_len
    x, y, V = _batches(steps, B, T)
    model = _model(cell, H, L, V)
    losses: list[float] = []
    times: list[float] = []
    simd = rk.get_simd()
    if side == "rnnkit":
        from rnnkit.train import train_step

        opt = rk.optim.Adam(model, lr=LR)

        def loss_fn(out: Any, target: Any, mask: Any) -> Any:
            return rk.losses.cross_entropy(out, target, mask=mask)

        for i in range(steps):
            t0 = time.perf_counter()
            xs, ys = x[i * B : (i + 1) * B], y[i * B : (i + 1) * B]
            losses.append(train_step(model, loss_fn, opt, (xs,), ys, clip_norm=CLIP))
            times.append(time.perf_counter() - t0)
    else:
        import torch

        torch.set_num_threads(args.threads)
        simd = torch.backends.cpu.get_cpu_capability()
        tm = rk.to_torch(model).train()
        opt_t = torch.optim.Adam(tm.parameters(), lr=LR)
        ce = torch.nn.CrossEntropyLoss()
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        for i in range(steps):
            t0 = time.perf_counter()
            xs, ys = xt[i * B : (i + 1) * B], yt[i * B : (i + 1) * B]
            opt_t.zero_grad()
            out = tm(xs)
            loss = ce(out.reshape(-1, V), ys.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tm.parameters(), CLIP)
            opt_t.step()
            losses.append(float(loss))
            times.append(time.perf_counter() - t0)
    timed = times[args.warmup :]
    return {
        "side": side,
        "config": name,
        "chars_per_s": len(timed) * B * T / sum(timed),
        "step_ms_median": 1e3 * float(np.median(timed)),
        "loss_last": losses[-1],
        "loss_last10": float(np.mean(losses[-10:])),
        "losses": losses,
        "threads": {"rnnkit": rk.get_num_threads(), **_sysinfo.openblas_info()},
        "simd": simd,
        "cpu_s": time.process_time(),
    }


#: --simd avx2: the same instruction set for both sides on an AVX-512 machine
#: (rnnkit's run-time choice; torch's ATen kernels, oneDNN and MKL by their own
#: documented switches), to measure what an AVX2-only machine would see.
SIMD_ENV = {
    "avx2": {
        "RNNKIT_SIMD": "avx2",
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    },
}


def _child_env(threads: int, simd: str | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }
    env["RNNKIT_NUM_THREADS"] = str(threads)
    env.update(SIMD_ENV.get(simd or "", {}))
    return env


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def table(results: list[dict[str, Any]]) -> str:
    """One row per configuration: medians over the repeats, and the median of
    the paired ratios (rnnkit run i / torch run i, run back to back)."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        runs.setdefault((r["config"], r["side"]), []).append(r)
    rows = [
        "| config | rnnkit chars/s | torch chars/s | ratio | ratio range "
        "| loss rnnkit | loss torch |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["config"] for r in results):
        a, b = runs.get((name, "rnnkit"), []), runs.get((name, "torch"), [])
        ra = f"{_median([r['chars_per_s'] for r in a]):.0f}" if a else "-"
        rb = f"{_median([r['chars_per_s'] for r in b]):.0f}" if b else "-"
        pairs = [x["chars_per_s"] / y["chars_per_s"] for x, y in zip(a, b)]
        ratio = f"{_median(pairs):.2f}x" if pairs else "-"
        spread = f"{min(pairs):.2f}-{max(pairs):.2f}x" if len(pairs) > 1 else "-"
        la = f"{a[-1]['loss_last10']:.4f}" if a else "-"
        lb = f"{b[-1]['loss_last10']:.4f}" if b else "-"
        rows.append(f"| {name} | {ra} | {rb} | {ratio} | {spread} | {la} | {lb} |")
    return "\n".join(rows)


def _simd_line(results: list[dict[str, Any]]) -> str:
    """The instruction set each side ran (rk.get_simd(), torch's CPU capability)."""
    seen: dict[str, set[str]] = {}
    for r in results:
        seen.setdefault(r["side"], set()).add(str(r.get("simd", "?")))
    return ", ".join(f"{k} {'/'.join(sorted(v))}" for k, v in seen.items())


def _run_side(
    name: str, side: str, args: argparse.Namespace, results: list[dict[str, Any]]
) -> None:
    """One side of one configuration in a fresh process; appends its result."""
    cmd = [sys.executable, __file__, "--side", side, "--config", name]
    for flag in ("steps", "warmup", "batch", "seq_len", "threads"):
        cmd += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    out = subprocess.run(
        cmd, env=_child_env(args.threads, args.simd), capture_output=True, text=True
    )
    if out.returncode != 0:
        print(f"{name} {side}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
        return
    r = json.loads(out.stdout.strip().splitlines()[-1])
    results.append(r)
    print(
        f"{name:12s} {side:7s} {r['chars_per_s']:10.0f} chars/s  "
        f"loss {r['loss_last10']:.4f}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--configs", default=",".join(CONFIGS), help="of " + ",".join(CONFIGS)
    )
    p.add_argument("--sides", default="rnnkit,torch")
    p.add_argument("--steps", type=int, default=30, help="timed steps")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--threads", type=int, default=None, help="default: physical cores")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each side per configuration, alternating which side goes "
        "first; the table gives medians and the median paired ratio",
    )
    p.add_argument(
        "--simd",
        choices=sorted(SIMD_ENV),
        default=None,
        help="run both sides on this instruction set (default: each its best)",
    )
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--side", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads is None:
        from rnnkit._config import physical_cores

        args.threads = physical_cores()
    if args.side:  # a worker: one JSON line on stdout
        print(json.dumps(worker(args.side, args.config, args)))
        return 0
    from rnnkit import _sysinfo

    results = []
    for name in args.configs.split(","):
        if name not in CONFIGS:
            p.error(f"unknown config {name!r}; choose from {', '.join(CONFIGS)}")
        sides = args.sides.split(",")
        for rep in range(max(1, args.repeat)):
            for side in sides if rep % 2 == 0 else sides[::-1]:
                _run_side(name, side, args, results)
    info = _sysinfo.machine_info()
    cmdline = " ".join(sys.argv[1:] if argv is None else argv)
    md = (
        f"# End-to-end char-LM training (B={args.batch}, T={args.seq_len}, "
        f"{args.steps} timed steps after {args.warmup}, {args.threads} threads, "
        f"{max(1, args.repeat)} run(s) of each side)\n\n"
        f"Machine: {_sysinfo.summary_line(args.threads)}\n\n"
        f"Instruction sets: {_simd_line(results)}\n\n"
        f"Command: `python benchmarks/bench_e2e.py {cmdline}`\n\n"
        + table(results)
        + "\n\nchars/s: median over the runs; ratio: median of rnnkit/torch over "
        "back-to-back pairs of runs (range: lowest and highest pair). Loss: mean of "
        "the last 10 steps (nats/char); both sides start from the same weights and "
        "see the same batches.\n"
    )
    out_dir = Path(args.out)
    stem = f"e2e_{args.simd}" if args.simd else "e2e"  # e2e.md, or e2e_avx2.md
    _write(out_dir / f"{stem}.md", md)
    _write(
        out_dir / f"{stem}.json",
        json.dumps({"args": vars(args), "machine": info, "results": results}, indent=1),
    )
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
