"""Models: gradient checks through whole models (centered finite differences,
float64, compiled kernels), the four RNN shapes, the one flat buffer, the escape
hatch, state carrying, a training trajectory against the NumPy reference and
against PyTorch, errors, and the ``fit`` loop."""

from __future__ import annotations

import importlib.util
import io

import numpy as np
import pytest

import rnnkit as rk
from _helpers import fd_derivative, fd_gradient
from conftest import named_tol
from rnnkit import losses
from rnnkit import reference as ref

F64 = {"dtype": "float64"}


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


def check_model_grads(model, run, rng, per_param: int = 4, extra=None) -> None:
    """``run()`` does a forward and returns (loss, dout); checks ``per_param``
    random entries of every parameter tensor against centered differences."""
    model.zero_grad()
    _, d = run()
    dx = model.backward(d)

    def loss() -> float:
        return run()[0]

    rtol, atol = named_tol("fd_model")
    checked = 0
    for prefix, m in model.named_modules():
        for name, p in m.params.items():
            grad = m.grads[name].reshape(-1)
            for j in rng.choice(p.size, min(per_param, p.size), replace=False):
                fd = fd_derivative(loss, p, index=j)
                assert grad[j] == pytest.approx(fd, rel=rtol, abs=atol), (
                    f"{prefix}.{name}[{j}]"
                )
                checked += 1
    assert checked > 0
    if extra is not None:
        want = fd_gradient(loss, extra)
        np.testing.assert_allclose(dx, want, rtol=rtol, atol=atol)


def test_gradcheck_many_to_one_bilstm_dropout_lengths(rng):
    drop = rk.Dropout(0.3)
    model = rk.Sequential(
        rk.Embedding(6, 3, seed=1, **F64),
        rk.LSTM(3, 4, num_layers=2, bidirectional=True, seed=2, **F64),
        drop,
        rk.Linear(8, 3, seed=3, **F64),
        output="last",
    )
    ids = rng.integers(0, 6, size=(3, 5))
    lengths = np.array([4, 2, 5])
    y = np.array([0, 2, 1])

    def run():
        drop.rng = np.random.default_rng(7)  # the same mask every time
        return losses.cross_entropy(model.forward(ids, lengths=lengths), y)

    check_model_grads(model, run, rng)


def test_gradcheck_many_to_many_gru_mse_mask(rng):
    model = rk.Sequential(
        rk.Linear(2, 3, activation="tanh", seed=1, **F64),
        rk.GRU(3, 4, batch_first=True, seed=2, **F64),
        rk.Linear(4, 2, seed=3, **F64),
    )
    x = rng.standard_normal((3, 5, 2))
    target = rng.standard_normal((3, 5, 2))
    lengths = np.array([5, 3, 1])
    mask = losses.length_mask(lengths, 5)

    def run():
        return losses.mse(model.forward(x, lengths=lengths), target, mask=mask)

    check_model_grads(model, run, rng, extra=x)


def test_gradcheck_one_to_many_rnn_per_step_ce(rng):
    model = rk.Sequential(
        rk.Linear(2, 3, activation="tanh", seed=1, **F64),
        rk.RNN(3, 4, num_layers=2, seed=2, **F64),
        rk.Linear(4, 5, seed=3, **F64),
        input="vector",
        steps=4,
    )
    x = rng.standard_normal((3, 2))
    t = rng.integers(0, 5, size=(3, 4))
    t[1, 3] = -100

    def run():
        return losses.cross_entropy(model.forward(x), t, reduction="sum")

    check_model_grads(model, run, rng, extra=x)


def test_gradcheck_one_to_one_bce(rng):
    model = rk.Sequential(
        rk.GRU(3, 4, seed=2, **F64),
        rk.Linear(4, 1, seed=3, **F64),
        input="vector",
        output="last",
        steps=1,
    )
    x = rng.standard_normal((5, 3))
    t = rng.integers(0, 2, size=(5, 1)).astype(np.float64)

    def run():
        return losses.binary_cross_entropy_with_logits(model.forward(x), t)

    check_model_grads(model, run, rng, extra=x)


def make_seq2seq(cell=rk.LSTM, layers=2, dtype="float64", seed=0):
    enc = rk.Sequential(
        rk.Embedding(7, 3, seed=seed, dtype=dtype),
        cell(3, 4, num_layers=layers, seed=seed + 1, dtype=dtype),
    )
    dec = rk.Sequential(
        rk.Embedding(5, 3, seed=seed + 2, dtype=dtype),
        cell(3, 4, num_layers=layers, seed=seed + 3, dtype=dtype),
        rk.Linear(4, 5, seed=seed + 4, dtype=dtype),
    )
    return rk.EncoderDecoder(enc, dec)


@pytest.mark.parametrize("cell", [rk.LSTM, rk.GRU])
def test_gradcheck_encoder_decoder(rng, cell):
    model = make_seq2seq(cell)
    src = rng.integers(0, 7, size=(3, 6))
    lengths = np.array([6, 2, 4])
    tgt_in = rng.integers(0, 5, size=(3, 4))
    tgt_out = rng.integers(0, 5, size=(3, 4))
    tgt_out[2, 3] = -100

    def run():
        return losses.cross_entropy(
            model.forward(src, tgt_in, lengths=lengths), tgt_out
        )

    check_model_grads(model, run, rng, per_param=3)


# ------------------------------------------------------------------ structure
def test_one_flat_buffer_and_escape_hatch(rng):
    emb, lstm, fc = (
        rk.Embedding(6, 3, seed=1),
        rk.LSTM(3, 4, seed=2),
        rk.Linear(4, 2, seed=3),
    )
    before = {k: v.copy() for k, v in lstm.params.items()}
    model = rk.Sequential(emb, lstm, fc, output="last")
    [(P, G)] = model.parameters()
    assert P.size == model.num_parameters == 6 * 3 + (16 * 3 + 16 * 4 + 32) + 4 * 2 + 2
    for m in (emb, lstm, fc):
        for name in m.params:
            assert np.shares_memory(m.params[name], P) and np.shares_memory(
                m.grads[name], G
            )
    assert all(
        np.array_equal(lstm.params[k], v) for k, v in before.items()
    )  # values kept

    ids, lengths, y = (
        rng.integers(0, 6, (4, 5)),
        np.array([5, 1, 3, 2]),
        np.array([0, 1, 1, 0]),
    )
    model.zero_grad()
    loss, d = losses.cross_entropy(model.forward(ids, lengths=lengths), y)
    model.backward(d)
    auto = G.copy()
    # the same by hand, layer by layer (time-major inside)
    model.zero_grad()
    e = emb.forward(ids.T)
    _, (h_n, _) = lstm.forward(e, lengths=lengths)
    logits = fc.forward(h_n[-1])
    loss2, d2 = losses.cross_entropy(logits, y)
    dh = np.zeros_like(h_n)
    dh[-1] = fc.backward(d2)
    dx, _ = lstm.backward(None, (dh, None))
    emb.backward(dx)
    assert loss2 == loss
    np.testing.assert_array_equal(G, auto)
    w, dw = fc.params["weight"].copy(), fc.grads["weight"].copy()
    rk.SGD(model, lr=0.1).step()  # one update over the flat buffer reaches every layer
    rtol, atol = named_tol("float32_ulps")
    np.testing.assert_allclose(fc.params["weight"], w - 0.1 * dw, rtol=rtol, atol=atol)


def test_output_last_is_the_last_valid_step(rng):
    def build():
        return [rk.GRU(3, 4, num_layers=2, bidirectional=True, seed=5)]

    seq = rk.Sequential(*build())
    last = rk.Sequential(*build(), output="last")
    x = rng.standard_normal((4, 6, 3)).astype(np.float32)
    lengths = np.array([6, 1, 4, 3])
    y = seq.forward(x, lengths=lengths, train=False)
    h = last.forward(x, lengths=lengths, train=False)
    b = np.arange(4)
    np.testing.assert_array_equal(h[:, :4], y[b, lengths - 1, :4])  # forward direction
    np.testing.assert_array_equal(h[:, 4:], y[:, 0, 4:])  # reverse ends at step 0


def test_state_carries_across_chunks(rng):
    model = rk.Sequential(rk.LSTM(3, 5, num_layers=2, seed=0), rk.Linear(5, 2, seed=1))
    x = rng.standard_normal((2, 9, 3)).astype(np.float32)
    whole = model.forward(x, train=False)
    a = model.forward(x[:, :4], train=False)
    b = model.forward(x[:, 4:], state=model.final_state, train=False)
    rtol, atol = named_tol("chunks_float32")
    np.testing.assert_allclose(
        np.concatenate([a, b], axis=1), whole, rtol=rtol, atol=atol
    )


def test_kernels_vs_reference_training_trajectory(rng):
    """Five Adam steps of the same model on the kernels and on the NumPy reference."""

    def build(mod):
        return rk.Sequential(
            rk.Embedding(9, 4, seed=1, **F64),
            mod.GRU(4, 6, num_layers=2, seed=2, **F64),
            rk.Linear(6, 9, seed=3, **F64),
        )

    fast, slow = build(rk), build(ref)
    ids = rng.integers(0, 9, size=(5, 7))
    lengths = np.array([7, 3, 5, 6, 2])
    opts = [rk.Adam(m, lr=0.01) for m in (fast, slow)]
    rtol, atol = named_tol("trajectory_float64")
    for _ in range(5):
        for m, o in zip((fast, slow), opts):
            m.zero_grad()
            _, d = losses.cross_entropy(
                m.forward(ids[:, :-1], lengths=lengths - 1),
                ids[:, 1:],
                mask=losses.length_mask(lengths - 1, 6),
            )
            m.backward(d)
            o.step()
        np.testing.assert_allclose(
            fast._flat_params, slow._flat_params, rtol=rtol, atol=atol
        )


def test_torch_training_trajectory(rng):
    """Embedding -> LSTM -> last state -> Linear, Adam: five steps agree with torch."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    temb = torch.nn.Embedding(8, 3, dtype=torch.float64)
    tlstm = torch.nn.LSTM(3, 5, num_layers=2, batch_first=True, dtype=torch.float64)
    tfc = torch.nn.Linear(5, 4, dtype=torch.float64)
    model = rk.Sequential(
        rk.Embedding(8, 3, **F64),
        rk.LSTM(3, 5, num_layers=2, **F64),
        rk.Linear(5, 4, **F64),
        output="last",
    )
    state = {f"0.{k}": v for k, v in temb.state_dict().items()}
    state.update({f"1.{k}": v for k, v in tlstm.state_dict().items()})
    state.update({f"2.{k}": v for k, v in tfc.state_dict().items()})
    model.load_state_dict(state)
    tparams = [*temb.parameters(), *tlstm.parameters(), *tfc.parameters()]
    topt = torch.optim.Adam(tparams, lr=0.02, weight_decay=0.01)
    opt = rk.Adam(model, lr=0.02, weight_decay=0.01)
    ids = rng.integers(0, 8, size=(4, 6))
    y = rng.integers(0, 4, size=4)
    rtol, atol = named_tol("trajectory_float64")
    for _ in range(5):
        topt.zero_grad()
        _, (h, _) = tlstm(temb(torch.tensor(ids)))
        tloss = torch.nn.functional.cross_entropy(tfc(h[-1]), torch.tensor(y))
        tloss.backward()
        topt.step()
        model.zero_grad()
        loss, d = losses.cross_entropy(model.forward(ids), y)
        model.backward(d)
        opt.step()
        assert loss == pytest.approx(tloss.item(), rel=rtol, abs=atol)
    got = model.state_dict()
    rtol, atol = named_tol("torch_trajectory")
    for prefix, mod in (("0", temb), ("1", tlstm), ("2", tfc)):
        for k, v in mod.state_dict().items():
            np.testing.assert_allclose(
                got[f"{prefix}.{k}"], v.numpy(), rtol=rtol, atol=atol, err_msg=k
            )


def test_greedy_decode_stops_at_eos():
    model = make_seq2seq(rk.GRU, layers=1, dtype="float32")
    fc = model.decoder.layers[-1]
    fc.params["weight"][...] = 0
    fc.params["bias"][...] = [0, 0, 5, 0, 0]  # always token 2
    src = np.ones((3, 4), dtype=np.int64)
    out = model.greedy_decode(src, bos=0, eos=1, max_len=6)
    assert out.shape == (3, 6) and (out == 2).all()
    fc.params["bias"][...] = [0, 5, 0, 0, 0]  # eos at once
    out = model.greedy_decode(src, bos=0, eos=1, max_len=6, lengths=np.array([4, 1, 2]))
    assert out.shape == (3, 1) and (out == 1).all()


def test_model_errors():
    with pytest.raises(ValueError, match="Embedding must be the first layer"):
        rk.Sequential(rk.Linear(2, 3), rk.Embedding(4, 3))
    with pytest.raises(ValueError, match="needs a recurrent layer"):
        rk.Sequential(rk.Linear(2, 3), output="last")
    with pytest.raises(TypeError, match="one dtype"):
        rk.Sequential(rk.GRU(2, 3), rk.Linear(3, 2, dtype="float64"))
    with pytest.raises(TypeError, match="layer 0 must be an rnnkit module"):
        rk.Sequential(object())
    gru = rk.GRU(2, 3)
    first = rk.Sequential(gru)
    with pytest.raises(ValueError, match="already belongs to another model"):
        rk.Sequential(gru)
    del first  # a layer whose model is gone may join a new one
    rk.Sequential(gru)
    model = rk.Sequential(rk.GRU(2, 3), rk.Linear(3, 2), output="last")
    with pytest.raises(RuntimeError, match="preceding forward"):
        model.backward(np.zeros((1, 2)))
    model.forward(np.zeros((4, 5, 2)))
    with pytest.raises(ValueError, match=r"dout must have shape \(4, 2\)"):
        model.backward(np.zeros((4, 5, 2)))
    with pytest.raises(ValueError, match="steps"):
        rk.Sequential(rk.GRU(2, 3), input="vector").forward(np.zeros((4, 2)))
    enc = rk.Sequential(rk.Embedding(5, 2), rk.GRU(2, 3, bidirectional=True))
    dec = rk.Sequential(rk.Embedding(5, 2), rk.GRU(2, 3), rk.Linear(3, 5))
    with pytest.raises(ValueError, match="must fit the decoder's initial state"):
        rk.EncoderDecoder(enc, dec)


# ------------------------------------------------------------------------ fit
def parity_data(rng, n):
    """Is the number of 1s among the first `length` tokens odd? (many-to-one)."""
    T = 8
    x = rng.integers(1, 3, size=(n, T))
    lengths = rng.integers(1, T + 1, size=n)
    y = np.array(
        [int((x[i, : lengths[i]] == 1).sum() > lengths[i] / 2) for i in range(n)]
    )
    return x, y, lengths


def small_classifier(seed=0):
    return rk.Sequential(
        rk.Embedding(3, 4, seed=seed),
        rk.GRU(4, 16, seed=seed + 1),
        rk.Linear(16, 2, seed=seed + 2),
        output="last",
    )


def test_fit_learns_and_reports(rng, tmp_path):
    model = small_classifier()
    train, val = parity_data(rng, 512), parity_data(rng, 128)
    stream = io.StringIO()
    hist = rk.fit(
        model,
        "cross_entropy",
        rk.Adam(model, lr=0.02),
        train,
        val_data=val,
        epochs=4,
        batch_size=32,
        metrics=["accuracy"],
        progress=stream,
        clip_norm=5.0,
        plot=str(tmp_path / "loss.png"),
    )
    assert set(hist) >= {
        "loss",
        "val_loss",
        "val_accuracy",
        "lr",
        "time",
        "examples_per_s",
    }
    assert (
        len(hist["loss"]) == 4 and hist.steps == 4 * 16 and hist.stop_reason == "epochs"
    )
    assert hist["loss"][-1] < hist["loss"][0]
    assert hist["val_accuracy"][-1] > 0.8
    assert "epoch 4/4" in stream.getvalue() and "ex/s" in stream.getvalue()
    assert model.optimizer is not None and model.optimizer.step_count == 64
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    ev = rk.evaluate(model, "cross_entropy", val, metrics=["accuracy"])
    assert ev["loss"] == pytest.approx(hist["val_loss"][-1])


def test_plot_history_without_matplotlib(tmp_path, monkeypatch):
    import sys

    from rnnkit.train import plot_history

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.warns(UserWarning, match="matplotlib is not installed"):
        assert plot_history({"loss": [1.0, 0.5]}, str(tmp_path / "x.png")) is False
    assert not (tmp_path / "x.png").exists()


def test_fit_budget_early_stopping_and_callback(rng):
    train = parity_data(rng, 256)
    model = small_classifier(3)
    hist = rk.fit(
        model,
        "cross_entropy",
        rk.SGD(model, lr=0.01),
        train,
        epochs=50,
        batch_size=16,
        max_steps=20,
        progress=False,
    )
    assert (
        hist.steps == 20 and hist.stop_reason == "max_steps" and len(hist["loss"]) == 2
    )

    model = small_classifier(4)
    hist = rk.fit(
        model,
        "cross_entropy",
        rk.SGD(model, lr=0.0),
        train,
        val_data=train,
        epochs=50,
        batch_size=64,
        early_stopping=2,
        progress=False,
    )
    assert hist.stop_reason == "early_stopping" and len(hist["loss"]) == 3
    assert hist.best_epoch == 0

    seen = []
    hist = rk.fit(
        model,
        "cross_entropy",
        rk.SGD(model, lr=0.01),
        train,
        epochs=5,
        batch_size=64,
        progress=False,
        callback=lambda e, logs: seen.append(e) or e == 1,
    )
    assert seen == [0, 1] and hist.stop_reason == "callback"
    hist = rk.fit(
        model,
        "cross_entropy",
        rk.SGD(model, lr=0.01),
        train,
        epochs=1000,
        batch_size=64,
        progress=False,
        max_time=0.2,
    )
    assert hist.stop_reason == "max_time"


def test_fit_stops_on_non_finite_loss_before_updating(rng):
    model = small_classifier(6)
    before = model._flat_params.copy()

    def nan_loss(out, y, mask):
        return float("nan"), np.ones_like(out)

    hist = rk.fit(
        model,
        nan_loss,
        rk.SGD(model, lr=1.0),
        parity_data(rng, 64),
        epochs=3,
        progress=False,
    )
    assert hist.stop_reason == "non-finite loss" and hist.steps == 0
    assert np.isnan(hist["loss"][0]) and np.array_equal(model._flat_params, before)


def test_fit_restores_best_weights(rng):
    train = parity_data(rng, 128)
    model = small_classifier(5)
    snapshots = []
    rk.fit(
        model,
        "cross_entropy",
        rk.SGD(model, lr=0.5),
        train,
        val_data=train,
        epochs=6,
        batch_size=32,
        progress=False,
        early_stopping=rk.EarlyStopping(patience=10, restore_best=True),
        callback=lambda e, logs: snapshots.append(
            (logs["val_loss"], model._flat_params.copy())
        ),
    )
    best = min(snapshots, key=lambda s: s[0])[1]
    np.testing.assert_array_equal(model._flat_params, best)


def test_fit_sequence_data_with_lengths_masks_padding(rng):
    """Many-to-many with lengths: padded steps must not affect the loss."""
    model = rk.Sequential(rk.GRU(1, 8, seed=0), rk.Linear(8, 1, seed=1))
    x = rng.standard_normal((64, 10, 1)).astype(np.float32)
    lengths = rng.integers(3, 11, size=64)
    y = np.cumsum(x, axis=1)
    junk = y.copy()
    for i, n in enumerate(lengths):
        junk[i, n:] = 1e6  # garbage in the padding
    ev = rk.evaluate(model, "mse", (x, y, lengths))
    assert ev["loss"] == pytest.approx(
        rk.evaluate(model, "mse", (x, junk, lengths))["loss"]
    )
    hist = rk.fit(
        model,
        "mse",
        rk.Adam(model, lr=0.01),
        (x, junk, lengths),
        epochs=3,
        batch_size=16,
        progress=False,
    )
    assert all(np.isfinite(hist["loss"])) and hist["loss"][-1] < 1e3


def test_fit_encoder_decoder_data(rng):
    model = make_seq2seq(rk.GRU, layers=1, dtype="float32")
    src = rng.integers(0, 7, size=(40, 6))
    tgt = rng.integers(1, 5, size=(40, 5))
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
    data = {"x": (src, tgt_in), "y": tgt_out, "lengths": np.full(40, 6)}
    hist = rk.fit(
        model,
        rk.losses.CrossEntropyLoss(),
        rk.Adam(model, lr=0.01),
        data,
        epochs=2,
        batch_size=8,
        progress=False,
    )
    assert len(hist["loss"]) == 2


def test_fit_data_errors(rng):
    model = small_classifier()
    opt = rk.SGD(model)
    with pytest.raises(ValueError, match="rows"):
        rk.fit(model, "cross_entropy", opt, (np.ones((4, 3), int), np.ones(5, int)))
    with pytest.raises(TypeError, match="must be"):
        rk.fit(model, "cross_entropy", opt, np.ones(3))


def test_model_is_a_params_module_over_its_layers_views():
    """Model uses the shared _Params base: its params/grads are the layers' own
    views into the model's one flat buffer, keyed '<module>.<param>'."""
    from rnnkit._params import _Params

    enc = rk.Sequential(rk.Embedding(7, 3, seed=0), rk.GRU(3, 4, seed=1))
    dec = rk.Sequential(
        rk.Embedding(5, 3, seed=2), rk.GRU(3, 4, seed=3), rk.Linear(4, 5, seed=4)
    )
    model = rk.EncoderDecoder(enc, dec)
    assert isinstance(model, _Params)
    assert list(model.params) == list(model.state_dict())
    ((P, G),) = model.parameters()
    assert P.size == model.num_parameters
    for part, sub in (("encoder", enc), ("decoder", dec)):
        for key, view in sub.params.items():
            assert np.shares_memory(view, P)  # nested views follow the outer buffer
            assert view is model.params[f"{part}.{key}"]
    model.grads["decoder.2.bias"][...] = 1.0
    assert G.sum() == 5.0
    model.zero_grad()
    assert not G.any()
    with pytest.raises(KeyError, match="state_dict does not match EncoderDecoder"):
        model.load_state_dict({})
