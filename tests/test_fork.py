"""fork safety: a child of ``os.fork()`` or of a ``multiprocessing`` fork pool, made
after a kernel call with 2 threads, must compute the same results instead of hanging.

libgomp's thread pool does not survive ``fork``; rnnkit's at-fork handler runs the
kernels of a child of a process that allowed 2+ threads with one thread (results are
bitwise identical for any thread count).
Every scenario runs in a fresh interpreter with a timeout, so a regression fails here
instead of hanging the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

if not hasattr(os, "fork") or sys.platform == "darwin":
    pytest.skip("needs os.fork on Linux", allow_module_level=True)

TIMEOUT = 120  # a working run takes a few seconds

PRELUDE = """
import multiprocessing as mp, os, sys, time, warnings
import numpy as np
import rnnkit as rk

def step(seed):
    lstm = rk.LSTM(48, 96, num_layers=2, seed=seed)
    x = np.random.default_rng(seed).standard_normal((30, 16, 48)).astype(np.float32)
    y, _ = lstm.forward(x)
    dx, _ = lstm.backward(np.ones_like(y))
    return y, dx, lstm.grads["weight_hh_l1"].copy()

def same(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a, b))

def wait(pid, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"
"""


def _run(body: str, env: dict[str, str] | None = None) -> str:
    code = PRELUDE + textwrap.dedent(body)
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, **(env or {})},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_os_fork_after_a_two_thread_kernel_call():
    out = _run(
        """
        rk.set_num_threads(2)
        want = step(0)                       # the pool of 2 OpenMP threads exists now
        pid = os.fork()
        if pid == 0:
            ok = same(step(0), want) and rk.get_num_threads() == 1
            os._exit(0 if ok else 3)
        print("child", wait(pid))
        print("parent still", rk.get_num_threads(), same(step(0), want))
        """
    )
    assert "child 0" in out, out
    assert "parent still 2 True" in out, out


def test_fork_pool_after_a_two_thread_kernel_call():
    out = _run(
        """
        def work(seed):
            return step(seed)

        rk.set_num_threads(2)
        want = [step(s) for s in range(4)]
        with mp.get_context("fork").Pool(2) as pool:
            got = pool.map_async(work, range(4)).get(timeout=60)
        print("pool", all(same(g, w) for g, w in zip(got, want)))
        """
    )
    assert "pool True" in out, out


def test_child_cannot_raise_its_threads_again():
    out = _run(
        """
        rk.set_num_threads(2)
        step(0)
        pid = os.fork()
        if pid == 0:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                rk.set_num_threads(2)
            ok = rk.get_num_threads() == 1 and any("fork" in str(m.message) for m in w)
            step(1)
            os._exit(0 if ok else 3)
        print("child", wait(pid))
        """
    )
    assert "child 0" in out, out


def test_child_of_a_one_thread_process_may_use_two():
    """A process that never allowed 2+ threads has no OpenMP pool to lose: its
    children may start their own."""
    out = _run(
        """
        assert rk.get_num_threads() == 1
        want = step(0)
        pid = os.fork()
        if pid == 0:
            rk.set_num_threads(2)
            ok = same(step(0), want) and rk.get_num_threads() == 2
            os._exit(0 if ok else 3)
        print("child", wait(pid))
        """,
        env={"RNNKIT_NUM_THREADS": "1"},
    )
    assert "child 0" in out, out
