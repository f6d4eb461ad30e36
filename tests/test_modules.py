"""Linear, Embedding, Dropout: forward against NumPy, gradients against finite
differences (float64), the layer protocol (flat buffers, state_dict, zero_grad),
and errors that name the argument."""

from __future__ import annotations

import numpy as np
import pytest

import rnnkit as rk
from _helpers import fd_gradient
from conftest import FD_TOL, named_tol


@pytest.mark.parametrize("activation", [None, "tanh", "relu", "sigmoid"])
def test_linear_forward_and_gradients(rng, activation):
    fc = rk.Linear(4, 3, activation=activation, dtype="float64", seed=1)
    x = rng.standard_normal((5, 2, 4))  # per time step: any leading shape
    dy = rng.standard_normal((5, 2, 3))
    a = x @ fc.params["weight"].T + fc.params["bias"]
    act = {
        None: lambda v: v,
        "tanh": np.tanh,
        "relu": lambda v: np.maximum(v, 0),
        "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
    }[activation]
    y = fc.forward(x)
    rtol, atol = named_tol("linear_float64")
    np.testing.assert_allclose(y, act(a), rtol=rtol, atol=atol)
    dx = fc.backward(dy)

    def f():
        return float(np.sum(fc.forward(x, train=False) * dy))

    for name in ("weight", "bias"):
        np.testing.assert_allclose(
            fc.grads[name],
            fd_gradient(f, fc.params[name]),
            rtol=FD_TOL["rtol"],
            atol=FD_TOL["atol"],
        )
    want_dx = fd_gradient(f, x)
    np.testing.assert_allclose(dx, want_dx, rtol=FD_TOL["rtol"], atol=FD_TOL["atol"])


def test_linear_protocol(rng):
    fc = rk.Linear(3, 2, bias=False, seed=0)
    assert list(fc.params) == ["weight"] and fc.params["weight"].dtype == np.float32
    [(p, g)] = fc.parameters()
    assert np.shares_memory(p, fc.params["weight"]) and np.shares_memory(
        g, fc.grads["weight"]
    )
    y = fc.forward(np.ones((4, 3), np.float32))
    fc.backward(np.ones_like(y))
    fc.forward(np.ones((4, 3), np.float32))
    fc.backward(np.ones_like(y))
    np.testing.assert_allclose(fc.grads["weight"], 8.0)  # backward adds
    fc.zero_grad()
    assert not fc.grads["weight"].any()
    sd = fc.state_dict()
    other = rk.Linear(3, 2, bias=False, seed=5)
    other.load_state_dict(sd)
    assert np.array_equal(other.params["weight"], fc.params["weight"])
    with pytest.raises(KeyError, match="missing keys"):
        other.load_state_dict({})
    with pytest.raises(
        ValueError, match=r"state_dict\['weight'\] must have shape \(2, 3\)"
    ):
        other.load_state_dict({"weight": np.zeros((3, 2))})
    assert np.array_equal(other.params["weight"], fc.params["weight"])  # unchanged
    with pytest.raises(RuntimeError, match="preceding forward"):
        other.backward(np.ones((4, 2)))
    with pytest.raises(ValueError, match="3 features in its last axis"):
        fc.forward(np.ones((4, 5)))
    with pytest.raises(ValueError, match="dy must have shape \\(4, 2\\)"):
        fc.forward(np.ones((4, 3)))
        fc.backward(np.ones((4, 3)))
    with pytest.raises(ValueError, match="activation"):
        rk.Linear(3, 2, activation="gelu")
    assert rk.Linear(3, 2, seed=3).config()["in_features"] == 3


def test_linear_init_matches_torch_bounds():
    fc = rk.Linear(100, 50, seed=0)
    assert (
        np.abs(fc.params["weight"]).max() <= 0.1
        and np.abs(fc.params["bias"]).max() <= 0.1
    )
    assert np.array_equal(
        rk.Linear(100, 50, seed=0).params["weight"], fc.params["weight"]
    )


def test_embedding_gather_and_scatter_add(rng):
    emb = rk.Embedding(7, 3, dtype="float64", seed=0)
    ids = np.array([[1, 2, 1], [6, 1, 0]])
    y = emb.forward(ids)
    assert np.array_equal(y, emb.params["weight"][ids])
    dy = rng.standard_normal((2, 3, 3))
    assert emb.backward(dy) is None
    onehot = np.eye(7)[ids.reshape(-1)]  # dense equivalent: y = onehot @ W
    rtol, atol = named_tol("reordered_float64")
    np.testing.assert_allclose(
        emb.grads["weight"], onehot.T @ dy.reshape(-1, 3), rtol=rtol, atol=atol
    )


def test_embedding_padding_idx_and_errors():
    emb = rk.Embedding(5, 2, padding_idx=0, seed=1)
    assert not emb.params["weight"][0].any()
    y = emb.forward(np.array([0, 0, 3]))
    emb.backward(np.ones_like(y))
    assert not emb.grads["weight"][0].any() and emb.grads["weight"][3].tolist() == [
        1,
        1,
    ]
    with pytest.raises(IndexError, match=r"token id 5 at position \(1, 0\).*size 5"):
        emb.forward(np.array([[1, 2], [5, 0]]))
    with pytest.raises(IndexError, match="token id -1"):
        emb.forward(np.array([-1]))
    with pytest.raises(TypeError, match="ids must be an integer array"):
        emb.forward(np.array([1.0]))
    with pytest.raises(ValueError, match="padding_idx"):
        rk.Embedding(5, 2, padding_idx=5)
    with pytest.raises(RuntimeError, match="preceding forward"):
        rk.Embedding(5, 2).backward(np.ones((1, 2)))


def test_dropout():
    x = np.ones((200, 50), np.float32)
    d = rk.Dropout(0.25, seed=0)
    y = d.forward(x)
    kept = y != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(y[kept], 1 / 0.75)  # inverted: expectation preserved
    dx = d.backward(np.full_like(x, 2.0))
    assert np.array_equal(dx, 2 * y)  # same mask
    assert d.forward(x, train=False) is x or np.array_equal(
        d.forward(x, train=False), x
    )
    assert np.array_equal(rk.Dropout(0.25, seed=0).forward(x), y)  # seeded
    assert np.array_equal(rk.Dropout(0.0).forward(x), x)
    assert rk.Dropout(0.5).parameters() == [] and rk.Dropout(0.5).state_dict() == {}
    with pytest.raises(ValueError, match="p must be in"):
        rk.Dropout(1.0)
