"""The classic first RNN: GeeksforGeeks' character text generator, in rnnkit.

The tutorial ("Introduction to Recurrent Neural Network", GeeksforGeeks) trains a
Keras model on one sentence and lets it continue a seed:

* text "This is GeeksforGeeks a software training institute", its characters
  sorted into a vocabulary of V = 17;
* every window of 3 characters is an input (one-hot, (3, V)), the character after
  it the target: 48 examples;
* one vanilla RNN layer of 50 units with ReLU, then a dense softmax layer;
* Adam (learning rate 0.001), categorical cross-entropy, 100 epochs, batches of 32
  (Keras' defaults, shuffled each epoch);
* then greedy generation of 50 characters from the seed "This is G": each step
  feeds the last 3 characters and appends the most likely next one.

Here the same model is ``Sequential(RNN(V, 50, nonlinearity="relu"), Linear(50, V),
output="last")``; the softmax is fused into the cross-entropy (``rk.fit`` with
``"cross_entropy"`` on integer targets is categorical cross-entropy on one-hot
ones). The weights start as Keras starts them (Glorot-uniform input and output
kernels, orthogonal recurrent kernel, zero biases), so the run is the tutorial's
run, not merely a similar one. Generation re-reads a 3-character window from a zero
state at every step because that is the model the tutorial defines (it was trained
on windows); for a model that carries its state, see ``rnnkit.text.CharLM``.

What to expect: three characters do not always determine the next one ("eks" is
followed by "f" once and by " " once), so the greedy continuation settles into a
loop, "GeeksforGeeksforGeeks..." or "...traininininin" depending on the seed;
that is the tutorial's model, faithfully reproduced, not a bug.

    python examples/seed_text_generator.py           # well under a second
    python examples/seed_text_generator.py --quick   # the same: it is already tiny
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import rnnkit as rk

TEXT = "This is GeeksforGeeks a software training institute"
SEED_TEXT = "This is G"
SEQ_LENGTH = 3


def glorot_uniform(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Keras' default kernel initialiser: U(-a, a), a = sqrt(6 / (fan_in + fan_out))."""
    fan_out, fan_in = shape  # rnnkit / PyTorch store (out, in)
    a = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=shape)


def orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    """Keras' default recurrent initialiser: a random orthogonal matrix."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def one_hot(ids: np.ndarray, V: int) -> np.ndarray:
    return np.eye(V, dtype=np.float32)[ids]


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        default=bool(os.environ.get("RNNKIT_EXAMPLE_QUICK")),
        help="for the tests (the full run is already under a second or two)",
    )
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--length", type=int, default=50, help="characters to generate")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    chars = sorted(set(TEXT))
    V = len(chars)
    char_to_index = {c: i for i, c in enumerate(chars)}
    ids = np.array([char_to_index[c] for c in TEXT])
    # every window of 3 characters -> the character after it
    X = np.stack([ids[i : i + SEQ_LENGTH] for i in range(len(TEXT) - SEQ_LENGTH)])
    y = ids[SEQ_LENGTH:]
    X_one_hot = one_hot(X, V)  # (48, 3, V)

    rnn = rk.RNN(V, 50, nonlinearity="relu")
    dense = rk.Linear(50, V)
    rng = np.random.default_rng(args.seed)
    rnn.params["weight_ih_l0"][...] = glorot_uniform(rng, (50, V))
    rnn.params["weight_hh_l0"][...] = orthogonal(rng, 50)
    rnn.params["bias_ih_l0"][...] = 0
    rnn.params["bias_hh_l0"][...] = 0
    dense.params["weight"][...] = glorot_uniform(rng, (V, 50))
    dense.params["bias"][...] = 0
    model = rk.Sequential(rnn, dense, output="last")
    opt = rk.Adam(model, lr=0.001)

    t0 = time.perf_counter()
    hist = rk.fit(
        model,
        "cross_entropy",
        opt,
        (X_one_hot, y),
        epochs=args.epochs,
        batch_size=32,
        metrics=None,
        seed=args.seed,
        progress=False,
    )
    train_seconds = time.perf_counter() - t0
    acc = float(np.mean(model.predict(X_one_hot).argmax(-1) == y))

    # greedy generation, the tutorial's loop: the last 3 characters in, argmax out
    t0 = time.perf_counter()
    generated = SEED_TEXT
    for _ in range(args.length):
        window = np.array([[char_to_index[c] for c in generated[-SEQ_LENGTH:]]])
        logits = model.forward(one_hot(window, V), train=False)
        generated += chars[int(np.argmax(logits[0]))]
    gen_seconds = time.perf_counter() - t0

    print(f"text: {TEXT!r} ({len(TEXT)} characters, {V} distinct, {len(y)} windows)")
    print(
        f"model: RNN(relu, 50) -> Linear({V}) softmax, {model.num_parameters:,} "
        f"parameters; Adam 0.001, {args.epochs} epochs of batches of 32"
    )
    print(
        f"trained in {train_seconds:.2f} s ({hist.steps} steps); final loss "
        f"{hist['loss'][-1]:.4f}, next-character accuracy on the windows {acc:.2f}"
    )
    print(
        f"generated text ({args.length} characters, greedy, "
        f"{gen_seconds * 1e3:.0f} ms):"
    )
    print(generated)
    return {
        "generated": generated,
        "loss": hist["loss"][-1],
        "accuracy": acc,
        "train_seconds": train_seconds,
    }


if __name__ == "__main__":
    main()
