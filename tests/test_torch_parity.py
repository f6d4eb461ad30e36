"""rnnkit vs PyTorch (optional: skipped without torch).

The torch module's ``state_dict()`` (tensors) is loaded into the rnnkit layer,
both run forward and backward on the same inputs and upstream gradients, and
y, h_n (c_n), dx, dh0 (dc0) and every parameter gradient must agree within the
tolerance table. Variable lengths go through ``pack_padded_sequence(...,
enforce_sorted=False)``; torch pads its outputs with zeros, as rnnkit does.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import rnnkit as rk
from _helpers import (
    CELLS,
    Case,
    assert_results_close,
    assert_results_equal,
    make_inputs,
    params,
    run,
    run_case,
)
from rnnkit import _cells

torch = pytest.importorskip("torch")
TORCH_CLASSES = {c: getattr(torch.nn, _cells.get(c).class_name) for c in CELLS}
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@pytest.fixture(autouse=True, scope="module")
def _torch_one_thread():
    """Keep torch light on a shared machine; restores its setting afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def torch_layer(case: Case):
    kw = {
        "num_layers": case.L,
        "bias": case.bias,
        "batch_first": case.batch_first,
        "bidirectional": case.bidir,
        "dtype": TORCH_DTYPES[case.dtype],
    }
    if case.cell == "rnn":
        kw["nonlinearity"] = case.nonlinearity
    torch.manual_seed(0)
    return TORCH_CLASSES[case.cell](case.I, case.H, **kw)


def rk_layer(case: Case, tmod):
    cls = getattr(rk, _cells.get(case.cell).class_name)
    kw = {
        "num_layers": case.L,
        "bias": case.bias,
        "batch_first": case.batch_first,
        "bidirectional": case.bidir,
        "dtype": case.dtype,
        "seed": 1,
    }
    if case.cell == "rnn":
        kw["nonlinearity"] = case.nonlinearity
    layer = cls(case.I, case.H, **kw)
    layer.load_state_dict(tmod.state_dict())  # torch tensors, not arrays
    return layer


def run_torch(case: Case, tmod, inputs: dict) -> dict[str, np.ndarray]:
    """Forward + backward, in torch, of
    ``sum(y*dy) + sum(h_n*dh_n) [+ sum(c_n*dc_n)]``."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    def leaf(a):
        return torch.tensor(np.array(a), requires_grad=True)

    x = leaf(inputs["x"])
    hx = (
        tuple(leaf(h) for h in inputs["hx"])
        if case.cell == "lstm"
        else leaf(inputs["hx"])
    )
    lengths = inputs["lengths"]
    if lengths is None:
        y, hn = tmod(x, hx)
    else:
        packed = pack_padded_sequence(
            x,
            torch.as_tensor(lengths),
            batch_first=case.batch_first,
            enforce_sorted=False,
        )
        out, hn = tmod(packed, hx)
        y, _ = pad_packed_sequence(
            out, batch_first=case.batch_first, total_length=case.T
        )
    loss = (y * torch.as_tensor(inputs["dy"])).sum()
    if case.cell == "lstm":
        loss = loss + sum(
            (s * torch.as_tensor(d)).sum() for s, d in zip(hn, inputs["dhx"])
        )
    else:
        loss = loss + (hn * torch.as_tensor(inputs["dhx"])).sum()
    loss.backward()

    res = {"y": y.detach().numpy(), "dx": x.grad.numpy()}
    if case.cell == "lstm":
        res.update(
            h_n=hn[0].detach().numpy(),
            c_n=hn[1].detach().numpy(),
            dh0=hx[0].grad.numpy(),
            dc0=hx[1].grad.numpy(),
        )
    else:
        res.update(h_n=hn.detach().numpy(), dh0=hx.grad.numpy())
    for name, p in tmod.named_parameters():
        res["d" + name] = p.grad.numpy()
    return res


def torch_cases() -> list[Case]:
    cases = []
    for cell, nls in (
        ("rnn", ("tanh", "relu")),
        ("lstm", ("tanh",)),
        ("gru", ("tanh",)),
    ):
        for nl, (L, bidir), bf, lengths, dtype in itertools.product(
            nls,
            ((1, False), (2, True)),
            (False, True),
            (None, "unsorted", "short"),
            ("float32", "float64"),
        ):
            cases.append(Case(cell, 6, 5, 7, 13, L, bidir, bf, lengths, dtype, nl))
        cases.append(Case(cell, 11, 9, 20, 67, 2, True, False, "unsorted", "float32"))
        cases.append(Case(cell, 1, 1, 3, 4, 3, True, True, None, "float64"))
        cases.append(
            Case(cell, 4, 3, 5, 6, 2, True, False, "unsorted", "float64", bias=False)
        )
    return cases


@pytest.mark.parametrize("case", params(torch_cases()))
def test_torch_parity(case, rng):
    tmod = torch_layer(case)
    layer = rk_layer(case, tmod)
    inputs = make_inputs(case, rng)
    want = run_torch(case, tmod, inputs)
    got = run_case(layer, inputs)
    assert_results_close(got, want, case.dtype, what="rnnkit vs torch")


@pytest.mark.parametrize("cell", CELLS)
def test_state_dict_names_match_torch(cell):
    case = Case(cell, 3, 2, 4, 5, 2, True)
    tmod = torch_layer(case)
    layer = rk_layer(case, tmod)
    assert list(layer.state_dict()) == list(tmod.state_dict())
    for name, t in tmod.state_dict().items():
        assert np.array_equal(layer.params[name], t.numpy()), name


@pytest.mark.parametrize("cell", CELLS)
def test_torch_tensors_as_inputs(cell, rng):
    """x, states, lengths, dy and dh_n may be torch tensors (even ones requiring
    grad)."""
    case = Case(cell, 5, 3, 4, 6, 2, True, False, "unsorted", "float32")
    tmod = torch_layer(case)
    layer = rk_layer(case, tmod)
    inputs = make_inputs(case, rng)
    want = run_case(layer, inputs)

    def t(a):
        if isinstance(a, tuple):
            return tuple(t(v) for v in a)
        return torch.tensor(a, requires_grad=a.dtype.kind == "f")

    got = run(
        layer,
        t(inputs["x"]),
        t(inputs["hx"]),
        t(inputs["dy"]),
        t(inputs["dhx"]),
        lengths=t(inputs["lengths"]),
    )
    assert_results_equal(got, want, "torch tensors vs numpy arrays")


def test_load_state_dict_float64_tensors_into_float32(rng):
    """A float64 torch state_dict loads into a float32 layer (converted)."""
    case = Case("gru", 4, 3, 5, 6, 1, False, dtype="float64")
    tmod = torch_layer(case)
    layer = rk.GRU(5, 6, dtype="float32")
    layer.load_state_dict(tmod.state_dict())
    for name, t in tmod.state_dict().items():
        assert layer.params[name].dtype == np.float32
        assert np.array_equal(layer.params[name], t.numpy().astype(np.float32)), name
