"""The projected-LSTM kernel (``_core.lstmp_*`` through ``rnnkit._lstmp``) against
the NumPy reference (``rnnkit.reference.LSTM(proj_size=P)``), finite differences
and ``torch.nn.LSTM(proj_size=P)``: forward, every gradient, stacked and
bidirectional, lengths, odd sizes, both dtypes, every SIMD path, thread counts."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest

import rnnkit as rk
from _helpers import fd_gradient
from conftest import FD_TOL, tol
from rnnkit import _core, _lstmp
from rnnkit import reference as ref
from rnnkit.reference.options import CellMasks, Masks, Options, draw_masks


@dataclasses.dataclass(frozen=True)
class PCase:
    T: int
    B: int
    I: int
    H: int
    P: int
    L: int = 1
    bidir: bool = False
    lengths: bool = False
    bias: bool = True

    def __str__(self) -> str:
        return (
            f"T{self.T}B{self.B}I{self.I}H{self.H}P{self.P}L{self.L}"
            f"{'-bi' if self.bidir else ''}{'-len' if self.lengths else ''}"
            f"{'' if self.bias else '-nobias'}"
        )

    @property
    def D(self) -> int:
        return 2 if self.bidir else 1


CASES = [
    PCase(5, 3, 4, 7, 3),
    PCase(6, 4, 5, 20, 9, L=2, bidir=True, lengths=True),
    PCase(1, 1, 3, 5, 2, bidir=True),  # T = 1, B = 1
    PCase(4, 1, 3, 17, 16, L=2),
    PCase(3, 5, 2, 9, 4, lengths=True, bias=False),
    # depth blocks (P, H, 4H past the 128-deep block), tiles split across threads
    PCase(4, 16, 8, 150, 130, L=2, bidir=True, lengths=True),
    # rows split across threads (a batch of many rows, small weights)
    PCase(40, 100, 8, 24, 10, bidir=True, lengths=True),
]


def make_layer(case: PCase, dtype: str, seed: int = 3) -> Any:
    return ref.LSTM(
        case.I,
        case.H,
        num_layers=case.L,
        bidirectional=case.bidir,
        bias=case.bias,
        proj_size=case.P,
        dtype=dtype,
        seed=seed,
    )


def make_inputs(case: PCase, dtype: str, rng: np.random.Generator) -> dict[str, Any]:
    T, B, LD, D = case.T, case.B, case.L * case.D, case.D
    lengths = None
    if case.lengths:
        lengths = rng.integers(1, T + 1, size=B).astype(np.int64)
        lengths[rng.integers(B)] = T
    f = np.dtype(dtype)
    return {
        "x": rng.standard_normal((T, B, case.I)).astype(f),
        "h0": (0.5 * rng.standard_normal((LD, B, case.P))).astype(f),
        "c0": (0.5 * rng.standard_normal((LD, B, case.H))).astype(f),
        "lengths": lengths,
        "dy": rng.standard_normal((T, B, D * case.P)).astype(f),
        "dhn": rng.standard_normal((LD, B, case.P)).astype(f),
        "dcn": rng.standard_normal((LD, B, case.H)).astype(f),
    }


def run_kernel(
    layer: Any, inp: dict[str, Any], masks: Masks | None = None
) -> dict[str, np.ndarray]:
    layer.zero_grad()
    y, hn, cn, ctx = _lstmp.forward(
        layer, inp["x"], inp["h0"], inp["c0"], inp["lengths"], True, masks
    )
    if masks is None:  # inference == training forward
        yi, hni, cni, none = _lstmp.forward(
            layer, inp["x"], inp["h0"], inp["c0"], inp["lengths"], False, None
        )
        assert none is None
        for a, b in ((y, yi), (hn, hni), (cn, cni)):
            np.testing.assert_array_equal(a, b)
    dx, dh0, dc0 = _lstmp.backward(layer, ctx, inp["dy"], inp["dhn"], inp["dcn"])
    out = {"y": y, "h_n": hn, "c_n": cn, "dx": dx, "dh0": dh0, "dc0": dc0}
    out.update({"grad " + k: np.array(v) for k, v in layer.grads.items()})
    return out


def run_reference(
    layer: Any,
    inp: dict[str, Any],
    masks: Masks | None = None,
    options: Options | None = None,
) -> dict[str, np.ndarray]:
    y, hn, cn, cache = ref.forward(
        "lstm",
        inp["x"],
        inp["h0"],
        inp["c0"],
        layer.params,
        num_layers=layer.num_layers,
        bidirectional=layer.bidirectional,
        lengths=inp["lengths"],
        train=True,
        options=options or layer.options,
        masks=masks,
    )
    assert cache is not None
    grads = {k: np.zeros_like(v) for k, v in layer.params.items()}
    dx, dh0, dc0 = ref.backward(cache, inp["dy"], inp["dhn"], inp["dcn"], grads)
    out = {"y": y, "h_n": hn, "c_n": cn, "dx": dx, "dh0": dh0, "dc0": dc0}
    out.update({"grad " + k: v for k, v in grads.items()})
    return out


def assert_close(got: dict, want: dict, dtype: str, what: str) -> None:
    assert set(got) == set(want), (sorted(got), sorted(want))
    for k in want:
        kind = "grad" if k.startswith(("grad", "d")) else "out"
        rtol, atol = tol(dtype, kind)
        np.testing.assert_allclose(
            got[k], want[k], rtol=rtol, atol=atol, err_msg=f"{what}: {k}"
        )


def assert_equal(got: dict, want: dict, what: str) -> None:
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=f"{what}: {k}")


# ------------------------------------------------------------- vs reference
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_matches_reference(case: PCase, dtype: str, rng: np.random.Generator) -> None:
    layer = make_layer(case, dtype)
    inp = make_inputs(case, dtype, rng)
    got, want = run_kernel(layer, inp), run_reference(layer, inp)
    assert got["y"].shape == (case.T, case.B, case.D * case.P)
    assert got["h_n"].shape == (case.L * case.D, case.B, case.P)
    assert got["c_n"].shape == (case.L * case.D, case.B, case.H)
    assert any(k.startswith("grad weight_hr") for k in got)
    assert_close(got, want, dtype, str(case))
    if inp["lengths"] is not None:  # outputs past a row's end are zero
        t = np.arange(case.T)[:, None]
        pad = t >= inp["lengths"][None, :]
        assert np.all(got["y"][pad] == 0) and np.all(got["dx"][pad] == 0)


@pytest.mark.filterwarnings("ignore:set_num_threads.*more threads than")
@pytest.mark.parametrize("case", [CASES[1], CASES[5], CASES[6]], ids=str)
def test_every_simd_path_and_thread_count(
    case: PCase, rng: np.random.Generator, restore_config: Any
) -> None:
    """Bitwise identical for 1, 2 and 3 threads on every SIMD path, and within
    tolerance of the reference on each."""
    from rnnkit._config import set_adaptive_threads

    set_adaptive_threads(False)
    for dtype in ("float32", "float64"):
        layer = make_layer(case, dtype)
        inp = make_inputs(case, dtype, rng)
        want = run_reference(layer, inp)
        for simd in rk.simd_paths():
            rk.set_simd(simd)
            results = {}
            for n in (1, 2, 3):
                rk.set_num_threads(n)
                results[n] = run_kernel(layer, inp)
            assert_equal(results[2], results[1], f"{simd} {dtype}: 2 vs 1 threads")
            assert_equal(results[3], results[1], f"{simd} {dtype}: 3 vs 1 threads")
            assert_close(results[1], want, dtype, f"{simd} {dtype} vs reference")


def test_simd_environment_override() -> None:
    """RNNKIT_SIMD picks the path at import; each path agrees with the reference."""
    code = textwrap.dedent(
        """
        import numpy as np, rnnkit as rk, sys
        sys.path.insert(0, {tests!r})
        import test_lstmp as t
        assert rk.get_simd() == {simd!r}, rk.get_simd()
        case = t.CASES[1]
        for dtype in ("float32", "float64"):
            layer = t.make_layer(case, dtype)
            inp = t.make_inputs(case, dtype, np.random.default_rng(0))
            t.assert_close(t.run_kernel(layer, inp), t.run_reference(layer, inp),
                           dtype, {simd!r})
        print("ok")
        """
    )
    tests = os.path.dirname(os.path.abspath(__file__))
    for simd in rk.simd_paths():
        env = dict(os.environ, RNNKIT_SIMD=simd)
        r = subprocess.run(
            [sys.executable, "-c", code.format(tests=tests, simd=simd)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0 and r.stdout.strip() == "ok", (simd, r.stderr)


def test_backward_adds_into_grads(rng: np.random.Generator) -> None:
    case = CASES[1]
    layer = make_layer(case, "float64")
    inp = make_inputs(case, "float64", rng)
    once = run_kernel(layer, inp)
    _, _, _, ctx = _lstmp.forward(
        layer, inp["x"], inp["h0"], inp["c0"], inp["lengths"], True, None
    )
    _lstmp.backward(layer, ctx, inp["dy"], inp["dhn"], inp["dcn"])  # adds again
    for k, v in layer.grads.items():
        np.testing.assert_allclose(v, 2 * once["grad " + k], rtol=1e-12, atol=1e-14)


# ------------------------------------------------------ finite differences
def test_gradients_vs_finite_differences(rng: np.random.Generator) -> None:
    case = PCase(3, 2, 3, 5, 3, L=2, bidir=True, lengths=True)
    layer = make_layer(case, "float64")
    inp = make_inputs(case, "float64", rng)
    inp["lengths"] = np.array([3, 2], dtype=np.int64)
    wy, wh, wc = inp["dy"], inp["dhn"], inp["dcn"]

    def loss() -> float:
        y, hn, cn, _ = _lstmp.forward(
            layer, inp["x"], inp["h0"], inp["c0"], inp["lengths"], False, None
        )
        return float((y * wy).sum() + (hn * wh).sum() + (cn * wc).sum())

    got = run_kernel(layer, inp)
    eps, rtol, atol = FD_TOL["eps"], FD_TOL["rtol"], FD_TOL["atol"]
    arrays = {"dx": inp["x"], "dh0": inp["h0"], "dc0": inp["c0"]}
    arrays.update({"grad " + k: v for k, v in layer.params.items()})
    for name, arr in arrays.items():
        g = np.zeros(arr.shape)
        flat = arr.reshape(-1)
        assert np.shares_memory(flat, arr)
        for i in range(arr.size):
            old = flat[i]
            flat[i] = old + eps
            up = loss()
            flat[i] = old - eps
            down = loss()
            flat[i] = old
            g.reshape(-1)[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(got[name], g, rtol=rtol, atol=atol, err_msg=name)


# ------------------------------------------------------------------ torch
@pytest.mark.parametrize("lengths", [False, True])
def test_torch_parity(lengths: bool, rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    case = PCase(6, 4, 5, 12, 7, L=2, bidir=True, lengths=lengths)
    layer = make_layer(case, "float64")
    inp = make_inputs(case, "float64", rng)
    got = run_kernel(layer, inp)
    m = torch.nn.LSTM(
        case.I,
        case.H,
        num_layers=case.L,
        bidirectional=True,
        proj_size=case.P,
        dtype=torch.float64,
    )
    names = [n for n, _ in m.named_parameters()]
    assert sorted(names) == sorted(layer.params.keys())
    with torch.no_grad():
        for n, p in m.named_parameters():
            p.copy_(torch.from_numpy(np.array(layer.params[n])))
    x = torch.from_numpy(inp["x"]).requires_grad_()
    h0 = torch.from_numpy(inp["h0"]).requires_grad_()
    c0 = torch.from_numpy(inp["c0"]).requires_grad_()
    if lengths:
        lens = torch.from_numpy(inp["lengths"])
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lens, enforce_sorted=False)
        yp, (hn, cn) = m(packed, (h0, c0))
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(yp, total_length=case.T)
    else:
        y, (hn, cn) = m(x, (h0, c0))
    wy = torch.from_numpy(inp["dy"])
    loss = (y * wy).sum() + (hn * torch.from_numpy(inp["dhn"])).sum()
    loss = loss + (cn * torch.from_numpy(inp["dcn"])).sum()
    loss.backward()
    rtol, atol = 1e-10, 1e-12
    want = {
        "y": y.detach().numpy(),
        "h_n": hn.detach().numpy(),
        "c_n": cn.detach().numpy(),
        "dx": x.grad.numpy(),
        "dh0": h0.grad.numpy(),
        "dc0": c0.grad.numpy(),
    }
    want.update({"grad " + n: p.grad.numpy() for n, p in m.named_parameters()})
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v, rtol=rtol, atol=atol, err_msg=k)


# -------------------------------------------------------------- bad input
def _call(case: PCase, **over: Any) -> Any:
    layer = make_layer(case, "float64")
    inp = make_inputs(case, "float64", np.random.default_rng(0))
    T, B = case.T, case.B
    r, s = _core.lstmp_workspace_size(
        "float64",
        T,
        B,
        case.I,
        case.H,
        case.P,
        case.L,
        case.bidir,
        case.bias,
        _core.Mode.TRAIN_FORWARD,
    )
    args: dict[str, Any] = {
        "num_layers": case.L,
        "bidirectional": case.bidir,
        "x": inp["x"],
        "h0": inp["h0"],
        "c0": inp["c0"],
        "weights": _lstmp.weight_list(layer, layer.params),
        "lengths": inp["lengths"],
        "reserve": np.empty(r, np.uint8),
        "scratch": np.empty(s, np.uint8),
        "train": True,
    }
    args.update(over)
    return _core.lstmp_forward(**args)


BAD = PCase(4, 3, 5, 8, 3, L=2, bidir=True)


@pytest.mark.parametrize(
    "over, exc, match",
    [
        (
            {"x": np.zeros((4, 3, 5), np.float32)},
            TypeError,
            "h0 must have dtype float32",
        ),
        ({"h0": np.zeros((4, 3, 8))}, ValueError, r"h0 must have shape \(4, 3, 3\)"),
        ({"c0": np.zeros((4, 3, 3))}, ValueError, r"c0 must have shape \(4, 3, 8\)"),
        ({"c0": np.zeros((4, 8, 3)).transpose(0, 2, 1)}, ValueError, "C-contiguous"),
        ({"weights": []}, ValueError, "weights\\[1\\] must be weight_hh_l0"),
        (
            {"lengths": np.array([1, 5, 2])},
            ValueError,
            r"lengths must be in \[1, T=4\]",
        ),
        ({"reserve": np.empty(8, np.uint8)}, ValueError, "reserve must have at least"),
        ({"scratch": np.empty(8, np.uint8)}, ValueError, "scratch must have at least"),
        ({"reserve": None}, ValueError, "reserve is required"),
        ({"rec_masks": [np.ones((3, 3))] * 3}, ValueError, "rec_masks must hold 4"),
        ({"rec_masks": [np.ones((3, 3))] * 3 + [None]}, ValueError, "must hold 4"),
        ({"rec_masks": [np.ones((3, 4))] * 4}, ValueError, r"rec_masks\[0\] must have"),
        ({"rec_masks": [np.ones((3, 3), np.float32)] * 4}, TypeError, "dtype float64"),
        (
            {"zone_h": [np.zeros((4, 3, 3), bool)] * 4},
            TypeError,
            r"zone_h\[0\] must have dtype uint8",
        ),
        ({"zone_c": [np.zeros((4, 3, 3), np.uint8)] * 4}, ValueError, r"\(4, 3, 8\)"),
        ({"drop_masks": [np.ones((4, 3, 3))]}, ValueError, r"drop_masks\[0\] must"),
        (
            {"train": False, "reserve": None, "drop_masks": [np.ones((4, 3, 6))]},
            ValueError,
            "drop_masks: masks belong to a training forward",
        ),
        ({"zoneout": 1.0}, ValueError, r"zoneout must be in \[0, 1\)"),
    ],
)
def test_bad_input(over: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        _call(BAD, **over)


def test_bad_weights() -> None:
    layer = make_layer(BAD, "float64")
    w = _lstmp.weight_list(layer, layer.params)
    with pytest.raises(ValueError, match="must hold 20 entries"):
        _call(BAD, weights=w[:-1])
    w2 = list(w)
    w2[4] = np.zeros((3, 9))
    with pytest.raises(ValueError, match=r"weight_hr_l0 must have shape \(3, 8\)"):
        _call(BAD, weights=w2)
    w3 = list(w)
    w3[9] = np.zeros((3, 8), np.float32)
    with pytest.raises(TypeError, match="weight_hr_l0_reverse must have dtype"):
        _call(BAD, weights=w3)
    with pytest.raises(ValueError, match="proj_size must be in"):
        _core.lstmp_workspace_size(
            "float64", 4, 3, 5, 8, 8, 1, False, True, _core.Mode.INFERENCE
        )


def test_bad_backward_gradient_buffer(rng: np.random.Generator) -> None:
    layer = make_layer(BAD, "float64")
    inp = make_inputs(BAD, "float64", rng)
    _, _, _, ctx = _lstmp.forward(
        layer, inp["x"], inp["h0"], inp["c0"], None, True, None
    )
    dw = _lstmp.weight_list(layer, layer.grads)
    dw[4] = np.zeros((3, 8), np.float64)[:, ::-1]  # not contiguous
    _, s = _core.lstmp_workspace_size(
        "float64", 4, 3, 5, 8, 3, 2, True, True, _core.Mode.BACKWARD
    )
    with pytest.raises(ValueError, match="grad of weight_hr_l0 must be C-contiguous"):
        _core.lstmp_backward(
            2,
            True,
            5,
            inp["dy"],
            inp["dhn"],
            inp["dcn"],
            ctx.weights,
            dw,
            None,
            ctx.reserve,
            np.empty(s, np.uint8),
        )
    with pytest.raises(ValueError, match=r"dy must have shape \(4, 3, 6\)"):
        _core.lstmp_backward(
            2,
            True,
            5,
            inp["dy"][:, :, :5].copy(),
            inp["dhn"],
            inp["dcn"],
            ctx.weights,
            _lstmp.weight_list(layer, layer.grads),
            None,
            ctx.reserve,
            np.empty(s, np.uint8),
        )


def test_reserve_header_is_checked(rng: np.random.Generator) -> None:
    """A backward whose reserve came from another problem fails by name."""
    layer = make_layer(BAD, "float64")
    inp = make_inputs(BAD, "float64", rng)
    _, _, _, ctx = _lstmp.forward(
        layer, inp["x"], inp["h0"], inp["c0"], None, True, None
    )
    other = dataclasses.replace(BAD, H=9)
    lo = make_layer(other, "float64")
    io = make_inputs(other, "float64", rng)
    _, _, _, octx = _lstmp.forward(lo, io["x"], io["h0"], io["c0"], None, True, None)
    big = np.empty(1 << 22, np.uint8)
    with pytest.raises(ValueError, match="H=9 there, 8 here"):
        _core.lstmp_backward(
            2,
            True,
            5,
            inp["dy"],
            inp["dhn"],
            inp["dcn"],
            ctx.weights,
            _lstmp.weight_list(layer, layer.grads),
            None,
            octx.reserve,
            big,
        )
    with pytest.raises(ValueError, match="holds no projected-LSTM forward"):
        _core.lstmp_backward(
            2,
            True,
            5,
            inp["dy"],
            inp["dhn"],
            inp["dcn"],
            ctx.weights,
            _lstmp.weight_list(layer, layer.grads),
            None,
            np.zeros_like(ctx.reserve),
            big,
        )


# ------------------------------------------------------------------ masks
MASK_OPTIONS = {
    "recurrent_dropout": {"recurrent_dropout": 0.3},
    "zoneout": {"zoneout": 0.3},
    "dropout": {"dropout": 0.4},
    "all": {"recurrent_dropout": 0.25, "zoneout": 0.2, "dropout": 0.3},
}


def masks_for(case: PCase, rates: dict, dtype: str, rng: np.random.Generator):
    opts = Options(proj_size=case.P, **rates)
    masks = draw_masks(
        opts,
        rng,
        cell="lstm",
        T=case.T,
        B=case.B,
        H=case.H,
        num_layers=case.L,
        num_directions=case.D,
        dtype=np.dtype(dtype),
    )
    return opts, masks


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rates", list(MASK_OPTIONS), ids=str)
@pytest.mark.parametrize("case", [CASES[1], CASES[5], CASES[6]], ids=str)
def test_masks_match_reference(
    case: PCase, rates: str, dtype: str, rng: np.random.Generator
) -> None:
    layer = make_layer(case, dtype)
    inp = make_inputs(case, dtype, rng)
    opts, masks = masks_for(case, MASK_OPTIONS[rates], dtype, rng)
    got = run_kernel(layer, inp, masks)
    want = run_reference(layer, inp, masks, opts)
    assert_close(got, want, dtype, f"{case} {rates}")
    plain = run_kernel(layer, inp)
    moot = rates == "dropout" and case.L == 1  # dropout acts between layers only
    assert moot == np.allclose(got["y"], plain["y"])  # the masks did something


@pytest.mark.filterwarnings("ignore:set_num_threads.*more threads than")
def test_masks_every_simd_path_and_thread_count(
    rng: np.random.Generator, restore_config: Any
) -> None:
    from rnnkit._config import set_adaptive_threads

    set_adaptive_threads(False)
    for case in (CASES[5], CASES[6]):
        layer = make_layer(case, "float32")
        inp = make_inputs(case, "float32", rng)
        opts, masks = masks_for(case, MASK_OPTIONS["all"], "float32", rng)
        want = run_reference(layer, inp, masks, opts)
        for simd in rk.simd_paths():
            rk.set_simd(simd)
            res = {}
            for n in (1, 2, 3):
                rk.set_num_threads(n)
                res[n] = run_kernel(layer, inp, masks)
            assert_equal(res[2], res[1], f"{simd} masks: 2 vs 1 threads")
            assert_equal(res[3], res[1], f"{simd} masks: 3 vs 1 threads")
            assert_close(res[1], want, "float32", f"{simd} masks vs reference")


def test_masks_vs_finite_differences(rng: np.random.Generator) -> None:
    """With fixed masks every option is deterministic: gradients by differences."""
    case = PCase(3, 2, 3, 5, 3, L=2, bidir=True, lengths=True)
    layer = make_layer(case, "float64")
    inp = make_inputs(case, "float64", rng)
    inp["lengths"] = np.array([3, 2], dtype=np.int64)
    _, masks = masks_for(case, MASK_OPTIONS["all"], "float64", rng)
    wy, wh, wc = inp["dy"], inp["dhn"], inp["dcn"]

    def loss() -> float:
        y, hn, cn, _ = _lstmp.forward(
            layer, inp["x"], inp["h0"], inp["c0"], inp["lengths"], True, masks
        )
        return float((y * wy).sum() + (hn * wh).sum() + (cn * wc).sum())

    got = run_kernel(layer, inp, masks)
    eps, rtol, atol = FD_TOL["eps"], FD_TOL["rtol"], FD_TOL["atol"]
    arrays = {"dx": inp["x"], "dh0": inp["h0"], "dc0": inp["c0"]}
    arrays.update({"grad " + k: v for k, v in layer.params.items()})
    for name, arr in arrays.items():
        g = fd_gradient(loss, arr, eps=eps)
        np.testing.assert_allclose(got[name], g, rtol=rtol, atol=atol, err_msg=name)


def test_zoneout_inference_is_the_expectation(rng: np.random.Generator) -> None:
    case = CASES[1]
    for dtype in ("float32", "float64"):
        layer = ref.LSTM(
            case.I,
            case.H,
            num_layers=case.L,
            bidirectional=True,
            proj_size=case.P,
            zoneout=0.3,
            dtype=dtype,
            seed=1,
        )
        inp = make_inputs(case, dtype, rng)
        y, hn, cn, ctx = _lstmp.forward(
            layer, inp["x"], inp["h0"], inp["c0"], inp["lengths"], False, None
        )
        assert ctx is None
        ry, rhn, rcn, _ = ref.forward(
            "lstm",
            inp["x"],
            inp["h0"],
            inp["c0"],
            layer.params,
            num_layers=case.L,
            bidirectional=True,
            lengths=inp["lengths"],
            train=False,
            options=layer.options,
        )
        rtol, atol = tol(dtype, "out")
        for a, b in ((y, ry), (hn, rhn), (cn, rcn)):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def test_adapter_masks_at_inference_are_ignored(rng: np.random.Generator) -> None:
    """Inference draws and takes no mask (the reference's rule)."""
    case = CASES[0]
    layer = make_layer(case, "float64")
    inp = make_inputs(case, "float64", rng)
    masks = Masks(cells=[CellMasks(recurrent=np.zeros((case.B, case.P)))], dropout=[])
    y, *_ = _lstmp.forward(layer, inp["x"], inp["h0"], inp["c0"], None, False, masks)
    y0, *_ = _lstmp.forward(layer, inp["x"], inp["h0"], inp["c0"], None, False, None)
    np.testing.assert_array_equal(y, y0)
