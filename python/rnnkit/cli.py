"""The ``rnnkit`` command: ``rnnkit demo``, ``rnnkit config``, ``rnnkit bench``,
``rnnkit train``, ``rnnkit generate`` and ``rnnkit export``."""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _best_time(fn, repeat: int = 5) -> float:
    fn()  # warm-up: first touch of workspaces, weight packing
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def demo(args: argparse.Namespace) -> int:
    """Forward + backward of an LSTM on the kernels and on the NumPy reference."""
    import rnnkit as rk
    from rnnkit import reference

    rk.show_config()
    T, B, I, H = args.T, args.B, args.I, args.H
    print(
        f"\nLSTM(input_size={I}, hidden_size={H}), x of shape (T={T}, B={B}, I={I}), "
        "float32"
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    fast = rk.LSTM(I, H, seed=0)
    slow = reference.LSTM(I, H, seed=0)

    def step(layer):
        def run():
            layer.zero_grad()
            y, _ = layer.forward(x)
            layer.backward(dy)
            return y

        return run

    y_fast, y_slow = step(fast)(), step(slow)()
    dw = max(float(np.max(np.abs(fast.grads[k] - slow.grads[k]))) for k in fast.grads)
    print(
        f"max |y_kernel - y_numpy|      = {float(np.max(np.abs(y_fast - y_slow))):.2e}"
    )
    print(f"max |dW_kernel - dW_numpy|    = {dw:.2e}")
    err = max(float(np.max(np.abs(y_fast - y_slow))), dw)
    bound = 1e-3  # float32 kernels vs the float32 reference: rounding only
    verdict = "OK" if err <= bound else f"MISMATCH (more than {bound:g})"
    t_fast, t_slow = _best_time(step(fast)), _best_time(step(slow), repeat=2)
    flops = 3 * 2 * T * B * 4 * H * (I + H)
    print(
        f"training step (forward + backward): rnnkit {t_fast * 1e3:.1f} ms "
        f"({flops / t_fast / 1e9:.0f} GFLOP/s), NumPy reference {t_slow * 1e3:.1f} ms "
        f"({flops / t_slow / 1e9:.0f} GFLOP/s): {t_slow / t_fast:.1f}x"
    )
    print(f"kernels agree with the reference: max error {err:.2e}, {verdict}")
    return 0 if err <= bound else 1


def config(args: argparse.Namespace) -> int:
    import rnnkit as rk

    rk.show_config()
    return 0


def bench(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from rnnkit import bench as bench_mod

    return int(bench_mod.main(list(rest)) or 0)


# ----------------------------------------------------------- train / generate
_TRAIN_DEFAULTS: dict[str, Any] = {
    "seq_len": 100,
    "batch": 32,
    "lr": 2e-3,
    "clip": 5.0,
    "val_fraction": 0.05,
}


# Numeric options: (attribute, flag, kind, low, low_open, high, high_open); None
# (the option's default) always passes. Checked before anything is read or
# trained, so a bad value is one line on stderr, never a traceback at the end.
_Spec = tuple[str, str, str, "float | None", bool, "float | None", bool]
_TRAIN_ARGS: list[_Spec] = [
    ("hidden", "--hidden", "int", 1, False, None, False),
    ("layers", "--layers", "int", 1, False, None, False),
    ("embedding", "--embedding", "int", 1, False, None, False),
    ("seq_len", "--seq-len", "int", 1, False, None, False),
    ("batch", "--batch", "int", 1, False, None, False),
    ("lr", "--lr", "real", 0, False, None, False),
    ("clip", "--clip", "real", 0, False, None, False),
    ("val_fraction", "--val-fraction", "real", 0, False, 1, True),
    ("epochs", "--epochs", "int", 1, False, None, False),
    ("time_budget", "--time-budget", "real", 0, True, None, False),
    ("eval_every", "--eval-every", "real", 0, True, None, False),
    ("seed", "--seed", "int", 0, False, None, False),
    ("threads", "--threads", "int", 1, False, None, False),
    ("temperature", "--temperature", "real", 0, False, None, False),
    ("sample_length", "--sample-length", "int", 0, False, None, False),
    ("final_length", "--final-length", "int", 0, False, None, False),
    ("dropout", "--dropout", "real", 0, False, 1, True),
    ("recurrent_dropout", "--recurrent-dropout", "real", 0, False, 1, True),
    ("zoneout", "--zoneout", "real", 0, False, 1, True),
    ("proj_size", "--proj-size", "int", 0, False, None, False),
]
_GENERATE_ARGS: list[_Spec] = [
    ("length", "--length", "int", 0, False, None, False),
    ("temperature", "--temperature", "real", 0, False, None, False),
    ("top_k", "--top-k", "int", 1, False, None, False),
    ("top_p", "--top-p", "real", 0, True, 1, False),
    ("seed", "--seed", "int", 0, False, None, False),
    ("threads", "--threads", "int", 1, False, None, False),
]


def _bad_args(args: argparse.Namespace, specs: list[_Spec]) -> str | None:
    """The first bad numeric option, as ``"--lr must be ..., got nan"``, or None."""
    from rnnkit._checks import integer, real

    for attr, flag, kind, low, low_open, high, high_open in specs:
        v = getattr(args, attr, None)
        if v is None:
            continue
        try:
            if kind == "int":
                integer(flag, v, low=None if low is None else int(low))
            else:
                real(
                    flag, v, low=low, high=high, low_open=low_open, high_open=high_open
                )
        except (TypeError, ValueError) as e:
            return str(e)
    return None


def _check_out(out: Path) -> str | None:
    """Why ``out`` cannot be written (checked before training), or None."""
    import os

    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        return f"--out {out} is a directory"
    if not parent.is_dir():
        return f"--out {out}: directory {parent} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK):  # saved by rename in there
        return f"--out {out}: directory {parent} is not writable"
    return None


def _corpus(path: str | None, encoding: str | None) -> tuple[str, str, str]:
    """``(text, name, encoding)`` of ``path``, or of the corpus shipped with rnnkit."""
    from rnnkit import text as tx

    p = tx.default_corpus_path() if path is None else Path(path)
    if not p.exists():
        raise FileNotFoundError(f"corpus {p} does not exist")
    text, enc = tx.load_text(p, encoding)
    name = (
        f"{tx.DEFAULT_CORPUS} (default corpus, shipped with rnnkit)"
        if path is None
        else str(p)
    )
    return text, name, enc


class _Interrupt:
    """First Ctrl-C (SIGINT), SIGTERM or SIGHUP: finish the step, save, stop.
    Second: quit at once."""

    SIGNALS = tuple(
        getattr(signal, n)
        for n in ("SIGINT", "SIGTERM", "SIGHUP")
        if hasattr(signal, n)
    )

    def __init__(self) -> None:
        self.count = 0
        self.old: dict[int, Any] = {}

    def install(self) -> None:
        for sig in self.SIGNALS:
            try:
                self.old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave the signals alone
                break

    def restore(self) -> None:
        for sig, old in self.old.items():
            signal.signal(sig, old)
        self.old = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count > 1:
            raise KeyboardInterrupt
        by = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
        sys.stderr.write(
            f"\ninterrupted{by}: finishing this step and saving a checkpoint "
            "(Ctrl-C again to quit without saving)\n"
        )
        sys.stderr.flush()

    def __call__(self) -> bool:
        return self.count > 0


def _layer_options(args: argparse.Namespace) -> dict[str, Any]:
    """The recurrent layer's options given on the command line (defaults left out,
    so a cell that does not take one only hears of it when it is asked for)."""
    given = {
        "dropout": args.dropout,
        "recurrent_dropout": args.recurrent_dropout,
        "zoneout": args.zoneout,
        "layer_norm": args.layer_norm or None,
        "proj_size": args.proj_size,
        "forget_bias": args.forget_bias,
    }
    return {k: v for k, v in given.items() if v not in (None, 0)}


def _options_text(options: Any) -> str:
    d = options.as_dict()
    return f" ({', '.join(f'{k}={v}' for k, v in d.items())})" if d else ""


def train(args: argparse.Namespace) -> int:
    """``rnnkit train``: a character-level language model on a text file."""
    bad = _bad_args(args, _TRAIN_ARGS)
    if bad is not None:
        print(f"rnnkit train: {bad}", file=sys.stderr)
        return 2
    interrupted = _Interrupt()
    interrupted.install()  # first thing: a signal during the setup is not lost
    try:
        return _train(args, interrupted)
    except KeyboardInterrupt:
        print(
            "\ninterrupted (nothing saved since the last checkpoint)", file=sys.stderr
        )
        return 130
    finally:
        interrupted.restore()


def _train(args: argparse.Namespace, interrupted: _Interrupt) -> int:
    import hashlib
    from dataclasses import asdict

    import rnnkit as rk
    from rnnkit import text as tx
    from rnnkit._options import Options

    world = rk.distributed.init()  # under mpiexec: data-parallel, rank 0 speaks
    if not world.is_root:
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    if args.threads is not None:
        rk.set_num_threads(args.threads)
    out = Path(args.out)
    why = _check_out(out)
    if why is not None:
        print(f"rnnkit train: {why}", file=sys.stderr)
        return 2
    try:
        text, name, enc = _corpus(args.corpus, args.encoding)
    except (OSError, ValueError) as e:
        print(f"rnnkit train: {e}", file=sys.stderr)
        return 2
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    saved: dict[str, Any] = {}
    start = None
    if args.resume:
        if not out.exists():
            print(f"rnnkit train: --resume: no checkpoint at {out}", file=sys.stderr)
            return 2
        try:
            lm = tx.CharLM.load(out)
        except (OSError, ValueError) as e:
            print(f"rnnkit train: --resume: {e}", file=sys.stderr)
            return 2
        saved = dict(lm.model.meta.get("train") or {})
        start = tx.TrainPosition.from_dict(saved.get("position"))
        if (saved.get("corpus") or {}).get("sha256") not in (None, digest):
            print(
                f"note: {name} is not the corpus {out} was trained on; "
                "continuing on it",
                file=sys.stderr,
            )
            start.batch = 0
    else:
        vocab = tx.Vocab.from_text(text, unknown=args.unknown) if text else None
        if vocab is None:
            print(f"rnnkit train: {name} is empty", file=sys.stderr)
            return 2
        try:
            options = _layer_options(args)
            Options(**options).validated(args.cell, args.hidden)
            lm = tx.CharLM(
                vocab,
                cell=args.cell,
                hidden_size=args.hidden,
                num_layers=args.layers,
                embedding_dim=args.embedding,
                seed=args.seed,
                **options,
            )
        except ValueError as e:
            print(f"rnnkit train: {e}", file=sys.stderr)
            return 2
    cfg: dict[str, Any] = dict(_TRAIN_DEFAULTS)
    cfg.update({k: v for k, v in (saved.get("config") or {}).items() if k in cfg})
    for k, v in list(cfg.items()):
        given = getattr(args, k)
        if given is not None:
            if start is not None and k in ("seq_len", "batch") and given != v:
                start.batch = (
                    0  # another chunking: the position within the epoch is lost
                )
            cfg[k] = given
    try:
        cfg = {k: type(_TRAIN_DEFAULTS[k])(v) for k, v in cfg.items()}
    except (TypeError, ValueError) as e:
        print(f"rnnkit train: bad training settings {cfg}: {e}", file=sys.stderr)
        return 2
    bad = _bad_args(argparse.Namespace(**cfg), [t for t in _TRAIN_ARGS if t[0] in cfg])
    if bad is not None:  # a value from the checkpoint being resumed
        print(f"rnnkit train: {bad} (from {out})", file=sys.stderr)
        return 2
    missing = lm.vocab.missing(text) if start is not None else []
    if missing:
        print(
            f"note: {len(missing)} of the corpus's characters are not in the model's "
            f"vocabulary ({lm.vocab.unknown}): {''.join(missing[:20])!r}",
            file=sys.stderr,
        )
    try:
        ids = lm.vocab.encode(text)
        train_ids, val_ids = tx.split_train_val(ids, cfg["val_fraction"])
        tx.BPTTBatches(train_ids, cfg["batch"], cfg["seq_len"])
    except ValueError as e:
        print(f"rnnkit train: {name}: {e}", file=sys.stderr)
        return 2
    try:  # the prime is encoded by every sample: refuse it now, not after an epoch
        lm.vocab.encode(args.prime)
    except ValueError as e:
        print(f"rnnkit train: --prime: {e}", file=sys.stderr)
        return 2
    if interrupted():
        print("interrupted before training; nothing saved", file=sys.stderr)
        return 130
    c = lm.config
    print(
        f"corpus: {name}: {len(text):,} characters ({enc}), {len(set(text))} distinct; "
        f"training on {len(train_ids):,}, validating on the last {len(val_ids):,}\n"
        f"model: vocabulary {c['vocab_size']}, {c['cell'].upper()} {c['num_layers']} x "
        f"{c['hidden_size']}{_options_text(lm.recurrent.options)}, embedding "
        f"{c['embedding_dim']}, {c['parameters']:,} parameters; "
        f"seq-len {cfg['seq_len']}, "
        f"batch {cfg['batch']}, Adam lr {cfg['lr']:g}, clip {cfg['clip']:g}; "
        f"{rk.get_num_threads()} thread(s), {rk.get_simd()}"
        + (f", {world.size} MPI ranks" if world.size > 1 else "")
        + (
            f"\nresuming {out} at epoch {start.epoch + 1}, step {start.steps}"
            if start is not None
            else ""
        ),
        file=sys.stderr,
    )
    if args.epochs is None and args.time_budget is None:
        args.epochs = 10
    if (
        start is not None
        and args.epochs is not None
        and args.time_budget is None
        and start.epoch >= args.epochs
    ):
        print(
            f"{out} has already been trained for {start.epoch} epochs; ask for more "
            "with --epochs N or --time-budget SECONDS",
            file=sys.stderr,
        )
        return 0
    meta: dict[str, Any] = {
        "config": cfg,
        "corpus": {"name": name, "sha256": digest, "chars": len(text), "encoding": enc},
    }
    best = {"val_bpc": float((saved.get("best_val_bpc")) or math.inf)}

    def sample_text(length: int) -> str:
        return lm.generate_text(
            args.prime,
            length,
            temperature=args.temperature,
            seed=args.seed,
        )

    def checkpoint(position: Any) -> None:
        meta["position"] = asdict(position)
        meta["best_val_bpc"] = best["val_bpc"]
        if world.is_root:  # atomic; the other ranks wait until it is written
            lm.save(out, train=meta)
        world.barrier()

    def on_eval(epoch: int, logs: dict[str, Any]) -> None:
        val_bpc = logs.get("val_bpc", math.nan)
        if math.isfinite(val_bpc):
            best["val_bpc"] = min(best["val_bpc"], val_bpc)
        if logs["event"] == "end":
            return  # saved below
        checkpoint(logs["position"])
        if logs["event"] == "epoch" and args.sample_length > 0 and world.is_root:
            print(f"--- sample after epoch {logs['position'].epoch} ---", flush=True)
            print(args.prime + sample_text(args.sample_length), flush=True)

    print(
        "training "
        + (f"for {args.time_budget:g} s" if args.time_budget is not None else "")
        + (" or " if args.time_budget is not None and args.epochs is not None else "")
        + (f"to epoch {args.epochs}" if args.epochs is not None else "")
        + f"; checkpoints to {out} (Ctrl-C saves and stops)",
        file=sys.stderr,
    )
    sys.stderr.flush()
    history = lm.fit(
        train_ids,
        val_data=val_ids if len(val_ids) > 1 else None,
        epochs=args.epochs,
        max_time=args.time_budget,
        batch_size=cfg["batch"],
        seq_len=cfg["seq_len"],
        lr=cfg["lr"],
        clip_norm=cfg["clip"] if cfg["clip"] > 0 else None,
        eval_every=args.eval_every,
        start=start,
        progress=not args.quiet,
        callback=on_eval,
        should_stop=interrupted,
        distributed=world.size > 1,
    )
    checkpoint(history.position)
    if history.stop_reason == "interrupted":
        print(
            f"saved {out} (epoch {history.position.epoch + 1}, step "
            f"{history.position.steps}); continue with: rnnkit train"
            + (f" {args.corpus}" if args.corpus else "")
            + f" --out {out} --resume",
            file=sys.stderr,
        )
        return 130
    if history.stop_reason == "non-finite loss":
        print("rnnkit train: stopped: the loss became non-finite", file=sys.stderr)
        return 1
    vb = (history.get("val_bpc") or [math.nan])[-1]
    tb = (history.get("bpc") or [math.nan])[-1]
    score = f"validation {vb:.3f}" if math.isfinite(vb) else f"training {tb:.3f}"
    print(
        f"done: {history.position.steps} steps, {history.position.seconds:.0f} s of "
        f"training, {score} bits/char; saved {out}\n"
        f"generate more with: rnnkit generate {out} --length 500",
        file=sys.stderr,
    )
    if args.final_length > 0 and world.is_root:
        print(
            f"--- generated ({args.final_length} characters, temperature "
            f"{args.temperature:g}) ---",
            flush=True,
        )
        print(args.prime + sample_text(args.final_length), flush=True)
    return 0


def generate(args: argparse.Namespace) -> int:
    """``rnnkit generate``: streams text from a model saved by ``rnnkit train``."""
    import rnnkit as rk
    from rnnkit import text as tx

    bad = _bad_args(args, _GENERATE_ARGS)
    if bad is not None:
        print(f"rnnkit generate: {bad}", file=sys.stderr)
        return 2
    if args.threads is not None:
        rk.set_num_threads(args.threads)
    try:
        lm = tx.CharLM.load(args.model)
    except (OSError, ValueError) as e:
        print(f"rnnkit generate: {e}", file=sys.stderr)
        return 2
    try:
        stream = lm.generate(
            args.prime,
            args.length,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            seed=args.seed,
            greedy=args.greedy,
        )
    except ValueError as e:
        print(f"rnnkit generate: {e}", file=sys.stderr)
        return 2
    missing = lm.vocab.missing(args.prime)
    if missing and not args.quiet:
        done = {"skip": "skipped", "replace": "replaced by U+FFFD"}[lm.vocab.unknown]
        print(
            f"note: the prime's characters {''.join(missing)!r} are not in the "
            f"model's vocabulary ({done})",
            file=sys.stderr,
        )
    out = sys.stdout
    live = bool(getattr(out, "isatty", lambda: False)())
    out.write(args.prime)
    t0 = time.perf_counter()
    n = 0
    for ch in stream:
        out.write(ch)
        n += 1
        if live:
            out.flush()
    dt = time.perf_counter() - t0
    out.write("\n")
    out.flush()
    if not args.quiet:
        print(
            f"({n} characters in {dt:.2f} s, {n / max(dt, 1e-9):,.0f} chars/s)",
            file=sys.stderr,
        )
    return 0


def _add_train_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a character-level language model on a text file",
        description="Train a character-level language model (embedding -> LSTM/GRU/RNN "
        "-> linear) with truncated BPTT; print a sample each epoch and text at the "
        "end. Ctrl-C saves a checkpoint; --resume continues it.",
    )
    p.add_argument(
        "corpus",
        nargs="?",
        default=None,
        help="a text file (default: the War and Peace excerpt that ships with rnnkit)",
    )
    p.add_argument(
        "--cell",
        choices=("lstm", "gru", "rnn"),
        default="lstm",
        help="recurrent cell: lstm, gru or rnn (tanh) (lstm)",
    )
    p.add_argument("--hidden", type=int, default=256, help="hidden units (256)")
    p.add_argument("--layers", type=int, default=1, help="stacked layers (1)")
    p.add_argument("--embedding", type=int, default=64, help="embedding size (64)")
    o = p.add_argument_group("regularisers and cell variants (default: off)")
    o.add_argument(
        "--dropout", type=float, default=None, help="between stacked layers (0)"
    )
    o.add_argument(
        "--recurrent-dropout",
        type=float,
        default=None,
        help="variational dropout on h entering the recurrent product (0)",
    )
    o.add_argument(
        "--zoneout", type=float, default=None, help="zoneout rate of h (and c) (0)"
    )
    o.add_argument(
        "--layer-norm", action="store_true", help="LayerNorm LSTM/GRU (haste's)"
    )
    o.add_argument(
        "--proj-size", type=int, default=None, help="LSTM projection size P (off)"
    )
    o.add_argument(
        "--forget-bias",
        type=float,
        default=None,
        help="added to the LSTM forget-gate bias at initialisation (0)",
    )
    p.add_argument(
        "--seq-len", type=int, default=None, help="truncated-BPTT chunk length (100)"
    )
    p.add_argument("--batch", type=int, default=None, help="parallel streams (32)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (2e-3)")
    p.add_argument(
        "--clip", type=float, default=None, help="gradient-norm clipping, 0 = off (5)"
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        help="held-out tail of the corpus (0.05)",
    )
    g = p.add_argument_group("how long (default: 10 epochs)")
    g.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="total epochs (with --resume, counting the earlier ones)",
    )
    g.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds of training for this run (evaluation excluded)",
    )
    p.add_argument(
        "--eval-every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="also evaluate (and checkpoint) every this many seconds",
    )
    p.add_argument(
        "--out",
        default="model.rk",
        help="checkpoint file, written atomically after every evaluation "
        "(model.rk in the current directory; add *.rk to .gitignore)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the checkpoint at --out (model, optimizer, position)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="initial weights and samples (0)"
    )
    p.add_argument("--threads", type=int, default=None, help="OpenMP threads")
    p.add_argument(
        "--encoding", default=None, help="the corpus's encoding (default: detected)"
    )
    p.add_argument(
        "--unknown",
        choices=("error", "skip", "replace"),
        default="skip",
        help="characters outside the vocabulary when generating (skip)",
    )
    p.add_argument("--prime", default="", help="text the samples continue")
    p.add_argument(
        "--temperature", type=float, default=0.8, help="sampling temperature (0.8)"
    )
    p.add_argument(
        "--sample-length",
        type=int,
        default=200,
        help="characters of the sample printed each epoch, 0 = none (200)",
    )
    p.add_argument(
        "--final-length",
        type=int,
        default=500,
        help="characters generated at the end (500)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _add_generate_parser(sub: Any) -> None:
    p = sub.add_parser(
        "generate",
        help="generate text with a model saved by rnnkit train",
        description="Stream text from a character-level model: the prime is read "
        "once, then one step per character with the state carried.",
    )
    p.add_argument("model", help="checkpoint written by rnnkit train (model.rk)")
    p.add_argument("--prime", default="", help="text to continue (printed first)")
    p.add_argument("--length", type=int, default=500, help="characters (500)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (0.8)")
    p.add_argument("--top-k", type=int, default=None, help="keep the k likeliest")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling")
    p.add_argument("--seed", type=int, default=None, help="same seed, same text")
    p.add_argument("--greedy", action="store_true", help="always the likeliest")
    p.add_argument("--threads", type=int, default=None, help="OpenMP threads")
    p.add_argument("--quiet", action="store_true", help="no statistics on stderr")


def export(args: argparse.Namespace) -> int:
    """``rnnkit export``: a checkpoint to ONNX and/or safetensors."""
    import rnnkit as rk

    if not (args.onnx or args.safetensors):
        print("rnnkit export: give --onnx and/or --safetensors", file=sys.stderr)
        return 2
    try:
        model = rk.load(args.model)
        written = []
        if args.onnx:
            written += rk.onnx.export(
                model, args.onnx, opset=args.opset, dtype=args.dtype
            )
        if args.safetensors:
            if not str(args.safetensors).endswith(".safetensors"):
                raise ValueError("--safetensors must name a .safetensors file")
            model.save(args.safetensors)
            written.append(args.safetensors)
    except (OSError, ValueError, ImportError) as e:
        print(f"rnnkit export: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


def _add_export_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="write a checkpoint as ONNX (onnxruntime) and/or safetensors",
        description="Export a model saved by rnnkit (train, Model.save) for "
        "serving without rnnkit: an ONNX graph (an EncoderDecoder writes "
        "<stem>.encoder.onnx and <stem>.decoder.onnx) and/or a safetensors file "
        "with PyTorch's names.",
    )
    p.add_argument("model", help="checkpoint (model.rk, .npz or .safetensors)")
    p.add_argument("--onnx", help="the .onnx file to write (needs rnnkit[onnx])")
    p.add_argument("--safetensors", help="the .safetensors file to write")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (17)")
    p.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default=None,
        help="graph dtype (default the model's; onnxruntime runs float32)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    from rnnkit import __version__

    parser = argparse.ArgumentParser(prog="rnnkit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "demo", help="forward/backward of an LSTM vs the NumPy reference"
    )
    p.add_argument("--T", type=int, default=50)
    p.add_argument("--B", type=int, default=64)
    p.add_argument("--I", type=int, default=256)
    p.add_argument("--H", type=int, default=256)
    sub.add_parser("config", help="print version, SIMD path, threads and build flags")
    sub.add_parser(
        "bench", help="a quick benchmark (rnnkit bench --help)", add_help=False
    )
    _add_train_parser(sub)
    _add_generate_parser(sub)
    _add_export_parser(sub)
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        return bench(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    commands = {
        "demo": demo,
        "config": config,
        "train": train,
        "generate": generate,
        "export": export,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
