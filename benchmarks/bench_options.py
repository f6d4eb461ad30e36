"""The cost of each layer option (issue 12) in a training step, against the plain cell.

One training step = ``forward(train=True)`` + ``backward`` of one layer (the
masks drawn by the layer included: that is what a user pays), timed as the median
of ``--repeat`` samples. For each cell (LSTM, GRU, RNN) and shape T x B x I x H,
the plain cell and each option alone: ``dropout`` (2 layers: it acts between
layers, so its plain baseline is the 2-layer cell), ``recurrent_dropout``,
``zoneout``, ``layer_norm`` (LSTM, GRU) and ``proj_size`` (LSTM, P = H/2). The
goal of the issue: <= 10 % for the dropout family, <= 25 % for LayerNorm.
Options whose kernel is not wired yet print "pending".

Also ``torch.nn.LSTM(proj_size=P)`` against ``rk.LSTM(proj_size=P)`` (the same
training step, torch on its native CPU path; goal >= 2x), when torch is
installed.

Command (the coordinator's run; several minutes on 2 cores)::

    python benchmarks/bench_options.py --out benchmarks/results

Smoke run::

    python benchmarks/bench_options.py --shapes 5x2x3x8 --repeat 1 --min-sample 0 \
        --out /tmp/bench_options

Writes ``options.md`` (tables and the machine) and ``options.json`` into
``--out``, atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

SHAPES = "100x32x128x256,35x128x1024x1024"
CELLS = ("lstm", "gru", "rnn")
#: option name -> (constructor keywords given H, cells that take it, layers)
OPTIONS: dict[str, tuple[Any, tuple[str, ...], int]] = {
    "plain": (lambda H: {}, CELLS, 1),
    "recurrent_dropout": (lambda H: {"recurrent_dropout": 0.25}, CELLS, 1),
    "zoneout": (lambda H: {"zoneout": 0.1}, CELLS, 1),
    "layer_norm": (lambda H: {"layer_norm": True}, ("lstm", "gru"), 1),
    "proj_size": (lambda H: {"proj_size": H // 2}, ("lstm",), 1),
    "plain x2": (lambda H: {}, CELLS, 2),
    "dropout x2": (lambda H: {"dropout": 0.25}, CELLS, 2),
}
BASELINE = {"dropout x2": "plain x2"}  # the others: "plain"


def _shape(s: str) -> tuple[int, int, int, int]:
    T, B, I, H = (int(v) for v in s.lower().split("x"))
    return T, B, I, H


def _median(fn: Any, repeat: int, min_sample_s: float) -> float:
    from rnnkit.bench import _median_seconds

    return _median_seconds(fn, repeat, min_sample_s)


def rnnkit_step(cell: str, shape: tuple[int, int, int, int], kw: dict, L: int) -> Any:
    """A training step of one rnnkit layer; raises NotImplementedError when the
    option's kernel is pending."""
    import rnnkit as rk

    T, B, I, H = shape
    layer = {"lstm": rk.LSTM, "gru": rk.GRU, "rnn": rk.RNN}[cell](
        I, H, num_layers=L, seed=0, **kw
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    y, _ = layer.forward(x)  # raises here if pending
    dy = np.ones_like(y)

    def step() -> None:
        layer.forward(x)
        layer.backward(dy)

    layer.backward(dy)
    return step


def torch_lstmp_step(shape: tuple[int, int, int, int], threads: int) -> Any:
    import torch

    torch.set_num_threads(threads)
    T, B, I, H = shape
    m = torch.nn.LSTM(I, H, proj_size=H // 2)
    x = torch.randn(T, B, I)

    def step() -> None:
        m.zero_grad()
        y, _ = m(x)
        y.sum().backward()

    return step


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for s in args.shapes.split(","):
        shape = _shape(s)
        for cell in args.cells.split(","):
            for name, (kw, cells, L) in OPTIONS.items():
                if cell not in cells:
                    continue
                r: dict[str, Any] = {"shape": s, "cell": cell, "option": name}
                try:
                    fn = rnnkit_step(cell, shape, kw(shape[3]), L)
                except NotImplementedError:
                    r["seconds"] = None
                else:
                    r["seconds"] = _median(fn, args.repeat, args.min_sample)
                results.append(r)
                t = (
                    "pending"
                    if r["seconds"] is None
                    else f"{r['seconds'] * 1e3:.2f} ms"
                )
                print(f"{s:18s} {cell:5s} {name:18s} {t}", flush=True)
        if args.torch:
            try:
                tfn = torch_lstmp_step(shape, args.threads)
            except ImportError:
                print("torch not installed: no LSTMP comparison", file=sys.stderr)
            else:
                sec = _median(tfn, args.repeat, args.min_sample)
                results.append(
                    {
                        "shape": s,
                        "cell": "lstm",
                        "option": "torch proj_size",
                        "seconds": sec,
                    }
                )
                print(f"{s:18s} torch LSTM(proj_size) {sec * 1e3:.2f} ms", flush=True)
    return results


def tables(results: list[dict[str, Any]]) -> str:
    by = {(r["shape"], r["cell"], r["option"]): r["seconds"] for r in results}
    out = [
        "| shape TxBxIxH | cell | option | step ms | vs plain |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        if r["option"] == "torch proj_size":
            continue
        sec = r["seconds"]
        base = by.get((r["shape"], r["cell"], BASELINE.get(r["option"], "plain")))
        if sec is None:
            ms, rel = "pending", "pending"
        else:
            ms = f"{sec * 1e3:.2f}"
            plain = r["option"] in ("plain", "plain x2")
            rel = "-" if plain or not base else f"{(sec / base - 1) * 100:+.1f} %"
        out.append(f"| {r['shape']} | {r['cell']} | {r['option']} | {ms} | {rel} |")
    lstmp = [
        "",
        "| shape TxBxIxH | torch LSTM(proj_size=H/2) ms | rnnkit ms | speed-up |",
        "|---|---|---|---|",
    ]
    any_torch = False
    for r in results:
        if r["option"] != "torch proj_size":
            continue
        any_torch = True
        mine = by.get((r["shape"], "lstm", "proj_size"))
        rk_ms = "pending" if mine is None else f"{mine * 1e3:.2f}"
        sp = "pending" if mine is None else f"{r['seconds'] / mine:.2f}x"
        lstmp.append(f"| {r['shape']} | {r['seconds'] * 1e3:.2f} | {rk_ms} | {sp} |")
    return "\n".join(out + (lstmp if any_torch else []))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", default=SHAPES, help="TxBxIxH, comma-separated")
    p.add_argument("--cells", default=",".join(CELLS))
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--min-sample", type=float, default=0.2, help="seconds per sample")
    p.add_argument("--threads", type=int, default=None, help="default: physical cores")
    p.add_argument("--no-torch", dest="torch", action="store_false")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    import rnnkit as rk
    from rnnkit import _sysinfo
    from rnnkit._config import physical_cores

    if args.threads is None:
        args.threads = physical_cores()
    rk.set_num_threads(args.threads)
    results = run(args)
    cmdline = " ".join(sys.argv[1:] if argv is None else argv)
    md = (
        f"# Layer options: training-step cost (forward + backward, float32, "
        f"{args.threads} threads)\n\n"
        f"Machine: {_sysinfo.summary_line(args.threads)}\n\n"
        f"Command: `python benchmarks/bench_options.py {cmdline}`\n\n"
        + tables(results)
        + "\n\nRates: dropout 0.25 (between 2 layers; baseline the plain 2-layer "
        "cell), recurrent_dropout 0.25, zoneout 0.1; proj_size H/2. Masks are "
        "drawn in each step, as in training.\n"
    )
    out = Path(args.out)
    _write(out / "options.md", md)
    _write(
        out / "options.json",
        json.dumps(
            {
                "args": vars(args),
                "machine": _sysinfo.machine_info(),
                "results": results,
            },
            indent=1,
        ),
    )
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
