"""Data-parallel training over MPI (:mod:`rnnkit.distributed`).

The MPI tests launch ``mpiexec -n {1,2,4}`` on ``tests/_mpi_worker.py`` (one
thread per rank) and compare what every rank wrote with the single-process run of
the same cases in this process; they are skipped when mpi4py or ``mpiexec`` is
absent (``pip install 'rnnkit[mpi]'`` provides both; CI installs it). The tests
of the single-process world need neither.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rnnkit as rk
from conftest import named_tol
from rnnkit import _sysinfo
from rnnkit import distributed as dist

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_mpi_worker.py"
RANKS = (1, 2, 4)


# ------------------------------------------------------- single-process world
def test_single_process_world_is_the_identity() -> None:
    w = dist.World()
    assert (w.rank, w.size, w.is_root) == (0, 1, True)
    a = np.array([1.0, -2.0])
    assert w.allreduce(a) is a and a.tolist() == [1.0, -2.0]
    assert w.iallreduce(a) is None
    assert w.bcast_object({"k": 1}) == {"k": 1}
    model = rk.Sequential(rk.GRU(3, 4, seed=0), rk.Linear(4, 2, seed=0))
    model._flat_grads[:] = 1.5
    before = model._flat_params.copy()
    dist.broadcast_parameters(model, world=w)
    dist.allreduce_gradients(model, world=w)
    assert np.array_equal(model._flat_params, before)
    assert np.all(model._flat_grads == 1.5)


def test_init_outside_mpi_is_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in dist._LAUNCHER_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.delenv("RNNKIT_MPI", raising=False)
    monkeypatch.setattr(dist, "_WORLD", None)
    assert not dist.launched_by_mpi()
    w = dist.init()
    assert w.size == 1 and w.comm is None and dist.init() is w
    monkeypatch.setenv("RNNKIT_MPI", "1")
    assert dist.launched_by_mpi()
    monkeypatch.setenv("PMI_SIZE", "4")
    monkeypatch.setenv("RNNKIT_MPI", "0")
    assert not dist.launched_by_mpi()


def test_launcher_without_mpi4py_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dist, "_WORLD", None)
    monkeypatch.delenv("RNNKIT_MPI", raising=False)
    monkeypatch.setenv("PMI_SIZE", "4")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import fails
    with pytest.warns(RuntimeWarning, match="mpi4py is not installed"):
        w = dist.init()
    assert w.size == 1


class _FakeWorld:
    def __init__(self, rank: int, size: int) -> None:
        self.rank, self.size = rank, size


def test_sharded_source_splits_rows_items_and_carry() -> None:
    ids = np.arange(51)
    src = rk.text.BPTTBatches(ids, batch_size=5, seq_len=4)
    full = list(src.batches(0))
    parts = [list(dist.ShardedSource(src, _FakeWorld(r, 2)).batches(0)) for r in (0, 1)]  # type: ignore[arg-type]
    assert [len(p) for p in parts] == [len(full)] * 2
    for j, b in enumerate(full):
        a, c = parts[0][j], parts[1][j]
        assert a.rows == 2 and c.rows == 3  # contiguous streams [0, 2), [2, 5)
        assert np.array_equal(np.concatenate([a.xs[0], c.xs[0]]), b.xs[0])
        assert np.array_equal(np.concatenate([a.y, c.y]), b.y)
        assert a.items + c.items == b.items and a.carry == c.carry == b.carry


def test_sharded_source_needs_a_row_per_rank() -> None:
    src = rk.text.BPTTBatches(np.arange(40), batch_size=3, seq_len=4)
    with pytest.raises(ValueError, match="3 rows cannot be shared by 4 ranks"):
        next(iter(dist.ShardedSource(src, _FakeWorld(0, 4)).batches(0)))  # type: ignore[arg-type]


def test_share_is_contiguous_and_covers_everything() -> None:
    for n, size in ((7, 2), (7, 4), (64, 3), (5, 5)):
        spans = [dist._share(n, r, size) for r in range(size)]
        assert spans[0][0] == 0 and spans[-1][1] == n
        assert all(spans[r][1] == spans[r + 1][0] for r in range(size - 1))


def test_keyed_dropout_masks_do_not_depend_on_the_split() -> None:
    rng = dist._KeyedRNG(123)
    rng.at(step=3, row0=0, rows=6)
    whole = rng.random((4, 6, 5))  # time-major (T, B, F)
    halves = []
    for lo, hi in ((0, 2), (2, 6)):
        rng.at(step=3, row0=lo, rows=hi - lo)
        halves.append(rng.random((4, hi - lo, 5)))
    assert np.array_equal(np.concatenate(halves, axis=1), whole)
    rng.at(step=4, row0=0, rows=6)
    assert not np.array_equal(rng.random((4, 6, 5)), whole)  # a new step, new masks
    with pytest.raises(ValueError, match="over 6 rows on axis 1"):
        rng.random((4, 5, 5))


# ------------------------------------------------------------------ under MPI
def _mpiexec() -> str:
    pytest.importorskip("mpi4py")
    local = Path(sys.executable).with_name("mpiexec")  # the mpich wheel's
    found = str(local) if local.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.skip("mpiexec is not installed (pip install 'rnnkit[mpi]')")
    return found


def _env() -> dict[str, str]:
    env = _sysinfo.thread_env(1)  # OMP_NUM_THREADS=1 per rank
    for k in (*dist._LAUNCHER_ENV, "RNNKIT_MPI"):
        env.pop(k, None)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    return env


def _launch(n: int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_mpiexec(), "-n", str(n), *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[dict[str, Any]]]:
    """What every rank of an ``n``-rank job wrote, for n = 1, 2, 4."""
    out: dict[int, list[dict[str, Any]]] = {}
    for n in RANKS:
        d = tmp_path_factory.mktemp(f"ranks{n}")
        proc = _launch(n, sys.executable, str(WORKER), str(d))
        assert proc.returncode == 0, proc.stderr
        out[n] = [dict(np.load(d / f"rank{r}.npz")) for r in range(n)]
        assert all(int(r["size"]) == n for r in out[n])
    return out


@pytest.fixture(scope="module")
def one_process() -> dict[str, dict[str, np.ndarray]]:
    """The same cases in this process: the plain path and a one-rank world."""
    sys.path.insert(0, str(HERE))
    import _mpi_worker

    return {"plain": _mpi_worker.run_all(False), "world": _mpi_worker.run_all(True)}


def _close(actual: np.ndarray, expected: np.ndarray) -> None:
    """Within 1e-12 of the largest entry (the norm-wise relative error)."""
    rtol, _ = named_tol("reordered_float64")
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("n", RANKS)
def test_every_rank_ends_identical(runs: Any, n: int) -> None:
    first = runs[n][0]
    for other in runs[n][1:]:
        for k, v in first.items():
            assert np.array_equal(v, other[k]), k


@pytest.mark.parametrize("n", RANKS)
def test_gradient_matches_one_process(runs: Any, one_process: Any, n: int) -> None:
    got, ref = runs[n][0], one_process["plain"]["grad"]
    assert np.abs(ref).max() > 0
    for key in ("grad", "grad_per_leaf", "grad_blocking"):
        _close(got[key], ref)


@pytest.mark.parametrize("n", RANKS)
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_fit_matches_one_process(runs: Any, one_process: Any, n: int, opt: str) -> None:
    got, ref = runs[n][0], one_process["plain"]
    import _mpi_worker

    initial = _mpi_worker._model()._flat_params
    assert np.abs(ref[f"{opt}_params"] - initial).max() > 1e-3  # it trained
    for k in ("params", "loss", "val_loss", "val_accuracy", "items"):
        _close(got[f"{opt}_{k}"], ref[f"{opt}_{k}"])


@pytest.mark.parametrize("n", RANKS)
def test_charlm_with_carried_state_matches(runs: Any, one_process: Any, n: int) -> None:
    got, ref = runs[n][0], one_process["plain"]
    for k in ("params", "loss", "val_loss", "items"):
        _close(got[f"charlm_{k}"], ref[f"charlm_{k}"])


@pytest.mark.parametrize("n", RANKS)
def test_dropout_does_not_depend_on_rank_count(
    runs: Any, one_process: Any, n: int
) -> None:
    got, ref = runs[n][0], one_process["world"]
    assert not np.allclose(ref["dropout_params"], ref["adam_params"])  # masks act
    for k in ("params", "loss", "val_loss"):
        _close(got[f"dropout_{k}"], ref[f"dropout_{k}"])


@pytest.mark.parametrize("n", RANKS)
def test_layer_option_masks_do_not_depend_on_rank_count(
    runs: Any, one_process: Any, n: int
) -> None:
    """Recurrent dropout, zoneout and dropout between layers: every rank draws the
    global batch's masks from one stream and keeps its rows, so the trajectory is
    the one-rank trajectory."""
    got, ref = runs[n][0], one_process["world"]
    import _mpi_worker

    initial = _mpi_worker._model(options=True)._flat_params
    assert np.abs(ref["options_params"] - initial).max() > 1e-3  # it trained
    for k in ("params", "loss", "val_loss"):
        _close(got[f"options_{k}"], ref[f"options_{k}"])


def test_failing_rank_ends_the_job() -> None:
    proc = _launch(2, sys.executable, str(WORKER), "--fail", timeout=60)
    assert proc.returncode != 0
    assert "rank 1 of 2 failed; aborting every rank" in proc.stderr
    assert "RuntimeError: rank 1 fails on purpose" in proc.stderr


TINY = ["--hidden", "12", "--embedding", "6", "--seq-len", "12", "--batch", "8"]


def test_cli_checkpoint_from_two_ranks_resumes_on_one_and_four(
    tmp_path: Path,
) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("a stitch in time saves nine. " * 40, encoding="utf-8")
    first = tmp_path / "m.rk"
    train = [sys.executable, "-m", "rnnkit", "train", str(corpus), *TINY]
    quiet = ["--sample-length", "0", "--final-length", "0", "--quiet"]
    proc = _launch(2, *train, "--epochs", "1", "--out", str(first), *quiet)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("corpus:") == 1 and "2 MPI ranks" in proc.stderr
    saved = rk.text.CharLM.load(first).model.meta["train"]["position"]
    assert saved["epoch"] == 1 and saved["steps"] > 0
    params = {}
    for n in (1, 4):
        out = tmp_path / f"r{n}.rk"
        shutil.copy(first, out)
        resume = ["--epochs", "2", "--out", str(out), "--resume", *quiet]
        proc = _launch(n, *train, *resume)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.count("resuming") == 1
        lm = rk.text.CharLM.load(out)
        pos = lm.model.meta["train"]["position"]
        assert pos["epoch"] == 2 and pos["steps"] == 2 * saved["steps"]
        params[n] = lm.model._flat_params
    rtol, atol = named_tol("ranks_float32")
    np.testing.assert_allclose(params[4], params[1], rtol=rtol, atol=atol)
