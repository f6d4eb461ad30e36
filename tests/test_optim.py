"""Optimizers, clipping and schedules.

Every optimizer is run step by step next to a NumPy transcription of its published
update (written the way the papers state it, allocation and all) on a noisy
quadratic with two parameter tensors, and, when torch is importable, next to
``torch.optim``. Also: no allocation per step, in-place updates, state round trips
that continue a run bitwise, clipping, schedules."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

import rnnkit as rk
from conftest import named_tol
from rnnkit import optim

STEPS = 25
SHAPES = [(3, 4), (5,)]
N = sum(int(np.prod(s)) for s in SHAPES)


@pytest.fixture(autouse=True, scope="module")
def _torch_one_thread():
    """torch (when importable) on one thread: its OpenMP pool and the kernels' would
    otherwise spin against each other on a small machine."""
    try:
        import torch
    except ImportError:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Problem:
    """f(p) = 1/2 p^T A p + c_t^T p with a fresh c_t each step: g = A p + c_t."""

    def __init__(self, seed: int = 0) -> None:
        r = np.random.default_rng(seed)
        q = r.standard_normal((N, N))
        self.A = q @ q.T / N + np.eye(N) * 0.1
        self.c = r.standard_normal((STEPS * 2, N))
        self.p0 = r.standard_normal(N)

    def grad(self, p: np.ndarray, t: int) -> np.ndarray:
        return self.A @ p + self.c[t]


# ------------------------------------------------ the published updates, plainly
def ref_sgd(
    pb, lr, factors, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0
):
    p, buf, out = pb.p0.copy(), None, []
    for t in range(STEPS):
        g = pb.grad(p, t) + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * factors[t] * g
        out.append(p)
    return out


def ref_adam(
    pb,
    lr,
    factors,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    amsgrad=False,
    decoupled=False,
):
    b1, b2 = betas
    p, m, v, vmax, out = pb.p0.copy(), 0.0, 0.0, 0.0, []
    for t in range(1, STEPS + 1):
        a = lr * factors[t - 1]
        g = pb.grad(p, t - 1)
        if decoupled:
            p = p - a * weight_decay * p  # AdamW (Loshchilov & Hutter, Alg. 2)
        else:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        vmax = np.maximum(vmax, v) if amsgrad else v
        v_hat = vmax / (1 - b2**t)
        p = p - a * m_hat / (np.sqrt(v_hat) + eps)
        out.append(p)
    return out


def ref_rmsprop(
    pb,
    lr,
    factors,
    alpha=0.99,
    eps=1e-8,
    weight_decay=0.0,
    momentum=0.0,
    centered=False,
):
    p, v, gavg, buf, out = pb.p0.copy(), 0.0, 0.0, 0.0, []
    for t in range(STEPS):
        g = pb.grad(p, t) + weight_decay * p
        v = alpha * v + (1 - alpha) * g * g
        if centered:
            gavg = alpha * gavg + (1 - alpha) * g
            r = np.sqrt(v - gavg * gavg) + eps
        else:
            r = np.sqrt(v) + eps
        if momentum:
            buf = momentum * buf + g / r
            p = p - lr * factors[t] * buf
        else:
            p = p - lr * factors[t] * g / r
        out.append(p)
    return out


def ref_adagrad(
    pb,
    lr,
    factors,
    lr_decay=0.0,
    weight_decay=0.0,
    initial_accumulator_value=0.0,
    eps=1e-10,
):
    p, s, out = pb.p0.copy(), initial_accumulator_value, []
    for t in range(1, STEPS + 1):
        g = pb.grad(p, t - 1) + weight_decay * p
        s = s + g * g
        clr = lr * factors[t - 1] / (1 + (t - 1) * lr_decay)
        p = p - clr * g / (np.sqrt(s) + eps)
        out.append(p)
    return out


CASES = [
    ("SGD", ref_sgd, {"lr": 0.05}),
    ("SGD", ref_sgd, {"lr": 0.05, "momentum": 0.9}),
    (
        "SGD",
        ref_sgd,
        {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01},
    ),
    (
        "SGD",
        ref_sgd,
        {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.02},
    ),
    ("Adagrad", ref_adagrad, {"lr": 0.1}),
    (
        "Adagrad",
        ref_adagrad,
        {
            "lr": 0.1,
            "lr_decay": 0.01,
            "weight_decay": 0.01,
            "initial_accumulator_value": 0.1,
        },
    ),
    ("RMSprop", ref_rmsprop, {"lr": 0.01}),
    ("RMSprop", ref_rmsprop, {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01}),
    (
        "RMSprop",
        ref_rmsprop,
        {"lr": 0.01, "centered": True, "alpha": 0.9, "momentum": 0.5},
    ),
    ("Adam", ref_adam, {"lr": 0.05}),
    (
        "Adam",
        ref_adam,
        {"lr": 0.05, "betas": (0.8, 0.99), "weight_decay": 0.01, "amsgrad": True},
    ),
    ("AdamW", ref_adam, {"lr": 0.05, "weight_decay": 0.1}),
    ("AdamW", ref_adam, {"lr": 0.05, "weight_decay": 0.1, "amsgrad": True}),
]
IDS = [f"{name}-{i}" for i, (name, _, _) in enumerate(CASES)]


def split(v: np.ndarray) -> list[np.ndarray]:
    out, off = [], 0
    for s in SHAPES:
        n = int(np.prod(s))
        out.append(v[off : off + n].reshape(s).copy())
        off += n
    return out


def run_rnnkit(pb, name, kw, schedule=None, steps=STEPS, dtype=np.float64):
    ps = [a.astype(dtype) for a in split(pb.p0)]
    gs = [np.zeros_like(a) for a in ps]
    opt = optim.OPTIMIZERS[name](list(zip(ps, gs)), schedule=schedule, **kw)
    out = []
    for t in range(steps):
        g = pb.grad(np.concatenate([a.ravel() for a in ps]).astype(np.float64), t)
        for dst, src in zip(gs, split(g)):
            dst[...] = src
        opt.step()
        out.append(np.concatenate([a.ravel() for a in ps]))
    return out, opt


@pytest.mark.parametrize(("name", "ref", "kw"), CASES, ids=IDS)
def test_matches_published_update(name, ref, kw):
    pb = Problem()
    extra = {"decoupled": True} if name == "AdamW" else {}
    want = ref(pb, factors=[1.0] * STEPS, **kw, **extra)
    got, _ = run_rnnkit(pb, name, kw)
    rtol, atol = named_tol("optim_float64")
    for t, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"step {t + 1}")


def test_schedule_is_applied_per_step():
    pb = Problem(1)
    sched = optim.LinearWarmup(5, optim.CosineDecay(15, min_factor=0.1))
    factors = [sched(t) for t in range(STEPS)]
    want = ref_adam(pb, 0.05, factors)
    got, opt = run_rnnkit(pb, "Adam", {"lr": 0.05}, schedule=sched)
    rtol, atol = named_tol("optim_float64")
    np.testing.assert_allclose(got[-1], want[-1], rtol=rtol, atol=atol)
    assert opt.last_lr == pytest.approx(0.05 * factors[-1])


@pytest.mark.parametrize(("name", "ref", "kw"), CASES, ids=IDS)
def test_torch_optim_parity(name, ref, kw):
    torch = pytest.importorskip("torch")
    pb = Problem()
    ts = [torch.tensor(a, requires_grad=True) for a in split(pb.p0)]
    topt = getattr(torch.optim, name)(ts, **kw)
    got, _ = run_rnnkit(pb, name, kw)
    rtol, atol = named_tol("torch_optim_float64")
    for t in range(STEPS):
        g = pb.grad(np.concatenate([a.detach().numpy().ravel() for a in ts]), t)
        for tt, gg in zip(ts, split(g)):
            tt.grad = torch.tensor(gg)
        topt.step()
        want = np.concatenate([a.detach().numpy().ravel() for a in ts])
        np.testing.assert_allclose(
            got[t], want, rtol=rtol, atol=atol, err_msg=f"step {t + 1}"
        )


@pytest.mark.parametrize(
    ("name", "kw"), [(c[0], c[2]) for c in CASES[1::2]], ids=IDS[1::2]
)
def test_step_does_not_allocate(name, kw):
    rng = np.random.default_rng(0)
    p = rng.standard_normal(100_000)
    g = rng.standard_normal(100_000)
    opt = optim.OPTIMIZERS[name]([(p, g)], schedule=optim.ExponentialDecay(0.99), **kw)
    opt.step()
    optim.clip_grad_norm([(p, g)], 1e9)
    tracemalloc.start()
    try:
        for _ in range(5):
            optim.clip_grad_norm([(p, g)], 10.0)
            optim.clip_grad_value([(p, g)], 10.0)
            opt.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < p.nbytes // 100, f"{name}: {peak} bytes allocated in 5 steps"


def test_updates_in_place_on_a_model():
    model = rk.Sequential(rk.GRU(3, 4, seed=0), rk.Linear(4, 2, seed=1))
    w = model.layers[1].params["weight"]
    before = w.copy()
    opt = rk.SGD(model, lr=0.1)
    model.zero_grad()
    model.layers[1].grads["weight"][...] = 1.0
    opt.step()
    assert model.layers[1].params["weight"] is w  # same view, new values
    rtol, atol = named_tol("float32_ulps")
    np.testing.assert_allclose(w, before - 0.1, rtol=rtol, atol=atol)
    assert opt.pairs[0][0].size == model.num_parameters  # one flat pair


@pytest.mark.parametrize(("name", "kw"), [(c[0], c[2]) for c in CASES], ids=IDS)
def test_state_round_trip_continues_bitwise(name, kw):
    pb = Problem(2)
    full, _ = run_rnnkit(pb, name, kw, steps=10)
    # 5 steps, save the state, rebuild from config on fresh copies, 5 more steps
    first, opt = run_rnnkit(pb, name, kw, steps=5)
    state = opt.state_dict()
    ps = split(first[-1])
    gs = [np.zeros_like(a) for a in ps]
    opt2 = optim.optimizer_from_config(list(zip(ps, gs)), state["config"])
    opt2.load_state_dict(state)
    assert opt2.step_count == 5
    for t in range(5, 10):
        g = pb.grad(np.concatenate([a.ravel() for a in ps]), t)
        for dst, src in zip(gs, split(g)):
            dst[...] = src
        opt2.step()
        assert np.array_equal(np.concatenate([a.ravel() for a in ps]), full[t])


def test_load_state_dict_checks():
    p, g = np.zeros(4), np.zeros(4)
    opt = rk.Adam([(p, g)])
    with pytest.raises(KeyError, match="slots"):
        opt.load_state_dict({"slots": {"exp_avg": [np.zeros(4)]}, "step_count": 1})
    with pytest.raises(ValueError, match="4 elements"):
        opt.load_state_dict(
            {
                "slots": {"exp_avg": [np.zeros(3)], "exp_avg_sq": [np.zeros(3)]},
                "step_count": 1,
            }
        )
    with pytest.raises(ValueError, match="step_count"):
        opt.load_state_dict(
            {
                "slots": {"exp_avg": [np.zeros(4)], "exp_avg_sq": [np.zeros(4)]},
                "step_count": -1,
            }
        )


def test_param_checks():
    with pytest.raises(ValueError, match="C-contiguous"):
        rk.SGD([(np.zeros((4, 4))[:, ::2], np.zeros((4, 2)))])
    with pytest.raises(ValueError, match="same shape"):
        rk.SGD([(np.zeros(3), np.zeros(4))])
    with pytest.raises(TypeError, match="float numpy array"):
        rk.SGD([(np.zeros(3, int), np.zeros(3, int))])
    with pytest.raises(ValueError, match="nesterov"):
        rk.SGD([(np.zeros(3), np.zeros(3))], nesterov=True)


# ------------------------------------------------------------------- clipping
def test_clip_grad_norm(rng):
    gs = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    pairs = [(np.zeros_like(g), g) for g in gs]
    orig = [g.copy() for g in gs]
    norm = math.sqrt(sum(float((g**2).sum()) for g in orig))
    assert rk.clip_grad_norm(pairs, 2 * norm) == pytest.approx(norm)
    assert all(np.array_equal(a, b) for a, b in zip(gs, orig))  # below: untouched
    assert rk.clip_grad_norm(pairs, 1.0) == pytest.approx(norm)
    new = math.sqrt(sum(float((g**2).sum()) for g in gs))
    rtol, atol = named_tol("clip_norm")
    assert new == pytest.approx(1.0, rel=rtol, abs=atol)
    np.testing.assert_allclose(gs[0], orig[0] / (norm + 1e-6))
    rk.clip_grad_value(pairs, 0.1)
    assert max(np.abs(g).max() for g in gs) <= 0.1


def test_clip_grad_norm_survives_overflowing_squares():
    g = np.full(1000, 1e30, dtype=np.float32)
    norm = rk.clip_grad_norm([(np.zeros_like(g), g)], 1.0)
    rtol, atol = named_tol("clip_norm")
    assert norm == pytest.approx(1e30 * math.sqrt(1000), rel=rtol, abs=atol)
    rtol, atol = named_tol("clip_norm_float32")
    assert np.isfinite(g).all() and float(
        np.sqrt((g.astype(np.float64) ** 2).sum())
    ) == pytest.approx(1.0, rel=rtol, abs=atol)


def test_clip_torch_parity(rng):
    torch = pytest.importorskip("torch")
    gs = [rng.standard_normal((3, 4)) * 5, rng.standard_normal(5) * 5]
    ts = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in gs]
    for t, g in zip(ts, gs):
        t.grad = torch.tensor(g.copy())
    want = torch.nn.utils.clip_grad_norm_(ts, 1.5).item()
    got = rk.clip_grad_norm([(np.zeros_like(g), g) for g in gs], 1.5)
    rtol, atol = named_tol("reordered_float64")
    assert got == pytest.approx(want, rel=rtol, abs=atol)
    for t, g in zip(ts, gs):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=rtol, atol=atol)


# ------------------------------------------------------------------ schedules
def test_schedule_closed_forms():
    assert [optim.StepDecay(3, 0.5)(t) for t in range(7)] == [
        1,
        1,
        1,
        0.5,
        0.5,
        0.5,
        0.25,
    ]
    assert optim.ExponentialDecay(0.9)(3) == pytest.approx(0.729)
    c = optim.CosineDecay(10, min_factor=0.2)
    assert c(0) == 1.0 and c(5) == pytest.approx(0.6) and c(10) == pytest.approx(0.2)
    assert c(50) == pytest.approx(0.2)
    w = optim.LinearWarmup(4, optim.StepDecay(2, 0.1))
    assert [round(w(t), 6) for t in range(8)] == [
        0.25,
        0.5,
        0.75,
        1.0,
        1.0,
        1.0,
        0.1,
        0.1,
    ]
    assert optim.LinearWarmup(3)(10) == 1.0
    for s in (
        optim.StepDecay(3, 0.5),
        optim.CosineDecay(7, 0.1),
        optim.LinearWarmup(2, optim.ExponentialDecay(0.5)),
    ):
        again = optim.schedule_from_config(s.config())
        assert [again(t) for t in range(12)] == [s(t) for t in range(12)]


def test_schedules_torch_parity():
    torch = pytest.importorskip("torch")
    S = torch.optim.lr_scheduler
    rtol, atol = named_tol("torch_schedule")
    for ours, make in [
        (optim.StepDecay(4, 0.5), lambda o: S.StepLR(o, 4, 0.5)),
        (optim.ExponentialDecay(0.9), lambda o: S.ExponentialLR(o, 0.9)),
        (optim.CosineDecay(12, 0.0), lambda o: S.CosineAnnealingLR(o, 12)),
    ]:
        topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
        sched = make(topt)
        for t in range(12):
            assert 0.3 * ours(t) == pytest.approx(
                topt.param_groups[0]["lr"], rel=rtol, abs=atol
            ), (ours, t)
            topt.step()
            sched.step()
