"""rk.fit, the one training loop: state carried between chunks (equal to one long
sequence), the time budget, evaluation intervals, resuming at a position, the
callback protocol, one way of counting epochs, data sources, and the deprecated
names of CharLM.fit."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

import rnnkit as rk
from conftest import named_tol
from rnnkit import text as tx
from rnnkit import train as tr

V, E, H = 7, 5, 6


def char_model(cell=rk.LSTM, seed=0) -> rk.Sequential:
    return rk.Sequential(
        rk.Embedding(V, E, dtype="float64", seed=seed),
        cell(E, H, dtype="float64", seed=seed + 1),
        rk.Linear(H, V, dtype="float64", seed=seed + 2),
    )


def ids(n=121, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, size=n)


def recording_loss(outs: list):
    def loss(out, y, mask=None):
        outs.append(out.copy())
        return rk.losses.cross_entropy(out, y, mask=mask)

    return loss


class Fixed:
    """A DataSource of given batches (all of them every epoch)."""

    unit = "rows"

    def __init__(self, batches):
        self._b = batches

    def __len__(self):
        return len(self._b)

    def batches(self, epoch, start=0):
        yield from self._b[start:]


# ------------------------------------------------------------ carried state
@pytest.mark.parametrize("cell", [rk.LSTM, rk.GRU, rk.RNN])
def test_carried_state_equals_one_long_sequence(cell):
    """With a frozen model, the chunks of an epoch read with the state carried give
    the outputs of one forward over each whole stream; the next epoch starts
    again from zeros."""
    model = char_model(cell)
    source = tx.BPTTBatches(ids(), batch_size=3, seq_len=7)  # 40 per stream: 6 chunks
    outs: list = []
    hist = rk.fit(
        model,
        recording_loss(outs),
        rk.SGD(model, lr=0.0),
        source,
        epochs=2,
        progress=False,
    )
    assert hist.steps == 2 * len(source) == len(outs)
    whole = model.forward(source.x, train=False)  # (B, n, V), zero state
    n = len(source)
    rtol, atol = named_tol("reordered_float64")
    for epoch in (outs[:n], outs[n:]):
        np.testing.assert_allclose(
            np.concatenate(epoch, axis=1), whole, rtol=rtol, atol=atol
        )


def test_carry_per_row_restarts_the_other_rows():
    model = char_model()
    x = ids(24).reshape(2, 12)
    y = np.roll(x, -1, axis=1)
    first = tr.Batch((x[:, :6],), y[:, :6])
    second = tr.Batch((x[:, 6:],), y[:, 6:], carry=np.array([True, False]))
    outs: list = []
    rk.fit(
        model,
        recording_loss(outs),
        rk.SGD(model, lr=0.0),
        Fixed([first, second]),
        progress=False,
    )
    whole = model.forward(x, train=False)
    rtol, atol = named_tol("reordered_float64")
    continued = outs[1][0]
    np.testing.assert_allclose(continued, whole[0, 6:], rtol=rtol, atol=atol)
    fresh = model.forward(x[1:, 6:], train=False)  # row 1 from a zero state
    np.testing.assert_allclose(outs[1][1], fresh[0], rtol=rtol, atol=atol)


def test_carry_needs_a_fixed_batch_size():
    model = char_model()
    x = ids(24).reshape(4, 6)
    batches = [tr.Batch((x,), x), tr.Batch((x[:2],), x[:2], carry=True)]
    with pytest.raises(ValueError, match="keep the batch size"):
        rk.fit(model, "cross_entropy", rk.SGD(model), Fixed(batches), progress=False)


def test_bptt_batches_is_a_data_source():
    b = tx.BPTTBatches(np.arange(41), batch_size=2, seq_len=7)
    assert isinstance(b, tr.DataSource) and b.unit == "chars"
    got = list(b.batches(epoch=3, start=1))
    assert len(got) == len(b) - 1 and all(g.carry is True for g in got)
    assert next(b.batches(0)).carry is False
    np.testing.assert_array_equal(got[0].xs[0], b[1][0])
    assert got[0].items == b[1][0].size


# ------------------------------------------------------------------ budgets
class FakeClock:
    """time.perf_counter advancing 0.5 s per call: a step (two calls) takes 0.5 s."""

    def __init__(self):
        self.t = 0.0

    def perf_counter(self):
        self.t += 0.5
        return self.t


def test_time_budget_counts_training_seconds(monkeypatch):
    monkeypatch.setattr(tr, "time", FakeClock())
    model = char_model()
    source = tx.BPTTBatches(ids(301), batch_size=2, seq_len=5)  # 30 chunks
    hist = rk.fit(
        model, "cross_entropy", rk.SGD(model), source, max_time=3.0, progress=False
    )
    assert hist.stop_reason == "max_time" and hist.steps == 6  # no epochs limit
    assert hist.position.seconds == pytest.approx(3.0)
    assert hist["time"] == [pytest.approx(3.0)] and hist["step"] == [6]


def test_max_time_with_real_time_and_epochs_default():
    model = char_model()
    source = tx.BPTTBatches(ids(), batch_size=2, seq_len=5)
    hist = rk.fit(
        model, "cross_entropy", rk.SGD(model), source, max_time=1e-9, progress=False
    )
    assert hist.stop_reason == "max_time" and hist.steps == 1
    hist = rk.fit(model, "cross_entropy", rk.SGD(model), source, progress=False)
    assert hist.stop_reason == "epochs" and hist.position.epoch == 1  # default: one


# --------------------------------------------------------------- intervals
def test_eval_every_steps_and_epoch_ends():
    model = char_model()
    source = tx.BPTTBatches(ids(), batch_size=3, seq_len=4)  # 10 chunks
    assert len(source) == 10
    seen: list = []
    hist = rk.fit(
        model,
        "cross_entropy",
        rk.SGD(model),
        source,
        epochs=2,
        eval_every_steps=3,
        progress=False,
        callback=lambda e, logs: seen.append((e, logs["event"], logs["step"])),
    )
    assert seen == [
        (0, "interval", 3),
        (0, "interval", 6),
        (0, "interval", 9),
        (0, "epoch", 10),
        (1, "interval", 12),
        (1, "interval", 15),
        (1, "interval", 18),
        (1, "epoch", 20),
    ]
    assert hist["step"] == [s for _, _, s in seen]
    np.testing.assert_allclose(hist["epoch"], [0.3, 0.6, 0.9, 1, 1.2, 1.5, 1.8, 2])


def test_eval_every_seconds(monkeypatch):
    monkeypatch.setattr(tr, "time", FakeClock())
    model = char_model()
    source = tx.BPTTBatches(ids(), batch_size=3, seq_len=4)  # 10 chunks, 0.5 s each
    hist = rk.fit(
        model,
        "cross_entropy",
        rk.SGD(model),
        source,
        val_data=lambda m: {"loss": 1.0},
        eval_every=2.0,
        max_steps=13,
        progress=False,
    )
    assert hist["step"] == [4, 8, 10, 12, 13]  # 2 s, 4 s, the epoch, 6 s, the end
    assert hist["time"] == pytest.approx([2.0, 4.0, 5.0, 6.0, 6.5])
    assert hist["val_loss"] == [1.0] * 5 and hist.stop_reason == "max_steps"


# ------------------------------------------------------------------ resume
def parity(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, size=(n, 5))
    return x, (x == 1).sum(1) % 2


def classifier():
    return rk.Sequential(
        rk.Embedding(3, 4, seed=0),
        rk.GRU(4, 8, seed=1),
        rk.Linear(8, 2, seed=2),
        output="last",
    )


@pytest.mark.parametrize("split", [5, 12, 13])  # mid-epoch, at an epoch end, after
def test_resume_continues_exactly_with_shuffled_arrays(split):
    data = parity()  # 12 batches of 8 per epoch
    a, b = classifier(), classifier()
    opt_a, opt_b = rk.Adam(a, lr=0.01), rk.Adam(b, lr=0.01)
    kw = {"batch_size": 8, "progress": False, "seed": 3}
    full = rk.fit(a, "cross_entropy", opt_a, data, epochs=3, **kw)
    first = rk.fit(b, "cross_entropy", opt_b, data, epochs=3, max_steps=split, **kw)
    assert first.position.steps == split and first.stop_reason == "max_steps"
    assert (first.position.epoch, first.position.batch) == divmod(split, 12)
    rest = rk.fit(b, "cross_entropy", opt_b, data, epochs=3, start=first.position, **kw)
    np.testing.assert_array_equal(a._flat_params, b._flat_params)
    end = (rest.position.steps, rest.position.epoch, rest.position.items)
    assert end == (full.position.steps, full.position.epoch, full.position.items)
    assert end == (36, 3, 3 * 96)
    assert rest.steps == 36 - split and rest.stop_reason == "epochs"


def test_resume_of_a_stateful_source_restarts_the_state():
    """Resumed mid-epoch, the chunks continue where they stopped, from zeros."""
    source = tx.BPTTBatches(ids(), batch_size=3, seq_len=7)
    model = char_model()
    outs: list = []
    opt = rk.SGD(model, lr=0.0)
    first = rk.fit(
        model, recording_loss(outs), opt, source, max_steps=2, progress=False
    )
    rest = rk.fit(
        model,
        recording_loss(outs),
        opt,
        source,
        start=first.position,
        progress=False,
    )
    assert rest.position.epoch == 1 and rest.steps == len(source) - 2
    x = source.x[:, 14:]  # chunk 2 on, read from a zero state
    rtol, atol = named_tol("reordered_float64")
    np.testing.assert_allclose(
        np.concatenate(outs[2:], axis=1),
        model.forward(x, train=False),
        rtol=rtol,
        atol=atol,
    )


def test_position_round_trip_and_old_keys():
    p = tr.TrainPosition(epoch=2, batch=3, steps=40, items=900, seconds=1.5)
    from dataclasses import asdict

    assert tr.TrainPosition.from_dict(asdict(p)) == p
    old = {"epoch": 2, "chunk": 3, "steps": 40, "chars": 900, "seconds": 1.5}
    assert tr.TrainPosition.from_dict(old) == p  # checkpoints written before
    assert tr.TrainPosition.from_dict({"epoch": -1, "steps": "x"}) == tr.TrainPosition()
    assert tx.TrainPosition is tr.TrainPosition and tx.TextHistory is tr.History


# ---------------------------------------------------------------- callbacks
def test_callback_protocol_and_epoch_counting():
    model = classifier()
    stream = io.StringIO()
    calls: list = []

    def cb(epoch, logs):
        calls.append((epoch, logs["event"], logs["epoch"], logs["position"]))
        return 1  # truthy but not True: does not stop

    hist = rk.fit(
        model,
        "cross_entropy",
        rk.SGD(model, lr=0.01),
        parity(),
        val_data=parity(32, 1),
        epochs=2,
        batch_size=16,
        progress=stream,
        callback=cb,
    )
    assert [c[:3] for c in calls] == [(0, "epoch", 1.0), (1, "epoch", 2.0)]
    assert calls[0][3].epoch == 1 and calls[1][3].epoch == 2  # copies, not views
    assert hist["epoch"] == [1.0, 2.0] and hist.position.epoch == 2
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("epoch 1/2 step 6") and lines[1].startswith("epoch 2/2")
    assert "val_loss" in lines[0] and "ex/s" in lines[0]
    assert hist.stop_reason == "epochs"
    stop = rk.fit(
        model,
        "cross_entropy",
        rk.SGD(model),
        parity(),
        epochs=5,
        batch_size=16,
        progress=False,
        callback=lambda e, logs: e == 2,
    )
    assert stop.stop_reason == "callback" and stop.position.epoch == 3


def test_should_stop_and_the_history_as_attributes():
    model = char_model()
    source = tx.BPTTBatches(ids(), batch_size=2, seq_len=5)
    n = iter(range(100))
    hist = rk.fit(
        model,
        "cross_entropy",
        rk.SGD(model),
        source,
        epochs=3,
        should_stop=lambda: next(n) == 4,
        progress=False,
    )
    assert hist.stop_reason == "interrupted" and hist.steps == 5
    assert hist.loss == hist["loss"] and hist.chars_per_s[0] > 0
    with pytest.raises(AttributeError, match="no 'val_loss'"):
        _ = hist.val_loss
    d = hist.as_dict()
    assert d["position"]["steps"] == 5 and d["stop_reason"] == "interrupted"


# --------------------------------------------------------------- CharLM.fit
def small_lm(seed=0):
    text = "the cat sat on the mat. " * 12
    vocab = tx.Vocab.from_text(text)
    lm = tx.CharLM(vocab, hidden_size=12, embedding_dim=4, seed=seed)
    return lm, vocab.encode(text)


def test_charlm_fit_is_rk_fit_on_bptt_batches():
    lm, data = small_lm(1)
    ref, _ = small_lm(1)
    h = lm.fit(data, epochs=2, batch_size=4, seq_len=9, lr=0.01, progress=False)
    g = rk.fit(
        ref.model,
        "cross_entropy",
        rk.Adam(ref.model, lr=0.01),
        tx.BPTTBatches(data, 4, 9),
        epochs=2,
        clip_norm=5.0,
        progress=False,
    )
    np.testing.assert_array_equal(lm.model._flat_params, ref.model._flat_params)
    np.testing.assert_allclose(h["loss"], g["loss"])
    np.testing.assert_allclose(h["bpc"], np.array(h["loss"]) / math.log(2))
    assert h.position.steps == g.position.steps == 2 * len(tx.BPTTBatches(data, 4, 9))
    assert type(h) is tr.History


def test_deprecated_names_warn_and_still_work():
    lm, data = small_lm()
    with pytest.warns(
        DeprecationWarning, match=r"time_budget=\) is deprecated; use max_time"
    ):
        h = lm.fit(data, time_budget=1e-9, batch_size=2, seq_len=8, progress=False)
    assert h.stop_reason == "time_budget" and h.position.steps == 1
    seen: list = []
    with pytest.warns(DeprecationWarning, match=r"callback\(epoch, logs\)"):
        h = lm.fit(
            data,
            epochs=3,
            batch_size=2,
            seq_len=8,
            progress=False,
            callback=lambda logs: seen.append(logs["event"]) or "stop",
        )
    assert seen == ["epoch"] and h.stop_reason == "callback"
    with pytest.warns(DeprecationWarning, match="use batch"):
        p = tx.TrainPosition(chunk=2)
    assert p.batch == 2
    with pytest.warns(DeprecationWarning, match="use items"):
        assert tx.TrainPosition(items=7).chars == 7
    with pytest.raises(TypeError, match="not both"):
        lm.fit(data, time_budget=1, max_time=1, progress=False)
    with pytest.raises(TypeError, match="unexpected keyword"):
        lm.fit(data, no_such_option=1, progress=False)
