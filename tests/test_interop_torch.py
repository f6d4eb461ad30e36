"""rk.to_torch / rk.from_torch: exact weight round trips and matching outputs;
a .safetensors file loads into the equivalent torch modules (issue 13)."""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest

import rnnkit as rk
from conftest import tol
from rnnkit import _cells

torch = pytest.importorskip("torch")

RTOL, ATOL = tol(np.float32, "out")


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and np.array_equal(sa[k], sb[k]), k


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def tstate(s):
    if s is None:
        return None
    return tuple(t(a) for a in s) if isinstance(s, tuple) else t(s)


def flat(s):
    return list(s) if isinstance(s, tuple) else [s]


def close(got, want, what=""):
    got = got.detach().numpy() if hasattr(got, "detach") else got
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=what)


CASES = [
    (cell, nl, L, bi, bf)
    for cell in _cells.CELLS
    for nl in _cells.CELLS[cell].nonlinearities
    if nl != "sigmoid"
    for L, bi, bf in itertools.product([1, 2], [False, True], [False, True])
]


@pytest.mark.parametrize(("cell", "nl", "L", "bi", "bf"), CASES)
def test_layer_round_trip_and_outputs(rng, cell, nl, L, bi, bf):
    layer = _cells.get(cell).layer_class(
        3, 4, num_layers=L, bidirectional=bi, batch_first=bf, seed=1, nonlinearity=nl
    )
    tm = rk.to_torch(layer)
    assert type(tm).__name__ == _cells.get(cell).class_name
    back = rk.from_torch(tm)
    assert type(back) is type(layer) and back.nonlinearity == layer.nonlinearity
    assert (back.batch_first, back.bidirectional) == (bf, bi)
    same_weights(back, layer)
    x = rng.standard_normal((2, 5, 3) if bf else (5, 2, 3)).astype(np.float32)
    hx = rng.standard_normal((L * (2 if bi else 1), 2, 4)).astype(np.float32)
    hx = (hx, hx * 0.5) if layer.spec.has_cell_state else hx
    y, hn = layer.forward(x, hx, train=False)
    with torch.no_grad():
        ty, thn = tm(t(x), tstate(hx))
    close(ty, y)
    for a, b in zip(flat(thn), flat(hn)):
        close(a, b)


def models():
    return {
        "lm": rk.Sequential(
            rk.Embedding(11, 5, padding_idx=0, seed=0),
            rk.LSTM(5, 6, num_layers=2, bidirectional=True, seed=1),
            rk.Dropout(0.3, seed=2),
            rk.GRU(12, 4, batch_first=True, seed=3),
            rk.Linear(4, 11, seed=4),
        ),
        "last": rk.Sequential(
            rk.Embedding(11, 5, seed=0),
            rk.GRU(5, 6, bidirectional=True, seed=1),
            rk.Linear(12, 3, activation="relu", seed=2),
            output="last",
        ),
        "vector": rk.Sequential(
            rk.Linear(3, 4, activation="tanh", seed=0),
            rk.RNN(4, 5, nonlinearity="relu", seed=1),
            rk.Linear(5, 2, seed=2),
            input="vector",
            steps=6,
        ),
    }


@pytest.mark.parametrize("kind", ["lm", "last", "vector"])
def test_sequential_round_trip_and_outputs(rng, kind):
    model = models()[kind]
    tm = rk.to_torch(model).eval()
    back = rk.from_torch(tm)
    assert back.config() == model.config()
    same_weights(back, model)
    assert list(tm.state_dict()) == list(model.state_dict())
    if kind == "vector":
        x = rng.standard_normal((3, 3)).astype(np.float32)
        with torch.no_grad():
            close(tm(t(x)), model.forward(x, train=False))
        return
    ids = rng.integers(0, 11, size=(4, 7))
    for lens in (None, np.array([7, 2, 5, 1])):
        out = model.forward(ids, lengths=lens, train=False)
        with torch.no_grad():
            got = tm(t(ids), lengths=lens)
        close(got, out, f"lengths={lens}")
        for a, b in zip(tm.final_state, model.final_state):
            for x, y in zip(flat(a), flat(b)):
                close(x, y, "final state")


def test_encoder_decoder_round_trip(rng):
    enc = rk.Sequential(rk.Embedding(9, 4, seed=0), rk.LSTM(4, 5, seed=1))
    dec = rk.Sequential(
        rk.Embedding(7, 4, seed=2), rk.LSTM(4, 5, seed=3), rk.Linear(5, 7, seed=4)
    )
    model = rk.EncoderDecoder(enc, dec)
    tm = rk.to_torch(model).eval()
    back = rk.from_torch(tm)
    assert back.config() == model.config()
    same_weights(back, model)
    src, tgt = rng.integers(0, 9, size=(3, 6)), rng.integers(0, 7, size=(3, 4))
    lens = np.array([6, 3, 1])
    with torch.no_grad():
        got = tm(t(src), t(tgt), lengths=lens)
    close(got, model.forward(src, tgt, lengths=lens, train=False))


def test_charlm_and_float64(rng):
    lm = rk.CharLM(rk.Vocab.from_text("abcab"), cell="gru", hidden_size=8, seed=0)
    tm = rk.to_torch(lm)
    assert list(tm.state_dict()) == list(lm.model.state_dict())
    layer = rk.LSTM(3, 4, dtype="float64", seed=0)
    tl = rk.to_torch(layer)
    assert tl.weight_ih_l0.dtype == torch.float64
    back = rk.from_torch(tl)
    assert back.dtype == np.float64
    same_weights(back, layer)


def test_plain_torch_sequential_and_modules():
    tm = torch.nn.Sequential(
        torch.nn.Embedding(10, 4, padding_idx=1),
        torch.nn.GRU(4, 6, num_layers=2),
        torch.nn.Dropout(0.1),
        torch.nn.Linear(6, 10),
    )
    model = rk.from_torch(tm)
    assert isinstance(model, rk.Sequential)
    assert model.layers[0].padding_idx == 1 and model.layers[2].p == 0.1
    for k, v in tm.state_dict().items():
        assert np.array_equal(model.state_dict()[k], v.numpy()), k


def test_safetensors_file_loads_into_torch_modules(tmp_path, rng):
    st = pytest.importorskip("safetensors.torch")
    model = models()["lm"]
    p = tmp_path / "m.safetensors"
    model.save(p)
    tm = rk.to_torch(rk.Sequential(*[rk.from_torch(m) for m in rk.to_torch(model)]))
    for param in tm.parameters():  # different weights until loaded
        torch.nn.init.zeros_(param)
    tm.load_state_dict(st.load_file(str(p)))  # strict: every name matches
    ids = rng.integers(0, 11, size=(2, 5))
    with torch.no_grad():
        close(tm.eval()(t(ids)), model.forward(ids, train=False))
    # and into a plain torch.nn.Sequential of the same blocks
    plain = torch.nn.Sequential(
        torch.nn.Embedding(11, 5, padding_idx=0),
        torch.nn.LSTM(5, 6, num_layers=2, bidirectional=True),
        torch.nn.Dropout(0.3),
        torch.nn.GRU(12, 4, batch_first=True),
        torch.nn.Linear(4, 11),
    )
    plain.load_state_dict(st.load_file(str(p)))


def test_refused_conversions():
    with pytest.raises(ValueError, match="no nonlinearity 'sigmoid'"):
        rk.to_torch(rk.RNN(2, 3, nonlinearity="sigmoid"))
    for name, value in (
        ("recurrent_dropout", 0.2),
        ("zoneout", 0.1),
        ("layer_norm", True),
    ):
        with pytest.raises(ValueError, match=f"no {name}"):
            rk.to_torch(rk.GRU(2, 3, **{name: value}))
    with pytest.raises(TypeError, match="layer 1: cannot convert torch module Conv1d"):
        rk.from_torch(
            torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Conv1d(2, 2, 1))
        )
    with pytest.raises(TypeError, match="float32 or float64"):
        rk.from_torch(torch.nn.Linear(2, 2).half())


def test_missing_torch_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    rk.interop.torch_classes.cache_clear()
    try:
        with pytest.raises(ImportError, match="pip install torch"):
            rk.to_torch(rk.GRU(2, 3))
    finally:
        monkeypatch.undo()
        rk.interop.torch_classes.cache_clear()


@pytest.mark.parametrize("bidirectional", [False, True])
def test_dropout_and_projection_move_both_ways(bidirectional):
    # torch's dropout between layers and LSTMP are rnnkit options: same weights,
    # same inference output, the options kept
    tm = torch.nn.LSTM(
        3, 6, num_layers=2, dropout=0.25, proj_size=2, bidirectional=bidirectional
    ).double()
    m = rk.from_torch(tm)
    assert (m.options.dropout, m.options.proj_size) == (0.25, 2)
    x = np.random.default_rng(0).normal(size=(5, 4, 3))
    y, (h, c) = m.forward(x, train=False)
    with torch.no_grad():
        ty, (th, tc) = tm.eval()(torch.from_numpy(x))
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h, th.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c, tc.numpy(), rtol=1e-10, atol=1e-12)
    back = rk.to_torch(m)
    assert (back.dropout, back.proj_size) == (0.25, 2)
    for k, v in tm.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
