"""The conveniences of a training library: validation_split, sample and class
weights, freezing, predict_proba / softmax, mask_zero, summary and repr, the
tqdm progress display, rk.load of a char model."""

from __future__ import annotations

import io

import numpy as np
import pytest

import rnnkit as rk
from _helpers import fd_gradient
from conftest import FD_TOL, named_tol, tol

RTOL, ATOL = named_tol("reordered_float64")


def _clf(dtype="float64", **kw):
    return rk.Sequential(
        rk.Embedding(12, 5, padding_idx=0, dtype=dtype, seed=0, **kw),
        rk.LSTM(5, 8, dtype=dtype, seed=1),
        rk.Linear(8, 3, dtype=dtype, seed=2),
        output="last",
    )


def _data(rng, n=40, T=7):
    lengths = rng.integers(1, T + 1, n)
    x = rng.integers(1, 12, (n, T))
    x[np.arange(T)[None, :] >= lengths[:, None]] = 0  # right-padded with id 0
    y = x[:, 0] % 3
    return x, y, lengths


# ------------------------------------------------------------ weighted losses
@pytest.mark.parametrize("kind", ["cross_entropy", "bce", "mse"])
def test_float_mask_weights_the_loss_and_its_gradient(rng, kind):
    z = rng.standard_normal((4, 5, 3))
    w = rng.random((4, 5))
    w[0, 1] = 0.0
    if kind == "cross_entropy":
        t = rng.integers(0, 3, (4, 5))

        def per(zz):
            zz = zz - zz.max(-1, keepdims=True)
            lp = zz - np.log(np.exp(zz).sum(-1, keepdims=True))
            return -np.take_along_axis(lp, t[..., None], -1)[..., 0]

        fn = rk.losses.cross_entropy
    elif kind == "bce":
        t = rng.random((4, 5, 3))

        def per(zz):
            return np.maximum(zz, 0) - zz * t + np.log1p(np.exp(-np.abs(zz)))

        fn = rk.losses.binary_cross_entropy_with_logits
    else:
        t = rng.standard_normal((4, 5, 3))

        def per(zz):
            return (zz - t) ** 2

        fn = rk.losses.mse
    loss, d = fn(z, t, mask=w)
    ww = w if kind == "cross_entropy" else np.broadcast_to(w[..., None], z.shape)
    want = np.sum(per(z) * ww) / ww.sum()
    np.testing.assert_allclose(loss, want, rtol=RTOL, atol=ATOL)
    g = fd_gradient(lambda: fn(z, t, mask=w)[0], z)
    np.testing.assert_allclose(d, g, rtol=FD_TOL["rtol"], atol=FD_TOL["atol"])
    # a 0/1 float mask is the bool mask
    b = w > 0.5
    for a, e in zip(fn(z, t, mask=b.astype(float)), fn(z, t, mask=b)):
        np.testing.assert_allclose(a, e, rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="finite and >= 0"):
        fn(z, t, mask=-w)


def test_sample_weight_zero_is_leaving_the_rows_out(rng):
    x, y, lengths = _data(rng)
    sw = (rng.random(40) < 0.6).astype(float)
    keep = sw > 0
    a, b = _clf(), _clf()
    kw = dict(epochs=3, shuffle=False, progress=False)
    rk.fit(
        a,
        "cross_entropy",
        rk.Adam(a, lr=1e-2),
        (x, y, lengths),
        sample_weight=sw,
        batch_size=40,
        **kw,
    )
    rk.fit(
        b,
        "cross_entropy",
        rk.Adam(b, lr=1e-2),
        (x[keep], y[keep], lengths[keep]),
        batch_size=int(keep.sum()),
        **kw,
    )
    for k, v in a.state_dict().items():
        np.testing.assert_allclose(v, b.state_dict()[k], *tol("float64", "step"))


def test_class_weight_equals_sample_weight_by_class(rng):
    x, y, lengths = _data(rng)
    cw = {0: 2.0, 2: 0.5}
    sw = np.array([cw.get(int(c), 1.0) for c in y])
    a, b = _clf(), _clf()
    kw = dict(epochs=2, batch_size=8, progress=False)
    ha = rk.fit(
        a, "cross_entropy", rk.SGD(a, lr=0.1), (x, y, lengths), class_weight=cw, **kw
    )
    hb = rk.fit(
        b, "cross_entropy", rk.SGD(b, lr=0.1), (x, y, lengths), sample_weight=sw, **kw
    )
    assert ha["loss"] == hb["loss"]
    with pytest.raises(ValueError, match="sample_weight must have shape"):
        rk.fit(a, "cross_entropy", rk.SGD(a), (x, y), sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="class_weight has 2 entries"):
        rk.fit(a, "cross_entropy", rk.SGD(a), (x, y), class_weight=[1.0, 1.0])


def test_per_step_weights_keep_padding_out(rng):
    """(N, T) weights on a many-to-many model combine with the length mask."""
    x, _, lengths = _data(rng)
    y = rng.integers(0, 4, x.shape)
    model = rk.Sequential(
        rk.Embedding(12, 4, dtype="float64", seed=0),
        rk.GRU(4, 6, dtype="float64", seed=1),
        rk.Linear(6, 4, dtype="float64", seed=2),
    )
    sw = rng.random(x.shape)
    ev = rk.evaluate(model, "cross_entropy", (x, y, lengths))
    T = x.shape[1]
    valid = np.arange(T)[None, :] < lengths[:, None]
    out = model.predict(x, lengths=lengths)
    loss_w, _ = rk.losses.cross_entropy(out, y, mask=sw * valid)
    hist = rk.fit(
        model,
        "cross_entropy",
        rk.SGD(model, lr=0.0),
        (x, y, lengths),
        sample_weight=sw,
        batch_size=40,
        shuffle=False,
        progress=False,
    )
    np.testing.assert_allclose(hist["loss"][0], loss_w, rtol=1e-10)
    assert ev["loss"] != loss_w  # the weights changed the loss


def test_validation_split_holds_out_the_last_rows(rng):
    x, y, lengths = _data(rng)
    model = _clf()
    hist = rk.fit(
        model,
        "cross_entropy",
        rk.Adam(model),
        (x, y, lengths),
        validation_split=0.25,
        epochs=2,
        progress=False,
        metrics=["accuracy"],
    )
    ev = rk.evaluate(
        model, "cross_entropy", (x[30:], y[30:], lengths[30:]), metrics=["accuracy"]
    )
    np.testing.assert_allclose(hist["val_loss"][-1], ev["loss"], rtol=RTOL)
    assert hist["val_accuracy"][-1] == ev["accuracy"]
    assert hist.position.items == 2 * 30  # trained on the first 30 rows only
    with pytest.raises(ValueError, match="not both"):
        rk.fit(
            model,
            "cross_entropy",
            rk.Adam(model),
            (x, y),
            val_data=(x, y),
            validation_split=0.1,
        )
    with pytest.raises(ValueError, match=r"validation_split must be in \(0, 1\)"):
        rk.fit(model, "cross_entropy", rk.Adam(model), (x, y), validation_split=1.0)


# ------------------------------------------------------------------ freezing
@pytest.mark.parametrize(
    "make_opt",
    [
        lambda m: rk.SGD(m, lr=0.1, momentum=0.9, weight_decay=0.1),
        lambda m: rk.AdamW(m, lr=1e-2, weight_decay=0.5),
        lambda m: rk.RMSprop(m, lr=1e-2, weight_decay=0.1, centered=True),
    ],
)
def test_frozen_tensors_do_not_move(rng, make_opt):
    x, y, lengths = _data(rng)
    model = _clf()
    model.layers[0].trainable = False  # Keras's way
    model.freeze("1.weight_hh_l0")  # one tensor
    assert model.frozen == ["0.weight", "1.weight_hh_l0"]
    before = model.state_dict()
    opt = make_opt(model)
    rk.fit(
        model,
        "cross_entropy",
        opt,
        (x, y, lengths),
        epochs=2,
        clip_norm=0.5,
        progress=False,
    )
    after = model.state_dict()
    for k in before:
        same = np.array_equal(before[k], after[k])
        assert same == (k in model.frozen), k
    for slot in opt.state.values():  # no optimizer state for frozen entries
        for a, b in model.frozen_spans():
            assert not slot[0][a:b].any()
    # unfreezing resumes training those tensors
    model.unfreeze()
    assert model.trainable and model.frozen == []
    rk.fit(model, "cross_entropy", opt, (x, y, lengths), progress=False)
    assert not np.array_equal(model.state_dict()["0.weight"], before["0.weight"])


def test_frozen_gradients_leave_clipping_and_norms(rng):
    model = _clf()
    model.grads["0.weight"][...] = 100.0
    model.grads["2.weight"][...] = 1.0
    model.freeze("0")
    norm = rk.clip_grad_norm(model, 1e9)
    np.testing.assert_allclose(norm, np.sqrt(model.grads["2.weight"].size))
    assert not model.grads["0.weight"].any()
    model.grads["0.weight"][...] = 5.0
    rk.clip_grad_value(model, 2.0)
    assert not model.grads["0.weight"].any()
    with pytest.raises(KeyError, match="has no parameter"):
        model.freeze("9")


def test_frozen_flags_survive_a_checkpoint(tmp_path):
    model = _clf()
    model.freeze("1.weight_ih_l0", "2")
    model.save(tmp_path / "m.rk")
    back = rk.load(tmp_path / "m.rk")
    assert back.frozen == ["1.weight_ih_l0", "2.weight", "2.bias"]
    assert not back.layers[2].trainable and back.layers[0].trainable
    enc = rk.Sequential(rk.Embedding(9, 4, seed=0), rk.GRU(4, 6, seed=1))
    dec = rk.Sequential(
        rk.Embedding(7, 4, seed=2), rk.GRU(4, 6, seed=3), rk.Linear(6, 7, seed=4)
    )
    ed = rk.EncoderDecoder(enc, dec)
    ed.freeze("encoder")
    ed.save(tmp_path / "ed.rk")
    assert (
        rk.load(tmp_path / "ed.rk").frozen
        == ed.frozen
        == [
            "encoder.0.weight",
            "encoder.1.weight_ih_l0",
            "encoder.1.weight_hh_l0",
            "encoder.1.bias_ih_l0",
            "encoder.1.bias_hh_l0",
        ]
    )


def test_freezing_a_bare_layer(rng):
    lstm = rk.LSTM(3, 4, seed=0)
    lstm.freeze("weight_ih_l0")
    w, hh = lstm.params["weight_ih_l0"].copy(), lstm.params["weight_hh_l0"].copy()
    opt = rk.Adam(lstm, lr=0.1)
    lstm.forward(rng.standard_normal((5, 2, 3)))
    lstm.backward(np.ones((5, 2, 4)))
    opt.step()
    np.testing.assert_array_equal(lstm.params["weight_ih_l0"], w)
    assert not np.array_equal(lstm.params["weight_hh_l0"], hh)


# ------------------------------------------------------- probabilities, masks
def test_softmax_sigmoid_and_predict_proba(rng):
    z = rng.standard_normal((6, 4)) * 50
    p = rk.softmax(z)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=RTOL, atol=1e-15)
    e = np.exp(z - z.max(-1, keepdims=True))
    np.testing.assert_allclose(p, e / e.sum(-1, keepdims=True), rtol=RTOL)
    np.testing.assert_allclose(rk.sigmoid(z), 1 / (1 + np.exp(-z)), rtol=RTOL)
    assert rk.softmax(z.astype(np.float32)).dtype == np.float32
    x, y, lengths = _data(rng)
    model = _clf()
    proba = model.predict_proba(x, lengths=lengths)
    np.testing.assert_allclose(proba, rk.softmax(model.predict(x, lengths=lengths)))
    binary = rk.Sequential(rk.GRU(2, 4, seed=0), rk.Linear(4, 3, seed=1), output="last")
    xb = rng.standard_normal((8, 5, 2))
    rk.fit(
        binary,
        "bce_with_logits",
        rk.Adam(binary),
        (xb, rng.random((8, 3))),
        progress=False,
    )
    assert binary.meta["loss"] == "bce_with_logits"
    np.testing.assert_allclose(
        binary.predict_proba(xb), rk.sigmoid(binary.predict(xb))
    )  # multi-label: a sigmoid per output, not a softmax
    with pytest.raises(ValueError, match="activation must be"):
        model.predict_proba(x, activation="tanh")


def test_mask_zero_derives_lengths_from_padding(rng):
    x, y, lengths = _data(rng)
    auto, manual = _clf(mask_zero=True), _clf()
    np.testing.assert_array_equal(auto.layers[0].lengths(x), lengths)
    np.testing.assert_array_equal(
        auto.forward(x, train=False), manual.forward(x, lengths=lengths, train=False)
    )
    np.testing.assert_array_equal(auto.predict(x), manual.predict(x, lengths=lengths))
    ha = rk.fit(auto, "cross_entropy", rk.Adam(auto), (x, y), epochs=2, progress=False)
    hm = rk.fit(
        manual,
        "cross_entropy",
        rk.Adam(manual),
        (x, y, lengths),
        epochs=2,
        progress=False,
    )
    assert ha["loss"] == hm["loss"]
    bad = x.copy()
    bad[3] = 0
    with pytest.raises(ValueError, match="ids row 3 is all padding"):
        auto.forward(bad)
    assert rk.Embedding(5, 2, mask_zero=True).padding_idx == 0
    assert rk.Sequential.from_config(auto.config()).layers[0].mask_zero


def test_mask_zero_many_to_many_masks_the_loss(rng):
    x, _, lengths = _data(rng)
    y = rng.integers(0, 4, x.shape)

    def lm(mask_zero):
        return rk.Sequential(
            rk.Embedding(12, 4, padding_idx=0, mask_zero=mask_zero, seed=0),
            rk.GRU(4, 6, seed=1),
            rk.Linear(6, 4, seed=2),
        )

    a = rk.evaluate(lm(True), "cross_entropy", (x, y), metrics=["accuracy"])
    b = rk.evaluate(lm(False), "cross_entropy", (x, y, lengths), metrics=["accuracy"])
    assert a == b


# ------------------------------------------------------------ summary, repr
def test_summary_and_repr():
    model = _clf("float32", mask_zero=True)
    model.freeze("0")
    text = model.summary(print_fn=None)
    lines = text.splitlines()
    assert lines[0] == "Sequential(input='sequence', output='last')"
    assert "Embedding(12, 5, padding_idx=0, mask_zero=True) (frozen)" in text
    assert "(B, T, 5)" in lines[3] and "(B, 8)" in lines[4] and "(B, 3)" in lines[5]
    n = [sum(v.size for v in m.params.values()) for m in model.layers]
    assert [int(r.split()[-1].replace(",", "")) for r in lines[3:6]] == n
    assert lines[-1] == (
        f"total {sum(n):,} parameters (trainable {sum(n) - 60:,}, frozen 60), float32"
    )
    out = io.StringIO()
    model.summary(print_fn=lambda s: out.write(s))
    assert out.getvalue() == text
    r = repr(model)
    assert "frozen=['0.weight']" in r and "(2): Linear(8, 3, dtype='float64')" not in r
    assert repr(rk.Linear(4, 2, activation="relu")) == "Linear(4, 2, activation='relu')"
    assert repr(rk.Linear(4, 2, dtype="float64")) == "Linear(4, 2, dtype='float64')"


# ------------------------------------------------------------------ progress
def test_tqdm_progress_display(rng, capsys):
    tqdm = pytest.importorskip("tqdm")
    assert tqdm is not None
    model, (x, y, lengths) = _clf(), _data(rng)
    rk.fit(
        model,
        "cross_entropy",
        rk.Adam(model),
        (x, y, lengths),
        epochs=2,
        batch_size=8,
        progress="tqdm",
    )
    cap = capsys.readouterr()
    err = cap.out + cap.err  # tqdm.write prints the evaluation lines to stdout
    assert err.count("epoch 1/2 step 5") == 1 and err.count("epoch 2/2 step 10") == 1
    assert "batch" in err  # tqdm's bar (unit="batch") was drawn


# ----------------------------------------------------------------------- CLI
def test_cli_version_demo_verdict_and_help(capsys):
    from rnnkit.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"rnnkit {rk.__version__}"
    assert main(["demo", "--T", "3", "--B", "2", "--I", "5", "--H", "7"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("kernels agree with the reference: max error ")
    assert last.endswith(", OK")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "recurrent cell: lstm, gru or rnn" in help_text
    assert "model.rk in the current directory; add *.rk to .gitignore" in help_text


def test_cli_progress_and_samples_count_epochs_alike(tmp_path, capsys):
    from rnnkit.cli import main

    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat. " * 30)
    args = [str(corpus), "--hidden", "8", "--embedding", "4", "--epochs", "2"]
    args += ["--seq-len", "10", "--batch", "4", "--out", str(tmp_path / "m.rk")]
    assert main(["train", *args, "--sample-length", "5", "--final-length", "0"]) == 0
    cap = capsys.readouterr()
    # the evaluation lines (stderr) and the samples (stdout) number epochs alike
    for k in (1, 2):
        assert cap.err.count(f"epoch {k}/2 step") == 1
        assert cap.out.count(f"--- sample after epoch {k} ---") == 1
    assert "epoch 0" not in cap.out + cap.err and "epoch 3" not in cap.out + cap.err
    assert isinstance(rk.load(tmp_path / "m.rk"), rk.CharLM)


def test_shape_errors_show_the_callers_shape_and_the_layout_rule():
    with pytest.raises(ValueError, match=r"x shape \(2, 5, 4\); layers are time-major"):
        rk.LSTM(3, 4).forward(np.ones((2, 5, 4)))
    with pytest.raises(ValueError, match=r"x shape \(2, 5, 4\).*\(B, T, I\)"):
        rk.GRU(3, 4, batch_first=True).forward(np.ones((2, 5, 4)))
    with pytest.raises(ValueError, match=r"Sequential's x has shape \(2, 5, 4\)"):
        rk.Sequential(rk.LSTM(3, 4)).forward(np.ones((2, 5, 4)))
