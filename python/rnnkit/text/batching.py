"""Batching text: a held-out tail, stateful truncated-BPTT batches (a
:class:`rnnkit.train.DataSource`), and the layout evaluation reads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..train import Batch


def split_train_val(
    ids: Any, val_fraction: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)``: the last ``val_fraction`` of ``ids`` held out (a tail).

    A tail rather than a random sample: text is one long sequence, and a
    held-out tail is text the model has never read in any context. With
    ``val_fraction=0`` the validation part is empty.
    """
    ids = np.asarray(ids)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = round(len(ids) * val_fraction)
    if n_val == 1:
        n_val = 2  # one character predicts nothing
    if len(ids) - n_val < 2:
        raise ValueError(
            f"text of {len(ids)} characters is too short to hold out "
            f"{val_fraction:.0%} and still train"
        )
    return ids[: len(ids) - n_val], ids[len(ids) - n_val :]


class BPTTBatches:
    """Stateful truncated-BPTT batches: B parallel streams, chunks of T steps.

    The N ids give N - 1 (input, next character) pairs; they are cut into B
    streams of ``n = (N - 1) // B`` consecutive pairs (up to B - 1 pairs at the
    end are dropped). Chunk ``j`` is columns ``[j T, (j + 1) T)`` of every stream
    (the last chunk may be shorter), so row ``b`` of chunk ``j + 1`` continues
    row ``b`` of chunk ``j``: the final hidden state of one chunk is the initial
    state of the next.

    It is a :class:`rnnkit.train.DataSource` (what :func:`rnnkit.fit` trains on):
    ``batches(epoch, start)`` yields chunk ``start`` on as :class:`rnnkit.train.Batch`
    objects whose rows all continue the previous chunk's (``carry``), except
    chunk 0; ``items`` counts characters (``unit = "chars"``). Every epoch reads
    the same chunks.

    Shapes
    ------
    ``batches[j]`` -> ``(x, y)``, both int64 (B, T_j), ``y[b, t]`` the character
    after ``x[b, t]``.

    Examples
    --------
    >>> b = BPTTBatches(np.arange(11), batch_size=2, seq_len=3)
    >>> len(b), b[0][0].tolist(), b[1][0].tolist(), b[0][1].tolist()
    (2, [[0, 1, 2], [5, 6, 7]], [[3, 4], [8, 9]], [[1, 2, 3], [6, 7, 8]])
    """

    unit = "chars"

    def __init__(self, ids: Any, batch_size: int, seq_len: int) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.ndim != 1:
            raise ValueError(f"ids must be 1-D, got shape {ids.shape}")
        for name, v in (("batch_size", batch_size), ("seq_len", seq_len)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        B, T = int(batch_size), int(seq_len)
        n = (len(ids) - 1) // B
        if n < 1:
            raise ValueError(
                f"{len(ids)} characters are too few for {B} streams "
                "(need at least batch_size + 1)"
            )
        self.batch_size, self.seq_len, self.stream_len = B, T, n
        self.x = ids[: B * n].reshape(B, n)
        self.y = ids[1 : B * n + 1].reshape(B, n)

    def __len__(self) -> int:
        return (self.stream_len + self.seq_len - 1) // self.seq_len

    def __getitem__(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        if not -len(self) <= j < len(self):
            raise IndexError(f"chunk {j} out of range for {len(self)} chunks")
        j %= len(self)
        s = slice(j * self.seq_len, (j + 1) * self.seq_len)
        return self.x[:, s], self.y[:, s]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for j in range(len(self)):
            yield self[j]

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Chunks ``start, start + 1, ...`` of any epoch, as training batches."""
        for j in range(start, len(self)):
            x, y = self[j]
            yield Batch((x,), y, carry=j > 0, items=x.size)

    @property
    def chars_per_epoch(self) -> int:
        return self.batch_size * self.stream_len


def eval_layout(
    ids: Any, batch_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """How evaluation covers every one of the N - 1 predictions of ``ids``.

    ``(x, y, x_rest, y_rest)``: B = min(batch_size, N - 1) streams ``x``, ``y``
    (B, n), read in chunks with the state carried like :class:`BPTTBatches`,
    then the ``(N - 1) - B n`` leftover pairs ``x_rest``, ``y_rest`` (k,), which
    continue the last stream: they are read as one more row, starting from the
    final state of stream B - 1. Every prediction is scored exactly once and
    each stream starts from a zero state (as generation does).
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if ids.ndim != 1 or len(ids) < 2:
        raise ValueError(
            f"evaluation needs a 1-D sequence of at least 2 ids, got {ids.shape}"
        )
    B = max(1, min(int(batch_size), len(ids) - 1))
    n = (len(ids) - 1) // B
    x = ids[: B * n].reshape(B, n)
    y = ids[1 : B * n + 1].reshape(B, n)
    return x, y, ids[B * n : -1], ids[B * n + 1 :]


__all__ = ["BPTTBatches", "eval_layout", "split_train_val"]
