"""rk.onnx.export: every graph passes onnx.checker and onnxruntime's outputs and
final states match rnnkit's forward(train=False) (issue 13)."""

from __future__ import annotations

import itertools
import json
import sys

import numpy as np
import pytest

import rnnkit as rk
from conftest import named_tol
from rnnkit import _cells

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

RTOL, ATOL = named_tol("onnxruntime_float32")
SIZES = [(1, 1), (5, 3), (9, 1), (4, 6)]  # (T, B)


def session(proto):
    onnx.checker.check_model(proto, full_check=True)
    so = ort.SessionOptions()
    so.log_severity_level = 3  # the optional inputs are overridable initializers
    return ort.InferenceSession(
        proto.SerializeToString(), so, providers=["CPUExecutionProvider"]
    )


def close(got, want, what):
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=what)


def lengths_for(rng, T, B):
    lens = rng.integers(1, T + 1, size=B)
    lens[rng.integers(0, B)] = T  # the longest row fills the batch
    return lens.astype(np.int64)


def states(rng, layer, B):
    shape = (layer.num_layers * layer.num_directions, B, layer.hidden_size)
    h = rng.standard_normal(shape).astype(np.float32)
    if layer.spec.has_cell_state:
        return h, rng.standard_normal(shape).astype(np.float32)
    return h


def flat(state):
    return list(state) if isinstance(state, tuple) else [state]


LAYER_CASES = [
    (cell, nl, L, bi)
    for cell in _cells.CELLS
    for nl in _cells.CELLS[cell].nonlinearities
    for L, bi in itertools.product([1, 2], [False, True])
]


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize(("cell", "nonlinearity", "L", "bi"), LAYER_CASES)
def test_layer_matches_onnxruntime(rng, cell, nonlinearity, L, bi, batch_first):
    layer = _cells.get(cell).layer_class(
        4,
        5,
        num_layers=L,
        bidirectional=bi,
        batch_first=batch_first,
        seed=int(rng.integers(1 << 30)),
        nonlinearity=nonlinearity,
    )
    s = session(rk.onnx.to_onnx(layer))
    lstm = layer.spec.has_cell_state
    assert [i.name for i in s.get_inputs()] == ["x"]
    assert [i.name for i in s.get_overridable_initializers()] == (
        ["lengths", "h0", "c0"] if lstm else ["lengths", "h0"]
    )
    assert [o.name for o in s.get_outputs()] == (
        ["output", "h_n", "c_n"] if lstm else ["output", "h_n"]
    )
    for T, B in SIZES:
        x = rng.standard_normal((B, T, 4) if batch_first else (T, B, 4))
        x = x.astype(np.float32)
        for with_len, with_state in itertools.product([False, True], [False, True]):
            lens = lengths_for(rng, T, B) if with_len else None
            hx = states(rng, layer, B) if with_state else None
            y, hn = layer.forward(x, hx, lengths=lens, train=False)
            feeds = {"x": x}
            if with_len:
                feeds["lengths"] = lens
            if with_state:
                feeds.update(zip(["h0", "c0"], flat(hx)))
            got = s.run(None, feeds)
            what = f"T={T} B={B} lengths={with_len} state={with_state}"
            for g, w, name in zip(got, [y] + flat(hn), ["output", "h_n", "c_n"]):
                close(g, w, f"{name} {what}")


def seq_model(kind, cell, bi, seed):
    cls = _cells.get(cell).layer_class
    if kind == "lm":  # many-to-many over token ids, two recurrent layers
        return rk.Sequential(
            rk.Embedding(13, 6, padding_idx=0, seed=seed),
            cls(6, 8, num_layers=2, bidirectional=bi, seed=seed + 1),
            rk.Dropout(0.5, seed=seed + 2),
            cls(16 if bi else 8, 5, batch_first=True, seed=seed + 3),
            rk.Linear(5, 13, seed=seed + 4),
        )
    if kind == "classify":  # many-to-one
        return rk.Sequential(
            rk.Embedding(13, 6, seed=seed),
            cls(6, 7, bidirectional=bi, seed=seed + 1),
            rk.Linear(14 if bi else 7, 3, activation="tanh", seed=seed + 2),
            rk.Linear(3, 2, seed=seed + 3),
            output="last",
        )
    # float features, many-to-many
    return rk.Sequential(
        rk.Linear(3, 4, activation="relu", seed=seed),
        cls(4, 6, bidirectional=bi, seed=seed + 1),
        rk.Linear(12 if bi else 6, 2, activation="sigmoid", seed=seed + 2),
    )


@pytest.mark.parametrize("bi", [False, True])
@pytest.mark.parametrize("cell", list(_cells.CELLS))
@pytest.mark.parametrize("kind", ["lm", "classify", "features"])
def test_sequential_matches_onnxruntime(rng, kind, cell, bi):
    model = seq_model(kind, cell, bi, int(rng.integers(1 << 20)))
    s = session(rk.onnx.to_onnx(model))
    rec = model.recurrent_layers
    many = len(rec) > 1
    for T, B in SIZES:
        if kind == "features":
            x = rng.standard_normal((B, T, 3)).astype(np.float32)
        else:
            x = rng.integers(0, 13, size=(B, T)).astype(np.int64)
        for with_len, with_state in itertools.product([False, True], [False, True]):
            lens = lengths_for(rng, T, B) if with_len else None
            state = [states(rng, m, B) for m in rec] if with_state else None
            out = model.forward(x, lengths=lens, state=state, train=False)
            feeds = {"x": x}
            if with_len:
                feeds["lengths"] = lens
            if with_state:
                for k, st in enumerate(state):
                    sfx = f"_{k}" if many else ""
                    feeds.update(zip([f"h0{sfx}", f"c0{sfx}"], flat(st)))
            got = s.run(None, feeds)
            want = [out] + [a for st in model.final_state for a in flat(st)]
            assert len(got) == len(want)
            what = f"T={T} B={B} lengths={with_len} state={with_state}"
            for j, (g, w) in enumerate(zip(got, want)):
                close(g, w, f"output {j} {what}")


def test_carried_state_continues_the_sequence(rng):
    """Two chunks with the final state fed back equal one long run (generation)."""
    model = seq_model("lm", "lstm", False, 3)
    s = session(rk.onnx.to_onnx(model))
    x = rng.integers(0, 13, size=(2, 10)).astype(np.int64)
    whole = s.run(["output"], {"x": x})[0]
    a = s.run(None, {"x": x[:, :6]})
    names = ["h0_0", "c0_0", "h0_1", "c0_1"]
    b = s.run(None, {"x": x[:, 6:], **dict(zip(names, a[1:]))})
    close(np.concatenate([a[0], b[0]], axis=1), whole, "chunks vs whole")


def test_vector_input_and_steps(rng):
    model = rk.Sequential(
        rk.Embedding(7, 4, seed=0),
        rk.GRU(4, 5, num_layers=2, seed=1),
        rk.Linear(5, 7, seed=2),
        input="vector",
        steps=4,
    )
    s = session(rk.onnx.to_onnx(model))
    ids = rng.integers(0, 7, size=3).astype(np.int64)
    close(s.run(["output"], {"x": ids})[0], model.forward(ids, train=False), "default")
    got = s.run(["output"], {"x": ids, "steps": np.array([6])})[0]
    close(got, model.forward(ids, steps=6, train=False), "steps=6")
    one = rk.Sequential(
        rk.Linear(2, 3, seed=0),
        rk.LSTM(3, 4, seed=1),
        rk.Linear(4, 3, seed=2),
        input="vector",
        output="last",
    )
    s = session(rk.onnx.to_onnx(one, steps=1))
    x = rng.standard_normal((5, 2)).astype(np.float32)
    close(s.run(["output"], {"x": x})[0], one.forward(x, steps=1, train=False), "1:1")
    s = session(rk.onnx.to_onnx(one))  # no steps anywhere: a required input
    assert [i.name for i in s.get_inputs()] == ["x", "steps"]


def test_lengths_false_leaves_the_input_out(rng):
    layer = rk.LSTM(3, 4, seed=0)
    proto = rk.onnx.to_onnx(layer, lengths=False)
    assert [i.name for i in proto.graph.input] == ["x", "h0", "c0"]
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    close(session(proto).run(["output"], {"x": x})[0], layer(x, train=False)[0], "y")


def test_export_writes_files_atomically_and_encoder_decoder(rng, tmp_path):
    enc = rk.Sequential(rk.Embedding(11, 5, seed=0), rk.GRU(5, 6, seed=1))
    dec = rk.Sequential(
        rk.Embedding(9, 5, seed=2), rk.GRU(5, 6, seed=3), rk.Linear(6, 9, seed=4)
    )
    model = rk.EncoderDecoder(enc, dec)
    model.vocab = {"src": list("abcdefghijk"), "tgt": list("012345678")}
    paths = rk.onnx.export(model, tmp_path / "s2s.onnx")
    assert paths == [
        str(tmp_path / "s2s.encoder.onnx"),
        str(tmp_path / "s2s.decoder.onnx"),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "s2s.decoder.onnx",
        "s2s.encoder.onnx",
    ]  # no temporary files left
    e, d = (session(onnx.load(p)) for p in paths)
    props = {p.key: p.value for p in onnx.load(paths[1]).metadata_props}
    assert json.loads(props["rnnkit.vocab"]) == model.vocab
    src = rng.integers(0, 11, size=(3, 7)).astype(np.int64)
    lens = np.array([7, 2, 5])
    want = model.greedy_decode(src, bos=1, eos=2, max_len=6, lengths=lens)
    h = e.run(["h_n"], {"x": src, "lengths": lens})[0]
    ids = np.full((3, 1), 1, dtype=np.int64)
    done = np.zeros(3, dtype=bool)
    out = []
    for _ in range(6):  # the one-step decoder graph, state fed back
        logits, h = d.run(None, {"x": ids, "h0": h})
        nxt = logits[:, -1].argmax(-1)
        nxt[done] = 2
        out.append(nxt)
        done |= nxt == 2
        ids = nxt[:, None].astype(np.int64)
        if done.all():
            break
    np.testing.assert_array_equal(np.stack(out, axis=1), want)


def test_charlm_export_carries_its_vocabulary(tmp_path):
    vocab = rk.Vocab.from_text("hello world")
    lm = rk.CharLM(vocab, cell="gru", hidden_size=16, embedding_dim=8, seed=0)
    (path,) = rk.onnx.export(lm, tmp_path / "lm.onnx")
    proto = onnx.load(path)
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["rnnkit.vocab"])["chars"] == vocab.to_checkpoint()[0]
    assert json.loads(props["rnnkit.config"]) == lm.model.config()
    ids = np.array([vocab.encode("hello")], dtype=np.int64)
    close(
        session(proto).run(["output"], {"x": ids})[0],
        lm.model.forward(ids, train=False),
        "logits",
    )


def test_float64_models_export_as_float32_for_onnxruntime(rng):
    layer = rk.LSTM(3, 4, dtype="float64", seed=0)
    proto64 = rk.onnx.to_onnx(layer)
    onnx.checker.check_model(proto64, full_check=True)
    assert proto64.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    s = session(rk.onnx.to_onnx(layer, dtype="float32"))
    x = rng.standard_normal((4, 2, 3))
    got = s.run(["output"], {"x": x.astype(np.float32)})[0]
    close(got, layer(x, train=False)[0], "float64 model in float32")


def test_opsets(rng):
    layer = rk.GRU(3, 4, bidirectional=True, seed=0)
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    for opset in (rk.onnx.MIN_OPSET, rk.onnx.DEFAULT_OPSET, 20):
        proto = rk.onnx.to_onnx(layer, opset=opset)
        assert proto.opset_import[0].version == opset
        close(
            session(proto).run(["output"], {"x": x})[0], layer(x, train=False)[0], "y"
        )
    with pytest.raises(ValueError, match="opset must be an int >= 14"):
        rk.onnx.to_onnx(layer, opset=9)


def test_bad_arguments():
    with pytest.raises(TypeError, match="must be an RNN, LSTM, GRU, Sequential"):
        rk.onnx.to_onnx(rk.Linear(2, 3))
    with pytest.raises(ValueError, match="steps must be a positive int"):
        rk.onnx.to_onnx(rk.GRU(2, 3), steps=0)
    with pytest.raises(ValueError, match="dtype must be None, float32 or float64"):
        rk.onnx.to_onnx(rk.GRU(2, 3), dtype="float16")


def test_options_that_change_inference_are_refused():
    for layer, name in (
        (rk.LSTM(2, 4, proj_size=2), "proj_size"),
        (rk.GRU(2, 3, layer_norm=True), "layer_norm"),
        (rk.RNN(2, 3, zoneout=0.1), "zoneout"),
    ):
        with pytest.raises(ValueError, match=f"has no {name}"):
            rk.onnx.to_onnx(layer)
        with pytest.raises(ValueError, match=f"has no {name}"):
            rk.onnx.to_onnx(rk.Sequential(layer, rk.Linear(layer.state_size, 2)))


def test_training_only_options_export_as_the_plain_cell(rng):
    # dropout between layers and recurrent dropout act in training only
    layer = rk.LSTM(3, 5, num_layers=2, dropout=0.3, recurrent_dropout=0.2, seed=1)
    s = session(rk.onnx.to_onnx(layer))
    x = rng.standard_normal((6, 2, 3)).astype(np.float32)
    y, _ = layer.forward(x, train=False)
    close(s.run(None, {"x": x})[0], y, "output")


def test_missing_onnx_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'rnnkit\[onnx\]'"):
        rk.onnx.export(rk.GRU(2, 3), "never-written.onnx")


def test_cli_export(tmp_path, capsys):
    from rnnkit.cli import main

    model = seq_model("classify", "gru", True, 0)
    model.save(tmp_path / "m.rk")
    onnx_path, st_path = tmp_path / "m.onnx", tmp_path / "m.safetensors"
    assert (
        main(
            [
                "export",
                str(tmp_path / "m.rk"),
                "--onnx",
                str(onnx_path),
                "--safetensors",
                str(st_path),
            ]
        )
        == 0
    )
    assert f"wrote {onnx_path}" in capsys.readouterr().out
    ids = np.ones((2, 3), dtype=np.int64)
    close(
        session(onnx.load(onnx_path)).run(["output"], {"x": ids})[0],
        model.forward(ids, train=False),
        "cli graph",
    )
    assert rk.load(st_path).config() == model.config()
    assert main(["export", str(tmp_path / "m.rk")]) == 2
    assert main(["export", str(tmp_path / "nope.rk"), "--onnx", str(onnx_path)]) == 2
    assert "rnnkit export:" in capsys.readouterr().err
