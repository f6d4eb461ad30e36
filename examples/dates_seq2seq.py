"""Many-to-many (encoder-decoder): dates written in words -> ISO dates.

    "the twenty third of march nineteen ninety one"  ->  1991-03-23
    "july fourth two thousand five"                  ->  2005-07-04

The encoder (Embedding -> GRU) reads the words; its final state starts the
decoder (Embedding -> GRU -> Linear), which writes the ISO date one character at
a time. Training uses teacher forcing (the decoder reads the true previous
character); evaluation uses greedy decoding (it reads its own previous output)
on dates it never saw, and counts exact matches.

    python examples/dates_seq2seq.py            # ~20 s on one core
    python examples/dates_seq2seq.py --quick    # under a second (tests)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from collections import Counter

import numpy as np

import rnnkit as rk

ONES = ["", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
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
ORD = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]


def number(n: int) -> list[str]:
    """0 < n < 100 in words."""
    if n < 10:
        return [ONES[n]]
    if n < 20:
        return [TEENS[n - 10]]
    return [TENS[n // 10]] + ([ONES[n % 10]] if n % 10 else [])


def ordinal(n: int) -> list[str]:
    words = number(n)
    last = words[-1]
    if last in ORD:
        last = ORD[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return words[:-1] + [last]


def year_words(y: int) -> list[str]:
    if 2000 <= y < 2010:
        return ["two", "thousand"] + ([ONES[y % 10]] if y % 10 else [])
    hi, lo = divmod(y, 100)
    return number(hi) + (["oh", ONES[lo]] if lo < 10 else number(lo))


def spell(d: dt.date, style: int) -> list[str]:
    day, month, year = ordinal(d.day), [MONTHS[d.month - 1]], year_words(d.year)
    if style == 0:
        return ["the"] + day + ["of"] + month + year
    if style == 1:
        return month + day + year
    return day + month + [","] + year


# target characters: 0 = BOS, 1 = EOS, then the ISO characters
TGT = ["<bos>", "<eos>"] + list("0123456789-")
BOS, EOS = 0, 1


def make_data(n: int, rng: np.random.Generator, src_vocab: dict[str, int]):
    start = dt.date(1901, 1, 1).toordinal()
    days = rng.integers(0, dt.date(2029, 12, 31).toordinal() - start + 1, size=n)
    sentences, targets = [], []
    for k in days:
        d = dt.date.fromordinal(start + int(k))
        sentences.append(spell(d, int(rng.integers(0, 3))))
        targets.append([TGT.index(c) for c in d.isoformat()])
    S = max(len(s) for s in sentences)
    src = np.zeros((n, S), dtype=np.int64)  # 0 = padding
    lengths = np.array([len(s) for s in sentences])
    for i, s in enumerate(sentences):
        src[i, : len(s)] = [src_vocab[w] for w in s]
    tgt = np.array(targets)
    tgt_in = np.concatenate([np.full((n, 1), BOS), tgt], axis=1)  # BOS y0 ... y9
    tgt_out = np.concatenate([tgt, np.full((n, 1), EOS)], axis=1)  # y0 ... y9 EOS
    return src, lengths, tgt_in, tgt_out, sentences


def source_vocab() -> list[str]:
    words = {
        ",",
        "the",
        "of",
        "oh",
        "thousand",
        *MONTHS,
        *TEENS,
        *filter(None, ONES),
        *filter(None, TENS),
    }
    words |= {w for n in range(1, 32) for w in ordinal(n)}
    return ["<pad>"] + sorted(words)  # sorted: the same ids on every run


def decode(ids: np.ndarray) -> str:
    out = []
    for i in ids:
        if i == EOS:
            break
        out.append(TGT[int(i)] if i > EOS else "?")
    return "".join(out)


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        default=bool(os.environ.get("RNNKIT_EXAMPLE_QUICK")),
        help="tiny settings (for the tests)",
    )
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    n_train, epochs = (512, 1) if args.quick else (8000, args.epochs)

    vocab = source_vocab()
    index = {w: i for i, w in enumerate(vocab)}
    rng = np.random.default_rng(args.seed)
    src, lengths, tgt_in, tgt_out, _ = make_data(n_train, rng, index)
    t_src, t_lengths, t_in, t_out, t_words = make_data(
        100 if args.quick else 1000, rng, index
    )

    H, s = 128, args.seed
    encoder = rk.Sequential(
        rk.Embedding(len(vocab), 32, padding_idx=0, seed=s), rk.GRU(32, H, seed=s + 1)
    )
    decoder = rk.Sequential(
        rk.Embedding(len(TGT), 16, seed=s + 2),
        rk.GRU(16, H, seed=s + 3),
        rk.Linear(H, len(TGT), seed=s + 4),
    )
    model = rk.EncoderDecoder(encoder, decoder)
    model.vocab = {"source": vocab, "target": TGT}
    steps = epochs * (n_train // 64 + 1)
    # lr 0.01 annealed to 1e-4: at 0.005 (-> 2.5e-4) the loss was still falling
    # when the schedule ended, and where the plateau broke depended on the SIMD
    # path's rounding (0.66 exact on AVX-512, 0.99 on AVX2 with seed 0). At this
    # rate every path and seed tried converges well inside the 12 epochs.
    opt = rk.Adam(
        model,
        lr=0.01,
        schedule=rk.LinearWarmup(50, rk.CosineDecay(steps, min_factor=0.01)),
    )
    t0 = time.perf_counter()
    hist = rk.fit(
        model,
        "cross_entropy",
        opt,
        {"x": (src, tgt_in), "y": tgt_out, "lengths": lengths},
        val_data={"x": (t_src, t_in), "y": t_out, "lengths": t_lengths},
        epochs=epochs,
        batch_size=64,
        clip_norm=1.0,
        progress=not args.quick,
    )
    seconds = time.perf_counter() - t0

    out = model.greedy_decode(t_src, BOS, EOS, max_len=11, lengths=t_lengths)
    pred = [decode(row) for row in out]
    truth = [decode(row) for row in t_out]
    exact = float(np.mean([p == t for p, t in zip(pred, truth)]))
    chars = float(
        np.mean(
            [
                sum(a == b for a, b in zip(p.ljust(10), t)) / 10
                for p, t in zip(pred, truth)
            ]
        )
    )
    # baseline: always answer the most common training date (about 1 / 47000 right)
    common = decode(Counter(map(tuple, tgt_out)).most_common(1)[0][0])
    base = float(np.mean([common == t for t in truth]))
    print(f"\ntrained {hist.steps} steps in {seconds:.1f} s")
    print(
        f"exact-match accuracy on {len(truth)} unseen dates: {exact:.3f}   "
        f"(most-common-date baseline {base:.3f}); characters right: {chars:.3f}"
    )
    for words, p, t in list(zip(t_words, pred, truth))[:6]:
        mark = "ok" if p == t else "WRONG"
        print(f"  {' '.join(words):<50} -> {p:<10} ({t}) {mark}")
    return {
        "exact_match": exact,
        "baseline": base,
        "char_accuracy": chars,
        "seconds": seconds,
    }


if __name__ == "__main__":
    main()
