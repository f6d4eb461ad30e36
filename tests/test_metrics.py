"""rnnkit.metrics: each metric against a direct NumPy computation, accumulation over
batches equal to one pass over all of the data, masks, ignore_index, callables,
and how fit / evaluate take them."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

import rnnkit as rk
from conftest import named_tol
from rnnkit import metrics as M

RTOL, ATOL = named_tol("reordered_float64")


def _logits(rng, *shape):
    return rng.standard_normal(shape)


def _nll(z, t):
    z = z - z.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return -np.take_along_axis(logp, t[..., None], axis=-1)[..., 0]


@pytest.mark.parametrize("module", [M, rk.callbacks, rk._weights])
def test_docstring_examples_run(module):
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0


def test_accuracy_and_top_k_match_numpy(rng):
    z, t = _logits(rng, 50, 7), rng.integers(0, 7, 50)
    assert M.Accuracy()(z, t) == np.mean(z.argmax(-1) == t)
    for k in (1, 2, 3, 7):
        rank = (z > z[np.arange(50), t][:, None]).sum(-1)
        assert M.TopKAccuracy(k)(z, t) == np.mean(rank < k)
    assert M.TopKAccuracy(7)(z, t) == 1.0
    assert M.get("top3_accuracy").k == 3 and M.get("top_k_accuracy").k == 5
    assert M.accuracy(z, t) == M.Accuracy()(z, t)  # the function train re-exports
    assert rk.train.accuracy is M.accuracy


def test_perplexity_and_bits_per_char_are_exact_over_batches(rng):
    z, t = _logits(rng, 6, 9, 11), rng.integers(0, 11, (6, 9))
    mask = rng.random((6, 9)) < 0.7
    want = _nll(z, t)[mask].mean()
    ppl, bpc = M.Perplexity(), M.BitsPerChar()
    for a, b in ((0, 2), (2, 3), (3, 6)):  # uneven batches: not a mean of means
        ppl.update(z[a:b], t[a:b], mask[a:b])
        bpc.update(z[a:b], t[a:b], mask[a:b])
    np.testing.assert_allclose(ppl.result(), math.exp(want), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(bpc.result(), want / math.log(2), rtol=RTOL, atol=ATOL)
    # the same number as the loss: cross_entropy over the masked tokens
    loss, _ = rk.losses.cross_entropy(z, t, mask=mask)
    np.testing.assert_allclose(math.log(ppl.result()), loss, rtol=RTOL, atol=ATOL)


def test_ignore_index_and_float_weights(rng):
    z, t = _logits(rng, 20, 4), rng.integers(0, 4, 20)
    t[::3] = -100
    keep = t != -100
    assert M.Accuracy()(z, t) == np.mean(z[keep].argmax(-1) == t[keep])
    w = rng.random(20)
    got = M.Accuracy(ignore_index=None)(z, np.where(keep, t, 0), w)
    want = np.sum(w * (z.argmax(-1) == np.where(keep, t, 0))) / w.sum()
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_binary_accuracy_on_float_targets():
    out = np.array([2.0, -1.0, 0.5, -3.0])
    y = np.array([1.0, 1.0, 0.0, 0.0])
    assert M.Accuracy()(out, y) == 0.5
    assert M.F1(average=None)(out, y) == {"f1_0": 0.5, "f1_1": 0.5}


def test_regression_metrics(rng):
    x, y = rng.standard_normal((8, 5, 2)), rng.standard_normal((8, 5, 2))
    mask = rng.random((8, 5)) < 0.6
    r = (x - y)[mask]
    m = {k: M.get(k) for k in ("mae", "mse", "rmse")}
    for a in range(0, 8, 3):
        for v in m.values():
            v.update(x[a : a + 3], y[a : a + 3], mask[a : a + 3])
    np.testing.assert_allclose(m["mae"].result(), np.abs(r).mean(), rtol=RTOL)
    np.testing.assert_allclose(m["mse"].result(), (r**2).mean(), rtol=RTOL)
    np.testing.assert_allclose(m["rmse"].result(), np.sqrt((r**2).mean()), rtol=RTOL)
    with pytest.raises(ValueError, match="target must have the output's shape"):
        M.MAE()(x, y[:, :2])


def test_precision_recall_f1_match_the_confusion_matrix(rng):
    C = 4
    z, t = _logits(rng, 300, C), rng.integers(0, C, 300)
    pred = z.argmax(-1)
    tp = np.array([np.sum((pred == c) & (t == c)) for c in range(C)], float)
    fp = np.array([np.sum((pred == c) & (t != c)) for c in range(C)], float)
    fn = np.array([np.sum((pred != c) & (t == c)) for c in range(C)], float)
    p, r = tp / (tp + fp), tp / (tp + fn)
    f = 2 * p * r / (p + r)
    ms = [M.Precision(None), M.Recall(None), M.F1(None), M.F1(), M.F1("micro")]
    for a in range(0, 300, 64):
        for m in ms:
            m.update(z[a : a + 64], t[a : a + 64])
    per = [m.result() for m in ms[:3]]
    for kind, want, got in zip(("precision", "recall", "f1"), (p, r, f), per):
        assert sorted(got) == [f"{kind}_{c}" for c in range(C)]
        np.testing.assert_allclose([got[f"{kind}_{c}"] for c in range(C)], want)
    np.testing.assert_allclose(ms[3].result(), f.mean())
    np.testing.assert_allclose(ms[4].result(), tp.sum() / 300)  # micro F1 = accuracy
    assert ms[4].name == "f1_micro"


def test_callables_dicts_and_errors(rng):
    def max_logit(out, y, mask):
        return float(np.max(out))

    got = M.get_all(["accuracy", max_logit, M.TopKAccuracy(2)])
    assert list(got) == ["accuracy", "max_logit", "top2_accuracy"]
    assert list(M.get_all({"peak": max_logit})) == ["peak"]
    with pytest.raises(ValueError, match="unknown metric 'acc'"):
        M.get("acc")
    with pytest.raises(ValueError, match="appears twice"):
        M.get_all(["f1", "f1"])
    with pytest.raises(TypeError, match="must be a list"):
        M.get_all("accuracy")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        M.TopKAccuracy(0)
    with pytest.raises(ValueError, match="average must be one of"):
        M.F1("weighted")
    assert math.isnan(M.F1().result()) and math.isnan(M.Perplexity().result())


def test_evaluate_and_fit_take_every_kind(rng):
    x = rng.integers(1, 12, (96, 8))
    y = rng.integers(0, 12, (96, 8))
    model = rk.Sequential(
        rk.Embedding(12, 6, seed=0), rk.GRU(6, 16, seed=1), rk.Linear(16, 12, seed=2)
    )
    names = ["accuracy", "top3_accuracy", "perplexity", "bpc", "f1"]
    per_class = M.Precision(average=None)
    ev = rk.evaluate(
        model, "cross_entropy", (x, y), batch_size=40, metrics=names + [per_class]
    )
    logits = model.predict(x)
    nll = _nll(logits.astype(np.float64), y).mean()
    np.testing.assert_allclose(ev["perplexity"], math.exp(nll), rtol=1e-5)
    np.testing.assert_allclose(ev["bpc"], nll / math.log(2), rtol=1e-5)
    np.testing.assert_allclose(ev["loss"], nll, rtol=1e-5)
    assert ev["accuracy"] == M.Accuracy()(logits, y)
    assert {f"precision_{c}" for c in range(12)} <= set(ev)
    hist = rk.fit(
        model,
        "cross_entropy",
        rk.Adam(model, lr=1e-2),
        (x[:64], y[:64]),
        val_data=(x[64:], y[64:]),
        epochs=2,
        progress=False,
        metrics={"ppl": "perplexity", "top": M.TopKAccuracy(3)},
    )
    assert len(hist["val_ppl"]) == len(hist["val_top"]) == 2
    np.testing.assert_allclose(
        hist["val_ppl"][-1], math.exp(hist["val_loss"][-1]), rtol=1e-6
    )
