"""rnnkit.callbacks: ModelCheckpoint (best and last, atomic, resumable) and
ReduceLROnPlateau, through fit's one callback protocol."""

from __future__ import annotations

import os

import numpy as np
import pytest

import rnnkit as rk


def _task(rng, n=96):
    x = rng.standard_normal((n, 6, 3))
    y = (x[:, :, 0].sum(axis=1) > 0).astype(np.int64)
    model = rk.Sequential(rk.GRU(3, 8, seed=0), rk.Linear(8, 2, seed=1), output="last")
    return model, x, y


def test_checkpoint_best_and_last(rng, tmp_path):
    model, x, y = _task(rng)
    ckpt = rk.ModelCheckpoint(best=tmp_path / "best.rk", last=tmp_path / "last.rk")
    hist = rk.fit(
        model,
        "cross_entropy",
        rk.Adam(model, lr=3e-2),
        (x, y),
        validation_split=0.25,
        epochs=6,
        progress=False,
        callback=ckpt,
    )
    val = hist["val_loss"][:6]  # one per epoch (the "end" evaluation adds none)
    assert ckpt.best_epoch == int(np.argmin(val))
    assert ckpt.best_value == min(val)
    best, last = rk.load(tmp_path / "best.rk"), rk.load(tmp_path / "last.rk")
    assert best.meta["checkpoint"]["epoch"] == ckpt.best_epoch
    assert last.meta["checkpoint"]["epoch"] == 5
    assert last.meta["checkpoint"]["position"]["epoch"] == 6
    for k, v in model.state_dict().items():  # last = the trained model
        np.testing.assert_array_equal(last.state_dict()[k], v)
    assert last.optimizer.step_count == model.optimizer.step_count
    # the best checkpoint scores what fit logged for its epoch
    xv, yv = x[72:], y[72:]
    got = rk.evaluate(best, "cross_entropy", (xv, yv))["loss"]
    np.testing.assert_allclose(got, ckpt.best_value, rtol=1e-6)
    # written atomically: nothing else left in the directory
    assert sorted(os.listdir(tmp_path)) == ["best.rk", "last.rk"]


def test_checkpoint_monitor_max_and_errors(rng, tmp_path):
    model, x, y = _task(rng)
    ckpt = rk.ModelCheckpoint(best=tmp_path / "b.rk", monitor="val_accuracy")
    hist = rk.fit(
        model,
        "cross_entropy",
        rk.Adam(model, lr=3e-2),
        (x, y),
        validation_split=0.25,
        epochs=4,
        progress=False,
        callback=ckpt,
        metrics=["accuracy"],
    )
    acc = hist["val_accuracy"][:4]
    assert ckpt.best_value == max(acc)  # accuracy is maximised
    assert ckpt.best_epoch == int(np.argmax(acc))  # first of equal maxima
    with pytest.raises(ValueError, match="needs a path"):
        rk.ModelCheckpoint()
    with pytest.raises(ValueError, match="monitors 'val_loss'"):
        rk.fit(
            model,
            "cross_entropy",
            rk.Adam(model),
            (x, y),
            progress=False,
            callback=rk.ModelCheckpoint(best=tmp_path / "c.rk"),
        )
    with pytest.raises(ValueError, match="events must be among"):
        rk.ModelCheckpoint(last="x.rk", events=["batch"])


def test_checkpoint_of_a_char_model_loads_as_one(tmp_path):
    text = "abcabcabd " * 40
    lm = rk.CharLM(rk.Vocab.from_text(text), hidden_size=8, embedding_dim=4, seed=0)
    ids = lm.vocab.encode(text)
    ckpt = rk.ModelCheckpoint(last=tmp_path / "lm.rk", monitor="loss")
    lm.fit(ids, epochs=1, seq_len=10, batch_size=4, progress=False, callback=ckpt)
    back = rk.load(tmp_path / "lm.rk")
    assert isinstance(back, rk.CharLM)
    assert back.generate_text("ab", 20, seed=1) == lm.generate_text("ab", 20, seed=1)


def test_reduce_lr_on_plateau_in_fit(rng):
    model, x, y = _task(rng)
    opt = rk.SGD(model, lr=0.1, schedule=rk.StepDecay(1000, gamma=0.5))
    plateau = rk.ReduceLROnPlateau(factor=0.5, patience=2, min_lr=0.02)
    rk.fit(
        model,
        "cross_entropy",
        opt,
        (x, y),
        epochs=9,
        batch_size=96,
        val_data=lambda m: {"loss": 1.0},  # never improves after the first
        progress=False,
        callback=[plateau],
    )
    # bad evaluations 2-3, 4-5, 6-7 -> three halvings, floored at min_lr
    assert [lr for _, lr in plateau.reductions] == [0.05, 0.025, 0.02]
    assert opt.lr == 0.02
    assert [s for s, _ in plateau.reductions] == [3, 5, 7]
    assert opt.get_lr() == 0.02 * opt.schedule(opt.step_count)  # composes


def test_reduce_lr_cooldown_and_improvement():
    opt = rk.SGD([(np.zeros(1), np.zeros(1))], lr=1.0)
    r = rk.ReduceLROnPlateau(
        monitor="val_accuracy", factor=0.1, patience=1, cooldown=2, optimizer=opt
    )
    for v in [0.5, 0.4, 0.4, 0.4, 0.4, 0.6]:
        r(0, {"val_accuracy": v, "event": "epoch", "step": 0})
    # 0.4 (bad) -> 0.1; cooldown skips two; 0.4 (bad) -> 0.01; 0.6 improves
    assert [lr for _, lr in r.reductions] == pytest.approx([0.1, 0.01])
    r(0, {"val_accuracy": 0.6, "event": "interval"})  # not an epoch: ignored
    with pytest.raises(ValueError, match="factor must be in"):
        rk.ReduceLROnPlateau(factor=1.5)


def test_list_of_callbacks_stops_when_any_does(rng):
    model, x, y = _task(rng)
    seen = []

    def record(epoch, logs):
        seen.append(epoch)

    def stop_at_2(epoch, logs):
        return epoch == 1

    hist = rk.fit(
        model,
        "cross_entropy",
        rk.Adam(model),
        (x, y),
        epochs=5,
        progress=False,
        callback=[record, stop_at_2],
    )
    assert hist.stop_reason == "callback" and seen == [0, 1]
    with pytest.raises(TypeError, match=r"callback\[1\] must be callable"):
        rk.fit(model, "cross_entropy", rk.Adam(model), (x, y), callback=[record, 3])
