#!/usr/bin/env python3
"""Quality per second: a char-level LSTM on War and Peace in rnnkit and in PyTorch.

The same model, data, split, initial weights and optimizer on both sides, each with
the same wall-clock training budget and thread count; validation loss on the whole
held-out tail at the same training-time intervals::

    python benchmarks/char_rnn_quality.py                       # 5 minutes per side
    python benchmarks/char_rnn_quality.py --budget 20 --eval-every 5 --out /tmp/cq

Protocol
--------
* Corpus: ``../shared/data/warpeace.txt`` from the repository root (``--corpus``);
  the script exits 0 with a note when it is absent. Characters sorted by code point
  (``rnnkit.text.Vocab``); the last ``--val-fraction`` (5%) is the validation tail.
* Model: Embedding(V, 64) -> LSTM(64, 256) -> Linear(256, V), one layer; initial
  weights drawn once by rnnkit (``CharLM(seed=--seed)``) and loaded into both sides.
* Training: stateful truncated BPTT (``rnnkit.text.BPTTBatches``: 32 streams, chunks
  of 100, state carried between chunks and reset each epoch), mean cross-entropy,
  gradient-norm clipping at 5, Adam(lr 2e-3, betas (0.9, 0.999), eps 1e-8).
  rnnkit trains with ``CharLM.fit``, the library path a user gets; the PyTorch loop
  below mirrors it step for step.
* Clock: only training steps count toward ``--budget`` (forward, loss, backward,
  clipping, optimizer); training stops after the step that reaches it.
  Evaluation happens at t = 0, whenever the training clock passes a multiple of
  ``--eval-every``, at each epoch end and at the end, and is not timed.
* Evaluation: every next-character prediction of the validation tail, exactly once
  (``rnnkit.text.eval_layout``: 32 streams from zero states read in chunks of 256
  with the state carried, the leftover continuing the last stream), in nats and
  bits per character.
* Threads: each side runs in its own subprocess of this script with
  ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` set to
  ``--threads`` (2), plus ``rk.set_num_threads`` / ``torch.set_num_threads``.
  Sides run one after the other, never together.
* Checks before timing: rnnkit's first training chunk (loss and gradient norm) is
  compared with the same model built on ``rnnkit.reference`` in float64; the two
  sides' t = 0 validation losses (same weights) must agree.
* Generation: after training, ``--gen-chars`` characters sampled at temperature 1,
  one step at a time with the state carried (rnnkit: ``CharLM.generate`` on the
  single-step path; PyTorch: the same loop over ``nn.LSTM`` with T = 1 under
  ``torch.inference_mode``); characters per second and µs per character.

Output (``--out``, default ``benchmarks/results/char_rnn``): ``results.json`` (all
curves and settings), ``results.md`` (tables, goals), ``curves.png`` (validation
bits/char against training seconds; needs matplotlib).

Goals (issue "Text generation"): rnnkit reaches PyTorch's best validation loss of
the budget in at most two thirds of the time PyTorch took to reach it, and rnnkit's
own best within the budget is lower. Judged, never asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from rnnkit import _sysinfo

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "warpeace.txt"
LN2 = math.log(2.0)


# ---------------------------------------------------------------- shared data
def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Vocabulary, split and initial weights, written once for both sides."""
    from rnnkit import text as tx

    text = tx.read_text(args.corpus)
    vocab = tx.Vocab.from_text(text)
    ids = vocab.encode(text)
    train, val = tx.split_train_val(ids, args.val_fraction)
    lm = tx.CharLM(
        vocab,
        hidden_size=args.hidden,
        embedding_dim=args.embedding,
        seed=args.seed,
    )
    return {
        "vocab": vocab,
        "train": train,
        "val": val,
        "state": lm.model.state_dict(),
        "chars": len(text),
    }


def save_problem(p: dict[str, Any], path: Path) -> None:
    np.savez(
        path,
        train=p["train"],
        val=p["val"],
        tokens=np.array(p["vocab"].tokens),
        **{f"w/{k}": v for k, v in p["state"].items()},
    )


def load_problem(path: Path) -> dict[str, Any]:
    with np.load(path) as z:
        return {
            "train": z["train"],
            "val": z["val"],
            "tokens": [str(t) for t in z["tokens"]],
            "state": {k[2:]: z[k] for k in z.files if k.startswith("w/")},
        }


# ---------------------------------------------------------------- the rnnkit side
def worker_rnnkit(args: argparse.Namespace, prob: dict[str, Any]) -> dict[str, Any]:
    import rnnkit as rk
    from rnnkit import text as tx

    rk.set_num_threads(args.threads)
    vocab = tx.Vocab(prob["tokens"])
    lm = tx.CharLM(vocab, hidden_size=args.hidden, embedding_dim=args.embedding, seed=0)
    lm.model.load_state_dict({k: v for k, v in prob["state"].items()})
    check = check_rnnkit(args, lm, prob)
    out: dict[str, Any] = {"side": "rnnkit", "check": check}
    t0 = time.perf_counter()
    v0 = lm.evaluate(prob["val"], args.eval_batch, args.eval_seq)
    out["eval_seconds_t0"] = time.perf_counter() - t0
    curve = [(0.0, 0, 0.0, v0["loss"])]

    def record(epoch: int, logs: dict[str, Any]) -> None:
        curve.append((logs["time"], logs["step"], logs["epoch"], logs["val_loss"]))

    hist = lm.fit(
        prob["train"],
        val_data=prob["val"],
        max_time=args.budget,
        batch_size=args.batch,
        seq_len=args.seq_len,
        lr=args.lr,
        clip_norm=args.clip,
        eval_every=args.eval_every,
        eval_batch_size=args.eval_batch,
        progress=sys.stderr if args.verbose else False,
        callback=record,
    )
    pos = hist.position
    out.update(
        curve=curve,
        steps=pos.steps,
        train_chars=pos.items,
        train_seconds=pos.seconds,
        chars_per_s=pos.items / pos.seconds,
        simd=rk.get_simd(),
        threads=rk.get_num_threads(),
        version=rk.__version__,
    )
    # generation: the single-step path, state carried
    lm.generate_text("The ", 200, temperature=1.0, seed=1)  # warm-up
    t0 = time.perf_counter()
    sample = lm.generate_text("The ", args.gen_chars, temperature=1.0, seed=1)
    dt = time.perf_counter() - t0
    out.update(
        gen_chars_per_s=args.gen_chars / dt,
        gen_us_per_char=dt / args.gen_chars * 1e6,
        sample=sample[:300],
    )
    return out


def check_rnnkit(
    args: argparse.Namespace, lm: Any, prob: dict[str, Any]
) -> dict[str, Any]:
    """First training chunk on the kernels vs the float64 NumPy reference."""
    import rnnkit as rk
    from rnnkit import reference
    from rnnkit import text as tx

    x, y = tx.BPTTBatches(prob["train"], args.batch, args.seq_len)[0]

    def first_chunk(model: Any) -> tuple[float, float]:
        model.zero_grad()
        loss, d = rk.losses.cross_entropy(model.forward(x), y)
        model.backward(d)
        return loss, rk.optim.grad_norm(model)

    ref = rk.Sequential(
        rk.Embedding(len(prob["tokens"]), args.embedding, dtype="float64"),
        reference.LSTM(args.embedding, args.hidden, dtype="float64"),
        rk.Linear(args.hidden, len(prob["tokens"]), dtype="float64"),
    )
    ref.load_state_dict({k: v.astype(np.float64) for k, v in prob["state"].items()})
    (l_k, g_k), (l_r, g_r) = first_chunk(lm.model), first_chunk(ref)
    lm.model.zero_grad()
    ok = abs(l_k - l_r) <= 1e-5 * abs(l_r) and abs(g_k - g_r) <= 1e-3 * abs(g_r)
    if not ok:
        raise SystemExit(
            f"rnnkit disagrees with the float64 reference on the first chunk: loss "
            f"{l_k} vs {l_r}, gradient norm {g_k} vs {g_r}"
        )
    return {"loss": l_k, "loss_ref64": l_r, "grad_norm": g_k, "grad_norm_ref64": g_r}


# ---------------------------------------------------------------- the PyTorch side
def worker_torch(args: argparse.Namespace, prob: dict[str, Any]) -> dict[str, Any]:
    import torch

    from rnnkit import text as tx  # the same batching and evaluation layout

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    V, E, H = len(prob["tokens"]), args.embedding, args.hidden
    emb = torch.nn.Embedding(V, E)
    lstm = torch.nn.LSTM(E, H, batch_first=True)
    fc = torch.nn.Linear(H, V)
    st = prob["state"]
    with torch.no_grad():
        emb.weight.copy_(torch.from_numpy(st["0.weight"]))
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(lstm, name).copy_(torch.from_numpy(st[f"1.{name}"]))
        fc.weight.copy_(torch.from_numpy(st["2.weight"]))
        fc.bias.copy_(torch.from_numpy(st["2.bias"]))
    params = [*emb.parameters(), *lstm.parameters(), *fc.parameters()]
    opt = torch.optim.Adam(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8)

    def evaluate() -> float:
        x, y, xr, yr = tx.eval_layout(prob["val"], args.eval_batch)
        total, state = 0.0, None
        with torch.inference_mode():

            def run(xs: np.ndarray, ys: np.ndarray, state: Any) -> tuple[float, Any]:
                out, state = lstm(emb(torch.from_numpy(xs)), state)
                logits = fc(out)
                nll = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, V),
                    torch.from_numpy(ys).reshape(-1),
                    reduction="sum",
                )
                return float(nll.double()), state

            for a in range(0, x.shape[1], args.eval_seq):
                s = slice(a, a + args.eval_seq)
                nll, state = run(x[:, s], y[:, s], state)
                total += nll
            if len(xr):
                state = tuple(t[:, -1:].contiguous() for t in state)
                for a in range(0, len(xr), args.eval_seq):
                    s = slice(a, a + args.eval_seq)
                    nll, state = run(xr[None, s], yr[None, s], state)
                    total += nll
        return total / (len(prob["val"]) - 1)

    t0 = time.perf_counter()
    v0 = evaluate()
    out: dict[str, Any] = {"side": "torch", "eval_seconds_t0": time.perf_counter() - t0}
    curve = [(0.0, 0, 0.0, v0)]
    batches = tx.BPTTBatches(prob["train"], args.batch, args.seq_len)
    nb = len(batches)
    seconds, steps, chars, epoch = 0.0, 0, 0, 0
    next_eval = args.eval_every
    done = False
    while not done:
        state = None
        for j in range(nb):
            xb, yb = batches[j]
            t0 = time.perf_counter()
            x = torch.from_numpy(np.ascontiguousarray(xb))
            y = torch.from_numpy(np.ascontiguousarray(yb))
            opt.zero_grad(set_to_none=False)
            out_seq, state = lstm(emb(x), state)
            loss = torch.nn.functional.cross_entropy(
                fc(out_seq).reshape(-1, V), y.reshape(-1)
            )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, args.clip)
            opt.step()
            state = tuple(s.detach() for s in state)  # carried, truncated
            seconds += time.perf_counter() - t0
            steps += 1
            chars += x.numel()
            if seconds >= args.budget:
                done = True
                break
            if seconds >= next_eval and j + 1 < nb:
                curve.append((seconds, steps, epoch + (j + 1) / nb, evaluate()))
                while next_eval <= seconds:
                    next_eval += args.eval_every
        else:
            epoch += 1
            curve.append((seconds, steps, float(epoch), evaluate()))
            while next_eval <= seconds:
                next_eval += args.eval_every
            continue
        curve.append((seconds, steps, epoch + (j + 1) / nb, evaluate()))
    out.update(
        curve=curve,
        steps=steps,
        train_chars=chars,
        train_seconds=seconds,
        chars_per_s=chars / seconds,
        threads=torch.get_num_threads(),
        version=torch.__version__,
    )
    # generation: T = 1 steps with the state carried, sampling at temperature 1
    g = torch.Generator().manual_seed(1)

    def gen(n: int) -> float:
        with torch.inference_mode():
            x = torch.tensor([[prob["tokens"].index("T")]])
            state = None
            t0 = time.perf_counter()
            for _ in range(n):
                o, state = lstm(emb(x), state)
                p = torch.softmax(fc(o[0, -1]), -1)
                x = torch.multinomial(p, 1, generator=g).view(1, 1)
            return time.perf_counter() - t0

    gen(200)
    dt = gen(args.gen_chars)
    out.update(
        gen_chars_per_s=args.gen_chars / dt, gen_us_per_char=dt / args.gen_chars * 1e6
    )
    return out


# ---------------------------------------------------------------- the driver
def run_side(
    side: str, args: argparse.Namespace, problem: Path, tmp: Path
) -> dict | None:
    out = tmp / f"{side}.json"
    env = _sysinfo.thread_env(args.threads)
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        side,
        "--problem",
        str(problem),
        "--result",
        str(out),
    ] + args.passthrough
    print(
        f"[{side}] training for {args.budget:g} s on {args.threads} thread(s) ...",
        file=sys.stderr,
        flush=True,
    )
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, check=False)
    if proc.returncode != 0 or not out.exists():
        print(f"[{side}] failed (exit {proc.returncode})", file=sys.stderr)
        return None
    res = json.loads(out.read_text())
    res["wall_seconds"] = time.perf_counter() - t0
    return res


def time_to_reach(curve: list, target: float) -> tuple[float | None, float | None]:
    """(first evaluation time with val <= target, linearly interpolated crossing)."""
    prev = None
    for t, _, _, v in curve:
        if v <= target:
            if prev is None or prev[1] == v:
                return t, t
            t0, v0 = prev
            return t, t0 + (t - t0) * (v0 - target) / (v0 - v)
        prev = (t, v)
    return None, None


def summarize(res: dict[str, dict], args: argparse.Namespace, meta: dict) -> dict:
    summary: dict[str, Any] = {}
    for side, r in res.items():
        vals = [c[3] for c in r["curve"]]
        i = int(np.argmin(vals))
        summary[side] = {
            "best_val_loss": vals[i],
            "best_val_bpc": vals[i] / LN2,
            "best_at_s": r["curve"][i][0],
            "final_val_loss": vals[-1],
            "chars_per_s": r["chars_per_s"],
            "steps": r["steps"],
            "gen_chars_per_s": r["gen_chars_per_s"],
            "gen_us_per_char": r["gen_us_per_char"],
        }
    goals = []
    if "rnnkit" in res and "torch" in res:
        tb = summary["torch"]["best_val_loss"]
        t_torch = summary["torch"]["best_at_s"]
        t_first, t_interp = time_to_reach(res["rnnkit"]["curve"], tb)
        summary["rnnkit_time_to_torch_best"] = {
            "first_eval_s": t_first,
            "interpolated_s": t_interp,
            "torch_s": t_torch,
        }
        ratio = None if t_first is None or not t_torch else t_first / t_torch
        goals.append(
            {
                "goal": "rnnkit reaches PyTorch's best validation loss in <= 2/3 of "
                "PyTorch's time",
                "value": (
                    f"{t_first:.0f} s vs {t_torch:.0f} s (ratio {ratio:.2f}; "
                    f"interpolated {t_interp:.0f} s)"
                )
                if ratio is not None
                else "never reached",
                "met": ratio is not None and ratio <= 2 / 3,
            }
        )
        rb = summary["rnnkit"]["best_val_loss"]
        goals.append(
            {
                "goal": "rnnkit's best validation loss within the budget is lower "
                "than PyTorch's",
                "value": f"{rb / LN2:.4f} vs {tb / LN2:.4f} bits/char",
                "met": rb < tb,
            }
        )
        v0 = (res["rnnkit"]["curve"][0][3], res["torch"]["curve"][0][3])
        summary["t0_parity"] = {
            "rnnkit": v0[0],
            "torch": v0[1],
            "ok": abs(v0[0] - v0[1]) <= 1e-4 * abs(v0[1]),
        }
    summary["goals"] = goals
    return summary


def write_markdown(
    path: Path, res: dict, summary: dict, meta: dict, args: argparse.Namespace
) -> None:
    L = [
        "# Char-level LSTM on War and Peace: rnnkit vs PyTorch, quality per second",
        "",
        f"Command: `{meta['command']}`",
        "",
        (
            f"Configuration: {meta['corpus']} ({meta['chars']:,} characters, V = "
            f"{meta['vocab']}); validation = last {args.val_fraction:.0%} "
            f"({meta['val_chars']:,} characters, scored whole); "
            f"Embedding({meta['vocab']}, {args.embedding}) -> "
            f"LSTM({args.embedding}, {args.hidden}) -> Linear; seq "
            f"{args.seq_len}, batch {args.batch}, Adam {args.lr:g}, "
            f"clip {args.clip:g}; same initial weights (seed {args.seed}); "
            f"{args.budget:g} s training budget per side, evaluation every "
            f"{args.eval_every:g} s of training and at epoch ends; "
            f"{args.threads} thread(s) per side."
        ),
        "",
        (
            f"Machine: {meta['cpu']}; rnnkit {meta.get('rnnkit_version', '?')} "
            f"({meta.get('simd', '?')}), torch {meta.get('torch_version', 'n/a')}, "
            f"numpy {meta['numpy']}; load average at start/end "
            f"{meta['loadavg_start'][0]:.2f} / {meta['loadavg_end'][0]:.2f}."
        ),
        "",
        (
            "| side | steps | training chars/s | best val (bits/char) | at (s) "
            "| final val (bits/char) | generation chars/s | µs/char |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for side, s in summary.items():
        if side not in res:
            continue
        L.append(
            f"| {side} | {s['steps']:,} | {s['chars_per_s']:,.0f} "
            f"| {s['best_val_bpc']:.4f} | {s['best_at_s']:.0f} "
            f"| {s['final_val_loss'] / LN2:.4f} | {s['gen_chars_per_s']:,.0f} "
            f"| {s['gen_us_per_char']:.1f} |"
        )
    if summary.get("goals"):
        L += ["", "| goal | measured | |", "|---|---|---|"]
        for g in summary["goals"]:
            met = "met" if g["met"] else "**NOT met**"
            L.append(f"| {g['goal']} | {g['value']} | {met} |")
    checks = []
    if "rnnkit" in res:
        c = res["rnnkit"]["check"]
        checks.append(
            f"rnnkit's first training chunk matches the float64 reference (loss "
            f"{c['loss']:.6f} vs {c['loss_ref64']:.6f}, gradient norm "
            f"{c['grad_norm']:.5f} vs {c['grad_norm_ref64']:.5f})"
        )
    if "t0_parity" in summary:
        p = summary["t0_parity"]
        checks.append(
            f"validation loss at t = 0 (same weights): rnnkit {p['rnnkit']:.6f}, torch "
            f"{p['torch']:.6f} nats ({'agree' if p['ok'] else '**DISAGREE**'})"
        )
    if checks:
        L += ["", "Checks: " + "; ".join(checks) + "."]
    L += ["", "Validation bits/char by training time (s):", ""]
    for side, r in res.items():
        pts = ", ".join(f"{t:.0f}s {v / LN2:.3f}" for t, _, _, v in r["curve"])
        L.append(f"- {side}: {pts}")
    if "rnnkit" in res and res["rnnkit"].get("sample"):
        L += [
            "",
            'rnnkit sample after training (temperature 1, prime "The "):',
            "",
            "```",
            "The " + res["rnnkit"]["sample"],
            "```",
        ]
    path.write_text("\n".join(L) + "\n")


def plot(path: Path, res: dict, args: argparse.Namespace) -> bool:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print("matplotlib is not installed: no curves.png", file=sys.stderr)
        return False
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    for side, r in res.items():
        c = np.array([(t, v / LN2) for t, _, _, v in r["curve"]])
        ax.plot(
            c[:, 0],
            c[:, 1],
            marker="o",
            ms=3,
            label=f"{side} ({r['chars_per_s']:,.0f} chars/s)",
        )
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("validation bits / character")
    ax.set_title(f"1-layer LSTM {args.hidden}, War and Peace, {args.threads} thread(s)")
    later = [v / LN2 for r in res.values() for *_, v in r["curve"][1:]]
    if later:  # leave out the untrained t = 0 point, which dwarfs the rest
        ax.set_ylim(min(later) - 0.05, max(later) + 0.05)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument(
        "--budget", type=float, default=300.0, help="training seconds per side"
    )
    ap.add_argument("--eval-every", type=float, default=15.0, help="training seconds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "char_rnn"
    )
    ap.add_argument("--sides", default="rnnkit,torch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-fraction", type=float, default=0.05)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--embedding", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--clip", type=float, default=5.0)
    ap.add_argument("--eval-batch", type=int, default=32)
    ap.add_argument("--eval-seq", type=int, default=256)
    ap.add_argument("--gen-chars", type=int, default=5000)
    ap.add_argument("--verbose", action="store_true", help="progress from the workers")
    ap.add_argument("--worker", choices=("rnnkit", "torch"), help=argparse.SUPPRESS)
    ap.add_argument("--problem", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        prob = load_problem(args.problem)
        res = (worker_rnnkit if args.worker == "rnnkit" else worker_torch)(args, prob)
        args.result.write_text(json.dumps(res))
        return 0

    if not args.corpus.exists():
        print(
            f"skipped: corpus {args.corpus} not found (pass --corpus)", file=sys.stderr
        )
        return 0
    sides = [s for s in args.sides.split(",") if s]
    if "torch" in sides:
        try:
            import importlib.util

            if importlib.util.find_spec("torch") is None:
                raise ImportError
        except ImportError:
            print("torch is not installed: rnnkit side only", file=sys.stderr)
            sides.remove("torch")
    # everything the workers need to agree on, passed through
    keep = (
        "budget",
        "eval_every",
        "threads",
        "seed",
        "val_fraction",
        "hidden",
        "embedding",
        "seq_len",
        "batch",
        "lr",
        "clip",
        "eval_batch",
        "eval_seq",
        "gen_chars",
    )
    args.passthrough = [
        x for k in keep for x in (f"--{k.replace('_', '-')}", str(getattr(args, k)))
    ]
    if args.verbose:
        args.passthrough.append("--verbose")
    import rnnkit as rk

    meta: dict[str, Any] = {
        "command": " ".join(
            [Path(sys.argv[0]).name if argv is None else "char_rnn_quality.py"]
            + (sys.argv[1:] if argv is None else list(argv))
        ),
        "cpu": _sysinfo.cpu_model(),
        "machine": _sysinfo.machine_info(),
        "numpy": np.__version__,
        "rnnkit_version": rk.__version__,
        "simd": rk.get_simd(),
        "loadavg_start": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "settings": {k: getattr(args, k) for k in keep},
    }
    prob = prepare(args)
    meta.update(
        corpus=str(args.corpus.name),
        chars=prob["chars"],
        vocab=len(prob["vocab"]),
        val_chars=len(prob["val"]),
        train_chars=len(prob["train"]),
    )
    res: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as d:
        problem = Path(d) / "problem.npz"
        save_problem(prob, problem)
        for side in sides:
            r = run_side(side, args, problem, Path(d))
            if r is not None:
                res[side] = r
    meta["loadavg_end"] = os.getloadavg()
    if "torch" in res:
        meta["torch_version"] = res["torch"]["version"]
    if not res:
        print("no side finished", file=sys.stderr)
        return 1
    summary = summarize(res, args, meta)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps(
            {"meta": meta, "summary": summary, "results": res}, indent=1, default=float
        )
    )
    write_markdown(args.out / "results.md", res, summary, meta, args)
    plot(args.out / "curves.png", res, args)
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
