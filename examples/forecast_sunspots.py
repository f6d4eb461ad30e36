"""Many-to-many (aligned): one-year-ahead forecasts of the yearly sunspot numbers.

At every year t the model reads the number of year t and predicts year t+1, so
input and output sequences are aligned step for step. The series (1700-2008,
examples/data/sunspots_yearly.csv, from NOAA via statsmodels) is split in time:
the model trains on 1700-1929 and is scored on 1930-2008, which it never saw.
The baseline to beat is the naive forecast "next year = this year".

Model: GRU -> Linear at every step, MSE loss on sqrt-transformed, standardised
values, trained on random 40-year windows; the whole history is then run through
the model to forecast the test years, and the checkpoint (with the normalisation
in ``model.meta``) is saved and reloaded to show that predictions survive.

    python examples/forecast_sunspots.py           # ~8 s on one core
    python examples/forecast_sunspots.py --quick   # under a second (tests)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import rnnkit as rk

DATA = Path(__file__).resolve().parent / "data" / "sunspots_yearly.csv"
SPLIT_YEAR = 1930


def load_series() -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(DATA, delimiter=",", comments="#", skiprows=4)
    return table[:, 0].astype(int), table[:, 1]


def windows(z: np.ndarray, length: int, n: int, rng: np.random.Generator):
    """n random windows: inputs z[s : s+length], targets z[s+1 : s+length+1]."""
    starts = rng.integers(0, len(z) - length - 1, size=n)
    x = np.stack([z[s : s + length] for s in starts])[..., None]
    y = np.stack([z[s + 1 : s + length + 1] for s in starts])[..., None]
    return x.astype(np.float32), y.astype(np.float32)


def forecast(model: rk.Sequential, z: np.ndarray) -> np.ndarray:
    """One-step-ahead forecasts for every year from the whole history so far."""
    return model.forward(z[None, :, None].astype(np.float32), train=False)[0, :, 0]


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

    years, spots = load_series()
    split = int(np.searchsorted(years, SPLIT_YEAR))
    # sqrt tames the tall peaks; standardise with training statistics only
    r = np.sqrt(spots)
    mean, std = float(r[:split].mean()), float(r[:split].std())
    z = (r - mean) / std

    rng = np.random.default_rng(args.seed)
    x, y = windows(z[:split], 40, 1024, rng)
    xv, yv = windows(z[:split], 40, 64, rng)

    model = rk.Sequential(
        rk.GRU(1, 64, seed=args.seed), rk.Linear(64, 1, seed=args.seed + 1)
    )
    opt = rk.Adam(model, lr=0.01, schedule=rk.CosineDecay(epochs * 32, min_factor=0.05))
    t0 = time.perf_counter()
    hist = rk.fit(
        model,
        "mse",
        opt,
        (x, y),
        val_data=(xv, yv),
        epochs=epochs,
        batch_size=32,
        clip_norm=1.0,
        progress=not args.quick,
    )
    seconds = time.perf_counter() - t0

    # forecast year t+1 from years <= t, for every test year
    pred_z = forecast(model, z)[split - 1 : -1]
    pred = np.maximum(pred_z * std + mean, 0.0) ** 2  # back to sunspot numbers
    truth = spots[split:]
    naive = spots[split - 1 : -1]  # next year = this year
    rmse = float(np.sqrt(np.mean((pred - truth) ** 2)))
    rmse_naive = float(np.sqrt(np.mean((naive - truth) ** 2)))

    # checkpoint round trip: weights + optimizer + normalisation in one file
    model.meta = {
        "mean": mean,
        "std": std,
        "transform": "sqrt",
        "split_year": SPLIT_YEAR,
    }
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "sunspots.npz")
        again = rk.load(Path(tmp) / "sunspots.npz")
    assert np.array_equal(forecast(again, z), forecast(model, z))

    print(f"\ntrained {hist.steps} steps in {seconds:.1f} s")
    print(
        f"one-year-ahead RMSE on {years[split]}-{years[-1]}: {rmse:.1f} sunspots "
        f"(naive last-value baseline {rmse_naive:.1f})"
    )
    for yr, p, t in list(zip(years[split:], pred, truth))[-8:]:
        print(f"  {yr}: predicted {p:6.1f}   actual {t:6.1f}")
    return {"rmse": rmse, "baseline": rmse_naive, "seconds": seconds}


if __name__ == "__main__":
    main()
