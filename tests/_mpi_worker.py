"""What ``tests/test_distributed.py`` runs under ``mpiexec`` (and in-process).

``python tests/_mpi_worker.py OUTDIR`` runs every case on this rank's share and
writes ``OUTDIR/rank<r>.npz``; :func:`run_all` is the same in one process, with
``distributed=False`` (the plain single-process path) or a one-rank world.
``python tests/_mpi_worker.py --fail`` makes rank 1 raise while rank 0 waits in
a collective.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

import rnnkit as rk
from rnnkit import distributed as dist
from rnnkit import text as tx

B, T, F, H, C = 7, 6, 3, 5, 4  # B = 7: uneven shares over 2 and 4 ranks
STEPS = 4


class NoUpdate:
    """An optimizer that leaves the parameters alone (to read the gradient)."""

    step_count = 0
    state: dict[str, list[np.ndarray]] = {}

    def step(self) -> None:
        pass


def _data(seed: int = 0, n: int = 2 * B) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, T, F))
    y = rng.integers(0, C, (n, T))
    lengths = rng.integers(1, T + 1, n)
    y[0, 0] = -100  # ignore_index: the count is not rows x steps
    return x, y, lengths


# the layer options that draw masks (issue 12): dropout between the two layers,
# recurrent dropout, zoneout
OPTIONS = dict(num_layers=2, dropout=0.3, recurrent_dropout=0.3, zoneout=0.2)


def _model(dropout: bool = False, options: bool = False) -> Any:
    kw: dict[str, Any] = OPTIONS if options else {}
    layers: list[Any] = [rk.LSTM(F, H, dtype="float64", seed=1, **kw)]
    if dropout:
        layers.append(rk.Dropout(0.3, seed=5))
    layers.append(rk.Linear(H, C, dtype="float64", seed=2))
    return rk.Sequential(*layers)


def _gradient(distributed: Any) -> np.ndarray:
    """The gradient of one global batch (lengths, mask, ignore_index)."""
    model = _model()
    x, y, lengths = _data()
    x, y, lengths = x[:B], y[:B], lengths[:B]
    if distributed is False:
        model.zero_grad()
        out = model.forward(x, lengths=lengths, train=True)
        Tm = int(lengths.max())
        mask = rk.losses.length_mask(lengths, Tm)
        _, d = rk.losses.cross_entropy(out, y[:, :Tm], mask=mask)
        model.backward(d)
        return model._flat_grads.copy()
    rk.fit(
        model,
        "cross_entropy",
        NoUpdate(),
        (x, y, lengths),
        batch_size=B,
        shuffle=False,
        max_steps=1,
        clip_norm=1e9,  # clipping code runs, changes nothing
        progress=False,
        distributed=distributed,
    )
    return model._flat_grads.copy()


def _gradient_sync(bucket_bytes: int, overlap: bool) -> np.ndarray:
    """As :func:`_gradient`, through ``DistributedFit.step`` with the given
    grouping: one group per leaf (``bucket_bytes=0``) or one blocking reduction."""
    model = _model()
    x, y, lengths = _data()
    x, y, lengths = x[:B], y[:B], lengths[:B]
    Tm = int(lengths.max())
    batch = rk.train.Batch((x[:, :Tm],), y[:, :Tm], lengths, None)
    step = dist.DistributedFit(
        model,
        NoUpdate(),
        [batch],  # a list is no DataSource; batches are sharded below
        rk.losses.get_loss("cross_entropy"),
        overlap=overlap,
        bucket_bytes=bucket_bytes,
    )
    lo, hi = dist.share(B)
    step.source.row0, step.source.rows = lo, hi - lo
    mask = rk.losses.length_mask(lengths[lo:hi], Tm)
    step.step(
        (x[lo:hi, :Tm],), y[lo:hi, :Tm], lengths[lo:hi], mask, None, None, None, 0,
        hi - lo, hi - lo,
    )  # fmt: skip
    return model._flat_grads.copy()


def _fit(
    opt: str, distributed: Any, dropout: bool = False, options: bool = False
) -> dict[str, Any]:
    model = _model(dropout, options)
    optimizer: Any = rk.Adam(model, lr=1e-2)
    if opt == "sgd":
        optimizer = rk.SGD(model, lr=0.5, momentum=0.9)
    x, y, lengths = _data(1)
    xv, yv, lv = _data(2, n=9)
    h = rk.fit(
        model,
        "cross_entropy",
        optimizer,
        (x, y, lengths),
        val_data=(xv, yv, lv),
        metrics=["accuracy"],
        batch_size=B,
        max_steps=STEPS,
        eval_every_steps=2,
        clip_norm=0.5,  # the global norm exceeds it: clipping acts
        seed=3,
        progress=False,
        distributed=distributed,
    )
    return {
        "params": model._flat_params.copy(),
        "loss": np.array(h["loss"]),
        "val_loss": np.array(h["val_loss"]),
        "val_accuracy": np.array(h["val_accuracy"]),
        "items": np.array(h.position.items),
    }


TEXT = "the quick brown fox jumps over the lazy dog. " * 12


def _charlm(distributed: Any) -> dict[str, Any]:
    vocab = tx.Vocab.from_text(TEXT)
    lm = tx.CharLM(vocab, hidden_size=6, embedding_dim=4, dtype="float64", seed=0)
    h = lm.fit(
        TEXT[:-60],
        val_data=TEXT[-60:],
        batch_size=5,
        seq_len=7,
        max_steps=6,  # chunks 0..5: the state is carried five times
        eval_every_steps=3,
        eval_batch_size=5,
        progress=False,
        distributed=distributed,
    )
    return {
        "params": lm.model._flat_params.copy(),
        "loss": np.array(h["loss"]),
        "val_loss": np.array(h["val_loss"]),
        "items": np.array(h.position.items),
    }


def run_all(distributed: Any) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {"grad": _gradient(distributed)}
    for opt in ("sgd", "adam"):
        for k, v in _fit(opt, distributed).items():
            out[f"{opt}_{k}"] = v
    if distributed is not False:  # keyed masks: only the distributed path
        out["grad_per_leaf"] = _gradient_sync(0, True)
        out["grad_blocking"] = _gradient_sync(0, False)
        for k, v in _fit("adam", distributed, dropout=True).items():
            out[f"dropout_{k}"] = v
        for k, v in _fit("adam", distributed, options=True).items():
            out[f"options_{k}"] = v
    for k, v in _charlm(distributed).items():
        out[f"charlm_{k}"] = v
    return out


def main(argv: list[str]) -> int:
    world = dist.init()
    if argv[0] == "--fail":
        if world.rank == 1:
            raise RuntimeError("rank 1 fails on purpose")
        world.allreduce(np.zeros(1))  # rank 0 would wait here forever
        return 0
    res = run_all(True)
    res["size"] = np.array(world.size)
    np.savez(Path(argv[0]) / f"rank{world.rank}.npz", **res)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
