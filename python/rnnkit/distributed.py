"""Data-parallel training over MPI: one script, a laptop or a cluster.

rnnkit does not ship a communication engine of its own: it uses MPI through
``mpi4py`` (``pip install rnnkit[mpi]`` installs mpi4py and the MPICH wheel, or use
the system's MPI) and the ``mpiexec`` launcher clusters already have. Every rank
holds the whole model; each takes its contiguous share of every global batch, and
one in-place all-reduce of the flat gradient buffer (:mod:`rnnkit._params`) makes
the gradient global before clipping and the update.

    world = rk.distributed.init()          # rank 0 of 1 without mpiexec
    rk.fit(model, "cross_entropy", opt, data, batch_size=256, distributed=True)
    if world.rank == 0:
        model.save("model.npz")

Run with ``mpiexec -n 4 python train.py`` (or ``mpiexec -n 4 rnnkit train ...``;
on a cluster ``mpiexec -f hostfile -n 64 ...``); with one process the same script
runs unchanged. Set ``OMP_NUM_THREADS`` per rank (ranks x threads <= cores).

What ``fit(..., distributed=True)`` guarantees
----------------------------------------------
- The loss is normalised by the *global* count of the entries that count (rows of
  every rank, masks and ``ignore_index`` respected), so the gradient equals the
  one-process gradient of the same global batch up to rounding, for any rank count.
- Parameters (and the optimizer's state) are broadcast from rank 0 at the start;
  the reduced gradient is bitwise the same on every rank, so every rank makes the
  same update and the replicas never drift apart.
- Training loss, validation loss and metrics are reduced over the ranks; the step
  time is the slowest rank's, so ``max_time``, ``eval_every`` and ``should_stop``
  decide the same step on every rank.
- Dropout masks are drawn per global row (stream) of the global batch (a
  counter-based Philox key of the layer, the step and the row), so the masks and
  the results do not depend on the rank count.
- A rank that raises prints its traceback and aborts the whole job
  (``MPI.Abort``), instead of leaving the other ranks waiting forever.

Gradients of a layer group are sent (non-blocking ``Iallreduce``) as soon as that
group's backward is done, while the layers before it are still in backward
(``overlap=True``); ``overlap=False`` sends the whole buffer in one blocking
``Allreduce`` after the backward pass.
"""

from __future__ import annotations

import math
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from . import losses as _losses
from .layers import _Recurrent
from .modules import Dropout
from .optim import clip_grad_norm, clip_grad_value

_LAUNCHER_ENV = (
    "PMI_RANK",  # MPICH / Hydra, Intel MPI
    "PMI_SIZE",
    "PMIX_RANK",  # PMIx (Open MPI 5, Slurm)
    "OMPI_COMM_WORLD_SIZE",  # Open MPI
    "MPI_LOCALNRANKS",  # MPICH Hydra
)
"""Environment variables that say the process was started by an MPI launcher."""

DEFAULT_BUCKET_BYTES = 1 << 20
"""Gradients are sent in layer groups of at least this many bytes (overlap)."""


def launched_by_mpi() -> bool:
    """Whether an MPI launcher (``mpiexec``, ``srun``) started this process.

    ``RNNKIT_MPI=1`` forces MPI on (a singleton MPI world), ``RNNKIT_MPI=0`` off.
    """
    forced = os.environ.get("RNNKIT_MPI", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return any(k in os.environ for k in _LAUNCHER_ENV)


def _launcher_size() -> int:
    for k in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        v = os.environ.get(k, "")
        if v.isdigit():
            return int(v)
    return 1


# ---------------------------------------------------------------------- world
class World:
    """The ranks of a job: ``rank`` of ``size``, and the few collectives rnnkit uses.

    A single-process world (``size == 1``, ``comm`` None) makes every collective
    the identity, so code written for many ranks runs as one process.

    Attributes
    ----------
    rank, size : int
        This process's rank and the number of ranks.
    comm : mpi4py.MPI.Comm or None
        The communicator (None for a single-process world).

    Examples
    --------
    >>> import numpy as np
    >>> world = World()              # one process
    >>> world.rank, world.size, world.is_root
    (0, 1, True)
    >>> world.allreduce(np.array([1.0, 2.0])).tolist()
    [1.0, 2.0]
    """

    def __init__(self, comm: Any = None) -> None:
        self.comm = comm
        self.rank = 0 if comm is None else int(comm.Get_rank())
        self.size = 1 if comm is None else int(comm.Get_size())

    @property
    def is_root(self) -> bool:
        """True on rank 0 (the one that prints and writes checkpoints)."""
        return self.rank == 0

    def _mpi(self) -> Any:
        from mpi4py import MPI

        return MPI

    def barrier(self) -> None:
        """Waits until every rank has arrived."""
        if self.size > 1:
            self.comm.Barrier()

    def allreduce(self, buf: np.ndarray, op: str = "sum") -> np.ndarray:
        """Reduces ``buf`` over the ranks in place (``op`` ``"sum"`` or ``"max"``);
        returns ``buf``. ``buf`` must be a C-contiguous NumPy array."""
        if self.size > 1:
            MPI = self._mpi()
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=_op(MPI, op))
        return buf

    def iallreduce(self, buf: np.ndarray, op: str = "sum") -> Any:
        """Starts a non-blocking in-place reduction of ``buf``; the request (None
        for one rank). ``buf`` must not be touched until the request completes."""
        if self.size == 1:
            return None
        MPI = self._mpi()
        return self.comm.Iallreduce(MPI.IN_PLACE, buf, op=_op(MPI, op))

    def bcast(self, buf: np.ndarray, root: int = 0) -> np.ndarray:
        """Overwrites ``buf`` on every rank with rank ``root``'s; returns ``buf``."""
        if self.size > 1:
            self.comm.Bcast(buf, root=root)
        return buf

    def bcast_object(self, obj: Any, root: int = 0) -> Any:
        """Rank ``root``'s ``obj`` (any picklable object) on every rank."""
        return obj if self.size == 1 else self.comm.bcast(obj, root=root)

    def abort(self, code: int = 1) -> None:
        """Ends every rank of the job (``MPI.Abort``); exits for one process."""
        if self.size > 1:
            self.comm.Abort(code)
        raise SystemExit(code)

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size})"


def _op(MPI: Any, op: str) -> Any:
    ops = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}
    if op not in ops:
        raise ValueError(f"op must be one of {sorted(ops)}, got {op!r}")
    return ops[op]


def _wait(requests: Sequence[Any]) -> None:
    live = [r for r in requests if r is not None]
    if live:
        from mpi4py import MPI

        MPI.Request.Waitall(live)


_WORLD: World | None = None


def init(comm: Any = None, abort_on_error: bool = True) -> World:
    """The world of this job (the same object on every call).

    Parameters
    ----------
    comm : mpi4py communicator, optional
        Use it (e.g. a sub-communicator) instead of ``MPI.COMM_WORLD``.
    abort_on_error : bool, default True
        With more than one rank, install a ``sys.excepthook`` that prints the
        uncaught exception with its rank and calls ``MPI.Abort``, so a failing
        rank ends the job instead of leaving the others blocked in a collective
        (the behaviour of ``python -m mpi4py``).

    Returns
    -------
    World
        ``size == 1`` when the process was not started by an MPI launcher
        (:func:`launched_by_mpi`) or mpi4py is not installed (then with a
        ``RuntimeWarning`` if the launcher asked for more than one rank).

    Examples
    --------
    >>> world = init()
    >>> 0 <= world.rank < world.size
    True
    """
    global _WORLD
    if comm is not None:
        world = World(comm)
    elif _WORLD is not None:
        return _WORLD
    elif not launched_by_mpi():
        world = World()
    else:
        try:
            from mpi4py import MPI
        except ImportError:
            n = _launcher_size()
            if n > 1:
                warnings.warn(
                    f"started by an MPI launcher with {n} ranks, but mpi4py is not "
                    "installed: every rank runs alone (pip install 'rnnkit[mpi]')",
                    RuntimeWarning,
                    stacklevel=2,
                )
            world = World()
        else:
            world = World(MPI.COMM_WORLD)
    if abort_on_error and world.size > 1:
        _install_abort_hook(world)
    if comm is None:
        _WORLD = world
    return world


def _install_abort_hook(world: World) -> None:
    previous = sys.excepthook
    if getattr(previous, "_rnnkit_abort", False):
        return

    def hook(exc_type: Any, exc: Any, tb: Any) -> None:
        err = sys.__stderr__ or sys.stderr
        try:
            err.write(
                f"rnnkit.distributed: rank {world.rank} of {world.size} failed; "
                "aborting every rank\n"
            )
            err.write("".join(traceback.format_exception(exc_type, exc, tb)))
            err.flush()
        finally:
            world.comm.Abort(1)

    hook._rnnkit_abort = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def _world(world: World | None) -> World:
    return init() if world is None else world


# --------------------------------------------------------- parameters, grads
def _pairs(model: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = model.parameters() if hasattr(model, "parameters") else list(model)
    for p, g in pairs:
        if not (p.flags.c_contiguous and g.flags.c_contiguous):
            raise ValueError("parameters and gradients must be C-contiguous arrays")
    return pairs


def broadcast_parameters(
    model: Any, root: int = 0, optimizer: Any = None, world: World | None = None
) -> None:
    """Makes every rank's parameters (and optimizer state) rank ``root``'s.

    Parameters
    ----------
    model : an rnnkit model or layer (one flat buffer: one broadcast), or a list of
        ``(param, grad)`` pairs.
    root : the rank whose values win.
    optimizer : optional :mod:`rnnkit.optim` optimizer; its state slots
        (Adam's moments, momentum buffers) and step count are broadcast too.
    world : default :func:`init`.

    Examples
    --------
    >>> import rnnkit as rk
    >>> model = rk.Sequential(rk.LSTM(3, 4, seed=0), rk.Linear(4, 2, seed=0))
    >>> broadcast_parameters(model)     # a no-op for one process
    """
    w = _world(world)
    if w.size == 1:
        return
    for p, _ in _pairs(model):
        w.bcast(p, root)
    if optimizer is not None:
        for arrs in getattr(optimizer, "state", {}).values():
            for a in arrs:
                w.bcast(a, root)
        if hasattr(optimizer, "step_count"):
            optimizer.step_count = int(w.bcast_object(optimizer.step_count, root))


def allreduce_gradients(
    model: Any, average: bool = True, world: World | None = None
) -> None:
    """Sums (``average``: averages) the gradients over the ranks, in place.

    One collective over the flat gradient buffer of an rnnkit model (no
    per-tensor calls). Use it in a custom loop between ``backward`` and the
    optimizer step, with each rank's loss a mean over its equal share of the batch.

    Examples
    --------
    >>> import rnnkit as rk
    >>> model = rk.Sequential(rk.GRU(3, 4, seed=0), rk.Linear(4, 2, seed=0))
    >>> allreduce_gradients(model)      # the identity for one process
    """
    w = _world(world)
    if w.size == 1:
        return
    for _, g in _pairs(model):
        w.allreduce(g)
        if average:
            g /= w.size


def _offset(view: np.ndarray, base: np.ndarray) -> int:
    off, rem = divmod(view.ctypes.data - base.ctypes.data, base.itemsize)
    if rem or off < 0 or off + view.size > base.size:
        raise ValueError("a layer's gradient is not a slice of the model's buffer")
    return off


class GradientSync:
    """Sends a model's gradients layer group by layer group during ``backward``.

    Each leaf layer with parameters owns a contiguous span of the model's flat
    gradient buffer. While the context is active, every leaf's ``backward`` is
    wrapped: when the last leaf of a group (consecutive leaves in backward order,
    at least ``bucket_bytes``) has finished, a non-blocking in-place
    ``Iallreduce`` of that span starts, and the layers before it go on with their
    backward pass. :meth:`wait` completes every reduction (sending any group whose
    layers did not run). The groups are posted in the same order on every rank.

    Parameters
    ----------
    model : an rnnkit model (``Sequential``, ``EncoderDecoder``); any other model
        falls back to one blocking reduction per ``(param, grad)`` pair in
        :meth:`wait`.
    world : default :func:`init`.
    bucket_bytes : smallest group size; 0 puts every leaf in a group of its own.
    overlap : False: one blocking ``Allreduce`` of the whole buffer in :meth:`wait`.

    Examples
    --------
    >>> import numpy as np, rnnkit as rk
    >>> model = rk.Sequential(rk.LSTM(3, 4, seed=0), rk.Linear(4, 2, seed=0))
    >>> sync = GradientSync(model)
    >>> with sync:
    ...     out = model.forward(np.ones((2, 5, 3), np.float32))
    ...     model.backward(np.ones_like(out))
    >>> sync.wait()
    """

    def __init__(
        self,
        model: Any,
        world: World | None = None,
        bucket_bytes: int = DEFAULT_BUCKET_BYTES,
        overlap: bool = True,
    ) -> None:
        self.world = _world(world)
        self.model = model
        self.overlap = overlap
        self.groups: list[tuple[list[Any], int, int]] = []
        self.seconds_waiting = 0.0
        leaves = model._leaves() if hasattr(model, "_leaves") else None
        flat = getattr(model, "_flat_grads", None)
        if not overlap or leaves is None or flat is None:
            self.overlap = False
            return
        self._flat = flat
        owners = [m for m in leaves if getattr(m, "grads", None)]
        spans = []
        for m in owners:
            g = m._flat_grads
            a = _offset(g, flat)
            spans.append((m, a, a + g.size))
        group: list[Any] = []
        lo, hi, nbytes = 0, 0, 0
        for m, a, b in reversed(spans):  # backward order
            if not group:
                hi = b
            group.append(m)
            lo = a
            nbytes += (b - a) * flat.itemsize
            if nbytes >= bucket_bytes:
                self.groups.append((group, lo, hi))
                group, nbytes = [], 0
        if group:
            self.groups.append((group, lo, hi))
        self._requests: list[Any] = []
        self._posted: set[int] = set()
        self._done: set[int] = set()

    def __enter__(self) -> GradientSync:
        if not self.overlap or self.world.size == 1:
            return self
        self._requests, self._posted, self._done = [], set(), set()
        group_of = {id(m): k for k, (ms, _, _) in enumerate(self.groups) for m in ms}
        for ms, _, _ in self.groups:
            for m in ms:
                m.backward = self._wrap(m, m.backward, group_of[id(m)])
        return self

    def _wrap(self, m: Any, fn: Callable[..., Any], k: int) -> Callable[..., Any]:
        def backward(*args: Any, **kw: Any) -> Any:
            result = fn(*args, **kw)
            self._done.add(id(m))
            ms, lo, hi = self.groups[k]
            if k not in self._posted and all(id(x) in self._done for x in ms):
                self._post(k)
            return result

        return backward

    def _post(self, k: int) -> None:
        _, lo, hi = self.groups[k]
        self._posted.add(k)
        self._requests.append(self.world.iallreduce(self._flat[lo:hi]))
        if len(self._requests) > 1:  # let MPI progress the earlier ones
            from mpi4py import MPI

            MPI.Request.Testall([r for r in self._requests if r is not None])

    def __exit__(self, *exc: Any) -> None:
        for ms, _, _ in self.groups:
            for m in ms:
                m.__dict__.pop("backward", None)

    def wait(self) -> None:
        """Completes the reduction of every gradient (a sum over the ranks)."""
        if self.world.size == 1:
            return
        t0 = time.perf_counter()
        if not self.overlap:
            allreduce_gradients(self.model, average=False, world=self.world)
        else:
            for k in range(len(self.groups)):
                if k not in self._posted:
                    self._post(k)
            _wait(self._requests)
            self._requests = []
        self.seconds_waiting += time.perf_counter() - t0


# -------------------------------------------------------------------- losses
def _entries(loss_fn: Any, out: np.ndarray, y: Any, mask: Any) -> float:
    """How many entries a mean-reduced built-in loss divides by."""
    if isinstance(loss_fn, _losses.CrossEntropyLoss):
        t = np.asarray(y)
        valid = (
            np.ones(t.shape, bool)
            if loss_fn.ignore_index is None
            else t != loss_fn.ignore_index
        )
        m = _losses._mask(mask, t.shape)
        return float((valid & m).sum() if m is not None else valid.sum())
    m = _losses._mask(mask, np.shape(out))
    return float(np.size(out) if m is None else np.broadcast_to(m, out.shape).sum())


class _GlobalLoss:
    """A loss as ``(sum over this rank's entries, its gradient, count, mean?)``.

    The built-in losses are evaluated with ``reduction="sum"`` and the gradient is
    divided by the global count afterwards. A custom callable is taken as a mean
    over its rows (weighted by rows) unless it has ``reduction == "sum"`` or a
    ``count(output, target, mask)`` method giving the entries it divides by.
    """

    def __init__(self, loss_fn: Any) -> None:
        self.fn = loss_fn
        self.mean = getattr(loss_fn, "reduction", "mean") != "sum"
        self.builtin = isinstance(loss_fn, _losses._Loss) and type(loss_fn) in (
            _losses.CrossEntropyLoss,
            _losses.BCEWithLogitsLoss,
            _losses.MSELoss,
        )
        if self.builtin and self.mean:
            cfg = {**loss_fn.config(), "reduction": "sum"}
            self.summed = type(loss_fn)(**cfg)

    def __call__(self, out: Any, y: Any, mask: Any) -> tuple[float, Any, float]:
        if not self.mean:
            value, d = self.fn(out, y, mask)
            return float(value), d, 1.0
        if self.builtin:
            value, d = self.summed(out, y, mask)
            return float(value), d, _entries(self.fn, out, y, mask)
        value, d = self.fn(out, y, mask)
        count = getattr(self.fn, "count", None)
        n = float(count(out, y, mask)) if count is not None else float(len(y))
        return float(value) * n, d * d.dtype.type(n), n


# ------------------------------------------------------------------- dropout
class _KeyedRNG:
    """Dropout masks drawn per global row: row (stream) ``g`` of the global batch
    (axis 1 of a time-major sequence, axis 0 of a vector) gets the numbers of a
    Philox generator keyed by ``(layer key, draw)`` at counter ``(0, 0, g, step)``,
    so a rank draws only its rows and the masks do not depend on how the rows are
    split. Stands in for ``Dropout.rng`` (``random`` only)."""

    def __init__(self, key: int) -> None:
        self.key = int(key)
        self.step, self.draw, self.row0, self.rows = 0, 0, 0, -1

    def at(self, step: int, row0: int, rows: int) -> None:
        self.step, self.draw, self.row0, self.rows = int(step), 0, int(row0), rows

    def random(self, shape: Sequence[int], dtype: Any = np.float64) -> np.ndarray:
        shape = tuple(shape)
        # Sequential hands dropout time-major (T, B, ...) sequences, (B, ...) vectors
        axis = 1 if len(shape) >= 3 else 0
        if len(shape) < 1 or (self.rows >= 0 and shape[axis] != self.rows):
            raise ValueError(
                f"distributed dropout draws masks over {self.rows} rows on axis "
                f"{axis} ((T, B, ...) or (B, ...)), got shape {shape}"
            )
        out = np.empty(shape, dtype=dtype)
        rows = np.moveaxis(out, axis, 0)
        for i in range(rows.shape[0]):
            bits = np.random.Philox(
                key=[self.key, self.draw], counter=[0, 0, self.row0 + i, self.step]
            )
            rows[i] = np.random.Generator(bits).random(rows.shape[1:], dtype=dtype)
        self.draw += 1
        return out


# ------------------------------------------------------------ data sharding
def _share(n: int, rank: int, size: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of ``n``: rank ``rank``'s contiguous share."""
    return n * rank // size, n * (rank + 1) // size


def _take(a: Any, lo: int, hi: int) -> Any:
    return None if a is None else a[lo:hi]


class ShardedSource:
    """A :class:`rnnkit.train.DataSource` cut by rows: each rank gets its
    contiguous share ``[B r / n, B (r + 1) / n)`` of every global batch of B rows.

    The global batches, their number and their order are the wrapped source's, so
    a :class:`~rnnkit.train.TrainPosition` means the same with any rank count. A
    source whose rows are streams (:class:`rnnkit.text.BPTTBatches`) keeps its
    streams on their rank: rank r always carries the state of the same streams.
    Each batch's ``items`` is split so that the ranks' shares add up to it.

    Attributes
    ----------
    row0, rows, global_rows : this rank's first global row, its row count and the
        global batch size of the batch last yielded.
    global_steps : that batch's longest row (0 without lengths).
    """

    def __init__(self, source: Any, world: World | None = None) -> None:
        self.source = source
        self.world = _world(world)
        self.unit = getattr(source, "unit", "examples")
        self.row0, self.rows, self.global_rows = 0, 0, 0
        self.global_steps = 0

    def __len__(self) -> int:
        return len(self.source)

    def batches(self, epoch: int, start: int = 0) -> Iterator[Any]:
        r, n = self.world.rank, self.world.size
        for b in self.source.batches(epoch, start):
            B = b.rows
            if B < n:
                raise ValueError(
                    f"a batch of {B} rows cannot be shared by {n} ranks; use a "
                    f"batch size of at least {n}"
                )
            lo, hi = _share(B, r, n)
            items = b.items or B
            carry = b.carry
            if not isinstance(carry, bool):
                carry = np.asarray(carry, dtype=bool)[lo:hi]
            self.row0, self.rows, self.global_rows = lo, hi - lo, B
            # the global batch's longest row (a Sequential trims each share to
            # its own): the steps the layers' masks are drawn for
            self.global_steps = 0 if b.lengths is None else int(np.max(b.lengths))
            yield replace(
                b,
                xs=tuple(x[lo:hi] for x in b.xs),
                y=b.y[lo:hi],
                lengths=_take(b.lengths, lo, hi),
                mask=_take(b.mask, lo, hi),
                carry=carry,
                items=items * hi // B - items * lo // B,
            )


# -------------------------------------------------------------- fit support
class DistributedFit:
    """What :func:`rnnkit.fit` does differently with ``distributed=True``.

    Built once per ``fit`` call: broadcasts the parameters and optimizer state from
    rank 0, shards the source (:class:`ShardedSource`), keys the dropout masks by
    global row; :meth:`step` is the distributed :func:`rnnkit.train.train_step`.

    Attributes
    ----------
    world : the :class:`World`.
    source : the sharded source ``fit`` reads.
    compute_seconds, reduce_seconds : time in forward/backward/update and in
        waiting for the gradient reduction, summed over the steps (the split the
        benchmark reports).
    bytes_per_step : gradient bytes every rank contributes to each reduction.
    """

    def __init__(
        self,
        model: Any,
        optimizer: Any,
        source: Any,
        loss_fn: Any,
        world: World | None = None,
        should_stop: Callable[[], Any] | None = None,
        overlap: bool = True,
        bucket_bytes: int = DEFAULT_BUCKET_BYTES,
    ) -> None:
        self.world = w = _world(world)
        self.model, self.optimizer = model, optimizer
        broadcast_parameters(model, optimizer=optimizer, world=w)
        self.source = ShardedSource(source, w)
        self.loss = _GlobalLoss(loss_fn)
        self.sync = GradientSync(model, w, bucket_bytes, overlap)
        self._should_stop = should_stop
        self.halt = False
        self.compute_seconds = self.reduce_seconds = 0.0
        self.bytes_per_step = sum(g.nbytes for _, g in _pairs(model))
        leaves = model._leaves() if hasattr(model, "_leaves") else []
        self._dropouts = [m for m in leaves if isinstance(m, Dropout)]
        self._saved_rngs = [m.rng for m in self._dropouts]
        keys = [int(m.rng.integers(2**63)) for m in self._dropouts]
        keys = w.bcast_object(keys)
        self._keyed = [_KeyedRNG(k) for k in keys]
        for m, rng in zip(self._dropouts, self._keyed):
            m.rng = rng  # type: ignore[assignment]  # stands in: random() only
        # recurrent layers with dropout / recurrent_dropout / zoneout: one mask
        # stream on every rank (rank 0's), masks drawn for the global batch, each
        # rank keeping its rows (the one-process masks, whatever the rank count)
        self._masked = [
            r
            for r in leaves
            if isinstance(r, _Recurrent)
            and (r.options.dropout or r.options.recurrent_dropout or r.options.zoneout)
        ]
        self._saved_mask_rngs = [r._mask_rng for r in self._masked]
        seeds = w.bcast_object([int(r._mask_rng.integers(2**63)) for r in self._masked])
        for r, seed in zip(self._masked, seeds):
            r._mask_rng = np.random.default_rng(seed)

    @property
    def rank(self) -> int:
        return self.world.rank

    def stop_requested(self) -> bool:
        """The agreed ``should_stop`` of the last step (True on every rank or none)."""
        return self.halt

    def close(self) -> None:
        """Puts back the dropout layers' own generators (and the recurrent
        layers' mask generators)."""
        for m, rng in zip(self._dropouts, self._saved_rngs):
            m.rng = rng
        for r, mrng in zip(self._masked, self._saved_mask_rngs):
            r._mask_rng, r._mask_rows = mrng, None

    def step(
        self,
        xs: tuple[np.ndarray, ...],
        y: np.ndarray,
        lengths: np.ndarray | None,
        mask: np.ndarray | None,
        state: Any,
        clip_norm: float | None,
        clip_value: float | None,
        step: int,
        rows: int,
        items: int,
    ) -> tuple[float, int, int, float]:
        """One distributed optimizer step on this rank's share of a global batch.

        Returns ``(loss, global rows, global items, seconds)``: the loss of the
        global batch (normalised by the global count), and the slowest rank's
        time for the step, the same on every rank.
        """
        t0 = time.perf_counter()
        model, w = self.model, self.world
        src = self.source
        for rng in self._keyed:
            rng.at(step, src.row0, src.rows)
        for r in self._masked:
            r._mask_rows = (src.row0, src.rows, src.global_rows, src.global_steps)
        model.zero_grad()
        kw: dict[str, Any] = {"train": True}
        if lengths is not None:
            kw["lengths"] = lengths
        if state is not None:
            kw["state"] = state
        out = model.forward(*xs, **kw)
        value, dout, count = self.loss(out, y, mask)
        stats = np.array([value, count, rows, items], dtype=np.float64)
        req = w.iallreduce(stats)
        with self.sync:
            model.backward(dout)
        t1 = time.perf_counter()
        self.sync.wait()
        _wait([req])
        t2 = time.perf_counter()
        total, n = float(stats[0]), float(stats[1])
        loss = total / n if self.loss.mean and n else total
        if self.loss.mean and n:
            scale = 1.0 / n
            for _, g in _pairs(model):
                g *= g.dtype.type(scale)
        if math.isfinite(loss):
            if clip_norm is not None:
                clip_grad_norm(model, clip_norm)
            if clip_value is not None:
                clip_grad_value(model, clip_value)
            self.optimizer.step()
        t3 = time.perf_counter()
        flag = self._should_stop is not None and bool(self._should_stop())
        agreed = w.allreduce(np.array([t3 - t0, float(flag)]), op="max")
        self.halt = bool(agreed[1])
        self.compute_seconds += (t1 - t0) + (t3 - t2)
        self.reduce_seconds += t2 - t1
        return loss, int(stats[2]), int(stats[3]), float(agreed[0])

    def evaluate(
        self,
        fn: Callable[[Any], Mapping[str, float]],
        data: Any,
        batch_size: int,
        keys: Sequence[str],
    ) -> dict[str, float]:
        """Row-weighted means of ``fn(part)`` over ``data``, split by whole batches
        of ``batch_size`` rows among the ranks and reduced (``data.n`` rows,
        ``data.take(slice)``): the one-process value, whatever the rank count."""
        w = self.world
        nb = -(-data.n // batch_size)
        lo, hi = _share(nb, w.rank, w.size)
        sums = np.zeros(len(keys) + 1)
        if hi > lo:
            part = data.take(slice(lo * batch_size, hi * batch_size))
            got = fn(part)
            sums[:-1] = [float(got[k]) * part.n for k in keys]
            sums[-1] = part.n
        w.allreduce(sums)
        return {k: float(v / sums[-1]) for k, v in zip(keys, sums[:-1])}


def share(n: int, world: World | None = None) -> tuple[int, int]:
    """``[lo, hi)``: this rank's contiguous share of ``n`` rows (or streams).

    Examples
    --------
    >>> share(10)
    (0, 10)
    """
    w = _world(world)
    return _share(n, w.rank, w.size)


__all__ = [
    "DEFAULT_BUCKET_BYTES",
    "DistributedFit",
    "GradientSync",
    "ShardedSource",
    "World",
    "allreduce_gradients",
    "broadcast_parameters",
    "init",
    "launched_by_mpi",
    "share",
]
