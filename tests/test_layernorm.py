"""The layer-normalised LSTM and GRU kernels (csrc/layernorm.cpp through
rnnkit._layernorm) against the NumPy reference (``rnnkit.reference`` layers
with ``layer_norm=True``, whose equations are the specification).

Every case compares the forward (y, h_n, c_n), dx, dh0, dc0 and every parameter
gradient, the layer-norm gains and the LSTM's c bias included, with the
tolerances of conftest.TOL; gains and the c bias are drawn away from their
initial ones and zeros so a wrong gain would show. Thread counts must agree
bitwise on each SIMD path; float64 gradients are checked against centered
finite differences as well.
"""

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
from _helpers import fd_derivative
from conftest import FD_TOL, tol
from rnnkit import _core, _layernorm
from rnnkit.reference import GRU, LSTM, _stack
from rnnkit.reference.options import draw_masks

CLASSES = {"lstm": LSTM, "gru": GRU}


@dataclasses.dataclass(frozen=True)
class Case:
    cell: str
    T: int
    B: int
    I: int
    H: int
    L: int = 1
    bidir: bool = False
    lengths: str | None = None  # None, "unsorted" (max == T) or "short" (max < T)
    dtype: str = "float64"
    bias: bool = True

    @property
    def D(self) -> int:
        return 2 if self.bidir else 1

    def __str__(self) -> str:
        return (
            f"{self.cell}-T{self.T}B{self.B}I{self.I}H{self.H}L{self.L}"
            f"{'-bi' if self.bidir else ''}-{self.lengths}-{self.dtype}"
            f"{'' if self.bias else '-nobias'}"
        )


def make_layer(case: Case, seed: int = 0, **options: float) -> Any:
    layer = CLASSES[case.cell](
        case.I,
        case.H,
        num_layers=case.L,
        bias=case.bias,
        bidirectional=case.bidir,
        dtype=case.dtype,
        seed=seed,
        layer_norm=True,
        **options,
    )
    rng = np.random.default_rng(seed + 100)
    for name, p in layer.params.items():
        if name.startswith("ln_weight"):
            p[...] = rng.uniform(0.5, 1.5, p.shape)
        elif name.startswith("ln_bias"):
            p[...] = rng.uniform(-0.5, 0.5, p.shape)
    return layer


def make_inputs(case: Case, rng: np.random.Generator) -> dict[str, Any]:
    dt = np.dtype(case.dtype)
    T, B, LD, H = case.T, case.B, case.L * case.D, case.H

    def r(*shape: int, scale: float = 1.0) -> np.ndarray:
        return (scale * rng.standard_normal(shape)).astype(dt)

    lengths = None
    if case.lengths is not None:
        top = T if case.lengths == "unsorted" else max(1, T - 2)
        lengths = rng.integers(1, top + 1, B).astype(np.int64)
        lengths[rng.integers(B)] = top
    return {
        "x": r(T, B, case.I),
        "h0": r(LD, B, H, scale=0.5),
        "c0": r(LD, B, H, scale=0.5) if case.cell == "lstm" else None,
        "lengths": lengths,
        "dy": r(T, B, case.D * H),
        "dh_n": r(LD, B, H),
        "dc_n": r(LD, B, H) if case.cell == "lstm" else None,
    }


def make_masks(layer: Any, case: Case, rng: np.random.Generator) -> Any:
    return draw_masks(
        layer.options,
        rng,
        cell=case.cell,
        T=case.T,
        B=case.B,
        H=case.H,
        num_layers=case.L,
        num_directions=case.D,
        dtype=np.dtype(case.dtype),
    )


def run_reference(
    layer: Any, case: Case, inp: dict[str, Any], masks: Any = None
) -> dict[str, Any]:
    y, hn, cn, cache = _stack.forward(
        case.cell,
        inp["x"],
        inp["h0"],
        inp["c0"],
        layer.params,
        num_layers=case.L,
        bidirectional=case.bidir,
        lengths=inp["lengths"],
        train=True,
        options=layer.options,
        masks=masks,
    )
    assert cache is not None
    grads = {k: np.zeros_like(v) for k, v in layer.params.items()}
    dx, dh0, dc0 = _stack.backward(cache, inp["dy"], inp["dh_n"], inp["dc_n"], grads)
    out = {"y": y, "h_n": hn, "c_n": cn, "dx": dx, "dh0": dh0, "dc0": dc0}
    out.update({"grad " + k: v for k, v in grads.items()})
    return out


def run_kernel(
    layer: Any, case: Case, inp: dict[str, Any], masks: Any = None
) -> dict[str, Any]:
    layer.zero_grad()
    y, hn, cn, ctx = _layernorm.forward(
        layer, inp["x"], inp["h0"], inp["c0"], inp["lengths"], True, masks
    )
    assert ctx is not None
    dx, dh0, dc0 = _layernorm.backward(layer, ctx, inp["dy"], inp["dh_n"], inp["dc_n"])
    out = {"y": y, "h_n": hn, "c_n": cn, "dx": dx, "dh0": dh0, "dc0": dc0}
    out.update({"grad " + k: np.array(v) for k, v in layer.grads.items()})
    return out


def assert_close(got: dict[str, Any], want: dict[str, Any], dtype: str, what: str):
    assert got.keys() == want.keys()
    for k, w in want.items():
        g = got[k]
        if w is None:
            assert g is None, f"{what}: {k}"
            continue
        kind = "out" if k in ("y", "h_n", "c_n") else "grad"
        rtol, atol = tol(np.dtype(dtype), kind)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"{what}: {k}")


def assert_equal(got: dict[str, Any], want: dict[str, Any], what: str) -> None:
    for k, w in want.items():
        if w is None:
            assert got[k] is None
        else:
            assert np.array_equal(got[k], w), f"{what}: {k} differs"


def cases() -> list[Case]:
    out = []
    for cell in ("lstm", "gru"):
        for dtype in ("float32", "float64"):
            out += [
                Case(cell, 5, 3, 4, 7, dtype=dtype),
                Case(cell, 6, 5, 3, 5, 2, True, "unsorted", dtype),
                Case(cell, 1, 2, 3, 4, dtype=dtype),  # T = 1
                Case(cell, 4, 1, 3, 33, 2, dtype=dtype),  # B = 1, H % 16 != 0
            ]
        out += [
            Case(cell, 5, 4, 6, 16, 1, True, "short"),
            Case(cell, 4, 3, 5, 6, 2, False, "unsorted", bias=False),
            Case(cell, 3, 2, 3, 130, 1, False, None),  # depth blocks of the product
        ]
    return out


@pytest.mark.parametrize("case", cases(), ids=str)
def test_matches_reference(case, rng):
    layer = make_layer(case)
    inp = make_inputs(case, rng)
    got = run_kernel(layer, case, inp)
    want = run_reference(layer, case, inp)
    assert_close(got, want, case.dtype, str(case))
    # inference: the same outputs, no reserve
    y, hn, cn, ctx = _layernorm.forward(
        layer, inp["x"], inp["h0"], inp["c0"], inp["lengths"], False, None
    )
    assert ctx is None
    assert_close(
        {"y": y, "h_n": hn, "c_n": cn},
        {k: want[k] for k in ("y", "h_n", "c_n")},
        case.dtype,
        f"{case} inference",
    )


def test_padding_and_outputs_at_padding_are_zero(rng):
    case = Case("lstm", 6, 4, 3, 5, 1, True, "short")
    layer = make_layer(case)
    inp = make_inputs(case, rng)
    got = run_kernel(layer, case, inp)
    for b, n in enumerate(inp["lengths"]):
        assert not got["y"][n:, b].any()
        assert not got["dx"][n:, b].any()


def test_reserve_reused_and_second_call_same(rng):
    """A second training call on the kept reserve gives the same results; a
    larger problem grows it."""
    case = Case("gru", 5, 3, 4, 6, 2, True, "unsorted")
    layer = make_layer(case)
    inp = make_inputs(case, rng)
    first = run_kernel(layer, case, inp)
    reserve = layer._reserve
    assert_equal(run_kernel(layer, case, inp), first, "second call")
    assert layer._reserve is reserve
    big = dataclasses.replace(case, T=9)
    run_kernel(layer, big, make_inputs(big, rng))
    assert layer._reserve.nbytes > reserve.nbytes


# ------------------------------------------------------- option masks
OPTION_SETS = [
    {"recurrent_dropout": 0.3},
    {"zoneout": 0.3},
    {"dropout": 0.4},
    {"recurrent_dropout": 0.25, "zoneout": 0.2, "dropout": 0.3},
]


def mask_cases() -> list[Case]:
    return [
        Case(cell, 6, 5, 3, 7, 2, True, "unsorted", dtype)
        for cell in ("lstm", "gru")
        for dtype in ("float32", "float64")
    ]


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: "+".join(o))
@pytest.mark.parametrize("case", mask_cases(), ids=str)
def test_masks_match_reference(case, options, rng):
    """Recurrent dropout, zoneout and dropout between layers compose with layer
    norm: the same masks given to the kernel and the reference."""
    layer = make_layer(case, **options)
    inp = make_inputs(case, rng)
    masks = make_masks(layer, case, rng)
    got = run_kernel(layer, case, inp, masks)
    want = run_reference(layer, case, inp, masks)
    assert_close(got, want, case.dtype, f"{case} {options}")
    # inference: no mask, zoneout's expectation
    y, hn, cn, _ = _layernorm.forward(
        layer, inp["x"], inp["h0"], inp["c0"], inp["lengths"], False, masks
    )
    ry, rhn, rcn, _ = _stack.forward(
        case.cell, inp["x"], inp["h0"], inp["c0"], layer.params,
        num_layers=case.L, bidirectional=case.bidir, lengths=inp["lengths"],
        train=False, options=layer.options,
    )  # fmt: skip
    assert_close(
        {"y": y, "h_n": hn, "c_n": cn},
        {"y": ry, "h_n": rhn, "c_n": rcn},
        case.dtype,
        f"{case} {options} inference",
    )


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_masks_threads_bitwise(cell, rng, restore_config):
    case = Case(cell, 5, 5, 9, 200, 2, True, "unsorted", "float32")
    layer = make_layer(case, **OPTION_SETS[-1])
    inp = make_inputs(case, rng)
    masks = make_masks(layer, case, rng)
    rk.set_num_threads(1)
    one = run_kernel(layer, case, inp, masks)
    rk.set_num_threads(2)
    assert_equal(run_kernel(layer, case, inp, masks), one, f"{case} masks 2 threads")


# ------------------------------------------------- SIMD paths and threads
def simd_cases() -> list[Case]:
    out = []
    for cell in ("lstm", "gru"):
        out += [
            Case(cell, 7, 9, 10, 37, 2, True, "unsorted", "float32"),
            Case(cell, 3, 1, 7, 13, 1, True, None, "float64"),
            # many rows, small W_hh: threads own blocks of rows (float64: in
            # float32 LN over 17-unit rows and 12 steps, the reference and the
            # kernel are both ~1e-3 off the float64 result, beyond TOL)
            Case(cell, 12, 100, 6, 17, 1, True, "unsorted", "float64"),
            # few rows, big steps: threads own tiles of units, barriers per step
            Case(cell, 4, 5, 9, 200, 1, True, "unsorted", "float32"),
        ]
    return out


@pytest.mark.parametrize("simd", rk.simd_paths())
@pytest.mark.parametrize("case", simd_cases(), ids=str)
def test_simd_path_and_threads(case, simd, rng, restore_config):
    """Each SIMD path matches the reference; 1, 2 and 3 threads agree bitwise."""
    rk.set_simd(simd)
    layer = make_layer(case)
    inp = make_inputs(case, rng)
    rk.set_num_threads(1)
    one = run_kernel(layer, case, inp)
    assert_close(one, run_reference(layer, case, inp), case.dtype, f"{case} {simd}")
    for n in (2, 3):
        rk.set_num_threads(n)
        assert_equal(run_kernel(layer, case, inp), one, f"{case} {simd} {n} threads")


@pytest.mark.parametrize("simd", rk.simd_paths())
def test_simd_path_from_environment(simd):
    """A process started with RNNKIT_SIMD=<path> runs the kernel on that path and
    matches the reference there."""
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import numpy as np, rnnkit as rk
        import test_layernorm as t
        assert rk.get_simd() == {simd!r}, rk.get_simd()
        for cell in ("lstm", "gru"):
            case = t.Case(cell, 5, 4, 6, 21, 2, True, "unsorted", "float32")
            layer = t.make_layer(case)
            inp = t.make_inputs(case, np.random.default_rng(0))
            t.assert_close(t.run_kernel(layer, case, inp),
                           t.run_reference(layer, case, inp), case.dtype, cell)
        print("ok")
        """
    )
    env = dict(os.environ, RNNKIT_SIMD=simd)
    r = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


# ------------------------------------------------------ finite differences
@pytest.mark.parametrize(
    "case",
    [
        Case("lstm", 4, 3, 3, 5, 2, True, "unsorted"),
        Case("gru", 4, 3, 3, 5, 2, True, "unsorted"),
    ],
    ids=str,
)
@pytest.mark.parametrize("masked", [False, True], ids=["plain", "masks"])
def test_gradients_match_finite_differences(case, masked, rng):
    """<grad, v> of L = <y, dy> + <h_n, dh_n> (+ <c_n, dc_n>) along a random v,
    for every parameter and input, against centered differences of the kernel's
    own forward (float64); with every mask option on and its masks fixed too."""
    layer = make_layer(case, **(OPTION_SETS[-1] if masked else {}))
    inp = make_inputs(case, rng)
    masks = make_masks(layer, case, rng) if masked else None
    got = run_kernel(layer, case, inp, masks)

    def loss() -> float:
        y, hn, cn, _ = _layernorm.forward(
            layer, inp["x"], inp["h0"], inp["c0"], inp["lengths"], True, masks
        )
        out = float(np.sum(y * inp["dy"]) + np.sum(hn * inp["dh_n"]))
        if cn is not None:
            out += float(np.sum(cn * inp["dc_n"]))
        return out

    targets = [(f"grad {k}", p) for k, p in layer.params.items()]
    targets += [("dx", inp["x"]), ("dh0", inp["h0"])]
    if inp["c0"] is not None:
        targets.append(("dc0", inp["c0"]))
    for name, arr in targets:
        v = rng.standard_normal(arr.shape)
        fd = fd_derivative(loss, arr, v)
        an = float(np.sum(got[name] * v))
        assert abs(fd - an) <= FD_TOL["atol"] + FD_TOL["rtol"] * abs(an), (name, fd, an)


# -------------------------------------------------------------- bad input
def _args(case: Case, rng: np.random.Generator) -> tuple[Any, dict[str, Any], list]:
    layer = make_layer(case)
    inp = make_inputs(case, rng)
    return layer, inp, _layernorm.weight_list(layer, layer.params)


def _fwd(case: Case, inp: dict[str, Any], weights: list, **kw: Any) -> Any:
    nbytes = _core.ln_workspace_size(
        case.cell, case.dtype, case.T, case.B, case.I, case.H, case.L, case.bidir,
        case.bias, _core.Mode.TRAIN_FORWARD,
    )  # fmt: skip
    args = dict(
        cell=case.cell,
        num_layers=case.L,
        bidirectional=case.bidir,
        x=inp["x"],
        h0=inp["h0"],
        c0=inp["c0"],
        weights=weights,
        lengths=inp["lengths"],
        reserve=np.empty(nbytes[0], np.uint8),
        scratch=np.empty(nbytes[1], np.uint8),
        train=True,
    )
    args.update(kw)
    return _core.ln_forward(**args)


def test_bad_input_names_the_argument(rng):
    case = Case("lstm", 3, 2, 4, 5)
    layer, inp, w = _args(case, rng)
    _fwd(case, inp, w)  # the good call works
    with pytest.raises(ValueError, match=r"ln_weight_ih_l0 must have shape \(20,\)"):
        _fwd(case, inp, [*w[:4], w[4][:5], *w[5:]])
    with pytest.raises(TypeError, match="ln_weight_c_l0 must have dtype float64"):
        _fwd(case, inp, [*w[:6], w[6].astype(np.float32), w[7]])
    with pytest.raises(ValueError, match="weights must hold 8 entries"):
        _fwd(case, inp, w[:4])
    with pytest.raises(ValueError, match="ln_bias_c_l0 must be C-contiguous"):
        bad = np.zeros(10)[::2]
        _fwd(case, inp, [*w[:7], bad])
    with pytest.raises(ValueError, match=r"rec_masks\[0\] must have shape \(2, 5\)"):
        _fwd(case, inp, w, rec_masks=[np.ones((2, 4))])
    with pytest.raises(ValueError, match="rec_masks must hold 1 entries"):
        _fwd(case, inp, w, rec_masks=[None, None])
    with pytest.raises(TypeError, match=r"zone_h\[0\] must have dtype uint8"):
        _fwd(case, inp, w, zone_h=[np.zeros((3, 2, 5), bool)])
    with pytest.raises(ValueError, match="drop_masks must hold 0 entries"):
        _fwd(case, inp, w, drop_masks=[np.ones((3, 2, 5))])
    with pytest.raises(ValueError, match=r"zoneout must be in \[0, 1\)"):
        _fwd(case, inp, w, zoneout=1.0)
    with pytest.raises(ValueError, match="reserve is required"):
        _fwd(case, inp, w, reserve=None)
    with pytest.raises(ValueError, match="reserve must have at least"):
        _fwd(case, inp, w, reserve=np.empty(8, np.uint8))
    with pytest.raises(ValueError, match=r"h0 must have shape \(1, 2, 5\)"):
        _fwd(case, inp, w, h0=np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match="lengths must be in"):
        _fwd(case, inp, w, lengths=np.array([1, 4]))
    with pytest.raises(ValueError, match="cell must be 'lstm' or 'gru', got 'rnn'"):
        _core.ln_workspace_size(
            "rnn", "float64", 3, 2, 4, 5, 1, False, True, _core.Mode.INFERENCE
        )
    gcase = Case("gru", 3, 2, 4, 5)
    _, ginp, gw = _args(gcase, rng)
    with pytest.raises(ValueError, match="ln_weight_c_l0 must be None for the GRU"):
        _fwd(gcase, ginp, [*gw[:6], np.ones(5), None])
    with pytest.raises(ValueError, match="zone_c must be None for the GRU"):
        _fwd(gcase, ginp, gw, zone_c=[np.zeros((3, 2, 5), np.uint8)])


def test_bad_backward_input(rng):
    case = Case("gru", 3, 2, 4, 5)
    layer, inp, _ = _args(case, rng)
    _, _, _, ctx = _layernorm.forward(layer, inp["x"], inp["h0"], None, None, True)
    assert ctx is not None
    dw = _layernorm.weight_list(layer, layer.grads)
    common = dict(
        cell="gru", num_layers=1, bidirectional=False, input_size=4, dy=inp["dy"],
        dh_n=inp["dh_n"], dc_n=None, weights=ctx.weights, lengths=None,
        reserve=ctx.reserve, scratch=np.empty(1 << 20, np.uint8),
    )  # fmt: skip
    ro = [np.array(a) if a is not None else None for a in dw]
    ro[5].flags.writeable = False
    with pytest.raises(ValueError, match="grad of ln_weight_hh_l0 must be writeable"):
        _core.ln_backward(dweights=ro, **common)
    with pytest.raises(ValueError, match=r"dy must have last axis D\*H = 5, got 4"):
        _core.ln_backward(dweights=dw, **dict(common, dy=inp["dy"][:, :, :4].copy()))


def test_adapter_needs_masks_and_a_layer_norm_layer(rng):
    case = Case("lstm", 3, 2, 4, 5)
    inp = make_inputs(case, rng)
    plain = LSTM(4, 5, dtype="float64", seed=0)
    with pytest.raises(ValueError, match="layer_norm=True"):
        _layernorm.forward(plain, inp["x"], inp["h0"], inp["c0"], None, True)
    rd = LSTM(4, 5, dtype="float64", seed=0, layer_norm=True, recurrent_dropout=0.2)
    with pytest.raises(ValueError, match="recurrent_dropout needs its masks"):
        _layernorm.forward(rd, inp["x"], inp["h0"], inp["c0"], None, True)
    # inference without zoneout ignores the training-only rates
    y, *_ = _layernorm.forward(rd, inp["x"], inp["h0"], inp["c0"], None, False)
    assert y.shape == (3, 2, 5)
