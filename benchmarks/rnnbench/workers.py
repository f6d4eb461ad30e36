"""Timing and the worker processes of bench_rnn.py (``--side NAME``): the timing
protocol, the float64 reference answers, the peak probe and the memory probe."""

from __future__ import annotations

import gc
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .problem import (
    TOL,
    Config,
    cfg_key,
    check_keys,
    flops,
    make_problem,
    ref_key,
    rel_err,
)
from .sides import LayerSide, TorchSide, make_side, side_setup


# ------------------------------------------------------------------- timing
def measure(
    fn: Callable[[], Any], repeat: int, budget_s: float, min_sample_s: float
) -> tuple[list[float], int]:
    """Seconds per call: ``repeat`` samples (at least 3; stops early past ``budget_s``).

    One untimed warm-up call also sizes a sample: ``number`` calls, enough to last
    ``min_sample_s``; a sample is their mean. The garbage collector is off meanwhile.
    """
    t = time.perf_counter()
    fn()
    t1 = time.perf_counter() - t
    number = max(1, int(min_sample_s / max(t1, 1e-7)))
    samples: list[float] = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        while len(samples) < max(repeat, 3):
            t = time.perf_counter()
            for _ in range(number):
                fn()
            samples.append((time.perf_counter() - t) / number)
            if len(samples) >= 3 and time.perf_counter() - start > budget_s:
                break
    finally:
        if gc_was:
            gc.enable()
    return samples, number


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ workers
def worker_time(job: dict, result_path: Path) -> None:
    """``--side rnnkit|numpy|numpy-skx|torch``: check then time every configuration."""
    side, threads = job["side"], job["threads"]
    out: dict[str, Any] = {"side": side, "threads": threads, "results": {}}
    out["info"] = side_setup(side, threads)
    ref_dir = Path(job["ref_dir"])
    label = f"[{side} x{threads} pass {job['pass'] + 1}]"
    for c in job["configs"]:
        key = cfg_key(c)
        out["current"] = key  # left in the file if this configuration crashes
        result_path.write_text(json.dumps(out))
        res: dict[str, Any] = {}
        try:
            ref_file = ref_dir / f"{ref_key(c)}.npz"
            if not ref_file.exists():
                raise RuntimeError("no reference answer (the reference run failed)")
            p = make_problem(c)
            impl = make_side(side, c, p["weights"])
            ref = np.load(ref_file)
            got = impl.run_once(c["mode"], p)
            errs = {
                k: rel_err(got.get(k), ref[k]) if got.get(k) is not None else math.inf
                for k in check_keys(c)
            }
            res["check"] = errs
            bad = {k: e for k, e in errs.items() if not e <= TOL}
            if bad:
                res["status"] = "wrong"
                res["error"] = "check failed: " + ", ".join(
                    f"{k} rel err {e:.2g}" for k, e in bad.items()
                )
            else:
                fn = impl.timed(c["mode"], p)
                min_s = job["min_sample_s"] * (4 if c["mode"] == "gen" else 1)
                with impl.context(c["mode"]):
                    samples, number = measure(fn, job["repeat"], job["budget_s"], min_s)
                res.update(
                    status="ok",
                    samples=samples,
                    number=number,
                    median=float(np.median(samples)),
                    min=min(samples),
                )
        except Exception as e:  # noqa: BLE001 - recorded per configuration
            res = {"status": "error", "error": f"{type(e).__name__}: {e}"}
        out["results"][key] = res
        if res["status"] == "ok":
            gf = flops(c) / res["median"] / 1e9
            log(
                f"{label} {key}: {res['median'] * 1e3:.4g} ms (median of "
                f"{len(res['samples'])}x{res['number']}), {gf:.1f} GFLOP/s, "
                f"max rel err {max(res['check'].values()):.1g}"
            )
        else:
            log(f"{label} {key}: {res['status'].upper()} {res.get('error', '')}")
    out.pop("current", None)
    result_path.write_text(json.dumps(out))


def worker_ref(job: dict, result_path: Path) -> None:
    """``--side ref``: float64 answers of ``rnnkit.reference`` for every configuration.

    Falls back to torch in float64 (labelled) when the reference cannot be imported.
    """
    out: dict[str, Any] = {"side": "ref", "info": side_setup("ref", job["threads"])}
    try:
        from rnnkit import reference

        out["source"] = "rnnkit.reference (float64)"

        def make(c: Config, w: dict) -> Any:
            return LayerSide(reference, c, w, dtype="float64")
    except Exception as e:  # noqa: BLE001
        out["reference_error"] = f"{type(e).__name__}: {e}"
        import torch  # noqa: F401 - the fallback needs it; ImportError ends the run

        out["source"] = "torch (float64) - rnnkit.reference unavailable"
        log(f"[ref] rnnkit.reference unavailable ({e}); using torch float64")

        def make(c: Config, w: dict) -> Any:
            return TorchSide(c, w, dtype="float64")

    ref_dir = Path(job["ref_dir"])
    done: dict[str, str] = {}
    for c in job["configs"]:
        rk_ = ref_key(c)
        if rk_ in done:
            continue
        t = time.perf_counter()
        try:
            p = make_problem(c)
            # a training call yields the inference answer too (same y, h_n, c_n)
            mode = "gen" if c["mode"] == "gen" else "train"
            got = make(c, p["weights"]).run_once(mode, p)
            np.savez(
                ref_dir / f"{rk_}.npz",
                **{k: np.asarray(v) for k, v in got.items() if v is not None},
            )
            done[rk_] = "ok"
            log(f"[ref] {rk_}: {time.perf_counter() - t:.2f} s")
        except Exception as e:  # noqa: BLE001
            done[rk_] = f"{type(e).__name__}: {e}"
            log(f"[ref] {rk_}: ERROR {done[rk_]}")
    out["results"] = done
    result_path.write_text(json.dumps(out))


def sgemm_gflops(n: int, seconds: float) -> float:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.T.copy()
    a @ b
    best = math.inf
    stop = time.perf_counter() + seconds
    while True:
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
        if time.perf_counter() > stop:
            break
    return 2.0 * n**3 / best / 1e9


def worker_peak(job: dict, result_path: Path) -> None:
    """``--side peak``: FMA-loop peak of rnnkit's core, and a NumPy SGEMM estimate."""
    out: dict[str, Any] = {"side": "peak", "threads": job["threads"]}
    out["info"] = side_setup("peak", job["threads"])
    try:
        from rnnkit import _core

        probe = getattr(_core, "fma_peak_gflops", None)
        if probe is None:
            out["fma_error"] = "rnnkit._core has no fma_peak_gflops"
        else:
            out["fma_gflops"] = max(float(probe(job["seconds"])) for _ in range(3))
    except Exception as e:  # noqa: BLE001
        out["fma_error"] = f"{type(e).__name__}: {e}"
    out["sgemm_gflops"] = sgemm_gflops(job["sgemm_n"], 3 * job["seconds"])
    log(
        f"[peak x{job['threads']}] FMA loop: "
        f"{out.get('fma_gflops', out.get('fma_error'))}"
        f"; NumPy SGEMM {job['sgemm_n']}: {out['sgemm_gflops']:.1f} GFLOP/s"
    )
    result_path.write_text(json.dumps(out))


def _proc_status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_hwm() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def workspace_bytes(layer: Any, c: Config) -> tuple[int | None, str]:
    """Workspace a training step of ``layer`` needs, by the layer's own formula.

    ``layer.workspace_bytes(T, B, train=True)`` where the layer has it; else from
    ``rnnkit._core.workspace_size``: the reserve kept by the training forward plus the
    larger of the forward and backward scratch (one scratch buffer serves both).
    """
    T, B = c["T"], c["B"]
    if hasattr(layer, "workspace_bytes"):
        return int(layer.workspace_bytes(T, B, train=True)), "layer.workspace_bytes"
    try:
        from rnnkit import _core

        desc = (c["cell"], "float32", T, B, c["I"], c["H"], 1, False, True)
        r1, s1 = _core.workspace_size(*desc, 1)
        _, s2 = _core.workspace_size(*desc, 2)
        return int(r1 + max(s1, s2)), "_core.workspace_size: reserve + max(scratch)"
    except Exception as e:  # noqa: BLE001
        return None, f"n/a ({type(e).__name__}: {e})"


def worker_mem(job: dict, result_path: Path) -> None:
    """``--side mem``: peak RSS growth of one training step, in a fresh process.

    Thread pools and library buffers are initialized first: for NumPy and torch by a
    tiny step of the same cell; for rnnkit by a short ``fma_peak_gflops`` run (a tiny
    step would already grow rnnkit's shared scratch buffer, hiding part of the
    workspace). Then VmHWM is reset to the current RSS and the step runs; growth =
    VmHWM - RSS before. Twice: the first step (includes lazily allocated workspace)
    and the second.
    """
    c, target = job["config"], job["target"]
    out: dict[str, Any] = {"side": "mem", "target": target, "key": cfg_key(c)}
    out["info"] = side_setup("mem:" + target, job["threads"])
    try:
        probe = None
        if target == "rnnkit":
            from rnnkit import _core

            probe = getattr(_core, "fma_peak_gflops", None)
        if probe is not None:
            probe(0.02)
        else:
            small = dict(c, T=2, B=2)
            ps = make_problem(small)
            make_side(target, small, ps["weights"]).timed("train", ps)()
        p = make_problem(c)
        impl = make_side(target, c, p["weights"])
        fn = impl.timed("train", p)
        steps = []
        for _ in range(2):
            gc.collect()
            rss0 = _proc_status_kb("VmRSS")
            out["hwm_reset"] = _reset_hwm()
            hwm0 = _proc_status_kb("VmHWM")
            res = fn()
            hwm = _proc_status_kb("VmHWM")
            del res
            steps.append(1024 * (hwm - (rss0 if out["hwm_reset"] else max(rss0, hwm0))))
        out["step_bytes"] = steps
        if target == "rnnkit":
            out["workspace_bytes"], out["workspace_source"] = workspace_bytes(
                impl.layer, c
            )
    except Exception as e:  # noqa: BLE001
        out["error"] = f"{type(e).__name__}: {e}"
    result_path.write_text(json.dumps(out))
