"""The layer options of issue 12 in the NumPy reference (stage 1: the specification).

``rnnkit.reference.RNN/LSTM/GRU`` with ``dropout``, ``recurrent_dropout``,
``zoneout``, ``layer_norm``, ``proj_size`` and ``forget_bias``
(:mod:`rnnkit.reference.options`), checked against things that do not depend on
them: centered finite differences in float64 with the masks held fixed, PyTorch
(``proj_size``, ``dropout``), the plain cell (every option off), and the
statistics of the masks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from _helpers import fd_derivative, fd_gradient
from conftest import FD_TOL, named_tol, tol
from rnnkit import reference as ref
from rnnkit.reference.options import Masks, Options, draw_masks

CLASSES = {"rnn": ref.RNN, "lstm": ref.LSTM, "gru": ref.GRU}


def _layer(cell: str, *, seed: int = 3, **kw: Any) -> Any:
    return CLASSES[cell](3, 5, dtype="float64", seed=seed, **kw)


def _weights_like(y: Any, rng: np.random.Generator) -> Any:
    if isinstance(y, tuple):
        return tuple(rng.standard_normal(a.shape) for a in y)
    return rng.standard_normal(y.shape)


def _dot(a: Any, w: Any) -> float:
    if isinstance(a, tuple):
        return float(sum((x * v).sum() for x, v in zip(a, w)))
    return float((a * w).sum())


def _check_fd(
    layer: Any, rng: np.random.Generator, T: int = 4, B: int = 3, lengths: Any = None
) -> None:
    """Every gradient (x, h0, c0, every parameter) of a random scalar loss vs
    centered differences, the masks fixed by a first training forward."""
    lstm = layer.spec.has_cell_state
    S = layer.options.proj_size or layer.hidden_size
    LD = layer.num_layers * layer.num_directions
    x = rng.standard_normal((T, B, layer.input_size))
    h0 = rng.standard_normal((LD, B, S)) * 0.5
    c0 = rng.standard_normal((LD, B, layer.hidden_size)) * 0.5 if lstm else None
    hx = (h0, c0) if lstm else h0
    y, hn = layer.forward(x, hx, lengths=lengths)
    masks = layer.last_masks
    wy, wh = rng.standard_normal(y.shape), _weights_like(hn, rng)
    layer.zero_grad()
    dx, dh0 = layer.backward(wy, wh)

    def loss() -> float:
        y2, hn2 = layer.forward(
            x, (h0, c0) if lstm else h0, lengths=lengths, masks=masks
        )
        return float((y2 * wy).sum()) + _dot(hn2, wh)

    rtol, atol = FD_TOL["rtol"], FD_TOL["atol"]
    checks: list[tuple[str, np.ndarray, np.ndarray]] = [("x", x, dx)]
    checks += [("h0", h0, dh0[0] if lstm else dh0)]
    if lstm:
        checks.append(("c0", c0, dh0[1]))
    checks += [(k, layer.params[k], layer.grads[k].copy()) for k in layer.params]
    for name, arr, got in checks:
        if arr.size <= 24:  # every entry
            want = fd_gradient(loss, arr)
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=name)
            continue
        for _ in range(2):  # large tensors: random directions, <grad, v> vs fd
            v = rng.standard_normal(arr.shape)
            want_d = fd_derivative(loss, arr, v)
            np.testing.assert_allclose(
                float((got * v).sum()), want_d, rtol=rtol, atol=atol, err_msg=name
            )


# ------------------------------------------------------------ finite differences
FD_CASES = [
    ("rnn", dict(recurrent_dropout=0.4, zoneout=0.3, dropout=0.3, num_layers=2)),
    ("rnn", dict(zoneout=0.5, bidirectional=True)),
    ("gru", dict(layer_norm=True)),
    (
        "gru",
        dict(
            layer_norm=True,
            recurrent_dropout=0.3,
            zoneout=0.3,
            dropout=0.2,
            num_layers=2,
            bidirectional=True,
        ),
    ),
    ("lstm", dict(layer_norm=True)),
    ("lstm", dict(proj_size=2)),
    (
        "lstm",
        dict(
            proj_size=3,
            layer_norm=True,
            recurrent_dropout=0.3,
            zoneout=0.3,
            dropout=0.3,
            num_layers=2,
            bidirectional=True,
        ),
    ),
    ("lstm", dict(zoneout=0.4, recurrent_dropout=0.5, bias=False)),
]


@pytest.mark.parametrize(
    ("cell", "kw"), FD_CASES, ids=[f"{c}-{'-'.join(k)}" for c, k in FD_CASES]
)
@pytest.mark.parametrize("lengths", [None, [4, 2, 3]], ids=["full", "lengths"])
def test_gradients_vs_finite_differences(cell, kw, lengths, rng):
    layer = _layer(cell, **kw)
    if layer.options.layer_norm:  # gains away from 1 so their gradients matter
        for k, p in layer.params.items():
            if k.startswith("ln_"):
                p[...] = rng.uniform(0.5, 1.5, p.shape)
    big = layer.num_layers > 1
    if lengths is not None and big:
        lengths = lengths[:2]
    _check_fd(layer, rng, T=4, B=2 if big else 3, lengths=lengths)


# ----------------------------------------------------------- options off = plain
OFF = {
    "rnn": dict(dropout=0.0, recurrent_dropout=0.0, zoneout=0.0),
    "gru": dict(dropout=0.0, recurrent_dropout=0.0, zoneout=0.0, layer_norm=False),
    "lstm": dict(
        dropout=0.0,
        recurrent_dropout=0.0,
        zoneout=0.0,
        layer_norm=False,
        proj_size=0,
        forget_bias=0.0,
    ),
}


def _run(layer, x, lengths, dy_seed=1):
    y, hn = layer.forward(x, lengths=lengths)
    g = np.random.default_rng(dy_seed)
    dx, dh0 = layer.backward(g.standard_normal(y.shape), _weights_like(hn, g))
    return y, hn, dx, dh0, {k: v.copy() for k, v in layer.grads.items()}


def _assert_same(a, b):
    for u, v in zip(a[:4], b[:4]):
        for p, q in zip(
            u if isinstance(u, tuple) else (u,), v if isinstance(v, tuple) else (v,)
        ):
            assert np.array_equal(p, q)
    assert a[4].keys() == b[4].keys()
    for k in a[4]:
        assert np.array_equal(a[4][k], b[4][k]), k


@pytest.mark.parametrize("cell", list(CLASSES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_options_off_equal_plain_layer(cell, dtype, rng):
    x = rng.standard_normal((6, 3, 3))
    kw = dict(num_layers=2, bidirectional=True, dtype=dtype, seed=5)
    plain = CLASSES[cell].__mro__[2](3, 5, **kw)  # the fast-path layer's parameters
    got = CLASSES[cell](3, 5, **kw, **OFF[cell])
    assert plain.state_dict().keys() == got.state_dict().keys()
    for k in plain.params:
        assert np.array_equal(plain.params[k], got.params[k]), k
    want = CLASSES[cell](3, 5, **kw)
    _assert_same(_run(got, x, [6, 2, 4]), _run(want, x, [6, 2, 4]))


@pytest.mark.parametrize("cell", list(CLASSES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("lengths", [None, [5, 2, 4]])
def test_step_path_off_equals_plain_loop(cell, dtype, lengths, rng):
    """The option-aware step functions with every option off compute exactly what
    the plain cell loop computes, forward and backward (bit for bit)."""
    from rnnkit.reference import _stack

    layer = CLASSES[cell](3, 5, num_layers=2, bidirectional=True, dtype=dtype, seed=2)
    x = rng.standard_normal((5, 3, 3)).astype(dtype)
    LD, S = 4, 5
    h0 = rng.standard_normal((LD, 3, S)).astype(dtype)
    c0 = h0.copy() if cell == "lstm" else None
    results = []
    for force in (False, True):
        steps = Options.steps
        if force:  # route through the step path with no option on
            Options.steps = property(lambda self: True)  # type: ignore[assignment]
        try:
            y, hn, cn, cache = _stack.forward(
                cell,
                x,
                h0,
                c0,
                layer.params,
                num_layers=2,
                bidirectional=True,
                lengths=lengths,
                options=Options(),
            )
            grads = {k: np.zeros_like(v) for k, v in layer.params.items()}
            dy = np.random.default_rng(0).standard_normal(y.shape).astype(dtype)
            dh = np.random.default_rng(1).standard_normal(hn.shape).astype(dtype)
            out = _stack.backward(cache, dy, dh, None if cn is None else dh, grads)
        finally:
            Options.steps = steps  # type: ignore[assignment]
        kinds = {type(c).__name__ for c in cache.cells}
        assert all(("Steps" in k) == force for k in kinds), kinds
        results.append((y, hn, cn, out, grads))
    (y0, h0_, c0_, o0, g0), (y1, h1, c1, o1, g1) = results
    assert np.array_equal(y0, y1) and np.array_equal(h0_, h1)
    if cell == "lstm":
        assert np.array_equal(c0_, c1)
    for a, b in zip(o0, o1):
        assert (a is None and b is None) or np.array_equal(a, b)
    for k in g0:
        assert np.array_equal(g0[k], g1[k]), k


@pytest.mark.parametrize("cell", list(CLASSES))
def test_inference_with_rates_and_zero_zoneout_is_plain(cell, rng):
    """``train=False``: dropout and recurrent dropout vanish (no mask, no scale)."""
    x = rng.standard_normal((5, 2, 3))
    got = _layer(cell, dropout=0.5, recurrent_dropout=0.5, num_layers=2)
    want = _layer(cell, num_layers=2)
    y1, h1 = got.forward(x, train=False)
    y2, h2 = want.forward(x, train=False)
    assert got.last_masks is None
    assert np.array_equal(y1, y2)
    for a, b in zip(
        h1 if isinstance(h1, tuple) else (h1,), h2 if isinstance(h2, tuple) else (h2,)
    ):
        assert np.array_equal(a, b)


# ------------------------------------------------------------------ statistics
def _masks(cell, opts, T=60, B=40, H=50, L=2, D=2, seed=0):
    return draw_masks(
        opts,
        np.random.default_rng(seed),
        cell=cell,
        T=T,
        B=B,
        H=H,
        num_layers=L,
        num_directions=D,
        dtype=np.dtype("float64"),
    )


def _within(rate: float, p: float, n: int, k: float = 5.0) -> None:
    se = np.sqrt(p * (1 - p) / n)
    assert abs(rate - p) <= k * se, (rate, p, se)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_mask_rates(p):
    m = _masks("lstm", Options(dropout=p, recurrent_dropout=p, zoneout=p))
    for cm in m.cells:
        r = cm.recurrent
        assert set(np.unique(r)) <= {0.0, 1 / (1 - p)}
        _within(float((r == 0).mean()), p, r.size)
        _within(float(cm.zoneout_h.mean()), p, cm.zoneout_h.size)
        _within(float(cm.zoneout_c.mean()), p, cm.zoneout_c.size)
        assert not np.array_equal(cm.zoneout_h, cm.zoneout_c)  # separate masks
    d = m.dropout[0]
    assert len(m.dropout) == 1 and d.shape == (60, 40, 100)
    _within(float((d == 0).mean()), p, d.size)
    np.testing.assert_allclose(d.mean(), 1.0, atol=5 * np.sqrt(p / (1 - p) / d.size))


def test_recurrent_mask_is_the_same_at_every_step(rng):
    """A zero in the mask removes h_{t-1}[unit] from W_hh h at every step: with
    W_ih = 0 and only unit u dropped, W_hh's column u never reaches the output."""
    layer = _layer("rnn", recurrent_dropout=0.5)
    x = rng.standard_normal((8, 2, 3))
    h0 = rng.standard_normal((1, 2, 5))
    R = np.full((2, 5), 2.0)
    R[:, 1] = 0.0
    masks = Masks(cells=[ref.CellMasks(recurrent=R)], dropout=[])
    y1, _ = layer.forward(x, h0, masks=masks)
    layer.params["weight_hh_l0"][:, 1] += 10.0  # the dropped unit's column
    y2, _ = layer.forward(x, h0, masks=masks)
    assert np.array_equal(y1, y2)
    layer.params["weight_hh_l0"][:, 2] += 10.0  # a kept unit's column matters
    y3, _ = layer.forward(x, h0, masks=masks)
    assert not np.allclose(y1, y3)
    # drawn masks: one (B, S) array per layer and direction, no time axis
    y, _ = layer.forward(x, h0)
    assert layer.last_masks.cells[0].recurrent.shape == (2, 5)


@pytest.mark.parametrize("cell", list(CLASSES))
def test_zoneout_inference_is_the_expectation(cell, rng):
    """At inference one step is the mean of the training step over its masks:
    h = p h_{t-1} + (1-p) h̃ (and c likewise), checked on T = 1 exactly."""
    p = 0.3
    layer = _layer(cell, zoneout=p)
    plain = _layer(cell)
    x = rng.standard_normal((1, 4, 3))
    lstm = cell == "lstm"
    h0 = rng.standard_normal((1, 4, 5))
    c0 = rng.standard_normal((1, 4, 5))
    hx = (h0, c0) if lstm else h0
    y, hn = layer.forward(x, hx, train=False)
    yp, hp = plain.forward(x, hx, train=False)
    if lstm:
        np.testing.assert_allclose(
            hn[1], p * c0 + (1 - p) * hp[1], *tol("float64", "out")
        )
        np.testing.assert_allclose(
            hn[0], p * h0 + (1 - p) * hp[0], *tol("float64", "out")
        )
    else:
        np.testing.assert_allclose(hn, p * h0 + (1 - p) * hp, *tol("float64", "out"))
    np.testing.assert_allclose(y[0], (hn[0] if lstm else hn)[0], *tol("float64", "out"))
    # training: each unit is exactly its old or its new value, about p of them old
    big = np.repeat(x, 500, axis=1)
    hbig = np.repeat(h0, 500, axis=1)
    cbig = np.repeat(c0, 500, axis=1)
    _, hn_t = layer.forward(big, (hbig, cbig) if lstm else hbig)
    _, hp_t = plain.forward(big, (hbig, cbig) if lstm else hbig, train=False)
    ht, hpt = (hn_t[0], hp_t[0]) if lstm else (hn_t, hp_t)
    kept = ht == hbig
    assert np.all(kept | (ht == hpt))
    _within(float(kept.mean()), p, kept.size)


@pytest.mark.parametrize("cell", list(CLASSES))
def test_same_seed_same_masks_and_inference_deterministic(cell, rng):
    kw = dict(
        dropout=0.3,
        recurrent_dropout=0.3,
        zoneout=0.3,
        num_layers=2,
        bidirectional=True,
    )
    x = rng.standard_normal((5, 3, 3))
    a, b, c = _layer(cell, **kw), _layer(cell, **kw), _layer(cell, seed=4, **kw)
    ya, _ = a.forward(x)
    yb, _ = b.forward(x)
    yc, _ = c.forward(x)
    assert np.array_equal(ya, yb)
    assert not np.array_equal(ya, yc)
    ya2, _ = a.forward(x)  # the next call draws new masks
    assert not np.array_equal(ya, ya2)
    # an explicit generator: the same draws as the same generator again
    y1, _ = a.forward(x, rng=np.random.default_rng(9))
    y2, _ = b.forward(x, rng=np.random.default_rng(9))
    assert np.array_equal(y1, y2)
    # inference: no mask, the same output every call
    i1, _ = a.forward(x, train=False)
    assert a.last_masks is None
    i2, _ = a.forward(x, train=False)
    assert np.array_equal(i1, i2)
    # masks round-trip: giving last_masks back reproduces the forward
    y3, _ = a.forward(x)
    y4, _ = b.forward(x, masks=a.last_masks)
    assert np.array_equal(y3, y4)


def test_dropout_between_layers_only_and_scaled(rng):
    """PyTorch's dropout: each layer's output but the last, scaled by 1/(1-p)."""
    layer = _layer("gru", dropout=0.5, num_layers=2)
    x = rng.standard_normal((4, 2, 3))
    y, _ = layer.forward(x)
    m = layer.last_masks
    assert len(m.dropout) == 1 and m.cells[0].recurrent is None
    # by hand: layer 0, mask, layer 1 (functional API, plain cells)
    p = layer.params
    one = {k: v for k, v in p.items() if k.endswith("_l0")}
    two = {k.replace("_l1", "_l0"): v for k, v in p.items() if k.endswith("_l1")}
    y0, *_ = ref.forward(
        "gru", x, np.zeros((1, 2, 5)), None, one, num_layers=1, bidirectional=False
    )
    y1, *_ = ref.forward(
        "gru",
        y0 * m.dropout[0],
        np.zeros((1, 2, 5)),
        None,
        two,
        num_layers=1,
        bidirectional=False,
    )
    np.testing.assert_allclose(y, y1, *tol("float64", "out"))


# ---------------------------------------------------------------- parameters
def test_parameter_names_shapes_and_init():
    lstm = ref.LSTM(
        3,
        6,
        num_layers=2,
        bidirectional=True,
        proj_size=2,
        layer_norm=True,
        forget_bias=1.0,
        seed=0,
        dtype="float64",
    )
    s = lstm.params
    assert s["weight_ih_l1"].shape == (24, 4) and s["weight_hh_l0"].shape == (24, 2)
    assert s["weight_hr_l1_reverse"].shape == (2, 6)
    assert s["ln_weight_ih_l0"].shape == (24,) and s["ln_weight_c_l0"].shape == (6,)
    assert np.all(s["ln_weight_hh_l1"] == 1) and np.all(s["ln_bias_c_l0"] == 0)
    k = 1 / np.sqrt(6)
    f = s["bias_ih_l0"][6:12]
    assert np.all((f > 1 - k) & (f < 1 + k))
    other = np.concatenate([s["bias_ih_l0"][:6], s["bias_ih_l0"][12:]])
    assert np.all(np.abs(other) <= k)
    gru = ref.GRU(3, 4, layer_norm=True)
    assert [n for n in gru.params if n.startswith("ln_")] == [
        "ln_weight_ih_l0",
        "ln_weight_hh_l0",
    ]


@pytest.mark.parametrize(
    ("cls", "kw", "match"),
    [
        (ref.LSTM, dict(dropout=1.0), "dropout must be in"),
        (ref.GRU, dict(zoneout=-0.1), "zoneout must be in"),
        (ref.LSTM, dict(proj_size=5), "proj_size must be smaller"),
        (ref.LSTM, dict(forget_bias=1.0, bias=False), "needs bias=True"),
    ],
)
def test_bad_options(cls, kw, match):
    with pytest.raises(ValueError, match=match):
        cls(3, 5, **kw)


def test_options_of_another_cell():
    with pytest.raises(ValueError, match="proj_size is an option of LSTM"):
        Options(proj_size=2).validated("gru")
    with pytest.raises(ValueError, match="layer_norm is an option of LSTM and GRU"):
        Options(layer_norm=True).validated("rnn")
    with pytest.raises(TypeError):
        ref.RNN(3, 5, layer_norm=True)  # not in its signature


# ----------------------------------------------------------- composition
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_compose_batch_first_chunks_float32(cell, rng):
    """batch_first equals time-major; two chunks with carried state equal one
    (inference, where zoneout is deterministic); float32 close to float64."""
    kw: dict[str, Any] = dict(layer_norm=True, zoneout=0.2, num_layers=2, seed=1)
    if cell == "lstm":
        kw["proj_size"] = 3
    tm = CLASSES[cell](3, 5, dtype="float64", **kw)
    bf = CLASSES[cell](3, 5, dtype="float64", batch_first=True, **kw)
    x = rng.standard_normal((7, 2, 3))
    y, hn = tm.forward(x, train=False)
    yb, _ = bf.forward(x.transpose(1, 0, 2), train=False)
    np.testing.assert_array_equal(yb.transpose(1, 0, 2), y)
    ya, ha = tm.forward(x[:3], train=False)
    yc, hc = tm.forward(x[3:], ha, train=False)
    np.testing.assert_allclose(
        np.concatenate([ya, yc]), y, *named_tol("reordered_float64")
    )
    f32 = CLASSES[cell](3, 5, dtype="float32", **kw)
    y32, _ = f32.forward(x.astype(np.float32), train=False)
    np.testing.assert_allclose(y32, y, *named_tol("float32_vs_float64"))
    # training backward in float32 runs and has the right shapes
    y32, _ = f32.forward(x.astype(np.float32))
    dx, _ = f32.backward(np.ones_like(y32))
    assert dx.shape == x.shape and dx.dtype == np.float32
    # stepper (inference) equals the sequence
    st = tm.stepper(batch_size=2)
    steps = np.stack([st.step(x[t]) for t in range(7)])
    np.testing.assert_allclose(steps, y, *named_tol("reordered_float64"))


# --------------------------------------------------------------- PyTorch
torch_cases = [
    dict(num_layers=1, bidirectional=False, lengths=None),
    dict(num_layers=2, bidirectional=True, lengths=[5, 3, 1]),
    dict(num_layers=2, bidirectional=False, lengths=[2, 5, 4]),
]


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("case", torch_cases, ids=["1-uni", "2-bi-len", "2-uni-len"])
def test_proj_size_matches_torch(case, rng):
    torch = _torch()
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    L, bi, lengths = case["num_layers"], case["bidirectional"], case["lengths"]
    T, B, I, H, P = 5, 3, 4, 6, 3
    torch.manual_seed(0)
    tm = torch.nn.LSTM(I, H, num_layers=L, bidirectional=bi, proj_size=P).double()
    layer = ref.LSTM(I, H, num_layers=L, bidirectional=bi, proj_size=P, dtype="float64")
    assert list(layer.state_dict()) == list(tm.state_dict())
    layer.load_state_dict(tm.state_dict())
    D = 2 if bi else 1
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((L * D, B, P))
    c0 = rng.standard_normal((L * D, B, H))
    dy = rng.standard_normal((T, B, D * P))
    dh, dc = rng.standard_normal(h0.shape), rng.standard_normal(c0.shape)
    if lengths is not None:
        dy *= (np.arange(T)[:, None] < np.array(lengths))[:, :, None]

    xt = torch.tensor(x, requires_grad=True)
    h0t, c0t = (
        torch.tensor(h0, requires_grad=True),
        torch.tensor(c0, requires_grad=True),
    )
    if lengths is None:
        yt, (hnt, cnt) = tm(xt, (h0t, c0t))
    else:
        packed = pack_padded_sequence(xt, torch.tensor(lengths), enforce_sorted=False)
        yp, (hnt, cnt) = tm(packed, (h0t, c0t))
        yt, _ = pad_packed_sequence(yp, total_length=T)
    loss = (
        (yt * torch.tensor(dy)).sum()
        + (hnt * torch.tensor(dh)).sum()
        + (cnt * torch.tensor(dc)).sum()
    )
    loss.backward()

    y, (hn, cn) = layer.forward(x, (h0, c0), lengths=lengths)
    dx, (dh0, dc0) = layer.backward(dy, (dh, dc))
    o, g = named_tol("torch_float64"), tol("float64", "grad")
    np.testing.assert_allclose(y, yt.detach().numpy(), *o)
    np.testing.assert_allclose(hn, hnt.detach().numpy(), *o)
    np.testing.assert_allclose(cn, cnt.detach().numpy(), *o)
    np.testing.assert_allclose(dx, xt.grad.numpy(), *g)
    np.testing.assert_allclose(dh0, h0t.grad.numpy(), *g)
    np.testing.assert_allclose(dc0, c0t.grad.numpy(), *g)
    for name, p in tm.named_parameters():
        np.testing.assert_allclose(layer.grads[name], p.grad.numpy(), *g, err_msg=name)


@pytest.mark.parametrize("cell", list(CLASSES))
def test_dropout_matches_torch_at_zero_and_inference(cell, rng):
    torch = _torch()
    tcls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    torch.manual_seed(1)
    x = rng.standard_normal((6, 2, 3))
    for p, train in ((0.0, True), (0.5, False)):
        tm = tcls(3, 5, num_layers=3, dropout=p, bidirectional=True).double()
        tm.train(train)
        layer = CLASSES[cell](
            3, 5, num_layers=3, dropout=p, bidirectional=True, dtype="float64"
        )
        layer.load_state_dict(tm.state_dict())
        xt = torch.tensor(x, requires_grad=True)
        yt, _ = tm(xt)
        y, _ = layer.forward(x, train=train)
        np.testing.assert_allclose(y, yt.detach().numpy(), *named_tol("torch_float64"))
        if train:
            yt.sum().backward()
            dx, _ = layer.backward(np.ones_like(y))
            np.testing.assert_allclose(dx, xt.grad.numpy(), *tol("float64", "grad"))
            for name, prm in tm.named_parameters():
                np.testing.assert_allclose(
                    layer.grads[name],
                    prm.grad.numpy(),
                    *tol("float64", "grad"),
                    err_msg=name,
                )
