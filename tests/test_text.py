"""rnnkit.text: reading files, the vocabulary, truncated-BPTT batches, CharLM's
training loop (against a hand-written one), evaluation, sampling and generation
(against the sequence path, and that it never re-runs the prefix)."""

from __future__ import annotations

import codecs
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rnnkit as rk
from conftest import named_tol
from rnnkit import text as tx

WARPEACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "warpeace.txt"
SMALL = "the cat sat on the mat. the dog sat on the log.\n" * 6


def small_lm(
    cell: str = "lstm",
    dtype: str = "float32",
    layers: int = 1,
    seed: int = 0,
    text: str = SMALL,
    **kw,
) -> tx.CharLM:
    return tx.CharLM(
        tx.Vocab.from_text(text),
        cell=cell,
        hidden_size=24,
        num_layers=layers,
        embedding_dim=8,
        dtype=dtype,
        seed=seed,
        **kw,
    )


# ------------------------------------------------------------------- reading
@pytest.mark.parametrize(
    "data",
    [
        b"one\ntwo\n",
        b"one\r\ntwo\r\n",
        b"one\rtwo\r",
        b"one\r\ntwo\r",
        codecs.BOM_UTF8 + b"one\r\ntwo\n",
        codecs.BOM_UTF16_LE + "one\r\ntwo\n".encode("utf-16-le"),
        codecs.BOM_UTF16_BE + "one\ntwo\r\n".encode("utf-16-be"),
        codecs.BOM_UTF32_LE + "one\ntwo\n".encode("utf-32-le"),
    ],
    ids=["lf", "crlf", "cr", "mixed", "utf8-bom", "utf16le", "utf16be", "utf32le"],
)
def test_read_text_encodings_and_line_endings(tmp_path, data):
    p = tmp_path / "t.txt"
    p.write_bytes(data)
    assert tx.read_text(p) == "one\ntwo\n"


def test_read_text_utf8_and_cp1252(tmp_path):
    p = tmp_path / "u.txt"
    p.write_bytes("Natasha — «café» 🎉\n".encode())
    assert tx.read_text(p) == "Natasha — «café» 🎉\n"
    p.write_bytes(b"caf\xe9 \x93quoted\x94\r\n")  # Windows-1252, not valid UTF-8
    text, enc = tx.decode_text(p.read_bytes())
    assert (text, enc) == ("café \u201cquoted\u201d\n", "cp1252")
    assert tx.read_text(p, encoding="latin-1") == "caf\xe9 \x93quoted\x94\n"


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        b"PK\x03\x04\x14\x00\x00\x00",
        bytes(range(1, 32)) * 20 + b"\xff\xfe\xfd",  # control bytes, no NUL, not UTF-8
    ],
    ids=["png", "zip", "controls"],
)
def test_read_text_rejects_binary(tmp_path, data):
    p = tmp_path / "b.bin"
    p.write_bytes(data)
    with pytest.raises(tx.TextFileError, match="binary"):
        tx.read_text(p)


def test_read_text_errors(tmp_path):
    p = tmp_path / "x.txt"
    p.write_bytes(b"ok \xff\xfe")
    with pytest.raises(tx.TextFileError, match=r"not valid utf-8 text: byte 3"):
        tx.read_text(p, encoding="utf-8")
    with pytest.raises(ValueError, match="unknown encoding"):
        tx.read_text(p, encoding="no-such-codec")
    with pytest.raises(tx.TextFileError, match="directory"):
        tx.read_text(tmp_path)
    with pytest.raises(FileNotFoundError):
        tx.read_text(tmp_path / "missing.txt")
    p.write_bytes(b"")
    assert tx.read_text(p) == ""


def test_default_corpus_ships_with_the_package():
    path = tx.default_corpus_path()
    assert path.is_file() and path.parent.name == "data"
    assert Path(rk.__file__).parent in path.parents
    text = tx.read_text(path)
    assert 200_000 < len(text) < 1_000_000  # a few hundred KB of real text
    assert "Pierre" in text and "Anna Pavlovna" in text and "\r" not in text
    assert 60 <= len(set(text)) <= 100


# ---------------------------------------------------------------- vocabulary
def test_vocab_sorted_reproducible_round_trip():
    text = "Zebra, apple; Äpfel 🎉 and 'quotes'\n\ttab"
    v = tx.Vocab.from_text(text)
    assert list(v.tokens) == sorted(set(text))
    assert [ord(t) for t in v.tokens] == sorted(ord(t) for t in v.tokens)
    assert tx.Vocab.from_text(text[::-1]) == v  # the order of the text does not matter
    ids = v.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    assert v.decode(ids) == text
    assert v.decode(ids[:38].reshape(2, -1)) == text[:38]
    assert v.index("Z") == list(v.tokens).index("Z") and "Z" in v and "x" not in v
    assert [v.index(c) for c in "apple"] == v.encode("apple").tolist()


def test_vocab_unknown_policies():
    text = "abc abc"
    with pytest.raises(ValueError, match=r"'z' \(U\+007A\).*position 2.*skip"):
        tx.Vocab.from_text(text).encode("abzc")
    skip = tx.Vocab.from_text(text, unknown="skip")
    assert skip.decode(skip.encode("a😀bzc")) == "abc"
    assert skip.missing("a😀bzc") == ["z", "😀"]
    rep = tx.Vocab.from_text(text, unknown="replace")
    assert tx.UNK in rep.tokens and len(rep) == 5
    assert rep.decode(rep.encode("azb")) == "a\ufffdb"
    with pytest.raises(ValueError, match="unknown must be one of"):
        tx.Vocab(["a"], unknown="ignore")


def test_vocab_rejects_bad_tokens_and_ids():
    with pytest.raises(ValueError, match="single character"):
        tx.Vocab(["a", "bc"])
    with pytest.raises(ValueError, match="distinct"):
        tx.Vocab(["a", "b", "a"])
    with pytest.raises(ValueError, match="empty"):
        tx.Vocab.from_text("")
    v = tx.Vocab.from_text("abc")
    with pytest.raises(IndexError, match="outside the vocabulary of size 3"):
        v.decode([0, 3])
    with pytest.raises(TypeError, match="integers"):
        v.decode(np.zeros(2))
    with pytest.raises(TypeError, match="str"):
        v.encode(b"abc")


# ------------------------------------------------------------------ batching
def test_split_train_val_is_a_tail():
    ids = np.arange(100)
    tr, va = tx.split_train_val(ids, 0.1)
    assert tr.tolist() == list(range(90)) and va.tolist() == list(range(90, 100))
    tr, va = tx.split_train_val(ids, 0.0)
    assert len(tr) == 100 and len(va) == 0
    with pytest.raises(ValueError, match="val_fraction"):
        tx.split_train_val(ids, 1.0)
    with pytest.raises(ValueError, match="too short"):
        tx.split_train_val(np.arange(3), 0.5)


@pytest.mark.parametrize(
    "N,B,T", [(101, 4, 7), (1000, 32, 100), (12, 1, 50), (50, 7, 1)]
)
def test_bptt_batches_streams_continue_across_chunks(N, B, T):
    ids = np.arange(N) * 3  # distinct values: positions can be read back
    b = tx.BPTTBatches(ids, B, T)
    n = (N - 1) // B
    assert (
        b.stream_len == n and len(b) == math.ceil(n / T) and b.chars_per_epoch == B * n
    )
    xs = np.concatenate([x for x, _ in b], axis=1)
    ys = np.concatenate([y for _, y in b], axis=1)
    # row r, read chunk after chunk, is one contiguous piece of the text
    assert np.array_equal(xs, ids[: B * n].reshape(B, n))
    assert np.array_equal(ys, ids[1 : B * n + 1].reshape(B, n))
    for x, y in b:
        assert x.shape == y.shape and x.shape[0] == B and 1 <= x.shape[1] <= T
    assert np.array_equal(b[-1][0], list(b)[-1][0])
    with pytest.raises(IndexError):
        b[len(b)]


def test_bptt_batches_errors():
    with pytest.raises(ValueError, match="too few"):
        tx.BPTTBatches(np.arange(4), 4, 10)
    with pytest.raises(ValueError, match="seq_len"):
        tx.BPTTBatches(np.arange(40), 4, 0)
    with pytest.raises(ValueError, match="1-D"):
        tx.BPTTBatches(np.zeros((4, 4), int), 2, 2)


@pytest.mark.parametrize("N,B", [(2, 32), (10, 3), (100, 7), (101, 10)])
def test_eval_layout_scores_every_prediction_once(N, B):
    ids = np.arange(N) + 1000
    x, y, xr, yr = tx.eval_layout(ids, B)
    pairs = list(zip(x.reshape(-1), y.reshape(-1))) + list(zip(xr, yr))
    assert sorted(pairs) == [(ids[i], ids[i + 1]) for i in range(N - 1)]
    if len(xr):  # the leftover continues the last stream
        assert xr[0] == x[-1, -1] + 1


# ------------------------------------------------------------- the model
def _manual_nll(lm: tx.CharLM, ids: np.ndarray) -> float:
    """Mean next-character loss from one forward over the whole text (B = 1)."""
    logits = lm.model.forward(ids[None, :-1], train=False)[0].astype(np.float64)
    m = logits.max(1, keepdims=True)
    lse = np.log(np.exp(logits - m).sum(1)) + m[:, 0]
    return float(np.mean(lse - logits[np.arange(len(ids) - 1), ids[1:]]))


@pytest.mark.parametrize("B,T", [(1, 5), (1, 1000), (3, 4), (7, 9)])
def test_evaluate_carries_state_and_covers_the_text(B, T):
    lm = small_lm(dtype="float64")
    ids = lm.vocab.encode(SMALL[:101])
    res = lm.evaluate(ids, batch_size=B, seq_len=T)
    x, y, xr, yr = tx.eval_layout(ids, B)
    # by hand: each stream from a zero state in one piece; the rest after the last
    total = 0.0
    for b in range(x.shape[0]):
        last = b == x.shape[0] - 1 and len(xr)
        seq = np.concatenate([x[b], xr, yr[-1:]] if last else [x[b], y[b, -1:]])
        total += _manual_nll(lm, seq) * (len(seq) - 1)
    assert res["chars"] == len(ids) - 1
    rtol, atol = named_tol("lm_loss_float64")
    assert res["loss"] == pytest.approx(total / (len(ids) - 1), rel=rtol, abs=atol)
    assert res["bpc"] == pytest.approx(res["loss"] / math.log(2))
    if B == 1:
        assert res["loss"] == pytest.approx(_manual_nll(lm, ids), rel=rtol, abs=atol)


def test_fit_matches_a_hand_written_stateful_loop():
    """Two chunks per epoch, state carried from the first to the second, reset at the
    epoch; Adam, clipping; the same parameters bit for bit."""
    ids = tx.Vocab.from_text(SMALL).encode(SMALL)[:81]  # 80 pairs: 4 streams x 20
    a, b = small_lm(seed=3), small_lm(seed=3)
    hist = a.fit(
        ids, epochs=2, batch_size=4, seq_len=10, lr=0.01, clip_norm=0.5, progress=False
    )
    assert (
        hist.position.steps == 4
        and hist.position.epoch == 2
        and hist.stop_reason == "epochs"
    )

    model = b.model
    opt = rk.Adam(model, lr=0.01)
    batches = tx.BPTTBatches(ids, 4, 10)
    for _ in range(2):
        state = None
        for x, y in batches:
            model.zero_grad()
            _, d = rk.losses.cross_entropy(model.forward(x, state=state), y)
            model.backward(d)
            rk.clip_grad_norm(model, 0.5)
            opt.step()
            state = model.final_state
    np.testing.assert_array_equal(a.model._flat_params, b.model._flat_params)


def test_fit_learns_and_reports_nats_and_bits():
    lm = small_lm(seed=1)
    ids = lm.vocab.encode(SMALL)
    tr, va = tx.split_train_val(ids, 0.2)
    before = lm.evaluate(va)["loss"]
    logs = []
    hist = lm.fit(
        tr,
        val_data=va,
        epochs=40,
        batch_size=4,
        seq_len=16,
        lr=0.02,
        progress=False,
        callback=logs.append,
    )
    assert hist.val_loss[-1] < 0.5 * before
    assert len(hist.time) == len(hist.val_loss) == 40 == len(logs)
    assert all(e["event"] == "epoch" for e in logs)
    np.testing.assert_allclose(hist.bpc, np.array(hist.loss) / math.log(2))
    np.testing.assert_allclose(hist.val_bpc, np.array(hist.val_loss) / math.log(2))
    assert hist.time == sorted(hist.time) and all(r > 0 for r in hist.chars_per_s)
    assert logs[-1]["position"].epoch == 40 and lm.model.optimizer is not None


def test_fit_stops_on_budget_steps_flag_and_callback(capsys):
    lm = small_lm()
    ids = lm.vocab.encode(SMALL)
    h = lm.fit(ids, max_steps=3, batch_size=2, seq_len=8, progress=False)
    assert h.stop_reason == "max_steps" and h.position.steps == 3 and len(h.loss) == 1
    h = lm.fit(ids, time_budget=1e-9, batch_size=2, seq_len=8, progress=False)
    assert h.stop_reason == "time_budget" and h.position.steps == 1
    calls = []
    h = lm.fit(
        ids,
        epochs=5,
        batch_size=2,
        seq_len=8,
        progress=False,
        should_stop=lambda: len(calls) or calls.append(1) or False,
    )
    assert h.stop_reason == "interrupted" and h.position.steps == 2
    h = lm.fit(
        ids,
        epochs=5,
        batch_size=2,
        seq_len=8,
        progress=False,
        callback=lambda logs: True,
    )
    assert h.stop_reason == "callback" and h.position.epoch == 1
    # resuming: counters continue, the chunk position is kept
    h2 = lm.fit(
        ids,
        max_steps=2,
        batch_size=2,
        seq_len=8,
        progress=False,
        start=tx.TrainPosition(epoch=1, chunk=3, steps=10, chars=5, seconds=1.0),
    )
    assert (h2.position.epoch, h2.position.chunk, h2.position.steps) == (1, 5, 12)
    assert h2.position.chars == 5 + 2 * 16 and h2.position.seconds > 1.0
    lm.fit(ids, max_steps=1, batch_size=2, seq_len=8, progress=True)
    assert "bpc" in capsys.readouterr().err


def test_fit_stops_on_a_non_finite_loss():
    lm = small_lm()
    lm.model.layers[-1].params["bias"][0] = np.inf
    before = lm.model._flat_params.copy()
    h = lm.fit(
        lm.vocab.encode(SMALL), epochs=1, batch_size=2, seq_len=8, progress=False
    )
    assert h.stop_reason == "non-finite loss" and h.position.steps == 0
    np.testing.assert_array_equal(before, lm.model._flat_params)


# ------------------------------------------------------------------ sampling
def test_sampler_matches_the_softmax():
    z = np.array([1.0, 0.0, -1.0, 2.0, 0.5])
    rng = np.random.default_rng(0)
    n = 20_000
    rtol, atol = named_tol("sample_freq_20k")
    for temp in (1.0, 0.5):
        s = tx.Sampler(temp, rng=rng)
        counts = np.bincount([s(z) for _ in range(n)], minlength=5) / n
        p = np.exp(z / temp) / np.exp(z / temp).sum()
        np.testing.assert_allclose(counts, p, rtol=rtol, atol=atol)


def test_sampler_truncation():
    rng = np.random.default_rng(1)
    z = np.log(np.array([0.05, 0.5, 0.15, 0.3]))
    n = 6000
    rtol, atol = named_tol("sample_freq_6k")
    k2, p7, both = (
        tx.Sampler(1.0, top_k=2, rng=rng),
        tx.Sampler(1.0, top_p=0.7, rng=rng),
        tx.Sampler(1.0, top_k=3, top_p=0.5, rng=rng),
    )
    for s in (k2, p7):  # {0.5, 0.3} renormalised
        freq = np.bincount([s(z) for _ in range(n)], minlength=4) / n
        want = [0, 0.5 / 0.8, 0, 0.3 / 0.8]
        np.testing.assert_allclose(freq, want, rtol=rtol, atol=atol)
    assert {both(z) for _ in range(200)} == {1}
    for kw in ({"temperature": 0}, {"top_k": 1}, {"top_p": 1e-6}):
        assert tx.sample_logits(z, rng, **kw) == 1


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"temperature": -1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"length": -1}, "length"),
    ],
)
def test_generate_rejects_bad_arguments(kw, msg):
    lm = small_lm()
    with pytest.raises(ValueError, match=msg):
        lm.generate("the", **{"length": 5, **kw})


# ---------------------------------------------------------------- generation
@pytest.mark.parametrize(
    "cell,layers", [("lstm", 1), ("lstm", 2), ("gru", 2), ("rnn", 1)]
)
def test_greedy_generation_equals_the_sequence_path(cell, layers):
    """Each greedy character is the argmax of a full forward over prime + text so far:
    the single-step path with the carried state computes the same model."""
    lm = small_lm(cell, "float64", layers, seed=5)
    lm.fit(lm.vocab.encode(SMALL), epochs=3, batch_size=4, seq_len=16, progress=False)
    prime = "the d"
    out = lm.generate_text(prime, 40, greedy=True)
    assert len(out) == 40
    text = prime
    for ch in out:
        logits = lm.model.forward(lm.vocab.encode(text)[None], train=False)[0, -1]
        assert lm.vocab.tokens[int(np.argmax(logits))] == ch
        text += ch


def test_generation_steps_once_per_character_and_never_reruns_the_prefix(monkeypatch):
    lm = small_lm()
    layer = lm.recurrent
    calls = {"forward": [], "step": 0}
    orig_forward = type(layer).forward

    def forward(self, x, *a, **k):
        calls["forward"].append(np.shape(x))
        return orig_forward(self, x, *a, **k)

    monkeypatch.setattr(type(layer), "forward", forward)
    orig_stepper = type(layer).stepper

    class Counting:
        def __init__(self, st):
            self.st = st

        def step(self, x):
            calls["step"] += 1
            return self.st.step(x)

        def __getattr__(self, name):
            return getattr(self.st, name)

    monkeypatch.setattr(
        type(layer),
        "stepper",
        lambda self, *a, **k: Counting(orig_stepper(self, *a, **k)),
    )
    it = lm.generate("the cat", 30, temperature=0.7, seed=0)
    first = next(it)  # streaming: one character at a time
    assert isinstance(first, str) and len(first) == 1
    rest = "".join(it)
    assert len(rest) == 29
    assert calls["forward"] == [(7, 1, 8)]  # the prime, once, time-major (T, B, E)
    assert calls["step"] == 29


def test_generation_is_reproducible_by_seed():
    lm = small_lm(seed=2)
    a = lm.generate_text("the ", 60, temperature=1.0, seed=7)
    assert a == lm.generate_text("the ", 60, temperature=1.0, seed=7)
    assert a == "".join(itertools.islice(lm.generate("the ", 60, seed=7), 60))
    assert a != lm.generate_text("the ", 60, temperature=1.0, seed=8)
    g = lm.generate_text("the ", 30, greedy=True, seed=1)
    assert g == lm.generate_text("the ", 30, temperature=0, seed=2)
    assert g == lm.generate_text("the ", 30, top_k=1, seed=3)
    assert lm.generate_text("the ", 0) == ""
    assert len(lm.generate_text("", 10, seed=0)) == 10  # no prime: after a newline


def test_generation_prime_outside_the_vocabulary():
    lm = small_lm()
    with pytest.raises(ValueError, match=r"'Q' \(U\+0051\)"):
        lm.generate("Quite", 5)
    lm.vocab.unknown = "skip"
    assert len(lm.generate_text("Quite", 5, seed=0)) == 5


def test_save_load_round_trip(tmp_path):
    lm = small_lm(cell="gru", layers=2, seed=4, text=SMALL + "!")
    lm.fit(lm.vocab.encode(SMALL), max_steps=3, batch_size=2, seq_len=8, progress=False)
    lm.save(tmp_path / "m.rk", train={"note": "hello"})
    back = tx.CharLM.load(tmp_path / "m.rk")
    assert back.vocab == lm.vocab and back.config == lm.config
    assert back.model.meta["train"] == {"note": "hello"}
    assert back.model.optimizer is not None and back.model.optimizer.step_count == 3
    assert back.generate_text("the", 50, seed=3) == lm.generate_text("the", 50, seed=3)
    plain = rk.load(tmp_path / "m.rk")  # an ordinary checkpoint, loaded as a CharLM
    assert isinstance(plain, tx.CharLM)
    assert plain.model.vocab["chars"] == list(lm.vocab.tokens)
    rep = tx.CharLM(
        tx.Vocab.from_text("ab", unknown="replace"), hidden_size=4, embedding_dim=2
    )
    rep.save(tmp_path / "r.rk")
    assert tx.CharLM.load(tmp_path / "r.rk").vocab == rep.vocab


def test_from_model_rejects_other_models():
    m = rk.Sequential(rk.Embedding(5, 3), rk.LSTM(3, 4), rk.Linear(4, 5))
    with pytest.raises(ValueError, match="no character vocabulary"):
        tx.CharLM.from_model(m)
    m.vocab = {"chars": list("abcdef")}
    with pytest.raises(ValueError, match="not a character language model over 6"):
        tx.CharLM.from_model(m)
    with pytest.raises(TypeError):
        tx.CharLM(["a", "b"])
    with pytest.raises(ValueError, match="cell"):
        tx.CharLM(tx.Vocab.from_text("ab"), cell="transformer")


# ------------------------------------------------------- War and Peace (optional)
@pytest.mark.skipif(
    not WARPEACE.exists(), reason="../shared/data/warpeace.txt not present"
)
def test_war_and_peace_round_trip_and_batches():
    text = tx.read_text(WARPEACE)
    assert len(text) == 3_196_214
    v = tx.Vocab.from_text(text)
    assert len(v) == 82 and v.tokens[:2] == ("\n", " ")
    ids = v.encode(text)
    assert v.decode(ids) == text
    tr, _ = tx.split_train_val(ids, 0.05)
    b = tx.BPTTBatches(tr, 32, 100)
    assert b.chars_per_epoch > 0.94 * len(ids) and len(b) == math.ceil(
        b.stream_len / 100
    )
    corpus = tx.read_text(tx.default_corpus_path())
    assert text.startswith(corpus)  # the shipped corpus is the novel's opening


def test_quality_benchmark_runs(tmp_path):
    """benchmarks/char_rnn_quality.py end to end with tiny settings (on the default
    corpus, so it never skips); torch's side runs when torch is installed."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "char_rnn_quality.py"
    cmd = [
        sys.executable,
        str(script),
        "--corpus",
        str(tx.default_corpus_path()),
        "--budget",
        "0.4",
        "--eval-every",
        "0.2",
        "--threads",
        "1",
        "--hidden",
        "16",
        "--embedding",
        "8",
        "--val-fraction",
        "0.01",
        "--gen-chars",
        "100",
        "--out",
        str(tmp_path),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (tmp_path / "results.md").read_text()
    assert "| rnnkit |" in md and "matches the float64 reference" in md
    res = json.loads((tmp_path / "results.json").read_text())
    curve = res["results"]["rnnkit"]["curve"]
    assert curve[0][0] == 0.0 and len(curve) >= 2 and curve[-1][3] < curve[0][3]
    if "torch" in res["results"]:
        assert res["summary"]["t0_parity"]["ok"]
    missing = subprocess.run(
        [sys.executable, str(script), "--corpus", str(tmp_path / "none.txt")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 0 and "skipped" in missing.stderr


def test_read_text_refuses_non_regular_files():
    import os

    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    with pytest.raises(rk.text.TextFileError, match="not a regular file"):
        rk.text.read_text("/dev/zero")
