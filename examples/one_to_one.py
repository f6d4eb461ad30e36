"""One-to-one: a single step in, a single label out — three interleaved spirals.

Each example is a point (x, y) on one of three spiral arms; the label is the arm.
A recurrent layer run for one step (``input="vector"``, ``steps=1``,
``output="last"``) is a dense layer with a gated nonlinearity, and that is all
this shape needs: the same building blocks cover the degenerate case.

    python examples/one_to_one.py           # ~2 s on one core
    python examples/one_to_one.py --quick   # under a second (tests)
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import rnnkit as rk


def spirals(n: int, rng: np.random.Generator, classes: int = 3):
    """n noisy points on ``classes`` spiral arms (CS231n's toy data set)."""
    label = rng.integers(0, classes, size=n)
    r = rng.random(n)
    theta = label * 2 * np.pi / classes + r * 4 + rng.normal(0, 0.2, n)
    x = np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1)
    return x.astype(np.float32), label


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        default=bool(os.environ.get("RNNKIT_EXAMPLE_QUICK")),
        help="tiny settings (for the tests)",
    )
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    epochs = 2 if args.quick else args.epochs

    rng = np.random.default_rng(args.seed)
    train, test = spirals(3000, rng), spirals(1000, rng)

    model = rk.Sequential(
        rk.GRU(2, 64, seed=args.seed),
        rk.Linear(64, 64, activation="relu", seed=args.seed + 1),
        rk.Linear(64, 3, seed=args.seed + 2),
        input="vector",
        steps=1,
        output="last",
    )
    opt = rk.Adam(model, lr=0.01, schedule=rk.StepDecay(epochs * 47 // 3 + 1, 0.3))
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
        early_stopping=15,
        progress=not args.quick,
    )
    seconds = time.perf_counter() - t0

    acc = hist["val_accuracy"][hist.best_epoch if hist.best_epoch is not None else -1]
    chance = float(np.bincount(test[1]).max() / len(test[1]))
    print(f"\ntrained {hist.steps} steps in {seconds:.1f} s")
    print(f"test accuracy: {acc:.3f}   (chance / majority class {chance:.3f})")
    # a coarse map of what it learned: the predicted arm on a grid
    g = np.linspace(-1, 1, 21, dtype=np.float32)
    grid = np.stack(np.meshgrid(g, -g), axis=-1).reshape(-1, 2)
    arm = model.predict(grid).argmax(-1).reshape(21, 21)
    print("\n".join("  " + " ".join("abc"[k] for k in row) for row in arm))
    return {"accuracy": acc, "baseline": chance, "seconds": seconds}


if __name__ == "__main__":
    main()
