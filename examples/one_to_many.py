"""One-to-many: one input vector generates a sequence — numbers spelled out.

The input is a number 0-99 as one vector (one-hot tens digit + one-hot units
digit); the output is its English name, one character per step ("42" ->
"forty two."). The vector is fed at every step (``input="vector"``,
``steps=T``) and a Linear layer reads out a character at each step.

A few numbers (e.g. 47, 83) are held out: the model has seen "forty ..." and
"... seven" but never "forty seven", so spelling them right means it composed
the name from its parts rather than memorising it.

    python examples/one_to_many.py           # ~4 s on one core
    python examples/one_to_many.py --quick   # under a second (tests)
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import rnnkit as rk

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEENS = [
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
TENS = [
    "",
    "",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
]
HELD_OUT = [23, 38, 47, 56, 64, 72, 83, 95, 29, 51]


def name(n: int) -> str:
    if n < 10:
        return ONES[n]
    if n < 20:
        return TEENS[n - 10]
    return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])


CHARS = sorted(set(".".join(name(n) for n in range(100)) + "."))  # "." ends a name
T = max(len(name(n)) for n in range(100)) + 1


def encode(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, targets): one-hot digits (N, 20) and character ids (N, T), -100 after '.'."""
    x = np.zeros((len(numbers), 20), dtype=np.float32)
    x[np.arange(len(numbers)), numbers // 10] = 1
    x[np.arange(len(numbers)), 10 + numbers % 10] = 1
    y = np.full((len(numbers), T), -100, dtype=np.int64)  # ignored by the loss
    for i, n in enumerate(numbers):
        s = name(int(n)) + "."
        y[i, : len(s)] = [CHARS.index(c) for c in s]
    return x, y


def spell(logits: np.ndarray) -> str:
    s = "".join(CHARS[i] for i in logits.argmax(-1))
    return s.split(".")[0]


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        default=bool(os.environ.get("RNNKIT_EXAMPLE_QUICK")),
        help="tiny settings (for the tests)",
    )
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    epochs = 3 if args.quick else args.epochs

    train_n = np.array([n for n in range(100) if n not in HELD_OUT])
    test_n = np.array(HELD_OUT)
    x, y = encode(train_n)
    xt, yt = encode(test_n)

    model = rk.Sequential(
        rk.Linear(20, 32, activation="tanh", seed=args.seed),
        rk.GRU(32, 96, seed=args.seed + 1),
        rk.Linear(96, len(CHARS), seed=args.seed + 2),
        input="vector",
        steps=T,  # the same vector at each of the T steps
    )
    opt = rk.Adam(model, lr=0.005, schedule=rk.CosineDecay(epochs * 6, min_factor=0.1))
    t0 = time.perf_counter()
    hist = rk.fit(
        model,
        "cross_entropy",
        opt,
        (x, y),
        val_data=(xt, yt),
        epochs=epochs,
        batch_size=16,
        metrics=["accuracy"],
        progress=not args.quick,
    )
    seconds = time.perf_counter() - t0

    def exact(xs: np.ndarray, ns: np.ndarray) -> tuple[float, list[str]]:
        words = [spell(row) for row in model.predict(xs)]
        return float(np.mean([w == name(int(n)) for w, n in zip(words, ns)])), words

    train_exact, _ = exact(x, train_n)
    test_exact, words = exact(xt, test_n)
    # baseline: the most frequent character at each position, from the training names
    y_flat = np.where(y < 0, len(CHARS), y)
    mode = [
        np.bincount(col, minlength=len(CHARS) + 1)[:-1].argmax() for col in y_flat.T
    ]
    valid = yt >= 0
    base_chars = float(((yt == np.array(mode)[None, :]) & valid).sum() / valid.sum())
    print(f"\ntrained {hist.steps} steps in {seconds:.1f} s")
    print(
        f"spelled exactly: {train_exact:.2f} of the training numbers, {test_exact:.2f} "
        f"of {len(test_n)} held-out numbers (a memoriser gets 0.00)"
    )
    print(
        f"held-out characters right: {hist['val_accuracy'][-1]:.3f}   "
        f"(most-frequent-character baseline {base_chars:.3f})"
    )
    for n, w in zip(test_n, words):
        print(
            f"  {n:2d} -> {w!r}"
            + ("" if w == name(int(n)) else f"  (want {name(int(n))!r})")
        )
    return {
        "exact_held_out": test_exact,
        "exact_train": train_exact,
        "char_accuracy": hist["val_accuracy"][-1],
        "baseline": base_chars,
        "seconds": seconds,
    }


if __name__ == "__main__":
    main()
