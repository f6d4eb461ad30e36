"""Many-to-one: is a bracket string balanced? Sequence classification, variable lengths.

Each example is a string of '(' and ')' of length 2..24; the label says whether
it is balanced. Half of the strings are balanced; most of the others have as
many '(' as ')' but close a bracket too early somewhere (e.g. "())(()"), so
counting characters is not enough: the model must track the nesting depth.

Model: Embedding -> LSTM -> Linear on the state at each string's own last
character (``output="last"`` with ``lengths``), trained with ``rk.fit``.

    python examples/many_to_one.py            # ~2 s on one core
    python examples/many_to_one.py --quick    # under a second (tests)
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import rnnkit as rk

PAD, OPEN, CLOSE = 0, 1, 2
CHARS = {OPEN: "(", CLOSE: ")"}


def balanced(ids: np.ndarray) -> bool:
    depth = np.cumsum(np.where(ids == OPEN, 1, -1))
    return bool(depth.min() >= 0 and depth[-1] == 0)


def random_balanced(n_pairs: int, rng: np.random.Generator) -> list[int]:
    """A random balanced string of ``n_pairs`` pairs (random walk kept >= 0)."""
    out, depth, opens = [], 0, n_pairs
    for _ in range(2 * n_pairs):
        # open with the probability that keeps both choices possible
        can_open, can_close = opens > 0, depth > 0
        if can_open and (not can_close or rng.random() < 0.5):
            out.append(OPEN)
            depth, opens = depth + 1, opens - 1
        else:
            out.append(CLOSE)
            depth -= 1
    return out


def make_data(n: int, max_len: int, rng: np.random.Generator):
    x = np.zeros((n, max_len), dtype=np.int64)
    y = np.zeros(n, dtype=np.int64)
    lengths = np.zeros(n, dtype=np.int64)
    for i in range(n):
        s = np.array(random_balanced(int(rng.integers(1, max_len // 2 + 1)), rng))
        if i % 2:  # negative: a hard one (same counts, a bad prefix) or an odd count
            if rng.random() < 0.8 and len(s) > 2:
                while balanced(s):
                    j, k = rng.choice(len(s), 2, replace=False)
                    s[j], s[k] = s[k], s[j]
            else:
                s = (
                    s[:-1]
                    if rng.random() < 0.5 or len(s) == max_len
                    else np.append(s, OPEN)
                )
        x[i, : len(s)] = s
        lengths[i], y[i] = len(s), int(balanced(s))
    return x, y, lengths


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        default=bool(os.environ.get("RNNKIT_EXAMPLE_QUICK")),
        help="tiny settings (for the tests)",
    )
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    n_train, epochs = (400, 1) if args.quick else (4000, args.epochs)

    rng = np.random.default_rng(args.seed)
    max_len = 24
    train = make_data(n_train, max_len, rng)
    test = make_data(1000 if not args.quick else 200, max_len, rng)

    model = rk.Sequential(
        rk.Embedding(3, 8, seed=args.seed),
        rk.LSTM(8, 32, seed=args.seed + 1),
        rk.Linear(32, 2, seed=args.seed + 2),
        output="last",  # the state at each row's last valid step (lengths)
    )
    opt = rk.Adam(
        model,
        lr=0.01,
        schedule=rk.CosineDecay(epochs * n_train // 64 + 1, min_factor=0.1),
    )
    t0 = time.perf_counter()
    hist = rk.fit(
        model,
        "cross_entropy",
        opt,
        train,
        val_data=test,
        epochs=epochs,
        batch_size=64,
        metrics=["accuracy"],
        clip_norm=5.0,
        progress=not args.quick,
    )
    seconds = time.perf_counter() - t0

    acc = hist["val_accuracy"][-1]
    chance = max(test[1].mean(), 1 - test[1].mean())
    print(f"\ntrained {hist.steps} steps in {seconds:.1f} s")
    print(f"test accuracy: {acc:.3f}   (majority-class baseline {chance:.3f})")
    logits = model.predict(test[0][:6], lengths=test[2][:6])
    for ids, n, label, pred in zip(test[0], test[2], test[1], logits.argmax(-1)):
        s = "".join(CHARS[int(c)] for c in ids[:n])
        print(f"  {s:<24}  balanced={bool(label)!s:<5}  predicted={bool(pred)}")
    return {"accuracy": acc, "baseline": chance, "seconds": seconds}


if __name__ == "__main__":
    main()
